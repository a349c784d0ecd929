#!/usr/bin/env python
"""Speed benchmark of gafu against the seed (the TensorFlow tutorial code), in one invocation.

    python benchmarks/bench_speed.py                       # full run at 512 px (long: see below)
    python benchmarks/bench_speed.py --quick               # small sizes, < ~5 minutes, checks the plumbing
    python benchmarks/bench_speed.py --seed-final-json seed512.json   # cache/reuse the seed's 1000-step loss

Prints one JSON object on stdout (progress on stderr). Every measurement runs in a fresh child
process (this script with ``--worker``), so peak RSS is per measurement. Sections:

- ``machine``: CPU model, AMX / AVX512-BF16 flags, the ISA oneDNN dispatches to, torch version,
  threads; ``peak``: a 3x3-convolution microbenchmark in bf16 and fp32 (channels_last), TFLOP/s,
  and the resulting floor for one step (analytic FLOP count / bf16 peak).
- ``per_step`` (goal 1): seconds per step at ``--size`` for the seed's TensorFlow code
  (``benchmarks/tf_seed_reference.py`` run with ``--tf-python``, random weights: same cost), gafu
  ``--preset seed`` (fp32), ``--preset seed --precision bf16`` and the ``fast`` preset's steps.
  Median over ``--repeats`` runs of the median step (the first step of each run excluded).
- ``time_to_seed_quality`` (goal 2): the seed's loss after its ``--seed-steps`` (1000) steps at
  ``--size`` (computed by gafu's seed preset, fp32, which reproduces the TF code; or reused from
  ``--seed-final-json``), the seed's time (TF setup + steps x TF s/step), and the time the
  ``fast`` preset takes to first reach a loss no higher (evaluated in fp32 at the seed's
  resolution with the seed's loss; evaluation time excluded), plus its final loss.
- ``memory`` (goal 3): peak RSS of the fast preset at ``--size`` and of two steps at each of
  ``--memory-sizes``.
- ``quality_guard`` (goal 5): seed preset fp32 vs bf16 at equal steps, fp32-evaluated losses,
  and how far bf16 moves the image compared with an imperceptible perturbation of the start.
- ``profile``: torch.profiler's top ops of bf16 steps.

Timings on a shared machine are noisy: compare ratios measured in the same invocation.
The seed's 1000 steps at 512 px take ~20-30 min of CPU; use ``--seed-final-json`` to reuse them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "gafu" / "data"
DEFAULT_TF_PYTHON = "/work/tfvenv/bin/python"


def log(*a) -> None:
    print("[bench_speed]", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# FLOPs of one step (analytic)


def step_gflop(height: int, width: int) -> float:
    """GFLOP of one seed step at HxW: VGG19 to relu5_2 forward + input-gradient backward + Grams."""
    convs = [(3, 64), (64, 64), "P", (64, 128), (128, 128), "P", (128, 256), (256, 256), (256, 256),
             (256, 256), "P", (256, 512), (512, 512), (512, 512), (512, 512), "P", (512, 512), (512, 512)]
    style_after = {0, 3, 7, 12, 16}  # indices (in convs) of block1_conv1 .. block5_conv1
    h, w = height, width
    conv = gram = 0.0
    for i, c in enumerate(convs):
        if c == "P":
            h, w = h // 2, w // 2
            continue
        cin, cout = c
        conv += 2.0 * cin * cout * 9 * h * w
        if i in style_after:
            gram += 2.0 * cout * cout * h * w
    return (2 * conv + 2 * gram) / 1e9  # forward + backward (input gradient only)


# ------------------------------------------------------------------------------------------------
# Workers (run in child processes)


def _setup_torch(threads: int):
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_steps(spec: dict) -> dict:
    """Time `steps` optimizer steps of a config at a size."""
    torch = _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset(spec["preset"]).replace(size=spec["size"], **spec.get("overrides", {}))
    cfg = cfg.replace(scales=(), scale_steps=(), stop_tol=0.0)  # steps at full size only
    t0 = time.perf_counter()
    st = StyleTransfer(spec["content"], [spec["style"]], cfg)
    prepare = time.perf_counter() - t0
    times, losses = [], []
    last = 0.0
    for it in st.run(steps=spec["steps"], tune_allocator=True):
        times.append(it.elapsed - last)
        last = it.elapsed
        losses.append(it.loss)
    evals = st._lbfgs.evaluations if st._lbfgs is not None else len(times)
    rest = times[1:] or times
    return {
        "shape": list(st.content.shape[-2:]),
        "prepare_s": prepare,
        "step_s": times,
        "median_step_s": statistics.median(rest),
        "evaluations": evals,
        "losses": losses,
        "final_fp32": st.evaluate()["total"],
        "peak_rss_mb": _peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
    }


def worker_seed_final(spec: dict) -> dict:
    """The seed preset's full run: the reference loss."""
    _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset("seed").replace(size=spec["size"], steps=spec["steps"])
    t0 = time.perf_counter()
    st = StyleTransfer(spec["content"], [spec["style"]], cfg)
    prepare = time.perf_counter() - t0
    losses = [it.loss for it in st.run(tune_allocator=True)]
    loop = time.perf_counter() - t0 - prepare
    return {
        "content": Path(spec["content"]).name,
        "style": Path(spec["style"]).name,
        "size": spec["size"],
        "steps": spec["steps"],
        "shape": list(st.content.shape[-2:]),
        "final": st.evaluate(),
        "loss_curve": {str(i): losses[i - 1] for i in (1, 10, 100, 200, 300, 500, 700, 1000) if i <= len(losses)},
        "prepare_s": prepare,
        "loop_s": loop,
        "peak_rss_mb": _peak_rss_mb(),
        "implementation": "gafu --preset seed (fp32, KerasAdam), which reproduces the TF tutorial",
    }


def worker_fast(spec: dict) -> dict:
    """Run a preset to completion; find when it first reaches the target loss (fp32-evaluated)."""
    torch = _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset(spec["preset"]).replace(size=spec["size"], **spec.get("overrides", {}))
    target = spec["target"]
    # The judge: the seed's loss in fp32 with the seed's own pixels (TF's JPEG decoder), on the image
    # as it is saved (8 bits), prepared before the clock starts.
    judge = StyleTransfer(spec["content"], [spec["style"]], get_preset("seed").replace(size=spec["size"]))

    def seed_loss(image):
        return judge.evaluate(torch.round(image * 255.0) / 255.0)

    t0 = time.perf_counter()
    init_image = None
    if spec.get("init") == "fast":  # start from gafu fast's one-pass Magenta result (its time counts)
        from gafu.fast import fast_stylize

        init_image = fast_stylize(spec["content"], spec["style"])
    st = StyleTransfer(spec["content"], [spec["style"]], cfg, init_image=init_image)
    prepare = time.perf_counter() - t0
    full = tuple(st.content.shape[-2:])
    paused = 0.0
    crossing = None
    checks = 0
    curve = []
    # trace: judge the image every `every16` steps in 16 bit and every `every32` once the run is in fp32,
    # and (fp32_no_stop) let an on_stall='fp32' run go on to its last step after the switch, so that
    # stop rules can be replayed on one trajectory (a rule stopping at step k leaves the image of step k).
    trace = spec.get("trace")
    judged = []
    hit = []  # the 16-bit loss stalled at this step (the image an on_stall='stop' run would end with)
    if trace and trace.get("fp32_no_stop"):
        import gafu.optimize.loop as loop_module

        stalled = loop_module._stalled

        def patched(history, tol, window):
            if st.fp32_from_step is not None:
                return False
            if stalled(history, tol, window):
                hit.append(True)
                return True
            return False

        loop_module._stalled = patched
    for it in st.run(tune_allocator=True):
        curve.append((it.step, round(it.elapsed - paused, 3), it.loss, list(it.shape)))
        if trace:
            every = trace["every32"] if st.fp32_from_step is not None else trace["every16"]
            if it.step % every == 0 or it.step == 1 or hit:
                hit.clear()
                p0 = time.perf_counter()
                judged.append((it.step, round(it.elapsed - paused, 3), seed_loss(st.image)["total"],
                               st.fp32_from_step is not None))
                paused += time.perf_counter() - p0
        # it.loss is the (16-bit) loss before this step; check the image after it in fp32 once close.
        if crossing is None and tuple(it.shape) == full and it.loss <= 1.03 * target:
            paused_before = paused  # it.elapsed includes the earlier checks, not this one
            p0 = time.perf_counter()
            value = seed_loss(st.image)["total"]
            checks += 1
            paused += time.perf_counter() - p0
            if value <= target:
                crossing = {"step": it.step, "loop_s": it.elapsed - paused_before, "fp32_loss": value}
                if spec.get("stop_at_target"):
                    break
    loop = time.perf_counter() - t0 - prepare - paused
    final = seed_loss(st.image)
    return {
        "preset": spec["preset"],
        "init": spec.get("init", cfg.init),
        "settings": {k: v for k, v in cfg.to_dict().items() if k in (
            "precision", "optimizer", "steps", "scales", "scale_steps", "stop_tol", "lbfgs_history", "lr")},
        "shape": list(full),
        "prepare_s": prepare,
        "loop_s": loop,
        "steps_done": st.steps_done,
        "evaluations": (st._lbfgs.evaluations if st._lbfgs is not None else None),
        "final_fp32": final,
        "reached_target": final["total"] <= target,
        "first_crossing": crossing,
        "fp32_checks": checks,
        "curve_every_10": curve[::10] + curve[-1:],
        **({"trace": {"settings": trace, "fp32_from_step": st.fp32_from_step, "steps": curve,
                      "judged": judged}} if trace else {}),
        "fp32_fallback_steps": st.fp32_fallback_steps,
        "stop_reason": st.stop_reason,
        "why_stopped": st.stop_summary(),
        "outside_box_fraction": float((st._image.detach() - 0.5).abs().gt(0.5).float().mean()),
        "fp32_from_step": st.fp32_from_step,
        "judge": "the seed's loss, fp32, seed pixels (TF JPEG decoder), on the 8-bit image",
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_run_memory(spec: dict) -> dict:
    """Peak RSS of a whole run of a preset, as `gafu stylize` runs it (no extra evaluations)."""
    _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    t0 = time.perf_counter()
    st = StyleTransfer(spec["content"], [spec["style"]], get_preset(spec["preset"]).replace(size=spec["size"]))
    for _ in st.run(tune_allocator=True):
        pass
    final = st.evaluate()["total"]
    return {"shape": list(st.content.shape[-2:]), "steps_done": st.steps_done, "final_fp32": final,
            "wall_s": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


def worker_memory(spec: dict) -> dict:
    """Peak RSS of preparing a run and doing two steps at a size."""
    _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset(spec["preset"]).replace(size=spec["size"], scales=(), scale_steps=())
    t0 = time.perf_counter()
    st = StyleTransfer(spec["content"], [spec["style"]], cfg)
    prepare = time.perf_counter() - t0
    steps = [it.elapsed for it in st.run(steps=2, tune_allocator=True)]
    return {"shape": list(st.content.shape[-2:]), "prepare_s": prepare, "step_s": steps[-1] - steps[0],
            "peak_rss_mb": _peak_rss_mb()}


def worker_quality(spec: dict) -> dict:
    """Seed preset fp32 vs bf16 at equal steps (goal 5), with a chaos yardstick."""
    torch = _setup_torch(spec["threads"])
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset("seed").replace(size=spec["size"], steps=spec["steps"])
    runs = {}
    for name, c, noise in (("fp32", cfg, False), ("bf16", cfg.replace(precision="bf16"), False),
                           ("fp32_start_plus_1e-3_noise", cfg, True)):
        st = StyleTransfer(spec["content"], [spec["style"]], c)
        if noise:
            with torch.no_grad():
                g = torch.Generator().manual_seed(0)
                st._image.add_(1e-3 * torch.randn(st._image.shape, generator=g)).clamp_(0, 1)
        t0 = time.perf_counter()
        list(st.run(tune_allocator=True))
        runs[name] = (st.evaluate()["total"], st.image, time.perf_counter() - t0, st.content)
    ref, img, _, content = runs["fp32"]
    out = {"size": spec["size"], "steps": spec["steps"], "shape": list(img.shape[-2:])}
    for name, (loss, im, secs, _) in runs.items():
        out[name] = {"final_fp32_loss": loss, "ratio_to_fp32": loss / ref, "loop_s": secs,
                     "mean_abs_pixel_diff_to_fp32": float((im - img).abs().mean())}
    out["mean_abs_pixel_change_from_content"] = float((img - content).abs().mean())
    out["bf16_within_2_percent"] = abs(out["bf16"]["ratio_to_fp32"] - 1) <= 0.02
    if spec.get("save"):
        from gafu.image import save_image

        save_image(torch.cat([runs["fp32"][1], runs["bf16"][1]], -1), spec["save"], overwrite=True)
        out["saved_side_by_side"] = spec["save"]
    return out


def worker_profile(spec: dict) -> dict:
    torch = _setup_torch(spec["threads"])
    from torch.profiler import ProfilerActivity, profile

    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    cfg = get_preset("seed").replace(size=spec["size"], precision=spec["precision"])
    st = StyleTransfer(spec["content"], [spec["style"]], cfg)
    it = st.run(steps=2 + spec["steps"], tune_allocator=True)
    next(it)
    next(it)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(spec["steps"]):
            next(it)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=spec.get("rows", 15))
    return {"precision": spec["precision"], "size": spec["size"], "steps": spec["steps"], "table": table.splitlines()}


def worker_peak(spec: dict) -> dict:
    """3x3 convolution throughput (channels_last), bf16 and fp32."""
    torch = _setup_torch(spec["threads"])
    import torch.nn.functional as F

    out = {}
    c, h, w = 256, 96, 128
    flop = 2.0 * c * c * 9 * h * w
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        x = torch.randn(1, c, h, w, dtype=dt).contiguous(memory_format=torch.channels_last)
        k = torch.randn(c, c, 3, 3, dtype=dt).contiguous(memory_format=torch.channels_last)
        for _ in range(3):
            F.conv2d(x, k, padding=1)
        ts = []
        for _ in range(spec.get("reps", 15)):
            t0 = time.perf_counter()
            F.conv2d(x, k, padding=1)
            ts.append(time.perf_counter() - t0)
        out[f"conv3x3_{name}_tflops"] = flop / min(ts) / 1e12
        out[f"conv3x3_{name}_tflops_median"] = flop / statistics.median(ts) / 1e12
    out["shape"] = f"1x{c}x{h}x{w}, 3x3, {c}->{c}, channels_last, best of {spec.get('reps', 15)}"
    return out


WORKERS = {
    "steps": worker_steps,
    "seed_final": worker_seed_final,
    "fast": worker_fast,
    "memory": worker_memory,
    "run_memory": worker_run_memory,
    "quality": worker_quality,
    "profile": worker_profile,
    "peak": worker_peak,
}


# ------------------------------------------------------------------------------------------------
# Driver


def run_worker(kind: str, spec: dict, timeout: float | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1], "returncode": r.returncode}
    out = json.loads(r.stdout)
    out["wall_s"] = time.perf_counter() - t0
    return out


def run_tf(args, steps: int) -> dict:
    script = ROOT / "benchmarks" / "tf_seed_reference.py"
    if not args.tf_python or not Path(args.tf_python).exists():
        return {"skipped": f"TensorFlow python not found at {args.tf_python!r} (install the benchmark extra, see "
                           "benchmarks/README.md, and pass --tf-python)"}
    if not script.exists():
        return {"skipped": f"{script} is missing"}
    cmd = [args.tf_python, str(script), args.content, args.style, "--size", str(args.size), "--steps", str(steps),
           "--random-weights", "--no-per-step"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout)


def machine_info(threads: int) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", text)
        flags = re.search(r"flags\s*:\s*(.*)", text)
        info["cpu_model"] = model.group(1) if model else None
        fl = set(flags.group(1).split()) if flags else set()
        info["cpu_flags"] = sorted(f for f in fl if f.startswith("amx") or f in ("avx512_bf16", "avx512f", "avx512_fp16"))
    except OSError:
        pass
    code = ("import torch,torch.nn.functional as F;cl=torch.channels_last;"
            "F.conv2d(torch.rand(1,16,8,8).bfloat16().to(memory_format=cl),"
            "torch.rand(16,16,3,3).bfloat16().to(memory_format=cl))")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, ONEDNN_VERBOSE="1"))
        isa = re.search(r"isa:([^\n]*)", r.stdout + r.stderr)
        info["onednn_isa"] = isa.group(1).strip() if isa else None
    except (OSError, subprocess.TimeoutExpired):
        info["onednn_isa"] = None
    import torch

    info["torch"] = torch.__version__
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["threads"] = threads or torch.get_num_threads()
    info["load_average_at_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return info


def median_of(runs: list, key: str):
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


#: Other levers of goal 2, run with --variants: name -> (preset, config overrides, worker options).
#: Each is timed from preparation to the first step whose image has a loss no higher than the seed's.
LEVERS = {
    "fast": ("fast", {}, {}),
    "fast_history_10": ("fast", {"lbfgs_history": 10}, {}),
    "fast_coarse_half_100": ("fast", {"scales": [0.5], "scale_steps": [100]}, {}),
    "fast_coarse_quarter_half": ("fast", {"scales": [0.25, 0.5], "scale_steps": [100, 100]}, {}),
    "fast_from_magenta": ("fast", {}, {"init": "fast"}),
    "adam_bf16_lr_0.05": ("seed", {"precision": "bf16", "lr": 0.05, "steps": 1000}, {}),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--content", default=str(DATA / "chelsea.jpg"))
    p.add_argument("--style", default=str(DATA / "vangogh_starry_night.jpg"))
    p.add_argument("--size", type=int, default=512, help="longest side (default 512, the seed's)")
    p.add_argument("--steps", type=int, default=12, help="steps per timing run (first one excluded)")
    p.add_argument("--repeats", type=int, default=3, help="timing runs per implementation (median)")
    p.add_argument("--threads", type=int, default=0, help="torch/TF threads (default: all cores)")
    p.add_argument("--tf-python", default=DEFAULT_TF_PYTHON, help="python of a venv with tensorflow-cpu")
    p.add_argument("--seed-steps", type=int, default=1000, help="the seed's step count (1000)")
    p.add_argument("--seed-final-json", help="reuse the seed's final loss from this file if it matches "
                   "(content, style, size, steps); otherwise compute it and write it there")
    p.add_argument("--fast-preset", default="fast")
    p.add_argument("--memory-sizes", default="1024,2048,4096")
    p.add_argument("--variants", default="",
                   help="comma list of other ways to the seed's loss to time (each stops at it): " + ", ".join(LEVERS))
    p.add_argument("--quality-steps", type=int, default=200, help="steps of the fp32-vs-bf16 guard")
    p.add_argument("--quality-size", type=int, default=0, help="size of the guard (default: --size)")
    p.add_argument("--save-images", help="folder for side-by-side images (optional)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: tf,per_step,time,memory,quality,profile")
    p.add_argument("--timeout", type=float, default=None, help="per child process, seconds")
    p.add_argument("--quick", action="store_true",
                   help="small and short (size 192, 4 steps, 1 repeat, seed 100 steps, fast preset stopped at the seed's "
                        "loss, memory at 256): checks the plumbing in a few minutes; not the issue's numbers")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        kind, spec = args.worker
        print(json.dumps(WORKERS[kind](json.loads(spec))))
        return 0

    if args.quick:
        args.size, args.steps, args.repeats = 192, 4, 1
        args.seed_steps = 100
        args.memory_sizes = "256"
        args.quality_steps = 30
    unknown = [v for v in args.variants.split(",") if v and v not in LEVERS]
    if unknown:  # before any measurement, not after half an hour of them
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    skip = set(filter(None, args.skip.split(",")))
    base = {"content": args.content, "style": args.style, "threads": args.threads}
    t_start = time.perf_counter()
    result = {
        "tool": "benchmarks/bench_speed.py",
        "argv": sys.argv[1:],
        "quick": args.quick,
        "note": "timings on a shared machine are noisy; ratios are measured in this same invocation",
        "content": Path(args.content).name,
        "style": Path(args.style).name,
        "size": args.size,
    }
    log("machine info")
    result["machine"] = machine_info(args.threads)
    log("conv peak")
    result["peak"] = run_worker("peak", dict(base), args.timeout)

    # ---- goal 1: per step ------------------------------------------------------------------
    per = {}
    if "per_step" not in skip:
        if "tf" not in skip:
            tf_runs = []
            for i in range(args.repeats):
                log(f"TF seed reference, run {i + 1}/{args.repeats}")
                tf_runs.append(run_tf(args, args.steps + 1))
            ok = [r for r in tf_runs if "timing" in r]
            per["tf_seed"] = {
                "median_step_s": statistics.median(r["timing"]["step_s_median_excl_first"] for r in ok) if ok else None,
                "runs_median_step_s": [r["timing"]["step_s_median_excl_first"] for r in ok],
                "setup_s": statistics.median(r["timing"]["setup_s"] for r in ok) if ok else None,
                "peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
                "versions": ok[0]["versions"] if ok else None,
                "shape_nhwc": ok[0]["content_shape"] if ok else None,
                "problems": [r for r in tf_runs if "timing" not in r],
            }
        variants = {
            "gafu_seed_fp32": ("seed", {}),
            "gafu_seed_bf16": ("seed", {"precision": "bf16"}),
            f"gafu_{args.fast_preset}_steps": (args.fast_preset, {}),
        }
        for name, (preset, over) in variants.items():
            runs = []
            for i in range(args.repeats):
                log(f"{name}, run {i + 1}/{args.repeats}")
                runs.append(run_worker("steps", dict(base, preset=preset, size=args.size, steps=args.steps + 1,
                                                     overrides=over), args.timeout))
            ok = [r for r in runs if "median_step_s" in r]
            per[name] = {
                "median_step_s": median_of(ok, "median_step_s"),
                "runs_median_step_s": [r["median_step_s"] for r in ok],
                "evaluations_per_step": (ok[0]["evaluations"] / len(ok[0]["step_s"])) if ok else None,
                "peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
                "shape": ok[0]["shape"] if ok else None,
                "errors": [r["error"] for r in runs if "error" in r],
            }
        shape = next((v["shape"] for v in per.values() if v.get("shape")), None)
        if shape:
            gflop = step_gflop(*shape)
            per["gflop_per_step"] = gflop
            bf16_peak = result["peak"].get("conv3x3_bf16_tflops")
            if bf16_peak:
                per["floor_s_per_step_at_bf16_conv_peak"] = gflop / 1e3 / bf16_peak
            ratios = {}
            tf = per.get("tf_seed", {}).get("median_step_s")
            for name in variants:
                s = per[name]["median_step_s"]
                if s:
                    per[name]["achieved_tflops"] = gflop / 1e3 / s
                    if tf:
                        ratios[f"tf_seed / {name}"] = tf / s
                    if bf16_peak:
                        per[name]["fraction_of_bf16_conv_peak"] = gflop / 1e3 / s / bf16_peak
            fp32 = per["gafu_seed_fp32"]["median_step_s"]
            bf16 = per["gafu_seed_bf16"]["median_step_s"]
            if fp32 and bf16:
                ratios["gafu_seed_fp32 / gafu_seed_bf16"] = fp32 / bf16
            per["speedup"] = ratios
            per["goal1_bf16_at_least_8x_tf"] = (ratios.get("tf_seed / gafu_seed_bf16", 0) >= 8) if tf else None
    result["per_step"] = per

    # ---- goal 2: time to the seed's quality -------------------------------------------------
    if "time" not in skip:
        seed_final = None
        cache = Path(args.seed_final_json) if args.seed_final_json else None
        want = {"content": Path(args.content).name, "style": Path(args.style).name, "size": args.size,
                "steps": args.seed_steps}
        if cache and cache.exists():
            cached = json.loads(cache.read_text())
            if all(cached.get(k) == v for k, v in want.items()):
                seed_final = dict(cached, source=f"reused from {cache}")
            else:
                log(f"{cache} does not match {want}; recomputing")
        if seed_final is None:
            log(f"seed preset, {args.seed_steps} steps at {args.size} px (the reference loss; long)")
            seed_final = run_worker("seed_final", dict(base, size=args.size, steps=args.seed_steps), args.timeout)
            if "error" not in seed_final:
                seed_final["source"] = "computed in this invocation"
                if cache:
                    cache.write_text(json.dumps({k: v for k, v in seed_final.items() if k != "source"}, indent=1))
        t2 = {"seed_final": seed_final}
        if "final" in seed_final:
            target = seed_final["final"]["total"]
            log(f"{args.fast_preset} preset to the seed's loss {target:.5g}")
            fast = run_worker("fast", dict(base, preset=args.fast_preset, size=args.size, target=target,
                                           stop_at_target=args.quick), args.timeout)
            t2["fast"] = fast
            tf = per.get("tf_seed", {})
            if tf.get("median_step_s"):
                t2["seed_time_s"] = {"tf_setup_s": tf["setup_s"], "steps": args.seed_steps,
                                     "tf_s_per_step": tf["median_step_s"],
                                     "total": tf["setup_s"] + args.seed_steps * tf["median_step_s"]}
            if "gafu_seed_fp32" in per and per["gafu_seed_fp32"]["median_step_s"]:
                t2["gafu_seed_fp32_time_s"] = args.seed_steps * per["gafu_seed_fp32"]["median_step_s"]
            cross = fast.get("first_crossing") if isinstance(fast, dict) else None
            if cross:
                fast_time = fast["prepare_s"] + cross["loop_s"]
                t2["fast_time_to_seed_loss_s"] = fast_time
                if "seed_time_s" in t2:
                    t2["ratio_seed_time_over_fast_time"] = t2["seed_time_s"]["total"] / fast_time
                    t2["ratio_loop_only"] = args.seed_steps * tf["median_step_s"] / cross["loop_s"]
                    t2["goal2_at_most_1_30"] = t2["ratio_seed_time_over_fast_time"] >= 30
                if "gafu_seed_fp32_time_s" in t2:
                    t2["ratio_gafu_seed_fp32_time_over_fast_time"] = t2["gafu_seed_fp32_time_s"] / fast_time
        result["time_to_seed_quality"] = t2

    # ---- goal 2, other levers: each variant run until it first reaches the seed's loss -------------
    if args.variants and "time" not in skip and "final" in result["time_to_seed_quality"].get("seed_final", {}):
        target = result["time_to_seed_quality"]["seed_final"]["final"]["total"]
        out = {}
        for name in [v for v in args.variants.split(",") if v]:
            preset, over, extra = LEVERS[name]
            log(f"variant {name} to the seed's loss {target:.5g}")
            r = run_worker("fast", dict(base, preset=preset, size=args.size, target=target, stop_at_target=True,
                                        overrides=over, **extra), args.timeout)
            cross = r.get("first_crossing")
            out[name] = {"settings": r.get("settings"), "init": r.get("init"), "prepare_s": r.get("prepare_s"),
                         "first_crossing": cross, "steps_done": r.get("steps_done"),
                         "evaluations": r.get("evaluations"), "curve_every_10": r.get("curve_every_10"),
                         "time_to_seed_loss_s": (r["prepare_s"] + cross["loop_s"]) if cross else None,
                         "error": r.get("error")}
        result["time_to_seed_quality"]["variants"] = out

    # ---- goal 3: memory ---------------------------------------------------------------------
    if "memory" not in skip:
        mem = {}
        fast = result.get("time_to_seed_quality", {}).get("fast", {})
        if "peak_rss_mb" in fast:  # includes the benchmark's own fp32 loss checks during the run
            mem[f"{args.fast_preset}_run_with_fp32_checks_at_{args.size}"] = fast["peak_rss_mb"]
        log(f"memory of a full {args.fast_preset} run at {args.size} px, as a user runs it")
        mem[f"{args.fast_preset}_full_run_at_{args.size}"] = run_worker(
            "run_memory", dict(base, preset=args.fast_preset, size=args.size), args.timeout)
        for s in [int(v) for v in args.memory_sizes.split(",") if v]:
            log(f"memory at {s} px")
            mem[str(s)] = run_worker("memory", dict(base, preset=args.fast_preset, size=s), args.timeout)
        result["memory"] = mem
        rss = mem[f"{args.fast_preset}_full_run_at_{args.size}"].get("peak_rss_mb")
        result["memory"]["goal3_512_at_most_1GB"] = (rss <= 1024) if (rss and args.size == 512) else None

    # ---- goal 5: quality guard ----------------------------------------------------------------
    if "quality" not in skip:
        qsize = args.quality_size or args.size
        log(f"quality guard: seed fp32 vs bf16, {args.quality_steps} steps at {qsize} px")
        save = str(Path(args.save_images) / f"quality_fp32_vs_bf16_{qsize}.png") if args.save_images else None
        result["quality_guard"] = run_worker("quality", dict(base, size=qsize, steps=args.quality_steps, save=save),
                                             args.timeout)

    if "profile" not in skip:
        log("profile of bf16 steps")
        result["profile"] = run_worker("profile", dict(base, size=args.size, precision="bf16", steps=3), args.timeout)

    result["benchmark_wall_s"] = time.perf_counter() - t_start
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
