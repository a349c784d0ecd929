"""The stylization loop (Gatys et al.): optimize the pixels of an image against VGG19 losses.

:class:`StyleTransfer` prepares images, the extractor and the targets once; iterating over it runs
the optimizer and yields one :class:`Iterate` per step. It never prints and writes no files: the
CLI turns iterates into a progress bar and saved images, a report into plots.

    st = StyleTransfer("photo.jpg", ["painting.jpg"], get_preset("seed"))
    for it in st.run(image_every=100):
        ...
    result = st.image  # 1x3xHxW in [0, 1]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Sequence, Union

import torch

from . import controls
from .config import StyleConfig
from .errors import GafuError
from .image import ImageLike, load_tensor, resize
from .losses import ContentLoss, StyleLoss, blend_grams, gram_matrix, total_variation
from .optim import KerasAdam
from .vgg import VGG19Features, load_vgg19


@dataclass(frozen=True)
class Iterate:
    """One optimizer step's report.

    ``loss`` and ``terms`` are evaluated on the image *before* this step's update (as the seed's
    ``train_step`` computes them); ``image`` is the image *after* the update, present only on
    the steps the caller asked for (and always on the last step).
    """

    step: int  # steps done so far (1-based)
    steps: int  # steps planned
    loss: float
    terms: Dict[str, float]
    elapsed: float  # seconds since the loop started
    image: Optional[torch.Tensor] = field(default=None, repr=False)


def _as_tensor(image: Union[ImageLike, torch.Tensor], size: Optional[int], mode: str) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        t = image.detach().to(torch.float32)
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[:2] != (1, 3):
            raise GafuError(f"expected an image tensor of shape 1x3xHxW, got {tuple(image.shape)}")
        if size is None:
            return t.cpu()
        from .image import fit_shape, seed_shape

        h, w = t.shape[-2:]
        shape = seed_shape(h, w, size) if mode == "seed" else fit_shape(h, w, size)
        return resize(t.cpu(), shape, antialias=(mode != "seed"))
    return load_tensor(image, size, mode=mode)


def _describe(source) -> Optional[str]:
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


class StyleTransfer:
    """A prepared optimization: content image, style targets, extractor and optimizer.

    Args:
        content: path, PIL image, array or 1x3xHxW tensor in [0, 1].
        styles: one style image or a list of them (may be empty with ``region_styles``).
        config: settings (default: the seed preset), including the controls ``preserve_color``,
            ``style_scale``, ``strength`` and ``feather`` (see :mod:`gafu.controls`).
        style_weights: blend weights of several styles (default: equal), normalised to sum 1.
        weights: VGG19 weights path (default: ``GAFU_VGG19_WEIGHTS`` or the bundled file).
        device: torch device string ('cpu', 'cuda', ...).
        init_image: start from this image instead of ``config.init`` (resized to the content's size).
        mask: stylize only where this mask is set (any size, thresholded at grey 127, resized with
            nearest neighbour, feathered by ``config.feather``); the style loss uses Gram statistics
            of the masked region only and the result is the content outside the mask.
        region_map: a label image; with ``region_styles`` each listed colour's region gets its own
            style (per-region Gram statistics, Gatys et al. 2017). Unlisted colours keep the content.
        region_styles: ``{"red": "a.jpg", "#0000ff": img}``, ``[(colour, style), ...]`` or
            ``"red=a.jpg,blue=b.jpg"``.
        region_tolerance: RGB distance (0..255) within which a map pixel matches a listed colour.
    """

    def __init__(
        self,
        content: Union[ImageLike, torch.Tensor],
        styles: Union[ImageLike, Sequence[ImageLike], None],
        config: Optional[StyleConfig] = None,
        *,
        style_weights: Optional[Sequence[float]] = None,
        weights: Union[str, os.PathLike, None] = None,
        device: Union[str, torch.device] = "cpu",
        init_image: Union[ImageLike, torch.Tensor, None] = None,
        mask: Union[controls.MaskLike, None] = None,
        region_map: Union[controls.MaskLike, None] = None,
        region_styles=None,
        region_tolerance: float = controls.REGION_TOLERANCE,
    ) -> None:
        self.config = cfg = config if config is not None else StyleConfig(name="seed")
        self.device = torch.device(device)
        self._sources = {"mask": mask, "region_map": region_map, "init_image": init_image}
        if styles is None:
            style_list = []
        else:
            style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        if (region_map is None) != (region_styles is None):
            raise GafuError("a region map and region styles go together: give both or neither")
        if region_styles is not None and style_list:
            raise GafuError("give style images either as styles or as region styles, not both")
        if region_styles is not None and style_weights is not None:
            raise GafuError("style weights blend several styles; with region styles each region has one style")
        if not style_list and region_styles is None and cfg.style_layers:
            raise GafuError("at least one style image is needed")
        if style_weights is None:
            style_weights = [1.0] * len(style_list)
        style_weights = [float(w) for w in style_weights]
        if len(style_weights) != len(style_list):
            raise GafuError(f"got {len(style_weights)} style weights for {len(style_list)} style images")
        if any(w < 0 or w != w for w in style_weights) or (style_list and sum(style_weights) <= 0):
            raise GafuError("style weights must be >= 0 and not all zero")
        total = sum(style_weights)
        self.style_weights = [w / total for w in style_weights] if style_list else []

        # Content in colour (outputs are recombined/blended with it) and as the network sees it.
        self.content_rgb = _as_tensor(content, cfg.size, cfg.resize).to(self.device)
        shape = tuple(self.content_rgb.shape[-2:])
        luma_only = cfg.preserve_color == "luminance"
        self.content = controls.gray3(self.content_rgb) if luma_only else self.content_rgb

        # Where to stylize: a mask, regions of a label map, or everywhere (None).
        self.mask = None
        if mask is not None:
            self.mask = controls.prepare_mask(mask, shape, feather=cfg.feather).to(self.device)
        self.regions: list = []
        region_masks = None
        if region_styles is not None:
            self.regions, region_masks = controls.prepare_regions(
                region_map, region_styles, shape, feather=cfg.feather, mask=self.mask, tolerance=region_tolerance
            )
            region_masks = region_masks.to(self.device)
            style_list = [r.style for r in self.regions]
        if region_masks is not None:
            self.blend_mask = region_masks.sum(dim=0, keepdim=True).clamp(max=1.0)
        else:
            self.blend_mask = self.mask

        # Style images at style_scale x size, colour-prepared against the content (region by region).
        style_dim = controls.style_size(cfg.size, cfg.style_scale)
        fit_masks = list(region_masks) if region_masks is not None else [self.mask] * len(style_list)
        self.styles = [
            controls.prepare_style(
                _as_tensor(s, style_dim, cfg.resize).to(self.device),
                self.content_rgb,
                cfg.preserve_color,
                content_mask=None if m is None else m.reshape(1, 1, *shape),
            )
            for s, m in zip(style_list, fit_masks)
        ]

        controls.check_min_side(self.content, cfg.style_layers + cfg.content_layers, "the content image")
        for i, s in enumerate(self.styles):
            controls.check_min_side(s, cfg.style_layers, f"style image {i + 1} at style scale {cfg.style_scale:g}")

        layers = tuple(dict.fromkeys(cfg.style_layers + cfg.content_layers))
        self.extractor: VGG19Features = load_vgg19(layers, weights=weights, pooling=cfg.pooling, device=self.device)

        with torch.no_grad():
            content_feats = self.extractor(self.content, cfg.content_layers) if cfg.content_layers else {}
            per_style = []
            for s in self.styles:
                feats = self.extractor(s, cfg.style_layers)
                per_style.append({k: gram_matrix(v) for k, v in feats.items()})
        self.content_loss = ContentLoss(content_feats, cfg.content_weight) if cfg.content_layers else None
        self.style_weight = controls.effective_style_weight(cfg)
        if not per_style or not cfg.style_layers:
            self.style_loss = None
        elif region_masks is not None:  # one Gram target per region, image Grams over each region
            self.style_loss = controls.RegionStyleLoss(region_masks, per_style, self.style_weight)
        elif self.mask is not None:  # blended target, image Gram over the masked region
            grams = blend_grams(per_style, self.style_weights)
            self.style_loss = controls.RegionStyleLoss(self.mask, [grams], self.style_weight)
        else:
            self.style_loss = StyleLoss(blend_grams(per_style, self.style_weights), self.style_weight)

        generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        if init_image is not None:
            start = _as_tensor(init_image, None, cfg.resize)
            if start.shape[-2:] != self.content.shape[-2:]:
                start = resize(start, tuple(self.content.shape[-2:]), antialias=True)
            start = start.clamp(0, 1)
        elif cfg.init == "noise":
            start = torch.rand(self.content.shape, generator=generator)
        else:
            start = self.content.detach().cpu()
        if luma_only:
            start = controls.gray3(start)
        self._image = start.to(self.device).clone().requires_grad_(True)
        self.optimizer = KerasAdam([self._image], lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
        self.steps_done = 0

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """The optimized pixels as the user gets them: the content's chroma put back in luminance
        mode, then the content restored outside the mask/regions."""
        if self.config.preserve_color == "luminance":
            colours = self.content_rgb.to(x.dtype)
            if colours.shape[-2:] != x.shape[-2:]:
                colours = resize(colours, tuple(x.shape[-2:]), antialias=True)
            x = controls.combine_luminance(x, colours)
        if self.blend_mask is not None:
            x = controls.blend(x, self.content_rgb, self.blend_mask)
        return x

    def controls_summary(self) -> dict:
        """The controls of this run, JSON-ready (files as paths, in-memory images as ``<type>``)."""
        cfg, src = self.config, self._sources
        return {
            "preserve_color": cfg.preserve_color,
            "mask": _describe(src["mask"]),
            "mask_share": round(float(self.mask.mean()), 6) if self.mask is not None else None,
            "feather": cfg.feather,
            "region_map": _describe(src["region_map"]),
            "regions": [
                {
                    "label": r.label,
                    "color": controls.color_hex(r.color),
                    "style": _describe(r.style),
                    "share": round(r.share, 6),
                }
                for r in self.regions
            ],
            "style_scale": cfg.style_scale,
            "style_shapes": [list(s.shape[-2:]) for s in self.styles],
            "style_weights": self.style_weights,
            "strength": cfg.strength,
            "style_weight": self.style_weight,
            "init": _describe(src["init_image"]) if src["init_image"] is not None else cfg.init,
            "seed": cfg.seed,
        }

    # ------------------------------------------------------------------------------------------
    @property
    def image(self) -> torch.Tensor:
        """The current image, 1x3xHxW float32 in [0, 1], detached, on the CPU."""
        return self._finish(self._image.detach().clamp(0, 1)).clamp(0, 1).cpu().clone()

    def loss_terms(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted loss terms of ``image`` (graph kept if it requires grad). Keys: style, content, tv, total."""
        cfg = self.config
        feats = self.extractor(image)
        zero = image.new_zeros(())
        style = self.style_loss(feats) if self.style_loss is not None else zero
        content = self.content_loss(feats) if self.content_loss is not None else zero
        tv = cfg.tv_weight * total_variation(image) if cfg.tv_weight else zero
        return {"style": style, "content": content, "tv": tv, "total": style + content + tv}

    def evaluate(self, image: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Loss terms (floats) of ``image`` (default: the current image), without gradients."""
        x = self._image.detach() if image is None else image.to(self.device)
        with torch.no_grad():
            return {k: float(v) for k, v in self.loss_terms(x).items()}

    def run(self, steps: Optional[int] = None, *, image_every: int = 0) -> Iterator[Iterate]:
        """Run ``steps`` optimizer steps (default: the config's), yielding an Iterate per step.

        ``image_every=N`` attaches the current image to every N-th iterate (0: only the last).
        The loop can be stopped at any time; :attr:`image` is always the latest image.
        """
        total = self.config.steps if steps is None else int(steps)
        x = self._image
        start = time.perf_counter()
        for i in range(1, total + 1):
            self.optimizer.zero_grad(set_to_none=True)
            terms = self.loss_terms(x)
            terms["total"].backward()
            self.optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            self.steps_done += 1
            want_image = i == total or (image_every and i % image_every == 0)
            yield Iterate(
                step=i,
                steps=total,
                loss=float(terms["total"].detach()),
                terms={k: float(v.detach()) for k, v in terms.items() if k != "total"},
                elapsed=time.perf_counter() - start,
                image=self.image if want_image else None,
            )
