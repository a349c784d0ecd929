"""``gafu layers [IMAGE]``: VGG19's layers and, for an image, per-layer activation and Gram statistics."""

from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    from ..config import SEED_CONTENT_LAYERS, SEED_STYLE_LAYERS

    p = sub.add_parser(
        "layers",
        help="VGG19 layer list; with an image, activation and Gram statistics per layer",
        description="List VGG19's layers (Keras names, gafu's classic aliases, kind, output shape NCHW at the "
        "image size, parameters). With IMAGE, also print activation statistics (shape, min, max, mean, std, "
        "fraction of zeros) of the chosen layers and statistics of the Gram matrices of the style layers, "
        "as the seed inspects them.",
    )
    p.add_argument("image", nargs="?", help="image to run through VGG19 (optional)")
    p.add_argument("--size", type=common.positive_int, default=512,
                   help="longest side the image is scaled to, seed resize (default: 512); without IMAGE "
                   "the shapes are for a SIZE x SIZE input")
    p.add_argument("--layers", type=common.name_list,
                   help="layers to summarise, comma-separated, or 'all' "
                   f"(default: {','.join(SEED_STYLE_LAYERS + SEED_CONTENT_LAYERS)})")
    p.add_argument("--style-layers", type=common.name_list,
                   help=f"layers whose Gram matrices are summarised (default: {','.join(SEED_STYLE_LAYERS)}); "
                   "'none' for none")
    p.add_argument("--weights", help="VGG19 weights file (default: $GAFU_VGG19_WEIGHTS or bundled)")
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    common.add_device_arg(p)
    p.set_defaults(func=run)


def _names(value, default, *, all_names):
    if value is None:
        return default
    if len(value) == 1 and value[0].lower() == "all":
        return all_names
    if len(value) == 1 and value[0].lower() == "none":
        return ()
    return value


def run(args: argparse.Namespace) -> int:
    from ..analysis import all_keras_layers, layer_stats, layer_table
    from ..config import SEED_CONTENT_LAYERS, SEED_STYLE_LAYERS
    from ..errors import GafuError
    from ..image import load_tensor, open_image
    from ..vgg import canonical

    layers = _names(args.layers, SEED_STYLE_LAYERS + SEED_CONTENT_LAYERS, all_names=all_keras_layers())
    style_layers = _names(args.style_layers, SEED_STYLE_LAYERS, all_names=all_keras_layers())
    for name in tuple(layers) + tuple(style_layers):
        canonical(name)
    if args.image is None:
        if args.layers is not None or args.style_layers is not None:
            raise GafuError("--layers and --style-layers need an IMAGE to compute statistics of")
        shape = (args.size, args.size)
        stats = None
    else:
        open_image(args.image)
        x = load_tensor(args.image, args.size, mode="seed")
        shape = tuple(int(v) for v in x.shape[-2:])
        device = common.resolve_device(args.device)
        stats = layer_stats(x, layers, style_layers, size=None, weights=args.weights, device=device)
    table = layer_table(shape)
    if args.json:
        out = {"command": "layers", "image": args.image, "input_size": list(shape), "layers": table}
        if stats is not None:
            out["statistics"] = stats
        common.print_json(out)
        return 0
    where = f"{args.image} at {shape[1]}x{shape[0]} px" if args.image else f"a {shape[1]}x{shape[0]} input"
    print(f"VGG19 (include_top=False) layers for {where}; shapes are NCHW")
    _print_table(
        ["layer", "also", "kind", "output shape", "params"],
        [[r["name"], ", ".join(r["aliases"]), r["kind"], "x".join(map(str, r["output_shape"])), f"{r['params']:,}"]
         for r in table],
        right={4},
    )
    if stats is not None:
        print()
        print("Activations (after preprocessing inside VGG19; input in [0, 1])")
        _print_stats(stats["layers"])
        if stats["grams"]:
            print()
            print("Gram matrices (sum over locations / (H*W), as the seed)")
            _print_stats(stats["grams"])
    return 0


def _print_stats(stats: dict) -> None:
    rows = []
    for name, s in stats.items():
        rows.append([name, "x".join(map(str, s["shape"])), f"{s['min']:.4g}", f"{s['max']:.4g}", f"{s['mean']:.4g}",
                     f"{s['std']:.4g}", f"{s['zero_fraction'] * 100:.1f}%"])
    _print_table(["layer", "shape", "min", "max", "mean", "std", "zeros"], rows, right={2, 3, 4, 5, 6})


def _print_table(header, rows, right=frozenset()) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(row):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in enumerate(zip(row, widths)))

    print(fmt(header).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row).rstrip())
