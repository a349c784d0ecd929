"""Print sizes: the optimization of an image too large for memory, computed tile by tile.

A tiled run keeps the image, its gradient and the optimizer's state at full size (an 8192 px image
is ~0.5 GB per fp32 copy) and runs VGG19 over one tile at a time, so the network's working set (the
part that grows ~1.5-2.6 GB per megapixel) stays that of one tile. The loss stays the whole
image's seed loss, not a sum of per-tile losses:

- **Weights** (:class:`gafu.tiling.TilePlan`): tiles overlap; every location's loss is shared
  between the tiles covering it by the plan's normalised ramp weights (they sum to 1 at every
  pixel, and area-averaged to each layer's resolution still sum to 1: tile starts are multiples of
  16, the phase of VGG19's four pooling stages). A tile's loss near its edges, where zero padding
  makes its features differ from the whole image's, therefore counts little.
- **Style**: the whole image's Gram matrix of a layer is the sum of the tiles' weighted Grams, each
  scaled by its share of the locations (Grams are normalised per location), compared with the
  style's targets of the scale (:class:`~gafu.optimize.targets.StyleTargets`, computed once from
  the whole style image). Its gradient needs the whole image's Gram before any tile's backward
  pass, so each evaluation first runs the tiles forward without gradients (up to the deepest style
  layer) to sum the Grams, then forward and backward with them; the Gram pass's last tile keeps
  its graph and the gradient pass starts with it, so a pass runs one tile forward once, not twice
  (memory: still one tile's graph at a time). (The previous evaluation's Grams
  would save that pass, but measured: Adam's steps drift from the untiled run as the residual
  shrinks, and L-BFGS loses the Gram's part of the curvature.)
- **Content**: the content's features at each content layer are computed once per scale, tile by
  tile, blended into a full-size map (block5: 2/3 of an image's memory); each tile compares its
  features with its window of that map.
- **Seams**: the grid moves at every evaluation (offsets from a low-discrepancy sequence, multiples
  of 16) so no tile boundary stays put; :func:`seam_ratio` measures what is left.
- **Less repeated work**: where the memory plan chose the tile size, tiles are the rectangle of
  that many pixels whose grids compute the fewest pixels (:func:`tile_shape`: full-height strips
  where the short side fits), laid every ``size - overlap`` px so the count stays put as the
  grid moves (:func:`_stride_spans`). Measured over the first 8 grids, pixels computed per image
  pixel: 2048x1362 in 1056 px tiles 1.33 -> 1.22; 4096x2725 in 688 px 1.69 -> 1.51; 8192x5448 in
  912 px 1.47 -> 1.38. Tiles the caller sized (``tile=``) stay squares on evenly split grids.
- **Schedule** (:func:`print_schedule`): a run that needs tiles and starts from the content first
  optimizes the whole image at a size that fits, then doubles the size up to the requested one,
  with a few refining steps at each tiled scale (the coarse-to-fine stages of
  :class:`~gafu.optimize.StyleTransfer`).

:class:`~gafu.optimize.StyleTransfer` chooses this path itself (``max_memory=``, or the memory
available) and keeps its optimizers, precision policy and stop rule; this module supplies the loss
and gradient of one evaluation.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GafuError
from ..losses import StyleLoss, gram_matrix, mse
from ..tiling import TilePlan
from .memory import image_mb, largest_fitting, plan_memory
from .optimizers import clamp_inward

#: Tile starts and grid offsets are multiples of this: the phase of VGG19's four pooling stages
#: before block5, so a tile's pooled cells are the whole image's.
PHASE = 16
#: Overlap of neighbouring tiles (px): the band over which their loss weights ramp.
OVERLAP = 128
#: Refining steps at each tiled scale of the automatic schedule: this fraction of ``steps`` (at least
#: MIN_REFINE); the coarse whole-image stage runs all of ``steps``.
REFINE_FRACTION = 1 / 20
MIN_REFINE = 10

#: ``on_tile(tile, tiles, shape)``: called before each tile of an evaluation (1-based tile index).
TileCallback = Callable[[int, int, Tuple[int, int]], None]

Grams = Dict[str, torch.Tensor]
_GOLDEN = (math.sqrt(5) - 1) / 2, math.sqrt(2) - 1


def grid_offset(k: int, tile: Union[int, Tuple[int, int]], overlap: int = OVERLAP) -> Tuple[int, int]:
    """(dy, dx) grid offset of evaluation ``k`` for tiles of ``tile`` px (or ``(height, width)``):
    multiples of :data:`PHASE` spread evenly over one tile period (a low-discrepancy sequence;
    ``k = 0`` gives (0, 0))."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    ov = min(overlap, min(th, tw) // 4)
    out = []
    for side, g in ((th, _GOLDEN[1]), (tw, _GOLDEN[0])):
        period = max(PHASE, side - ov)
        out.append(int((k * g) % 1.0 * max(1, period // PHASE)) * PHASE)
    return out[0], out[1]


def _stride_spans(length: int, size: int, overlap: int, shift: int) -> List[Tuple[int, int]]:
    """(start, size) of tiles of ``size`` px every ``size - overlap`` px (rounded down to
    :data:`PHASE`), the first starting ``shift`` px before the image, clipped to it. Unlike an
    even split, the count does not jump as the grid moves: on average a pixel is computed about
    ``1 + overlap / stride`` times. A clipped tile at either end keeps at least half a tile
    (it then overlaps its neighbour more), so the pixels only it covers lie as far from its cut
    edge as an inner tile's do."""
    if length <= size:
        return [(0, length)]
    stride = max(PHASE, (size - overlap) // PHASE * PHASE)
    least = -(-max(size // 2, 2 * overlap) // PHASE) * PHASE  # a cut edge stays on the pooling phase
    spans = []
    start = -(shift % stride)
    while True:
        lo, hi = max(0, start), min(length, start + size)
        if lo == 0:
            hi = max(hi, least)
        if hi == length:
            lo = min(lo, -(-(length - least) // PHASE) * PHASE if length - least > 0 else 0)
        spans.append((lo, hi - lo))
        if start + size >= length:
            return spans
        start += stride


def _plan_at(shape: Tuple[int, int], hw: Tuple[int, int], overlap: int, offset: Tuple[int, int], *,
             stride: bool = True) -> TilePlan:
    """The plan of tiles ``hw`` at grid ``offset``: strided (:func:`_stride_spans`), or an even
    split of each axis shifted by the offset (:func:`gafu.tiling.tile_spans`; square tiles a
    caller sized)."""
    if not stride:
        return TilePlan.make(shape[0], shape[1], hw, overlap, multiple=PHASE, offset=offset)
    ov = min(overlap, min(hw) // 4)
    ys = _stride_spans(shape[0], hw[0], ov, offset[0])
    xs = _stride_spans(shape[1], hw[1], ov, offset[1])
    return TilePlan(shape[0], shape[1], tuple(ys), tuple(xs), ov)


def _grid(shape: Tuple[int, int], hw: Tuple[int, int], overlap: int, k: int, *,
          stride: bool = True) -> Tuple[TilePlan, Tuple[int, int]]:
    """The plan of evaluation ``k`` and its offset; an axis one tile covers is never shifted."""
    dy, dx = grid_offset(k, hw, overlap)
    offset = (0 if hw[0] >= shape[0] else dy, 0 if hw[1] >= shape[1] else dx)
    return _plan_at(shape, hw, overlap, offset, stride=stride), offset


def tile_shape(shape: Tuple[int, int], tile: int, overlap: int = OVERLAP, *, grids: int = 8) -> Tuple[int, int]:
    """(height, width) of the tiles for an image of ``shape`` whose memory plan allows ``tile`` x
    ``tile`` px (``min(tile, H) x min(tile, W)`` pixels, the count the estimate is made for):
    the rectangle of at most that many pixels whose moving grids (the first ``grids``) compute the
    fewest pixels in all. A 2048x1362 image in 1056 px of budget: 3-4 full-height strips 816 px
    wide (1.22x its pixels) instead of 6-9 squares (1.33x). Sides stay at least
    ``max(4 * overlap, tile // 2)`` (or the image's), so the ramps remain a small part of a tile."""
    h, w = shape
    side = max(PHASE, int(tile) // PHASE * PHASE)
    square = (min(side, h), min(side, w))
    pixels = square[0] * square[1]
    ov = min(overlap, side // 4)
    least = [min(n, max(4 * ov, side // 2) // PHASE * PHASE) for n in (h, w)]

    def cost(hw: Tuple[int, int]) -> Tuple[float, int]:
        area = tiles = 0
        for k in range(grids):
            plan, _ = _grid(shape, hw, ov, k)
            area += sum(n for _, n in plan.ys) * sum(n for _, n in plan.xs)
            tiles += len(plan)
        return area, tiles

    best, best_cost = square, cost(square)
    heights = set(range(least[0], min(h, pixels // max(1, least[1])) + 1, PHASE))
    if h * least[1] <= pixels:
        heights.add(h)
    for th in sorted(heights):
        tw = pixels // th
        tw = w if tw >= w else tw // PHASE * PHASE
        if th < least[0] or tw < least[1]:
            continue
        c = cost((th, tw))
        if c < best_cost:
            best, best_cost = (th, tw), c
    return best


def _factor(tile_shape: Tuple[int, int], feat_shape: Tuple[int, int]) -> int:
    """The downsampling (1, 2, 4, ...) from a tile's pixels to one of its feature maps."""
    th, tw = tile_shape
    for k in range(8):
        if th >> k == feat_shape[0] and tw >> k == feat_shape[1]:
            return 1 << k
    raise ValueError(f"feature map {feat_shape} is not a pooled {tile_shape} tile")


def _at_layer(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel weights (1x1xhxw) area-averaged to a layer ``factor`` times coarser (floor, as VGG pools)."""
    return weight if factor == 1 else F.avg_pool2d(weight, factor)


class TiledObjective:
    """The seed loss of a full-size image and its gradient, computed over tiles of ``tile`` px.

    Used by :class:`~gafu.optimize.StyleTransfer` when the image does not fit whole; it reads the
    run's criterion (style, content and tv terms; masks, regions and added terms are not tiled)
    and extractor. :attr:`offsets` records the grid of every evaluation (for :func:`seam_ratio`).
    """

    def __init__(self, shape: Tuple[int, int], tile: int, overlap: int = OVERLAP, *, rect: bool = False) -> None:
        if tile < 4 * PHASE:
            raise GafuError(f"tiles must be at least {4 * PHASE} px, got {tile}", argument="tile")
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile = int(tile) // PHASE * PHASE
        self.overlap = int(overlap)
        #: (height, width) of the tiles: squares of ``tile`` px, or with ``rect`` the rectangle of as
        #: many pixels that repeats the least work (:func:`tile_shape`).
        self.tile_shape = tile_shape(self.shape, self.tile, self.overlap) if rect else (self.tile, self.tile)
        self._stride = bool(rect)
        self.evaluations = 0
        self.offsets: List[Tuple[int, int]] = []
        self._gram: Optional[Grams] = None  # the whole image's Grams at the last evaluation
        self._kept = None  # (tile index, tile leaf, its input, its features): the Gram pass's last tile

    def plan(self, k: int = 0) -> TilePlan:
        """The tile plan of evaluation ``k`` (its grid shifted by :func:`grid_offset`)."""
        return _grid(self.shape, self.tile_shape, self.overlap, k, stride=self._stride)[0]

    def plans(self) -> List[TilePlan]:
        """The plans of the evaluations so far."""
        return [_plan_at(self.shape, self.tile_shape, self.overlap, o, stride=self._stride) for o in self.offsets]

    def tiles_per_pass(self) -> int:
        return len(self.plan(self.evaluations))

    # -- content targets --------------------------------------------------------------------------
    def features(self, net, image: torch.Tensor, layers: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Full-size feature maps of ``image`` at ``layers`` (fp32), computed tile by tile and blended."""
        plan = self.plan(0)
        total = plan.weight_sum()
        out: Dict[str, torch.Tensor] = {}
        h, w = self.shape
        with torch.no_grad():
            for t in plan:
                ys, xs = t.slices
                feats = net(image[:, :, ys, xs], layers)
                weight = _weight(plan, t, total, image)
                for name in layers:
                    f = feats[name].float()
                    s = _factor((t.height, t.width), tuple(f.shape[-2:]))
                    if name not in out:
                        out[name] = image.new_zeros((1, f.shape[1], h // s, w // s), dtype=torch.float32)
                    fh, fw = f.shape[-2:]
                    out[name][:, :, t.y // s: t.y // s + fh, t.x // s: t.x // s + fw] += f * _at_layer(weight, s)
        return out

    # -- loss and gradient ------------------------------------------------------------------------
    def loss_terms(self, st, image: torch.Tensor, *, precision: str = "fp32") -> Dict[str, torch.Tensor]:
        """The run's loss terms of ``image`` (tensors, no graph), over tiles."""
        terms, _ = self._evaluate(st, image.detach(), clamp=False, precision=precision, grad=False)
        return terms

    def loss_and_grad(self, st, x: torch.Tensor, *, clamp: bool, precision: str) -> Dict[str, torch.Tensor]:
        """Loss terms of ``x`` (of ``clamp(x, 0, 1)`` if ``clamp``: :func:`~.optimizers.clamp_inward`) with
        ``x.grad`` set to their gradient.

        A 16-bit evaluation whose gradient is not finite is redone in fp32 (counted in the run's
        ``fp32_fallback_steps``), as the untiled loop does.
        """
        kept = None
        if st.criterion.term("style") is not None:  # the whole image's Grams first, then the gradient
            (_, self._gram), kept = self._evaluate(st, x.detach(), clamp=clamp, precision=precision, grad=False,
                                                   grams_only=True, keep_last=True), self._kept
            self._kept = None
        terms, grams = self._evaluate(st, x, clamp=clamp, precision=precision, grad=True, kept=kept)
        del kept
        if precision != "fp32" and not bool(torch.isfinite(x.grad).all()):
            st.fp32_fallback_steps += 1
            terms, grams = self._evaluate(st, x, clamp=clamp, precision="fp32", grad=True)
        self._gram = grams
        return terms

    def _evaluate(self, st, x: torch.Tensor, *, clamp: bool, precision: str, grad: bool, grams_only: bool = False,
                  keep_last: bool = False, kept=None):
        """One pass over the tiles. The Gram pass (``grams_only``) with ``keep_last`` runs its last
        tile with its graph (all the run's layers) and leaves it in ``self._kept``; the gradient
        pass given it as ``kept`` starts with that tile's backward instead of running it again. One
        tile's graph is alive at a time either way, so the memory plan holds; a pass saves one
        tile's forward (a third of a pass in three strips)."""
        crit = st.criterion
        extra = [n for n in crit.names if n not in ("style", "content", "tv") and crit.term(n) is not None]
        if extra:
            raise GafuError(f"loss term(s) {', '.join(extra)} cannot be computed in tiles; use a size that fits whole")
        style, content, tv = crit.term("style"), crit.term("content"), crit.term("tv")
        if style is not None and not isinstance(style, StyleLoss):
            raise GafuError("masks and region maps are not tiled; use a size that fits whole", argument="size")
        net = st.extractor if precision == "fp32" else st._lowp_extractor(precision)
        targets = style.targets() if style is not None else {}
        ctargets = content.targets() if content is not None and not grams_only else {}
        layers = tuple(targets) if grams_only else crit.layers
        if grams_only:
            tv = None
        h, w = self.shape
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"image {tuple(x.shape[-2:])} is not the plan's {self.shape}")
        coef: Grams = {}
        if grad and style is not None:  # d(style loss)/d(Gram) at the last evaluation's Grams
            for name, target in targets.items():
                c = target.shape[-1]
                coef[name] = (2.0 * style.weight / len(targets) / (c * c)) * (self._gram[name] - target)
        plan = self.plan(self.evaluations)
        if not grams_only:  # the Gram pass of an exact evaluation runs on the same grid
            self.offsets.append(_grid(self.shape, self.tile_shape, self.overlap, self.evaluations,
                                      stride=self._stride)[1])
            self.evaluations += 1
        total = plan.weight_sum()
        grams: Grams = {}
        zero = x.new_zeros((), dtype=torch.float32)
        content_sum, tv_sum = zero.clone(), zero.clone()
        if grad:
            x.grad = torch.zeros_like(x)
        callback = getattr(st, "on_tile", None)
        tiles = list(plan)
        n = len(tiles)
        order = list(range(n))
        if kept is not None:  # the tile whose graph the Gram pass kept goes first (then it is freed)
            order.remove(kept[0])
            order.insert(0, kept[0])
        for done, i in enumerate(order):
            t = tiles[i]
            if callback is not None:
                callback(done + 1, n, self.shape)
            ys, xs = t.slices
            keep = keep_last and i == n - 1 and bool(layers)
            weight = _weight(plan, t, total, x)
            with torch.set_grad_enabled(grad or keep):
                if kept is not None and i == kept[0]:
                    _, xt, image, feats = kept
                    kept = None
                else:
                    src = x.detach()[:, :, ys, xs]
                    xt = src.clone().requires_grad_(True) if (grad or keep) else src
                    image = clamp_inward(xt) if clamp else xt
                    feats = net(image, crit.layers if keep else layers) if layers else {}
                if keep:
                    self._kept = (i, xt, image, feats)
                loss = zero
                for name in targets:
                    f = feats[name]
                    s = _factor((t.height, t.width), tuple(f.shape[-2:]))
                    m = _at_layer(weight, s)
                    fh, fw = f.shape[-2:]
                    # This tile's part of the whole image's Gram: its weighted Gram times its share of locations.
                    part = gram_matrix(f * m.sqrt().to(f.dtype)) * (fh * fw / ((h // s) * (w // s)))
                    grams[name] = grams[name] + part.detach() if name in grams else part.detach()
                    if grad:
                        loss = loss + (coef[name] * part).sum()
                for name, target in ctargets.items():
                    f = feats[name].float()
                    s = _factor((t.height, t.width), tuple(f.shape[-2:]))
                    fh, fw = f.shape[-2:]
                    window = target[:, :, t.y // s: t.y // s + fh, t.x // s: t.x // s + fw]
                    part = (_at_layer(weight, s) * (f - window).pow(2)).sum() / (f.shape[1] * (h // s) * (w // s))
                    part = content.weight / len(ctargets) * part
                    content_sum = content_sum + part.detach()
                    loss = loss + part
                if tv is not None:
                    part = tv.weight * _weighted_tv(image, weight)
                    tv_sum = tv_sum + part.detach()
                    loss = loss + part
                if grad and loss.requires_grad:
                    loss.backward()
            if grad:
                x.grad[:, :, ys, xs] += xt.grad
        style_sum = zero
        if style is not None:
            style_sum = style.weight * torch.stack([mse(grams[k], targets[k]) for k in targets]).sum() / len(targets)
        values = {"style": style_sum, "content": content_sum, "tv": tv_sum}
        terms = {name: values.get(name, zero) for name in crit.names}
        terms["total"] = style_sum + content_sum + tv_sum
        return terms, grams


def _weight(plan: TilePlan, t, total: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    w = torch.from_numpy(plan.normalized_weight(t, total).astype(np.float32))
    return w.to(like.device)[None, None]


def _weighted_tv(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Total variation with each neighbour difference weighted by the weight of its second pixel."""
    dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs() * weight[:, :, 1:, :]
    dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs() * weight[:, :, :, 1:]
    return dy.sum() + dx.sum()


# -- choosing the path ---------------------------------------------------------------------------
def choose(shape: Tuple[int, int], cfg, *, precision: str, regions: int = 0, masked: bool = False,
           max_memory: Optional[float] = None, tile: Optional[int] = None, check: bool = True,
           schedule: bool = True):
    """(TiledObjective or None, config) for a run at ``shape``: None when it fits whole in the
    budget (``max_memory`` MB, default the memory available now); with ``schedule`` (a run
    starting from the content or noise, without ``scales`` of its own) the config gets
    :func:`print_schedule`. GafuError in one line, before any work, when nothing fits.
    ``check=False`` skips the decision (no tiles unless ``tile`` is given)."""
    if not check and tile is None:
        return None, cfg
    side = plan_memory(shape, precision=precision, regions=regions, masked=masked, optimizer=cfg.optimizer,
                       lbfgs_history=cfg.lbfgs_history, budget_mb=max_memory, tile=tile)
    if side is None:
        return None, cfg
    # The budget's own tiles are shaped freely (same pixels, least overlap); tiles the caller sized stay square.
    objective = TiledObjective(shape, side, min(OVERLAP, side // 4), rect=tile is None)
    if schedule and not cfg.scales:
        cfg = print_schedule(cfg, shape, stage_budget(shape, max_memory), precision=precision, tile=tile)
    return objective, cfg


def stage_budget(shape: Tuple[int, int], max_memory: Optional[float]) -> Optional[float]:
    """The budget left to a coarse stage while the full-size run holds its image, content and
    content features (about 3 images): None (the memory available then) without an explicit one."""
    if max_memory is None:
        return None
    return max(0.0, max_memory - 3.0 * image_mb(*shape))


def print_schedule(cfg, shape: Tuple[int, int], budget_mb: Optional[float], *, precision: str,
                   tile: Optional[int] = None):
    """Coarse-to-fine stages for a print: the size halved until the whole image fits (in
    ``budget_mb``, default the memory available; under ``tile`` px when tiles are forced), which
    runs ``cfg.steps``; then each doubled size, the requested one last, runs
    ``max(MIN_REFINE, steps * REFINE_FRACTION)`` steps, at most ``steps`` (tiled where it does not fit whole)."""
    from .memory import available_mb

    h, w = shape
    budget = available_mb() if budget_mb is None else budget_mb
    fits = largest_fitting(h, w, budget, precision=precision) if budget is not None else max(h, w)
    if tile is not None:
        fits = min(fits, tile)
    full = max(h, w)
    sides = []
    side = full
    while side > fits and side // 2 >= 4 * PHASE:
        side //= 2
        sides.append(side)
    if not sides:
        return cfg
    refine = max(1, min(cfg.steps, max(MIN_REFINE, int(round(cfg.steps * REFINE_FRACTION)))))
    scales = tuple(s / full for s in reversed(sides))
    steps = (cfg.steps,) + (refine,) * (len(scales) - 1)
    return cfg.replace(scales=scales, scale_steps=steps, steps=refine)


# -- measuring seams -----------------------------------------------------------------------------
def boundaries(plans: Iterable[TilePlan]) -> Tuple[Set[int], Set[int]]:
    """(rows, columns) where some tile of ``plans`` starts or ends inside the image."""
    rows: Set[int] = set()
    cols: Set[int] = set()
    for plan in plans:
        for spans, out, length in ((plan.ys, rows, plan.height), (plan.xs, cols, plan.width)):
            for start, size in spans:
                for edge in (start, start + size):
                    if 0 < edge < length:
                        out.add(edge)
    return rows, cols


def seam_ratio(image, rows: Iterable[int], cols: Iterable[int], band: int = 1) -> float:
    """Mean absolute neighbour difference across the given rows/columns (within ``band`` px of
    them) over the same statistic elsewhere; ~1 where boundaries leave no trace.

    ``image``: 1x3xHxW tensor or HxW(xC) array. A difference at column ``c`` is ``I[:, c] - I[:, c-1]``.
    """
    arr = image.detach().cpu().numpy()[0].transpose(1, 2, 0) if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    dx = np.abs(np.diff(arr, axis=1)).mean(axis=(0, 2))  # dx[c - 1]: across column c
    dy = np.abs(np.diff(arr, axis=0)).mean(axis=(1, 2))

    def split(d: np.ndarray, edges: Iterable[int]):
        near = np.zeros(d.shape[0], dtype=bool)
        for e in edges:
            near[max(0, e - 1 - band): min(d.shape[0], e + band)] = True
        return d[near], d[~near]

    bx, ox = split(dx, cols)
    by, oy = split(dy, rows)
    on = np.concatenate([bx, by])
    off = np.concatenate([ox, oy])
    if on.size == 0 or off.size == 0:
        raise ValueError("no boundary (or nothing but boundaries) to compare")
    return float(on.mean() / max(off.mean(), 1e-12))


# -- progress ------------------------------------------------------------------------------------
def stage_shapes(cfg, shape: Tuple[int, int]) -> List[Tuple[Tuple[int, int], int]]:
    """((H, W), steps) of each stage of a run at ``shape``: the coarse scales, then the full size."""
    h, w = shape
    out = []
    for f, n in zip(cfg.scales, cfg.scale_steps):
        side = max(1, round(cfg.size * f))
        k = side / max(h, w)
        out.append(((max(1, round(h * k)), max(1, round(w * k))), int(n)))
    out.append(((h, w), int(cfg.steps)))
    return out


class Eta:
    """Seconds left in a coarse-to-fine run, from the measured seconds per megapixel of the steps
    done (a step's work grows with its pixels; tiled scales get their own rate once measured)."""

    def __init__(self, stages: Sequence[Tuple[Tuple[int, int], int]]) -> None:
        self.stages = [(tuple(s), int(n)) for s, n in stages]
        self._rates: Dict[bool, float] = {}
        self._last = 0.0

    @staticmethod
    def _mp(shape) -> float:
        return shape[0] * shape[1] / 1e6

    def update(self, step: int, elapsed: float, shape: Tuple[int, int], tiled: bool) -> float:
        """Record step ``step`` (1-based, all stages) done at ``elapsed`` s at ``shape``; return the
        seconds left. Stages larger than the current one use the slowest rate measured so far."""
        rate = (elapsed - self._last) / max(self._mp(shape), 1e-9)
        self._last = elapsed
        old = self._rates.get(tiled)
        self._rates[tiled] = rate if old is None else 0.7 * old + 0.3 * rate
        current, slowest = self._rates[tiled], max(self._rates.values())
        left, seen = 0.0, 0
        for s, n in self.stages:
            todo = max(0, min(n, seen + n - step))
            seen += n
            left += todo * self._mp(s) * (slowest if self._mp(s) > self._mp(shape) else current)
        return left


def tiled_grams(net, image: torch.Tensor, layers: Sequence[str], tile: int, *, rect: bool = False) -> Grams:
    """Gram matrices of a whole (style) image at ``layers``, summed over tiles of ``tile`` px (the
    same weights and shares as the loss), so a style image at print size never runs whole."""
    obj = TiledObjective(tuple(image.shape[-2:]), tile, min(OVERLAP, tile // 4), rect=rect)
    plan = obj.plan(0)
    total = plan.weight_sum()
    h, w = obj.shape
    grams: Grams = {}
    with torch.no_grad():
        for t in plan:
            ys, xs = t.slices
            feats = net(image[:, :, ys, xs], layers)
            weight = _weight(plan, t, total, image)
            for name in layers:
                f = feats[name]
                s = _factor((t.height, t.width), tuple(f.shape[-2:]))
                fh, fw = f.shape[-2:]
                part = gram_matrix(f * _at_layer(weight, s).sqrt().to(f.dtype)) * (fh * fw / ((h // s) * (w // s)))
                grams[name] = grams[name] + part if name in grams else part
    return grams


def style_targets(targets, cfg, net, tile: int, *, content: torch.Tensor, masks, rect: bool = False) -> Tuple[List[torch.Tensor], List[Grams]]:
    """(prepared style images, their Grams) as :meth:`StyleTargets.grams` gives them for a run at
    ``cfg.size``, with each style image's Grams computed in tiles (from the whole image)."""
    from ..vgg import check_min_side
    from .targets import prepare_style

    prepared = [prepare_style(s, content, cfg.preserve_color, content_mask=m)
                for s, m in zip(targets.resized(cfg.size, resize_mode=cfg.resize), masks)]
    for i, s in enumerate(prepared):
        check_min_side(s, cfg.style_layers, f"style image {i + 1} at style scale {cfg.style_scale:g}")
    return prepared, [tiled_grams(net, s, cfg.style_layers, tile, rect=rect) for s in prepared]
