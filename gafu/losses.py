"""Loss functions of Gatys-style transfer: pure functions, plus thin modules that hold targets.

Conventions follow the TensorFlow tutorial (the seed) and note where papers differ.
Features are NCHW tensors as returned by :class:`gafu.vgg.VGG19Features`.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn


def gram_matrix(features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gram matrix normalised by the number of locations: ``G[b,c,d] = sum_ij F[b,c,i,j] F[b,d,i,j] / (H*W)``.

    Args:
        features: ``(B, C, H, W)``.
        mask: optional ``(B or 1, 1, H, W)`` weights in [0, 1]; then the sum runs over
            ``mask * F`` pairs and is normalised by ``sum(mask)`` (region statistics).

    Returns:
        ``(B, C, C)``, same dtype as ``features``, except that 16-bit features (bf16/fp16, from a
        reduced-precision extractor) give an fp32 Gram (:func:`gafu.speed.gram_lowp`). This is the seed's normalisation
        (``einsum('bijc,bijd->bcd') / (H*W)``); Gatys et al. (2016) use no normalisation and put
        ``1/(4 N^2 M^2)`` in the loss instead.
    """
    if features.ndim != 4:
        raise ValueError(f"gram_matrix expects (B, C, H, W), got shape {tuple(features.shape)}")
    if features.dtype in (torch.bfloat16, torch.float16):
        if mask is None:
            from .speed import gram_lowp

            return gram_lowp(features)
        features = features.float()
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    if mask is None:
        return torch.bmm(f, f.transpose(1, 2)) / float(h * w)
    m = mask.to(features.dtype).reshape(mask.shape[0], 1, h * w)
    denom = m.sum(dim=2, keepdim=True).clamp_min(1e-8)
    return torch.bmm(f * m, f.transpose(1, 2)) / denom


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of squared differences over every element (``tf.reduce_mean((a-b)**2)``)."""
    return (a - b).pow(2).mean()


def content_loss(features: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the per-layer mean squared feature difference (unweighted)."""
    terms = [mse(features[k], targets[k]) for k in targets]
    return torch.stack(terms).sum() / len(terms)


def style_loss(grams: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the per-layer mean squared Gram difference (unweighted)."""
    terms = [mse(grams[k], targets[k]) for k in targets]
    return torch.stack(terms).sum() / len(terms)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, as ``tf.image.total_variation`` for one image.

    Sum over the whole batch of absolute differences between vertical and horizontal neighbours
    (all channels). For an NCHW batch this is the sum of TF's per-image values.
    """
    if image.ndim != 4:
        raise ValueError(f"total_variation expects (B, C, H, W), got shape {tuple(image.shape)}")
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dy.abs().sum() + dx.abs().sum()


class ContentLoss(nn.Module):
    """Holds content targets (as buffers) and returns ``weight * content_loss``."""

    def __init__(self, targets: Mapping[str, torch.Tensor], weight: float) -> None:
        super().__init__()
        self.names = tuple(targets)
        self.weight = float(weight)
        for i, name in enumerate(self.names):
            self.register_buffer(f"t{i}", targets[name].detach().clone(), persistent=False)

    def targets(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"t{i}") for i, name in enumerate(self.names)}

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * content_loss(features, self.targets())


class StyleLoss(nn.Module):
    """Holds target Gram matrices (as buffers) and returns ``weight * style_loss`` of features."""

    def __init__(self, target_grams: Mapping[str, torch.Tensor], weight: float) -> None:
        super().__init__()
        self.names = tuple(target_grams)
        self.weight = float(weight)
        for i, name in enumerate(self.names):
            self.register_buffer(f"g{i}", target_grams[name].detach().clone(), persistent=False)

    def targets(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"g{i}") for i, name in enumerate(self.names)}

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # gram_matrix returns fp32 for 16-bit features (and widens them only where it must).
        grams = {name: gram_matrix(features[name]) for name in self.names}
        return self.weight * style_loss(grams, self.targets())


def blend_grams(per_style: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> Dict[str, torch.Tensor]:
    """Weighted average of Gram targets of several style images (weights are normalised).

    Matching the averaged Gram has the same gradient as the weighted sum of per-style losses.
    """
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must not all be zero")
    names = per_style[0].keys()
    return {k: sum(float(w) / total * g[k] for g, w in zip(per_style, weights)) for k in names}
