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


class StyleTransfer:
    """A prepared optimization: content image, style targets, extractor and optimizer.

    Args:
        content: path, PIL image, array or 1x3xHxW tensor in [0, 1].
        styles: one style image or a list of them.
        config: settings (default: the seed preset).
        style_weights: blend weights of several styles (default: equal), normalised to sum 1.
        weights: VGG19 weights path (default: ``GAFU_VGG19_WEIGHTS`` or the bundled file).
        device: torch device string ('cpu', 'cuda', ...).
        init_image: start from this image instead of ``config.init`` (resized to the content's size).
    """

    def __init__(
        self,
        content: Union[ImageLike, torch.Tensor],
        styles: Union[ImageLike, Sequence[ImageLike]],
        config: Optional[StyleConfig] = None,
        *,
        style_weights: Optional[Sequence[float]] = None,
        weights: Union[str, os.PathLike, None] = None,
        device: Union[str, torch.device] = "cpu",
        init_image: Union[ImageLike, torch.Tensor, None] = None,
    ) -> None:
        self.config = cfg = config if config is not None else StyleConfig(name="seed")
        self.device = torch.device(device)
        style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        if not style_list and cfg.style_layers:
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

        self.content = _as_tensor(content, cfg.size, cfg.resize).to(self.device)
        self.styles = [_as_tensor(s, cfg.size, cfg.resize).to(self.device) for s in style_list]

        layers = tuple(dict.fromkeys(cfg.style_layers + cfg.content_layers))
        self.extractor: VGG19Features = load_vgg19(layers, weights=weights, pooling=cfg.pooling, device=self.device)

        with torch.no_grad():
            content_feats = self.extractor(self.content, cfg.content_layers) if cfg.content_layers else {}
            per_style = []
            for s in self.styles:
                feats = self.extractor(s, cfg.style_layers)
                per_style.append({k: gram_matrix(v) for k, v in feats.items()})
        self.content_loss = ContentLoss(content_feats, cfg.content_weight) if cfg.content_layers else None
        grams = blend_grams(per_style, self.style_weights) if per_style and cfg.style_layers else {}
        self.style_loss = StyleLoss(grams, cfg.style_weight) if grams else None

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
        self._image = start.to(self.device).clone().requires_grad_(True)
        self.optimizer = KerasAdam([self._image], lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
        self.steps_done = 0

    # ------------------------------------------------------------------------------------------
    @property
    def image(self) -> torch.Tensor:
        """The current image, 1x3xHxW float32 in [0, 1], detached, on the CPU."""
        return self._image.detach().clamp(0, 1).cpu().clone()

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
