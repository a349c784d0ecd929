"""Style comparison (the seed's "which one do you prefer?"): one photo, several styles, one sheet.

Runs either engine per style and lays the results out with :func:`gafu.report.comparison_sheet`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from PIL import Image

from ..errors import GafuError, unknown_name
from ..image import ImageLike, load
from ..report import comparison_sheet

#: Values of ``method``.
COMPARE_METHODS = ("optimize", "fast")


@dataclass
class Comparison:
    """Results of :func:`compare_styles`: one stylization per style, and their contact sheet."""

    method: str
    results: List[Image.Image]
    sheet: Image.Image
    seconds: List[float] = field(default_factory=list)
    settings: Dict[str, Any] = field(default_factory=dict)


def _label(x: Any, i: int) -> str:
    if isinstance(x, (str, os.PathLike)):
        return Path(x).stem
    return f"style {i + 1}"


def compare_styles(
    content: ImageLike,
    styles: Sequence[ImageLike],
    *,
    method: str = "optimize",
    size: int = 256,
    steps: int = 200,
    preset: str = "fast",
    strength: float = 1.0,
    cell: int = 256,
    weights: Union[str, os.PathLike, None] = None,
    device: str = "cpu",
    callback=None,
    **overrides,
) -> Comparison:
    """Stylize ``content`` once per style and lay the results out on a labelled contact sheet.

    ``method='optimize'``: optimization with ``preset`` (default "fast", as :func:`gafu.stylize`;
    "seed" = the tutorial's Adam) at ``size``/``steps`` and any other setting in ``overrides``.
    ``method='fast'``: the feed-forward Magenta model (``gafu.fast.fast_stylize``) with
    ``max_size=size`` and ``strength``.
    ``callback(index, iterate_or_None)`` is called as work progresses (for progress bars).
    """
    if method not in COMPARE_METHODS:
        raise unknown_name("method", str(method), COMPARE_METHODS)
    styles = list(styles)
    if not styles:
        raise GafuError("give at least one style image")
    content_im = load(content)
    style_ims = [load(s) for s in styles]
    results: List[Image.Image] = []
    seconds: List[float] = []
    if method == "fast":
        from ..fast import fast_stylize

        settings: Dict[str, Any] = {"max_size": size, "strength": strength}
        for i, s in enumerate(style_ims):
            t0 = time.perf_counter()
            results.append(fast_stylize(content_im, s, strength=strength, max_size=size, device=device))
            seconds.append(time.perf_counter() - t0)
            if callback is not None:
                callback(i, None)
    else:
        from ..config import get_preset
        from ..optimize import StyleTransfer

        cfg = get_preset(preset).replace(size=size, steps=steps, **overrides)
        settings = cfg.to_dict()
        for i, s in enumerate(style_ims):
            t0 = time.perf_counter()
            st = StyleTransfer(content_im, [s], cfg, weights=weights, device=device)
            for it in st.run():
                if callback is not None:
                    callback(i, it)
            results.append(st.result().image)
            seconds.append(time.perf_counter() - t0)
    labels = [_label(s, i) for i, s in enumerate(styles)]
    title = f"Which one do you prefer? ({'optimization, ' + str(steps) + ' steps' if method == 'optimize' else 'fast (Magenta)'}, {size} px)"
    sheet = comparison_sheet(content_im, style_ims, results, style_labels=labels, title=title, cell=cell)
    return Comparison(method=method, results=results, sheet=sheet, seconds=seconds, settings=settings)
