"""``gafu defects synth GOOD_DIR -o OUT_DIR --category NAME ...`` and ``gafu defects check OUT_DIR``.

Synthetic defect datasets for visual inspection with pixel-exact masks, in the layouts anomalib's
MVTecAD and Folder datamodules read as they are. Exit codes: synth 0 when every item is written
(failed items are listed on stderr and in OUT_DIR/errors.jsonl), 2 for a usage error, 130 when
interrupted (rerun with --resume); check 0 when the dataset keeps every rule, 1 with the problems.

    gafu defects synth good/ -o data/ --category hazelnut --n 20 --defect-types crack,stain
    gafu defects synth good/ -o data/ --category brick --mask perlin --fill builtin:all --blend poisson
    gafu defects check data/
"""

from __future__ import annotations

import argparse
import sys

from . import common

EXIT_PROBLEMS = 1


def _area(text: str) -> float:
    value = common.nonneg_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction of the image in (0, 1], got '{text}'")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "defects",
        help="synthetic defect datasets with pixel-exact masks (anomalib's MVTec AD and Folder layouts)",
        description="Synthetic defect datasets for visual inspection, with pixel-exact masks.",
    )
    inner = p.add_subparsers(dest="defects_command", metavar="JOB", parser_class=type(p))
    s = inner.add_parser(
        "synth",
        help="write a defect dataset from a folder of good images",
        description=(
            "Copy the good images under GOOD_DIR into train/good (and a held-out share into test/good) and make "
            "--n defect images per defect type: a mask from the item's seed (or a folder), a stylized fill inside "
            "it, blended in so that nothing outside the mask changes. OUT_DIR/manifest.jsonl records sources, "
            "sha256s, masks, fills and licences; OUT_DIR/report/<category>/ holds contact sheets and quality.json."
        ),
    )
    s.add_argument("good_dir", metavar="GOOD_DIR", help="folder of good (defect-free) images, searched recursively")
    s.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="dataset folder (anomalib: MVTecAD(root=OUT_DIR, category=NAME))")
    s.add_argument("--category", required=True, metavar="NAME", help="category folder name, e.g. hazelnut")
    g = s.add_argument_group("defects")
    g.add_argument("--n", type=common.positive_int, default=10, metavar="N", help="defect images per type (default 10)")
    g.add_argument("--defect-types", default="crack,stain", metavar="crack,stain,...",
                   help="defect folder names; NAME=KIND sets a mask kind (default crack,stain; crack/scratch draw "
                   "scratches, stain/spot/hole/dent blobs, other names Perlin noise)")
    g.add_argument("--mask", metavar="perlin|blob|scratch|DIR",
                   help="one mask kind for every type, or a folder of masks (same relative paths as GOOD_DIR)")
    g.add_argument("--roi", metavar="none|auto|DIR", default=None,
                   help="draw masks on the object only: auto (Otsu threshold) or a folder of object masks")
    g.add_argument("--min-area", type=_area, default=0.002, metavar="F", help="smallest mask, fraction of the image (default 0.002)")
    g.add_argument("--max-area", type=_area, default=0.05, metavar="F", help="largest mask, fraction of the image (default 0.05)")
    g = s.add_argument_group("fill and blend")
    g.add_argument("--fill", default="self", metavar="style:PATH_OR_DIR|texture:DIR|builtin:K|self",
                   help="what the defect is made of (default self: the image's own texture from elsewhere)")
    g.add_argument("--method", choices=("fast", "optimize"), default="fast",
                   help="fast: one forward pass (default); optimize: a short masked optimization (--steps)")
    g.add_argument("--steps", type=common.positive_int, default=None, metavar="N",
                   help="optimize: optimizer steps per defect (default 20)")
    g.add_argument("--blend", choices=("alpha", "poisson", "mask"), default="alpha",
                   help="alpha: feathered inward (default); poisson: OpenCV seamlessClone; mask: hard edge")
    g.add_argument("--feather", type=common.nonneg_float, default=3.0, metavar="PX",
                   help="width of the soft edge inside the mask (default 3)")
    g.add_argument("--strength", type=common.positive_float, default=1.0, metavar="X", help="opacity of the fill, (0, 1] (default 1)")
    g.add_argument("--match-color", action="store_true", help="match the fill's colours to the image's inside the mask")
    g = s.add_argument_group("dataset and running")
    g.add_argument("--holdout", type=common.nonneg_float, default=0.2, metavar="F",
                   help="share of the good images kept for test/good (default 0.2)")
    g.add_argument("--layout", choices=("mvtec", "folder"), default="mvtec",
                   help="mvtec: train/good, test/<defect>, ground_truth (default); folder: normal, normal_test, abnormal, mask")
    g.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    g.add_argument("--workers", type=common.positive_int, default=1, metavar="N", help="worker processes or Ray actors (default 1)")
    g.add_argument("--threads", type=common.positive_int, metavar="N", help="threads per worker (default: all with one worker, 1 with several)")
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    g.add_argument("--resume", action="store_true", help="continue a run in OUT_DIR (items whose files and rows match are kept)")
    g.add_argument("--overwrite", action="store_true", help="start again in an OUT_DIR that holds a run")
    g.add_argument("--weights", metavar="PATH", help="optimize: VGG19 weights file (default: bundled)")
    g.add_argument("--model-dir", metavar="DIR", help="fast: folder with the ONNX files")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    s.set_defaults(func=run_synth)

    c = inner.add_parser("check", help="verify a defect dataset (pairing, binary masks, sizes, outside-mask identity)",
                         description="Verify a defect dataset against the layout's rules; exit 1 with the list of problems.")
    c.add_argument("out_dir", metavar="OUT_DIR", help="the dataset folder (gafu defects synth's -o)")
    c.add_argument("--json", action="store_true", help="print {ok, problems} as JSON on stdout")
    c.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: _need_job(p))


def _need_job(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_synth(args: argparse.Namespace) -> int:
    from .. import defects
    from ..defects.fill import OPTIMIZE_STEPS
    from ..errors import GafuError

    if args.method == "fast" and args.steps is not None:
        raise GafuError("--steps is for --method optimize")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = common.progress(total, "gafu defects")
            bar.update(done)
        else:
            bar.update(done - bar.n)

    def on_row(row: dict) -> None:
        if row["status"] != "ok":
            msg = f"failed: {row['output']} ({row['input']}): {row.get('error')}"
            if bar is not None:
                bar.write(msg, file=sys.stderr)
            else:
                print(msg, file=sys.stderr)

    try:
        summary = defects.synth(
            args.good_dir, args.output, category=args.category, n=args.n, defect_types=args.defect_types,
            mask=args.mask, fill=args.fill, method=args.method, blend=args.blend, feather=args.feather,
            strength=args.strength, min_area=args.min_area, max_area=args.max_area, holdout=args.holdout,
            layout=args.layout, seed=args.seed, workers=args.workers, backend=args.backend, resume=args.resume,
            overwrite=args.overwrite, roi=args.roi, match_color=args.match_color,
            steps=args.steps if args.steps is not None else OPTIMIZE_STEPS, threads=args.threads,
            weights=args.weights, model_dir=args.model_dir, progress=progress, on_row=on_row,
        )
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        common.print_json({"command": "defects synth", **summary.to_dict()})
    else:
        q = summary.quality.get("all", {})
        types = ", ".join(f"{k} {v}" for k, v in summary.defects.items())
        parts = [f"{summary.done} written", f"{summary.kept} already complete"]
        if summary.failed:
            parts.append(f"{summary.failed} failed (see {summary.out_dir}/errors.jsonl)")
        print(f"gafu defects: {summary.train_good} train/good, {summary.test_good} test/good, {types}; "
              f"{', '.join(parts)}; {summary.seconds:.1f} s", file=sys.stderr)
        if q.get("images"):
            print(f"masks {100 * q['area']['min']:.2f}-{100 * q['area']['max']:.2f}% of the image; mean change "
                  f"{q['change_inside']:.1f} inside, {q['change_outside']:.1f} outside (0-255); structure kept "
                  f"around the masks {q['structure']:.3f}; report {summary.report}", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from .. import defects

    problems = defects.check(args.out_dir)
    if args.json:
        common.print_json({"command": "defects check", "out_dir": args.out_dir, "ok": not problems,
                           "problems": problems})
    else:
        from . import one_line

        for p in problems:
            print(one_line(p), file=sys.stdout)
        print(f"gafu defects check: {len(problems)} problem(s) in {args.out_dir}" if problems
              else f"gafu defects check: {args.out_dir} is fine", file=sys.stderr)
    return EXIT_PROBLEMS if problems else 0
