"""Synthetic test clips with known motion, made from a still photo.

:func:`pan_clip`: a camera pan, each frame the photo's crop moved by a whole number of pixels, so
the true flow is known exactly (frame t shows at ``p`` what frame t-1 showed at ``p + shift``).
:func:`pan_zoom_clip`: a slow pan with a zoom (sub-pixel, non-uniform motion, like a real camera).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
from PIL import Image

from ..image import ImageLike, load


def pan_clip(image: ImageLike, frames: int = 8, size: Tuple[int, int] = (64, 64),
             shift: Tuple[int, int] = (2, 0), scale: float = 1.0) -> List[np.ndarray]:
    """``frames`` crops of ``size`` (w, h); crop t starts at ``t * shift`` (dx, dy) pixels.

    True backward flow (frame t -> t-1) is ``+shift`` everywhere; the last ``dx`` columns (and
    ``dy`` rows) of each frame come into view and have no source in the previous frame.
    ``scale`` first resizes the photo (a small ``scale`` keeps its content at low resolution).
    """
    im = load(image)
    if scale != 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    arr = np.asarray(im)
    w, h = size
    dx, dy = shift
    need_w, need_h = w + abs(dx) * (frames - 1), h + abs(dy) * (frames - 1)
    if arr.shape[1] < need_w or arr.shape[0] < need_h:
        raise ValueError(f"photo {arr.shape[1]}x{arr.shape[0]} too small for a {need_w}x{need_h} pan")
    x0 = 0 if dx >= 0 else need_w - w
    y0 = 0 if dy >= 0 else need_h - h
    return [arr[y0 + t * dy: y0 + t * dy + h, x0 + t * dx: x0 + t * dx + w].copy() for t in range(frames)]


def pan_zoom_clip(image: ImageLike, frames: int = 8, size: Tuple[int, int] = (64, 64),
                  pan: float = 0.15, zoom: float = 1.25) -> List[np.ndarray]:
    """A pan across ``pan`` of the photo's width while zooming in by ``zoom`` in total."""
    im = load(image)
    W, H = im.size
    w, h = size
    aspect = w / h
    out = []
    for t in range(frames):
        a = t / max(1, frames - 1)
        z = zoom**a
        ch = min(H, W / aspect) * 0.8 / z
        cw = ch * aspect
        cx = W * (0.5 - pan / 2 + pan * a)
        cy = H * 0.5
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        out.append(np.asarray(im.resize((w, h), Image.LANCZOS, box=box)))
    return out
