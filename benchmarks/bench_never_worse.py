#!/usr/bin/env python
"""Is the default ever worse than the seed? The default preset against the seed's 1000-step loss, pair by pair.

    python benchmarks/bench_never_worse.py seed     # the seed's 1000-step loss of every pair (cached, resumable)
    python benchmarks/bench_never_worse.py default  # the default preset's whole run on every pair (needs the seeds)
    python benchmarks/bench_never_worse.py report   # the table and the JSON summary from what is cached

Pairs: every content and inspection photo of ../shared/images x three paintings at 256 px, and three pairs
at 512 px (the one kept back: astronaut x Seurat). Each measurement runs in a fresh child process
(benchmarks/bench_speed.py's workers): the seed preset (fp32, Adam, TF's JPEG pixels) for 1000 steps, and
the default preset run as ``gafu stylize`` runs it (its own stop rule), the image checked in fp32 with the
seed's loss at the seed's pixels whenever its 16-bit loss comes within 3 % of the seed's, so the first step at
or below the seed's loss is known (check time excluded from the timings).

Losses are deterministic, so the seed cache (``--cache``, default benchmarks/results/never_worse_seed.json)
is filled one pair at a time and reused by later invocations; timings in it are only as quiet as the
machine was; an entry given a ``timing_untrusted`` reason by hand (its run was paused) keeps its loss and
drops out of the time ratios. ``--pairs`` takes a comma list of ``content:style:size`` (names without folders) to run a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_speed import run_worker  # noqa: E402  (the child-process workers live there)
from machine import cpu_model  # noqa: E402

ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "images"
RESULTS = HERE / "results"

CONTENTS = ["content/astronaut.png", "content/chelsea.png", "content/coffee.png", "content/rocket.jpg",
            "inspection/hazelnut_toy_crack.jpg", "inspection/hazelnut_toy_good.jpg", "inspection/texture_brick_cc0.png"]
STYLES = ["style/vangogh_starry_night.jpg", "style/hokusai_great_wave_met_jp1847.jpg",
          "style/seurat_sunday_on_la_grande_jatte.jpg"]
LARGE = [("content/astronaut.png", "style/seurat_sunday_on_la_grande_jatte.jpg"),
         ("content/chelsea.png", "style/vangogh_starry_night.jpg"),
         ("content/rocket.jpg", "style/hokusai_great_wave_met_jp1847.jpg")]


def log(*a) -> None:
    print("[never_worse]", *a, file=sys.stderr, flush=True)


#: The pairs run this far (12): every photo with at least one painting, astronaut and chelsea with all three,
#: and the pair kept back at 512 px. `--set all` is the whole grid (21 at 256 px, 3 at 512 px).
CORE = [("content/astronaut.png", s, 256) for s in STYLES] + [("content/chelsea.png", s, 256) for s in STYLES] + [
    ("content/coffee.png", STYLES[2], 256), ("content/rocket.jpg", STYLES[1], 256),
    ("inspection/hazelnut_toy_crack.jpg", STYLES[0], 256), ("inspection/hazelnut_toy_good.jpg", STYLES[2], 256),
    ("inspection/texture_brick_cc0.png", STYLES[1], 256), (*LARGE[0], 512)]


def all_pairs(which: str = "all") -> list:
    if which == "core":
        return list(CORE)
    pairs = [(c, s, 256) for c in CONTENTS for s in STYLES]
    pairs += [(c, s, 512) for c, s in LARGE]
    return pairs


def key(content: str, style: str, size: int) -> str:
    return f"{Path(content).name}:{Path(style).name}:{size}"


def chosen(spec: str, which: str = "all") -> list:
    pairs = all_pairs(which)
    if not spec:
        return pairs
    pairs = all_pairs("all")
    want = set(spec.split(","))
    out = [p for p in pairs if key(*p) in want]
    missing = want - {key(*p) for p in out}
    if missing:
        raise SystemExit(f"unknown pair(s): {', '.join(sorted(missing))}")
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def machine() -> dict:
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())}


def _parallel(args, todo: list, run_one) -> None:
    """Run ``run_one(pair)`` for each pair, ``--jobs`` at a time (each child then gets one torch thread:
    two 2-thread OpenMP pools on 2 cores spin against each other and run several times slower)."""
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run_one, todo))


def _threads(args) -> int:
    return args.threads or (1 if args.jobs > 1 else 0)


def phase_seed(args) -> None:
    lock = threading.Lock()
    cache = load(args.cache)
    todo = [p for p in chosen(args.pairs, args.set) if "final" not in cache.get(key(*p), {})]

    def one(pair):
        c, s, size = pair
        k = key(c, s, size)
        log(f"seed {k}")
        r = run_worker("seed_final", {"content": str(SHARED / c), "style": str(SHARED / s), "size": size,
                                      "steps": 1000, "threads": _threads(args)})
        r["machine"] = machine()
        r["torch_threads"] = _threads(args) or os.cpu_count()
        if "error" in r:
            log(f"  {k} error: {r['error']}")
            return
        with lock:
            cache[k] = r
            save(args.cache, cache)
        log(f"  {k} loss {r['final']['total']:.6g} in {r['loop_s']:.0f} s")

    _parallel(args, todo, one)


def phase_default(args) -> None:
    lock = threading.Lock()
    seeds = load(args.cache)
    out = load(args.out)
    todo = []
    for c, s, size in chosen(args.pairs, args.set):
        k = key(c, s, size)
        if k not in seeds:
            log(f"skip {k}: no seed loss cached yet")
        elif args.redo or k not in out:
            todo.append((c, s, size))

    def one(pair):
        c, s, size = pair
        k = key(c, s, size)
        target = seeds[k]["final"]["total"]
        log(f"default {k} (seed loss {target:.6g})")
        spec = {"content": str(SHARED / c), "style": str(SHARED / s), "size": size, "preset": args.preset,
                "target": target, "threads": _threads(args)}
        if args.trace:  # one long trajectory on which stop rules are replayed (see replay())
            spec.update(overrides={"steps": TRACE_STEPS, "on_stall": "fp32"},
                        trace={"every16": 10, "every32": 5, "fp32_no_stop": True})
        r = run_worker("fast", spec)
        r["machine"] = machine()
        r["torch_threads"] = _threads(args) or os.cpu_count()
        with lock:
            out[k] = r
            save(args.out, out)
        if "error" in r:
            log(f"  {k} error: {r['error']}")
        else:
            log(f"  {k} final {r['final_fp32']['total'] / target:.4f}x seed, {r['steps_done']} steps, "
                f"stop: {r.get('stop_reason')}, loop {r['loop_s']:.1f} s")

    _parallel(args, todo, one)


#: Steps of a traced run, and the stop rules replayed on it: (name, fp32 stall tolerance, window, step budget);
#: tolerance None = the earlier rule (stop at the first 16-bit stall).
TRACE_STEPS = 1000
RULES = [("stop at the bf16 stall, <= 600 steps (before)", None, 20, 600),
         ("fp32 after the bf16 stall, stop at the fp32 stall 0.1%/20, <= 1000 steps", 1e-3, 20, 1000),
         ("fp32 after the bf16 stall, stop at the fp32 stall 0.1%/20, <= 800 steps", 1e-3, 20, 800),
         ("fp32 after the bf16 stall, stop at the fp32 stall 0.1%/20, <= 600 steps", 1e-3, 20, 600),
         ("fp32 after the bf16 stall, stop at the fp32 stall 0.2%/20, <= 1000 steps", 2e-3, 20, 1000)]


def _stalled(history: list, tol: float, window: int) -> bool:
    return len(history) > window and history[-1 - window] - history[-1] < tol * abs(history[-1 - window])


def replay(run: dict, target: float) -> dict:
    """Where each of RULES stops on a traced trajectory, the seed loss of the image there and the loop time.

    The image a rule stops with is the trajectory's image at that step (the run is deterministic up to
    there). Its loss is the last judged one at or before that step: judged every 5 steps in fp32, so the
    figure is never better than the image's own.
    """
    tr = run["trace"]
    steps = tr["steps"]  # (step, loop seconds, loss of the step's start image, shape)
    judged = tr["judged"]  # (step, loop seconds, seed loss of the image after the step, in fp32 phase)
    switch = tr["fp32_from_step"]  # first fp32 step, or None
    out = {}
    for name, tol, window, budget in RULES:
        stop = min(budget, len(steps))
        if switch is not None and switch - 1 <= budget:
            if tol is None:
                stop = switch - 1
            else:
                history = []
                for step, _, loss, _ in steps[switch - 1: budget]:
                    history.append(loss)
                    if _stalled(history, tol, window):
                        stop = step
                        break
        value = [j for j in judged if j[0] <= stop][-1]
        out[name] = {"stop_step": stop, "judged_at_step": value[0], "seed_loss": value[2],
                     "ratio": value[2] / target, "loop_s": steps[stop - 1][1]}
    return out


def summary(args) -> dict:
    seeds, runs = load(args.cache), load(args.out)
    rows = []
    for c, s, size in chosen(args.pairs, args.set):
        k = key(c, s, size)
        if k not in seeds or k not in runs or "error" in runs[k]:
            continue
        seed, run = seeds[k], runs[k]
        target = seed["final"]["total"]
        cross = run.get("first_crossing")
        seed_s = seed["loop_s"] + seed.get("prepare_s", 0.0)
        to_seed = (run["prepare_s"] + cross["loop_s"]) if cross else None
        untrusted = seed.get("timing_untrusted")  # e.g. the seed run was paused: its loss holds, its seconds not
        rows.append({
            "pair": k, "seed_loss": target, "default_loss": run["final_fp32"]["total"],
            "ratio": run["final_fp32"]["total"] / target, "steps": run["steps_done"],
            "step_cap": run.get("settings", {}).get("steps"),
            "stop_reason": run.get("stop_reason"), "why_stopped": run.get("why_stopped"),
            "fp32_from_step": run.get("fp32_from_step"), "default_s": run["prepare_s"] + run["loop_s"],
            "seed_s": seed_s, "time_to_seed_loss_s": to_seed,
            "seed_time_over_time_to_seed_loss": (seed_s / to_seed) if to_seed and not untrusted else None,
            **({"seed_timing_untrusted": untrusted} if untrusted else {}),
            "peak_rss_mb": run.get("peak_rss_mb"),
            **({"rules": replay(run, target), "fp32_from_step": run["trace"]["fp32_from_step"]}
               if "trace" in run else {}),
        })
    speed = [r["seed_time_over_time_to_seed_loss"] for r in rows if r["seed_time_over_time_to_seed_loss"]]
    rules = {}
    for name, *_ in RULES:
        got = [r["rules"][name] for r in rows if "rules" in r]
        if got:
            rules[name] = {"pairs": len(got), "worse_than_seed": sum(g["ratio"] > 1.0 for g in got),
                           "worst_ratio": max(g["ratio"] for g in got),
                           "median_ratio": statistics.median(g["ratio"] for g in got),
                           "median_stop_step": statistics.median(g["stop_step"] for g in got),
                           "median_loop_s": statistics.median(g["loop_s"] for g in got)}
    return {
        "rules_replayed": rules,
        "tool": "benchmarks/bench_never_worse.py", "machine": machine(), "preset": args.preset,
        "pairs": rows, "n_pairs": len(rows),
        "worst_ratio": max((r["ratio"] for r in rows), default=None),
        "never_worse": bool(rows) and all(r["ratio"] <= 1.0 for r in rows),
        "median_seed_time_over_time_to_seed_loss": statistics.median(speed) if speed else None,
        "note": "seed_s is gafu's seed preset (fp32) on this machine, from the seed cache (its own load); "
                "time_to_seed_loss_s excludes the fp32 checks; a seed entry with timing_untrusted (its run "
                "was paused or shared the machine unevenly) gives its loss but no time ratio",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("phase", choices=["seed", "default", "report"])
    p.add_argument("--pairs", default="", help="comma list of content:style:size (default: all)")
    p.add_argument("--preset", default="fast", help="the preset judged (default: fast, gafu's default)")
    p.add_argument("--set", choices=["core", "all"], default="core",
                   help="core: the 12 pairs run so far (default); all: 21 pairs at 256 px and 3 at 512 px")
    p.add_argument("--jobs", type=int, default=1, help="children at once (each then gets 1 torch thread)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per child (default: all, or 1 with --jobs > 1)")
    p.add_argument("--cache", type=Path, default=RESULTS / "never_worse_seed.json")
    p.add_argument("--out", type=Path, default=RESULTS / "never_worse_default.json")
    p.add_argument("--redo", action="store_true", help="run default pairs again even if present in --out")
    p.add_argument("--trace", action="store_true",
                   help=f"run {TRACE_STEPS} steps with on_stall='fp32' and no fp32 stop, judging the image every 5-10 "
                   "steps, and replay the stop rules of RULES on that trajectory")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.phase == "seed":
        phase_seed(args)
    elif args.phase == "default":
        phase_default(args)
    result = summary(args)
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
