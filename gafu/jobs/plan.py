"""An input tree -> a plan: the sorted list of items a dataset job will produce, as plain data.

Layout
    ``IN_DIR/<rel dir>/<stem>.<ext>`` gives ``OUT_DIR/<rel dir>/<stem>__v<k>.<out ext>`` for each
    variant ``k`` (folder names are labels and stay as they are). Files without an image extension
    are listed in :attr:`Plan.skipped`; hidden files and folders (".name") are ignored; a
    ``LICENSE``/``licence.txt`` (any case, optional ``.txt``/``.md``) at the top of IN_DIR is read
    into :attr:`Plan.licence`.

Each :class:`Item` has its own seed (:func:`gafu.jobs.manifest.derive_seed`), its style choice
(made from that seed by the caller's ``choose``) and the hash of everything that determines its
output (:attr:`Item.settings_hash`), which the manifest row records and ``resume`` compares.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..errors import GafuError
from .manifest import ERRORS_NAME, MANIFEST_NAME, derive_seed, settings_hash, sha256_file

PathLike = Union[str, os.PathLike]

#: Input extensions treated as images (others are listed as skipped).
INPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")
#: ``ext='keep'`` keeps these; other inputs (.bmp, .gif) are written as PNG.
KEEP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
EXT_CHOICES = ("png", "keep")
#: Names (lower case) of an optional licence file at the top of the input folder.
LICENCE_NAMES = tuple(f"{base}{suffix}" for base in ("license", "licence", "copying")
                      for suffix in ("", ".txt", ".md"))
#: Licence text longer than this is summarised in rows (first line + file hash).
LICENCE_TEXT_LIMIT = 300
#: Separator between the input's stem and the variant number in output names.
VARIANT_TAG = "__v"


@dataclass(frozen=True)
class Item:
    """One output to produce. Paths are POSIX paths relative to the input/output folders."""

    index: int  # position in the plan
    input: str
    variant: int
    output: str
    seed: int  # derived from the run seed, ``input`` and ``variant``
    style: Optional[str] = None  # the style chosen for this item (caller-defined key), if any
    settings_hash: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """What a run will do: items in order, plus what it will not touch and why."""

    in_dir: Path
    out_dir: Path
    items: List[Item]
    settings: Dict[str, Any]  # job-wide settings (method, strength, ...): plain data
    settings_digest: str  # settings_hash(settings)
    skipped: List[str] = field(default_factory=list)  # non-image files (relative paths)
    images: int = 0  # image files found (before --limit)
    licence: Optional[Dict[str, Any]] = None  # {"file", "sha256", "text"} from IN_DIR

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def errors_path(self) -> Path:
        return self.out_dir / ERRORS_NAME

    def summary(self) -> Dict[str, Any]:
        return {
            "in_dir": str(self.in_dir),
            "out_dir": str(self.out_dir),
            "images": self.images,
            "items": len(self.items),
            "skipped": list(self.skipped),
            "licence": None if self.licence is None else self.licence["file"],
            "settings": self.settings,
            "settings_hash": self.settings_digest,
        }


def output_ext(input_path: str, ext: str) -> str:
    """Extension of the output for ``input_path`` with ``ext`` 'png' (lossless) or 'keep'."""
    if ext == "png":
        return ".png"
    if ext == "keep":
        suffix = Path(input_path).suffix.lower()
        return suffix if suffix in KEEP_EXTENSIONS else ".png"
    raise GafuError(f"unknown ext '{ext}'; choose from: {', '.join(EXT_CHOICES)}")


def output_name(input_path: str, variant: int, ext: str) -> str:
    """``<rel dir>/<stem>__v<k><ext>`` for the input's relative POSIX path."""
    p = Path(input_path)
    name = f"{p.stem}{VARIANT_TAG}{variant}{output_ext(input_path, ext)}"
    parent = p.parent.as_posix()
    return name if parent == "." else f"{parent}/{name}"


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def scan_tree(in_dir: Path) -> tuple[List[str], List[str], Optional[Path]]:
    """(image files, other files, licence file) under ``in_dir``: relative POSIX paths, sorted.

    Hidden files and folders are ignored; folders are walked in sorted order, symlinked folders
    are not followed.
    """
    images, others, licence = [], [], None
    for dirpath, dirs, files in os.walk(in_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(dirpath)
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = (here / name).relative_to(in_dir).as_posix()
            if here == in_dir and name.lower() in LICENCE_NAMES and licence is None:
                licence = here / name
                continue
            if Path(name).suffix.lower() in INPUT_EXTENSIONS:
                images.append(rel)
            else:
                others.append(rel)
    return sorted(images), sorted(others), licence


def read_licence(path: Path) -> Dict[str, Any]:
    """The licence file as a manifest field: its name, sha256 and text (summarised when long)."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace").strip()
    if len(text) > LICENCE_TEXT_LIMIT:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        text = f"{first} [... {len(raw)} bytes; full text in {path.name}]"
    return {"file": path.name, "sha256": sha256_file(path), "text": text}


def build_plan(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    settings: Dict[str, Any],
    seed: int = 0,
    variants: int = 1,
    ext: str = "png",
    limit: Optional[int] = None,
    choose: Optional[Callable[[int], Optional[str]]] = None,
) -> Plan:
    """Plan the outputs for every image under ``in_dir``, ``variants`` per image, in sorted order.

    ``settings``: job-wide settings (plain data) that determine every output; ``choose(seed)``:
    the style key for an item from its seed (``None``: no choice to make); ``limit``: keep only
    the first ``limit`` items. Raises GafuError for a missing input folder, an output folder
    inside it, or two inputs that would write the same output.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not src.exists():
        raise GafuError(f"input folder does not exist: {src}")
    if not src.is_dir():
        raise GafuError(f"input must be a folder (the tree is mirrored), got a file: {src}")
    if dst.exists() and not dst.is_dir():
        raise GafuError(f"output must be a folder, got a file: {dst}")
    if _inside(dst, src):
        raise GafuError(f"output folder {dst} is inside the input folder {src}; choose another")
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
        raise GafuError(f"variants must be a whole number >= 1, got {variants!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise GafuError(f"limit must be a whole number >= 1, got {limit!r}")
    output_ext("x.png", ext)  # validates ext

    images, others, licence_path = scan_tree(src)
    digest = settings_hash(settings)
    items: List[Item] = []
    owner: Dict[str, str] = {}
    for rel in images:
        for k in range(variants):
            out = output_name(rel, k, ext)
            if out in owner:
                raise GafuError(
                    f"{owner[out]} and {rel} would both be written to {out}; "
                    "rename one, or keep the extensions apart with ext='keep'"
                )
            owner[out] = rel
            s = derive_seed(seed, rel, k)
            style = choose(s) if choose is not None else None
            h = settings_hash({"job": digest, "input": rel, "variant": k, "seed": s, "style": style})
            items.append(Item(len(items), rel, k, out, s, style, h))
    reserved = {MANIFEST_NAME, ERRORS_NAME}
    clash = next((it.output for it in items if it.output in reserved), None)
    if clash:  # pragma: no cover - output names always carry the variant tag
        raise GafuError(f"output {clash} would replace the job's own {clash}")
    if limit is not None:
        items = items[:limit]
    return Plan(
        in_dir=src,
        out_dir=dst,
        items=items,
        settings=settings,
        settings_digest=digest,
        skipped=others,
        images=len(images),
        licence=read_licence(licence_path) if licence_path is not None else None,
    )


def plan_rows(plan: Plan, keys: Sequence[str] = ("input", "variant", "output", "seed", "style")) -> List[dict]:
    """The plan as plain rows (for --dry-run)."""
    return [{k: getattr(it, k) for k in keys} for it in plan.items]
