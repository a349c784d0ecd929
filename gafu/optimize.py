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
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from . import controls
from .config import StyleConfig
from .errors import GafuError
from .image import ImageLike, load_tensor, resize
from .losses import ContentLoss, StyleLoss, blend_grams, gram_matrix, total_variation
from .lbfgs import LBFGS, history_for
from .optim import KerasAdam
from .speed import dtype_of, keep_freed_memory, resolve_precision
from .vgg import VGG19Features, load_vgg19


@dataclass(frozen=True)
class Iterate:
    """One optimizer step's report.

    ``loss`` and ``terms`` are evaluated on the image *before* this step's update (as the seed's
    ``train_step`` computes them), in the step's precision (:attr:`StyleTransfer.precision`; use
    :meth:`StyleTransfer.evaluate` for the fp32 reference value); ``image`` is the image *after*
    the update, present only on the steps the caller asked for (and always on the last step), at
    the content's full size even during coarse-to-fine stages.
    """

    step: int  # steps done so far (1-based), all scales counted
    steps: int  # steps planned (the loop may stop earlier with config.stop_tol)
    loss: float
    terms: Dict[str, float]
    elapsed: float  # seconds since the loop started
    image: Optional[torch.Tensor] = field(default=None, repr=False)
    shape: Tuple[int, int] = (0, 0)  # (H, W) this step optimized at (smaller during coarse stages)


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
        # What the coarse stages of config.scales need to rebuild this transfer at another size.
        self._rebuild = dict(
            styles=styles, style_weights=style_weights, weights=weights, device=device,
            mask=mask, region_map=region_map, region_styles=region_styles, region_tolerance=region_tolerance,
        )
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
        # Contiguous whatever the source's strides (an image already at the target size comes from
        # PIL's HWC array as a permuted view): L-BFGS works on a flat view of it.
        self._image = start.to(self.device).clone(memory_format=torch.contiguous_format).requires_grad_(True)
        self.optimizer = KerasAdam([self._image], lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
        self.steps_done = 0
        self.precision = resolve_precision(cfg.precision, self.device)  # 'auto' -> what this device runs fast
        self.fp32_fallback_steps = 0  # reduced-precision steps redone in fp32 (non-finite gradient)
        # fp16 only: the loss (~1e9) is scaled down before backward so gradients fit fp16's range.
        self._grad_scale = _FP16_GRAD_SCALE
        self._lbfgs: Optional[LBFGS] = None

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

    def loss_terms(self, image: torch.Tensor, *, precision: str = "fp32") -> Dict[str, torch.Tensor]:
        """Weighted loss terms of ``image`` (graph kept if it requires grad). Keys: style, content, tv, total.

        ``precision='fp32'`` is the reference (the seed's computation); 'bf16'/'fp16' run VGG19 in
        16 bit (the fast path of :meth:`run`) against the same fp32 targets, with fp32 Gram
        matrices and losses.
        """
        cfg = self.config
        feats = self.extractor(image) if precision == "fp32" else self._lowp_extractor(precision)(image)
        zero = image.new_zeros(())
        style = self.style_loss(feats) if self.style_loss is not None else zero
        content = self.content_loss(feats) if self.content_loss is not None else zero
        tv = cfg.tv_weight * total_variation(image) if cfg.tv_weight else zero
        return {"style": style, "content": content, "tv": tv, "total": style + content + tv}

    def _lowp_extractor(self, precision: str) -> VGG19Features:
        return load_vgg19(
            self.extractor.requested,
            weights=self._rebuild["weights"],
            pooling=self.config.pooling,
            device=self.device,
            dtype=dtype_of(precision),
        )

    def evaluate(self, image: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Loss terms (floats) of ``image`` (default: the current image), without gradients, in fp32."""
        # clamp: a no-op for Adam (which clamps every step); L-BFGS keeps x unconstrained.
        x = self._image.detach().clamp(0.0, 1.0) if image is None else image.to(self.device)
        with torch.no_grad():
            return {k: float(v) for k, v in self.loss_terms(x).items()}

    def run(self, steps: Optional[int] = None, *, image_every: int = 0) -> Iterator[Iterate]:
        """Run ``steps`` optimizer steps (default: the config's), yielding an Iterate per step.

        ``image_every=N`` attaches the current image to every N-th iterate (0: only the last).
        The loop can be stopped at any time; :attr:`image` is always the latest image.

        With ``config.scales`` (coarse-to-fine), a fresh transfer first runs ``scale_steps`` at
        each fraction of the size, each result upsampled to start the next; ``steps`` then run at
        full size. With ``config.stop_tol`` the full-size stage stops once the loss stalls.
        """
        cfg = self.config
        total = cfg.steps if steps is None else int(steps)
        sizes = [max(1, round(cfg.size * f)) for f in cfg.scales]
        stages = list(zip(sizes, cfg.scale_steps)) if self.steps_done == 0 else []
        planned = sum(n for _, n in stages) + total
        start = time.perf_counter()
        # Numerics are untouched by the allocator setting; it only avoids per-step page faults.
        with keep_freed_memory():
            done = 0
            if stages:
                done = yield from self._coarse_to_fine(stages, planned, start, image_every)
            yield from self._steps(total, offset=done, planned=planned, start=start, image_every=image_every)

    # ------------------------------------------------------------------------------------------
    def _coarse_to_fine(self, stages, planned: int, start: float, image_every: int):
        """Run the coarse stages; leave the upsampled result in ``self._image``; return steps done."""
        cfg = self.config
        full = tuple(self.content.shape[-2:])
        current = self._image.detach()
        done = 0
        smallest = 2 ** sum(1 for name in self.extractor.layers if name.startswith("pool"))
        for size, _ in stages:
            short = round(size * min(full) / max(full))
            if short < smallest:
                raise GafuError(
                    f"coarse scale {size} px makes the short side {short} px; the VGG19 layers used "
                    f"need at least {smallest} px (choose a larger scale)"
                )
        for size, n in stages:
            sub_cfg = cfg.replace(
                size=size,
                steps=n,
                scales=(),
                scale_steps=(),
                resize="antialias",  # downsampling the full-size tensors: filter them
                lr=cfg.scale_lr if cfg.scale_lr is not None else cfg.lr,
                stop_tol=0.0,
            )
            # Same inputs and controls (mask, regions, colour, style scale) at the coarse size.
            sub = StyleTransfer(self.content_rgb, config=sub_cfg, init_image=current, **self._rebuild)
            for it in sub._steps(n, offset=done, planned=planned, start=start, image_every=0):
                want = image_every and it.step % image_every == 0
                image = resize(sub.image, full, antialias=True).clamp(0, 1) if want else None
                yield Iterate(it.step, planned, it.loss, it.terms, it.elapsed, image, it.shape)
            self.fp32_fallback_steps += sub.fp32_fallback_steps
            self.steps_done += sub.steps_done
            done += n
            current = sub._image.detach().clamp(0.0, 1.0)
        with torch.no_grad():
            self._image.copy_(resize(current, full, antialias=True).clamp_(0.0, 1.0))
        return done

    def _steps(self, total: int, *, offset: int, planned: int, start: float, image_every: int) -> Iterator[Iterate]:
        cfg = self.config
        x = self._image
        shape = tuple(x.shape[-2:])
        history: List[float] = []
        # With 16-bit precision the last `polish_steps` steps run in fp32: the image then fits the
        # fp32 network (the reference), not the 16-bit one's rounding. An early stop skips ahead to them.
        precision = self.precision
        polish = min(cfg.polish_steps, total) if precision != "fp32" else 0
        end = total
        i = 0
        while i < end:
            i += 1
            if polish and precision != "fp32" and i > end - polish:
                precision = "fp32"
                history.clear()
                if self._lbfgs is not None:
                    self._lbfgs.forget_point()  # its cached loss/gradient are 16-bit values
            if cfg.optimizer == "lbfgs":
                terms = self._lbfgs_step(x, precision)  # x stays unconstrained; the loss sees clamp(x)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                terms = self._loss_and_grad(x, precision=precision)
                self.optimizer.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            self.steps_done += 1
            loss = float(terms["total"].detach())
            history.append(loss)
            stop = _stalled(history, cfg.stop_tol, cfg.stop_window)
            if stop and polish and precision != "fp32":
                end, stop = i + polish, False
            want_image = i == end or stop or (image_every and (offset + i) % image_every == 0)
            yield Iterate(
                step=offset + i,
                steps=planned,
                loss=loss,
                terms={k: float(v.detach()) for k, v in terms.items() if k != "total"},
                elapsed=time.perf_counter() - start,
                image=self.image if want_image else None,
                shape=shape,
            )
            if stop:
                break

    def _loss_and_grad(
        self, x: torch.Tensor, clamp: bool = False, precision: Optional[str] = None
    ) -> Dict[str, torch.Tensor]:
        """Loss terms of ``x`` (of ``clamp(x, 0, 1)`` if ``clamp``) with ``x.grad`` set.

        Computed in ``precision`` (default: :attr:`precision`); a 16-bit step whose gradient is not
        finite is redone in fp32 (counted in ``fp32_fallback_steps``).
        """
        precision = self.precision if precision is None else precision
        scale = self._grad_scale if precision == "fp16" else 1.0
        image = x.clamp(0.0, 1.0) if clamp else x
        terms = self.loss_terms(image, precision=precision)
        (terms["total"] * scale if scale != 1.0 else terms["total"]).backward()
        if precision == "fp32":
            return terms
        if not bool(torch.isfinite(x.grad).all()):
            # A 16-bit overflow (fp16's range is 65504): redo this step in fp32, scale down further.
            self.fp32_fallback_steps += 1
            if precision == "fp16":
                self._grad_scale = scale / 16.0
            x.grad = None
            terms = self.loss_terms(image)
            terms["total"].backward()
        elif scale != 1.0:
            x.grad.div_(scale)  # a power of two: exact
        return terms

    def _lbfgs_step(self, x: torch.Tensor, precision: str) -> Dict[str, torch.Tensor]:
        """One L-BFGS iteration on the unconstrained ``x``; the loss is that of ``clamp(x, 0, 1)``."""
        if self._lbfgs is None:
            history = history_for(x.numel(), self.config.lbfgs_history)
            self._lbfgs = LBFGS(x, lr=1.0, history=history)

        def closure():
            x.grad = None
            terms = self._loss_and_grad(x, clamp=True, precision=precision)
            return terms["total"], terms

        return self._lbfgs.step(closure)


#: Initial loss scale of fp16 steps (a power of two). Seed-scale losses are ~1e9 and the image
#: gradient reaches ~1e8; scaled by 2^-16 both sit well inside fp16's range (6e-8 .. 65504).
_FP16_GRAD_SCALE = 2.0**-16


def _stalled(history: List[float], tol: float, window: int) -> bool:
    """True when the loss fell by less than ``tol`` (a fraction) over the last ``window`` steps."""
    if tol <= 0 or len(history) <= window:
        return False
    before = history[-1 - window]
    return before - history[-1] < tol * abs(before)
