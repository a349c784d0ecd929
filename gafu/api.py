"""High-level functions: one call from images to a stylized PIL image."""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

from PIL import Image

from .config import StyleConfig, get_preset
from .image import ImageLike, to_pil
from .optimize import Iterate, StyleTransfer


def stylize(
    content: ImageLike,
    style: Union[ImageLike, Sequence[ImageLike]],
    *,
    preset: str = "seed",
    config: Optional[StyleConfig] = None,
    style_weights: Optional[Sequence[float]] = None,
    weights: Union[str, os.PathLike, None] = None,
    device: str = "cpu",
    init_image: Optional[ImageLike] = None,
    callback: Optional[Callable[[Iterate], None]] = None,
    **overrides,
) -> Image.Image:
    """Stylize ``content`` with one or more ``style`` images by optimization; return an RGB PIL image.

    ``preset`` names the starting settings ("seed" = the TensorFlow tutorial); ``config`` replaces
    the preset entirely; keyword ``overrides`` change single settings (``steps=200, size=256``).
    ``callback`` receives every :class:`Iterate` (e.g. for progress or early stopping via an exception).

    >>> import gafu
    >>> gafu.stylize("photo.jpg", "painting.jpg", steps=100).save("out.png")  # doctest: +SKIP
    """
    cfg = config if config is not None else get_preset(preset)
    if overrides:
        cfg = cfg.replace(**overrides)
    st = StyleTransfer(
        content, style, cfg, style_weights=style_weights, weights=weights, device=device, init_image=init_image
    )
    for it in st.run():
        if callback is not None:
            callback(it)
    return to_pil(st.image)
