"""The temporal loss of video style transfer by optimization (Ruder et al. 2016, "short-term").

``TemporalLoss(warped_prev, mask, weight)`` is a loss term in the sense of
:class:`gafu.losses.Criterion` (``term(features, image) -> weighted scalar``, ``layers = ()``)::

    weight * mean( mask * (image - warped_prev)^2 )

the mean over all pixels and channels (Ruder's ``1/D`` normalisation), with ``mask`` 1 where the
previous result was carried into this frame by a trusted flow and 0 where it was not
(disocclusions, pixels entering the frame, motion boundaries; :func:`gafu.video.flow.consistency_mask`).
The mask multiplies *each pixel's* squared difference, so a disoccluded pixel adds nothing to the
loss and gets no gradient from it: it is free to take the style. (cysmith/neural-style-tf computes
``c * l2_loss(x - w)`` with ``c`` a scalar made from the mask, which pulls every pixel, disoccluded
ones included, towards the warped previous frame.)

It joins a run with ``StyleTransfer.add_term("temporal", TemporalLoss(...))``; every
:class:`~gafu.optimize.Iterate` then reports it as ``terms["temporal"]``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn


def _as_image(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float()
    if t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim == 2:
        t = t[None, None]
    if t.ndim != 4:
        raise ValueError(f"{name} must be an image (HxW[xC] array or 1xCxHxW tensor), got shape {tuple(t.shape)}")
    return t


class TemporalLoss(nn.Module):
    """``weight * mean(mask * (image - warped_prev)^2)``: stay like the warped previous result where
    the flow is trusted; nothing elsewhere.

    Args:
        warped_prev: the previous frame's result warped onto this frame (1x3xHxW in [0, 1], or HxWx3).
        mask: HxW (or 1x1xHxW) weights in [0, 1]; 0 = disoccluded (excluded per pixel).
        weight: the term's weight.
    """

    uses_image = True
    layers: Tuple[str, ...] = ()

    def __init__(self, warped_prev, mask, weight: float) -> None:
        super().__init__()
        target = _as_image(warped_prev, "warped_prev")
        m = _as_image(mask, "mask")
        if m.shape[1] != 1:
            raise ValueError(f"mask must have one channel, got {m.shape[1]}")
        if m.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"mask {tuple(m.shape[-2:])} does not fit the image {tuple(target.shape[-2:])}")
        self.weight = float(weight)
        self.register_buffer("target", target.detach().clone(), persistent=False)
        self.register_buffer("mask", m.detach().clamp(0, 1).clone(), persistent=False)

    @property
    def coverage(self) -> float:
        """Share of the pixels the term constrains (the mask's mean)."""
        return float(self.mask.mean())

    def forward(self, features: Mapping[str, torch.Tensor], image: Optional[torch.Tensor] = None) -> torch.Tensor:
        if image is None:
            raise ValueError("the temporal term needs the image")
        target = self.target.to(device=image.device, dtype=image.dtype)
        mask = self.mask.to(device=image.device, dtype=image.dtype)
        if image.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f"temporal term made for {tuple(target.shape[-2:])} got an image of {tuple(image.shape[-2:])}"
            )
        return self.weight * (mask * (image - target) ** 2).mean()
