"""``gafu analyze CONTENT RESULT [-o figure.png]``: high-pass deltas, Sobel edges, total variation."""

from __future__ import annotations

import argparse
import sys

from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="high-pass deltas, Sobel edges and total variation of a content image vs its stylization",
        description="The seed's closing analysis: horizontal and vertical deltas (high-pass) and Sobel edges of "
        "the original and the stylized image, their total variation (tf.image.total_variation) and an "
        "edge-preservation score (correlation of Sobel gradient magnitudes of the luma, 1 = same edges). "
        "CONTENT is resized to RESULT's size. Figure colours: deltas clip(2d+0.5), Sobel clip(s/4+0.5).",
    )
    p.add_argument("content", help="the original image")
    p.add_argument("result", help="its stylization")
    p.add_argument("-o", "--output", help="write the labelled figure here (.png, .jpg, .webp, .tif)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis import analysis_figure, analyze, pair_tensors, save_figure
    from ..image import check_output_path, open_image

    inputs = [args.content, args.result]
    if args.output:
        check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    content, result = (open_image(p) for p in inputs)
    c, r = pair_tensors(content, result)
    numbers = analyze(c, r)
    figure = None
    if args.output:
        figure = str(save_figure(analysis_figure(c, r, numbers=numbers), args.output, inputs=inputs))
    if args.json:
        common.print_json({"command": "analyze", "content": args.content, "result": args.result,
                           "figure": figure, **numbers})
        return 0
    tv = numbers["total_variation"]
    h, w = numbers["size"]
    print(f"compared at {w}x{h} px (the result's size)")
    print(f"total variation   original {tv['content']:.6g}   stylized {tv['result']:.6g}"
          + (f"   ratio {tv['ratio']:.3f}" if tv["ratio"] is not None else ""))
    d = numbers["mean_abs_delta"]
    print(f"mean |delta| x/y  original {d['content']['x']:.4g}/{d['content']['y']:.4g}   "
          f"stylized {d['result']['x']:.4g}/{d['result']['y']:.4g}")
    s = numbers["sobel_mean_magnitude"]
    print(f"mean Sobel |g|    original {s['content']:.4g}   stylized {s['result']:.4g}")
    print(f"edge preservation {numbers['edge_preservation']:.4f}  (1 = same edges, 0 = unrelated)")
    if figure:
        print(f"wrote {figure}", file=sys.stderr)
    return 0
