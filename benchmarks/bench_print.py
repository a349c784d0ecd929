"""Print resolution (issue 16): tiled optimization at 2048 and 4096 px in a memory budget.

Each case runs in its own child process (so peak RSS, from getrusage, does not mix):

- ``whole2048``: the fast preset (bf16, L-BFGS) untiled at 2048 px for STEPS steps;
- ``tiled2048``: the same steps in tiles under a 3 GB budget (too small for 2048 whole);
- ``eval2048``: both results' seed loss on the whole image in fp32, and the seam ratio (mean
  absolute neighbour difference along the tiled run's tile boundaries over elsewhere) of each;
- ``tiled4096``: one tiled pass at 4096 px under 4 GB, starting from a ``gafu fast`` result of the
  same (upscaled) photo; a crop of it goes to docs/print-crop.png;
- ``adam_whole2048`` / ``adam_tiled2048`` (``--adam``): the same pair with Adam (ADAM_STEPS steps),
  one evaluation per step in both, so seconds per step are seconds per full-image pass (L-BFGS's
  line search may take a different number of evaluations in the two runs); ``seconds_per_pass_warm``
  leaves out the first step. ``adam_tiled2048_keep``: the tiled run with the heap keeping freed
  blocks (``keep_freed_memory`` around the run) instead of returning them: what the page faults of
  :func:`gafu.optimize.precision.return_freed_memory` cost a pass;
- ``cli<SIZE>:<STEPS>:<BUDGET>`` (``--cli 4096:100:4GB``): the whole job as a user runs it, ``gafu
  stylize --size SIZE --max-memory BUDGET --steps STEPS`` on the 4096 px photo (gafu scales it to
  SIZE; coarse-to-fine: whole at the size that fits, then tiled scales), its wall time, the child's peak
  RSS (getrusage of the waited child) and the CLI's JSON summary.

The photo is chelsea.jpg upscaled (Lanczos) to 4096 px; the style is Starry Night.
Run under flock: ``flock /tmp/gafu-cpu.lock python benchmarks/bench_print.py [--adam] [--cli SIZE:STEPS:BUDGET]
[--only]`` (``--only``: just the optional cases). Prints JSON lines, writes
benchmarks/results/bench_print.json (with ``--only``: bench_print_extra.json).
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
ADAM_STEPS = 4  # the first step warms up; the other three give seconds per pass
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


def _run(st, steps, times=None):
    t0 = time.perf_counter()
    for _ in st.run(steps):
        if times is not None:
            times.append(time.perf_counter() - t0)
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
    steps = STEPS
    keep = name.endswith("_keep")  # the heap keeps freed blocks (no page faults; may fragment)
    name = name[: -len("_keep")] if keep else name
    if name.startswith("adam_"):
        cfg = cfg.replace(optimizer="adam")
        name = name[len("adam_"):]
        steps = ADAM_STEPS
    if name in ("whole2048", "tiled2048"):
        from gafu.optimize.precision import keep_freed_memory

        c = cfg.replace(size=2048, steps=steps)
        budget = None if name == "whole2048" else 3072.0
        # init_image = the content: the same start as the untiled run, and no automatic schedule
        st = StyleTransfer(photo, [STYLE], c, init_image=photo, max_memory=budget)
        times: list = []
        with keep_freed_memory(enabled=keep):  # the outermost allocator setting holds
            seconds = _run(st, steps, times)
        np.save(work / f"{out['case']}.npy", st.image.numpy())
        lbfgs = getattr(st, "_lbfgs", None)  # counts its evaluations (a line search may add some)
        passes = lbfgs.evaluations if lbfgs is not None else steps
        warm = [b - a for a, b in zip(times, times[1:])]
        out.update(shape=list(st.content.shape[-2:]), budget_mb=budget, tiled=st._tiled is not None,
                   optimizer=c.optimizer, seconds_per_step=seconds / steps, steps=steps,
                   passes=passes, seconds_per_pass=seconds / passes, prepare_seconds=st.prepare_seconds,
                   step_seconds=[round(b - a, 3) for a, b in zip([0.0] + times, times)],
                   heap_keeps_freed_blocks=keep)
        if c.optimizer == "adam" and warm:  # one pass per step: the steps after the first (warm)
            out["seconds_per_pass_warm"] = sum(warm) / len(warm)
        if st._tiled is not None:
            rows, cols = boundaries(st._tiled.plans())
            (work / "bounds.json").write_text(json.dumps([sorted(rows), sorted(cols)]))
            plans = st._tiled.plans()
            out.update(tile=st._tiled.tile, tile_shape=list(st._tiled.tile_shape),
                       tiles_per_pass=st._tiled.tiles_per_pass(), evaluations=st._tiled.evaluations,
                       pixels_per_pass=sum(t.height * t.width for p in plans for t in p) / max(1, len(plans))
                       / (st.content.shape[-2] * st.content.shape[-1]))
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
    elif name.startswith("cli"):  # cli<SIZE>:<STEPS>:<BUDGET>, e.g. cli4096:100:4GB
        size, steps, budget = name[3:].split(":")
        src = _big_photo(work)  # gafu scales it to SIZE (the tutorial's resize enlarges too)
        cmd = [sys.executable, "-m", "gafu", "stylize", str(src), str(STYLE), "-o", str(work / f"cli{size}.png"),
               "--size", size, "--max-memory", budget, "--steps", steps, "--json", "--overwrite"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        out.update(command=" ".join(["gafu", *cmd[3:]]).replace(str(work), "WORK").replace(str(ROOT) + "/", ""),
                   exit_code=r.returncode, wall_seconds=time.perf_counter() - t0,
                   child_peak_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)
        try:
            summary = json.loads(r.stdout)
        except ValueError:
            summary = {"stderr_tail": r.stderr[-2000:]}
        keep = ("content_shape", "steps", "seconds", "prepare_seconds", "precision_used", "stop_reason",
                "why_stopped", "fp32_from_step", "final_loss", "max_memory_mb", "tile", "tile_shape", "scales",
                "scale_steps")
        out["summary"] = {k: v for k, v in summary.items() if k in keep or k == "stderr_tail"}
        if r.returncode == 0:
            from PIL import Image

            with Image.open(work / f"cli{size}.png") as im:
                out["output_size"] = list(im.size)
    elif name == "tiled4096":
        from gafu.fast import fast_stylize
        from gafu.image import save_image

        t0 = time.perf_counter()
        init = fast_stylize(photo, STYLE, max_size=4096)
        out["fast_init_seconds"] = time.perf_counter() - t0
        c = cfg.replace(size=4096, steps=1)
        st = StyleTransfer(photo, [STYLE], c, init_image=init, max_memory=4096.0)
        out.update(shape=list(st.content.shape[-2:]), budget_mb=4096.0, tile=st._tiled.tile,
                   tile_shape=list(st._tiled.tile_shape),
                   tiles_per_pass=st._tiled.tiles_per_pass(), prepare_seconds=st.prepare_seconds,
                   seconds_per_pass=_run(st, 1))
        img = st.image
        h, w = img.shape[-2:]
        crop = img[:, :, h // 2 - 168: h // 2 + 168, w // 2 - 224: w // 2 + 224]  # 448x336, < 400 KB as PNG
        save_image(crop, ROOT / "docs" / "print-crop.png", overwrite=True)
    out["peak_rss_mb"] = _peak_mb()
    return out


def main(argv=None) -> int:
    import argparse

    from machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", action="store_true", help="also the Adam pair (seconds per full-image pass)")
    ap.add_argument("--cli", action="append", default=[], metavar="SIZE:STEPS:BUDGET",
                    help="also an end-to-end gafu stylize --size SIZE --steps STEPS --max-memory BUDGET run "
                         "(e.g. 4096:100:4GB; repeatable)")
    ap.add_argument("--only", action="store_true", help="run only the optional cases asked for")
    a = ap.parse_args(argv)
    names = [] if a.only else ["whole2048", "tiled2048", "eval2048", "tiled4096"]
    if a.adam:
        names += ["adam_whole2048", "adam_tiled2048", "adam_tiled2048_keep"]
    for spec in a.cli:
        if len(spec.split(":")) != 3:
            ap.error(f"--cli takes SIZE:STEPS:BUDGET, e.g. 4096:100:4GB, got {spec!r}")
        names.append(f"cli{spec}")
    results = {"cpu": cpu_model(), "steps": STEPS, "cases": []}
    print(json.dumps({"cpu": results["cpu"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = subprocess.run([sys.executable, __file__, "--case", name, tmp], capture_output=True, text=True)
            if r.returncode:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            results["cases"].append(row)
    by = {c["case"]: c for c in results["cases"]}
    summary: dict = {"peak_rss_mb": {k: v["peak_rss_mb"] for k, v in by.items()}}
    if "eval2048" in by:
        summary.update(
            step_time_ratio_2048=by["tiled2048"]["seconds_per_step"] / by["whole2048"]["seconds_per_step"],
            pass_time_ratio_2048=by["tiled2048"]["seconds_per_pass"] / by["whole2048"]["seconds_per_pass"],
            loss_ratio_2048=by["eval2048"]["loss_ratio"],
            seam_ratio_vs_untiled_2048=by["eval2048"]["seam_ratio_vs_untiled"])
    if "adam_tiled2048" in by:
        whole = by["adam_whole2048"]
        summary["adam_pass_time_ratio_2048"] = by["adam_tiled2048"]["seconds_per_pass"] / whole["seconds_per_pass"]
        for k in ("adam_tiled2048", "adam_tiled2048_keep"):
            if k in by and "seconds_per_pass_warm" in by[k]:
                summary[f"{k}_warm_pass_ratio"] = by[k]["seconds_per_pass_warm"] / whole["seconds_per_pass_warm"]
    for k, v in by.items():
        if k.startswith("cli"):
            summary[k] = {"exit_code": v["exit_code"], "wall_seconds": v["wall_seconds"],
                                  "child_peak_rss_mb": v["child_peak_rss_mb"], "output_size": v.get("output_size")}
    results["summary"] = summary
    print(json.dumps(results["summary"]), flush=True)
    out = ROOT / "benchmarks" / "results" / ("bench_print_extra.json" if a.only else "bench_print.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(sys.argv[2], Path(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
