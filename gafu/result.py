"""The one result type both engines return (optimization and fast feed-forward).

A :class:`StyleResult` holds the stylized image in gafu's tensor convention (1x3xHxW float32 RGB
in [0, 1], on the CPU), PIL access, and what produced it: the method, its settings and timings.
The CLI, reports, the job runner and the web app read results only through this type.

A fast result is made from the network's HxWx3 array; its tensor is built on first access, so a
process that only wants pictures (a dataset worker running the ONNX networks) never imports torch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from PIL import Image

#: Values of :attr:`StyleResult.method`.
METHODS: Tuple[str, ...] = ("optimize", "fast")


@dataclass(frozen=True, eq=False)
class StyleResult:
    """A stylized image and how it was made.

    ``tensor``: 1x3xHxW float32 in [0, 1] on the CPU. ``image``: the same as an RGB PIL image
    (rounded to 8 bits, built once). ``settings``: plain data describing the run (JSON-ready).
    ``seconds``: wall time of the run; ``timings``: named parts of it (e.g. ``prepare``, ``loop``).
    ``info``: engine-specific facts (optimization: ``steps``, ``stop_reason``, ``precision``;
    fast: ``tiles``).
    """

    data: Any = field(repr=False)  # a 1x3xHxW tensor, or an HxWx3 float32 array (see from_array)
    method: str
    seconds: float
    settings: Dict[str, Any] = field(default_factory=dict, repr=False)
    timings: Dict[str, float] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.data
        if isinstance(d, np.ndarray):
            ok = d.ndim == 3 and d.shape[-1] == 3
        else:
            ok = hasattr(d, "ndim") and d.ndim == 4 and tuple(d.shape[:2]) == (1, 3)
        if not ok:
            shape = tuple(d.shape) if hasattr(d, "shape") else type(d).__name__
            raise ValueError(f"a result holds a 1x3xHxW image tensor or an HxWx3 array, got {shape}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; one of {METHODS}")

    @classmethod
    def from_array(cls, arr: np.ndarray, *, pil: Optional[Image.Image] = None, **kwargs: Any) -> "StyleResult":
        """From an HxWx3 float array in [0, 1] (what the ONNX networks produce). ``pil``: the 8-bit
        image the engine already made from it (kept as :attr:`image`, so no second rounding)."""
        result = cls(np.clip(np.ascontiguousarray(arr, dtype=np.float32), 0.0, 1.0), **kwargs)
        if pil is not None:
            if pil.size != result.size:
                raise ValueError(f"pil image is {pil.size}, array is {result.size}")
            result.__dict__["image"] = pil  # the cached_property's slot
        return result

    @functools.cached_property
    def tensor(self):
        """1x3xHxW float32 in [0, 1] on the CPU (built from the array on first access)."""
        if not isinstance(self.data, np.ndarray):
            return self.data
        import torch

        return torch.from_numpy(self.data).permute(2, 0, 1).unsqueeze(0).contiguous()

    @functools.cached_property
    def image(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image (``round(x * 255)``)."""
        from .image import to_pil

        return to_pil(self.tensor)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in pixels."""
        shape = self.data.shape
        return (int(shape[1]), int(shape[0])) if isinstance(self.data, np.ndarray) else (int(shape[-1]), int(shape[-2]))

    @property
    def tiles(self) -> int:
        """Tiles the image was processed in (1 = whole)."""
        return int(self.info.get("tiles", 1))

    @property
    def steps(self) -> int:
        """Optimizer steps taken (0 for the fast engine)."""
        return int(self.info.get("steps", 0))

    def save(self, path: Union[str, os.PathLike], **kwargs: Any):
        """Save with :func:`gafu.image.save_image` (atomic, sRGB profile; ``bits=16`` for 16-bit PNG/TIFF).
        An 8-bit save writes :attr:`image` itself (the engine's own rounding)."""
        from .image import save_image

        if kwargs.get("bits", 8) == 16:
            return save_image(self.tensor, path, **kwargs)
        return save_image(self.image, path, **kwargs)

    def summary(self) -> Dict[str, Any]:
        """JSON-ready description (no pixels)."""
        return {
            "method": self.method,
            "size": list(self.size),
            "seconds": round(float(self.seconds), 4),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            **self.info,
            "settings": self.settings,
        }
