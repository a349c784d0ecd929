"""``gafu dataset stylize IN_DIR -o OUT_DIR ...``: stylize a whole image dataset, reproducibly and resumably.

Exit codes: 0 when every planned item is written (items that failed with ``--on-error skip`` are
reported on stderr and in OUT_DIR/errors.jsonl, and still exit 0); 1 when ``--on-error stop``
stopped the run at a failure; 2 for a usage error (nothing is written); 130 when interrupted
(rerun with ``--resume``).

    gafu dataset stylize data/ -o out/ --styles paintings/ --variants 2 --seed 7
    gafu dataset stylize data/ -o out/ --random-style --max-size 512 --workers 2
    gafu dataset stylize data/ -o out/ --builtin all --backend ray --ray-address auto
    gafu dataset stylize data/ -o out/ --styles paintings/ --resume        # after a crash
"""

from __future__ import annotations

import argparse
import sys

from . import common

EXIT_STOPPED = 1


def register(sub) -> None:
    p = sub.add_parser(
        "dataset",
        help="dataset jobs: stylize a whole image tree (mirrored, manifest, resume, workers, Ray)",
        description="Jobs over whole image datasets.",
    )
    inner = p.add_subparsers(dest="dataset_command", metavar="JOB", parser_class=type(p))
    s = inner.add_parser(
        "stylize",
        help="stylize every image under IN_DIR into OUT_DIR (tree mirrored, one manifest row per output)",
        description=(
            "Stylize every image under IN_DIR into OUT_DIR/<rel dir>/<stem>__v<k>.png, mirroring the tree "
            "(folder names are labels). Each item's randomness comes from a seed derived from --seed, its "
            "relative path and its variant, so reruns give identical bytes. OUT_DIR/manifest.jsonl records "
            "every output; failures go to OUT_DIR/errors.jsonl; --resume continues after a crash."
        ),
    )
    s.add_argument("in_dir", metavar="IN_DIR", help="input folder (searched recursively)")
    s.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (tree mirrored)")

    g = s.add_argument_group("styles (give one of them)")
    g.add_argument("--styles", nargs="+", metavar="DIR_OR_FILE",
                   help="style images or folders of them; each item uses one, chosen by its seed")
    g.add_argument("--builtin", metavar="all|N[,N...]", help="built-in styles of the fast network (0-25, or all)")
    g.add_argument("--random-style", action="store_true",
                   help="sample style vectors from a Gaussian fitted on the style encoder's vectors of --styles "
                   "(default: the paintings bundled with gafu); style augmentation, no style image needed")

    g = s.add_argument_group("stylization")
    g.add_argument("--method", choices=("fast", "optimize"), default="fast",
                   help="fast: one forward pass (default); optimize: Gatys optimization, --steps steps")
    g.add_argument("--variants", type=common.positive_int, default=1, metavar="N",
                   help="outputs per input image, each with its own seed (default 1)")
    g.add_argument("--strength", type=common.nonneg_float, default=1.0, metavar="X",
                   help="fast: 0 = the photo's own style .. 1 = the style's (default 1)")
    g.add_argument("--preserve-color", action="store_true", help="fast: keep the photos' colours")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--size", type=common.positive_int, metavar="PX", help="long side of the outputs, exactly")
    size.add_argument("--max-size", type=common.positive_int, metavar="PX",
                      help="cap on the long side (larger images are shrunk; default: every output has its input's size)")
    g.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    g.add_argument("--steps", type=common.positive_int, default=None, metavar="N",
                   help="optimize: optimizer steps per image (default 50)")
    g.add_argument("--preset", default="fast", help="optimize: settings preset (default fast)")
    g.add_argument("--ext", choices=("png", "keep"), default="png",
                   help="png: lossless PNG (default); keep: the input's format (.bmp/.gif become PNG)")

    g = s.add_argument_group("running")
    g.add_argument("--workers", type=common.positive_int, default=None, metavar="N",
                   help="local worker processes, or Ray actors (default 1 local; with ray: one per CPU)")
    g.add_argument("--threads", type=common.positive_int, metavar="N",
                   help="threads per worker (default: all cores with one worker, 1 with several)")
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join: auto or host:port (default: start a local one on 127.0.0.1)")
    g.add_argument("--ray-cpus", type=common.nonneg_float, default=0.5, metavar="X",
                   help="CPUs each Ray actor requests; fractions leave room for Ray's own tasks (default 0.5)")
    g.add_argument("--ray-gpus", type=common.nonneg_float, default=0.0, metavar="X", help="GPUs per Ray actor")
    g.add_argument("--resume", action="store_true",
                   help="continue a run in OUT_DIR: skip items whose output and manifest row match")
    g.add_argument("--overwrite", action="store_true", help="start again in an OUT_DIR that holds a run")
    g.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                   help="skip: record the failure in errors.jsonl and go on (default); stop: stop the run")
    g.add_argument("--limit", type=common.positive_int, metavar="K", help="only the first K items (sorted)")
    g.add_argument("--dry-run", action="store_true", help="print the plan; load nothing, write nothing")
    g.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    common.add_device_arg(g)
    g.add_argument("--weights", metavar="PATH", help="optimize: VGG19 weights file (default: bundled)")
    g.add_argument("--model-dir", metavar="DIR", help="fast: folder with the ONNX files")
    s.set_defaults(func=run)
    p.set_defaults(func=lambda args: _need_job(p))


def _need_job(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from .. import dataset
    from ..errors import GafuError

    if args.method == "fast" and args.steps is not None:
        raise GafuError("--steps is for --method optimize")
    if args.ray_address and args.backend != "ray":
        raise GafuError("--ray-address needs --backend ray")
    workers = args.workers
    if workers is None:
        workers = 1
        if args.backend == "ray":
            import os

            workers = os.cpu_count() or 1
    bar = None

    def on_start(todo: int, kept: int) -> None:
        nonlocal bar
        from tqdm import tqdm

        bar = tqdm(total=todo + kept, initial=kept, unit="img", desc="gafu dataset", file=sys.stderr,
                   disable=None, dynamic_ncols=True, leave=False, smoothing=0.1)

    failures = []

    def on_row(row: dict) -> None:
        if row["status"] != "ok":
            failures.append(row)
            if bar is not None:
                bar.write(f"failed: {row['input']}: {row.get('error')}", file=sys.stderr)
            elif not args.json:
                print(f"failed: {row['input']}: {row.get('error')}", file=sys.stderr)
        if bar is not None:
            bar.update(1)

    try:
        report = dataset.stylize(
            args.in_dir, args.output,
            styles=args.styles, builtin=args.builtin, random_style=args.random_style,
            method=args.method, variants=args.variants, strength=args.strength,
            preserve_color=args.preserve_color, size=args.size, max_size=args.max_size, seed=args.seed,
            workers=workers, backend=args.backend, ray_address=args.ray_address,
            ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus, resume=args.resume, overwrite=args.overwrite,
            on_error=args.on_error, limit=args.limit, dry_run=args.dry_run, ext=args.ext,
            steps=args.steps if args.steps is not None else dataset.OPTIMIZE_STEPS, preset=args.preset,
            device=args.device, threads=args.threads, weights=args.weights, model_dir=args.model_dir,
            on_row=on_row, on_start=on_start,
        )
    finally:
        if bar is not None:
            bar.close()
    plan = report.plan
    if args.dry_run:
        if args.json:
            from ..jobs.plan import plan_rows

            common.print_json({"command": "dataset stylize", **report.to_dict(), "items": plan_rows(plan)})
        else:
            for it in plan.items:
                style = f", style {it.style}" if it.style else ""
                print(f"{it.input} -> {it.output} (seed {it.seed}{style})")
            _print_plan_totals(plan)
        return 0
    run = report.run
    if args.json:
        common.print_json({"command": "dataset stylize", **report.to_dict(),
                           "manifest": str(plan.manifest_path),
                           "errors_file": str(plan.errors_path) if run.failed else None})
    else:
        _print_plan_totals(plan, file=sys.stderr)
        parts = [f"{run.done} written", f"{run.kept} already complete"]
        if run.failed:
            parts.append(f"{run.failed} failed (see {plan.errors_path})")
        if run.not_run:
            parts.append(f"{run.not_run} not run")
        print(f"gafu dataset: {', '.join(parts)}; {run.seconds:.1f} s, {run.images_per_s:.2f} img/s; "
              f"manifest {plan.manifest_path}", file=sys.stderr)
    return EXIT_STOPPED if run.stopped else 0


def _print_plan_totals(plan, file=None) -> None:
    file = file or sys.stdout
    print(f"{plan.images} images, {len(plan.items)} outputs planned in {plan.out_dir}", file=file)
    if plan.skipped:
        shown = ", ".join(plan.skipped[:5]) + (f", ... ({len(plan.skipped)} in all)" if len(plan.skipped) > 5 else "")
        print(f"skipped (not images): {shown}", file=file)
    if plan.licence:
        first = (plan.licence["text"].splitlines() or [""])[0]
        print(f"licence: {plan.licence['file']}: {first[:80]}", file=file)
