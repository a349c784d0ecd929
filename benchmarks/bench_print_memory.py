"""Print sizes (issue 16): does a tiled, coarse-to-fine run keep to the memory budget it was planned for?

A 2048 px run of the fast preset (bf16, L-BFGS) under ``max_memory=2048`` MB: the automatic
schedule runs STEPS steps whole at 1024 px, then max(10, STEPS/20) steps tiled at 2048 px. Two
modes, each in its own child process (peak RSS from getrusage does not mix):

- ``returned``: as gafu runs it (tiled runs give freed blocks >= 1 MB back to the kernel at once,
  :func:`gafu.optimize.precision.return_freed_memory`);
- ``glibc``: the same run with glibc's own dynamic mmap threshold (that context replaced by a no-op),
  as before the change.

Prints JSON (the CPU model, each mode's peak RSS and seconds, their ratios); ``--out`` also writes it.
Run alone: ``flock /tmp/gafu-cpu.lock python benchmarks/bench_print_memory.py [--steps 20]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "gafu" / "data" / "chelsea.jpg"
STYLE = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"
BUDGET_MB = 2048.0


def child(mode: str, steps: int) -> dict:
    import contextlib

    sys.path.insert(0, str(ROOT))
    import gafu.optimize.loop as loop
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    if mode == "glibc":
        loop.return_freed_memory = lambda enabled=True: contextlib.nullcontext(False)
    cfg = get_preset("fast").replace(size=2048, steps=steps)
    st = StyleTransfer(CONTENT, [STYLE], cfg, max_memory=BUDGET_MB)
    t0 = time.perf_counter()
    for _ in st.run():
        pass
    return {"mode": mode, "budget_mb": BUDGET_MB, "tiled": st._tiled is not None,
            "tile": st._tiled.tile if st._tiled is not None else None,
            "tile_shape": list(st._tiled.tile_shape) if st._tiled is not None else None,
            "scales": list(st.config.scales), "scale_steps": list(st.config.scale_steps),
            "steps_done": st.steps_done, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="coarse steps (the tiled stage runs max(10, steps/20))")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--modes", default="returned,glibc", help="comma-separated modes to run (default both)")
    a = ap.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    if not modes or set(modes) - {"returned", "glibc"}:
        ap.error(f"--modes takes returned and/or glibc, got {a.modes!r}")
    result: dict = {"benchmark": "print_memory", "cpu": cpu_model(), "steps": a.steps, "runs": []}
    for mode in modes:
        r = subprocess.run([sys.executable, __file__, "--child", mode, str(a.steps)], capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["runs"].append(row)
    by = {r["mode"]: r for r in result["runs"]}
    if len(by) == 2:
        result["peak_ratio_returned_vs_glibc"] = by["returned"]["peak_rss_mb"] / by["glibc"]["peak_rss_mb"]
        result["time_ratio_returned_vs_glibc"] = by["returned"]["seconds"] / by["glibc"]["seconds"]
    result["within_budget"] = {m: r["peak_rss_mb"] <= BUDGET_MB for m, r in by.items()}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
