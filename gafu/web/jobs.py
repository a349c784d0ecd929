"""The work behind the web page, without Gradio: limits, upload checks, a per-visitor workspace
and the jobs (stylize with live progress, fast, compare, classify, analyze).

Everything here is plain Python on top of the gafu library, so it is testable without a browser
or a server. User mistakes raise :class:`gafu.errors.GafuError`; the page shows their message.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import GafuError

#: The bundled example images (gafu/data, see CREDITS.md): photos and paintings.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
EXAMPLE_PHOTOS = {"Chelsea the cat": "chelsea.jpg", "Falcon 9 rocket": "rocket.jpg"}
EXAMPLE_STYLES = {
    "Van Gogh, The Starry Night": "vangogh_starry_night.jpg",
    "Hokusai, The Great Wave": "hokusai_great_wave.jpg",
    "Kandinsky, Composition VII": "kandinsky_composition_vii.jpg",
}

_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2, "gb": 1024**3, "g": 1024**3}


def parse_file_size(text: Any) -> int:
    """``'20mb'`` -> 20971520 (binary units kb/mb/gb, case-insensitive; a bare number is bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", str(text).lower())
        if not m:
            raise GafuError(f"max file size must look like 20mb, 500kb or 1gb, got '{text}'")
        value, unit = float(m.group(1)), m.group(2)
    n = int(value * _UNITS[unit])
    if n < 1:
        raise GafuError(f"max file size must be at least 1 byte, got '{text}'")
    return n


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


@dataclass(frozen=True)
class Limits:
    """What one visitor may ask of the server."""

    max_file_bytes: int = 20 * 1024**2  # per uploaded file
    max_pixels: int = 40_000_000  # per uploaded image (width x height), checked before decoding
    max_size: int = 1024  # long side of an optimization run, px
    max_steps: int = 1000  # optimizer steps of one run
    max_fast_size: int = 4096  # long side of a fast result, px
    max_styles: int = 8  # style images of one run / comparison


def check_upload(path: Any, limits: Limits, what: str) -> Path:
    """Refuse a file over the size limit, a non-image, or an image over the pixel limit (read from
    the header, before any decoding). Returns the path."""
    from PIL import Image, UnidentifiedImageError

    if path is None:
        raise GafuError(f"no {what} given")
    p = Path(path)
    if not p.is_file():
        raise GafuError(f"{what}: no such file")
    size = p.stat().st_size
    if size > limits.max_file_bytes:
        raise GafuError(
            f"{what} is {human_bytes(size)}, over this server's upload limit of {human_bytes(limits.max_file_bytes)}"
        )
    try:
        with Image.open(p) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise GafuError(f"{what} has too many pixels (over this server's limit of "
                        f"{limits.max_pixels / 1e6:g} megapixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise GafuError(f"{what} is not an image file gafu can read") from None
    if w * h > limits.max_pixels:
        raise GafuError(
            f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over this server's limit of "
            f"{limits.max_pixels / 1e6:g} megapixels"
        )
    return p


def example_paths(names: Optional[Sequence[str]], table: Dict[str, str]) -> List[Path]:
    out = []
    for name in names or ():
        if name not in table:
            raise GafuError(f"unknown example '{name}'; choose from: {', '.join(table)}")
        out.append(DATA_DIR / table[name])
    return out


def parse_weights(text: Optional[str], count: int) -> Optional[List[float]]:
    """``'0.7, 0.3'`` -> [0.7, 0.3]; empty -> None (equal weights)."""
    if text is None or not str(text).strip():
        return None
    try:
        values = [float(s) for s in str(text).replace(";", ",").split(",") if s.strip()]
    except ValueError:
        raise GafuError(f"style weights must be numbers separated by commas, got '{text}'",
                        argument="style_weights") from None
    if len(values) != count:
        raise GafuError(f"got {len(values)} style weights for {count} style images", argument="style_weights")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise GafuError("style weights must be >= 0 and not all zero", argument="style_weights")
    return values


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as a whole number in [lo, hi]; the error's ``argument`` is ``name`` (a page field)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GafuError(f"{name} must be a whole number, got {value!r}", argument=name) from None
    if not math.isfinite(v) or v != int(v) or not lo <= v <= hi:
        raise GafuError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}", argument=name)
    return int(v)


def check_float(name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a finite number in [lo, hi]; the error's ``argument`` is ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GafuError(f"{name} must be a number, got {value!r}", argument=name) from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise GafuError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}", argument=name)
    return v


def field_message(exc: GafuError, fields: Dict[str, str]) -> Tuple[str, Optional[str]]:
    """A GafuError as the page says it: ``(message, field label)``. ``fields`` maps argument names
    (``exc.argument``: the library's, e.g. ``style_weights``, or this module's checks, e.g.
    ``'strength'``) to the labels of the page's fields. The message then starts with the label of the
    field to fix, in place of the argument's name: "Strength: must be a number from 0 to 1, got 2"
    (where the CLI says ``--strength``, :meth:`GafuError.for_client`). Label None: no field of the
    page is concerned, the message is the error's own."""
    args = (exc.argument,) if isinstance(exc.argument, str) else tuple(exc.argument or ())
    concerned = [a for a in args if a in fields]
    if not concerned:
        return str(exc), None
    arg, text = concerned[0], str(exc)
    for name in (arg, arg.replace("_", " ")):
        if text.lower().startswith(name.lower() + " ") or text.lower().startswith(name.lower() + ": "):
            text = text[len(name):].lstrip(": ")
            break
    return f"{fields[arg]}: {text}", fields[arg]


def release_freed_memory() -> bool:
    """Hand the free pages of the C heap back to the kernel (glibc ``malloc_trim(0)``, every arena).

    For the ``gafu web`` server process only, after each job: jobs run on Gradio's worker threads,
    each thread allocates from its own glibc arena, and the hundreds of MB a job frees stay cached
    in that arena, so the server's resident memory grew with every new thread and never came back
    (measured: benchmarks/results/soak_web_*). Nothing else changes. False where there is no glibc."""
    from ..optimize.precision import _libc

    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


# ---------------------------------------------------------------------------------------------
# Workspace: the app's own temporary folder, one sub-folder per visitor session
# ---------------------------------------------------------------------------------------------
class Workspace:
    """Folders the app writes into: ``root/sessions/<session>/<kind>-<n>/``. Nothing else."""

    def __init__(self, root: Any) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._count = 0

    def session_dir(self, session: Optional[str]) -> Path:
        name = re.sub(r"[^A-Za-z0-9_-]", "", session or "") or "anonymous"
        return self.root / "sessions" / name[:64]

    def job_dir(self, session: Optional[str], kind: str) -> Path:
        with self._lock:
            self._count += 1
            n = self._count
        d = self.session_dir(session) / f"{kind}-{n:05d}"
        d.mkdir(parents=True, exist_ok=False)
        return d

    def forget(self, session: Optional[str]) -> None:
        """Delete a visitor's folder (when the page is closed)."""
        shutil.rmtree(self.session_dir(session), ignore_errors=True)


class CancelRegistry:
    """One cancel flag per visitor session: the Cancel button sets the flag of the running job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: Dict[str, threading.Event] = {}

    def start(self, session: Optional[str]) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._flags[session or ""] = flag
        return flag

    def cancel(self, session: Optional[str]) -> bool:
        with self._lock:
            flag = self._flags.get(session or "")
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def finish(self, session: Optional[str], flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(session or "") is flag:
                del self._flags[session or ""]


# ---------------------------------------------------------------------------------------------
# Stylize (optimization) with live progress
# ---------------------------------------------------------------------------------------------
@dataclass
class StylizeUpdate:
    """What the page shows while a run goes on; ``done`` on the last one (with the files)."""

    step: int
    steps: int
    loss: Optional[float]
    elapsed: float
    image: Any = None  # PIL preview (None when this update has no new image)
    history: Dict[str, List[float]] = field(default_factory=dict)
    done: bool = False
    cancelled: bool = False
    result_path: Optional[Path] = None
    report_path: Optional[Path] = None  # the run report as a zip
    message: str = ""


#: Frames kept for the run report (progress sheet and animation).
REPORT_FRAMES = 12


def stylize_job(
    content: Any,
    styles: Sequence[Any],
    out_dir: Path,
    *,
    preset: str = "fast",
    size: int = 256,
    steps: int = 100,
    strength: Optional[float] = 0.5,
    style_weights: Optional[Sequence[float]] = None,
    preserve_color: str = "none",
    style_scale: float = 1.0,
    mask: Any = None,
    preview_every: int = 5,
    cancel: Optional[threading.Event] = None,
    device: str = "cpu",
    weights: Any = None,
) -> Iterator[StylizeUpdate]:
    """Run :class:`gafu.optimize.StyleTransfer` and yield an update with a preview every
    ``preview_every`` steps. When ``cancel`` is set the run stops after the current step and the
    image so far becomes the result. The last update has the PNG and the zipped run report
    (``gafu.report.write_run_report``), written into ``out_dir``."""
    from ..config import get_preset
    from ..image import load, save_image, to_pil
    from ..optimize import StyleTransfer
    from ..report import loss_history, write_run_report

    if not styles:
        raise GafuError("choose at least one style image (upload one or pick an example)", argument="styles")
    cfg = get_preset(preset).replace(
        size=int(size), steps=int(steps), strength=strength, preserve_color=preserve_color,
        style_scale=float(style_scale),
    )
    content_im = load(content)
    style_ims = [load(s) for s in styles]
    t0 = time.perf_counter()
    st = StyleTransfer(content_im, style_ims, cfg, style_weights=style_weights, mask=mask, device=device,
                       weights=weights)
    prepare_s = time.perf_counter() - t0
    initial = to_pil(st.image)
    keep_every = max(1, preview_every * max(1, math.ceil(cfg.steps / preview_every / REPORT_FRAMES)))
    iterates: list = []
    cancelled = False
    last = None
    run = st.run(image_every=preview_every)
    try:
        for it in run:
            last = it
            keep = it.image is not None and it.step % keep_every == 0
            iterates.append(it if keep else dataclasses.replace(it, image=None))
            if it.image is not None:
                yield StylizeUpdate(it.step, it.steps, it.loss, it.elapsed, to_pil(it.image),
                                    loss_history(iterates))
            else:
                yield StylizeUpdate(it.step, it.steps, it.loss, it.elapsed)
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
    finally:
        run.close()
    final = to_pil(st.image)
    if iterates and iterates[-1].image is None:  # the last frame of the report is the result
        iterates[-1] = dataclasses.replace(iterates[-1], image=st.image)
    report_dir = out_dir / "report"
    result = save_image(final, report_dir / "result.png")
    settings = cfg.to_dict()
    settings.update(content=_describe(content), styles=[_describe(s) for s in styles],
                    style_weights=list(style_weights) if style_weights is not None else None,
                    mask=mask is not None, device=device, preview_every=preview_every)
    summary = {
        "output": str(result),
        "steps_done": st.steps_done,
        "cancelled": cancelled,
        "final_loss": last.loss if last is not None else None,
        "final_terms": last.terms if last is not None else {},
    }
    if iterates:
        write_run_report(report_dir, iterates, settings=settings, summary=summary, initial=initial,
                         timings={"prepare_seconds": prepare_s}, overwrite=True)
    zip_path = out_dir / "gafu-run-report.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(report_dir.iterdir()):
            zf.write(f, f"gafu-run-report/{f.name}")
    elapsed = last.elapsed if last is not None else 0.0
    word = "cancelled" if cancelled else "done"
    yield StylizeUpdate(
        st.steps_done, last.steps if last is not None else cfg.steps, summary["final_loss"], elapsed,
        final, loss_history(iterates), done=True, cancelled=cancelled, result_path=result,
        report_path=zip_path,
        message=f"{word}: {st.steps_done} steps in {elapsed:.1f} s at {final.width}x{final.height} px",
    )


def _describe(x: Any) -> str:
    return Path(x).name if isinstance(x, (str, Path)) else type(x).__name__


# ---------------------------------------------------------------------------------------------
# One-shot jobs
# ---------------------------------------------------------------------------------------------
def fast_job(
    content: Any,
    style: Any = None,
    *,
    builtin: Optional[int] = None,
    strength: float = 1.0,
    preserve_color: bool = False,
    max_size: Optional[int] = None,
    device: str = "cpu",
):
    """``gafu.fast.FastStylizer`` on one photo; returns its result (``.image``, ``.seconds``, ...)."""
    from ..fast import FastStylizer

    if (style is None) == (builtin is None):
        raise GafuError("choose a style image or a built-in style (one of the two)")
    fs = FastStylizer(style=style, builtin=builtin, strength=float(strength), preserve_color=bool(preserve_color),
                      max_size=max_size, device=device)
    return fs.run(content)


def classify_job(image: Any, top: int = 5, device: str = "cpu") -> Dict[str, float]:
    """Top-``top`` ImageNet classes: ``{label: probability}`` (EfficientNet-Lite0 unless VGG19
    head weights are configured)."""
    from ..classify import classify

    res = classify(image, top=top, device=device)
    return {p.names: float(p.probability) for p in res.predictions}


def analyze_job(content: Any, result: Any, out_dir: Path):
    """The seed's closing diagnostics for content vs result: (figure PNG path, numbers dict)."""
    from ..analysis import analysis_figure, analyze, pair_tensors, save_figure

    c, r = pair_tensors(content, result)
    numbers = analyze(c, r)
    fig = analysis_figure(c, r, numbers=numbers, dpi=80)
    path = save_figure(fig, out_dir / "analysis.png")
    return path, numbers


def layers_job(image: Any = None) -> List[List[Any]]:
    """VGG19's layer table (name, aliases, kind, output shape, parameters) for an image's size."""
    from ..analysis import layer_table
    from ..image import load

    size = (224, 224)
    if image is not None:
        w, h = load(image).size
        size = (h, w)
    rows = layer_table(size)
    return [[r["name"], ", ".join(r.get("aliases") or ()), r["kind"], "x".join(map(str, r["output_shape"])),
             r["params"]] for r in rows]
