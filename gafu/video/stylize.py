"""Stylized video without flicker: :func:`stylize` (``gafu video``).

Two methods, both carrying the previous result along the optical flow of the *input* clip
(:mod:`gafu.video.flow`; backward flow t -> t-1 and a forward-backward occlusion mask):

``fast``
    Magenta's feed-forward network per frame (:class:`gafu.fast.FastStylizer`), with two
    stabilisers: (1) the instance-normalisation statistics are measured once, on the first frame,
    and every frame is normalised with them (per-frame statistics shift each frame's tone and
    texture: flicker); (2) the previous stylized frame, warped into the current one, is blended
    in where the flow is trusted: ``out = (1 - blend) * net(frame) + blend * warp(prev_out)``
    inside the mask, ``net(frame)`` outside (disocclusions get fresh strokes).

``optimize``
    Gatys optimization (:class:`gafu.optimize.StyleTransfer`, preset "fast" = L-BFGS). The style's
    Gram targets are computed once for all frames (:class:`gafu.optimize.StyleTargets`) and the VGG19
    extractor is shared. Frame 0 runs ``first_steps`` like ``gafu stylize``; each next frame
    starts from the previous result warped and adds the masked temporal term
    (:class:`gafu.video.temporal.TemporalLoss`, Ruder et al. 2016) for ``steps`` (fewer) steps.

Frames are written as PNGs to a frames folder as they are made (``frame_000001.png``, ... plus
``gafu-video.json``, the settings they were made with); ``resume=True`` keeps the frames already
there (an interrupted run) and makes only the missing ones. A video/GIF output is encoded from the
frames folder at the end, with the input's audio copied through; a frames folder the caller did
not name (``<output>.frames``) is removed once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ..errors import GafuError, unknown_name
from .flow import FlowEstimator, check_method, warp
from .io import Clip, frame_path, output_kind, read_clip, read_frame, write_clip, write_frame

METHODS = ("fast", "optimize")
MANIFEST = "gafu-video.json"
#: Default blend of the warped previous frame (fast method), measured in benchmarks/bench_video.py.
DEFAULT_BLEND = 0.5
#: Default temporal weight (optimize), the "fast" preset's style and content terms are ~1e7-1e8 at 96-256 px.
DEFAULT_TEMPORAL_WEIGHT = 1e10
#: Steps of the first frame and of each later frame (optimize).
DEFAULT_FIRST_STEPS = 100
DEFAULT_STEPS = 30


@dataclass
class VideoResult:
    """What :func:`stylize` made: the frames (uint8 RGB), where they went, timings and metrics."""

    frames: List[np.ndarray] = field(repr=False)
    fps: float
    method: str
    flow: str
    output: Optional[Path]
    frames_dir: Optional[Path]
    stylized: List[int]  # indices made by this call (the others were resumed)
    seconds: float
    frame_seconds: List[float]  # per stylized frame (flow included)
    settings: dict
    metrics: Optional[dict] = None
    written: Optional[dict] = None

    @property
    def size(self) -> tuple:
        h, w = self.frames[0].shape[:2]
        return w, h

    def summary(self) -> dict:
        fs = self.frame_seconds
        return {
            "method": self.method,
            "flow": self.flow,
            "frames": len(self.frames),
            "stylized": len(self.stylized),
            "resumed": len(self.frames) - len(self.stylized),
            "size": list(self.size),
            "fps": self.fps,
            "output": str(self.output) if self.output else None,
            "frames_dir": str(self.frames_dir) if self.frames_dir else None,
            "seconds": round(self.seconds, 3),
            "seconds_per_frame": round(float(np.mean(fs)), 4) if fs else None,
            "frames_per_second": round(len(fs) / float(np.sum(fs)), 3) if fs and np.sum(fs) > 0 else None,
            "settings": self.settings,
            "metrics": self.metrics,
            "written": self.written,
        }


# --------------------------------------------------------------------------------------------
# the frames folder


def _manifest_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _existing_frames(folder: Path) -> List[Path]:
    return sorted(folder.glob("frame_*.png")) if folder.is_dir() else []


def _prepare_frames_dir(folder: Path, settings: dict, total: int, *, resume: bool, overwrite: bool) -> int:
    """Make ready ``folder``; return how many leading frames are kept (resume)."""
    if folder.exists() and not folder.is_dir():
        raise GafuError(f"frames folder {folder} is a file")
    manifest = folder / MANIFEST
    have = _existing_frames(folder)
    kept = 0
    if have or manifest.exists():
        if resume:
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError):
                raise GafuError(f"{folder} has frames but no readable {MANIFEST}; cannot tell how they were made") from None
            if old.get("key") != _manifest_key(settings):
                diff = sorted(k for k in set(settings) | set(old.get("settings", {}))
                              if settings.get(k) != old.get("settings", {}).get(k))
                raise GafuError(
                    f"frames in {folder} were made with other settings ({', '.join(diff) or 'unknown'} differ); "
                    "use another frames folder, or pass overwrite=True to start again",
                    argument="overwrite",
                )
            while kept < total and frame_path(folder, kept).is_file():
                kept += 1
        elif overwrite:
            for p in have:
                p.unlink()
        else:
            raise GafuError(
                f"{folder} already holds frames; pass resume=True to continue them or overwrite=True to replace them",
                argument=("resume", "overwrite"),
            )
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"key": _manifest_key(settings), "frames": total, "settings": settings},
                                   indent=1, default=str))
    # Frames after the kept prefix depend on it: remove stale ones so the folder is consistent.
    for p in _existing_frames(folder):
        try:
            idx = int(p.stem.split("_")[1]) - 1
        except (IndexError, ValueError):
            continue
        if idx >= kept:
            p.unlink()
    return kept


# --------------------------------------------------------------------------------------------
# fast method


class _FastFrames:
    """Feed-forward stylization with shared statistics (the warped blend is done by the caller).

    Uses ``FastStylizer.vector`` and these private names of :mod:`gafu.fast` (kept in this one
    class): ``FastStylizer._network(vector)`` and, on the network it returns, ``statistics(arr)`` and
    ``__call__(arr, stats)``; plus the module's public helpers ``linear_blend``, ``keep_color``,
    ``run_tiled`` and ``DEFAULT_TILE_SIZE``. Frames above ``tile_size**2`` pixels (4K) run in
    tiles, as ``FastStylizer.run`` does, with the same shared statistics.
    """

    def __init__(self, stylizer, first: np.ndarray) -> None:
        from PIL import Image

        from .. import fast

        self.stylizer, self._fast = stylizer, fast
        self.tile = stylizer.tile_size or fast.DEFAULT_TILE_SIZE
        h, w = first.shape[:2]
        preview = first
        if h * w > self.tile * self.tile:  # statistics from a preview, as FastStylizer.run for tiles
            scale = (self.tile * self.tile / (h * w)) ** 0.5
            preview = np.asarray(Image.fromarray(first).resize((max(16, int(w * scale)), max(16, int(h * scale))),
                                                               Image.LANCZOS))
        vector = None
        if stylizer.mode == "arbitrary":
            vector = stylizer.vector
            if stylizer.strength < 1.0:  # the clip's own style: from the first frame, for every frame
                own = stylizer.style_vector(first)
                vector = stylizer.strength * vector + (1.0 - stylizer.strength) * own
        self.net = stylizer._network(vector)
        self.stats = self.net.statistics(preview.astype(np.float32) / 255.0)

    def __call__(self, frame: np.ndarray, *, shared: bool = True) -> np.ndarray:
        arr = frame.astype(np.float32) / 255.0
        stats = self.stats if shared else None
        h, w = arr.shape[:2]
        if h * w > self.tile * self.tile:
            out, _ = self._fast.run_tiled(lambda part: self.net(part, stats), arr, self.tile)
        else:
            out = self.net(arr, stats)
        if self.stylizer.mode == "builtin":
            out = self._fast.linear_blend(arr, out, self.stylizer.strength)
        if self.stylizer.preserve_color:
            out = self._fast.keep_color(out, arr)
        return np.clip(out, 0.0, 1.0)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# optimize method


class _OptimizeFrames:
    """Gatys optimization per frame with targets prepared once and a shared extractor."""

    def __init__(self, styles, size: int, *, first_steps: int, steps: int, weight: float, seed: Optional[int],
                 device: str, config=None, extractor=None) -> None:
        from ..config import get_preset
        from ..optimize import StyleTargets

        base = config if config is not None else get_preset("fast")
        over = {"size": int(size)}
        if seed is not None:
            over["seed"] = int(seed)
        self.cfg = base.replace(**over)
        self.first_steps, self.steps, self.weight, self.device = int(first_steps), int(steps), float(weight), device
        self.targets = StyleTargets(styles, self.cfg, device=device, extractor=extractor)
        self.extractor = extractor
        self.last_terms: dict = {}

    def _run(self, frame: np.ndarray, steps: int, init=None, mask=None) -> np.ndarray:
        import torch

        from ..optimize import StyleTransfer
        from .temporal import TemporalLoss

        content = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float() / 255.0
        init_t = None if init is None else torch.from_numpy(np.ascontiguousarray(init)).permute(2, 0, 1)[None].float()
        st = StyleTransfer(content, self.targets, self.cfg.replace(steps=steps), device=self.device,
                           init_image=init_t, extractor=self.extractor)
        self.extractor = st.extractor
        if init is not None and mask is not None:
            st.add_term("temporal", TemporalLoss(init_t, mask, self.weight))
        last = None
        for it in st.run():
            last = it
        self.last_terms = dict(last.terms) if last is not None else {}
        out = st.image[0].permute(1, 2, 0).numpy()
        return np.clip(out, 0.0, 1.0)

    def first(self, frame: np.ndarray) -> np.ndarray:
        return self._run(frame, self.first_steps)

    def next(self, frame: np.ndarray, warped_prev: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._run(frame, self.steps, init=warped_prev, mask=mask)


# --------------------------------------------------------------------------------------------
# the entry point


def _check_fraction(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GafuError(f"{name} must be a number between 0 and 1, got {value!r}", argument=name) from None
    if not 0.0 <= v < 1.0:
        raise GafuError(f"{name} must be >= 0 and < 1, got {value!r}", argument=name)
    return v


def _style_list(styles) -> list:
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not items or any(s is None for s in items):
        raise GafuError("give at least one style image", argument="styles")
    return items


def _describe(x) -> str:
    return str(x) if isinstance(x, (str, os.PathLike)) else f"<{type(x).__name__}>"


def stylize(
    input: Union[str, os.PathLike, Sequence[np.ndarray], Clip],
    styles,
    output: Union[str, os.PathLike, None] = None,
    *,
    method: str = "fast",
    flow: str = "dis",
    blend: Optional[float] = None,
    temporal_weight: Optional[float] = None,
    max_size: Optional[int] = None,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    frames_dir: Union[str, os.PathLike, None] = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: Optional[int] = 0,
    metrics: bool = False,
    strength: float = 1.0,
    preserve_color: bool = False,
    steps: Optional[int] = None,
    first_steps: Optional[int] = None,
    device: str = "cpu",
    threads: Optional[int] = None,
    config=None,
    extractor=None,
    callback: Optional[Callable[[int, int, np.ndarray], None]] = None,
) -> VideoResult:
    """Stylize a clip frame by frame, steadily; returns a :class:`VideoResult`.

    Args:
        input: a video file (mp4, mov, webm, ...), a GIF, a folder of frames, a list of HxWx3
            uint8 frames, or a :class:`~gafu.video.io.Clip`.
        styles: a style image or a list (blended equally).
        output: a video (.mp4/.mov/.mkv/.webm), a .gif, or a folder for PNG frames; None: frames
            are only returned (and written to ``frames_dir`` if given).
        method: 'fast' (feed-forward, ~tens of frames/s) or 'optimize' (Gatys, seconds per frame).
        flow: 'dis', 'farneback' or 'none' (no motion compensation).
        blend: fast: weight of the warped previous frame in trusted pixels (0..1, default 0.5);
            0 = per-frame with shared statistics only.
        temporal_weight: optimize: weight of the temporal term (default 1e10; 0 = warm start only).
        max_size: cap on the long side of the frames (default: the clip's own size).
        fps, start, end: output frame rate (default the input's) and the part (seconds) to use.
        frames_dir: where frames are written (default for a video/GIF output: ``<output>.frames``,
            removed when done; a frames-folder output is its own frames folder).
        resume: keep the frames already in the frames folder (made with the same settings) and
            make only the missing ones.
        overwrite: replace an existing output / frames.
        seed: random seed of the optimization (recorded for the fast method).
        metrics: also measure the warping error (Lai et al. 2018) of the result and of plain
            per-frame stylization (fast: :meth:`FastStylizer.run` per frame; optimize: every frame
            from its content for ``first_steps`` steps) -- this stylizes the clip a second time.
        strength, preserve_color: as :class:`gafu.fast.FastStylizer` (fast method only).
        steps, first_steps: optimize: steps per later frame (default 30) and for frame 0 (100).
        device, threads: where to compute (fast: onnxruntime threads).
        config: optimize: a :class:`gafu.config.StyleConfig` instead of the "fast" preset.
        extractor: optimize: a VGG19 extractor to use (default: the bundled VGG19, loaded once).
        callback: ``callback(index, total, frame_uint8)`` after each frame is made; an exception
            it raises stops the run (the frames written so far stay, for ``resume``).
    """
    t_start = time.perf_counter()
    if method not in METHODS:
        raise unknown_name("method", str(method), METHODS)
    check_method(flow)
    style_items = _style_list(styles)
    blend = DEFAULT_BLEND if blend is None else _check_fraction(blend, "blend")
    if temporal_weight is None:
        temporal_weight = DEFAULT_TEMPORAL_WEIGHT
    if not (isinstance(temporal_weight, (int, float)) and np.isfinite(temporal_weight) and temporal_weight >= 0):
        raise GafuError(f"temporal weight must be a number >= 0, got {temporal_weight!r}", argument="temporal_weight")
    for name, v in (("steps", steps), ("first_steps", first_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise GafuError(f"{name} must be a whole number >= 1, got {v!r}", argument=name)
    steps = DEFAULT_STEPS if steps is None else int(steps)
    first_steps = DEFAULT_FIRST_STEPS if first_steps is None else int(first_steps)

    # Output and frames folder are checked before any decoding or model work.
    out_path = Path(output) if output is not None else None
    out_kind = output_kind(out_path) if out_path is not None else None
    if out_path is not None and isinstance(input, (str, os.PathLike)):
        if out_path.resolve() == Path(input).resolve():
            raise GafuError(f"refusing to overwrite the input {input}")
    for s in style_items:
        if out_path is not None and isinstance(s, (str, os.PathLike)) and out_path.resolve() == Path(s).resolve():
            raise GafuError(f"refusing to overwrite the style image {s}")
    own_dir = False
    if out_kind == "frames":
        if frames_dir is not None and Path(frames_dir).resolve() != out_path.resolve():
            raise GafuError("the output is a frames folder: it is the frames folder; do not give frames_dir too",
                            argument="frames_dir")
        folder: Optional[Path] = out_path
    elif frames_dir is not None:
        folder = Path(frames_dir)
    elif out_path is not None:
        folder, own_dir = out_path.with_name(out_path.name + ".frames"), True
    else:
        folder = None
    if resume and folder is None:
        raise GafuError("resume needs a frames folder (frames_dir or an output)", argument="resume")
    if out_kind in ("video", "gif") and out_path.exists():
        if not overwrite:
            raise GafuError(f"{out_path} already exists; pass overwrite=True to replace it", argument="overwrite")
        if out_path.is_dir():
            raise GafuError(f"output path is a folder: {out_path}")

    # Frames.
    if isinstance(input, Clip):
        clip = input
    elif isinstance(input, (str, os.PathLike)):
        clip = read_clip(input, max_size=max_size, fps=fps, start=start, end=end)
    else:
        frames = [np.asarray(f) for f in input]
        if not frames:
            raise GafuError("the clip has no frames")
        for f in frames:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != frames[0].shape:
                raise GafuError("frames must be HxWx3 uint8 arrays of one size")
        clip = Clip(frames=frames, fps=float(fps or 25.0), kind="frames", source_size=frames[0].shape[1::-1])
        if max_size is not None:
            from .io import _resize, _work_shape

            size = _work_shape(*clip.source_size, max_size)
            clip.frames = [_resize(f, size) for f in clip.frames]
    total = len(clip)
    w, h = clip.size
    if min(w, h) < 16:
        raise GafuError(f"frames of {w}x{h} are too small (at least 16 px a side)")

    settings = {
        "input": _describe(input) if isinstance(input, (str, os.PathLike)) else f"<{total} frames>",
        "styles": [_describe(s) for s in style_items],
        "method": method, "flow": flow, "size": [w, h], "fps": clip.fps, "start": start, "end": end,
        "frames": total, "seed": seed,
    }
    if method == "fast":
        settings.update(blend=blend, strength=strength, preserve_color=bool(preserve_color))
    else:
        settings.update(temporal_weight=float(temporal_weight), steps=steps, first_steps=first_steps,
                        config=config.to_dict() if config is not None else "fast")
    kept = 0
    if folder is not None:
        kept = _prepare_frames_dir(folder, settings, total, resume=resume, overwrite=overwrite)

    estimator = FlowEstimator(flow)
    outputs: List[np.ndarray] = [read_frame(folder, i) for i in range(kept)] if kept else []
    frame_seconds: List[float] = []
    stylized: List[int] = []

    if method == "fast":
        from ..fast import FastStylizer

        stylizer = FastStylizer(style=style_items, strength=strength, preserve_color=preserve_color,
                                device=device, threads=threads)
        engine = _FastFrames(stylizer, clip.frames[0])
    else:
        engine = _OptimizeFrames(style_items, max(w, h), first_steps=first_steps, steps=steps,
                                 weight=temporal_weight, seed=seed, device=device, config=config,
                                 extractor=extractor)

    optimize_terms = []
    for t in range(kept, total):
        t0 = time.perf_counter()
        frame = clip.frames[t]
        if t == 0:
            out = engine(frame) if method == "fast" else engine.first(frame)
        else:
            prev = outputs[t - 1].astype(np.float32) / 255.0
            back, mask = estimator.pair(frame, clip.frames[t - 1])
            warped = warp(prev, back)
            if method == "fast":
                raw = engine(frame)
                m = (blend * mask)[..., None]
                out = (1.0 - m) * raw + m * warped
            else:
                out = engine.next(frame, warped, mask)
                optimize_terms.append(engine.last_terms)
        out8 = _to_uint8(out)
        if folder is not None:
            write_frame(folder, t, out8)
        outputs.append(out8)
        stylized.append(t)
        frame_seconds.append(time.perf_counter() - t0)
        if callback is not None:
            callback(t, total, out8)

    result_metrics = None
    if metrics:
        result_metrics = _metrics(clip.frames, outputs, flow, method, engine)

    written = None
    if out_kind in ("video", "gif"):
        audio = clip.source if (clip.kind == "video" and clip.has_audio) else None
        written = write_clip((read_frame(folder, i) for i in range(total)), out_path, clip.fps,
                             audio_from=audio, start=clip.start, end=clip.end)
        if own_dir:
            _remove_frames_dir(folder)

    settings["optimize_last_terms"] = optimize_terms[-1] if optimize_terms else None
    return VideoResult(
        frames=outputs, fps=clip.fps, method=method, flow=flow, output=out_path,
        frames_dir=folder if (folder is not None and folder.exists()) else None, stylized=stylized,
        seconds=time.perf_counter() - t_start, frame_seconds=frame_seconds, settings=settings,
        metrics=result_metrics, written=written,
    )


def _remove_frames_dir(folder: Path) -> None:
    for p in _existing_frames(folder):
        p.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # other files are in it: leave it


def _metrics(inputs, outputs, flow: str, method: str, engine) -> dict:
    """Warping error of ``outputs`` and of plain per-frame stylization of ``inputs``."""
    from .metrics import input_flows, warping_errors

    measure = "dis" if flow == "none" else flow
    flows = input_flows(inputs, measure)
    t0 = time.perf_counter()
    if method == "fast":
        plain = [_to_uint8(np.asarray(engine.stylizer.run(f).image, np.float32) / 255.0) for f in inputs]
    else:
        plain = [_to_uint8(engine.first(f)) for f in inputs]
    plain_seconds = time.perf_counter() - t0
    ours = warping_errors(outputs, flows) if len(outputs) > 1 else []
    base = warping_errors(plain, flows) if len(plain) > 1 else []
    e_ours = float(np.mean(ours)) if ours else 0.0
    e_base = float(np.mean(base)) if base else 0.0
    return {
        "warping_error": e_ours,
        "per_frame_warping_error": e_base,
        "ratio": (e_ours / e_base) if e_base > 0 else None,
        "flow": measure,
        "per_frame_baseline": "FastStylizer.run per frame" if method == "fast" else "each frame optimized from its content",
        "per_frame_seconds": round(plain_seconds, 3),
    }
