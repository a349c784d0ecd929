"""``gafu demo``: stylize the bundled example pairs both ways and show them on a page.

A thin client of :func:`gafu.workflows.demo.run_demo` (the work) and :class:`gafu.demo_page.DemoPage`
(the page): it prints a line per result as it comes and, last, the page's path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import PRESETS
from ..workflows.demo import (  # noqa: F401  (data_path and PAIRS: used by tests and scripts)
    PAIRS,
    QUICK_SIZE,
    QUICK_STEPS,
    QUICK_TIME_LIMIT,
    data_path,
)
from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="stylize the bundled example images both ways and write a page of pictures (about a minute)",
        description="Stylize two bundled photos with two bundled paintings: first with the fast (Magenta) "
        "network (seconds), then by optimization over VGG19 (gafu stylize's default 'fast' preset, or "
        f"--preset seed for the tutorial's Adam), here a short run: {QUICK_SIZE} px coarse-to-fine, "
        f"{QUICK_STEPS} steps at full size after a half-size start, at most {QUICK_TIME_LIMIT:g} s per image. "
        "--full runs the preset unchanged (512 px, no time limit; minutes per image on a CPU). "
        "Writes OUTPUT_DIR/index.html with every picture, its settings and timings, the diagnostics of one "
        "pair and the loss curves; the last line printed is the page's path.",
    )
    p.add_argument("-o", "--output-dir", default="gafu-demo", help="folder for the page and pictures (default: ./gafu-demo)")
    p.add_argument("--size", type=common.positive_int,
                   help=f"longest side of the optimization (default: {QUICK_SIZE}; with --full the preset's)")
    p.add_argument("--steps", type=common.nonneg_int,
                   help=f"optimizer steps at full size (default: {QUICK_STEPS} after the half-size start; "
                   "with --full the preset's)")
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                   help="optimization settings (default: fast, as gafu stylize; seed = the tutorial)")
    p.add_argument("--full", action="store_true",
                   help="full quality: the preset unchanged (fast: 512 px, up to 1000 L-BFGS steps; seed: 1000 Adam steps)")
    p.add_argument("--time-limit", type=common.nonneg_float, metavar="SECONDS",
                   help=f"stop each optimization after this long with the image it has (default: {QUICK_TIME_LIMIT:g}; "
                   "none with --full; 0 = none)")
    p.add_argument("--overwrite", action="store_true", help="replace the page and pictures of an earlier demo")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout (no progress lines)")
    common.add_device_arg(p)
    p.set_defaults(func=run)


def _say(args, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..demo_page import DemoPage, pair_files
    from ..workflows.demo import demo_config, plan_text, run_demo

    t_start = time.perf_counter()
    cfg = demo_config(args.preset, full=args.full, size=args.size, steps=args.steps)
    if args.time_limit is not None:
        time_limit = args.time_limit or None
    else:
        time_limit = None if args.full else QUICK_TIME_LIMIT
    device = common.resolve_device(args.device)
    out_dir = Path(args.output_dir)
    page = DemoPage(out_dir, PAIRS, config=cfg, overwrite=args.overwrite)  # checks every path first

    limit = f", at most {time_limit:g} s each" if time_limit else ""
    _say(args, f"gafu demo: {len(PAIRS)} pairs; fast network first, then optimization "
               f"({cfg.name} preset, {plan_text(cfg)}{limit})")
    bar = None

    def on_progress(ev) -> None:
        nonlocal bar
        name = ev.item.pair.title
        files = pair_files(ev.item.pair)
        if ev.stage == "fast":
            page.add(ev.item)
            r = ev.result
            _say(args, f"fast       {name}: {out_dir / files['fast']}  ({r.size[0]}x{r.size[1]} px, {r.seconds:.1f} s)")
            if ev.index == 0:
                _say(args, f"page (fills in as results come): {page.path}")
        elif ev.stage == "start":
            bar = common.progress(cfg.steps + sum(cfg.scale_steps), ev.item.pair.name)
        elif ev.stage == "step":
            bar.update(1)
            bar.set_postfix(loss=f"{ev.iterate.loss:.4g}", refresh=False)
        elif ev.stage == "optimized":
            bar.close()
            bar = None
            page.add(ev.item)
            r = ev.result
            note = {"time limit": ", stopped at the time limit", "converged": ", loss stalled"}.get(r.info["stop_reason"], "")
            _say(args, f"optimized  {name}: {out_dir / files['optimized']}  ({r.size[0]}x{r.size[1]} px, "
                       f"{r.info['steps']} step{'' if r.info['steps'] == 1 else 's'}{note}, {r.seconds:.1f} s)")

    try:
        demo = run_demo(cfg, PAIRS, device=device, time_limit=time_limit, callback=on_progress, full=args.full)
    finally:
        if bar is not None:
            bar.close()
    t0 = time.perf_counter()
    path = page.finish(demo)
    _say(args, f"diagnostics and loss curves: {time.perf_counter() - t0:.1f} s; "
               f"demo done in {time.perf_counter() - t_start:.1f} s")
    if args.json:
        results = []
        for item in demo.pairs:
            f = pair_files(item.pair)
            opt = item.optimized
            results.append({
                "content": item.pair.content_path.name, "style": item.pair.style_path.name,
                "output": str(out_dir / f["optimized"]), "steps": opt.info["steps"],
                "stop_reason": opt.info["stop_reason"], "seconds": round(opt.seconds, 2),
                "final_loss": opt.info["final_loss"], "fast_output": str(out_dir / f["fast"]),
                "fast_seconds": round(item.fast.seconds, 2), "losses": str(out_dir / f["losses"]),
            })
        common.print_json({
            "command": "demo", "preset": args.preset, "full": args.full, "time_limit": time_limit,
            "settings": cfg.to_dict(), "fast_settings": demo.fast_settings, "results": results,
            "page": str(path), "files": [str(p) for p in page.files()],
            "seconds": round(time.perf_counter() - t_start, 2),
        })
    else:
        print(path, flush=True)
    return 0
