"""Putting a fill into an image inside a mask, so that nothing outside the mask changes.

Modes (``blend=``)
    ``mask``: the fill inside the mask, hard edge (opacity ``strength``);
    ``alpha``: a feathered alpha that ramps *inward* from the mask's edge over ``feather`` px
    (``d / (feather + 1)`` for a pixel ``d`` steps inside), so the soft edge lies inside the mask;
    ``poisson``: gradient-domain cloning (OpenCV's ``seamlessClone``, NORMAL_CLONE) of the fill
    into the image, then composited with the same inward alpha.

In every mode the alpha is 0 outside the mask and the output there is the input, bit for bit:
the ground-truth mask covers every pixel that can change.
"""

from __future__ import annotations

import numpy as np

from ..errors import GafuError

BLENDS = ("alpha", "poisson", "mask")
#: Reflect padding (px) around the crop handed to seamlessClone (it needs the mask off the border).
POISSON_PAD = 4


def erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion; pixels beyond the image border count as inside (a defect that runs off
    the image keeps its full strength there)."""
    p = np.pad(mask, 1, mode="edge")
    out = mask.copy()
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= p[dy:dy + h, dx:dx + w]
    return out


def inward_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Alpha in [0, 1]: 0 outside ``mask``; inside, ``min(1, d / (feather + 1))`` with ``d`` the
    number of erosions a pixel survives plus one (1 on the mask's edge)."""
    m = mask.astype(bool)
    steps = int(np.ceil(max(0.0, float(feather))))
    if steps == 0:
        return m.astype(np.float64)
    depth = m.astype(np.float64)
    cur = m
    for _ in range(steps):
        cur = erode(cur)
        if not cur.any():
            break
        depth += cur
    return np.minimum(1.0, depth / (float(feather) + 1.0)) * m


def _cv2():
    try:
        import cv2
    except ImportError:
        raise GafuError("blend 'poisson' needs OpenCV: pip install 'gafu[defects]' (opencv-python-headless)",
                        argument="blend") from None
    return cv2


def check_blend(blend: str) -> None:
    if blend not in BLENDS:
        raise GafuError(f"unknown blend '{blend}'; choose from: {', '.join(BLENDS)}", argument="blend")
    if blend == "poisson":
        _cv2()


def poisson(fill: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``seamlessClone(fill -> original)`` inside ``mask`` (HxWx3 uint8, same size): the fill's
    gradients with the original's values on the mask's boundary."""
    cv2 = _cv2()
    p = POISSON_PAD
    src = np.pad(fill, ((p, p), (p, p), (0, 0)), mode="reflect")
    dst = np.pad(original, ((p, p), (p, p), (0, 0)), mode="reflect")
    m = np.pad(mask, p).astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(m)
    # seamlessClone edits the mask it is given: hand it a copy. Same size and this centre put the
    # fill's pixels where they were (checked in the tests).
    out = cv2.seamlessClone(np.ascontiguousarray(src[..., ::-1]), np.ascontiguousarray(dst[..., ::-1]), m.copy(),
                            (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return np.ascontiguousarray(out[p:-p, p:-p, ::-1])


def composite(original: np.ndarray, fill: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * fill + (1 - alpha) * original`` rounded to uint8 where alpha > 0, the original's
    exact bytes elsewhere. Arrays HxW or HxWxC uint8; alpha HxW."""
    a = alpha if original.ndim == 2 else alpha[..., None]
    mixed = np.rint(a * fill.astype(np.float64) + (1.0 - a) * original.astype(np.float64))
    mixed = np.clip(mixed, 0, 255).astype(np.uint8)
    inside = alpha > 0 if original.ndim == 2 else (alpha > 0)[..., None]
    return np.where(inside, mixed, original)


def apply(original: np.ndarray, fill: np.ndarray, mask: np.ndarray, *, blend: str, feather: float,
          strength: float, grey: bool = False) -> np.ndarray:
    """Blend ``fill`` (HxWx3 uint8) into ``original`` (HxWx3, or HxW when ``grey``) inside ``mask``."""
    check_blend(blend)
    rgb_orig = np.repeat(original[..., None], 3, axis=2) if grey else original
    if blend == "poisson":
        fill = poisson(fill, rgb_orig, mask)
    alpha = inward_alpha(mask, 0.0 if blend == "mask" else feather) * float(strength)
    if grey:
        from PIL import Image

        fill = np.asarray(Image.fromarray(fill, "RGB").convert("L"))
    return composite(original, fill, alpha)


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    """The band of ``width`` px just outside ``mask`` (3x3 dilations minus the mask)."""
    grown = mask.copy()
    for _ in range(max(1, int(width))):
        grown = ~erode(~grown)
    return grown & ~mask

