"""The demo as a workflow: stylize bundled example pairs with both engines and return the results.

For each (photo, painting) pair the fast feed-forward network runs first (seconds, all pairs), then
a short optimization (the preset's loss and optimizer, sized to run in well under a minute on a
2-core CPU: coarse-to-fine at 256 px with a step budget and a time limit). ``full=True`` runs the
preset unchanged instead. Nothing here prints or writes files: :mod:`gafu.demo_page` renders the
results as a page, ``gafu demo`` prints progress from the callback.

    run = run_demo(demo_config("fast"), callback=print)
    run.pairs[0].optimized.image  # PIL
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

from ..config import StyleConfig, get_preset
from ..errors import GafuError

if TYPE_CHECKING:  # torch is imported on first use, not with the CLI
    from ..result import StyleResult

#: Long side of the quick demo's optimization (pixels).
QUICK_SIZE = 256
#: Coarse-to-fine plan of the quick demo: ``QUICK_SCALE_STEPS`` steps at ``QUICK_SCALES`` x size,
#: then ``QUICK_STEPS`` at full size. Looked at on chelsea + Starry Night and rocket + Great Wave
#: (2 cores, bf16, about 0.2 s per step at 256 px, 0.06 s at 128 px): a short half-size start gives
#: larger, cleaner strokes than the same time spent at 256 px only; 50 half-size steps (instead of
#: 20) washed the rocket out, 100 steps at 256 px only left it grainy.
QUICK_SCALES = (0.5,)
QUICK_SCALE_STEPS = (20,)
QUICK_STEPS = 80
#: The coarse stage is dropped when it would be smaller than this (long side, pixels).
MIN_COARSE_SIZE = 96
#: Seconds one quick optimization may take (preparation included) before it stops with the image
#: it has: keeps the demo near a minute on a loaded machine. ``full`` runs have no limit.
QUICK_TIME_LIMIT = 40.0

#: Why an optimization ended (``StyleResult.info['stop_reason']``).
STOP_REASONS = ("steps", "converged", "time limit")


def data_path(name: str) -> Path:
    """Path of a file bundled in ``gafu/data`` (example images, CREDITS.md)."""
    from importlib.resources import files

    return Path(str(files("gafu") / "data" / name))


@dataclass(frozen=True)
class DemoPair:
    """A photo and a painting; names are files in ``gafu/data`` unless given as paths."""

    content: Union[str, os.PathLike]
    style: Union[str, os.PathLike]

    def _path(self, x) -> Path:
        p = Path(x)
        return p if (p.is_absolute() or len(p.parts) > 1) else data_path(str(x))

    @property
    def content_path(self) -> Path:
        return self._path(self.content)

    @property
    def style_path(self) -> Path:
        return self._path(self.style)

    @property
    def name(self) -> str:
        """``<content stem>_x_<style stem>``: the stem of this pair's output files."""
        return f"{self.content_path.stem}_x_{self.style_path.stem}"

    @property
    def title(self) -> str:
        return f"{self.content_path.stem} x {self.style_path.stem}"


#: The demo's pairs (see gafu/data/CREDITS.md).
PAIRS = (
    DemoPair("chelsea.jpg", "vangogh_starry_night.jpg"),
    DemoPair("rocket.jpg", "hokusai_great_wave.jpg"),
)


def demo_config(
    preset: str = "fast", *, full: bool = False, size: Optional[int] = None, steps: Optional[int] = None
) -> StyleConfig:
    """The optimization settings of the demo.

    ``full=False`` (quick): the preset at ``size`` (default 256 px), ``QUICK_SCALE_STEPS`` steps at
    half size then ``steps`` (default ``QUICK_STEPS``) at full size; the half-size stage is dropped
    when it would be under ``MIN_COARSE_SIZE`` px or the preset has its own ``scales``.
    ``full=True``: the preset unchanged, except ``size``/``steps`` when given.
    """
    cfg = get_preset(preset)
    if full:
        changes: Dict[str, Any] = {}
        if size is not None:
            changes["size"] = size
        if steps is not None:
            changes["steps"] = steps
        return cfg.replace(**changes) if changes else cfg
    size = QUICK_SIZE if size is None else size
    changes = {"size": size, "steps": QUICK_STEPS if steps is None else steps}
    if not cfg.scales and all(size * f >= MIN_COARSE_SIZE for f in QUICK_SCALES):
        changes.update(scales=QUICK_SCALES, scale_steps=QUICK_SCALE_STEPS)
    return cfg.replace(**changes)


def plan_text(cfg: StyleConfig) -> str:
    """One line describing an optimization plan, e.g. '50 steps at 128 px + 60 at 256 px'."""
    parts = [f"{n} steps at {max(1, round(cfg.size * f))} px" for f, n in zip(cfg.scales, cfg.scale_steps)]
    parts.append(f"{cfg.steps} steps at {cfg.size} px" if not parts else f"{cfg.steps} at {cfg.size} px")
    return " + ".join(parts)


@dataclass
class PairResult:
    """What the demo made of one pair. ``optimized`` is None until its optimization ran."""

    pair: DemoPair
    fast: StyleResult
    optimized: Optional[StyleResult] = None
    history: Dict[str, List[float]] = field(default_factory=dict)  # gafu.report.loss_history columns


@dataclass
class DemoRun:
    """The whole demo: settings, one :class:`PairResult` per pair, wall time."""

    config: StyleConfig
    pairs: List[PairResult]
    device: str
    time_limit: Optional[float]
    full: bool
    seconds: float = 0.0
    fast_settings: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoProgress:
    """One report to the callback of :func:`run_demo`.

    ``stage``: 'fast' (a fast result is ready: ``result``), 'start' (an optimization begins),
    'step' (one optimizer step: ``iterate``), 'optimized' (an optimization ended: ``result``).
    ``item`` is the :class:`PairResult` so far.
    """

    stage: str
    index: int
    item: PairResult
    result: Optional[StyleResult] = None
    iterate: Any = None


Callback = Callable[[DemoProgress], Any]


def run_fast(pair: DemoPair, *, device: str = "cpu", max_size: Optional[int] = None) -> StyleResult:
    """The pair through the fast (Magenta arbitrary-style) network, at the photo's own size."""
    import numpy as np

    from ..fast import FastStylizer
    from ..result import StyleResult

    t0 = time.perf_counter()
    stylizer = FastStylizer(style=pair.style_path, max_size=max_size, device=device)
    out = stylizer.run(pair.content_path)
    seconds = time.perf_counter() - t0
    arr = np.asarray(out.image, dtype=np.float32) / 255.0
    return StyleResult.from_array(
        arr, pil=out.image, method="fast", seconds=seconds, settings=stylizer.settings(),
        timings={"network": out.seconds}, info={"tiles": out.tiles},
    )


def stages(config: StyleConfig) -> List[StyleConfig]:
    """The configs of a coarse-to-fine plan, coarsest first, as :class:`~gafu.optimize.StyleTransfer`
    runs them (each coarse stage at ``scales[i] x size`` with ``scale_steps[i]`` steps, antialiased
    resizing, no early stop), then ``config`` itself without ``scales``."""
    out = [
        config.replace(size=max(1, round(config.size * f)), steps=n, scales=(), scale_steps=(), resize="antialias",
                       lr=config.scale_lr if config.scale_lr is not None else config.lr, stop_tol=0.0)
        for f, n in zip(config.scales, config.scale_steps)
    ]
    return out + [config.replace(scales=(), scale_steps=())]


#: Share of the time limit the coarse stages may use together (they cost ~1/4 per step at half
#: size; the rest of the time goes to full size, so a slow machine still ends at full resolution).
COARSE_TIME_SHARE = 0.3


def run_optimization(
    pair: DemoPair,
    config: StyleConfig,
    *,
    device: str = "cpu",
    weights: Union[str, os.PathLike, None] = None,
    time_limit: Optional[float] = None,
    on_step: Optional[Callable[[Any], Any]] = None,
):
    """Optimize one pair with ``config``; with ``time_limit`` (seconds, preparation included) stop
    early with the image reached. Returns ``(StyleResult, loss_history)``; the result's ``info`` has
    steps, planned_steps, stop_reason ('steps', 'converged', 'time limit'), final_loss, precision.

    Coarse-to-fine plans (``config.scales``) run stage by stage here, as StyleTransfer would run
    them, so that under a time limit the coarse stages stop after ``COARSE_TIME_SHARE`` of it and
    the rest of the time goes to the full size.
    """
    from dataclasses import replace

    from ..optimize import StyleTransfer
    from ..report import loss_history
    from ..result import StyleResult

    if time_limit is not None and not time_limit > 0:
        raise GafuError(f"time_limit must be a number of seconds > 0 (or None), got {time_limit!r}")
    t0 = time.perf_counter()
    plan = stages(config)
    planned = sum(c.steps for c in plan)
    iterates: List[Any] = []
    image = None
    reason = "steps"
    prepare = 0.0
    done = 0
    st = None
    for k, cfg in enumerate(plan):
        final_stage = k == len(plan) - 1
        deadline = None
        if time_limit is not None:
            deadline = t0 + (time_limit if final_stage else COARSE_TIME_SHARE * time_limit)
        t_prep = time.perf_counter()
        st = StyleTransfer(pair.content_path, [pair.style_path], cfg, weights=weights, device=device,
                           init_image=image)
        prepare += time.perf_counter() - t_prep
        n = 0
        # image_every=1: the latest image is at hand wherever the time limit stops the loop (a
        # small copy per step).
        for it in st.run(image_every=1):
            n += 1
            it = replace(it, step=done + it.step, steps=planned, elapsed=time.perf_counter() - t0)
            iterates.append(it)
            image = it.image
            if on_step is not None:
                on_step(it)
            if deadline is not None and n < cfg.steps and time.perf_counter() >= deadline:
                reason = "time limit"  # also when only a coarse stage was cut short
                break
        else:
            if final_stage and n < cfg.steps and reason == "steps":
                reason = "converged"
        done += n
    tensor = image if image is not None else st.image
    if tuple(tensor.shape[-2:]) != tuple(st.content.shape[-2:]):  # no full-size step ran (steps=0)
        from ..image import resize

        tensor = resize(tensor, tuple(st.content.shape[-2:]), antialias=True).clamp(0, 1)
    final = st.evaluate(tensor)
    seconds = time.perf_counter() - t0
    history = loss_history([_without_image(it) for it in iterates])
    result = StyleResult(
        tensor.detach().cpu().contiguous(), method="optimize", seconds=seconds, settings=config.to_dict(),
        timings={"prepare": prepare, "loop": seconds - prepare},
        info={"steps": done, "planned_steps": planned, "stop_reason": reason, "final_loss": final,
              "precision": st.precision},
    )
    return result, history


def _without_image(it):
    return {"step": it.step, "elapsed": it.elapsed, "loss": it.loss, "terms": it.terms}


def run_demo(
    config: Optional[StyleConfig] = None,
    pairs: Sequence[DemoPair] = PAIRS,
    *,
    device: str = "cpu",
    time_limit: Optional[float] = None,
    weights: Union[str, os.PathLike, None] = None,
    callback: Optional[Callback] = None,
    full: bool = False,
) -> DemoRun:
    """Run the demo: every pair through the fast network first, then each optimization.

    Args:
        config: optimization settings (default: ``demo_config()``, the quick plan).
        pairs: the (photo, painting) pairs (default: the bundled ones).
        time_limit: seconds each optimization may take (None: no limit).
        callback: called with a :class:`DemoProgress` as results come in.
        full: only recorded (the page says which kind of run it shows).
    """
    cfg = config if config is not None else demo_config()
    pairs = list(pairs)
    if not pairs:
        raise GafuError("the demo needs at least one (content, style) pair")
    for p in pairs:  # every input is checked before any model loads
        for path in (p.content_path, p.style_path):
            if not path.is_file():
                raise GafuError(f"demo image not found: {path}")
    t0 = time.perf_counter()
    run = DemoRun(config=cfg, pairs=[], device=str(device), time_limit=time_limit, full=full)
    for i, pair in enumerate(pairs):
        fast = run_fast(pair, device=device)
        item = PairResult(pair=pair, fast=fast)
        run.pairs.append(item)
        run.fast_settings = fast.settings
        if callback is not None:
            callback(DemoProgress("fast", i, item, result=fast))
    for i, item in enumerate(run.pairs):
        if callback is not None:
            callback(DemoProgress("start", i, item))

        def on_step(it, i=i, item=item):
            if callback is not None:
                callback(DemoProgress("step", i, item, iterate=it))

        item.optimized, item.history = run_optimization(
            item.pair, cfg, device=device, weights=weights, time_limit=time_limit, on_step=on_step
        )
        if callback is not None:
            callback(DemoProgress("optimized", i, item, result=item.optimized))
    run.seconds = time.perf_counter() - t0
    return run
