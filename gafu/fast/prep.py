"""Inputs of the fast networks: images to float arrays and back, padding, the style image's size, checks.

Preprocessing (differences from the TF-Hub notebook, on purpose)
    - Content: RGB in [0, 1] float32 (as the notebook and the TF tutorial), at its own size,
      shrunk (never enlarged) to ``max_size`` on the long side with a Lanczos filter.
      Sides are reflect-padded to a multiple of 4 (the network halves twice, then doubles twice)
      and the padding is cropped off, so the output has exactly the input's size.
    - Style: the notebook centre-crops the painting to a square, resizes it to 256x256 and blurs
      it with a 3x3 average pool. gafu follows Magenta's own evaluation script instead
      (``arbitrary_image_stylization_with_weights --style_image_size=256
      --style_square_crop=False``): the whole painting, aspect ratio kept, short side 256. Each
      side is then rounded to a multiple of 32 (the predictor's five stride-2 convolutions were
      exported with TF "SAME" padding for even sizes only), and a Lanczos (antialiasing) resize
      replaces the notebook's blur. The long side is capped at 4x the short side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..errors import GafuError

NUM_BUILTIN_STYLES = 26
STYLE_VECTOR_SIZE = 100
#: Fixed input size of the shipped transformer, and the size used to prove the edit exact.
ORIGINAL_CONTENT_SIZE = 384
#: Default short side of the style image (the size the network was trained with).
DEFAULT_STYLE_SIZE = 256
#: Smallest side accepted for content and style images.
MIN_SIDE = 16
#: The network halves the content twice: sides are padded to a multiple of this.
CONTENT_MULTIPLE = 4
#: The predictor halves the style five times with even-size padding: sides are a multiple of this.
STYLE_MULTIPLE = 32


def _to_array(im: Image.Image) -> np.ndarray:
    """RGB PIL -> HxWx3 float32 in [0, 1]."""
    return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _to_pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def _check_size(im: Image.Image, what: str) -> None:
    w, h = im.size
    if min(w, h) < MIN_SIDE:
        raise GafuError(f"{what} is too small ({w}x{h}); both sides need at least {MIN_SIDE} px")


def _pad_to_multiple(arr: np.ndarray, multiple: int) -> np.ndarray:
    h, w = arr.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return arr
    mode = "reflect" if ph < h and pw < w else "symmetric"
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)


def style_input(im: Image.Image, style_size: int = DEFAULT_STYLE_SIZE) -> np.ndarray:
    """A painting as the predictor's input: 1xHxWx3, short side ~style_size, sides multiples of 32."""
    w, h = im.size
    scale = style_size / min(w, h)

    def side(n: float) -> int:
        return max(STYLE_MULTIPLE, int(round(n * scale / STYLE_MULTIPLE)) * STYLE_MULTIPLE)

    cap = 4 * side(min(w, h))
    nw, nh = min(side(w), cap), min(side(h), cap)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.LANCZOS)
    return _to_array(im)[None]


def linear_blend(arr: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    return stylized if strength >= 1.0 else strength * stylized + (1.0 - strength) * arr



def keep_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``stylized`` with the chroma of ``content`` (:func:`gafu.color.keep_color_array`)."""
    from ..color import keep_color_array

    return keep_color_array(stylized, content)


def _check_builtin(builtin: Any) -> list[int]:
    items = list(builtin) if isinstance(builtin, (list, tuple)) else [builtin]
    if not items:
        raise GafuError("no built-in style given")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise GafuError(f"built-in style must be a whole number 0-{NUM_BUILTIN_STYLES - 1}, got {i!r}")
        if not 0 <= int(i) < NUM_BUILTIN_STYLES:
            raise GafuError(f"built-in style must be 0-{NUM_BUILTIN_STYLES - 1}, got {int(i)}")
        out.append(int(i))
    return out


def _check_pixels(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GafuError(f"{name} must be a whole number of pixels >= {minimum}, got {value!r}")
    return int(value)
