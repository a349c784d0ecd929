"""The seed preset against TensorFlow runs of the tutorial: PSNR with TF's JPEG pixels and with Pillow's.

    python benchmarks/jpeg_seed_parity.py REF [REF ...] [--tf-self REF_A:REF_B ...] [--out result.json]

Each REF is the stem of a committed reference under tests/data (``tf_seed_reference_<pair>``:
JSON + PNG written by benchmarks/tf_seed_reference.py). For each, gafu's seed preset runs with the
reference's size, steps and TV weight twice: content and style decoded by ``gafu.jpeg.decode_like_tf``
(TensorFlow's pixels) and by Pillow (``gafu.image.load``, the accurate IDCT, ICC to sRGB). It reports
PSNR of the final 8-bit image against TensorFlow's saved image and the total loss ratio.
``--tf-self A:B`` (stems, or paths of reference JSON files) also reports PSNR between two TensorFlow runs of the same pair (e.g. one with
``TF_ENABLE_ONEDNN_OPTS=0``): how close TensorFlow comes to itself. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "images"


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))




def load_ref(spec: str) -> tuple[dict, Path]:
    """A reference by stem under tests/data, or by the path of its JSON (its PNG beside it)."""
    path = Path(spec) if spec.endswith(".json") else DATA / f"{spec}.json"
    return json.loads(path.read_text()), path.parent


def tf_image(ref: dict, folder: Path = DATA) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(folder / ref["saved_image"]).convert("RGB"))


def source_path(ref: dict, key: str) -> Path:
    name = ref[key]
    for sub in ("content", "style", "inspection"):
        if (SHARED / sub / name).exists():
            return SHARED / sub / name
    if (DATA / name).exists():
        return DATA / name
    raise SystemExit(f"error: cannot find {name}")


def run_pair(stem: str, decoders=("tf", "pillow")) -> dict:
    import torch

    from gafu.config import get_preset
    from gafu.image import load, to_pil
    from gafu.jpeg import decode_like_tf, is_jpeg, to_tensor_like_tf
    from gafu.optimize import StyleTransfer

    ref = json.loads((DATA / f"{stem}.json").read_text())
    target = tf_image(ref)
    cfg = get_preset("seed").replace(size=ref["size"], steps=ref["steps"], tv_weight=ref["tv_weight"])
    out = {"reference": stem, "content": ref["content"], "style": ref["style"], "size": ref["size"],
           "steps": ref["steps"], "tv_weight": ref["tv_weight"], "decoders": {}}
    paths = {k: source_path(ref, k) for k in ("content", "style")}
    for decoder in decoders:
        images = {}
        for k, p in paths.items():
            if decoder == "pillow":
                images[k] = load(p)
            elif decoder == "tf":
                images[k] = decode_like_tf(p) if is_jpeg(p) else load(p)
            else:  # "tf_scale": TF's pixels and TF's uint8 -> float32 scaling, given as a tensor
                from PIL import Image

                arr = decode_like_tf(p) if is_jpeg(p) else np.asarray(Image.open(p).convert("RGB"))
                images[k] = to_tensor_like_tf(arr)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        st = StyleTransfer(images["content"], [images["style"]], cfg)
        assert list(st.content.shape[-2:]) == ref["content_shape"][1:3]
        for _ in st.run():
            pass
        seconds = time.perf_counter() - t0
        ours = np.asarray(to_pil(st.image))
        after = st.evaluate()
        out["decoders"][decoder] = {
            "psnr_db_vs_tf": round(psnr_u8(ours, target), 2),
            "mean_abs_diff_vs_tf": round(float(np.abs(ours.astype(float) - target).mean() / 255.0), 5),
            "total_loss_ratio_vs_tf": round(after["total"] / ref["loss_after_last_step"]["total"], 4),
            "jpeg_inputs": [k for k, p in paths.items() if is_jpeg(p)],
            "seconds": round(seconds, 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refs", nargs="+")
    ap.add_argument("--tf-self", action="append", default=[], metavar="A:B")
    ap.add_argument("--decoders", default="tf,pillow",
                    help="comma list of tf (decode_like_tf), pillow (gafu.image.load), tf_scale (TF's "
                         "pixels scaled to float as TF does, x*float32(1/255): gafu.jpeg.to_tensor_like_tf)")
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch

    result = {"benchmark": "benchmarks/jpeg_seed_parity.py",
              "psnr": "10*log10(255^2/MSE) over the 8-bit RGB images (gafu rounded as TF's PNG: rint)",
              "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads()},
              "versions": {"torch": torch.__version__, "numpy": np.__version__},
              "pairs": [run_pair(stem, args.decoders.split(",")) for stem in args.refs], "tf_vs_tf": []}
    for spec in args.tf_self:
        a, b = spec.split(":")
        (ra, da), (rb, db) = load_ref(a), load_ref(b)
        result["tf_vs_tf"].append({
            "a": a, "b": b, "a_onednn": ra.get("tf_enable_onednn_opts"), "b_onednn": rb.get("tf_enable_onednn_opts"),
            "psnr_db": round(psnr_u8(tf_image(ra, da), tf_image(rb, db)), 2),
            "total_loss_ratio": round(rb["loss_after_last_step"]["total"] / ra["loss_after_last_step"]["total"], 4)})
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
