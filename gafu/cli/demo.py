"""``gafu demo``: stylize the bundled example images and write the results to a folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import PRESETS
from . import common

#: (content, style) pairs of bundled images, see gafu/data/CREDITS.md.
PAIRS = (
    ("chelsea.jpg", "vangogh_starry_night.jpg"),
    ("rocket.jpg", "hokusai_great_wave.jpg"),
)


def data_path(name: str) -> Path:
    from importlib.resources import files

    return Path(str(files("gafu") / "data" / name))


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="stylize the bundled example images (gafu stylize's default preset and fast mode)",
        description="Stylize bundled example photos with bundled paintings: once by optimization (gafu stylize's "
        "default, the 'fast' preset, or --preset seed for the tutorial's Adam) and once with the fast (Magenta) "
        "network. The optimization runs at 256 px by default (about a minute per image on a 2-core CPU); "
        "--full runs the preset unchanged (512 px).",
    )
    p.add_argument("-o", "--output-dir", default="gafu-demo", help="folder for the results (default: ./gafu-demo)")
    p.add_argument("--size", type=common.positive_int, default=256, help="longest side (default: 256)")
    p.add_argument("--steps", type=common.nonneg_int, help="optimizer steps (default: the preset's)")
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                   help="optimization settings (default: fast, as gafu stylize; seed = the tutorial)")
    p.add_argument("--full", action="store_true", help="the preset unchanged: 512 px (seed: 1000 Adam steps)")
    p.add_argument("--overwrite", action="store_true", help="replace results of an earlier demo")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    common.add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import get_preset
    from ..fast import fast_stylize
    from ..image import check_output_path, save_image
    from ..optimize import StyleTransfer

    cfg = get_preset(args.preset)
    if not args.full:
        cfg = cfg.replace(size=args.size)
    if args.steps is not None:
        cfg = cfg.replace(steps=args.steps)
    out_dir = Path(args.output_dir)
    jobs = []
    for content, style in PAIRS:
        out = out_dir / f"{Path(content).stem}_x_{Path(style).stem}.png"
        fast_out = out.with_name(f"{out.stem}_fast.png")
        check_output_path(out, overwrite=args.overwrite)
        check_output_path(fast_out, overwrite=args.overwrite)
        jobs.append((data_path(content), data_path(style), out, fast_out))
    device = common.resolve_device(args.device)
    results = []
    for content, style, out, fast_out in jobs:
        t0 = time.perf_counter()
        save_image(fast_stylize(content, style, device=device), fast_out, overwrite=True)
        fast_seconds = time.perf_counter() - t0
        if not args.json:
            print(f"wrote {fast_out}  (fast mode, {fast_seconds:.1f} s)", file=sys.stderr)
        st = StyleTransfer(content, [style], cfg, device=device)
        bar = common.progress(cfg.steps, out.stem)
        t0 = time.perf_counter()
        last = None
        try:
            for last in st.run():
                bar.update(1)
                bar.set_postfix(loss=f"{last.loss:.4g}", refresh=False)
        finally:
            bar.close()
        save_image(st.image, out, overwrite=True)
        seconds = time.perf_counter() - t0
        results.append({"content": content.name, "style": style.name, "output": str(out),
                        "steps": st.steps_done, "seconds": round(seconds, 2), "final_loss": st.evaluate(),
                        "fast_output": str(fast_out), "fast_seconds": round(fast_seconds, 2)})
        if not args.json:
            print(f"wrote {out}  ({st.steps_done} steps, {seconds:.1f} s)", file=sys.stderr)
    if args.json:
        common.print_json({"command": "demo", "preset": args.preset, "settings": cfg.to_dict(), "results": results})
    return 0
