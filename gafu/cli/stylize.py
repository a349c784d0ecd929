"""``gafu stylize CONTENT STYLE... -o OUT``: optimization-based style transfer."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import common

EXIT_INTERRUPTED = 130


def register(sub) -> None:
    from ..config import PRESETS, StyleConfig

    d = StyleConfig()
    f = PRESETS["fast"]
    p = sub.add_parser(
        "stylize",
        help="stylize a photo by optimization over VGG19 (Gatys et al.)",
        description="Optimize the pixels of CONTENT so its VGG19 features keep its content and take the "
        "style (Gram statistics) of the STYLE image(s). Several styles are averaged (see --style-weights). "
        "Controls: colour preservation, masks, region maps, style scale, strength, initialisation.",
    )
    p.add_argument("content", help="content image (any format Pillow reads)")
    p.add_argument("styles", nargs="*", metavar="style", help="style image(s) (none with --region-styles)")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .tif, .webp)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and intermediates) if they exist")

    g = p.add_argument_group("settings (defaults come from the preset)")
    g.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                   help="starting settings (default: fast = the seed's loss minimized by L-BFGS in bf16 where the "
                   "hardware has it; seed = the TensorFlow tutorial exactly)")
    g.add_argument("--size", type=common.positive_int, help=f"longest side in pixels (seed: {d.size})")
    g.add_argument("--steps", type=common.nonneg_int, help=f"optimizer steps (fast: {f.steps}, stops early when the loss stalls; seed: {d.steps})")
    g.add_argument("--style-weight", type=common.nonneg_float, help=f"style loss weight (seed: {d.style_weight:g})")
    g.add_argument("--content-weight", type=common.nonneg_float, help=f"content loss weight (seed: {d.content_weight:g})")
    g.add_argument("--tv-weight", type=common.nonneg_float, help=f"total variation weight (seed: {d.tv_weight:g}; tutorial's TV run: 30)")
    g.add_argument("--lr", type=common.positive_float, help=f"Adam learning rate, with --optimizer adam (seed: {d.lr:g})")
    g.add_argument("--content-layers", type=common.name_list, help=f"comma-separated (seed: {','.join(d.content_layers)})")
    g.add_argument("--style-layers", type=common.name_list, help=f"comma-separated (seed: {','.join(d.style_layers)})")
    g.add_argument("--style-weights", type=common.float_list, help="blend weights of several style images, e.g. 0.7,0.3")
    g.add_argument("--seed", type=common.nonneg_int, help="random seed (default: 0)")
    g.add_argument("--weights", help="VGG19 weights file (torch state dict or Keras h5); default: $GAFU_VGG19_WEIGHTS or bundled")
    common.add_device_arg(g)

    add_control_args(p, d)
    sp = p.add_argument_group("speed (how the loss is minimized; the loss itself is unchanged)")
    sp.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"),
                    help="VGG19 activations in 16 bit (channels_last), image/targets/Gram/loss in fp32 "
                    f"(fast: {f.precision}; seed: {d.precision}; bf16 needs AVX512-BF16/AMX on CPU to be fast; fp16 is for CUDA; "
                    "auto: bf16 where the hardware has it, else fp32)")
    sp.add_argument("--optimizer", choices=("adam", "lbfgs"),
                    help=f"Adam with Keras semantics or L-BFGS (fast: {f.optimizer}; seed: {d.optimizer})")
    sp.add_argument("--scales", type=common.fraction_list, metavar="F,F",
                    help="coarse-to-fine: fractions of --size optimized first, e.g. 0.25,0.5 (seed: none)")
    sp.add_argument("--scale-steps", type=common.int_list, metavar="N,N",
                    help="steps at each of --scales (same count)")
    sp.add_argument("--stop-tol", type=common.nonneg_float, metavar="F",
                    help="stop once the loss falls by less than this fraction over "
                    f"{d.stop_window} steps (fast: {f.stop_tol:g}; seed: 0 = never)")

    o = p.add_argument_group("output")
    o.add_argument("--save-every", type=common.nonneg_int, default=0, metavar="N",
                   help="also save the image every N steps as OUTPUT_stepNNNN.ext (the seed shows one per 100)")
    o.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    o.add_argument("--report", metavar="DIR",
                   help="write a run report into DIR: settings, final numbers, loss curves, intermediate images "
                   "(contact sheet + animated GIF, one per --save-every or per epoch), timings")
    p.set_defaults(func=run)


def add_control_args(p: argparse.ArgumentParser, d) -> None:
    from ..config import PRESERVE_COLOR_MODES, STYLE_SCALE_RANGE

    lo, hi = STYLE_SCALE_RANGE
    c = p.add_argument_group("controls")
    c.add_argument("--preserve-color", choices=PRESERVE_COLOR_MODES,
                   help="'luminance': transfer on luminance only, colours from the content (Gatys et al. 2016); "
                   "'histogram': match the style's colour mean/covariance to the content first (default: none)")
    c.add_argument("--mask", metavar="MASK",
                   help="stylize only where MASK is white (grey > 127; any size, resized with nearest neighbour; "
                   "JPEG is fine); outside, the result is the content")
    c.add_argument("--region-map", metavar="MAP", help="label image whose colours mark regions (see --region-styles)")
    c.add_argument("--region-styles", metavar="COLOUR=STYLE,...",
                   help="one style per region of MAP, e.g. red=a.jpg,blue=b.jpg; colours: red, green, blue, white, "
                   "black, yellow, cyan, magenta or #rrggbb; unlisted colours keep the content")
    c.add_argument("--feather", type=common.nonneg_float, metavar="PX",
                   help=f"soft mask/region edges: Gaussian blur with sigma PX/2 (default: {d.feather:g} = hard)")
    c.add_argument("--style-scale", type=_style_scale, metavar="S",
                   help=f"see the style at S x --size ({lo:g}..{hi:g}); 2 = brush strokes twice as large (default: 1)")
    c.add_argument("--strength", type=_strength, metavar="X",
                   help="content/style balance 0..1: style weight x 10^(4(X-0.5)), 0.5 = the preset's; "
                   "cannot be combined with --style-weight")
    c.add_argument("--init", metavar="content|noise|PATH",
                   help="start image: the content (default), noise (uses --seed) or an image, "
                   "e.g. a 'gafu fast' result")


def _style_scale(text: str) -> float:
    from ..config import STYLE_SCALE_RANGE

    value = common.positive_float(text)
    lo, hi = STYLE_SCALE_RANGE
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"expected a number in [{lo:g}, {hi:g}], got {text}")
    return value


def _strength(text: str) -> float:
    value = common.nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def control_changes(args: argparse.Namespace) -> dict:
    """Config fields set by the control flags (``--init PATH`` is an image, not a setting)."""
    from ..errors import GafuError

    changes = {}
    for flag in ("preserve_color", "style_scale", "strength", "feather"):
        value = getattr(args, flag, None)
        if value is not None:
            changes[flag] = value
    if changes.get("strength") is not None and getattr(args, "style_weight", None) is not None:
        raise GafuError("--strength and --style-weight both set the style weight; give one of them")
    if getattr(args, "init", None) in ("content", "noise"):
        changes["init"] = args.init
    return changes


def init_image_path(args: argparse.Namespace):
    """The --init image path, or None for content/noise (a bare unknown word gets did-you-mean)."""
    from ..errors import unknown_name

    value = getattr(args, "init", None)
    if value is None or value in ("content", "noise"):
        return None
    path = Path(value)
    if not path.exists() and not path.suffix and len(path.parts) == 1:
        raise unknown_name("init", value, ["content", "noise", "PATH (an image file)"])
    return path


def build_config(args: argparse.Namespace):
    """The preset with the flags the user gave applied on top."""
    from ..config import get_preset
    from ..vgg import canonical

    cfg = get_preset(args.preset)
    changes = {}
    for flag in ("size", "steps", "style_weight", "content_weight", "tv_weight", "lr", "seed",
                 "precision", "optimizer", "scales", "scale_steps", "stop_tol"):
        value = getattr(args, flag, None)
        if value is not None:
            changes[flag] = value
    for flag in ("content_layers", "style_layers"):
        value = getattr(args, flag, None)
        if value is not None:
            for name in value:
                canonical(name)  # unknown layer -> GafuError with did-you-mean
            changes[flag] = value
    changes.update(control_changes(args))
    cfg = cfg.replace(**changes) if changes else cfg
    if getattr(args, "lr", None) is not None and cfg.optimizer != "adam":
        from ..errors import GafuError

        raise GafuError(f"--lr sets Adam's learning rate; preset '{args.preset}' uses {cfg.optimizer} (add --optimizer adam)")
    return cfg


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def run(args: argparse.Namespace) -> int:
    from ..errors import GafuError
    from ..image import check_output_path, open_image, save_image

    from ..controls import parse_region_styles

    cfg = build_config(args)
    if (args.region_map is None) != (args.region_styles is None):
        raise GafuError("--region-map and --region-styles go together: give both or neither")
    region_styles = parse_region_styles(args.region_styles) if args.region_styles is not None else None
    if region_styles is not None and args.styles:
        raise GafuError("give style images either as arguments or with --region-styles, not both")
    if region_styles is None and not args.styles:
        raise GafuError("no style image: give at least one, or --region-map with --region-styles")
    if region_styles is not None and args.style_weights is not None:
        raise GafuError(
            "--style-weights blends several style arguments; with --region-styles each region has one style"
        )
    init_path = init_image_path(args)
    styles = [Path(s) for s in args.styles] if region_styles is None else [Path(s) for _, s in region_styles]
    extra = [Path(x) for x in (args.mask, args.region_map, init_path) if x is not None]
    inputs = [Path(args.content)] + styles + extra
    output = check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    if args.save_every:
        for step in range(args.save_every, cfg.steps + sum(cfg.scale_steps) + 1, args.save_every):
            check_output_path(intermediate_path(output, step), inputs=inputs, overwrite=args.overwrite)
    report = getattr(args, "report", None)
    if report:
        from ..report import check_report_dir

        check_report_dir(report, overwrite=args.overwrite)
    if args.style_weights is not None and len(args.style_weights) != len(args.styles):
        raise GafuError(f"--style-weights has {len(args.style_weights)} values for {len(args.styles)} style images")
    for path in inputs:  # fail fast on unreadable inputs, before loading the network
        open_image(path)
    device = common.resolve_device(args.device)

    from ..optimize import StyleTransfer

    t0 = time.perf_counter()
    st = StyleTransfer(
        args.content,
        args.styles,
        cfg,
        style_weights=args.style_weights,
        weights=args.weights,
        device=device,
        init_image=init_path,
        mask=args.mask,
        region_map=args.region_map,
        region_styles=region_styles,
    )
    prepare_s = time.perf_counter() - t0
    saved = []
    last = None
    interrupted = False
    history = []  # iterates for --report
    initial = st.image if report else None
    every = args.save_every or (min(cfg.steps_per_epoch, max(1, cfg.steps // 10)) if report else 0)
    bar = common.progress(cfg.steps + sum(cfg.scale_steps), "stylize")
    try:
        for it in st.run(image_every=every):
            last = it
            if report:
                history.append(it)
            bar.update(1)
            bar.set_postfix(loss=f"{it.loss:.4g}", refresh=False)
            if args.save_every and it.step % args.save_every == 0 and it.image is not None:
                saved.append(str(save_image(it.image, intermediate_path(output, it.step), inputs=inputs)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    save_image(st.image, output, inputs=inputs)
    final = st.evaluate()
    if interrupted:
        print(f"gafu stylize: interrupted after {st.steps_done} steps; saved {output}", file=sys.stderr)
    if report:
        from ..report import write_run_report

        write_run_report(
            report, history, initial=initial, overwrite=args.overwrite,
            settings={"content": str(args.content), "styles": [str(s) for s in args.styles],
                      "style_weights": st.style_weights, "preset": args.preset, **cfg.to_dict(),
                      "device": device, "weights": _weights_info(args.weights)["path"]},
            summary={"output": str(output), "steps": st.steps_done, "interrupted": interrupted,
                     "content_shape": list(st.content.shape[-2:]), "final_loss": final,
                     "loss_last_step": last.loss if last else None},
            timings={"prepare_seconds": prepare_s},
        )
    if args.json:
        common.print_json(
            {
                "command": "stylize",
                "content": str(args.content),
                "styles": [str(s) for s in styles],
                "style_weights": st.style_weights,
                "output": str(output),
                "intermediates": saved,
                "preset": args.preset,
                "settings": cfg.to_dict(),
                "controls": st.controls_summary(),
                "device": device,
                "weights": _weights_info(args.weights),
                "content_shape": list(st.content.shape[-2:]),
                "steps": st.steps_done,
                "interrupted": interrupted,
                "loss_last_step": last.loss if last else None,
                "final_loss": final,
                "seconds": round(last.elapsed, 3) if last else 0.0,
                "seconds_per_step": round(last.elapsed / last.step, 4) if last else None,
                "prepare_seconds": round(prepare_s, 3),
                "report": str(report) if report else None,
                "precision_used": st.precision,
                "fp32_fallback_steps": st.fp32_fallback_steps,
            }
        )
    return EXIT_INTERRUPTED if interrupted else 0


def _weights_info(path) -> dict:
    from ..weights import describe

    return describe(path)
