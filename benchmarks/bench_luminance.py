"""Benchmark (issue 11 goal 6): how much luminance-only colour preservation stylizes under a preset.

    flock /tmp/gafu-cpu.lock .venv/bin/python benchmarks/bench_luminance.py [--size 192 --steps 60]
        [--out benchmarks/results/luminance_192.json]

For each pair, the same preset, size and steps with ``preserve_color='none'`` and ``'luminance'``:
mean absolute change of luma (BT.601 Y, [0, 1]) against the content, their ratio (goal >= 0.7),
and the luminance run's mean absolute chroma difference to the content (goal < 0.01). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
PAIRS = [
    ("inspection/hazelnut_toy_good.jpg", "vangogh_starry_night.jpg"),
    ("content/chelsea.png", "hokusai_great_wave.jpg"),
    ("content/coffee.png", "kandinsky_composition_vii.jpg"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--out")
    args = ap.parse_args()

    import torch

    from gafu import color as C
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    rows = []
    for content, style in PAIRS:
        cpath, spath = IMAGES / content, ROOT / "gafu" / "data" / style
        row = {"content": content, "style": style}
        for mode in ("none", "luminance"):
            cfg = get_preset(args.preset).replace(size=args.size, steps=args.steps, preserve_color=mode)
            t = time.perf_counter()
            st = StyleTransfer(cpath, [spath], cfg)
            for _ in st.run():
                pass
            out, ref = st.image, st.content_rgb
            row[mode] = {
                "seconds": round(time.perf_counter() - t, 2),
                "luma_change": round(float((C.luminance(out) - C.luminance(ref)).abs().mean()), 4),
                "chroma_diff": round(C.chroma_error(out, ref), 5),
                "stop_reason": st.stop_reason,
            }
        row["luma_ratio"] = round(row["luminance"]["luma_change"] / row["none"]["luma_change"], 3)
        rows.append(row)
    result = {
        "benchmark": "bench_luminance",
        "cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version(),
        "params": vars(args),
        "pairs": rows,
        "goals": {
            "luma_ratio_at_least_0.7": all(r["luma_ratio"] >= 0.7 for r in rows),
            "chroma_diff_below_0.01": all(r["luminance"]["chroma_diff"] < 0.01 for r in rows),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
