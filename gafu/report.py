"""Visual reports (rendering only): labelled contact sheets, comparison sheets, loss figures, and
the report of a stylization run. Running stylizations is the workflows' job (:mod:`gafu.workflows`).

Images are composed with Pillow; plots are drawn with matplotlib on the Agg canvas (no pyplot).
Nothing here prints; files are written only by the functions whose job it is
(:func:`write_run_report`), atomically, and never over an existing file without ``overwrite``.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from PIL import Image, ImageDraw, ImageFont

from .errors import GafuError
from .image import ImageLike, atomic_write, load, to_pil

Cell = Optional[Tuple[str, Any]]  # (label, image) or None for an empty cell

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)

#: Files a run report writes (names relative to its folder).
REPORT_FILES = ("report.json", "losses.png", "progress.png", "progress.gif", "index.html")


# ---------------------------------------------------------------------------------------------
# Contact sheets
# ---------------------------------------------------------------------------------------------
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable font when Pillow has FreeType
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        import torch

        if isinstance(image, torch.Tensor):
            return to_pil(image)
    except ImportError:  # pragma: no cover
        pass
    return load(image)


def _fit(im: Image.Image, box: int) -> Image.Image:
    scale = box / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS) if size != im.size else im


def contact_sheet(
    rows: Sequence[Sequence[Cell]],
    *,
    cell: int = 256,
    title: Optional[str] = None,
    pad: int = 8,
    font_size: int = 14,
) -> Image.Image:
    """A labelled grid: ``rows`` of ``(label, image)`` cells (None leaves a cell empty).

    Each image is fitted into a ``cell`` x ``cell`` box (aspect kept, centred horizontally, on the row's baseline; a row is as tall as
    its tallest picture) with its label under it; an optional title goes on top. Labels too wide
    for a cell are shortened with '…'. Returns an RGB PIL image of width ``cols*(cell+pad)+pad``.
    """
    if not rows or not any(rows):
        raise GafuError("a contact sheet needs at least one image")
    if cell < 16:
        raise GafuError(f"contact sheet cells must be at least 16 px, got {cell}")
    cols = max(len(r) for r in rows)
    font = _font(font_size)
    title_font = _font(font_size + 4)
    line = font_size + 6
    title_h = (font_size + 4 + 12) if title else 0
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    fitted = [
        [None if item is None else (_wrap(measure, str(item[0]), font, cell), _fit(_as_pil(item[1]), cell)) for item in row]
        for row in rows
    ]
    row_h = [max([im.height for _, im in filter(None, row)] or [0]) for row in fitted]
    row_lines = [max([len(lines) for lines, _ in filter(None, row)] or [0]) for row in fitted]
    width = cols * (cell + pad) + pad
    height = title_h + pad + sum(h + n * line + pad for h, n in zip(row_h, row_lines))
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad // 2 + 2), _shorten(draw, title, title_font, width - 2 * pad), fill=TEXT, font=title_font)
    y0 = title_h + pad
    for row, h, n in zip(fitted, row_h, row_lines):
        for c, item in enumerate(row):
            if item is None:
                continue
            lines, im = item
            x0 = pad + c * (cell + pad)
            sheet.paste(im, (x0 + (cell - im.width) // 2, y0 + h - im.height))  # bottom: label right under
            for k, text in enumerate(lines):
                tw = draw.textlength(text, font=font)
                draw.text((x0 + (cell - tw) / 2, y0 + h + 3 + k * line), text, fill=TEXT, font=font)
        y0 += h + n * line + pad
    return sheet


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float, max_lines: int = 2) -> List[str]:
    """Break ``text`` into at most ``max_lines`` lines that fit ``width`` (at spaces, '_' or '-'
    when possible); the last line is shortened with '…' if needed."""
    lines: List[str] = []
    rest = text.strip()
    while rest and len(lines) < max_lines - 1 and draw.textlength(rest, font=font) > width:
        cut = 0
        for i, ch in enumerate(rest):
            if ch in " _-" and draw.textlength(rest[: i + 1].rstrip(), font=font) <= width:
                cut = i + 1
        if cut == 0:  # no separator fits: break inside the word
            cut = max(1, len(rest))
            while cut > 1 and draw.textlength(rest[:cut], font=font) > width:
                cut -= 1
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        lines.append(_shorten(draw, rest, font, width))
    return lines or [""]


def _shorten(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


# ---------------------------------------------------------------------------------------------
# Style comparison (the seed's "which one do you prefer?")
# ---------------------------------------------------------------------------------------------
def comparison_sheet(
    content: ImageLike,
    styles: Sequence[ImageLike],
    results: Sequence[ImageLike],
    *,
    style_labels: Optional[Sequence[str]] = None,
    content_label: str = "content",
    title: Optional[str] = None,
    cell: int = 256,
) -> Image.Image:
    """Top row: content, then each style; bottom row: each result under its style."""
    if len(styles) != len(results):
        raise GafuError(f"{len(styles)} styles but {len(results)} results")
    labels = list(style_labels) if style_labels is not None else [f"style {i + 1}" for i in range(len(styles))]
    top: List[Cell] = [(content_label, content)] + [(f"style: {lab}", s) for lab, s in zip(labels, styles)]
    bottom: List[Cell] = [None] + [(f"result: {lab}", r) for lab, r in zip(labels, results)]
    return contact_sheet([top, bottom], cell=cell, title=title)


# ---------------------------------------------------------------------------------------------
# Run reports
# ---------------------------------------------------------------------------------------------
def _get(it: Any, key: str, default=None):
    if isinstance(it, Mapping):
        return it.get(key, default)
    return getattr(it, key, default)


def loss_history(iterates: Sequence[Any]) -> Dict[str, List[float]]:
    """Columns of a run: ``step``, ``elapsed``, ``total`` and one list per loss term."""
    cols: Dict[str, List[float]] = {"step": [], "elapsed": [], "total": []}
    for it in iterates:
        cols["step"].append(int(_get(it, "step")))
        cols["elapsed"].append(float(_get(it, "elapsed", 0.0)))
        cols["total"].append(float(_get(it, "loss")))
        for k, v in (_get(it, "terms") or {}).items():
            cols.setdefault(k, []).append(float(v))
    return cols


def loss_figure(history: Mapping[str, Sequence[float]], *, steps_per_epoch: int = 0, title: str = "Loss", dpi: int = 100):
    """Loss curves of every term (log scale; terms that stay 0 are listed in the legend but not drawn)."""
    from .analysis import new_figure

    fig = new_figure(8.0, 4.5, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    steps = list(history["step"])
    colours = {"total": "black", "style": "tab:red", "content": "tab:blue", "tv": "tab:green"}
    for key in ["total"] + [k for k in history if k not in ("step", "elapsed", "total")]:
        ys = list(history[key])
        if not ys:
            continue
        positive = [y for y in ys if y > 0]
        if not positive:
            ax.plot([], [], label=f"{key} (0 throughout)", color=colours.get(key, None), linestyle=":")
            continue
        ys = [y if y > 0 else float("nan") for y in ys]
        ax.plot(steps, ys, label=f"{key} (last {ys[-1]:.4g})", color=colours.get(key, None),
                linewidth=2.0 if key == "total" else 1.3)
    if steps and steps_per_epoch and steps[-1] > steps_per_epoch:
        for s in range(steps_per_epoch, steps[-1] + 1, steps_per_epoch):
            ax.axvline(s, color="0.85", linewidth=0.8, zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss (log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if steps:
        ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
    if ax.get_legend_handles_labels()[0]:  # an empty run has no curves to name
        ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    return fig


def progress_frames(iterates: Sequence[Any], initial: Optional[Any] = None) -> List[Tuple[int, Image.Image]]:
    """``(step, image)`` for every iterate that carries an image, after ``initial`` as step 0."""
    frames: List[Tuple[int, Image.Image]] = []
    if initial is not None:
        frames.append((0, _as_pil(initial)))
    for it in iterates:
        img = _get(it, "image")
        if img is not None:
            frames.append((int(_get(it, "step")), _as_pil(img)))
    return frames


def save_animation(frames: Sequence[Image.Image], path: Union[str, os.PathLike], *, seconds_per_frame: float = 0.4,
                   hold_last: float = 1.5) -> Path:
    """An animated GIF (or WebP, by extension) of the frames, looping, last frame held longer."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".gif", ".webp"):
        raise GafuError(f"animations are .gif or .webp, got '{p.name}'")
    if not frames:
        raise GafuError("no frames to animate")
    ims = [f.convert("RGB") for f in frames]
    durations = [int(seconds_per_frame * 1000)] * len(ims)
    durations[-1] = int(hold_last * 1000)
    kwargs: Dict[str, Any] = {"save_all": True, "append_images": ims[1:], "duration": durations, "loop": 0}
    if ext == ".gif":
        ims = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG) for im in ims]
        kwargs["append_images"] = ims[1:]
        kwargs["optimize"] = False
        fmt = "GIF"
    else:
        kwargs["quality"] = 90
        fmt = "WEBP"
    atomic_write(p, lambda fh: ims[0].save(fh, format=fmt, **kwargs))
    return p


def check_report_dir(directory: Union[str, os.PathLike], *, overwrite: bool = False) -> Path:
    """Validate a report folder before any work: not a file, and no report files in it unless overwrite."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise GafuError(f"report folder is a file: {d}")
    if not overwrite:
        for name in REPORT_FILES:
            if (d / name).exists():
                raise GafuError(f"{d / name} already exists; pass overwrite=True to replace the report", argument="overwrite")
    return d


def write_run_report(
    directory: Union[str, os.PathLike],
    iterates: Sequence[Any],
    *,
    settings: Mapping[str, Any],
    summary: Mapping[str, Any],
    initial: Optional[Any] = None,
    timings: Optional[Mapping[str, Any]] = None,
    cell: int = 192,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Write the report of a stylization run into ``directory`` and return what report.json holds.

    Args:
        iterates: the run's :class:`gafu.optimize.Iterate` objects (or dicts with step, loss,
            terms, elapsed, image); the images present on some of them become the frames.
        settings: the run's settings (e.g. ``StyleConfig.to_dict()`` plus inputs).
        summary: final numbers (e.g. final loss terms, output path).
        initial: the starting image, shown as step 0.
        timings: extra timings (seconds) to record.

    Files: ``report.json`` (settings, summary, timings, per-step history), ``losses.png`` (loss
    curves of every term), ``progress.png`` (contact sheet of the intermediate images),
    ``progress.gif`` (animation of the optimization), ``index.html`` (all of it on one page).
    """
    d = check_report_dir(directory, overwrite=overwrite)
    from .analysis import save_figure

    history = loss_history(iterates)
    frames = progress_frames(iterates, initial)
    spe = int(settings.get("steps_per_epoch", 0) or 0)
    d.mkdir(parents=True, exist_ok=True)
    files: Dict[str, str] = {}

    fig = loss_figure(history, steps_per_epoch=spe, title=f"Loss terms per step ({len(history['step'])} steps)")
    files["losses"] = str(save_figure(fig, d / "losses.png"))
    if frames:
        cols = min(len(frames), 6)
        rows = [
            [(f"step {s}", im) for s, im in frames[i : i + cols]] for i in range(0, len(frames), cols)
        ]
        sheet = contact_sheet(rows, cell=cell, title="Intermediate images")
        from .image import save_image

        files["progress_sheet"] = str(save_image(sheet, d / "progress.png"))
        anim = [_caption(im, f"step {s}") for s, im in frames]
        files["animation"] = str(save_animation(anim, d / "progress.gif"))
    elapsed = history["elapsed"][-1] if history["elapsed"] else 0.0
    n = len(history["step"])
    t = {"optimize_seconds": round(elapsed, 4), "seconds_per_step": round(elapsed / n, 5) if n else None}
    if timings:
        t.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()})
    report = {
        "schema": "gafu.run-report/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": dict(settings),
        "summary": dict(summary),
        "timings": t,
        "frames": [s for s, _ in frames],
        "files": {k: Path(v).name for k, v in files.items()},
        "history": history,
    }
    files["json"] = str(d / "report.json")
    atomic_write(d / "report.json", lambda fh: fh.write(json.dumps(report, indent=2, default=json_default).encode()))
    result_src = None
    output = summary.get("output")
    if output and Path(output).is_file():
        result_src = Path(os.path.relpath(Path(output).resolve(), d.resolve())).as_posix()
    atomic_write(d / "index.html", lambda fh: fh.write(_html(report, result_src).encode("utf-8")))
    report["files"]["json"] = "report.json"
    report["files"]["html"] = "index.html"
    return report


def _caption(im: Image.Image, text: str) -> Image.Image:
    out = im.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = _font(max(10, min(out.size) // 14))
    x, y = 4, 4
    box = draw.textbbox((x, y), text, font=font)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return out


def json_default(obj: Any) -> Any:
    """``json.dump(default=...)`` for gafu's summaries: paths, tuples, numpy/torch scalars, non-finite floats."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _html(report: Mapping[str, Any], result_src: Optional[str] = None) -> str:
    esc = html.escape

    def table(d: Mapping[str, Any]) -> str:
        rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in d.items())
        return f"<table>{rows}</table>"

    files = report.get("files", {})
    parts = [
        "<!doctype html><meta charset='utf-8'><title>gafu run report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}th{text-align:left;padding-right:1em}"
        "img{max-width:100%}</style>",
        f"<h1>gafu run report</h1><p>{esc(str(report.get('created', '')))}</p>",
        "<h2>Result</h2>" + (f"<img src='{esc(result_src)}' alt='result'>" if result_src else "")
        + table(report.get("summary", {})),
        "<h2>Timings</h2>" + table(report.get("timings", {})),
    ]
    if "losses" in files:
        parts.append(f"<h2>Loss curves</h2><img src='{esc(files['losses'])}' alt='loss curves'>")
    if "animation" in files:
        parts.append(f"<h2>Optimization</h2><img src='{esc(files['animation'])}' alt='animation'>")
    if "progress_sheet" in files:
        parts.append(f"<img src='{esc(files['progress_sheet'])}' alt='intermediate images'>")
    parts.append("<h2>Settings</h2>" + table(report.get("settings", {})))
    parts.append("<p>Per-step numbers: <a href='report.json'>report.json</a></p>")
    return "\n".join(parts) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def __getattr__(name: str):
    # compare_styles ran stylizations inside this rendering module; it now lives in gafu.workflows.
    if name in ("compare_styles", "Comparison", "COMPARE_METHODS"):
        from .workflows import compare

        return getattr(compare, name)
    raise AttributeError(f"module 'gafu.report' has no attribute '{name}'")
