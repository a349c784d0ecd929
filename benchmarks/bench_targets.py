#!/usr/bin/env python
"""One style, N photos: the style's Gram targets computed once (StyleTargets) or once per photo.

    python benchmarks/bench_targets.py                 # N=8 photos, 128 px, one style, both modes
    python benchmarks/bench_targets.py --modes per_photo --out before.json   # works on older gafu too

Prints one JSON object: the machine (CPU model, threads, load), and per mode the seconds to prepare
N transfers (decode, targets, extractor; no optimizer steps) and to run ``--steps`` steps on each,
the number of style forward passes, and the ratio per_photo / shared measured in this run.
The photos are crops of the bundled chelsea photo; the style is Starry Night (gafu/data).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "gafu" / "data"




def photos(n: int):
    from PIL import Image

    im = Image.open(DATA / "chelsea.jpg").convert("RGB")
    w, h = im.size
    out = []
    for i in range(n):  # N different photos: shifted crops
        dx = (i * 17) % max(1, w // 4)
        out.append(im.crop((dx, 0, dx + 3 * w // 4, h)))
    return out


def run(mode: str, n: int, size: int, steps: int) -> dict:
    import torch

    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset("fast").replace(size=size, steps=steps, stop_tol=0.0)
    style = str(DATA / "vangogh_starry_night.jpg")
    ims = photos(n)
    # Warm-up: weights dequantized and the extractor built once per process, in both modes.
    StyleTransfer(ims[0], [style], cfg)
    t0 = time.perf_counter()
    calls = 0
    if mode == "shared":
        from gafu.optimize import StyleTargets

        targets = StyleTargets([style], cfg)
        transfers = [StyleTransfer(im, targets, cfg) for im in ims]
        calls = targets.extractor_calls
    else:
        transfers = [StyleTransfer(im, [style], cfg) for im in ims]
        calls = n
    prepare = time.perf_counter() - t0
    t1 = time.perf_counter()
    for st in transfers:
        for _ in st.run():
            pass
    loop = time.perf_counter() - t1
    return {"prepare_s": round(prepare, 4), "prepare_per_photo_s": round(prepare / n, 4),
            "steps_s": round(loop, 3), "total_s": round(prepare + loop, 3), "style_forward_passes": calls,
            "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps per photo (default 0: preparation only)")
    ap.add_argument("--modes", default="per_photo,shared")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    import gafu

    result = {"benchmark": "bench_targets", "gafu": str(Path(gafu.__file__).parent), "n_photos": args.n,
              "size": args.size, "steps": args.steps,
              "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}}
    for mode in args.modes.split(","):
        runs = [run(mode, args.n, args.size, args.steps) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["prepare_s"])
        best["prepare_s_runs"] = [r["prepare_s"] for r in runs]
        result[mode] = best
    if "per_photo" in result and "shared" in result:
        result["prepare_ratio_per_photo_over_shared"] = round(result["per_photo"]["prepare_s"] / result["shared"]["prepare_s"], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
