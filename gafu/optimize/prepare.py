"""What a stylization needs before its first step, each a small pure step with its own checks:
which styles (and how they combine with region maps), where to stylize (mask, regions), the
criterion (named loss terms) and the start image. :class:`gafu.optimize.StyleTransfer` calls them
in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch

from ..color import gray3
from ..config import StyleConfig, effective_style_weight
from ..errors import GafuError
from ..image import as_tensor, resize
from ..losses import ContentLoss, Criterion, RegionStyleLoss, StyleLoss, TotalVariationLoss, blend_grams
from ..masks import Region, prepare_mask, prepare_regions
from .targets import StyleTargets


def style_list(styles, style_weights, region_map, region_styles, cfg: StyleConfig) -> list:
    """The style sources as a list, after checking how styles, weights and region maps combine.

    ``styles`` may be a :class:`StyleTargets` (prepared elsewhere); then ``style_weights`` must be
    None (its own weights apply) and, with region styles, it holds one style per region.
    """
    if (region_map is None) != (region_styles is None):
        raise GafuError("region_map and region_styles go together: give both or neither",
                        argument=("region_map", "region_styles"))
    if isinstance(styles, StyleTargets):
        if style_weights is not None:
            raise GafuError("style_weights are part of the StyleTargets given; set them there")
        return list(styles.sources)
    items = [] if styles is None else (list(styles) if isinstance(styles, (list, tuple)) else [styles])
    if region_styles is not None and items:
        raise GafuError("give style images either as styles or as region_styles, not both", argument="region_styles")
    if region_styles is not None and style_weights is not None:
        raise GafuError("style_weights blend several styles; with region_styles each region has one style",
                        argument=("style_weights", "region_styles"))
    if not items and region_styles is None and cfg.style_layers:
        raise GafuError("no style image: give at least one, or region_map with region_styles",
                        argument=("region_map", "region_styles"))
    if style_weights is not None and len(list(style_weights)) != len(items):
        raise GafuError(f"got {len(list(style_weights))} style_weights for {len(items)} style images", argument="style_weights")
    return items


@dataclass
class Where:
    """Where a run stylizes: everywhere (all None), inside a mask, or per region of a label map."""

    mask: Optional[torch.Tensor] = None  # 1x1xHxW, feathered
    regions: List[Region] = field(default_factory=list)
    region_masks: Optional[torch.Tensor] = None  # Rx1xHxW
    blend_mask: Optional[torch.Tensor] = None  # what the result is blended with the content by

    def style_masks(self, count: int, shape: Tuple[int, int]) -> List[Optional[torch.Tensor]]:
        """One content mask per style, for matching the styles' colours to the content there."""
        masks = list(self.region_masks) if self.region_masks is not None else [self.mask] * count
        return [None if m is None else m.reshape(1, 1, *shape) for m in masks]


def prepare_where(mask, region_map, region_styles, shape, *, feather: float, tolerance: float, device) -> Where:
    where = Where()
    if mask is not None:
        where.mask = prepare_mask(mask, shape, feather=feather).to(device)
    if region_styles is not None:
        where.regions, masks = prepare_regions(
            region_map, region_styles, shape, feather=feather, mask=where.mask, tolerance=tolerance
        )
        where.region_masks = masks.to(device)
        where.blend_mask = where.region_masks.sum(dim=0, keepdim=True).clamp(max=1.0)
    else:
        where.blend_mask = where.mask
    return where


def build_criterion(
    cfg: StyleConfig,
    content_features: dict,
    style_grams: Sequence[dict],
    style_weights: Sequence[float],
    where: Where,
) -> Criterion:
    """The seed's three named terms (style, content, tv) for these targets; a term with nothing to
    do (no layers, zero weight) is present and reported as 0."""
    weight = effective_style_weight(cfg)
    if not style_grams or not cfg.style_layers:
        style = None
    elif where.region_masks is not None:  # one Gram target per region, image Grams over each region
        style = RegionStyleLoss(where.region_masks, list(style_grams), weight)
    elif where.mask is not None:  # blended target, image Gram over the masked region
        style = RegionStyleLoss(where.mask, [blend_grams(style_grams, style_weights)], weight)
    else:
        style = StyleLoss(blend_grams(style_grams, style_weights), weight)
    content = ContentLoss(content_features, cfg.content_weight) if cfg.content_layers else None
    tv = TotalVariationLoss(cfg.tv_weight) if cfg.tv_weight else None
    return Criterion({"style": style, "content": content, "tv": tv})


def start_image(init_image, cfg: StyleConfig, content: torch.Tensor, *, luma_only: bool) -> torch.Tensor:
    """The image the optimization starts from (CPU, contiguous): ``init_image`` resized to the
    content's size, noise from ``cfg.seed``, or the content itself (the seed)."""
    if init_image is not None:
        start = as_tensor(init_image, None, cfg.resize)
        if start.shape[-2:] != content.shape[-2:]:
            start = resize(start, tuple(content.shape[-2:]), antialias=True)
        start = start.clamp(0, 1)
    elif cfg.init == "noise":
        generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        start = torch.rand(content.shape, generator=generator)
    else:
        start = content.detach().cpu()
    if luma_only:
        start = gray3(start)
    # Contiguous whatever the source's strides (an image already at the target size comes from
    # PIL's HWC array as a permuted view): L-BFGS works on a flat view of it.
    return start.clone(memory_format=torch.contiguous_format)


def check_targets_fit(targets: StyleTargets, cfg: StyleConfig, weights) -> None:
    """GafuError when prepared targets were made with settings other than this run's."""
    from ..weights import resolve_path

    ours, theirs = cfg, targets.config
    for name in ("style_layers", "pooling", "style_scale", "preserve_color", "jpeg_decoder"):
        if getattr(ours, name) != getattr(theirs, name):
            raise GafuError(
                f"the style targets were prepared with {name}={getattr(theirs, name)!r}, this run uses "
                f"{getattr(ours, name)!r}; prepare them with the run's settings"
            )
    if resolve_path(weights)[0] != resolve_path(targets.vgg_weights)[0]:
        raise GafuError("the style targets were prepared with other VGG19 weights than this run's")
