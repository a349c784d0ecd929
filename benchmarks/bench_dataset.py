"""Benchmark: gafu dataset stylize throughput, workers, Ray, memory and the job layer's own cost.

    flock /tmp/gafu-cpu.lock .venv/bin/python benchmarks/bench_dataset.py --out benchmarks/results/bench_dataset_512.json
    .venv/bin/python benchmarks/bench_dataset.py --quick        # plumbing check: 4 images at 128 px

The input tree: the six content/inspection photos of ../shared/images, each shrunk (Lanczos) to a
long side of ``--size`` px (512) and saved as PNG, copied into two class folders (12 images; the
brick texture is greyscale). Outputs keep the input size (no resize inside the timed part).
Style: Van Gogh, The Starry Night (gafu/data). Every configuration runs in its own child process:

- ``bare``: the loop a user would write without the job layer: ``FastStylizer.run`` + ``PIL.save``
  per image, one process, onnxruntime's default threads (one per core);
- ``job_w1``: ``gafu.dataset.stylize`` with one worker (this process, default threads);
- ``job_w1_t1``: the same with one thread;
- ``job_w2``: two local worker processes (spawn), one thread each;
- ``ray_w2``: two Ray actors (0.5 CPU each) on a local cluster (``ray.init(num_cpus=2)``, 127.0.0.1),
  cluster start timed separately;
- ``optimize``: method optimize, ``--opt-steps`` steps at ``--opt-size`` px, two images.

Each of ``--rounds`` rounds runs every configuration (starting one further along each round), and
ratios are taken within a round (median over rounds), so drifting load from other processes hits
the compared configurations alike. Reported per configuration: wall seconds of the call (worker start and model
loading included), seconds to the first output, images/s over the whole call and in steady state
(after every worker produced its first image), and peak RSS per worker process (ru_maxrss,
reported by each worker from inside). Job-layer overhead is given two ways: (1) end to end,
``job_w1`` vs ``bare`` wall time per image (medians over rounds), (2) directly: the per-item
operations the layer adds (sha256 of input and output, temp file + rename instead of a plain
write, a manifest row, plan and compaction per item) timed in isolation on the real files, as a
share of ``bare``'s seconds per image. Prints JSON on stdout (and to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
SOURCES = ["content/astronaut.png", "content/chelsea.png", "content/coffee.png", "content/rocket.jpg",
           "inspection/hazelnut_toy_good.jpg", "inspection/texture_brick_cc0.png"]
STYLE = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class RssFactory:
    """Wraps the dataset's worker factory: each row also carries the worker process's peak RSS."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self):
        work = self.inner()

        def run(item):
            row = work(item)
            row["peak_rss_mb"] = round(_rss_mb(), 1)
            row["pid"] = os.getpid()
            return row

        return run


def make_tree(root: Path, size: int, count: int) -> Path:
    from PIL import Image

    src = root / "in"
    made = 0
    for copy in range(max(1, -(-count // len(SOURCES)))):
        for rel in SOURCES:
            if made == count:
                break
            with Image.open(IMAGES / rel) as im:
                im.load()
                mode = "L" if im.mode == "L" else "RGB"
                im = im.convert(mode)
                scale = size / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
                out = src / f"class{copy}" / (Path(rel).stem + ".png")
                out.parent.mkdir(parents=True, exist_ok=True)
                im.save(out)
            made += 1
    return src


# ---------------------------------------------------------------------------------------------
# children


def child_bare(cfg: dict) -> dict:
    from PIL import Image

    from gafu.fast import FastStylizer

    src, out = Path(cfg["in_dir"]), Path(cfg["out_dir"])
    files = sorted(src.rglob("*.png"))
    t0 = time.perf_counter()
    stylizer = FastStylizer(style=str(STYLE), max_size=1 << 20)
    stamps = []
    for f in files:
        with Image.open(f) as im:
            im.load()
            grey = im.mode == "L"
            rgb = im.convert("RGB")
        res = stylizer.run(rgb).image
        if grey:
            res = res.convert("L")
        dst = out / f.relative_to(src).with_name(f.stem + "__v0.png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        res.save(dst)
        stamps.append(time.perf_counter() - t0)
    return _rates(stamps, t0, workers=1, wall=time.perf_counter() - t0) | {"peak_rss_mb": [round(_rss_mb(), 1)]}


def _rates(stamps: list, t0: float, *, workers: int, wall: float) -> dict:
    n = len(stamps)
    k = min(workers, n - 1)
    steady = (n - k) / (stamps[-1] - stamps[k - 1]) if n > k and k >= 1 and stamps[-1] > stamps[k - 1] else None
    return {
        "images": n,
        "wall_s": round(wall, 3),
        "first_output_s": round(stamps[0], 3) if stamps else None,
        "images_per_s": round(n / wall, 4),
        "steady_images_per_s": round(steady, 4) if steady else None,
        "s_per_image": round(wall / n, 4),
    }


def child_job(cfg: dict) -> dict:
    from gafu import dataset
    from gafu.jobs import run_plan

    extra = {}
    ray_start = None
    if cfg.get("backend") == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level="warning")
        ray_start = time.perf_counter() - t
        extra["ray_options"] = {"address": None, "cpus_per_worker": 0.5, "gpus_per_worker": 0.0}
    kw = dict(styles=[str(STYLE)], method=cfg.get("method", "fast"), threads=cfg.get("threads"))
    if kw["method"] == "optimize":
        kw.update(steps=cfg["steps"], size=cfg["size"], limit=cfg["limit"])
    workers = cfg.get("workers", 1)
    if kw["threads"] is None and workers > 1:
        kw["threads"] = 1
    t0 = time.perf_counter()
    plan, factory = dataset.prepare(cfg["in_dir"], cfg["out_dir"], **kw)
    stamps, rows = [], []

    def on_row(row):
        stamps.append(time.perf_counter() - t0)
        rows.append(row)

    common = {"gafu_version": "bench", "licence": None, "settings": plan.settings}
    summary = run_plan(plan, RssFactory(factory), workers=workers, backend=cfg.get("backend", "local"),
                       on_row=on_row, common=common, **extra)
    wall = time.perf_counter() - t0
    if cfg.get("backend") == "ray":
        import ray

        ray.shutdown()
    per_worker = {}
    for r in rows:
        per_worker[r["pid"]] = max(per_worker.get(r["pid"], 0), r["peak_rss_mb"])
    parts = {k: round(statistics.median(r["timings"][k] for r in rows), 4) for k in rows[0]["timings"]}
    out = _rates(stamps, t0, workers=workers, wall=wall)
    out.update(failed=summary.failed, peak_rss_mb=sorted(per_worker.values()), workers_seen=len(per_worker),
               median_item_timings_s=parts, driver_peak_rss_mb=round(_rss_mb(), 1))
    if ray_start is not None:
        out["ray_init_s"] = round(ray_start, 3)
    return out


def child_overhead(cfg: dict) -> dict:
    """The layer's per-item operations, timed alone on a finished job's real files."""
    from gafu.image import atomic_write
    from gafu.jobs import read_rows, sha256_bytes
    from gafu.jobs.manifest import RowLog, write_rows_atomic
    from gafu.jobs.plan import build_plan

    out = Path(cfg["out_dir"])
    rows = read_rows(out / "manifest.jsonl")
    n = len(rows)
    scratch = Path(cfg["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    reps = 5
    t_hash = t_atomic = t_plain = t_row = 0.0
    for _ in range(reps):
        for r in rows:
            data_in = (Path(cfg["in_dir"]) / r["input"]).read_bytes()
            data_out = (out / r["output"]).read_bytes()
            t = time.perf_counter()
            sha256_bytes(data_in), sha256_bytes(data_out)
            t_hash += time.perf_counter() - t
            t = time.perf_counter()
            atomic_write(scratch / "a.png", lambda fh: fh.write(data_out))
            t_atomic += time.perf_counter() - t
            t = time.perf_counter()
            with open(scratch / "b.png", "wb") as fh:
                fh.write(data_out)
            t_plain += time.perf_counter() - t
        with RowLog(scratch / "m.jsonl", truncate=True) as log:
            t = time.perf_counter()
            for r in rows:
                log.append(r)
            t_row += time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(reps):
        build_plan(cfg["in_dir"], scratch / "plan", settings=rows[0]["settings"])
        write_rows_atomic(scratch / "m2.jsonl", rows)
        read_rows(scratch / "m2.jsonl")
    t_run = (time.perf_counter() - t) / reps
    per_item = {
        "sha256_in_out_s": t_hash / reps / n,
        "atomic_minus_plain_write_s": (t_atomic - t_plain) / reps / n,
        "manifest_row_s": t_row / reps / n,
        "plan_compact_read_per_item_s": t_run / n,
    }
    total = sum(per_item.values())
    return {"items": n, "per_item_s": {k: round(v, 6) for k, v in per_item.items()}, "total_per_item_s": round(total, 6)}


CHILDREN = {"bare": child_bare, "job": child_job, "overhead": child_overhead}


def run_child(kind: str, cfg: dict, timeout: int = 1800) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(cfg)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every configuration (ratios taken within a round)")
    ap.add_argument("--opt-size", type=int, default=256)
    ap.add_argument("--opt-steps", type=int, default=10)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--quick", action="store_true", help="4 images at 128 px, 1 round, 3 optimize steps")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, cfg = args.child
        print(json.dumps(CHILDREN[kind](json.loads(cfg))))
        return
    if args.quick:
        args.size, args.images, args.rounds, args.opt_size, args.opt_steps = 128, 4, 1, 64, 3

    work = Path(tempfile.mkdtemp(prefix="gafu-bench-dataset-"))
    try:
        src = make_tree(work, args.size, args.images)
        n = 0

        def out_dir() -> str:
            nonlocal n
            n += 1
            return str(work / f"out{n}")

        configs = {
            "bare": ("bare", {}),
            "job_w1": ("job", {}),
            "job_w1_t1": ("job", {"threads": 1}),
            "job_w2": ("job", {"workers": 2}),
        }
        if not args.no_ray:
            try:
                import ray  # noqa: F401

                configs["ray_w2"] = ("job", {"workers": 2, "backend": "ray"})
            except ImportError:
                pass
        results: dict = {name: [] for name in configs}
        last_job = None
        names = list(configs)
        for r in range(args.rounds):
            # every round runs every configuration, starting one further along: drifting load from
            # other processes then hits all of them alike, and ratios are taken within a round
            for name in names[r % len(names):] + names[: r % len(names)]:
                kind, extra = configs[name]
                out = out_dir()
                results[name].append(run_child(kind, {"in_dir": str(src), "out_dir": out, **extra}))
                if name == "job_w1":
                    last_job = out
        results["optimize"] = run_child("job", {"in_dir": str(src), "out_dir": out_dir(), "method": "optimize",
                                                "steps": args.opt_steps, "size": args.opt_size, "limit": 2})
        overhead = run_child("overhead", {"in_dir": str(src), "out_dir": last_job, "scratch": str(work / "scratch")})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def per_round(a: str, b: str, key: str, share: bool = False) -> dict:
        """a/b (or 1 - a/b as a share) within each round; the median over rounds."""
        vals = []
        for ra, rb in zip(results[a], results[b]):
            ratio = ra[key] / rb[key]
            vals.append(round(1 - ratio if share else ratio, 4))
        return {"median": round(statistics.median(vals), 4), "rounds": vals}

    bare_s = statistics.median(r["s_per_image"] for r in results["bare"])
    ratios = {
        "job_vs_bare_steady_overhead_share": per_round("job_w1", "bare", "steady_images_per_s", share=True),
        "job_vs_bare_wall_overhead_share": per_round("bare", "job_w1", "wall_s", share=True),
        "direct_overhead_share_of_bare_image": round(overhead["total_per_item_s"] / bare_s, 5),
        "w2_vs_w1_steady": per_round("job_w2", "job_w1", "steady_images_per_s"),
        "w2_vs_w1_images_per_s": per_round("job_w2", "job_w1", "images_per_s"),
        "w2_vs_w1t1_steady": per_round("job_w2", "job_w1_t1", "steady_images_per_s"),
        "w1_vs_w1t1_steady": per_round("job_w1", "job_w1_t1", "steady_images_per_s"),
    }
    if "ray_w2" in results:
        ratios["ray_w2_vs_local_w2_steady"] = per_round("ray_w2", "job_w2", "steady_images_per_s")
        ratios["ray_w2_vs_local_w2_images_per_s"] = per_round("ray_w2", "job_w2", "images_per_s")
    goals = {
        "job_layer_under_5pct": ratios["direct_overhead_share_of_bare_image"] < 0.05,
        "two_workers_at_least_1.6x": ratios["w2_vs_w1_steady"]["median"] >= 1.6,
    }
    import onnxruntime
    import torch

    report = {
        "benchmark": "bench_dataset",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "load_avg_at_end": list(os.getloadavg())},
        "params": {"size": args.size, "images": args.images, "rounds": args.rounds, "style": STYLE.name,
                   "opt_size": args.opt_size, "opt_steps": args.opt_steps},
        "results": results,
        "overhead_direct": overhead,
        "ratios": ratios,
        "goals": goals,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
