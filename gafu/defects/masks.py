"""Defect masks, generated per item from the item's own random generator (or read from a folder).

Every generator returns a boolean ``H x W`` array at the image's own size (never resized, so no
interpolation) whose area lies within ``[min_area, max_area]`` (fractions of the image), drawn
inside ``roi`` when one is given:

- :func:`perlin_mask`: Perlin gradient noise thresholded (as DRAEM's anomaly masks, Zavrtanik et
  al. 2021): several irregular blobs. The threshold is the noise quantile that gives the target
  area, so the area is exact (up to ties).
- :func:`blob_mask`: one to three ellipses with wavy edges (a few angular harmonics); their size
  is the quantile of the "normalised radius" that gives the target area, so it is exact too.
- :func:`scratch_mask`: random polylines with a width (Pillow's ImageDraw), smooth for scratches
  and jagged with branches for cracks; drawn again (next draws of the same generator) until the
  area is within bounds.

:func:`foreground` gives an automatic ROI (Otsu's threshold; the object is the side that the
border is not), :func:`folder_mask` reads a mask from a folder (thresholded at grey 127 and
resized with nearest neighbour only).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from ..errors import GafuError

MASK_KINDS = ("perlin", "blob", "scratch")
#: Attempts to draw a scratch whose area is within the bounds before the item fails.
SCRATCH_ATTEMPTS = 40


def target_area(rng: np.random.Generator, min_area: float, max_area: float) -> float:
    """A target area fraction, log-uniform in [min_area, max_area] (areas span orders of magnitude)."""
    if max_area <= min_area:
        return float(min_area)
    return float(math.exp(rng.uniform(math.log(min_area), math.log(max_area))))


def _roi_pixels(roi: Optional[np.ndarray], shape: Tuple[int, int]) -> int:
    return int(roi.sum()) if roi is not None else shape[0] * shape[1]


def _quantile_mask(score: np.ndarray, pixels: int, roi: Optional[np.ndarray]) -> np.ndarray:
    """The ``pixels`` pixels of lowest ``score`` (inside ``roi``), ties broken by position."""
    flat = score.astype(np.float64).ravel().copy()
    if roi is not None:
        flat[~roi.ravel()] = np.inf
    order = np.argsort(flat, kind="stable")[:pixels]
    out = np.zeros(flat.shape, dtype=bool)
    out[order] = True
    return out.reshape(score.shape)


def _pixels_for(rng, shape, min_area, max_area, roi) -> int:
    h, w = shape
    total = h * w
    avail = _roi_pixels(roi, shape)
    lo = max(1, int(math.ceil(min_area * total)))
    hi = max(lo, int(math.floor(max_area * total)))
    if avail < lo:
        raise GafuError(f"the object region has {avail} pixels, fewer than min_area={min_area:g} of the image "
                        f"({lo} pixels)", argument="min_area")
    want = int(round(target_area(rng, min_area, max_area) * total))
    return int(min(max(want, lo), hi, avail))


def perlin_noise(rng: np.random.Generator, shape: Tuple[int, int], cells: Tuple[int, int]) -> np.ndarray:
    """2-D Perlin gradient noise on ``shape`` with ``cells`` (rows, cols) lattice cells, in about [-1, 1].

    Random unit gradients at the lattice corners, dot products with the offsets, blended with the
    quintic fade ``6t^5 - 15t^4 + 10t^3`` (Perlin 2002).
    """
    h, w = shape
    cy, cx = max(1, int(cells[0])), max(1, int(cells[1]))
    angles = rng.uniform(0.0, 2.0 * math.pi, size=(cy + 1, cx + 1))
    gy, gx = np.sin(angles), np.cos(angles)
    y = (np.arange(h) + 0.5) * cy / h
    x = (np.arange(w) + 0.5) * cx / w
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    y0, x0 = y0[:, None], x0[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[y0 + dy, x0 + dx] * (fy - dy) + gx[y0 + dy, x0 + dx] * (fx - dx)

    def fade(t):
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) + ux * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + ux * (corner(1, 1) - corner(1, 0))
    return (top + uy * (bottom - top)) * math.sqrt(2.0)


def perlin_mask(rng: np.random.Generator, shape: Tuple[int, int], *, min_area: float, max_area: float,
                roi: Optional[np.ndarray] = None) -> np.ndarray:
    """Thresholded Perlin noise (DRAEM-like): lattice of 2^a x 2^b cells, a, b in 1..4, two octaves."""
    pixels = _pixels_for(rng, shape, min_area, max_area, roi)
    a, b = (int(v) for v in rng.integers(1, 5, size=2))
    noise = perlin_noise(rng, shape, (2 ** a, 2 ** b)) + 0.5 * perlin_noise(rng, shape, (2 ** (a + 1), 2 ** (b + 1)))
    return _quantile_mask(-noise, pixels, roi)


def blob_mask(rng: np.random.Generator, shape: Tuple[int, int], *, min_area: float, max_area: float,
              roi: Optional[np.ndarray] = None) -> np.ndarray:
    """One to three rotated ellipses with wavy edges, scaled together to the target area."""
    h, w = shape
    pixels = _pixels_for(rng, shape, min_area, max_area, roi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ratio = np.full(shape, np.inf)
    count = int(rng.integers(1, 4))
    if roi is not None:
        ys, xs = np.nonzero(roi)
    first = None
    for i in range(count):
        if roi is not None:
            k = int(rng.integers(len(ys)))
            cy, cx = float(ys[k]), float(xs[k])
        elif first is None:
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        else:  # later ellipses lie near the first: one defect, not scattered spots
            cy = float(np.clip(first[0] + rng.normal(0, 0.08) * h, 0, h - 1))
            cx = float(np.clip(first[1] + rng.normal(0, 0.08) * w, 0, w - 1))
        first = first or (cy, cx)
        theta = rng.uniform(0, math.pi)
        aspect = rng.uniform(0.35, 1.0)
        scale = 1.0 if i == 0 else rng.uniform(0.4, 0.8)
        dy, dx = yy - cy, xx - cx
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / aspect
        radius = np.hypot(u, v)
        phi = np.arctan2(v, u)
        wave = np.ones_like(phi)
        for harmonic in (2, 3, 5):
            wave += rng.uniform(0.0, 0.12) * np.cos(harmonic * phi + rng.uniform(0, 2 * math.pi))
        ratio = np.minimum(ratio, radius / (scale * wave))
    return _quantile_mask(ratio, pixels, roi)


def _polyline(rng, shape, length: float, jagged: bool) -> list:
    h, w = shape
    step = max(2.0, min(h, w) / 40.0)
    n = max(2, int(length / step))
    y, x = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    heading = rng.uniform(0, 2 * math.pi)
    turn = 0.0
    pts = [(x, y)]
    for _ in range(n):
        if jagged:
            heading += rng.normal(0, 0.55)
        else:
            turn = 0.8 * turn + rng.normal(0, 0.05)
            heading += turn
        x = float(np.clip(x + step * math.cos(heading), 0, w - 1))
        y = float(np.clip(y + step * math.sin(heading), 0, h - 1))
        pts.append((x, y))
    return pts


def _draw_strokes(rng, shape, pixels: int, jagged: bool) -> np.ndarray:
    from PIL import Image, ImageDraw

    h, w = shape
    side = min(h, w)
    width = int(rng.integers(1, max(2, int(round(side * 0.02))) + 1))
    length = float(np.clip(pixels / width, 0.08 * side, 1.2 * side))
    strokes = max(1, int(round(pixels / (width * length))))
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for s in range(min(strokes, 8)):
        pts = _polyline(rng, shape, length * (1.0 if s == 0 else rng.uniform(0.3, 0.7)), jagged)
        draw.line(pts, fill=255, width=width, joint="curve")
        if jagged and len(pts) > 4:  # a crack branches
            j = int(rng.integers(1, len(pts) - 1))
            branch = _polyline(rng, shape, length * rng.uniform(0.15, 0.35), True)
            dx, dy = pts[j][0] - branch[0][0], pts[j][1] - branch[0][1]
            branch = [(float(np.clip(px + dx, 0, w - 1)), float(np.clip(py + dy, 0, h - 1))) for px, py in branch]
            draw.line(branch, fill=255, width=max(1, width - 1), joint="curve")
    return np.asarray(im) > 127


def scratch_mask(rng: np.random.Generator, shape: Tuple[int, int], *, min_area: float, max_area: float,
                 roi: Optional[np.ndarray] = None, jagged: bool = False) -> np.ndarray:
    """Thin polylines with a width (scratches; ``jagged``: cracks, with branches), area within bounds."""
    h, w = shape
    total = h * w
    lo = max(1, int(math.ceil(min_area * total)))
    hi = max(lo, int(math.floor(max_area * total)))
    for _ in range(SCRATCH_ATTEMPTS):
        pixels = _pixels_for(rng, shape, min_area, max_area, roi)
        m = _draw_strokes(rng, shape, pixels, jagged)
        if roi is not None:
            m &= roi
        if lo <= int(m.sum()) <= hi:
            return m
    raise GafuError(f"no scratch with an area between min_area={min_area:g} and max_area={max_area:g} of a "
                    f"{w}x{h} image after {SCRATCH_ATTEMPTS} tries; widen the bounds", argument="min_area")


def generate(kind: str, rng: np.random.Generator, shape: Tuple[int, int], *, min_area: float, max_area: float,
             roi: Optional[np.ndarray] = None, jagged: bool = False) -> np.ndarray:
    if kind == "perlin":
        return perlin_mask(rng, shape, min_area=min_area, max_area=max_area, roi=roi)
    if kind == "blob":
        return blob_mask(rng, shape, min_area=min_area, max_area=max_area, roi=roi)
    if kind == "scratch":
        return scratch_mask(rng, shape, min_area=min_area, max_area=max_area, roi=roi, jagged=jagged)
    raise GafuError(f"unknown mask kind '{kind}'; choose from: {', '.join(MASK_KINDS)} or a folder", argument="mask")


def otsu_threshold(grey: np.ndarray) -> int:
    """Otsu's threshold of a uint8 image: the level maximising the between-class variance."""
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = hist / max(1.0, hist.sum())
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    between[~np.isfinite(between)] = -1.0
    return int(np.argmax(between))


def foreground(grey: np.ndarray) -> np.ndarray:
    """The object on a plain background: Otsu's threshold, the object being the class that covers
    less of the image border. A flat image (one class) is all foreground."""
    t = otsu_threshold(grey)
    above = grey > t
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    obj = above if border.mean() < 0.5 else ~above
    if not obj.any() or obj.all():
        return np.ones_like(obj)
    return obj


def folder_mask(folder: Union[str, os.PathLike], rel: str, shape: Tuple[int, int], what: str = "mask") -> Tuple[np.ndarray, str]:
    """The mask for input ``rel`` in ``folder`` (same relative path, any image extension), at ``shape``.

    Thresholded at grey 127 (JPEG masks are fine), resized with nearest neighbour only; the aspect
    ratio must match. Returns (mask, path relative to the folder).
    """
    import torch

    from ..image import IMAGE_EXTENSIONS
    from ..masks import check_aspect, load_mask, resize_mask

    root = Path(folder)
    stem = Path(rel).with_suffix("")
    candidates = [root / rel] + [root / f"{stem.as_posix()}{e}" for e in IMAGE_EXTENSIONS]
    candidates += [root / f"{stem.as_posix()}_mask{e}" for e in IMAGE_EXTENSIONS]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise GafuError(f"no {what} for {rel} in {root} (expected {stem.as_posix()}.png or the same name)")
    hard = load_mask(path)
    check_aspect(tuple(hard.shape[-2:]), tuple(shape), f"{what} {path.name}")
    hard = resize_mask(hard, shape)
    out = (hard[0, 0] > 0.5).numpy() if isinstance(hard, torch.Tensor) else np.asarray(hard)
    return out.astype(bool), path.relative_to(root).as_posix()
