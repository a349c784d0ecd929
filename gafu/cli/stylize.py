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
    p = sub.add_parser(
        "stylize",
        help="stylize a photo by optimization over VGG19 (Gatys et al.)",
        description="Optimize the pixels of CONTENT so its VGG19 features keep its content and take the "
        "style (Gram statistics) of the STYLE image(s). Several styles are averaged (see --style-weights).",
    )
    p.add_argument("content", help="content image (any format Pillow reads)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .tif, .webp)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and intermediates) if they exist")

    g = p.add_argument_group("settings (defaults come from the preset)")
    g.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                   help="starting settings (default: fast = the seed's loss minimized by L-BFGS in bf16 where the "
                   "hardware has it; seed = the TensorFlow tutorial exactly)")
    g.add_argument("--size", type=common.positive_int, help=f"longest side in pixels (seed: {d.size})")
    g.add_argument("--steps", type=common.nonneg_int, help=f"optimizer steps (seed: {d.steps})")
    g.add_argument("--style-weight", type=common.nonneg_float, help=f"style loss weight (seed: {d.style_weight:g})")
    g.add_argument("--content-weight", type=common.nonneg_float, help=f"content loss weight (seed: {d.content_weight:g})")
    g.add_argument("--tv-weight", type=common.nonneg_float, help=f"total variation weight (seed: {d.tv_weight:g}; tutorial's TV run: 30)")
    g.add_argument("--lr", type=common.positive_float, help=f"Adam learning rate (seed: {d.lr:g})")
    g.add_argument("--content-layers", type=common.name_list, help=f"comma-separated (seed: {','.join(d.content_layers)})")
    g.add_argument("--style-layers", type=common.name_list, help=f"comma-separated (seed: {','.join(d.style_layers)})")
    g.add_argument("--style-weights", type=common.float_list, help="blend weights of several style images, e.g. 0.7,0.3")
    g.add_argument("--seed", type=common.nonneg_int, help="random seed (default: 0)")
    g.add_argument("--weights", help="VGG19 weights file (torch state dict or Keras h5); default: $GAFU_VGG19_WEIGHTS or bundled")
    common.add_device_arg(g)

    sp = p.add_argument_group("speed (how the loss is minimized; the loss itself is unchanged)")
    sp.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"),
                    help="VGG19 activations in 16 bit (channels_last), image/targets/Gram/loss in fp32 "
                    f"(seed: {d.precision}; bf16 needs AVX512-BF16/AMX on CPU to be fast; fp16 is for CUDA; "
                    "auto: bf16 where the hardware has it, else fp32)")
    sp.add_argument("--optimizer", choices=("adam", "lbfgs"),
                    help=f"Adam with Keras semantics (seed) or L-BFGS (seed: {d.optimizer})")
    sp.add_argument("--scales", type=common.fraction_list, metavar="F,F",
                    help="coarse-to-fine: fractions of --size optimized first, e.g. 0.25,0.5 (seed: none)")
    sp.add_argument("--scale-steps", type=common.int_list, metavar="N,N",
                    help="steps at each of --scales (same count)")
    sp.add_argument("--stop-tol", type=common.nonneg_float, metavar="F",
                    help="stop once the loss falls by less than this fraction over "
                    f"{d.stop_window} steps (seed: 0 = never)")

    o = p.add_argument_group("output")
    o.add_argument("--save-every", type=common.nonneg_int, default=0, metavar="N",
                   help="also save the image every N steps as OUTPUT_stepNNNN.ext (the seed shows one per 100)")
    o.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(func=run)


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

    cfg = build_config(args)
    inputs = [Path(args.content)] + [Path(s) for s in args.styles]
    output = check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    if args.save_every:
        for step in range(args.save_every, cfg.steps + sum(cfg.scale_steps) + 1, args.save_every):
            check_output_path(intermediate_path(output, step), inputs=inputs, overwrite=args.overwrite)
    if args.style_weights is not None and len(args.style_weights) != len(args.styles):
        raise GafuError(f"--style-weights has {len(args.style_weights)} values for {len(args.styles)} style images")
    for path in inputs:  # fail fast on unreadable inputs, before loading the network
        open_image(path)
    device = common.resolve_device(args.device)

    from ..optimize import StyleTransfer

    t0 = time.perf_counter()
    st = StyleTransfer(
        args.content, args.styles, cfg, style_weights=args.style_weights, weights=args.weights, device=device
    )
    prepare_s = time.perf_counter() - t0
    saved = []
    last = None
    interrupted = False
    bar = common.progress(cfg.steps + sum(cfg.scale_steps), "stylize")
    try:
        for it in st.run(image_every=args.save_every):
            last = it
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
    if args.json:
        common.print_json(
            {
                "command": "stylize",
                "content": str(args.content),
                "styles": [str(s) for s in args.styles],
                "style_weights": st.style_weights,
                "output": str(output),
                "intermediates": saved,
                "preset": args.preset,
                "settings": cfg.to_dict(),
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
                "precision_used": st.precision,
                "fp32_fallback_steps": st.fp32_fallback_steps,
            }
        )
    return EXIT_INTERRUPTED if interrupted else 0


def _weights_info(path) -> dict:
    from ..weights import describe

    return describe(path)
