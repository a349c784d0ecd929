"""The one result type both engines return (optimization and fast feed-forward).

A :class:`StyleResult` holds the stylized image in gafu's tensor convention (1x3xHxW float32 RGB
in [0, 1], on the CPU), PIL access, and what produced it: the method, its settings and timings.
The CLI, reports, the job runner and the web app read results only through this type.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image

#: Values of :attr:`StyleResult.method`.
METHODS: Tuple[str, ...] = ("optimize", "fast")


@dataclass(frozen=True, eq=False)
class StyleResult:
    """A stylized image and how it was made.

    ``tensor``: 1x3xHxW float32 in [0, 1] on the CPU. ``image``: the same as an RGB PIL image
    (rounded to 8 bits, built once). ``settings``: plain data describing the run (JSON-ready).
    ``seconds``: wall time of the run; ``timings``: named parts of it (e.g. ``prepare``, ``loop``).
    ``info``: engine-specific facts (optimization: ``steps``, ``stop_reason``, ``final_loss``;
    fast: ``tiles``).
    """

    tensor: torch.Tensor = field(repr=False)
    method: str
    seconds: float
    settings: Dict[str, Any] = field(default_factory=dict, repr=False)
    timings: Dict[str, float] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.tensor
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[:2] != (1, 3):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"a result holds a 1x3xHxW image tensor, got {shape}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; one of {METHODS}")

    @classmethod
    def from_array(cls, arr: np.ndarray, *, pil: Optional[Image.Image] = None, **kwargs: Any) -> "StyleResult":
        """From an HxWx3 float array in [0, 1] (what the ONNX networks produce). ``pil``: the 8-bit
        image the engine already made from it (kept as :attr:`image`, so no second rounding)."""
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
        result = cls(t.clamp(0.0, 1.0).contiguous(), **kwargs)
        if pil is not None:
            if pil.size != result.size:
                raise ValueError(f"pil image is {pil.size}, array is {result.size}")
            result.__dict__["image"] = pil  # the cached_property's slot
        return result

    @functools.cached_property
    def image(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image (``round(x * 255)``)."""
        from .image import to_pil

        return to_pil(self.tensor)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.tensor.shape[-1]), int(self.tensor.shape[-2])

    @property
    def tiles(self) -> int:
        """Tiles the image was processed in (1 = whole)."""
        return int(self.info.get("tiles", 1))

    @property
    def steps(self) -> int:
        """Optimizer steps taken (0 for the fast engine)."""
        return int(self.info.get("steps", 0))

    def save(self, path: Union[str, os.PathLike], **kwargs: Any):
        """Save with :func:`gafu.image.save_image` (atomic; 16-bit PNG/TIFF with ``bits=16``)."""
        from .image import save_image

        return save_image(self.tensor, path, **kwargs)

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


def as_result_tensor(image: Optional[torch.Tensor]) -> torch.Tensor:
    """Detached float32 CPU copy in [0, 1] (what a result stores)."""
    if image is None:
        raise ValueError("no image")
    return image.detach().to(torch.float32).clamp(0.0, 1.0).cpu().contiguous()
