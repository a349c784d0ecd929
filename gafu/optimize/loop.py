"""The stylization loop (Gatys et al.): optimize the pixels of an image against named VGG19 losses.

:class:`StyleTransfer` prepares the content, where to stylize, the style targets
(:class:`~gafu.optimize.targets.StyleTargets`, reusable across photos and coarse-to-fine stages),
the extractor and the criterion (:class:`gafu.losses.Criterion`: named terms; :meth:`add_term` joins
another) once; iterating over :meth:`StyleTransfer.run` runs the optimizer and yields one
:class:`Iterate` per step. It never prints, writes no files and changes no process-wide state
(``run(tune_allocator=True)`` opts in to the allocator setting of :mod:`gafu.optimize.precision`).

    st = StyleTransfer("photo.jpg", ["painting.jpg"], get_preset("seed"))
    for it in st.run(image_every=100):
        ...
    result = st.result()  # a StyleResult: .tensor (1x3xHxW in [0, 1]), .image (PIL), settings, timings
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..color import combine_luminance, gray3
from ..config import StyleConfig, effective_style_weight
from ..errors import GafuError
from ..image import ImageLike, as_tensor, resize
from ..masks import REGION_TOLERANCE, MaskLike, blend, color_hex
from ..result import StyleResult
from ..vgg import VGG19Features, check_min_side, load_vgg19
from . import tiled
from .memory import fits_whole
from .optimizers import LBFGS, KerasAdam, clamp_inward, history_for
from .precision import dtype_of, keep_freed_memory, resolve_precision, return_freed_memory
from .prepare import Where, build_criterion, check_targets_fit, prepare_where, start_image, style_list
from .targets import StyleTargets


@dataclass(frozen=True)
class Iterate:
    """One optimizer step's report.

    ``loss`` and ``terms`` (one value per named loss term) are evaluated on the image *before* this
    step's update (as the seed's ``train_step`` computes them), in the step's precision
    (:attr:`StyleTransfer.precision`; use :meth:`StyleTransfer.evaluate` for the fp32 reference
    value); ``image`` is the image *after* the update, present only on the steps the caller asked
    for (and always on the last step), at the content's full size even during coarse-to-fine stages.
    """

    step: int  # steps done so far (1-based), all scales counted
    steps: int  # steps planned (the loop may stop earlier with config.stop_tol)
    loss: float
    terms: Dict[str, float]
    elapsed: float  # seconds since the loop started
    image: Optional[torch.Tensor] = field(default=None, repr=False)
    shape: Tuple[int, int] = (0, 0)  # (H, W) this step optimized at (smaller during coarse stages)


def _describe(source) -> Optional[str]:
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


class StyleTransfer:
    """A prepared optimization: content image, style targets, extractor, criterion and optimizer.

    Args:
        content: path, PIL image, array or 1x3xHxW tensor in [0, 1].
        styles: one style image, a list of them (may be empty with ``region_styles``), or a
            :class:`StyleTargets` prepared once for many runs.
        config: settings (default: the seed preset), including the controls ``preserve_color``,
            ``style_scale``, ``strength`` and ``feather``.
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
        extractor: a VGG19 extractor to share (it must return the config's style and content layers).
        max_memory: memory budget (MB) of the run (default: the memory available now). A size that
            does not fit whole is optimized in tiles (:mod:`gafu.optimize.tiled`, coarse-to-fine
            from a size that fits); one that cannot fit at all is refused before any work.
        tile: optimize in tiles of at most this many pixels wherever the image is larger.
    """

    def __init__(
        self,
        content: Union[ImageLike, torch.Tensor],
        styles: Union[ImageLike, Sequence[ImageLike], StyleTargets, None],
        config: Optional[StyleConfig] = None,
        *,
        style_weights: Optional[Sequence[float]] = None,
        weights: Union[str, os.PathLike, None] = None,
        device: Union[str, torch.device] = "cpu",
        init_image: Union[ImageLike, torch.Tensor, None] = None,
        mask: Union[MaskLike, None] = None,
        region_map: Union[MaskLike, None] = None,
        region_styles=None,
        region_tolerance: float = REGION_TOLERANCE,
        extractor: Optional[VGG19Features] = None,
        max_memory: Optional[float] = None,
        tile: Optional[int] = None,
    ) -> None:
        t0 = time.perf_counter()
        self.config = cfg = config if config is not None else StyleConfig(name="seed")
        self.device = torch.device(device)
        self._sources = {"mask": mask, "region_map": region_map, "init_image": init_image}
        self._region = {"region_map": region_map, "region_styles": region_styles, "region_tolerance": region_tolerance}
        self._weights_path = weights
        sources = style_list(styles, style_weights, region_map, region_styles, cfg)

        # Content in colour (outputs are recombined/blended with it) and as the network sees it.
        self.content_rgb = as_tensor(content, cfg.size, cfg.resize, decoder=cfg.jpeg_decoder).to(self.device)
        shape = tuple(self.content_rgb.shape[-2:])
        self._luma_only = luma_only = cfg.preserve_color == "luminance"
        self.content = gray3(self.content_rgb) if luma_only else self.content_rgb
        check_min_side(self.content, cfg.style_layers + cfg.content_layers, "the content image")

        self._where = where = prepare_where(
            mask, region_map, region_styles, shape, feather=cfg.feather, tolerance=region_tolerance, device=self.device
        )
        self.mask, self.regions, self.blend_mask = where.mask, where.regions, where.blend_mask
        if where.regions and not isinstance(styles, StyleTargets):
            sources = [r.style for r in where.regions]
        self.targets = self._style_targets(styles, sources, style_weights, weights)
        self.style_weights: List[float] = self.targets.weights if (self.targets and not where.regions) else []

        start = start_image(init_image, cfg, self.content, luma_only=luma_only)  # every input decoded by now
        self.precision = resolve_precision(cfg.precision, self.device)  # 'auto' -> what this device runs fast
        # Before the network loads: tiles for what does not fit whole, refuse what cannot fit at all.
        self.max_memory, self.tile, self.on_tile = max_memory, tile, None
        self._tiled, cfg = tiled.choose(
            shape, cfg, precision=self.precision, regions=len(self.regions), masked=self.mask is not None,
            max_memory=max_memory, tile=tile, schedule=init_image is None,
            check=self.device.type == "cpu" or max_memory is not None)
        self.config = cfg
        # on_stall='fp32' needs fp32 activations: only for a whole run whose fp32 estimate fits the budget
        # too (the plan above was made for this precision); otherwise a stall stops the run.
        self._fp32_on_stall = (cfg.on_stall == "fp32" and self.precision != "fp32" and self._tiled is None
                               and ((self.device.type != "cpu" and max_memory is None)  # host RAM is not the limit
                                    or fits_whole(shape, precision="fp32", regions=len(self.regions),
                                                  budget_mb=max_memory)))
        layers = tuple(dict.fromkeys(cfg.style_layers + cfg.content_layers))
        self.extractor: VGG19Features = extractor if extractor is not None else load_vgg19(
            layers, weights=weights, pooling=cfg.pooling, device=self.device
        )
        self.criterion = self._criterion(where)
        self._image = start.to(self.device).requires_grad_(True)
        self.optimizer = KerasAdam([self._image], lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
        self.steps_done = 0
        self.fp32_fallback_steps = 0  # reduced-precision steps redone in fp32 (non-finite gradient)
        # fp16 only: the loss (~1e9) is scaled down before backward so gradients fit fp16's range.
        self._grad_scale = _FP16_GRAD_SCALE
        self._lbfgs: Optional[LBFGS] = None
        #: Why the last run() ended: 'steps' (all done), 'stalled' (config.stop_tol), 'non-finite'
        #: (the loss became NaN/Inf: the image is the last one with a finite loss), None (running or
        #: stopped by the caller).
        self.stop_reason: Optional[str] = None
        #: With ``config.on_stall='fp32'``: the step (1-based, all scales counted) from which a 16-bit
        #: run went on in fp32 because its loss had stalled; None if it never switched.
        self.fp32_from_step: Optional[int] = None
        self.prepare_seconds = time.perf_counter() - t0
        self.loop_seconds = 0.0

    # -- preparation ------------------------------------------------------------------------------
    def _style_targets(self, styles, sources, style_weights, weights) -> Optional[StyleTargets]:
        cfg = self.config
        if isinstance(styles, StyleTargets):
            check_targets_fit(styles, cfg, weights)
            if self.regions and len(styles) != len(self.regions):
                raise GafuError(f"{len(styles)} prepared styles for {len(self.regions)} regions")
            return styles
        if not sources or not cfg.style_layers:
            return None
        return StyleTargets(sources, cfg, style_weights=style_weights, weights=weights, device=self.device)

    def _criterion(self, where: Where):
        cfg = self.config
        with torch.no_grad():
            features = self.extractor if self._tiled is None else partial(self._tiled.features, self.extractor)
            content_feats = features(self.content, cfg.content_layers) if cfg.content_layers else {}
        grams: list = []
        self.styles: List[torch.Tensor] = []
        if self.targets is not None and self._tiled is not None:  # print sizes: style Grams in tiles too
            self.styles, grams = tiled.style_targets(
                self.targets, cfg, self.extractor, self._tiled.tile, content=self.content_rgb,
                masks=where.style_masks(len(self.targets), tuple(self.content.shape[-2:])), rect=self.tile is None)
        elif self.targets is not None:
            self.styles, grams = self.targets.grams(
                cfg.size, resize_mode=cfg.resize, content=self.content_rgb,
                content_masks=where.style_masks(len(self.targets), tuple(self.content.shape[-2:])),
                extractor=self.extractor,
            )
        weights = self.targets.weights if self.targets is not None else []
        return build_criterion(cfg, content_feats, grams, weights, where)

    @property
    def style_loss(self):
        """The style term of :attr:`criterion` (None when there is none)."""
        return self.criterion.term("style")

    @property
    def content_loss(self):
        """The content term of :attr:`criterion` (None when there is none)."""
        return self.criterion.term("content")

    @property
    def style_weight(self) -> float:
        """The style weight this run uses (``strength`` applied)."""
        return effective_style_weight(self.config)

    def add_term(self, name: str, term: torch.nn.Module) -> None:
        """Join another named loss term (``term(features, image) -> weighted scalar``) to the
        criterion; every iterate then reports it by name. Coarse-to-fine stages use the seed's
        terms only; added terms apply at full size."""
        for layer in getattr(term, "layers", ()):
            if layer not in self.extractor.requested:
                raise GafuError(f"loss term '{name}' reads layer '{layer}', which this run's extractor does not return")
        self.criterion.add(name, term)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """The optimized pixels as the user gets them: the content's chroma put back in luminance
        mode, then the content restored outside the mask/regions."""
        if self.config.preserve_color == "luminance":
            colours = self.content_rgb.to(x.dtype)
            if colours.shape[-2:] != x.shape[-2:]:
                colours = resize(colours, tuple(x.shape[-2:]), antialias=True)
            x = combine_luminance(x, colours)
        if self.blend_mask is not None:
            x = blend(x, self.content_rgb, self.blend_mask)
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
                {"label": r.label, "color": color_hex(r.color), "style": _describe(r.style), "share": round(r.share, 6)}
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

    # -- results ----------------------------------------------------------------------------------
    @property
    def image(self) -> torch.Tensor:
        """The current image, 1x3xHxW float32 in [0, 1], detached, on the CPU."""
        return self._finish(self._image.detach().clamp(0, 1)).clamp(0, 1).cpu().clone()

    def result(self) -> StyleResult:
        """The current image with the settings and timings that produced it."""
        return StyleResult(
            self.image,
            method="optimize",
            seconds=self.prepare_seconds + self.loop_seconds,
            settings=self.config.to_dict(),
            timings={"prepare": self.prepare_seconds, "loop": self.loop_seconds},
            info={
                "steps": self.steps_done,
                "stop_reason": self.stop_reason,
                "precision": self.precision,
                "fp32_fallback_steps": self.fp32_fallback_steps,
                "fp32_from_step": self.fp32_from_step,
                "shape": list(self.content.shape[-2:]),
            },
        )

    def stop_summary(self) -> str:
        """Why the last run ended, in words: "all N steps done", "stopped at step N: the loss fell less than ..."."""
        cfg, n = self.config, self.steps_done
        switched = (f"; {self.precision} until step {self.fp32_from_step - 1}, when its loss stalled, then fp32"
                    if self.fp32_from_step is not None else "")
        if self.stop_reason == "stalled":
            return (f"stopped at step {n}: the loss fell less than {cfg.stop_tol:.2%} over {cfg.stop_window} "
                    f"steps{switched}")
        if self.stop_reason == "steps":
            return f"all {n} steps done{switched}"
        if self.stop_reason == "non-finite":
            return f"the loss became non-finite at step {n}"
        return f"stopped by the caller after {n} steps"

    def loss_terms(self, image: torch.Tensor, *, precision: str = "fp32") -> Dict[str, torch.Tensor]:
        """Weighted loss terms of ``image`` by name, plus ``total`` (graph kept if it requires grad).

        ``precision='fp32'`` is the reference (the seed's computation); 'bf16'/'fp16' run VGG19 in
        16 bit (the fast path of :meth:`run`) against the same fp32 targets, with fp32 Gram
        matrices and losses.
        """
        if self._tiled is not None:
            return self._tiled.loss_terms(self, image, precision=precision)
        net = self.extractor if precision == "fp32" else self._lowp_extractor(precision)
        layers = self.criterion.layers
        feats = net(image, layers) if layers else {}
        return self.criterion(feats, image)

    def _lowp_extractor(self, precision: str) -> VGG19Features:
        return self.extractor.at_precision(dtype_of(precision))

    def evaluate(self, image: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Loss terms (floats) of ``image`` (default: the current image), without gradients, in fp32."""
        # clamp: a no-op for Adam (which clamps every step); L-BFGS keeps x unconstrained.
        x = self._image.detach().clamp(0.0, 1.0) if image is None else image.to(self.device)
        with torch.no_grad():
            return {k: float(v) for k, v in self.loss_terms(x).items()}

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, steps: Optional[int] = None, *, image_every: int = 0, tune_allocator: bool = False) -> Iterator[Iterate]:
        """Run ``steps`` optimizer steps (default: the config's), yielding an Iterate per step.

        ``image_every=N`` attaches the current image to every N-th iterate (0: only the last).
        The loop can be stopped at any time; :attr:`image` is always the latest image.

        With ``config.scales`` (coarse-to-fine), each fraction of the size first runs its
        ``scale_steps`` (the style targets computed once per size, the extractor shared), each
        result upsampled to start the next; ``steps`` then run at full size. With
        ``config.stop_tol`` the full-size stage stops once the loss stalls.

        ``tune_allocator=True`` keeps freed memory in the process heap during the loop (glibc):
        no page faults per step, a process-wide setting, so off unless the caller owns the process
        (the CLI turns it on). That is for a run of one size, untiled; where buffer sizes change
        (coarse stages, tiles on a moving grid) it instead returns every large freed block to the
        kernel at once (:func:`~gafu.optimize.precision.return_freed_memory`): there glibc's own
        dynamic threshold fragments the heap and the process outgrew its memory plan (measured by
        benchmarks/bench_print_memory.py: 2.81 GB for a 2048 px run planned into 2 GB, 1.72 GB with
        it; 6.5 GB at 4096 px in 4 GB). A tiled run does so even without ``tune_allocator`` (for the
        run only): the budget it was planned for is the point of tiling. It costs time (1.24x there).
        """
        cfg = self.config
        total = cfg.steps if steps is None else int(steps)
        sizes = [max(1, round(cfg.size * f)) for f in cfg.scales]
        stages = list(zip(sizes, cfg.scale_steps)) if self.steps_done == 0 else []
        planned = sum(n for _, n in stages) + total
        start = time.perf_counter()
        self.stop_reason = None
        self.fp32_from_step = None
        if not stages and self._tiled is None:
            allocator = keep_freed_memory(enabled=tune_allocator)
        else:  # a tiled run always: its memory plan is a promise (see the docstring)
            allocator = return_freed_memory(enabled=tune_allocator or self._tiled is not None)
        with allocator:
            done = 0
            if stages:
                done = yield from self._coarse_to_fine(stages, planned, start, image_every)
            if self.stop_reason != "non-finite":
                yield from self._steps(total, offset=done, planned=planned, start=start, image_every=image_every)

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
        styles = self.targets
        for size, n in stages:
            sub_cfg = cfg.replace(
                size=size, steps=n, scales=(), scale_steps=(),
                resize="antialias",  # downsampling the full-size tensors: filter them
                lr=cfg.scale_lr if cfg.scale_lr is not None else cfg.lr,
                stop_tol=0.0,
            )
            # Same style targets (computed once for this size), inputs and controls (mask, regions,
            # colour, style scale) at the coarse size.
            sub = StyleTransfer(
                self.content_rgb, styles, sub_cfg, weights=self._weights_path, device=self.device,
                init_image=current, mask=self._sources["mask"], extractor=self.extractor, **self._region,
                max_memory=tiled.stage_budget(full, self.max_memory), tile=self.tile,
            )
            sub.on_tile = self.on_tile
            for it in sub._steps(n, offset=done, planned=planned, start=start, image_every=0):
                want = image_every and it.step % image_every == 0
                image = resize(sub.image, full, antialias=True).clamp(0, 1) if want else None
                yield Iterate(it.step, planned, it.loss, it.terms, it.elapsed, image, it.shape)
            self.fp32_fallback_steps += sub.fp32_fallback_steps
            self.steps_done += sub.steps_done
            done += n
            current = sub._image.detach().clamp(0.0, 1.0)
            if sub.stop_reason == "non-finite":
                self.stop_reason = "non-finite"
                break
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
        # With on_stall='fp32' a stall of the 16-bit loss switches the rest of the run to fp32 instead
        # of stopping it: the 16-bit network's rounding can stall the loss above the fp32 optimum.
        precision = self.precision
        polish = min(cfg.polish_steps, total) if precision != "fp32" else 0
        end = total
        i = 0
        to_fp32 = False
        good = x.detach().clone()  # the latest image whose loss was finite
        while i < end:
            i += 1
            before = x.detach().clone()
            if precision != "fp32" and (to_fp32 or (polish and i > end - polish)):
                precision = "fp32"
                history.clear()
                if self._lbfgs is not None:
                    self._lbfgs.forget_point()  # its cached loss/gradient are 16-bit values
                if to_fp32:
                    self.fp32_from_step = offset + i
            terms = self._one_step(x, precision)
            self.steps_done += 1
            loss = float(terms["total"].detach())
            if not math.isfinite(loss):  # NaN/Inf: stop with the last image that had a finite loss
                with torch.no_grad():
                    x.copy_(good)
                self.stop_reason = "non-finite"
                self.loop_seconds = time.perf_counter() - start
                yield Iterate(offset + i, planned, loss, {k: float(v.detach()) for k, v in terms.items() if k != "total"},
                              self.loop_seconds, self.image, shape)
                return
            good = before
            history.append(loss)
            stop = _stalled(history, cfg.stop_tol, cfg.stop_window)
            if (self._fp32_on_stall and precision != "fp32" and self._lbfgs is not None
                    and self._lbfgs.last_failed):
                # An L-BFGS line search that found no decrease in 16 bit: the loss is at its rounding
                # noise, a stall (measured: the 20-step window otherwise waits ~11 evaluations a step).
                stop = True
            if stop and polish and precision != "fp32":
                end, stop = i + polish, False
            elif stop and self._fp32_on_stall and precision != "fp32":
                to_fp32, stop = True, False
            want_image = i == end or stop or (image_every and (offset + i) % image_every == 0)
            self.loop_seconds = time.perf_counter() - start
            if stop:
                self.stop_reason = "stalled"
            elif i == end:
                self.stop_reason = "steps"
            yield Iterate(
                step=offset + i,
                steps=planned,
                loss=loss,
                terms={k: float(v.detach()) for k, v in terms.items() if k != "total"},
                elapsed=self.loop_seconds,
                image=self.image if want_image else None,
                shape=shape,
            )
            if stop:
                break
        if total == 0:
            self.stop_reason = "steps"

    def _one_step(self, x: torch.Tensor, precision: str) -> Dict[str, torch.Tensor]:
        """One optimizer step on ``x``; returns the loss terms of the image before the update."""
        if self.config.optimizer == "lbfgs":
            return self._lbfgs_step(x, precision)  # x stays unconstrained; the loss sees clamp(x)
        self.optimizer.zero_grad(set_to_none=True)
        terms = self._loss_and_grad(x, precision=precision)
        self._project(x)
        self.optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        return terms

    def _loss_and_grad(
        self, x: torch.Tensor, clamp: bool = False, precision: Optional[str] = None
    ) -> Dict[str, torch.Tensor]:
        """Loss terms of ``x`` (of ``clamp(x, 0, 1)`` if ``clamp``, its gradient let through where it
        moves a pixel back inside: :func:`~gafu.optimize.optimizers.clamp_inward`) with ``x.grad`` set.

        Computed in ``precision`` (default: :attr:`precision`); a 16-bit step whose gradient is not
        finite is redone in fp32 (counted in ``fp32_fallback_steps``).
        """
        precision = self.precision if precision is None else precision
        if self._tiled is not None:
            return self._tiled.loss_and_grad(self, x, clamp=clamp, precision=precision)
        scale = self._grad_scale if precision == "fp16" else 1.0
        image = clamp_inward(x) if clamp else x
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

    def _project(self, x: torch.Tensor) -> None:
        """Luminance mode: keep the image grey (R = G = B = Y) by replacing each pixel's gradient
        with its mean over the channels (the gradient's projection onto grey images).

        Otherwise the optimizer turns the grey start colourful, the network sees the style's
        texture drawn in chroma, and the content's colours put back at the end erase it (measured:
        luma changed 5x less than the plain run's). Equal channel gradients keep Adam's and
        L-BFGS's updates equal per channel, so the image stays exactly grey.
        """
        if self._luma_only and x.grad is not None:
            x.grad.copy_(x.grad.mean(dim=1, keepdim=True).expand_as(x.grad))

    def _lbfgs_step(self, x: torch.Tensor, precision: str) -> Dict[str, torch.Tensor]:
        """One L-BFGS iteration on the unconstrained ``x``; the loss is that of ``clamp(x, 0, 1)``."""
        if self._lbfgs is None:
            history = history_for(x.numel(), self.config.lbfgs_history)
            self._lbfgs = LBFGS(x, lr=1.0, history=history)

        def closure():
            x.grad = None
            terms = self._loss_and_grad(x, clamp=True, precision=precision)
            self._project(x)
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
