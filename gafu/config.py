"""Settings of optimization-based style transfer, in one place.

:class:`StyleConfig` is a frozen dataclass whose defaults are the seed preset: the TensorFlow
neural-style-transfer tutorial as run in the seed document. A preset is just another instance;
the CLI reads its defaults from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from .checks import check_strength
from .errors import GafuError, unknown_name

SEED_CONTENT_LAYERS: Tuple[str, ...] = ("block5_conv2",)
SEED_STYLE_LAYERS: Tuple[str, ...] = (
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
)


def _setting(default, help: str):
    """A config field with its one-line help (read by the CLI: defaults and help live here only)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StyleConfig:
    """Everything that determines an optimization run. Defaults = the seed (TF tutorial)."""

    # Images -------------------------------------------------------------------------------------
    size: int = _setting(512, "longest side of the content (and style) image, pixels")
    resize: str = "seed"  # 'seed': float32-truncated shape, bilinear, no antialias; 'antialias'
    jpeg_decoder: str = _setting(
        "tf", "how JPEG files are decoded: 'tf' = exactly as tf.io.decode_image (the seed: libjpeg-turbo's fast IDCT, "
        "no EXIF rotation or ICC); 'pillow' = accurate IDCT, EXIF orientation and ICC applied"
    )

    # Network ------------------------------------------------------------------------------------
    content_layers: Tuple[str, ...] = _setting(SEED_CONTENT_LAYERS, "VGG19 layers of the content loss (Keras or classic names)")
    style_layers: Tuple[str, ...] = _setting(SEED_STYLE_LAYERS, "VGG19 layers of the style loss (Keras or classic names)")
    pooling: str = "max"  # VGG19's own pooling; Gatys et al. suggest 'avg'

    # Loss weights -------------------------------------------------------------------------------
    style_weight: float = _setting(1e-2, "style loss weight")
    content_weight: float = _setting(1e4, "content loss weight")
    tv_weight: float = _setting(0.0, "total variation weight (the tutorial's TV run: 30)")

    # Optimizer: Adam with Keras/TF epsilon semantics (gafu.optim.KerasAdam) ---------------------
    lr: float = _setting(0.02, "Adam learning rate (with optimizer adam)")
    beta1: float = 0.99
    beta2: float = 0.999
    eps: float = 0.1

    # Schedule -----------------------------------------------------------------------------------
    steps: int = _setting(1000, "optimizer steps (the tutorial: 10 epochs x 100); may stop early with stop_tol")
    steps_per_epoch: int = 100  # only groups steps for reporting (one image per epoch in the seed)

    # Start ------------------------------------------------------------------------------------
    init: str = _setting("content", "start image: 'content' (seed) or 'noise'")
    seed: Optional[int] = _setting(0, "random seed (noise init, nondeterministic kernels)")

    # Speed (gafu.speed): how the minimization runs; the loss minimized stays the one above -------
    precision: str = _setting(
        "fp32",
        "VGG19 activations in 16 bit (channels_last), image/targets/Gram/loss in fp32; bf16 needs "
        "AVX512-BF16/AMX on CPU to be fast, fp16 is for CUDA; auto: bf16 where the hardware has it, else fp32",
    )  # 'fp32' (seed) | 'bf16' | 'fp16' | 'auto': VGG19 activations in 16 bit, channels_last;
    #                          image, targets, Gram, loss, optimizer state stay fp32. 'auto': bf16 where native
    #                          (AVX512-BF16/AMX CPUs, CUDA), fp16 on CUDA without bf16, else fp32
    polish_steps: int = 0  # with bf16/fp16: the last steps run in fp32, so the image fits the fp32 network
    optimizer: str = _setting("adam", "Adam with Keras semantics or L-BFGS")  # 'adam': KerasAdam with lr/beta1/beta2/eps above (seed) | 'lbfgs' (gafu.lbfgs)
    lbfgs_history: int = 10  # L-BFGS curvature pairs (2 image-sized fp32 tensors each; capped at 256 MB)
    scales: Tuple[float, ...] = _setting((), "coarse-to-fine: fractions of size optimized first, e.g. 0.25,0.5")  # coarse-to-fine: fractions of `size` optimized first, e.g. (0.25, 0.5); () = seed
    scale_steps: Tuple[int, ...] = _setting((), "steps at each of scales (same count)")  # steps at each of `scales` (same length)
    scale_lr: Optional[float] = None  # Adam learning rate at the coarse scales (None: lr)
    stop_tol: float = _setting(0.0, "stop once the loss falls by less than this fraction over stop_window steps (0 = never)")  # stop early when the loss fell by less than this fraction over the last
    stop_window: int = 20  # `stop_window` steps (stop_tol 0 = never stop early, as the seed)
    on_stall: str = _setting(
        "stop", "what a 16-bit run does when its loss stalls: 'stop', or 'fp32': go on in fp32 and stop only "
        "when the fp32 loss stalls too (a 16-bit stall can be the rounding's floor, not the optimum)")

    # Free-form label shown in summaries.
    name: str = field(default="custom", compare=False)

    # Controls (gafu.controls) -------------------------------------------------------------------
    # 'none'; 'luminance': style transfer on luminance only, colours from the content (Gatys et al.
    # 2016); 'histogram': the style's RGB mean/covariance matched to the content's before transfer.
    preserve_color: str = _setting("none", "'luminance': transfer on luminance only, colours from the content (Gatys et al. 2016); 'histogram': match the style's colour mean/covariance to the content first")
    style_scale: float = 1.0  # style images seen at style_scale x size (0.5..2): 2 = strokes twice as large
    strength: Optional[float] = None  # 0..1: style_weight x 10**(4*(strength-0.5)); None = style_weight as is
    feather: float = 0.0  # soft mask/region edges: Gaussian blur, sigma = feather/2 pixels (0 = hard)

    def __post_init__(self) -> None:
        _check_controls(self)
        _check_int("size", self.size, 1)
        _check_int("steps", self.steps, 0)
        _check_int("steps_per_epoch", self.steps_per_epoch, 1)
        for k in ("style_weight", "content_weight", "tv_weight"):
            _check_float(k, getattr(self, k), allow_zero=True)
        _check_float("lr", self.lr, allow_zero=False)
        _check_float("eps", self.eps, allow_zero=True)
        for k in ("beta1", "beta2"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise GafuError(f"{k} must be in [0, 1), got {v}")
        if self.jpeg_decoder not in ("tf", "pillow"):
            raise unknown_name("JPEG decoder", str(self.jpeg_decoder), ["tf", "pillow"])
        if self.resize not in ("seed", "antialias"):
            raise unknown_name("resize mode", str(self.resize), ["seed", "antialias"])
        if self.pooling not in ("max", "avg"):
            raise unknown_name("pooling", str(self.pooling), ["max", "avg"])
        if self.init not in ("content", "noise"):
            raise unknown_name("init", str(self.init), ["content", "noise"])
        if self.precision not in ("fp32", "bf16", "fp16", "auto"):
            raise unknown_name("precision", str(self.precision), ["fp32", "bf16", "fp16", "auto"])
        if self.optimizer not in ("adam", "lbfgs"):
            raise unknown_name("optimizer", str(self.optimizer), ["adam", "lbfgs"])
        if self.on_stall not in ("stop", "fp32"):
            raise unknown_name("on_stall", str(self.on_stall), ["stop", "fp32"])
        object.__setattr__(self, "scales", tuple(self.scales))
        object.__setattr__(self, "scale_steps", tuple(self.scale_steps))
        if len(self.scales) != len(self.scale_steps):
            raise GafuError(f"scales has {len(self.scales)} sizes but scale_steps has {len(self.scale_steps)} step counts")
        for v in self.scales:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise GafuError(f"scales are fractions of size between 0 and 1 (e.g. 0.5), got {v!r}")
        for v in self.scale_steps:
            _check_int("each of scale_steps", v, 0)
        if self.scale_lr is not None:
            _check_float("scale_lr", self.scale_lr, allow_zero=False)
        _check_float("stop_tol", self.stop_tol, allow_zero=True)
        _check_int("stop_window", self.stop_window, 1)
        _check_int("lbfgs_history", self.lbfgs_history, 1)
        _check_int("polish_steps", self.polish_steps, 0)
        if not self.content_layers and not self.style_layers:
            raise GafuError("at least one content or style layer is needed")
        # Normalise lists to tuples so configs hash and compare.
        object.__setattr__(self, "content_layers", tuple(self.content_layers))
        object.__setattr__(self, "style_layers", tuple(self.style_layers))

    def replace(self, **changes) -> "StyleConfig":
        """A copy with some fields changed (unknown names raise GafuError with did-you-mean)."""
        names = [f.name for f in dataclasses.fields(self)]
        for k in changes:
            if k not in names:
                raise unknown_name("setting", k, names)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GafuError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _check_float(name: str, value, *, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise GafuError(f"{name} must be a finite number {bound}, got {value!r}")


#: Values of ``StyleConfig.preserve_color``.
PRESERVE_COLOR_MODES: Tuple[str, ...] = ("none", "luminance", "histogram")

#: Allowed range of ``StyleConfig.style_scale`` (inclusive).
STYLE_SCALE_RANGE: Tuple[float, float] = (0.5, 2.0)

#: ``strength`` 0..1 spans this many decades of style weight, centred on the config's (0.5 = as is).
STRENGTH_DECADES: float = 4.0




def _check_controls(cfg: "StyleConfig") -> None:
    if cfg.preserve_color not in PRESERVE_COLOR_MODES:
        raise unknown_name("colour preservation mode", str(cfg.preserve_color), PRESERVE_COLOR_MODES)
    lo, hi = STYLE_SCALE_RANGE
    v = cfg.style_scale
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise GafuError(f"style_scale must be a number in [{lo:g}, {hi:g}], got {v!r}")
    if cfg.strength is not None:
        check_strength(cfg.strength)
    _check_float("feather", cfg.feather, allow_zero=True)


def strength_to_style_weight(strength: float, base: float) -> float:
    """Map ``strength`` in [0, 1] onto a style weight, logarithmically around ``base``:

    ``base * 10 ** (STRENGTH_DECADES * (strength - 0.5))``: 0.5 -> base, 0 -> base/100, 1 -> base*100
    (content weight unchanged). Equal steps of strength are equal ratios of style to content.

    With the seed's optimizer (Adam, epsilon 0.1, gradients far larger than epsilon) the step size
    does not depend on the loss scale, so only this ratio matters; in short runs the style loss is
    limited by the number of steps and strengths above 0.5 change the result less than those below.
    """
    check_strength(strength)
    return float(base) * 10.0 ** (STRENGTH_DECADES * (float(strength) - 0.5))


def style_size(size: int, style_scale: float) -> int:
    """Long side (pixels) at which style images are loaded: ``round(size * style_scale)``, at least 1."""
    return max(1, int(round(size * float(style_scale))))


def effective_style_weight(cfg) -> float:
    """The style weight a config runs with: ``style_weight``, scaled by ``strength`` if set."""
    if cfg.strength is None:
        return float(cfg.style_weight)
    return strength_to_style_weight(cfg.strength, cfg.style_weight)


#: Named presets. "seed" reproduces the TensorFlow tutorial run exactly.
PRESETS: Dict[str, StyleConfig] = {
    "seed": StyleConfig(name="seed"),
    # The seed's loss, minimized faster: 16-bit VGG19 where the hardware has it (fp32 image,
    # targets, Gram, loss), L-BFGS with 30 curvature pairs instead of Adam, up to 1000 steps (the
    # seed's count), stop early if the loss stalls. Measured at 512 px (benchmarks/bench_speed.py): it
    # passes the seed's 1000-step loss at step 272 on chelsea + Starry Night and at step 509 on rocket
    # + Great Wave; the cap was 600 until astronaut + Seurat at 512 px ended its 600 steps at 1.015x
    # the seed's loss, still falling (benchmarks/bench_never_worse.py). The first 600 steps are the
    # same under either cap, and the line search accepts a step only where the loss (in the
    # precision of the moment) falls, so the extra steps cost time, not quality.
    # Coarse-to-fine, a Magenta start and 10 pairs were slower to that loss: measured.
    # When the bf16 loss stalls, or an L-BFGS line search finds no decrease in bf16, the run goes on
    # in fp32 (on_stall): on astronaut + Seurat the bf16 loss stalled at 1.13x the seed's loss
    # (256 px), well above what fp32 steps still reach. L-BFGS sees the image through
    # optimizers.clamp_inward, so pixels pushed outside [0, 1] are not frozen there
    # (benchmarks/bench_never_worse.py: that pair went from 1.085x to below the seed's loss).
    "fast": StyleConfig(
        name="fast",
        jpeg_decoder="pillow",  # the better pictures: accurate IDCT, EXIF orientation and colour profiles
        precision="auto",
        optimizer="lbfgs",
        lbfgs_history=30,
        steps=1000,
        stop_tol=1e-3,
        stop_window=20,
        on_stall="fp32",
    ),
}


def setting_help(name: str, presets: Tuple[str, ...] = ("fast", "seed")) -> str:
    """A setting's help with its value in each of ``presets``: "longest side ... (fast: 512; seed: 512)"."""
    meta = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(StyleConfig)}
    if name not in meta:
        raise unknown_name("setting", name, meta)

    def fmt(v) -> str:
        if isinstance(v, tuple):
            return ",".join(str(x) for x in v) if v else "none"
        return f"{v:g}" if isinstance(v, float) else str(v)

    values = [(p, fmt(getattr(PRESETS[p], name))) for p in presets]
    if len({v for _, v in values}) == 1:
        return f"{meta[name]} (default: {values[0][1]})"
    return f"{meta[name]} (" + "; ".join(f"{p}: {v}" for p, v in values) + ")"


def get_preset(name: str) -> StyleConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name("preset", name, PRESETS) from None
