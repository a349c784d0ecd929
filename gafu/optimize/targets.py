"""Style targets prepared once and reused: for many photos, and for every coarse-to-fine stage.

A :class:`StyleTargets` decodes its style images once (full resolution, gafu's tensor convention)
and computes their Gram matrices at a size on first request, caching them. Applying one style to
N photos (a folder, a dataset job, a web session) or running coarse-to-fine therefore computes each
style's targets once per size instead of once per photo and stage::

    targets = StyleTargets(["starry_night.jpg"], get_preset("fast"))
    for photo in photos:
        StyleTransfer(photo, targets, cfg).run()      # Grams at cfg.size computed for the first only

Gram targets depend on the content only under colour preservation ('luminance' matches the style's
luminance statistics to the content's, 'histogram' its colour statistics): those are prepared per
content (not cached) from the same decoded images.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..checks import normalize_weights
from ..color import match_color, match_luminance
from ..config import PRESERVE_COLOR_MODES, StyleConfig, style_size
from ..errors import GafuError, unknown_name
from ..image import ImageLike, as_tensor, fit_shape, resize, seed_shape
from ..losses import blend_grams, gram_matrix
from ..vgg import VGG19Features, check_min_side, load_vgg19

Grams = Dict[str, torch.Tensor]


def prepare_style(
    style: torch.Tensor, content: torch.Tensor, preserve_color: str, *, content_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """A style image as the optimization sees it under ``preserve_color``.

    'none': unchanged. 'luminance': its luminance matched to the content's (over ``content_mask``),
    grey. 'histogram': its colours matched to the content's mean/covariance (over ``content_mask``).
    """
    if preserve_color == "luminance":
        return match_luminance(style, content, content_mask=content_mask, keep_style_contrast=True)
    if preserve_color == "histogram":
        return match_color(style, content, content_mask=content_mask)
    if preserve_color == "none":
        return style
    raise unknown_name("colour preservation mode", str(preserve_color), PRESERVE_COLOR_MODES)


def _as_list(styles) -> list:
    if styles is None:
        return []
    return list(styles) if isinstance(styles, (list, tuple)) else [styles]


class StyleTargets:
    """Style images and their Gram targets, prepared once.

    Args:
        styles: one style image or a list (paths, PIL images, arrays or 1x3xHxW tensors).
        config: the settings whose style side matters here: ``style_layers``, ``pooling``,
            ``style_scale``, ``resize``, ``preserve_color`` (default: the seed preset).
        style_weights: blend weights (default equal), normalised to sum 1.
        weights: VGG19 weights path (default: ``GAFU_VGG19_WEIGHTS`` or the bundled file).
        device: where the Grams are computed and kept.
        extractor: a VGG19 extractor to use (one that returns ``config.style_layers``); default:
            one loaded on first need.

    The style images are decoded when the object is built (so a bad file fails at once);
    :meth:`grams` / :meth:`at` compute targets on first use for each size. Thread-safe.
    """

    def __init__(
        self,
        styles: Union[ImageLike, Sequence[ImageLike]],
        config: Optional[StyleConfig] = None,
        *,
        style_weights: Optional[Sequence[float]] = None,
        weights: Union[str, os.PathLike, None] = None,
        device: Union[str, torch.device] = "cpu",
        extractor: Optional[VGG19Features] = None,
    ) -> None:
        self.config = config if config is not None else StyleConfig(name="seed")
        self.sources = _as_list(styles)
        if not self.sources:
            raise GafuError("at least one style image is needed")
        if not self.config.style_layers:
            raise GafuError("style targets need at least one style layer")
        self.weights: List[float] = normalize_weights(style_weights, len(self.sources)).tolist()
        self.vgg_weights = weights
        self.device = torch.device(device)
        # Full size, decoded once (JPEG as TensorFlow decodes it under the seed preset).
        self.images = [as_tensor(s, None, decoder=self.config.jpeg_decoder) for s in self.sources]
        self._extractor = extractor
        self._cache: Dict[tuple, Tuple[List[torch.Tensor], List[Grams]]] = {}
        self._lock = threading.Lock()
        #: How many style images went through the network (each is one forward pass).
        self.extractor_calls = 0

    def __len__(self) -> int:
        return len(self.sources)

    # -- sizes --------------------------------------------------------------------------------
    def style_dim(self, size: int) -> int:
        """Long side (pixels) of the style images for a run at ``size`` (``style_scale`` applied)."""
        return style_size(size, self.config.style_scale)

    def resized(self, size: int, *, resize_mode: Optional[str] = None) -> List[torch.Tensor]:
        """The style images at their side for ``size`` (as :func:`gafu.image.load_tensor` would
        resize them: 'seed' = the tutorial's bilinear, 'antialias' = filtered), on :attr:`device`."""
        mode = resize_mode or self.config.resize
        dim = self.style_dim(size)
        out = []
        for t in self.images:
            h, w = t.shape[-2:]
            shape = seed_shape(h, w, dim) if mode == "seed" else fit_shape(h, w, dim)
            out.append(resize(t, shape, antialias=(mode != "seed")).to(self.device))
        return out

    # -- targets ------------------------------------------------------------------------------
    def extractor(self) -> VGG19Features:
        if self._extractor is None:
            cfg = self.config
            self._extractor = load_vgg19(cfg.style_layers, weights=self.vgg_weights, pooling=cfg.pooling,
                                         device=self.device)
        return self._extractor

    def grams(
        self,
        size: int,
        *,
        resize_mode: Optional[str] = None,
        content: Optional[torch.Tensor] = None,
        content_masks: Optional[Sequence[Optional[torch.Tensor]]] = None,
        extractor: Optional[VGG19Features] = None,
    ) -> Tuple[List[torch.Tensor], List[Grams]]:
        """Per style: the prepared image and its Gram targets (fp32) for a run at ``size``.

        ``content`` (RGB, the run's size) and ``content_masks`` (one per style, or None) are needed
        only under colour preservation, where the style is matched to the content first; results
        are cached per (size, resize mode) when they do not depend on the content.
        """
        cfg = self.config
        mode = resize_mode or cfg.resize
        if cfg.preserve_color != "none" and content is None:
            raise GafuError(f"preserve_color='{cfg.preserve_color}' prepares the style against a content image")
        key = (int(size), mode) if cfg.preserve_color == "none" else None
        with self._lock:
            if key is not None and key in self._cache:
                return self._cache[key]
            masks = list(content_masks) if content_masks is not None else [None] * len(self)
            if len(masks) != len(self):
                raise ValueError(f"{len(masks)} content masks for {len(self)} styles")
            prepared = [
                prepare_style(s, content, cfg.preserve_color, content_mask=m) if content is not None else s
                for s, m in zip(self.resized(size, resize_mode=mode), masks)
            ]
            for i, s in enumerate(prepared):
                check_min_side(s, cfg.style_layers, f"style image {i + 1} at style scale {cfg.style_scale:g}")
            net = extractor if extractor is not None else self.extractor()
            grams = []
            with torch.no_grad():
                for s in prepared:
                    feats = net(s, cfg.style_layers)
                    self.extractor_calls += 1
                    grams.append({k: gram_matrix(v) for k, v in feats.items()})
            result = (prepared, grams)
            if key is not None:
                self._cache[key] = result
            return result

    def at(self, size: int, **kwargs) -> Grams:
        """The blended Gram targets (by :attr:`weights`) for a run at ``size``; see :meth:`grams`."""
        _, grams = self.grams(size, **kwargs)
        return blend_grams(grams, self.weights)
