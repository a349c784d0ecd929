"""The demo's page: one HTML file with the pictures of :func:`gafu.workflows.demo.run_demo`.

For each pair: content, style, fast result and optimized result side by side, with the settings and
timings under each; then the high-pass / Sobel diagnostics of one pair
(:func:`gafu.analysis.analysis_figure`) and the loss curves (:func:`gafu.report.loss_figure`).
Everything the page shows is a file next to it, linked relatively (the folder can be moved or
zipped); no scripts, fonts or other external resources. Every text is HTML-escaped.

:class:`DemoPage` writes the page as results come in (a page that is still being made reloads
itself every few seconds); :func:`write_demo_page` writes a finished run in one call. Files are
written atomically and, without ``overwrite``, never over existing ones: all paths are checked
when the page is created, before any work.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from .errors import GafuError
from .image import atomic_write, check_output_path, save_image
from .workflows.demo import DemoPair, DemoRun, PairResult, data_path, plan_text

PAGE = "index.html"
INPUTS = "inputs"  # sub-folder for copies of the photos and paintings
DIAGNOSTICS = "diagnostics.png"
#: Seconds between reloads of a page that is still being made.
REFRESH_SECONDS = 5

esc = html.escape


def credits() -> Dict[str, Dict[str, str]]:
    """Title, author and licence of the bundled images, from ``gafu/data/CREDITS.md`` (file -> dict)."""
    try:
        text = data_path("CREDITS.md").read_text(encoding="utf-8")
    except OSError:
        return {}
    out: Dict[str, Dict[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.search(r"\.(jpe?g|png)$", cells[0], re.I):
            out[cells[0]] = {"title": cells[1], "author": cells[2], "licence": cells[3]}
    return out


def pair_files(pair: DemoPair) -> Dict[str, str]:
    """Names (relative to the page's folder) of one pair's files."""
    return {
        "content": f"{INPUTS}/{pair.content_path.name}",
        "style": f"{INPUTS}/{pair.style_path.name}",
        "fast": f"{pair.name}_fast.png",
        "optimized": f"{pair.name}.png",
        "losses": f"losses_{pair.name}.png",
    }


def page_files(pairs: Sequence[DemoPair]) -> List[str]:
    """Every file the page writes, relative to its folder (index.html last)."""
    names: List[str] = []
    for p in pairs:
        names += [n for n in pair_files(p).values() if n not in names]
    return names + [DIAGNOSTICS, PAGE]


def href(name: str) -> str:
    """A relative link to ``name`` (a POSIX path under the page's folder), URL-quoted and escaped."""
    if name.startswith("/") or ".." in Path(name).parts or re.match(r"^[a-z][a-z0-9+.-]*:", name, re.I):
        raise GafuError(f"page links stay inside the page's folder, got {name!r}")
    return esc(quote(name), quote=True)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
STYLE = """
:root{--fg:#1b1b1b;--muted:#5d5d5d;--line:#e3e3e3;--bg:#fafaf8;--card:#fff;--accent:#8a3b12}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:28px;margin:0 0 4px}h1 small{font-size:15px;color:var(--muted);font-weight:normal}
h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
p{margin:6px 0}.muted{color:var(--muted)}.note{font-size:13px;color:var(--muted)}
.running{background:#fff6d8;border:1px solid #ecd58a;padding:6px 10px;border-radius:6px}
.row{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;align-items:start}
@media (max-width:800px){.row{grid-template-columns:repeat(2,minmax(0,1fr))}}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px}
figure img{display:block;width:100%;height:auto;border-radius:3px}
figcaption{font-size:12.5px;margin-top:6px}figcaption b{font-size:13.5px;color:var(--accent)}
dl{display:grid;grid-template-columns:auto 1fr;gap:1px 8px;margin:4px 0 0}dt{color:var(--muted)}dd{margin:0}
.pending{display:flex;align-items:center;justify-content:center;aspect-ratio:3/2;background:#eee;
color:var(--muted);border-radius:3px;font-size:13px}
.wide img{width:100%;height:auto}.two{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
table{border-collapse:collapse;font-size:13px}th,td{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:normal}code,pre{font:13px ui-monospace,Menlo,Consolas,monospace}
pre{background:#f0efeb;padding:8px 10px;border-radius:6px;overflow-x:auto}
"""


def _seconds(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 100 else f"{s / 60:.1f} min"


def _dl(rows: Sequence[Sequence[Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(str(k))}</dt><dd>{esc(str(v))}</dd>" for k, v in rows) + "</dl>"


def _size(wh) -> str:
    return f"{wh[0]}×{wh[1]} px"


def _figure(src: Optional[str], alt: str, title: str, rows: Sequence[Sequence[Any]], extra: str = "") -> str:
    img = f"<img src='{href(src)}' alt='{esc(alt, quote=True)}'>" if src else f"<div class='pending'>{esc(alt)}</div>"
    return f"<figure>{img}<figcaption><b>{esc(title)}</b>{extra}{_dl(rows)}</figcaption></figure>"


def _image_size(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError:
        return None


def _input_figure(path: Path, src: str, role: str, credit: Mapping[str, str]) -> str:
    rows: List[Sequence[Any]] = []
    if credit:
        rows += [("title", credit.get("title", "")), ("by", credit.get("author", "")),
                 ("licence", credit.get("licence", ""))]
    else:
        rows.append(("file", path.name))
    wh = _image_size(path)
    if wh:
        rows.append(("size", _size(wh)))
    return _figure(src, f"{role}: {path.stem}", role.capitalize(), rows)


def _fast_rows(item: PairResult) -> List[Sequence[Any]]:
    r = item.fast
    s = r.settings
    rows: List[Sequence[Any]] = [
        ("network", "Magenta arbitrary style (onnxruntime)"),
        ("size", _size(r.size)),
        ("strength", f"{s.get('strength', 1.0):g}"),
        ("style seen at", f"{s.get('style_size')} px short side") if s.get("style_size") else ("mode", s.get("mode", "")),
    ]
    if r.tiles > 1:
        rows.append(("tiles", r.tiles))
    rows.append(("time", _seconds(r.seconds)))
    return rows


def _optimized_rows(item: PairResult) -> List[Sequence[Any]]:
    r = item.optimized
    s = r.settings
    info = r.info
    optimizer = "L-BFGS" if s.get("optimizer") == "lbfgs" else "Adam"
    if s.get("optimizer") == "lbfgs":
        optimizer += f" ({s.get('lbfgs_history')} pairs)"
    else:
        optimizer += f" (lr {s.get('lr'):g})"
    plan = plan_text(_cfg(s))
    steps = f"{info.get('steps')} of {info.get('planned_steps')}"
    reason = {"steps": "all steps done", "converged": "loss stalled", "time limit": "time limit"}.get(
        info.get("stop_reason"), str(info.get("stop_reason")))
    final = info.get("final_loss") or {}
    loss = f"{final.get('total', float('nan')):.3g}"
    if "style" in final and "content" in final:
        loss += f" (style {final['style']:.3g}, content {final['content']:.3g})"
    t = r.timings
    time_text = _seconds(r.seconds)
    if "prepare" in t:
        time_text += f" (setup {_seconds(t['prepare'])})"
    return [
        ("preset", s.get("name", "")),
        ("optimizer", f"{optimizer}, {info.get('precision', s.get('precision'))}"),
        ("plan", plan),
        ("steps", f"{steps}, {reason}"),
        ("size", _size(r.size)),
        ("final loss", loss),
        ("time", time_text),
    ]


def _cfg(settings: Mapping[str, Any]):
    from .config import StyleConfig
    import dataclasses

    names = {f.name for f in dataclasses.fields(StyleConfig)}
    return StyleConfig(**{k: v for k, v in settings.items() if k in names})


def render_html(
    items: Sequence[PairResult],
    *,
    pairs: Optional[Sequence[DemoPair]] = None,
    run: Optional[DemoRun] = None,
    config=None,
    files: Optional[Mapping[str, bool]] = None,
    complete: bool = True,
    diagnostics: Optional[int] = 0,
    created: Optional[str] = None,
) -> str:
    """The page as a string. ``items``: results so far; ``pairs``: all pairs of the run (those
    without results are shown as pending); ``files``: which page files exist (name -> bool; links
    are made only to existing files; default: all)."""
    from . import __version__

    pairs = list(pairs) if pairs is not None else [it.pair for it in items]
    by_pair = {id(it.pair): it for it in items}
    by_name = {it.pair.name: it for it in items}
    cfg = config if config is not None else (run.config if run is not None else None)
    have = (lambda name: True) if files is None else (lambda name: bool(files.get(name)))
    credit = credits()
    created = created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    head = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>gafu demo</title>",
    ]
    if not complete:
        head.append(f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>")
    head.append(f"<style>{STYLE}</style></head><body><main>")

    kind = "full-quality run" if (run is not None and run.full) else "quick run"
    meta = [kind, f"{len(pairs)} pairs"]
    if run is not None and run.seconds:
        meta.append(f"{_seconds(run.seconds)} in all")
    if run is not None:
        meta.append(f"device {run.device}")
    meta += [f"gafu {__version__}", created]
    body = [
        "<header><h1>gafu demo <small>neural style transfer, two ways</small></h1>",
        "<p>Each photo is given the style of a painting in two ways: a <b>fast</b> feed-forward network "
        "(one pass, about a second) and <b>optimization</b> of the pixels against VGG19 features "
        "(Gatys et al.: the photo's content, the painting's Gram statistics), slower and closer to the painting.</p>",
        f"<p class='muted'>{esc(' · '.join(meta))}</p>",
    ]
    if not complete:
        body.append(f"<p class='running'>{esc(f'Still running: this page reloads every {REFRESH_SECONDS} s.')}</p>")
    body.append("</header>")

    for pair in pairs:
        item = by_pair.get(id(pair)) or by_name.get(pair.name)
        f = pair_files(pair)
        cells = [
            _input_figure(pair.content_path, f["content"] if have(f["content"]) else None, "content",
                          credit.get(pair.content_path.name, {})),
            _input_figure(pair.style_path, f["style"] if have(f["style"]) else None, "style",
                          credit.get(pair.style_path.name, {})),
        ]
        if item is not None:
            cells.append(_figure(f["fast"] if have(f["fast"]) else None, f"fast result: {pair.title}",
                                 "Fast network", _fast_rows(item)))
        else:
            cells.append(_figure(None, "fast network: waiting", "Fast network", []))
        if item is not None and item.optimized is not None:
            cells.append(_figure(f["optimized"] if have(f["optimized"]) else None,
                                 f"optimized result: {pair.title}", "Optimization", _optimized_rows(item)))
        else:
            plan = [("plan", plan_text(cfg))] if cfg is not None else []
            cells.append(_figure(None, "optimizing…", "Optimization", plan))
        body.append(f"<section><h2>{esc(pair.title)}</h2><div class='row'>{''.join(cells)}</div></section>")

    if diagnostics is not None and have(DIAGNOSTICS) and 0 <= diagnostics < len(pairs):
        pair = pairs[diagnostics]
        body.append(
            f"<section class='wide'><h2>{esc(f'Diagnostics: {pair.title}')}</h2>"
            f"<img src='{href(DIAGNOSTICS)}' alt='{esc(f'high-pass and Sobel diagnostics of {pair.title}', quote=True)}'>"
            "<p class='note'>Top row the photo, bottom row the optimized result (at the result's size). "
            "Columns: the image; differences between neighbouring pixels down (dy) and across (dx), shown as "
            "clip(2·d + 0.5); Sobel responses, shown as clip(s/4 + 0.5): grey is zero. Style transfer adds "
            "high-frequency texture (a higher total variation, TV); the edge-preservation score is the "
            "correlation of the two images' gradient magnitudes (1 = same edges). "
            "<code>gafu analyze</code> makes this figure for any pair of images.</p></section>"
        )
    curves = [(it, pair_files(it.pair)["losses"]) for it in items if it.optimized is not None]
    curves = [(it, name) for it, name in curves if have(name)]
    if curves:
        figs = "".join(
            f"<figure><img src='{href(name)}' alt='{esc(f'loss curves of {it.pair.title}', quote=True)}'>"
            f"<figcaption>{esc(it.pair.title)}</figcaption></figure>"
            for it, name in curves
        )
        body.append(
            f"<section><h2>Loss curves</h2><div class='two'>{figs}</div>"
            "<p class='note'>Weighted loss terms per optimizer step (log scale). With coarse-to-fine the "
            "first steps run on a smaller image; the dotted line marks the switch to full size, where "
            "the loss jumps (a larger image has more to match) and then falls again.</p></section>"
        )
    if cfg is not None:
        rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in cfg.to_dict().items())
        body.append(f"<section><h2>Optimization settings</h2><table>{rows}</table></section>")
    body.append(
        "<section><h2>Next</h2><pre>"
        + esc(
            "gafu demo --full                      # the same pairs at full quality (the preset unchanged)\n"
            "gafu stylize photo.jpg painting.jpg -o out.png       # optimization, fast preset\n"
            "gafu fast photo.jpg painting.jpg -o out.png          # the fast network\n"
            "gafu analyze photo.jpg out.png -o diagnostics.png    # the figure above"
        )
        + "</pre></section>"
    )
    body.append(f"<footer><p class='note'>{esc('Made by gafu ' + __version__ + '. Images: see the captions; gafu/data/CREDITS.md.')}</p></footer>")
    body.append("</main></body></html>")
    return "\n".join(head + body) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v) if v else "()"
    if v is None:
        return "None"
    return str(v)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def loss_curve_figure(item: PairResult, dpi: int = 80):
    """:func:`gafu.report.loss_figure` of one pair's run, with the coarse-to-fine switch marked."""
    from .report import loss_figure

    s = item.optimized.settings if item.optimized is not None else {}
    fig = loss_figure(item.history, title=f"{item.pair.title}: loss per step", dpi=dpi)
    coarse = sum(s.get("scale_steps") or ())
    steps = item.history.get("step") or []
    if coarse and steps and steps[-1] > coarse:
        ax = fig.axes[0]
        ax.axvline(coarse + 0.5, color="0.4", linestyle=":", linewidth=1.2)
        sizes = [max(1, round(s["size"] * f)) for f in s.get("scales", ())]
        ax.text(coarse + 0.5, 0.02, f" {', '.join(map(str, sizes))} px → {s['size']} px", transform=ax.get_xaxis_transform(),
                fontsize=8, color="0.3", ha="left", va="bottom")
    return fig


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
class DemoPage:
    """The page of a demo run in ``directory``, written as results come in.

    Creating it checks every path it will write (``overwrite=False``: none may exist); then
    :meth:`add` writes a pair's files after each result, :meth:`finish` the diagnostics figure
    and the final page. ``path`` is the page (index.html).
    """

    def __init__(
        self,
        directory: Union[str, os.PathLike],
        pairs: Sequence[DemoPair],
        *,
        config=None,
        overwrite: bool = False,
        diagnostics: Optional[int] = 0,
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise GafuError(f"demo folder is a file: {self.directory}")
        self.pairs = list(pairs)
        if not self.pairs:
            raise GafuError("the demo page needs at least one pair")
        if diagnostics is not None and not 0 <= diagnostics < len(self.pairs):
            raise GafuError(f"diagnostics must be the index of a pair (0..{len(self.pairs) - 1}), got {diagnostics}")
        self.config = config
        self.diagnostics = diagnostics
        self.overwrite = overwrite
        inputs = [p.content_path for p in self.pairs] + [p.style_path for p in self.pairs]
        for name in page_files(self.pairs):
            target = self.directory / name
            if target.suffix.lower() in (".html",):  # check_output_path knows image formats only
                if target.is_dir():
                    raise GafuError(f"output path is a folder: {target}")
                if target.exists() and not overwrite:
                    raise GafuError(f"{target} already exists; pass overwrite=True to replace it", argument="overwrite")
            else:
                check_output_path(target, inputs=inputs, overwrite=overwrite)
        self.path = self.directory / PAGE
        self.written: Dict[str, bool] = {}
        self.items: List[PairResult] = []

    def _save(self, name: str, image) -> None:
        save_image(image, self.directory / name, overwrite=True)  # checked in __init__
        self.written[name] = True

    def _copy(self, name: str, source: Path) -> None:
        if not self.written.get(name):
            data = source.read_bytes()
            atomic_write(self.directory / name, lambda fh: fh.write(data))
            self.written[name] = True

    def _figure(self, name: str, fig) -> None:
        from .analysis import save_figure

        save_figure(fig, self.directory / name)
        self.written[name] = True

    def add(self, item: PairResult, *, complete: bool = False) -> Path:
        """Write what ``item`` has (inputs, fast result; optimized result and loss curves once
        present) and the page. Returns the page's path."""
        f = pair_files(item.pair)
        self._copy(f["content"], item.pair.content_path)
        self._copy(f["style"], item.pair.style_path)
        if not self.written.get(f["fast"]):
            self._save(f["fast"], item.fast.image)
        if item.optimized is not None and not self.written.get(f["optimized"]):
            self._save(f["optimized"], item.optimized.image)
            if item.history.get("step"):
                self._figure(f["losses"], loss_curve_figure(item))
        if all(item is not it for it in self.items):
            self.items.append(item)
        return self.write_html(complete=complete)

    def write_html(self, *, complete: bool = False, run: Optional[DemoRun] = None) -> Path:
        text = render_html(self.items, pairs=self.pairs, run=run, config=self.config, files=self.written,
                           complete=complete, diagnostics=self.diagnostics)
        atomic_write(self.path, lambda fh: fh.write(text.encode("utf-8")))
        self.written[PAGE] = True
        return self.path

    def finish(self, run: DemoRun) -> Path:
        """The diagnostics figure and the finished page (no reloading)."""
        from .analysis import analysis_figure

        for item in run.pairs:
            if all(item is not it for it in self.items):
                self.add(item)
        if self.diagnostics is not None and self.diagnostics < len(run.pairs):
            item = run.pairs[self.diagnostics]
            result = item.optimized if item.optimized is not None else item.fast
            self._figure(DIAGNOSTICS, analysis_figure(item.pair.content_path, result.tensor, panel_inches=2.4, dpi=90))
        if self.config is None:
            self.config = run.config
        return self.write_html(complete=True, run=run)

    def files(self) -> List[Path]:
        """The files written so far."""
        return [self.directory / n for n in page_files(self.pairs) if self.written.get(n)]


def write_demo_page(
    directory: Union[str, os.PathLike], run: DemoRun, *, overwrite: bool = False, diagnostics: Optional[int] = 0
) -> Path:
    """Write the page of a finished :class:`~gafu.workflows.demo.DemoRun`; returns index.html's path."""
    page = DemoPage(directory, [it.pair for it in run.pairs], config=run.config, overwrite=overwrite,
                    diagnostics=diagnostics)
    for item in run.pairs:
        page.add(item)
    return page.finish(run)
