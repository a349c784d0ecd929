"""The "Dataset / defects" tab's work, without Gradio: a preview of ``gafu dataset stylize`` and
``gafu defects synth`` on a few uploaded images, with the settings as the equivalent CLI command.

The preview runs the library's own jobs (:func:`gafu.dataset.stylize`, :func:`gafu.defects.synth`,
:func:`gafu.defects.check`) in one job folder of the app's workspace: the uploads are staged in
``<job>/photos`` (``<job>/paintings`` for uploaded paintings) and the job writes into
``<job>/out``. Nothing is written anywhere else. The command names the folders as placeholders
(``photos/``, ``paintings/``, ``stylized/``, ``defects/``) and the bundled paintings by their real
path, so that run on a folder holding the same images it gives the same files as the preview.

User mistakes raise :class:`gafu.errors.GafuError` (with ``argument`` naming the setting).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import GafuError
from .jobs import EXAMPLE_STYLES, Limits, check_float, check_int, check_upload, example_paths

#: At most this many uploaded images in one preview (the full job is the CLI command).
MAX_IMAGES = 8
#: Optimizer steps a dataset preview may run per image (method 'optimize').
MAX_STEPS = 50
#: Outputs per image in a dataset preview, and defect images per type in a defects preview.
MAX_VARIANTS = 4
MAX_DEFECTS_PER_TYPE = 8
MAX_DEFECT_TYPES = 4
#: The folder names the CLI command uses for the visitor's own folders.
PHOTOS, PAINTINGS, STYLIZED, DEFECTS_OUT = "photos/", "paintings/", "stylized/", "defects/"
MASK_BY_TYPE = "by defect type"
FILL_SELF = "self"
STYLE_SOURCES = ("paintings", "built-in", "random")


@dataclass
class Preview:
    """What the page shows: a gallery of (image path, caption), the CLI command, a summary."""

    gallery: List[Tuple[str, str]]
    command: str
    summary: str
    sheet: Optional[str] = None  # defects: the contact sheets, one under the other
    quality: Dict[str, Any] = field(default_factory=dict)  # defects: the quality summary
    out_dir: Optional[Path] = None


def _safe_name(name: str) -> str:
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".") or "image"
    return stem[:80] + suffix


def stage_uploads(files: Optional[Sequence[Any]], limits: Limits, folder: Path, what: str, *,
                  max_side: Optional[int] = None, at_most: int = MAX_IMAGES) -> Tuple[List[Path], List[str]]:
    """Check the uploads (size and pixel limits) and copy them into ``folder`` under their own
    (sanitised, de-duplicated) names. With ``max_side``, larger images are shrunk to it (PNG).
    Returns (staged paths, names of the shrunk ones)."""
    from PIL import Image

    from ..image import IMAGE_EXTENSIONS, load

    paths = [f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", f) for f in (files or []) if f]
    if not paths:
        raise GafuError(f"upload at least one {what}", argument="photos")
    if len(paths) > at_most:
        raise GafuError(f"at most {at_most} {what}s in a preview, got {len(paths)}; run the full job with the "
                        "command shown", argument="photos")
    folder.mkdir(parents=True, exist_ok=True)
    staged, shrunk, taken = [], [], set()
    for i, p in enumerate(paths):
        src = check_upload(p, limits, f"{what} {i + 1}")
        name = _safe_name(src.name)
        if Path(name).suffix not in IMAGE_EXTENSIONS:
            name = Path(name).stem + ".png"
        base, k = Path(name), 2
        while name.lower() in taken:
            name, k = f"{base.stem}-{k}{base.suffix}", k + 1
        taken.add(name.lower())
        dst = folder / name
        with Image.open(src) as im:
            w, h = im.size
        if max_side is not None and max(w, h) > max_side:
            im = load(src)
            s = max_side / max(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
            dst = dst.with_suffix(".png")
            im.save(dst)
            shrunk.append(dst.name)
        elif Path(src.name).suffix.lower() != dst.suffix:  # an image without an image extension
            load(src).save(dst)
        else:
            shutil.copyfile(src, dst)
        staged.append(dst)
    return staged, shrunk


def stack_sheets(paths: Sequence[str], out: Path) -> Optional[str]:
    """The dataset's contact sheets (one per defect type), one under the other, as one PNG."""
    from PIL import Image

    if not paths:
        return None
    sheets = []
    for p in paths:
        with Image.open(p) as im:
            sheets.append(im.convert("RGB"))
    canvas = Image.new("RGB", (max(s.width for s in sheets), sum(s.height for s in sheets)), (255, 255, 255))
    y = 0
    for s in sheets:
        canvas.paste(s, (0, y))
        y += s.height
    canvas.save(out)
    return str(out)


def _command(args: List[str]) -> str:
    return shlex.join(["gafu", *args])


# ---------------------------------------------------------------------------------------------
# gafu dataset stylize
# ---------------------------------------------------------------------------------------------
def dataset_args(*, source: str, examples: Sequence[str], uploaded: bool, builtin: str, method: str, steps: int,
                 variants: int, strength: float, preserve_color: bool, max_size: int, seed: int) -> List[str]:
    """The ``gafu dataset stylize`` arguments for these settings (without the leading ``gafu``)."""
    args = ["dataset", "stylize", PHOTOS, "-o", STYLIZED]
    styles = [str(p) for p in example_paths(examples, EXAMPLE_STYLES)] + ([PAINTINGS] if uploaded else [])
    if source == "built-in":
        args += ["--builtin", builtin]
    else:
        if styles:
            args += ["--styles", *styles]
        if source == "random":
            args.append("--random-style")
    args += ["--method", method]
    if method == "optimize":
        args += ["--steps", str(steps)]
    else:
        if strength != 1.0:
            args += ["--strength", f"{strength:g}"]
        if preserve_color:
            args.append("--preserve-color")
    if variants != 1:
        args += ["--variants", str(variants)]
    args += ["--max-size", str(max_size), "--seed", str(seed)]
    return args


def _style_caption(key: Optional[str]) -> str:
    if not key:
        return ""
    if key.startswith("builtin:"):
        return f"built-in style {key.split(':', 1)[1]}"
    if key == "random":
        return "random style"
    return Path(key).name


def dataset_preview(
    photos: Sequence[Any],
    job_dir: Path,
    limits: Limits,
    *,
    source: str = "paintings",
    style_examples: Sequence[str] = (),
    style_files: Sequence[Any] = (),
    builtin: str = "all",
    method: str = "fast",
    steps: int = 10,
    variants: int = 1,
    strength: float = 1.0,
    preserve_color: bool = False,
    max_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
    weights: Any = None,
) -> Preview:
    """Run ``gafu.dataset.stylize`` on the uploaded ``photos`` (at most :data:`MAX_IMAGES`) in
    ``job_dir``; the gallery holds every output, captioned with its input, variant and style."""
    from .. import dataset

    if source not in STYLE_SOURCES:
        raise GafuError(f"style source must be one of {', '.join(STYLE_SOURCES)}, got {source!r}", argument="source")
    if method not in dataset.METHODS:
        raise GafuError(f"method must be fast or optimize, got {method!r}", argument="method")
    max_size = check_int("max size", max_size, 16, limits.max_size)
    steps = check_int("steps", steps, 1, min(MAX_STEPS, limits.max_steps))
    variants = check_int("variants", variants, 1, MAX_VARIANTS)
    strength = check_float("strength", strength, 0.0, 1.0)
    seed = check_int("seed", seed, 0, 2**31 - 1)
    builtin = str(builtin or "").strip().replace(" ", "")
    if method == "optimize" and weights is not None and not isinstance(weights, (str, Path)):
        raise GafuError("this server's VGG19 weights are not a file; method optimize is not available here",
                        argument="method")
    styles: List[Path] = []
    uploaded: List[Path] = []
    if source != "built-in":
        styles = example_paths(style_examples, EXAMPLE_STYLES)
        if style_files:
            uploaded, _ = stage_uploads(style_files, limits, job_dir / PAINTINGS, "painting", at_most=limits.max_styles)
        if len(styles) + len(uploaded) > limits.max_styles:
            raise GafuError(f"at most {limits.max_styles} paintings at once, got {len(styles) + len(uploaded)}",
                            argument="styles")
        if source == "paintings" and not styles and not uploaded:
            raise GafuError("tick an example painting or upload one (or choose built-in or random styles)",
                            argument="styles")
    elif not builtin:
        raise GafuError("give built-in style numbers 0-25 like 3,7 or 'all'", argument="builtin")
    staged, _ = stage_uploads(photos, limits, job_dir / PHOTOS, "photo")
    if len(staged) * variants > MAX_IMAGES * 2:
        raise GafuError(f"a preview makes at most {MAX_IMAGES * 2} images: {len(staged)} photos x {variants} "
                        "variants is more", argument="variants")
    command = _command(dataset_args(
        source=source, examples=style_examples if source != "built-in" else (), uploaded=bool(uploaded),
        builtin=builtin, method=method, steps=steps, variants=variants, strength=strength,
        preserve_color=preserve_color, max_size=max_size, seed=seed))
    style_arg = [str(p) for p in styles] + ([str(job_dir / PAINTINGS)] if uploaded else [])
    out = job_dir / STYLIZED
    fast = method == "fast"
    report = dataset.stylize(
        job_dir / PHOTOS, out, styles=style_arg or None, builtin=builtin if source == "built-in" else None,
        random_style=source == "random", method=method, variants=variants,
        strength=strength if fast else 1.0, preserve_color=bool(preserve_color) and fast, max_size=max_size,
        seed=seed, steps=steps, device=device, weights=weights if not fast else None, workers=1,
    )
    gallery = []
    for it in report.plan.items:
        p = out / it.output
        if p.is_file():
            style = _style_caption(it.style)
            gallery.append((str(p), f"{it.input} · v{it.variant}" + (f" · {style}" if style else "")))
    run = report.run
    lines = [f"**{run.done} image{'s' if run.done != 1 else ''} in {run.seconds:.1f} s** "
             f"({len(staged)} photo{'s' if len(staged) != 1 else ''} x {variants} variant{'s' if variants != 1 else ''}, "
             f"{method}, long side at most {max_size} px)."]
    for e in run.errors:
        lines.append(f"- failed: {e.get('input')}: {e.get('error')}")
    return Preview(gallery=gallery, command=command, summary="\n".join(lines), out_dir=out)


# ---------------------------------------------------------------------------------------------
# gafu defects synth
# ---------------------------------------------------------------------------------------------
def parse_fill_choice(fill: Optional[str], uploaded: bool) -> Tuple[str, Optional[Path]]:
    """The page's fill choice -> (CLI ``--fill`` value, bundled painting or None). An uploaded
    painting wins; otherwise 'self', 'builtin:K' (numbers or all) or an example painting's name."""
    if uploaded:
        return f"style:{PAINTINGS}", None
    text = str(fill or FILL_SELF).strip()
    if text in EXAMPLE_STYLES:
        path = example_paths([text], EXAMPLE_STYLES)[0]
        return f"style:{path}", path
    if text == FILL_SELF or text.lower().startswith("builtin:"):
        return text, None
    raise GafuError(f"fill must be self, builtin:K (0-25 or all), an example painting or an uploaded painting, "
                    f"got {text!r}", argument="fill")


def defects_args(*, category: str, n: int, defect_types: str, mask: Optional[str], fill: str, blend: str,
                 seed: int) -> List[str]:
    """The ``gafu defects synth`` arguments for these settings (without the leading ``gafu``)."""
    args = ["defects", "synth", PHOTOS, "-o", DEFECTS_OUT, "--category", category, "--n", str(n),
            "--defect-types", defect_types]
    if mask is not None:
        args += ["--mask", mask]
    args += ["--fill", fill, "--blend", blend, "--seed", str(seed)]
    return args


def defects_preview(
    photos: Sequence[Any],
    job_dir: Path,
    limits: Limits,
    *,
    category: str = "sample",
    defect_types: str = "crack,stain",
    mask: Optional[str] = None,
    fill: str = FILL_SELF,
    fill_file: Any = None,
    blend: str = "alpha",
    n: int = 2,
    seed: int = 0,
) -> Preview:
    """Run ``gafu.defects.synth`` on the uploaded good ``photos`` (at most :data:`MAX_IMAGES`;
    images larger than ``limits.max_size`` are shrunk to it first, and the summary says so) and
    ``gafu.defects.check`` on the result. The gallery pairs each defect image with its mask; the
    contact sheets and the quality summary are the dataset's own report."""
    from .. import defects
    from ..defects.masks import MASK_KINDS
    from ..defects.synth import parse_defects
    from ..jobs import read_rows

    category = str(category or "").strip()
    n = check_int("n", n, 1, MAX_DEFECTS_PER_TYPE)
    seed = check_int("seed", seed, 0, 2**31 - 1)
    defect_types = ",".join(s.strip() for s in str(defect_types or "").split(",") if s.strip())
    mask = None if mask in (None, "", MASK_BY_TYPE) else str(mask)
    if mask is not None and mask not in MASK_KINDS:
        raise GafuError(f"mask kind must be {MASK_BY_TYPE}, perlin, blob or scratch, got {mask!r}", argument="mask")
    types = parse_defects(defect_types, mask)  # a clear message for a bad name before any upload work
    if len(types) > MAX_DEFECT_TYPES:
        raise GafuError(f"at most {MAX_DEFECT_TYPES} defect types in a preview, got {len(types)}",
                        argument="defect_types")
    fill_arg, _ = parse_fill_choice(fill, bool(fill_file))
    if fill_file:
        stage_uploads([fill_file], limits, job_dir / PAINTINGS, "fill painting", at_most=1)
    staged, shrunk = stage_uploads(photos, limits, job_dir / PHOTOS, "photo", max_side=limits.max_size)
    command = _command(defects_args(category=category, n=n, defect_types=defect_types, mask=mask, fill=fill_arg,
                                    blend=blend, seed=seed))
    out = job_dir / DEFECTS_OUT
    run_fill = fill_arg.replace(f"style:{PAINTINGS}", f"style:{job_dir / PAINTINGS}", 1)
    summary = defects.synth(job_dir / PHOTOS, out, category=category, n=n, defect_types=defect_types, mask=mask,
                            fill=run_fill, blend=blend, seed=seed, workers=1)
    rows = [r for r in read_rows(out / "manifest.jsonl") if r.get("kind") == "defect" and r.get("status") == "ok"]
    gallery = []
    for r in rows:
        info = r.get("mask_info") or {}
        name = f"{r['defect']}/{Path(r['output']).name}"
        gallery.append((str(out / r["output"]), f"{name} · {info.get('kind')} mask, "
                        f"{100 * info.get('area', 0):.2f}% · from {r['source']}"))
        gallery.append((str(out / r["mask"]), f"{name} · its mask"))
    sheet = stack_sheets(list(summary.contact_sheets.values()), job_dir / "contact_sheets.png")
    problems = defects.check(out)
    q = summary.quality.get("all", {})
    lines = [f"**{len(rows)} defect images in {summary.seconds:.1f} s** "
             f"({', '.join(f'{k} {v}' for k, v in summary.defects.items())}; {summary.train_good} train/good, "
             f"{summary.test_good} test/good)."]
    if q.get("images"):
        lines.append(f"Masks {100 * q['area']['min']:.2f}-{100 * q['area']['max']:.2f}% of the image; mean change "
                     f"{q['change_inside']:.1f} inside, {q['change_outside']:.1f} outside (0-255); structure kept "
                     f"around the masks {q['structure']:.3f}.")
    lines.append("`gafu defects check`: " + ("the dataset keeps every rule." if not problems else
                                             f"{len(problems)} problem(s): " + "; ".join(problems[:5])))
    if shrunk:
        lines.append(f"Shrunk to {limits.max_size} px for the preview (the command works at full size): "
                     + ", ".join(shrunk) + ".")
    for e in summary.errors:
        lines.append(f"- failed: {e.get('input')}: {e.get('error')}")
    return Preview(gallery=gallery, command=command, summary="\n".join(lines), sheet=sheet,
                   quality=summary.quality, out_dir=out)
