"""``gafu stylize CONTENT STYLE... -o OUT``: optimization-based style transfer."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import common

EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15
EXIT_FAILED = 1  # the run itself failed (a non-finite loss); the last good image is saved


#: Config fields set by a flag of the same name (``size`` -> ``--size``): type, choices, metavar.
#: Help texts and defaults come from :class:`gafu.config.StyleConfig` (:func:`~gafu.config.setting_help`).
SETTINGS = {
    "size": dict(type=common.positive_int),
    "steps": dict(type=common.nonneg_int),
    "style_weight": dict(type=common.nonneg_float),
    "content_weight": dict(type=common.nonneg_float),
    "tv_weight": dict(type=common.nonneg_float),
    "lr": dict(type=common.positive_float),
    "content_layers": dict(type=common.name_list),
    "style_layers": dict(type=common.name_list),
    "seed": dict(type=common.nonneg_int),
    "precision": dict(choices=("fp32", "bf16", "fp16", "auto")),
    "optimizer": dict(choices=("adam", "lbfgs")),
    "scales": dict(type=common.fraction_list, metavar="F,F"),
    "scale_steps": dict(type=common.int_list, metavar="N,N"),
    "stop_tol": dict(type=common.nonneg_float, metavar="F"),
    "on_stall": dict(choices=("stop", "fp32")),
}
SETTING_FLAGS = ("size", "steps", "style_weight", "content_weight", "tv_weight", "lr", "content_layers",
                 "style_layers", "seed")
SPEED_FLAGS = ("precision", "optimizer", "scales", "scale_steps", "stop_tol", "on_stall")


def _add_setting(group, name: str) -> None:
    from ..config import setting_help

    group.add_argument("--" + name.replace("_", "-"), help=setting_help(name), **SETTINGS[name])


def register(sub) -> None:
    from ..config import PRESETS, StyleConfig

    d = StyleConfig()
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
    for name in SETTING_FLAGS:
        _add_setting(g, name)
    g.add_argument("--style-weights", type=common.float_list, help="blend weights of several style images, e.g. 0.7,0.3")
    g.add_argument("--weights", help="VGG19 weights file (torch state dict or Keras h5); default: $GAFU_VGG19_WEIGHTS or bundled")
    common.add_device_arg(g)
    g.add_argument("--max-memory", type=_memory, metavar="SIZE",
                   help="memory budget of the run, e.g. 4GB, 4096MB, 512M (default: the memory available now); a size "
                   "that does not fit whole is optimized coarse-to-fine in overlapping tiles, one that cannot fit at "
                   "all is refused before any work")
    g.add_argument("--tile", type=_tile, metavar="PX",
                   help="optimize in tiles of at most PX pixels wherever the image is larger (default: tiles only "
                   "when the budget needs them, as large as it allows)")

    add_control_args(p, d)
    sp = p.add_argument_group("speed (how the loss is minimized; the loss itself is unchanged)")
    for name in SPEED_FLAGS:
        _add_setting(sp, name)

    o = p.add_argument_group("output")
    o.add_argument("--save-every", type=common.nonneg_int, default=0, metavar="N",
                   help="also save the image every N steps as OUTPUT_stepNNNN.ext (the seed shows one per 100)")
    o.add_argument("--bit-depth", type=int, choices=(8, 16), default=8,
                   help="bits per channel of OUTPUT: 16 (PNG/TIFF) also reads a 16-bit content image at full precision "
                   "(default: 8)")
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


def _memory(text: str) -> float:
    from ..errors import GafuError
    from ..optimize.memory import parse_size_mb

    try:
        return parse_size_mb(text)
    except GafuError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tile(text: str) -> int:
    from ..optimize.tiled import PHASE

    value = common.positive_int(text)
    if value < 4 * PHASE:
        raise argparse.ArgumentTypeError(f"tiles must be at least {4 * PHASE} px, got {text}")
    return value


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
    from ..checks import check_one_style_weight

    changes = {}
    for flag in ("preserve_color", "style_scale", "strength", "feather"):
        value = getattr(args, flag, None)
        if value is not None:
            changes[flag] = value
    check_one_style_weight(changes.get("strength"), getattr(args, "style_weight", None))
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
    for flag in SETTINGS:
        if flag in ("content_layers", "style_layers"):
            continue
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


def _check_outputs(args: argparse.Namespace, cfg, inputs) -> Path:
    """Every file the run will write is checked before any work: output, intermediates, report."""
    from ..image import check_output_path

    if getattr(args, "bit_depth", 8) == 16 and Path(args.output).suffix.lower() not in (".png", ".tif", ".tiff"):
        from ..errors import GafuError

        raise GafuError(f"--bit-depth 16 needs a .png or .tif output, got '{Path(args.output).name}'")
    output = check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    if args.save_every:
        for step in range(args.save_every, cfg.steps + sum(cfg.scale_steps) + 1, args.save_every):
            check_output_path(intermediate_path(output, step), inputs=inputs, overwrite=args.overwrite)
    if getattr(args, "report", None):
        from ..report import check_report_dir

        check_report_dir(args.report, overwrite=args.overwrite)
    return output


def _loop(st, args: argparse.Namespace, output: Path, inputs) -> tuple:
    """Run the optimization with a progress bar; Ctrl-C ends it early. Returns (last, history,
    saved intermediates, interrupted)."""
    from ..image import save_image

    cfg, report = st.config, getattr(args, "report", None)
    saved, history, last, interrupted = [], [], None, 0
    every = args.save_every or (min(cfg.steps_per_epoch, max(1, cfg.steps // 10)) if report else 0)
    bar = common.progress(cfg.steps + sum(cfg.scale_steps), "stylize")
    status = _Status(st, bar)
    try:
        for it in st.run(image_every=every, tune_allocator=True):
            last = it
            if report:
                history.append(it)
            bar.update(1)
            status.step(it)
            if args.save_every and it.step % args.save_every == 0 and it.image is not None:
                saved.append(str(save_image(it.image, intermediate_path(output, it.step), inputs=inputs,
                                            bits=args.bit_depth)))
    except KeyboardInterrupt:
        interrupted = EXIT_INTERRUPTED
    except Terminated:
        interrupted = EXIT_TERMINATED
    finally:
        bar.close()
    return last, history, saved, interrupted


class _Status:
    """The progress bar's postfix: loss, the scale being optimized, the tile of a tiled pass, ETA."""

    def __init__(self, st, bar) -> None:
        from ..optimize.tiled import Eta, stage_shapes

        self.bar = bar
        self.eta = Eta(stage_shapes(st.config, tuple(st.content.shape[-2:])))
        self.fields = {"loss": "-", "scale": "", "tile": "", "eta": ""}
        self.tiled_shapes = set()
        st.on_tile = self.tile

    def tile(self, i: int, n: int, shape) -> None:
        self.tiled_shapes.add(tuple(shape))
        self.fields["tile"] = f"{i}/{n}"
        self.fields["scale"] = f"{shape[1]}x{shape[0]}"
        self.bar.set_postfix(self.fields, refresh=True)

    def step(self, it) -> None:
        left = self.eta.update(it.step, it.elapsed, it.shape, tuple(it.shape) in self.tiled_shapes)
        self.fields.update(loss=f"{it.loss:.4g}", scale=f"{it.shape[1]}x{it.shape[0]}",
                           eta=f"{int(left // 60)}m{int(left % 60):02d}s")
        if tuple(it.shape) not in self.tiled_shapes:
            self.fields["tile"] = "whole"
        self.bar.set_postfix(self.fields, refresh=False)


class Terminated(BaseException):
    """SIGTERM during the loop: like Ctrl-C, the current image is saved before exiting (143)."""


class _SigtermAsInterrupt:
    """While the optimization runs, SIGTERM ends it like Ctrl-C (the image is saved); while the
    result is being written, a SIGTERM is remembered and honoured after the file is complete."""

    def __init__(self) -> None:
        import threading

        self.active = threading.current_thread() is threading.main_thread()
        self.deferring = False
        self.pending = False
        self.previous = None

    def __enter__(self):
        if self.active:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.deferring:
            self.pending = True
        else:
            raise Terminated()

    def defer(self) -> None:
        self.deferring = True

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, self.previous)


def run(args: argparse.Namespace) -> int:
    from ..image import save_image
    from ..masks import parse_region_styles
    from ..optimize import StyleTransfer
    from ..optimize.prepare import style_list

    cfg = build_config(args)
    region_styles = parse_region_styles(args.region_styles) if args.region_styles is not None else None
    style_list(args.styles or None, args.style_weights, args.region_map, region_styles, cfg)  # the library's rules
    init_path = init_image_path(args)
    styles = [Path(s) for s in args.styles] if region_styles is None else [Path(s) for _, s in region_styles]
    extra = [Path(x) for x in (args.mask, args.region_map, init_path) if x is not None]
    inputs = [Path(args.content)] + styles + extra
    output = _check_outputs(args, cfg, inputs)
    device = common.resolve_device(args.device)
    # Unreadable inputs fail here: StyleTransfer decodes every input once, before the network loads.
    content = args.content
    if args.bit_depth == 16:  # a 16-bit photo keeps its precision through to the 16-bit file
        from ..image import load_tensor

        content = load_tensor(args.content, None, bits=16)
    st = StyleTransfer(
        content, args.styles, cfg, style_weights=args.style_weights, weights=args.weights, device=device,
        init_image=init_path, mask=args.mask, region_map=args.region_map, region_styles=region_styles,
        max_memory=args.max_memory, tile=args.tile,
    )
    initial = st.image if args.report else None
    with _SigtermAsInterrupt() as term:
        last, history, saved, interrupted = _loop(st, args, output, inputs)
        term.defer()  # from here on the output is being written: finish it first
        save_image(st.image, output, inputs=inputs, bits=args.bit_depth)
    if term.pending and not interrupted:
        interrupted = EXIT_TERMINATED
    final = st.evaluate()
    if interrupted:
        print(f"gafu stylize: interrupted after {st.steps_done} steps; saved {output}", file=sys.stderr)
    elif st.stop_reason == "non-finite":
        print(f"gafu stylize: the loss became non-finite at step {st.steps_done}; saved the last image with a "
              f"finite loss to {output}", file=sys.stderr)
    elif not args.json:
        seconds = f" in {last.elapsed:.1f} s" if last else ""
        print(f"gafu stylize: saved {output}{seconds}; {st.stop_summary()}", file=sys.stderr)
    if args.report:
        from ..report import write_run_report

        write_run_report(
            args.report, history, initial=initial, overwrite=args.overwrite,
            settings={"content": str(args.content), "styles": [str(s) for s in args.styles],
                      "style_weights": st.style_weights, "preset": args.preset, **cfg.to_dict(),
                      "device": device, "weights": _weights_info(args.weights)["path"]},
            summary={"output": str(output), "steps": st.steps_done, "interrupted": bool(interrupted),
                     "content_shape": list(st.content.shape[-2:]), "final_loss": final,
                     "loss_last_step": last.loss if last else None,
                     "stop_reason": _stop_reason(st, interrupted), "why_stopped": st.stop_summary(),
                     "fp32_from_step": st.fp32_from_step},
            timings={"prepare_seconds": st.prepare_seconds},
        )
    if args.json:
        common.print_json({
            "command": "stylize", "content": str(args.content), "styles": [str(s) for s in styles],
            "style_weights": st.style_weights, "output": str(output), "intermediates": saved,
            "preset": args.preset, "settings": cfg.to_dict(), "controls": st.controls_summary(),
            "device": device, "weights": _weights_info(args.weights), "content_shape": list(st.content.shape[-2:]),
            "steps": st.steps_done, "interrupted": bool(interrupted), "loss_last_step": last.loss if last else None,
            "final_loss": final, "seconds": round(last.elapsed, 3) if last else 0.0,
            "seconds_per_step": round(last.elapsed / last.step, 4) if last else None,
            "prepare_seconds": round(st.prepare_seconds, 3), "report": str(args.report) if args.report else None,
            "precision_used": st.precision, "stop_reason": _stop_reason(st, interrupted),
            "why_stopped": st.stop_summary(), "fp32_from_step": st.fp32_from_step,
            "fp32_fallback_steps": st.fp32_fallback_steps,
            "max_memory_mb": args.max_memory, "tile": st._tiled.tile if st._tiled is not None else None,
            "tile_shape": list(st._tiled.tile_shape) if st._tiled is not None else None,
            "scales": list(st.config.scales), "scale_steps": list(st.config.scale_steps),
        })
    if interrupted:
        return interrupted
    return EXIT_FAILED if st.stop_reason == "non-finite" else 0


def _stop_reason(st, interrupted: int) -> str:
    if interrupted:
        return "terminated" if interrupted == EXIT_TERMINATED else "interrupted"
    return st.stop_reason or "steps"


def _weights_info(path) -> dict:
    from ..weights import describe

    return describe(path)
