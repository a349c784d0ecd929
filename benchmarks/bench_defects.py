"""Benchmark: gafu defects synth throughput, fast vs optimize fill, and the job layer's share.

    flock /tmp/gafu-cpu.lock .venv/bin/python benchmarks/bench_defects.py --out benchmarks/results/bench_defects.json

Input: the six content/inspection photos of ../shared/images shrunk (Lanczos) to a long side of
``--size`` px (256) and saved as PNG (the brick texture is greyscale). Each configuration runs
``gafu.defects.synth`` in this process (one worker, default threads) with ``--n`` defects per type
for two types (crack: scratch masks, stain: blob masks), alpha blend:

- ``fast_self``: fast engine, fill ``self`` (a new style vector per defect);
- ``fast_style``: fast engine, fill ``style:`` The Starry Night (style vector computed once);
- ``optimize_style``: optimize engine (``--opt-steps`` L-BFGS steps, crops at most 128 px), Starry Night.

A warm-up run loads every model first, so the timed runs measure steady throughput. Reported per
configuration (median over ``--rounds``): wall seconds of the call, defect items/s (defect items /
wall minus the copies' time), seconds per defect inside the worker with its split (mask, fill,
blend, quality, write), and the job layer's share: 1 - (sum of the workers' item seconds) / wall
(planning, manifest rows, compaction, the report). Prints JSON on stdout (and to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGES = ROOT.parent / "shared" / "images"
SOURCES = ["content/astronaut.png", "content/chelsea.png", "content/coffee.png", "content/rocket.jpg",
           "inspection/hazelnut_toy_good.jpg", "inspection/texture_brick_cc0.png"]
STYLE = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"


def make_inputs(folder: Path, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for rel in SOURCES:
        with Image.open(IMAGES / rel) as im:
            im.load()
            im.thumbnail((size, size), Image.LANCZOS)
            im.save(folder / (Path(rel).stem + ".png"))


def run(good: Path, out: Path, n: int, steps: int, **kw) -> dict:
    from gafu import defects
    from gafu.jobs import read_rows

    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    s = defects.synth(good, out, category="bench", n=n, defect_types="crack,stain", holdout=0.0, seed=1,
                      steps=steps, **kw)
    wall = time.perf_counter() - t0
    assert s.failed == 0, s.errors
    rows = read_rows(out / "manifest.jsonl")
    d = [r for r in rows if r["kind"] == "defect"]
    g = [r for r in rows if r["kind"] == "good"]
    split = {k: statistics.mean(r["timings"].get(k, 0.0) for r in d) for k in ("read", "mask", "fill", "blend", "quality", "write")}
    item_s = sum(r["seconds"] for r in rows)
    return {"wall_s": wall, "defects": len(d),
            "defect_items_per_s": len(d) / max(1e-9, wall - sum(r["seconds"] for r in g)),
            "s_per_defect_in_worker": statistics.mean(r["seconds"] for r in d),
            "split_s": split, "job_layer_share": 1.0 - item_s / wall,
            "mean_area": s.quality["all"]["area"]["mean"], "change_inside": s.quality["all"]["change_inside"],
            "structure": s.quality["all"]["structure"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=4, help="defects per type (two types)")
    ap.add_argument("--opt-steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    configs = {
        "fast_self": dict(fill="self", method="fast"),
        "fast_style": dict(fill=f"style:{STYLE}", method="fast"),
        "optimize_style": dict(fill=f"style:{STYLE}", method="optimize"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "good", args.size)
        for name, kw in configs.items():  # warm-up: every model loaded once
            run(tmp / "good", tmp / "warm", 1, 1, **kw)
        results = {k: [] for k in configs}
        for r in range(args.rounds):
            names = list(configs)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                results[name].append(run(tmp / "good", tmp / name, args.n, args.opt_steps, **configs[name]))

    def med(rows, key):
        return round(statistics.median(x[key] for x in rows), 4)

    out = {
        "benchmark": "defects synth", "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "size_px": args.size, "images": len(SOURCES),
        "defects_per_run": 2 * args.n, "opt_steps": args.opt_steps, "rounds": args.rounds,
        "configs": {k: {"wall_s": med(v, "wall_s"), "defect_items_per_s": med(v, "defect_items_per_s"),
                        "s_per_defect_in_worker": med(v, "s_per_defect_in_worker"),
                        "job_layer_share": med(v, "job_layer_share"),
                        "split_s": {s: round(statistics.median(x["split_s"][s] for x in v), 4) for s in v[0]["split_s"]},
                        "quality": {q: v[0][q] for q in ("mean_area", "change_inside", "structure")}}
                    for k, v in results.items()},
    }
    c = out["configs"]
    out["fast_vs_optimize_items_per_s"] = round(c["fast_style"]["defect_items_per_s"] /
                                                c["optimize_style"]["defect_items_per_s"], 2)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
