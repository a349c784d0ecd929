"""``gafu.defects.synth``: a synthetic defect dataset from a folder of good images, as a job.

The job is a plan of items run by :mod:`gafu.jobs` (per-item derived seeds, atomic writes, one
manifest row per output, ``resume`` after any crash, local worker processes or Ray):

- one item per good image: an untouched copy (decoded, written as PNG) into ``train/good`` or,
  for the held-out fraction ``holdout``, ``test/good``;
- ``n`` items per defect type: a good image (the sources cycle through all good images in an
  order drawn from the run seed), a mask generated from the item's seed (or read from a folder), a
  fill stylized inside it and blended in; the defect image and its mask are written, the mask first.

An item's randomness comes only from its seed (BLAKE2b of the run seed, the defect type and the
item's number), so reruns give the same bytes and item ``k`` does not depend on ``n``.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import GafuError
from ..jobs.manifest import derive_seed, settings_hash, sha256_bytes, sub_seed
from ..jobs.plan import Item, Plan, read_licence, scan_tree
from ..jobs.runner import check_run_options, run_plan
from .blend import apply, check_blend, ring
from .fill import BUILTIN_LICENCE, METHODS, OPTIMIZE_STEPS, Filler, FillSpec, choose_key, crop_box, match_colors, parse_fill, self_patch
from .layout import FOLDERS, Layout, check_category, check_defect_name, check_layout, width_for
from .masks import MASK_KINDS, folder_mask, foreground, generate

PathLike = Union[str, os.PathLike]

DEFAULT_DEFECTS = ("crack", "stain")
#: Mask kind of a defect type when ``mask`` is not given (other names: perlin).
DEFECT_MASKS = {
    "crack": "scratch", "scratch": "scratch", "cut": "scratch", "thread": "scratch",
    "stain": "blob", "spot": "blob", "hole": "blob", "dent": "blob", "squeeze": "blob",
    "contamination": "perlin", "color": "perlin", "colour": "perlin", "print": "perlin", "rough": "perlin",
}
GOOD_KEY = "good"
#: Band (px) outside the mask over which the structure-preservation score is measured.
RING_PX = 8
#: BT.601 luma weights (as gafu.color.BT601_LUMA, which lives beside torch code).
LUMA = (0.299, 0.587, 0.114)


def _version() -> str:
    from .. import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# argument checks


def _fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0, closed_low: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) and np.isfinite(value)
    if ok:
        ok = (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bound = "[" if closed_low else "("
        raise GafuError(f"{name} must be a number in {bound}{low:g}, {high:g}], got {value!r}", argument=name)
    return float(value)


def parse_defects(defect_types: Any, mask: Optional[str]) -> List[Tuple[str, str]]:
    """``"crack,stain"`` / ``["crack", "dent=perlin"]`` -> [(name, mask kind)]; ``mask`` (a kind)
    overrides the per-type default; a mask folder gives kind 'dir'."""
    items = defect_types.split(",") if isinstance(defect_types, str) else list(defect_types or [])
    items = [str(s).strip() for s in items if str(s).strip()]
    if not items:
        raise GafuError("defect_types is empty; give names like crack,stain", argument="defect_types")
    out, seen = [], set()
    for it in items:
        name, _, kind = it.partition("=")
        name = check_defect_name(name.strip())
        kind = kind.strip().lower()
        if name in seen:
            raise GafuError(f"defect type '{name}' is given twice", argument="defect_types")
        seen.add(name)
        if kind and kind not in MASK_KINDS:
            raise GafuError(f"unknown mask kind '{kind}' for defect '{name}'; choose from: {', '.join(MASK_KINDS)}",
                            argument="defect_types")
        if mask is not None:
            kind = mask
        out.append((name, kind or DEFECT_MASKS.get(name, "perlin")))
    return out


def _mask_source(mask: Optional[PathLike]) -> Tuple[Optional[str], Optional[str]]:
    """(kind or None, folder or None) from ``mask=``: a kind name, or a folder of masks."""
    if mask is None:
        return None, None
    text = str(mask)
    if text in MASK_KINDS:
        return text, None
    p = Path(text)
    if p.is_dir():
        return "dir", str(p.resolve())
    raise GafuError(f"mask must be one of {', '.join(MASK_KINDS)} or a folder of masks, got {text!r}",
                    argument="mask")


def _roi_source(roi: Optional[PathLike]) -> Tuple[Optional[str], Optional[str]]:
    if roi is None or str(roi) == "none":
        return None, None
    if str(roi) == "auto":
        return "auto", None
    p = Path(str(roi))
    if p.is_dir():
        return "dir", str(p.resolve())
    raise GafuError(f"roi must be 'none', 'auto' or a folder of object masks, got {str(roi)!r}", argument="roi")


# ---------------------------------------------------------------------------------------------
# the worker


def decode(data: bytes, name: str) -> Tuple[np.ndarray, bool]:
    """(pixels, is_grey): HxW uint8 for a greyscale file, HxWx3 otherwise (as gafu.dataset decodes)."""
    from ..dataset import _decode

    im, grey = _decode(data, name)
    return (np.asarray(im.convert("L")) if grey else np.asarray(im)), grey


def encode_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    from ..image import atomic_write

    atomic_write(path, lambda fh: fh.write(data))


def gradient_magnitude(pixels: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the BT.601 luma (0..255 scale, borders mirrored), HxW float64.

    The same measure as :func:`gafu.analysis.gradient_magnitude`, in numpy: the fast engine's
    workers never import torch.
    """
    luma = pixels.astype(np.float64) if pixels.ndim == 2 else pixels.astype(np.float64) @ np.array(LUMA)
    p = np.pad(luma, 1, mode="reflect")
    h, w = luma.shape

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return np.hypot(gx, gy)


def structure_score(before: np.ndarray, after: np.ndarray, band: np.ndarray) -> Optional[float]:
    """Pearson correlation of the Sobel gradient magnitudes of ``before`` and ``after`` over
    ``band`` (the surroundings of the defect): 1 = the surrounding structure is kept."""
    if not band.any():
        return None
    ga, gb = gradient_magnitude(before)[band], gradient_magnitude(after)[band]
    ga, gb = ga - ga.mean(), gb - gb.mean()
    denom = float(np.sqrt((ga * ga).sum() * (gb * gb).sum()))
    return 1.0 if denom == 0.0 else float((ga * gb).sum() / denom)


@dataclass
class DefectWorkerFactory:
    """Everything a worker needs, as plain data (pickled to worker processes and Ray actors)."""

    good_dir: str
    out_dir: str
    layout: str
    category: str
    kinds: Dict[str, str]  # defect type -> mask kind ('perlin' | 'blob' | 'scratch' | 'dir')
    mask_dir: Optional[str]
    roi: Optional[str]  # None | 'auto' | 'dir'
    roi_dir: Optional[str]
    fill: FillSpec
    method: str
    blend: str
    feather: float
    strength: float
    min_area: float
    max_area: float
    match_color: bool
    steps: int
    threads: Optional[int]
    weights: Optional[str]
    model_dir: Optional[str]
    copies: Dict[str, str]  # source rel path -> its untouched copy in the dataset

    def __call__(self) -> "DefectWorker":
        return DefectWorker(self)


class DefectWorker:
    def __init__(self, spec: DefectWorkerFactory) -> None:
        self.spec = spec
        self.filler = Filler(spec.method, threads=spec.threads, weights=spec.weights, model_dir=spec.model_dir,
                             steps=spec.steps)
        self.layout = Layout(spec.layout, spec.category)
        if spec.method == "optimize" and spec.threads:
            import torch

            torch.set_num_threads(int(spec.threads))  # a worker process of our own: its threads

    def __call__(self, item: Item) -> Dict[str, Any]:
        sp = self.spec
        t = time.perf_counter()
        data = (Path(sp.good_dir) / item.input).read_bytes()
        source_sha = sha256_bytes(data)
        pixels, grey = decode(data, item.input)
        timings = {"read": time.perf_counter() - t}
        if item.style == GOOD_KEY:
            encoded = encode_png(pixels)
            _write(Path(sp.out_dir) / item.output, encoded)
            return {"kind": "good", "source": item.input, "source_sha256": source_sha,
                    "width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "mode": "L" if grey else "RGB",
                    "output_sha256": sha256_bytes(encoded),
                    "timings": {k: round(v, 4) for k, v in timings.items()}}
        return self._defect(item, pixels, grey, source_sha, timings)

    def _defect(self, item: Item, pixels: np.ndarray, grey: bool, source_sha: str, timings: dict) -> Dict[str, Any]:
        from PIL import Image

        sp = self.spec
        defect = item.style.split(":", 1)[1]
        kind = sp.kinds[defect]
        shape = pixels.shape[:2]
        t = time.perf_counter()
        rgb = np.repeat(pixels[..., None], 3, axis=2) if grey else pixels
        luma = pixels if grey else np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
        roi = None
        if sp.roi == "auto":
            roi = foreground(luma)
        elif sp.roi == "dir":
            roi, _ = folder_mask(sp.roi_dir, item.input, shape, what="roi mask")
        mask_info: Dict[str, Any] = {"kind": kind}
        if kind == "dir":
            mask, mask_rel = folder_mask(sp.mask_dir, item.input, shape)
            if roi is not None:
                mask &= roi
            mask_info["file"] = mask_rel
        else:
            rng = np.random.default_rng(sub_seed(item.seed, "mask"))
            mask = generate(kind, rng, shape, min_area=sp.min_area, max_area=sp.max_area, roi=roi,
                            jagged=(defect == "crack"))
        if not mask.any():
            raise GafuError(f"the mask for {item.input} is empty" + (" inside the object region" if roi is not None else ""))
        timings["mask"] = time.perf_counter() - t
        t = time.perf_counter()
        x0, y0, x1, y1 = box = crop_box(mask)
        crop_mask = mask[y0:y1, x0:x1]
        crop_rgb = rgb[y0:y1, x0:x1]
        frng = np.random.default_rng(sub_seed(item.seed, "fill"))
        key = choose_key(sp.fill, frng)
        fill_info: Dict[str, Any] = {"kind": sp.fill.kind}
        patch = None
        if key == "self":
            patch, pbox = self_patch(frng, Image.fromarray(rgb, "RGB"), box, roi)
            fill_info["patch"] = list(pbox)
            fill_info["licence"] = "the source image's (see licence)"
        elif key.startswith("builtin:"):
            fill_info["builtin"] = int(key.split(":", 1)[1])
            fill_info["licence"] = BUILTIN_LICENCE
        else:
            fill_info["file"] = Path(key).name
            fill_info["licence"] = sp.fill.licences.get(key)
        stylized = self.filler.render(Image.fromarray(crop_rgb, "RGB"), crop_mask, key, sub_seed(item.seed, "init"),
                                      style_image=patch)
        fill = np.asarray(stylized.convert("RGB"))
        if sp.match_color:
            fill = match_colors(fill, crop_rgb, crop_mask)
        timings["fill"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pixels.copy()
        out[y0:y1, x0:x1] = apply(pixels[y0:y1, x0:x1], fill, crop_mask, blend=sp.blend, feather=sp.feather,
                                  strength=sp.strength, grey=grey)
        timings["blend"] = time.perf_counter() - t
        t = time.perf_counter()
        quality = self._quality(pixels, out, mask, box)
        timings["quality"] = time.perf_counter() - t
        t = time.perf_counter()
        mask_png = encode_png(np.where(mask, 255, 0).astype(np.uint8))
        image_png = encode_png(out)
        mask_path = self.layout.mask_for(item.output)
        _write(Path(sp.out_dir) / mask_path, mask_png)  # the mask first: an image on disk always has its mask
        _write(Path(sp.out_dir) / item.output, image_png)
        timings["write"] = time.perf_counter() - t
        pixels_in = int(mask.sum())
        return {
            "kind": "defect", "defect": defect, "source": item.input, "source_sha256": source_sha,
            "source_copy": sp.copies.get(item.input), "mask": mask_path, "mask_sha256": sha256_bytes(mask_png),
            "also_written": {mask_path: sha256_bytes(mask_png)},
            "mask_info": {**mask_info, "area": round(pixels_in / mask.size, 6), "pixels": pixels_in,
                          "bbox": [int(v) for v in _bbox(mask)], "roi": sp.roi},
            "fill": fill_info, "crop": list(box), "method": sp.method, "blend": sp.blend, "feather": sp.feather,
            "strength": sp.strength, "match_color": sp.match_color, "outside_identical": True,
            "width": int(shape[1]), "height": int(shape[0]), "mode": "L" if grey else "RGB",
            "quality": quality, "output_sha256": sha256_bytes(image_png),
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }

    def _quality(self, before: np.ndarray, after: np.ndarray, mask: np.ndarray, box) -> Dict[str, Any]:
        diff = np.abs(after.astype(np.int16) - before.astype(np.int16))
        if diff.ndim == 3:
            diff = diff.mean(axis=2)
        inside = float(diff[mask].mean())
        outside = float(diff[~mask].mean()) if (~mask).any() else 0.0
        h, w = mask.shape
        x0, y0, x1, y1 = box
        pad = RING_PX + 2
        ys, xs = slice(max(0, y0 - pad), min(h, y1 + pad)), slice(max(0, x0 - pad), min(w, x1 + pad))
        band = ring(mask[ys, xs], RING_PX)
        score = structure_score(before[ys, xs], after[ys, xs], band)
        return {"change_inside": round(inside, 4), "change_outside": round(outside, 6),
                "changed_share": round(float((diff[mask] > 0).mean()), 6),
                "structure": None if score is None else round(score, 6)}


def _bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ---------------------------------------------------------------------------------------------
# the API


@dataclass
class SynthSummary:
    """What :func:`synth` planned and did; ``to_dict()`` is the CLI's ``--json``."""

    out_dir: str
    category: str
    layout: str
    root: str  # the category folder (MVTecAD: root=out_dir, category=category)
    train_good: int
    test_good: int
    defects: Dict[str, int]  # defect type -> images planned
    planned: int
    done: int
    kept: int
    failed: int
    seconds: float
    manifest: str
    report: Optional[str] = None  # quality.json
    contact_sheets: Dict[str, str] = field(default_factory=dict)
    quality: Dict[str, Any] = field(default_factory=dict)
    errors: List[Dict[str, Any]] = field(default_factory=list)
    settings: Dict[str, Any] = field(default_factory=dict)
    skipped_files: List[str] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["items_per_s"] = round(self.items_per_s, 4)
        d["seconds"] = round(self.seconds, 4)
        return d


def _holdout(images: List[str], fraction: float, seed: int) -> set:
    """The held-out good images: the first round(fraction * N) in an order drawn from the seed,
    at least one when fraction > 0 and N > 1, never all of them (training needs one)."""
    if fraction <= 0 or len(images) < 2:
        return set()
    k = min(len(images) - 1, max(1, int(round(fraction * len(images)))))
    order = sorted(images, key=lambda rel: derive_seed(seed, "holdout/" + rel, 0))
    return set(order[:k])


def plan_job(good_dir: PathLike, out_dir: PathLike, *, category: str, n: int, defect_types: Any,
             mask: Optional[PathLike], fill: str, method: str, blend: str, feather: float, strength: float,
             min_area: float, max_area: float, holdout: float, layout: str, seed: int, roi: Optional[PathLike],
             match_color: bool, steps: int, threads: Optional[int], weights: Optional[PathLike],
             model_dir: Optional[PathLike]) -> Tuple[Plan, DefectWorkerFactory]:
    """Validate everything and plan the job (no model work, nothing written)."""
    check_category(category)
    check_layout(layout)
    if method not in METHODS:
        raise GafuError(f"unknown method '{method}'; choose from: {', '.join(METHODS)}", argument="method")
    check_blend(blend)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise GafuError(f"n must be a whole number >= 1, got {n!r}", argument="n")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise GafuError(f"seed must be a whole number, got {seed!r}", argument="seed")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GafuError(f"steps must be a whole number >= 1, got {steps!r}", argument="steps")
    if isinstance(feather, bool) or not isinstance(feather, (int, float)) or not 0 <= feather <= 256:
        raise GafuError(f"feather must be a number of pixels in [0, 256], got {feather!r}", argument="feather")
    strength = _fraction("strength", strength)
    min_area = _fraction("min_area", min_area)
    max_area = _fraction("max_area", max_area)
    if min_area > max_area:
        raise GafuError(f"min_area ({min_area:g}) is larger than max_area ({max_area:g})", argument="min_area")
    holdout = _fraction("holdout", holdout, high=0.9, closed_low=True)
    n, seed = int(n), int(seed)
    mask_kind, mask_dir = _mask_source(mask)
    roi_kind, roi_dir = _roi_source(roi)
    defects = parse_defects(defect_types if defect_types is not None else DEFAULT_DEFECTS, mask_kind)
    spec = parse_fill(fill)
    if method == "optimize" and spec.kind == "builtin":
        raise GafuError("method 'optimize' needs style images (style:, texture: or self); builtin: is the fast "
                        "network's", argument="method")

    src, dst = Path(good_dir), Path(out_dir)
    if not src.is_dir():
        raise GafuError(f"good images folder not found: {src}", argument="good_dir")
    if dst.exists() and not dst.is_dir():
        raise GafuError(f"output must be a folder, got a file: {dst}", argument="out_dir")
    rs, rd = src.resolve(), dst.resolve()
    if rd == rs or rs in rd.parents:
        raise GafuError(f"output folder {dst} is inside the good images folder {src}; choose another",
                        argument="out_dir")
    images, others, licence_path = scan_tree(src)
    if not images:
        raise GafuError(f"no images found in {src}", argument="good_dir")
    held = _holdout(images, holdout, seed)
    lay = Layout(layout, category)
    train = [r for r in images if r not in held]
    test = [r for r in images if r in held]
    gw = width_for(max(len(train), len(test)))
    dw = width_for(n)
    copies = {rel: lay.good(False, i, gw) for i, rel in enumerate(train)}
    copies.update({rel: lay.good(True, i, gw) for i, rel in enumerate(test)})
    sources = sorted(images, key=lambda rel: derive_seed(seed, "source/" + rel, 0))

    settings: Dict[str, Any] = {
        "job": "defects synth", "category": category, "layout": layout, "n": n,
        "defect_types": [{"name": d, "mask": k} for d, k in defects], "mask_dir": mask_dir,
        "roi": roi_kind, "roi_dir": roi_dir, "fill": spec.to_dict(), "method": method, "blend": blend,
        "feather": float(feather), "strength": strength, "min_area": min_area, "max_area": max_area,
        "holdout": holdout, "seed": seed, "match_color": bool(match_color), "gafu": _version(),
    }
    if method == "optimize":
        from ..dataset import _weights_hashes

        settings.update(steps=steps, weights=_weights_hashes("optimize", weights))
    else:
        from ..fast import MODEL_FILES

        settings["weights"] = {f: h for f, h in MODEL_FILES.values()}
    digest = settings_hash(settings)
    items: List[Item] = []

    def add(rel: str, variant: int, output: str, s: int, key: str) -> None:
        h = settings_hash({"job": digest, "input": rel, "variant": variant, "output": output, "seed": s, "key": key})
        items.append(Item(len(items), rel, variant, output, s, key, h))

    for rel in images:
        add(rel, 0, copies[rel], derive_seed(seed, rel, 0), GOOD_KEY)
    for t, (name, _kind) in enumerate(defects):
        for k in range(n):
            rel = sources[(k + t) % len(sources)]
            add(rel, k, lay.defect(name, k, dw), derive_seed(seed, f"defect/{name}", k), f"defect:{name}")
    plan = Plan(in_dir=src, out_dir=dst, items=items, settings=settings, settings_digest=digest, skipped=others,
                images=len(images), licence=read_licence(licence_path) if licence_path is not None else None)
    factory = DefectWorkerFactory(
        good_dir=str(rs), out_dir=str(rd), layout=layout, category=category, kinds=dict(defects),
        mask_dir=mask_dir, roi=roi_kind, roi_dir=roi_dir, fill=spec, method=method, blend=blend,
        feather=float(feather), strength=strength, min_area=min_area, max_area=max_area,
        match_color=bool(match_color), steps=steps, threads=threads,
        weights=str(Path(weights).resolve()) if weights else None,
        model_dir=str(Path(model_dir).resolve()) if model_dir else None, copies=copies,
    )
    return plan, factory


def synth(
    good_dir: PathLike,
    out_dir: PathLike,
    *,
    category: str,
    n: int = 10,
    defect_types: Any = DEFAULT_DEFECTS,
    mask: Optional[PathLike] = None,
    fill: str = "self",
    method: str = "fast",
    blend: str = "alpha",
    feather: float = 3.0,
    strength: float = 1.0,
    min_area: float = 0.002,
    max_area: float = 0.05,
    holdout: float = 0.2,
    layout: str = "mvtec",
    seed: int = 0,
    workers: int = 1,
    backend: str = "local",
    resume: bool = False,
    overwrite: bool = False,
    roi: Optional[PathLike] = None,
    match_color: bool = False,
    steps: int = OPTIMIZE_STEPS,
    threads: Optional[int] = None,
    weights: Optional[PathLike] = None,
    model_dir: Optional[PathLike] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> SynthSummary:
    """Write a synthetic defect dataset for ``category`` from the good images under ``good_dir``.

    Args:
        n: defect images per defect type.
        defect_types: names (folder names), e.g. ``"crack,stain"``; ``name=kind`` sets a type's
            mask kind (default: crack/scratch -> scratch, stain/spot/hole/dent -> blob, others perlin).
        mask: 'perlin' | 'blob' | 'scratch' for every type, or a folder of masks (same relative
            paths as the good images).
        fill: ``style:PATH_OR_DIR`` | ``texture:DIR`` | ``builtin:K`` | ``self`` (:mod:`gafu.defects.fill`).
        method: 'fast' (one forward pass) or 'optimize' (a short optimization, ``steps``).
        blend: 'alpha' (inward feather of ``feather`` px), 'poisson' (OpenCV seamlessClone) or 'mask'.
        strength: opacity of the fill, (0, 1].
        min_area, max_area: mask area bounds, fractions of the image.
        holdout: fraction of the good images kept for test/good.
        layout: 'mvtec' or 'folder' (:mod:`gafu.defects.layout`).
        seed: run seed; every item's seed derives from it.
        workers, backend: local worker processes or Ray actors (:func:`gafu.jobs.run_plan`).
        resume: continue after a crash (items whose files and rows match are kept); overwrite:
            start again in a folder that holds a run.
        roi: None, 'auto' (the object by Otsu's threshold) or a folder of object masks: masks are
            drawn inside it.
        match_color: match the fill's colours to the original's inside the mask.
        progress: called with (items finished, items planned) as the run goes.
        on_row: called with every manifest/error row as it is written.
    Returns:
        :class:`SynthSummary` (counts, paths, quality summary, errors).
    """
    from .report import write_report

    check_run_options(backend, "skip", workers)
    if threads is None and (workers > 1 or backend == "ray"):
        threads = 1
    plan, factory = plan_job(good_dir, out_dir, category=category, n=n, defect_types=defect_types, mask=mask,
                             fill=fill, method=method, blend=blend, feather=feather, strength=strength,
                             min_area=min_area, max_area=max_area, holdout=holdout, layout=layout, seed=seed,
                             roi=roi, match_color=match_color, steps=steps, threads=threads, weights=weights,
                             model_dir=model_dir)
    total = len(plan.items)
    finished = 0

    def on_start(todo: int, kept: int) -> None:
        nonlocal finished
        finished = kept
        if progress is not None:
            progress(finished, total)

    def row_seen(row: Dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        if on_row is not None:
            on_row(row)
        if progress is not None:
            progress(finished, total)

    common = {"gafu_version": _version(), "licence": plan.licence["text"] if plan.licence else None,
              "settings": plan.settings}
    run = run_plan(plan, factory, resume=resume, overwrite=overwrite, workers=workers, backend=backend,
                   on_row=row_seen, on_start=on_start, common=common)
    report_path, sheets, quality = write_report(plan, Layout(layout, category))
    counts: Dict[str, int] = {}
    for it in plan.items:
        if it.style != GOOD_KEY:
            name = it.style.split(":", 1)[1]
            counts[name] = counts.get(name, 0) + 1
    goods = [it for it in plan.items if it.style == GOOD_KEY]
    held = sum(1 for it in goods if it.output.startswith(f"{category}/{FOLDERS[layout][1]}/"))
    return SynthSummary(
        out_dir=str(plan.out_dir), category=category, layout=layout, root=str(plan.out_dir / category),
        train_good=len(goods) - held, test_good=held, defects=counts, planned=total, done=run.done,
        kept=run.kept, failed=run.failed, seconds=run.seconds, manifest=str(plan.manifest_path),
        report=report_path, contact_sheets=sheets, quality=quality,
        errors=[{k: r.get(k) for k in ("input", "output", "error")} for r in run.errors],
        settings=plan.settings, skipped_files=list(plan.skipped),
    )
