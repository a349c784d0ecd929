"""High-level functions: one call from images to a stylized image.

:func:`stylize` returns a PIL image; :func:`stylize_result` the :class:`~gafu.result.StyleResult`
(tensor, PIL image, settings, timings), the type :meth:`gafu.fast.FastStylizer.run` returns too.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, Optional, Sequence, Union

from PIL import Image

from .checks import check_one_style_weight
from .config import StyleConfig, get_preset
from .errors import GafuError
from .image import ImageLike
from .optimize import Iterate, StyleTargets, StyleTransfer
from .result import StyleResult


def stylize(content: ImageLike, style=None, **kwargs) -> Image.Image:
    """Stylize ``content`` with one or more ``style`` images by optimization; return an RGB PIL image.

    Takes the arguments of :func:`stylize_result` (which returns the image with its settings and
    timings).

    >>> import gafu
    >>> gafu.stylize("photo.jpg", "painting.jpg", steps=100).save("out.png")  # doctest: +SKIP
    """
    return stylize_result(content, style, **kwargs).image


def stylize_result(
    content: ImageLike,
    style: Union[ImageLike, Sequence[ImageLike], StyleTargets, None] = None,
    *,
    preset: str = "fast",
    config: Optional[StyleConfig] = None,
    style_weights: Optional[Sequence[float]] = None,
    weights: Union[str, os.PathLike, None] = None,
    device: str = "cpu",
    init_image: Optional[ImageLike] = None,
    init: Union[str, ImageLike, None] = None,
    mask: Optional[ImageLike] = None,
    region_map: Optional[ImageLike] = None,
    region_styles=None,
    callback: Optional[Callable[[Iterate], None]] = None,
    max_memory: Optional[float] = None,
    tile: Optional[int] = None,
    **overrides,
) -> StyleResult:
    """Stylize ``content`` with one or more ``style`` images by optimization; return a StyleResult.

    ``style`` may be a :class:`~gafu.optimize.StyleTargets` prepared once for many photos.

    ``preset`` names the starting settings ("fast", the default: the seed's loss minimized by
    L-BFGS in bf16 where the hardware has it; "seed" = the TensorFlow tutorial exactly); ``config`` replaces
    the preset entirely; keyword ``overrides`` change single settings (``steps=200, size=256``).
    ``callback`` receives every :class:`Iterate` (e.g. for progress or early stopping via an exception).
    ``max_memory`` (MB, default: the memory available) bounds the run: larger sizes are optimized
    coarse-to-fine in tiles (:mod:`gafu.optimize.tiled`; ``tile`` forces tiles of that side).

    Controls (colour: :mod:`gafu.color`, masks and regions: :mod:`gafu.masks`): the settings ``preserve_color='luminance'|'histogram'``,
    ``style_scale=0.5..2``, ``strength=0..1`` (not together with ``style_weight``), ``feather=PX``
    and ``seed``; ``mask=`` (stylize inside only), ``region_map=`` with ``region_styles=``
    (``{"red": "a.jpg", "blue": "b.jpg"}``; then ``style`` is None), ``init='content'|'noise'`` or
    an image to start from (same as ``init_image``).

    >>> import gafu
    >>> gafu.stylize_result("photo.jpg", "painting.jpg", steps=100).save("out.png")  # doctest: +SKIP
    """
    cfg = config if config is not None else get_preset(preset)
    check_one_style_weight(overrides.get("strength"), overrides.get("style_weight"))
    if isinstance(init, str) and init in ("content", "noise"):
        overrides["init"] = init
    elif init is not None:
        if init_image is not None:
            raise GafuError("give the start image as init or as init_image, not both")
        init_image = init
    if overrides:
        cfg = cfg.replace(**overrides)
    st = StyleTransfer(
        content,
        style,
        cfg,
        style_weights=style_weights,
        weights=weights,
        device=device,
        init_image=init_image,
        mask=mask,
        region_map=region_map,
        region_styles=region_styles,
        max_memory=max_memory,
        tile=tile,
    )
    for it in st.run():
        if callback is not None:
            callback(it)
    return st.result()


# stylize takes exactly stylize_result's arguments: show them in help() and inspect.signature.
stylize.__signature__ = inspect.signature(stylize_result).replace(return_annotation=Image.Image)  # type: ignore[attr-defined]
