"""``gafu compare CONTENT STYLE1 STYLE2 ... -o sheet.png``: one stylization per style, on one contact sheet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import PRESETS
from . import common


def register(sub) -> None:
    from ..workflows.compare import COMPARE_METHODS

    p = sub.add_parser(
        "compare",
        help="stylize a photo with several styles and lay them out on a labelled contact sheet",
        description="The seed's 'which one do you prefer?': stylize CONTENT once per STYLE and write a contact "
        "sheet (top row: content and the styles; bottom row: each result under its style). Each result "
        "is also saved next to the sheet as SHEET_<n>_<style>.png.",
    )
    p.add_argument("content", help="content image")
    p.add_argument("styles", nargs="+", metavar="style", help="style images")
    p.add_argument("-o", "--output", default="compare.png", help="contact sheet file (default: compare.png)")
    p.add_argument("--method", choices=COMPARE_METHODS, default="optimize",
                   help="optimize: Gatys optimization (--preset); fast: feed-forward Magenta model (default: optimize)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="fast",
                   help="optimization settings (optimize; default: fast, as gafu stylize; seed = the tutorial's Adam)")
    p.add_argument("--size", type=common.positive_int, default=256, help="longest side of the results (default: 256)")
    p.add_argument("--steps", type=common.nonneg_int, default=200,
                   help="optimizer steps per style, at most (optimize; default: 200; the fast preset may stop earlier)")
    p.add_argument("--tv-weight", type=common.nonneg_float, help="total variation weight (optimize; seed: 0)")
    p.add_argument("--strength", type=common.nonneg_float, default=1.0, help="style strength 0-1 (fast; default: 1)")
    p.add_argument("--cell", type=common.positive_int, default=256, help="size of each picture on the sheet (default: 256)")
    p.add_argument("--no-results", action="store_true", help="write only the sheet, not each result")
    p.add_argument("--weights", help="VGG19 weights file (optimize)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    common.add_device_arg(p)
    p.set_defaults(func=run)


def result_path(sheet: Path, index: int, style: str) -> Path:
    return sheet.with_name(f"{sheet.stem}_{index + 1}_{Path(style).stem}.png")


def run(args: argparse.Namespace) -> int:
    from ..errors import GafuError
    from ..image import check_output_path, open_image, save_image
    from ..workflows.compare import compare_styles

    if args.strength > 1:
        raise GafuError(f"--strength must be between 0 and 1, got {args.strength:g}")
    inputs = [Path(args.content)] + [Path(s) for s in args.styles]
    sheet_path = check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    outs = [] if args.no_results else [result_path(sheet_path, i, s) for i, s in enumerate(args.styles)]
    for out in outs:
        check_output_path(out, inputs=inputs, overwrite=args.overwrite)
    for path in inputs:
        open_image(path)
    device = common.resolve_device(args.device)
    overrides = {} if args.tv_weight is None else {"tv_weight": args.tv_weight}
    if args.method == "fast" and overrides:
        raise GafuError("--tv-weight applies to --method optimize only")
    total = len(args.styles) * (args.steps if args.method == "optimize" else 1)
    bar = common.progress(total, f"compare ({args.method})")

    def tick(index, it):
        bar.update(1)
        if it is not None:
            bar.set_postfix(style=index + 1, loss=f"{it.loss:.4g}", refresh=False)

    try:
        cmp = compare_styles(args.content, args.styles, method=args.method, size=args.size, steps=args.steps,
                             preset=args.preset, strength=args.strength, cell=args.cell, weights=args.weights, device=device,
                             callback=tick, **overrides)
    finally:
        bar.close()
    saved = [str(save_image(im, out, inputs=inputs)) for im, out in zip(cmp.results, outs)]
    save_image(cmp.sheet, sheet_path, inputs=inputs)
    if args.json:
        common.print_json({
            "command": "compare",
            "method": args.method,
            "content": args.content,
            "styles": list(args.styles),
            "sheet": str(sheet_path),
            "sheet_size": list(cmp.sheet.size),
            "results": saved,
            "result_size": list(cmp.results[0].size),
            "seconds": [round(s, 3) for s in cmp.seconds],
            "settings": cmp.settings,
        })
    else:
        for path in saved:
            print(f"wrote {path}", file=sys.stderr)
        print(f"wrote {sheet_path}", file=sys.stderr)
    return 0
