"""Loss functions of Gatys-style transfer: pure functions, thin modules that hold targets, and
:class:`Criterion`, the named set of terms the optimization loop minimizes.

Conventions follow the TensorFlow tutorial (the seed) and note where papers differ.
Features are NCHW tensors as returned by :class:`gafu.vgg.VGG19Features`.

A *term* is a module called as ``term(features, image)`` that returns a weighted scalar; its
``layers`` say which feature maps it reads (none for image terms such as total variation). A new
term (a temporal term for video, a histogram term, ...) joins a :class:`Criterion` by name with
:meth:`Criterion.add`, without any change to the loop; the loop reports every term by name.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .masks import layer_mask


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
            from .optimize.precision import gram_lowp

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

    uses_image = False

    def __init__(self, targets: Mapping[str, torch.Tensor], weight: float) -> None:
        super().__init__()
        self.names = tuple(targets)
        self.weight = float(weight)
        for i, name in enumerate(self.names):
            self.register_buffer(f"t{i}", targets[name].detach().clone(), persistent=False)

    def targets(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"t{i}") for i, name in enumerate(self.names)}

    @property
    def layers(self) -> Tuple[str, ...]:
        return self.names

    def forward(self, features: Mapping[str, torch.Tensor], image: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.weight * content_loss(features, self.targets())


class StyleLoss(nn.Module):
    """Holds target Gram matrices (as buffers) and returns ``weight * style_loss`` of features."""

    uses_image = False

    def __init__(self, target_grams: Mapping[str, torch.Tensor], weight: float) -> None:
        super().__init__()
        self.names = tuple(target_grams)
        self.weight = float(weight)
        for i, name in enumerate(self.names):
            self.register_buffer(f"g{i}", target_grams[name].detach().clone(), persistent=False)

    def targets(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"g{i}") for i, name in enumerate(self.names)}

    @property
    def layers(self) -> Tuple[str, ...]:
        return self.names

    def forward(self, features: Mapping[str, torch.Tensor], image: Optional[torch.Tensor] = None) -> torch.Tensor:
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


class RegionStyleLoss(nn.Module):
    """Style loss with per-region Gram statistics (Gatys et al. 2017, spatial control).

    For region ``r`` with mask ``m_r`` (image resolution) and target Grams ``T_r``::

        loss = weight * mean_over_layers( sum_r share_r * mse(gram(F, m_r at the layer), T_r) )

    where ``gram(F, m)`` is :func:`gafu.losses.gram_matrix` with the mask at the layer's resolution
    (:func:`layer_mask`) and ``share_r`` = the region's fraction of the image. The share makes a pixel
    feel the same style pressure as in an unmasked run with the same ``weight`` (a region's Gram is
    normalised by its own area), so ``style_weight`` means the same with and without masks.
    One region with mask 1 everywhere equals :class:`StyleLoss`.
    """

    uses_image = False

    def __init__(self, masks: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]], weight: float) -> None:
        super().__init__()
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != len(targets):
            raise ValueError(f"expected (R, 1, H, W) masks for {len(targets)} regions, got {tuple(masks.shape)}")
        self.names = tuple(targets[0]) if targets else ()
        self.weight = float(weight)
        self.regions = len(targets)
        self.register_buffer("masks", masks.detach().to(torch.float32).clone(), persistent=False)
        self.register_buffer("shares", masks.detach().to(torch.float32).mean(dim=(1, 2, 3)), persistent=False)
        for r, t in enumerate(targets):
            for i, name in enumerate(self.names):
                self.register_buffer(f"g{r}_{i}", t[name].detach().clone(), persistent=False)

    def targets(self, region: int) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"g{region}_{i}") for i, name in enumerate(self.names)}

    def region_grams(self, features: Mapping[str, torch.Tensor], region: int) -> Dict[str, torch.Tensor]:
        """Gram matrices of ``features`` over region ``region`` (with the mask at each layer)."""
        out = {}
        for name in self.names:
            f = features[name].float()
            m = layer_mask(self.masks[region : region + 1].to(f.device), tuple(f.shape[-2:]))
            out[name] = gram_matrix(f, m)
        return out

    def distances(self, features: Mapping[str, torch.Tensor], *, relative: bool = True) -> List[List[float]]:
        """``d[r][s]``: distance of region ``r``'s Gram statistics from region ``s``'s target, averaged
        over layers. ``relative=True``: ``||G_r - T_s||_F / ||T_s||_F`` (scale-free, so styles with
        large Grams are not "far from everything"); ``False``: the loss's mean squared difference."""
        with torch.no_grad():
            grams = [self.region_grams(features, r) for r in range(self.regions)]
            out = []
            for g in grams:
                row = []
                for s in range(self.regions):
                    t = self.targets(s)
                    if relative:
                        vals = [float((g[k] - t[k]).norm() / t[k].norm().clamp_min(1e-12)) for k in t]
                    else:
                        vals = [float(mse(g[k], t[k])) for k in t]
                    row.append(sum(vals) / len(vals))
                out.append(row)
        return out

    def forward(self, features: Mapping[str, torch.Tensor], image: Optional[torch.Tensor] = None) -> torch.Tensor:
        layer_terms = []
        for i, name in enumerate(self.names):
            f = features[name].float()
            total = f.new_zeros(())
            for r in range(self.regions):
                m = layer_mask(self.masks[r : r + 1].to(f.device), tuple(f.shape[-2:]))
                total = total + self.shares[r] * mse(gram_matrix(f, m), getattr(self, f"g{r}_{i}"))
            layer_terms.append(total)
        return self.weight * torch.stack(layer_terms).sum() / len(layer_terms)

    @property
    def layers(self) -> Tuple[str, ...]:
        return self.names


class TotalVariationLoss(nn.Module):
    """``weight * total_variation(image)`` (the tutorial's ``total_variation_weight``, 30 in its TV run)."""

    uses_image = True
    layers: Tuple[str, ...] = ()

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, features: Mapping[str, torch.Tensor], image: Optional[torch.Tensor] = None) -> torch.Tensor:
        if image is None:
            raise ValueError("the total variation term needs the image")
        return self.weight * total_variation(image)


class Criterion(nn.Module):
    """The loss of a run: named terms, each ``term(features, image) -> weighted scalar``, summed.

    ``Criterion({"style": StyleLoss(...), "content": ContentLoss(...), "tv": None})``: a term given
    as None is reported as 0 (the seed's three names are always reported). :meth:`add` joins
    another term; :attr:`layers` is what the extractor must return for all of them. Calling it
    returns ``{name: value, ..., "total": sum}`` with the terms summed in the order they were added.
    """

    def __init__(self, terms: Optional[Mapping[str, Optional[nn.Module]]] = None) -> None:
        super().__init__()
        self.modules_ = nn.ModuleDict()
        self.names: List[str] = []
        for name, term in (terms or {}).items():
            self.add(name, term)

    def add(self, name: str, term: Optional[nn.Module]) -> "Criterion":
        """Add a term under ``name`` (None: reported as 0). Names are unique; 'total' is reserved."""
        if name == "total" or name in self.names:
            raise ValueError(f"loss term name {name!r} is reserved or already used")
        self.names.append(name)
        if term is not None:
            self.modules_[name] = term
        return self

    def term(self, name: str) -> Optional[nn.Module]:
        """The module of a term (None for an empty one); KeyError for an unknown name."""
        if name not in self.names:
            raise KeyError(name)
        return self.modules_[name] if name in self.modules_ else None

    @property
    def layers(self) -> Tuple[str, ...]:
        seen: Dict[str, None] = {}
        for name in self.modules_:
            for layer in getattr(self.modules_[name], "layers", ()):
                seen.setdefault(layer, None)
        return tuple(seen)

    def forward(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> Dict[str, torch.Tensor]:
        zero = image.new_zeros(())
        out: Dict[str, torch.Tensor] = {}
        total = None
        for name in self.names:
            term = self.modules_[name] if name in self.modules_ else None
            value = term(features, image) if term is not None else zero
            out[name] = value
            total = value if total is None else total + value
        out["total"] = total if total is not None else zero
        return out
