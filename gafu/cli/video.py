"""``gafu video``: stylize a clip without flicker (optical flow, occlusion masks, temporal loss).

    gafu video clip.mp4 painting.jpg -o out.mp4                        # fast method, audio kept
    gafu video clip.mp4 painting.jpg -o out.gif --max-size 256 --fps 12
    gafu video clip.mp4 painting.jpg -o out.mp4 --method optimize --max-size 256
    gafu video clip.mp4 painting.jpg -o out.mp4 --resume               # after an interruption
    gafu video frames/ painting.jpg -o styled/ --metrics --json        # folders of frames in and out
"""

from __future__ import annotations

import argparse
import sys

from .common import nonneg_float, positive_float, positive_int, print_json, progress


def fraction(text: str) -> float:
    value = nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 and < 1, got '{text}'")
    return value


def register(subparsers) -> None:
    from ..video.flow import FLOW_METHODS
    from ..video.stylize import DEFAULT_BLEND, DEFAULT_FIRST_STEPS, DEFAULT_STEPS, DEFAULT_TEMPORAL_WEIGHT, METHODS

    p = subparsers.add_parser(
        "video",
        help="stylize a video (mp4/mov/webm/gif/frames folder) without flicker",
        description=(
            "Stylize a clip frame by frame, carrying the previous result along the optical flow "
            "(OpenCV DIS or Farneback) with occlusion masks: feed-forward with shared normalisation "
            "statistics and a warped blend (--method fast), or Gatys optimization with a masked "
            "temporal loss (--method optimize). Audio is copied through."
        ),
    )
    p.add_argument("input", metavar="IN", help="video (.mp4 .mov .webm .mkv ...), .gif, or a folder of frames")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="style image(s); several are blended")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output .mp4/.mov/.mkv/.webm/.gif, or a folder (ending in /) for PNG frames")
    p.add_argument("--method", choices=METHODS, default="fast",
                   help="fast: feed-forward network, many frames/s; optimize: Gatys, seconds per frame (default fast)")
    p.add_argument("--flow", default="dis", metavar="|".join(FLOW_METHODS),
                   help="optical flow: dis (fast), farneback, none (no motion compensation) (default dis)")
    p.add_argument("--blend", type=fraction, metavar="B",
                   help=f"fast: weight of the warped previous frame where the flow is trusted, 0-1 (default {DEFAULT_BLEND})")
    p.add_argument("--temporal-weight", type=nonneg_float, metavar="W",
                   help=f"optimize: weight of the masked temporal loss (default {DEFAULT_TEMPORAL_WEIGHT:g})")
    p.add_argument("--steps", type=positive_int, metavar="N",
                   help=f"optimize: steps per frame after the first (default {DEFAULT_STEPS})")
    p.add_argument("--first-steps", type=positive_int, metavar="N",
                   help=f"optimize: steps of the first frame (default {DEFAULT_FIRST_STEPS})")
    p.add_argument("--max-size", type=positive_int, metavar="PX",
                   help="cap on the long side of the frames (default: the clip's own size)")
    p.add_argument("--fps", type=positive_float, metavar="F", help="output frame rate (default: the input's)")
    p.add_argument("--start", type=nonneg_float, metavar="T", help="start at T seconds")
    p.add_argument("--end", type=nonneg_float, metavar="T", help="end at T seconds")
    p.add_argument("--frames-dir", metavar="DIR",
                   help="write the stylized frames here and keep them (default: OUT.frames, removed when done)")
    p.add_argument("--resume", action="store_true",
                   help="keep the frames already in the frames folder (same settings) and make only the missing ones")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (optimize; default 0)")
    p.add_argument("--strength", type=nonneg_float, default=1.0, metavar="S",
                   help="fast: 0 = the clip's own style, 1 = the painting's (default 1)")
    p.add_argument("--preserve-color", action="store_true", help="fast: keep the clip's colours")
    p.add_argument("--metrics", action="store_true",
                   help="measure the warping error (Lai et al. 2018) of the result and of plain per-frame "
                        "stylization (stylizes the clip a second time)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (and its frames)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where to compute (default cpu)")
    p.add_argument("--threads", type=positive_int, help="fast: CPU threads (default: one per physical core)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..video import stylize
    from ..video.flow import check_method

    check_method(args.flow)  # before any decoding
    device = args.device
    if args.method == "optimize":
        from .common import resolve_device

        device = resolve_device(device)
    with progress(total=0, desc="gafu video") as bar:
        def tick(index: int, total: int, frame) -> None:
            if bar.total != total:
                bar.reset(total=total)
                bar.update(index)
            bar.update(1)

        result = stylize(
            args.input, list(args.styles), args.output,
            method=args.method, flow=args.flow, blend=args.blend, temporal_weight=args.temporal_weight,
            max_size=args.max_size, fps=args.fps, start=args.start, end=args.end,
            frames_dir=args.frames_dir, resume=args.resume, overwrite=args.overwrite, seed=args.seed,
            metrics=args.metrics, strength=args.strength, preserve_color=args.preserve_color,
            steps=args.steps, first_steps=args.first_steps, device=device, threads=args.threads,
            callback=tick,
        )
    summary = result.summary()
    if args.json:
        print_json({"command": "video", **summary})
        return 0
    w, h = result.size
    line = (f"{args.input} -> {args.output} ({len(result.frames)} frames, {w}x{h}, {result.fps:g} fps; "
            f"{summary['stylized']} stylized, {summary['resumed']} resumed; {result.seconds:.1f} s)")
    print(line)
    if result.metrics:
        m = result.metrics
        ratio = f"{m['ratio']:.3f}" if m["ratio"] is not None else "n/a"
        print(f"warping error {m['warping_error']:.5f} vs per-frame {m['per_frame_warping_error']:.5f} (ratio {ratio})",
              file=sys.stdout)
    return 0
