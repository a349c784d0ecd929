"""Tiles for images too large to process whole: a plan of overlapping tiles and their blend weights.

Plain numpy, no model: the fast engine runs its networks tile by tile with it
(:func:`run_tiled`), and an engine working at print sizes can use the same plan for its own
tensors (:class:`TilePlan` gives the tiles, their slices and their weights).

- **Plan** (:func:`tile_spans`, per axis; :class:`TilePlan`, both axes): evenly spread tiles of at
  most ``tile`` px that cover the image, neighbours overlapping by at least ``overlap``; starts
  are multiples of ``multiple`` (4 for the Magenta networks, the phase of their two stride-2
  stages: a tile shifted off that phase renders a different texture).
- **Offset**: ``offset`` shifts the grid (by a multiple of ``multiple``) so a caller can move the
  seams between iterations; the plan still covers every pixel.
- **Blend weights** (:func:`ramp`, :meth:`TilePlan.weight`): separable linear ramps over the edges
  that touch another tile, 1 elsewhere; every weight is > 0 inside its tile, so after dividing by
  the sum over tiles (:meth:`TilePlan.normalized_weight`) the weights at every pixel sum to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, List, Sequence, Tuple, Union

import numpy as np

#: Overlap between neighbouring tiles (px) when the caller sets none.
DEFAULT_OVERLAP = 128
#: Tile starts are multiples of this when the caller sets none.
DEFAULT_MULTIPLE = 4

Span = Tuple[int, int]  # (start, size)


def _even_spans(length: int, tile: int, overlap: int, q: int) -> List[Span]:
    if length <= tile:
        return [(0, length)]
    span = tile - tile % q
    margin = overlap + 2 * q  # rounding starts to multiples of q may cost up to 2q of overlap
    n = math.ceil((length - margin) / (span - margin))
    size = min(span, -(-(length + (n - 1) * margin) // (n * q)) * q)
    starts = [round(i * (length - size) / (n - 1) / q) * q for i in range(n - 1)]
    starts.append(-(-(length - size) // q) * q)  # the last tile ends at the image's end
    return [(start, min(size, length - start)) for start in starts]


def tile_spans(length: int, tile: int, overlap: int, *, multiple: int = DEFAULT_MULTIPLE,
               offset: int = 0) -> List[Span]:
    """(start, size) of tiles of at most ``tile`` px covering ``[0, length)``, overlapping.

    Starts are multiples of ``multiple``. Tiles share the length evenly, so little work is
    repeated; neighbours overlap by at least ``overlap``. ``offset`` (a multiple of ``multiple``,
    >= 0) lays the same even grid over ``[-offset, length)`` and clips it to the image: the seams
    move by ``offset`` and the first tile shrinks (tiles left empty are dropped).
    """
    if length < 1 or tile < 1 or overlap < 0 or multiple < 1:
        raise ValueError(f"bad tiling: length={length}, tile={tile}, overlap={overlap}, multiple={multiple}")
    if tile < overlap + 2 * multiple + multiple and length > tile:
        raise ValueError(f"tile {tile} is too small for overlap {overlap} (multiple {multiple})")
    if offset < 0 or offset % multiple:
        raise ValueError(f"offset must be a multiple of {multiple} and >= 0, got {offset}")
    if not offset:
        return _even_spans(length, tile, overlap, multiple)
    spans = []
    for start, size in _even_spans(length + offset, tile, overlap, multiple):
        lo, hi = max(0, start - offset), min(length, start + size - offset)
        if hi > lo:
            spans.append((lo, hi - lo))
    return spans


def ramp(size: int, lo: bool, hi: bool, overlap: int) -> np.ndarray:
    """1-D blend weights (float32, all > 0) for a tile: linear ramps at edges that touch another tile."""
    x = np.arange(size, dtype=np.float32)
    r = np.ones(size, dtype=np.float32)
    if lo:
        r = np.minimum(r, (x + 1) / (overlap + 1))
    if hi:
        r = np.minimum(r, (size - x) / (overlap + 1))
    return r


@dataclass(frozen=True)
class Tile:
    """One tile: top-left corner and size in pixels."""

    y: int
    x: int
    height: int
    width: int

    @property
    def slices(self) -> Tuple[slice, slice]:
        """(rows, columns) to index an HxW(xC) array with."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


@dataclass(frozen=True)
class TilePlan:
    """Overlapping tiles covering a ``height`` x ``width`` image (rows of ``ys`` times columns of ``xs``)."""

    height: int
    width: int
    ys: Tuple[Span, ...]
    xs: Tuple[Span, ...]
    overlap: int

    @classmethod
    def make(cls, height: int, width: int, tile: Union[int, Tuple[int, int]], overlap: int = DEFAULT_OVERLAP, *,
             multiple: int = DEFAULT_MULTIPLE, offset: Tuple[int, int] = (0, 0)) -> "TilePlan":
        """Plan tiles of at most ``tile`` px (or ``(tile_height, tile_width)``); the overlap is
        capped at a quarter of the smaller tile side.

        ``offset`` = (dy, dx) shifts the grid (see :func:`tile_spans`).
        """
        th, tw = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
        overlap = min(overlap, min(th, tw) // 4)
        ys = tile_spans(height, th, overlap, multiple=multiple, offset=offset[0])
        xs = tile_spans(width, tw, overlap, multiple=multiple, offset=offset[1])
        return cls(height, width, tuple(ys), tuple(xs), overlap)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def __iter__(self) -> Iterator[Tile]:
        for y, th in self.ys:
            for x, tw in self.xs:
                yield Tile(y, x, th, tw)

    def weight(self, t: Tile) -> np.ndarray:
        """The tile's blend weights (th x tw, float32, > 0; ramps where it meets another tile)."""
        wy = ramp(t.height, t.y > 0, t.y + t.height < self.height, self.overlap)
        wx = ramp(t.width, t.x > 0, t.x + t.width < self.width, self.overlap)
        return wy[:, None] * wx[None, :]

    def weight_sum(self, dtype=np.float64) -> np.ndarray:
        """Sum of all tiles' weights at each pixel (height x width; > 0 everywhere)."""
        total = np.zeros((self.height, self.width), dtype=dtype)
        for t in self:
            total[t.slices] += self.weight(t)
        return total

    def normalized_weight(self, t: Tile, total: np.ndarray | None = None) -> np.ndarray:
        """The tile's weights divided by :meth:`weight_sum` (float64): summed over tiles, 1 at every pixel.

        Pass ``total`` (from :meth:`weight_sum`) when asking for many tiles.
        """
        total = self.weight_sum() if total is None else total
        return self.weight(t).astype(np.float64) / total[t.slices]


def _expand(w: np.ndarray, ndim: int) -> np.ndarray:
    return w.reshape(w.shape + (1,) * (ndim - 2))


def blend(plan: TilePlan, parts: Sequence[np.ndarray], dtype=np.float32) -> np.ndarray:
    """Blend one HxW(xC) array per tile of ``plan`` (in plan order) into the whole image."""
    out = weight = None
    for t, part in zip(plan, parts):
        part = np.asarray(part, dtype=dtype)
        if out is None:
            out = np.zeros((plan.height, plan.width) + part.shape[2:], dtype=dtype)
            weight = np.zeros((plan.height, plan.width) + (1,) * (part.ndim - 2), dtype=dtype)
        wt = _expand(plan.weight(t), part.ndim).astype(dtype, copy=False)
        out[t.slices] += part * wt
        weight[t.slices] += wt
    if out is None:
        raise ValueError("no tiles to blend")
    return out / weight


def run_tiled(fn: Callable[[np.ndarray], np.ndarray], arr: np.ndarray, tile: int,
              overlap: int = DEFAULT_OVERLAP, *, multiple: int = DEFAULT_MULTIPLE,
              offset: Tuple[int, int] = (0, 0), dtype=np.float32) -> Tuple[np.ndarray, int]:
    """Apply ``fn`` (HxW(xC) -> same HxW) tile by tile and blend the tiles; returns (out, n_tiles).

    Images of at most ``tile * tile`` pixels go through ``fn`` whole (the budget is in pixels, so a
    long thin image stays whole). Otherwise see :meth:`TilePlan.make`. The blend accumulates in
    ``dtype``: float32 (default) bounds the memory; float64 makes a tiled identity exact.
    Tiles are stylized one at a time (only one tile's output is held besides the sums).
    """
    h, w = arr.shape[:2]
    if h * w <= tile * tile:
        return fn(arr), 1
    plan = TilePlan.make(h, w, tile, overlap, multiple=multiple, offset=offset)
    parts = (fn(arr[t.slices]) for t in plan)
    return blend(plan, parts, dtype), len(plan)
