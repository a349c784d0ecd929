"""Print resolution (issue 16): tiled optimization at 2048 and 4096 px in a memory budget.

Each case runs in its own child process (so peak RSS, from getrusage, does not mix):

- ``whole2048``: the fast preset (bf16, L-BFGS) untiled at 2048 px for STEPS steps;
- ``tiled2048``: the same steps in tiles under a 3 GB budget (too small for 2048 whole);
- ``eval2048``: both results' seed loss on the whole image in fp32, and the seam ratio (mean
  absolute neighbour difference along the tiled run's tile boundaries over elsewhere) of each;
- ``tiled4096``: one tiled pass at 4096 px under 4 GB, starting from a ``gafu fast`` result of the
  same (upscaled) photo; a crop of it goes to docs/print-crop.png.

The photo is chelsea.jpg upscaled (Lanczos) to 4096 px; the style is Starry Night.
Run under flock: ``flock /tmp/gafu-cpu.lock python benchmarks/bench_print.py``. Prints JSON lines,
writes benchmarks/results/bench_print.json.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STEPS = 3
CONTENT = ROOT / "gafu" / "data" / "chelsea.jpg"
STYLE = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _big_photo(work: Path) -> Path:
    from PIL import Image

    path = work / "big.png"
    if not path.exists():
        im = Image.open(CONTENT).convert("RGB")
        k = 4096 / max(im.size)
        im.resize((round(im.width * k), round(im.height * k)), Image.LANCZOS).save(path)
    return path


def _run(st, steps):
    t0 = time.perf_counter()
    for _ in st.run(steps):
        pass
    return time.perf_counter() - t0


def case(name: str, work: Path) -> dict:
    import numpy as np
    import torch

    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer
    from gafu.optimize.tiled import boundaries

    cfg = get_preset("fast").replace(stop_tol=0.0)
    photo = _big_photo(work)
    out: dict = {"case": name}
    if name in ("whole2048", "tiled2048"):
        c = cfg.replace(size=2048, steps=STEPS)
        budget = None if name == "whole2048" else 3072.0
        # init_image = the content: the same start as the untiled run, and no automatic schedule
        st = StyleTransfer(photo, [STYLE], c, init_image=photo, max_memory=budget)
        seconds = _run(st, STEPS)
        np.save(work / f"{name}.npy", st.image.numpy())
        out.update(shape=list(st.content.shape[-2:]), budget_mb=budget, tiled=st._tiled is not None,
                   seconds_per_pass=seconds / STEPS, steps=STEPS, prepare_seconds=st.prepare_seconds)
        if st._tiled is not None:
            rows, cols = boundaries(st._tiled.plans())
            (work / "bounds.json").write_text(json.dumps([sorted(rows), sorted(cols)]))
            out.update(tile=st._tiled.tile, tiles_per_pass=st._tiled.tiles_per_pass(),
                       evaluations=st._tiled.evaluations)
    elif name == "eval2048":
        from gafu.optimize.tiled import seam_ratio

        rows, cols = json.loads((work / "bounds.json").read_text())
        st = StyleTransfer(photo, [STYLE], cfg.replace(size=2048, precision="fp32"), init_image=photo)
        for run in ("whole2048", "tiled2048"):
            img = torch.from_numpy(np.load(work / f"{run}.npy"))
            out[run] = {"loss_fp32": st.evaluate(img)["total"], "seam_ratio": seam_ratio(img, rows, cols)}
        out["start_loss_fp32"] = st.evaluate()["total"]
        out["loss_ratio"] = out["tiled2048"]["loss_fp32"] / out["whole2048"]["loss_fp32"]
        out["seam_ratio_vs_untiled"] = out["tiled2048"]["seam_ratio"] / out["whole2048"]["seam_ratio"]
    elif name == "tiled4096":
        from gafu.fast import fast_stylize
        from gafu.image import save_image

        t0 = time.perf_counter()
        init = fast_stylize(photo, STYLE, max_size=4096)
        out["fast_init_seconds"] = time.perf_counter() - t0
        c = cfg.replace(size=4096, steps=1)
        st = StyleTransfer(photo, [STYLE], c, init_image=init, max_memory=4096.0)
        out.update(shape=list(st.content.shape[-2:]), budget_mb=4096.0, tile=st._tiled.tile,
                   tiles_per_pass=st._tiled.tiles_per_pass(), prepare_seconds=st.prepare_seconds,
                   seconds_per_pass=_run(st, 1))
        img = st.image
        h, w = img.shape[-2:]
        crop = img[:, :, h // 2 - 168: h // 2 + 168, w // 2 - 224: w // 2 + 224]  # 448x336, < 400 KB as PNG
        save_image(crop, ROOT / "docs" / "print-crop.png", overwrite=True)
    out["peak_rss_mb"] = _peak_mb()
    return out


def main() -> int:
    from machine import cpu_model

    results = {"cpu": cpu_model(), "steps": STEPS, "cases": []}
    print(json.dumps({"cpu": results["cpu"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("whole2048", "tiled2048", "eval2048", "tiled4096"):
            r = subprocess.run([sys.executable, __file__, "--case", name, tmp], capture_output=True, text=True)
            if r.returncode:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            results["cases"].append(row)
    by = {c["case"]: c for c in results["cases"]}
    results["summary"] = {
        "pass_time_ratio_2048": by["tiled2048"]["seconds_per_pass"] / by["whole2048"]["seconds_per_pass"],
        "loss_ratio_2048": by["eval2048"]["loss_ratio"],
        "seam_ratio_vs_untiled_2048": by["eval2048"]["seam_ratio_vs_untiled"],
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in by.items()},
    }
    print(json.dumps(results["summary"]), flush=True)
    out = ROOT / "benchmarks" / "results" / "bench_print.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(sys.argv[2], Path(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
