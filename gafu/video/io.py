"""Reading and writing clips: video containers with PyAV, GIFs and folders of frames.

Why PyAV (``av`` on PyPI) and not imageio-ffmpeg
    - PyAV binds FFmpeg's libraries in-process and its wheels bundle them (libx264, libvpx, AAC,
      Opus included): no ffmpeg executable, no subprocess, no pipe protocol to parse.
    - Audio can be copied through *packet by packet* (remuxed, not re-encoded) with
      ``add_stream_from_template``; imageio-ffmpeg only moves raw video frames through a pipe and
      leaves audio to a second ffmpeg command line.
    - Frame timestamps (``frame.time``) and the stream's exact rational frame rate come with
      each decoded frame, so ``start``/``end``/``fps`` select frames by time without guessing.
    GIFs are read and written with Pillow (palette quantisation, per-frame durations), folders
    of frames with :mod:`gafu.image`.

Frames are HxWx3 ``uint8`` RGB numpy arrays. A :class:`Clip` holds them in memory (this module
is meant for short clips; a 10 s clip at 512 px is ~240 MB).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from ..errors import GafuError
from ..image import IMAGE_EXTENSIONS, collect_images, fit_shape

#: Containers written with PyAV, with their video codec (first one available) and pixel format.
CONTAINERS = {
    ".mp4": (("libx264", "h264", "mpeg4"), "yuv420p"),
    ".mov": (("libx264", "h264", "mpeg4"), "yuv420p"),
    ".mkv": (("libx264", "h264", "mpeg4"), "yuv420p"),
    ".webm": (("libvpx-vp9", "libvpx"), "yuv420p"),
}
#: Audio codecs each container takes as they are (remuxed); others are re-encoded to the first.
AUDIO_CODECS = {
    ".mp4": ("aac", "mp3", "ac3", "alac", "opus"),
    ".mov": ("aac", "mp3", "ac3", "alac", "pcm_s16le"),
    ".mkv": ("aac", "mp3", "ac3", "opus", "vorbis", "flac", "pcm_s16le"),
    ".webm": ("libopus", "opus", "vorbis"),
}
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
GIF = ".gif"
#: Frame rate assumed for a folder of frames without --fps.
DEFAULT_FRAMES_FPS = 25.0
FRAME_PATTERN = "frame_{:06d}.png"


@dataclass
class Clip:
    """Decoded frames and what is needed to write them back: frame rate, source (for audio)."""

    frames: List[np.ndarray]
    fps: float
    source: Optional[Path] = None
    kind: str = "video"  # 'video' | 'gif' | 'frames'
    start: float = 0.0  # seconds into the source of the first frame (audio is cut to match)
    end: Optional[float] = None
    source_size: tuple = (0, 0)  # (width, height) before any resize
    has_audio: bool = False
    times: List[float] = field(default_factory=list)

    @property
    def size(self) -> tuple:
        h, w = self.frames[0].shape[:2]
        return w, h

    def __len__(self) -> int:
        return len(self.frames)


def kind_of(path: Union[str, os.PathLike]) -> str:
    """'video', 'gif' or 'frames' (a folder, or a path ending in a separator / without suffix)."""
    p = Path(path)
    text = str(path)
    ext = p.suffix.lower()
    if p.is_dir() or text.endswith(("/", os.sep)) or ext == "":
        return "frames"
    if ext == GIF:
        return "gif"
    return "video"


def _check_range(start: Optional[float], end: Optional[float]) -> None:
    for name, v in (("start", start), ("end", end)):
        if v is not None and (not math.isfinite(v) or v < 0):
            raise GafuError(f"{name} must be a time >= 0 in seconds, got {v!r}", argument=name)
    if start is not None and end is not None and end <= start:
        raise GafuError(f"end ({end:g} s) must be after start ({start:g} s)", argument="end")


def _work_shape(w: int, h: int, max_size: Optional[int]) -> tuple:
    if max_size is None or max(w, h) <= max_size:
        return w, h
    nh, nw = fit_shape(h, w, int(max_size))
    return max(nw, 2), max(nh, 2)


def _resize(arr: np.ndarray, size: tuple) -> np.ndarray:
    if (arr.shape[1], arr.shape[0]) == tuple(size):
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.LANCZOS))


def _select(times: Sequence[float], fps_in: float, fps: Optional[float]) -> List[int]:
    """Indices of the frames shown at times k/fps (the last frame at or before each time)."""
    if fps is None or not times:
        return list(range(len(times)))
    t0, t1 = times[0], times[-1] + 1.0 / fps_in
    n = max(1, int(math.floor((t1 - t0) * fps + 1e-6)))
    out, j = [], 0
    for k in range(n):
        t = t0 + k / fps
        while j + 1 < len(times) and times[j + 1] <= t + 1e-9:
            j += 1
        out.append(j)
    return out


def read_clip(
    path: Union[str, os.PathLike],
    *,
    max_size: Optional[int] = None,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
) -> Clip:
    """Decode a video file, a GIF or a folder of frames into a :class:`Clip`.

    ``max_size`` caps the long side (never enlarges); ``fps`` resamples the frame rate (frames
    repeated or dropped by time); ``start``/``end`` (seconds) select a part. Raises GafuError for
    a missing file, a file that is not a video, or a selection without frames.
    """
    _check_range(start, end)
    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise GafuError(f"fps must be a number > 0, got {fps!r}", argument="fps")
    p = Path(path)
    if not p.exists():
        raise GafuError(f"no such file or folder: {p}")
    kind = kind_of(p)
    if kind == "frames":
        frames, times, fps_in, has_audio = _read_frames_dir(p, fps)
    elif kind == "gif":
        frames, times, fps_in, has_audio = _read_gif(p)
    else:
        frames, times, fps_in, has_audio = _read_video(p, start, end)
    if kind != "video":  # containers are cut while decoding; the others here
        keep = [i for i, t in enumerate(times) if (start is None or t >= start - 1e-9) and (end is None or t < end - 1e-9)]
        frames, times = [frames[i] for i in keep], [times[i] for i in keep]
    if not frames:
        where = "" if start is None and end is None else f" between {start or 0:g} s and {end if end is not None else 'the end'}"
        raise GafuError(f"{p} has no video frames{where}")
    idx = _select(times, fps_in, fps)
    frames, times = [frames[i] for i in idx], [times[i] for i in idx]
    src_size = (frames[0].shape[1], frames[0].shape[0])
    for f in frames:
        if (f.shape[1], f.shape[0]) != src_size:
            raise GafuError(f"{p}: frames differ in size ({src_size[0]}x{src_size[1]} and {f.shape[1]}x{f.shape[0]})")
    size = _work_shape(*src_size, max_size)
    if size != src_size:
        frames = [_resize(f, size) for f in frames]
    return Clip(
        frames=frames, fps=float(fps or fps_in), source=p, kind=kind, start=times[0] if times else 0.0,
        end=(times[-1] + 1.0 / float(fps or fps_in)) if times else None, source_size=src_size,
        has_audio=has_audio, times=list(times),
    )


def _read_video(p: Path, start, end):
    import av

    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise GafuError(f"cannot read {p} as a video: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    with container:
        if not container.streams.video:
            raise GafuError(f"{p} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps_in = float(rate) if rate else 25.0
        has_audio = bool(container.streams.audio)
        frames, times = [], []
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(frames) / fps_in
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
        except av.error.FFmpegError as exc:
            if not frames:
                raise GafuError(f"cannot decode the video in {p}: {exc}") from None
            # A truncated file: keep the frames that decoded.
    return frames, times, fps_in, has_audio


def _read_gif(p: Path):
    try:
        im = Image.open(p)
    except (OSError, Image.UnidentifiedImageError) as exc:
        raise GafuError(f"cannot read {p} as a GIF: {exc}") from None
    frames, times, t = [], [], 0.0
    durations = []
    with im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            times.append(t)
            d = float(im.info.get("duration", 100) or 100) / 1000.0
            durations.append(d)
            t += d
    fps_in = 1.0 / float(np.median(durations)) if durations else 10.0
    return frames, times, fps_in, False


def _read_frames_dir(p: Path, fps: Optional[float]):
    files = collect_images(p)
    if not files:
        raise GafuError(f"no frames (images: {', '.join(IMAGE_EXTENSIONS)}) in {p}")
    from ..image import load

    files = sorted(files, key=lambda f: str(f.relative_to(p)))
    frames = [np.asarray(load(f)) for f in files]
    fps_in = float(fps or DEFAULT_FRAMES_FPS)
    return frames, [i / fps_in for i in range(len(frames))], fps_in, False


# --------------------------------------------------------------------------------------------
# writing


def frame_path(folder: Union[str, os.PathLike], index: int) -> Path:
    """The file of frame ``index`` (0-based) in a frames folder: frame_000001.png, ..."""
    return Path(folder) / FRAME_PATTERN.format(index + 1)


def write_frame(folder: Union[str, os.PathLike], index: int, frame: np.ndarray) -> Path:
    """Write one frame as PNG, atomically (an interrupted run never leaves a half-written frame)."""
    from ..image import atomic_write

    img = Image.fromarray(np.ascontiguousarray(frame))
    return atomic_write(frame_path(folder, index), lambda fh: img.save(fh, format="PNG"))


def read_frame(folder: Union[str, os.PathLike], index: int) -> np.ndarray:
    with Image.open(frame_path(folder, index)) as im:
        return np.asarray(im.convert("RGB"))


def _even(arr: np.ndarray) -> np.ndarray:
    """Pad to even height and width (edge pixels repeated): 4:2:0 video needs even sides."""
    h, w = arr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return arr
    return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def output_kind(path: Union[str, os.PathLike]) -> str:
    """'video', 'gif' or 'frames' for an output path; GafuError for an unknown extension."""
    kind = kind_of(path)
    if kind == "video" and Path(path).suffix.lower() not in CONTAINERS:
        raise GafuError(
            f"cannot tell the output format from '{Path(path).name}'; use one of: "
            + ", ".join(list(CONTAINERS) + [GIF]) + ", or a folder for frames"
        )
    return kind


def write_clip(
    frames: Iterable[np.ndarray],
    path: Union[str, os.PathLike],
    fps: float,
    *,
    audio_from: Optional[Union[str, os.PathLike]] = None,
    start: float = 0.0,
    end: Optional[float] = None,
    quality: int = 18,
) -> dict:
    """Encode frames into ``path`` (mp4/mov/mkv/webm with PyAV, gif with Pillow), atomically.

    ``audio_from``: a video whose first audio stream is copied through (remuxed when the
    container takes its codec, else re-encoded), cut to ``[start, end)`` seconds. ``quality``
    is the x264 CRF / VP9 CRF. Returns what was written (codec, frames, audio).
    """
    from ..image import atomic_write

    p = Path(path)
    ext = p.suffix.lower()
    info: dict = {"path": str(p), "frames": 0, "audio": None}
    if ext == GIF:
        frames = list(frames)
        if not frames:
            raise GafuError("no frames to write")
        ims = [Image.fromarray(f) for f in frames]
        duration = max(20, int(round(1000.0 / fps / 10.0)) * 10)  # GIF delays are in 1/100 s
        atomic_write(p, lambda fh: ims[0].save(fh, format="GIF", save_all=True, append_images=ims[1:],
                                               duration=duration, loop=0, optimize=False))
        info.update(frames=len(ims), codec="gif", fps=1000.0 / duration)
        return info
    if ext not in CONTAINERS:
        output_kind(p)  # raises the error naming the formats
    atomic_write(p, lambda fh: _encode(fh, ext, frames, fps, audio_from, start, end, quality, info))
    return info


def _encode(fh, ext, frames, fps, audio_from, start, end, quality, info) -> None:
    import av

    codecs, pix_fmt = CONTAINERS[ext]
    codec = next((c for c in codecs if c in av.codecs_available), None)
    if codec is None:
        raise GafuError(f"this PyAV build has no encoder for {ext} (tried {', '.join(codecs)})")
    rate = Fraction(fps).limit_denominator(1001)
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[ext]
    src = None
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise GafuError("no frames to write")
    first = _even(first)
    with av.open(fh, mode="w", format=fmt) as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height = first.shape[1], first.shape[0]
        vs.pix_fmt = pix_fmt
        if codec == "libx264":
            vs.options = {"crf": str(quality)}
        elif codec == "libvpx-vp9":
            vs.options = {"crf": str(quality + 12), "b:v": "0"}
        audio_in = audio_out = None
        transcode = False
        if audio_from is not None:
            src = av.open(str(audio_from))
            if src.streams.audio:
                audio_in = src.streams.audio[0]
                name = audio_in.codec_context.name
                if name in AUDIO_CODECS[ext]:
                    audio_out = out.add_stream_from_template(audio_in)
                else:
                    transcode = True
                    target = AUDIO_CODECS[ext][0]
                    rate_in = audio_in.codec_context.sample_rate or 48000
                    rate_out = 48000 if "opus" in target else rate_in  # Opus runs at 48 kHz
                    audio_out = out.add_stream(target, rate=rate_out)
                    audio_out.layout = audio_in.codec_context.layout.name
                info["audio"] = {"codec": name, "copied": not transcode,
                                 "written_as": name if not transcode else audio_out.codec_context.name}
        n = 0
        for frame in _chain(first, it):
            frame = _even(frame)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for pkt in vs.encode(vf):
                out.mux(pkt)
            n += 1
        for pkt in vs.encode():
            out.mux(pkt)
        if audio_in is not None:
            _copy_audio(src, audio_in, out, audio_out, transcode, start, end)
        info.update(frames=n, codec=codec, fps=float(rate))
    if src is not None:
        src.close()


def _chain(first, rest):
    yield first
    yield from rest


def _copy_audio(src, audio_in, out, audio_out, transcode: bool, start: float, end: Optional[float]) -> None:
    """Audio of ``[start, end)`` seconds, its timestamps moved so that it starts at 0."""
    tb = audio_in.time_base
    if not transcode:
        offset = None
        for pkt in src.demux(audio_in):
            if pkt.pts is None or pkt.size == 0:
                continue
            t = float(pkt.pts * tb)
            if t < start - 1e-6 or (end is not None and t >= end):
                continue
            if offset is None:
                offset = pkt.pts
            pkt.pts -= offset
            if pkt.dts is not None:
                pkt.dts -= offset
            pkt.stream = audio_out
            out.mux(pkt)
        return
    import av

    resampler = av.AudioResampler(format=audio_out.codec_context.format.name if audio_out.codec_context.format else "fltp",
                                  layout=audio_in.codec_context.layout.name, rate=audio_out.codec_context.sample_rate)
    samples = 0
    for frame in src.decode(audio_in):
        t = float(frame.time) if frame.time is not None else 0.0
        if t < start - 1e-6 or (end is not None and t >= end):
            continue
        for rf in resampler.resample(frame):
            rf.pts = samples
            rf.time_base = Fraction(1, audio_out.codec_context.sample_rate)
            samples += rf.samples
            for pkt in audio_out.encode(rf):
                out.mux(pkt)
    for pkt in audio_out.encode(None):
        out.mux(pkt)
