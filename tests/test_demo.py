"""gafu demo: the workflow's settings and time limit, the page (structure, escaping, links), the CLI."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
from PIL import Image

from gafu.cli import main
from gafu.config import get_preset
from gafu.demo_page import DIAGNOSTICS, PAGE, DemoPage, page_files, render_html, write_demo_page
from gafu.errors import GafuError
from gafu.result import StyleResult
from gafu.workflows.demo import (
    PAIRS,
    QUICK_SIZE,
    DemoPair,
    DemoRun,
    PairResult,
    demo_config,
    plan_text,
    run_optimization,
)


class _Page(HTMLParser):
    """Collects tags, attributes and text of a page."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag):
        return [a for t, a in self.tags if t == tag]


def parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    p.close()
    return p


def _fake_item(pair: DemoPair, size=(30, 20), steps=(3, 5)) -> PairResult:
    cfg = demo_config(size=64)
    w, h = size
    fast = StyleResult(torch.rand(1, 3, h, w), method="fast", seconds=0.42,
                       settings={"mode": "arbitrary", "strength": 1.0, "style_size": 256}, info={"tiles": 1})
    done, planned = steps
    opt = StyleResult(torch.rand(1, 3, h, w), method="optimize", seconds=12.3, settings=cfg.to_dict(),
                      timings={"prepare": 1.5, "loop": 10.8},
                      info={"steps": done, "planned_steps": planned, "stop_reason": "time limit",
                            "final_loss": {"style": 2.0e6, "content": 1.0e6, "tv": 0.0, "total": 3.0e6},
                            "precision": "bf16"})
    history = {"step": list(range(1, done + 1)), "elapsed": [0.1 * i for i in range(done)],
               "total": [10.0 / (i + 1) for i in range(done)], "style": [6.0 / (i + 1) for i in range(done)],
               "content": [4.0 / (i + 1) for i in range(done)], "tv": [0.0] * done}
    return PairResult(pair=pair, fast=fast, optimized=opt, history=history)


@pytest.fixture
def odd_pair(tmp_path):
    """A pair whose file names need escaping in HTML and quoting in URLs."""
    src = tmp_path / "src"
    src.mkdir()
    content = src / "<b>cat & 'dog\".png"
    style = src / "paint #1 <i>.png"
    Image.new("RGB", (30, 20), (200, 100, 50)).save(content)
    Image.new("RGB", (24, 24), (20, 40, 200)).save(style)
    return DemoPair(content, style)


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def test_demo_config_quick_and_full():
    quick = demo_config()
    assert quick.size == QUICK_SIZE and quick.scales == (0.5,) and quick.scale_steps
    assert quick.optimizer == "lbfgs"  # the preset's own optimizer and loss
    assert plan_text(quick) == f"{quick.scale_steps[0]} steps at {QUICK_SIZE // 2} px + {quick.steps} at {QUICK_SIZE} px"
    small = demo_config(size=64, steps=3)
    assert small.scales == () and small.steps == 3 and plan_text(small) == "3 steps at 64 px"
    assert demo_config(full=True) == get_preset("fast")  # --full: the preset unchanged
    assert demo_config("seed", full=True, steps=7).steps == 7
    assert demo_config("seed").optimizer == "adam"


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------
def test_page_structure_escaping_and_links(tmp_path, odd_pair):
    items = [_fake_item(odd_pair), _fake_item(PAIRS[0], size=(45, 30))]
    run = DemoRun(config=demo_config(size=64), pairs=items, device="cpu", time_limit=40.0, full=False, seconds=61.0)
    out = tmp_path / "demo"
    path = write_demo_page(out, run)
    assert path == out / PAGE
    text = path.read_text(encoding="utf-8")
    page = parse(text)

    # structure: one section per pair with content, style, fast and optimized side by side
    assert text.startswith("<!doctype html>") and "<title>gafu demo</title>" in text
    assert len(page.all("figure")) >= 4 * len(items) + len(items)  # + one loss figure per pair
    alts = [a.get("alt", "") for a in page.all("img")]
    for item in items:
        p = item.pair
        expected = {"content: ": p.content_path.stem, "style: ": p.style_path.stem, "fast result: ": p.title,
                    "optimized result: ": p.title}
        for role, name in expected.items():
            assert any(a == role + name for a in alts), (role, name)
    assert "Diagnostics" in text and "Loss curves" in text
    assert "http-equiv" not in text  # a finished page does not reload itself
    assert "3 of 5, time limit" in text and "12.3 s (setup 1.5 s)" in text and "0.4 s" in text

    # escaping: the odd names appear only escaped; no tag from a file name got through
    assert "<b>cat" not in text and "<i>" not in text
    assert "&lt;b&gt;cat &amp; &#x27;dog&quot;" in text
    assert {t for t, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "main", "header", "h1",
                                         "small", "p", "b", "section", "h2", "div", "figure", "img", "figcaption",
                                         "dl", "dt", "dd", "table", "tr", "th", "td", "pre", "code", "footer"}

    # links: relative, inside the folder, to files that exist; nothing external
    srcs = [a["src"] for a in page.all("img")]
    assert srcs and not page.all("script") and not page.all("link")
    for src in srcs:
        assert "://" not in src and not src.startswith("/") and ".." not in src
        assert (out / unquote(src)).is_file(), src
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        page_files([odd_pair, PAIRS[0]]))
    with Image.open(out / DIAGNOSTICS) as im:
        assert im.width > 500  # a real figure, 5 panels wide
    with Image.open(out / f"{odd_pair.name}.png") as im:
        assert im.size == (30, 20)


def test_page_fills_in_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    cfg = demo_config(size=64)
    page = DemoPage(out, PAIRS, config=cfg)
    item = _fake_item(PAIRS[0])
    item.optimized = None
    page.add(item)
    text = page.path.read_text(encoding="utf-8")
    assert "http-equiv='refresh'" in text  # reloads while results are missing
    assert text.count("optimizing…") == 2 and text.count("fast network: waiting") == 1
    srcs = [a["src"] for a in parse(text).all("img")]
    assert all((out / unquote(s)).is_file() for s in srcs)
    assert not (out / f"{PAIRS[0].name}.png").exists()

    with pytest.raises(GafuError, match=r"already exists; pass overwrite=True"):
        DemoPage(out, PAIRS, config=cfg)
    DemoPage(out, PAIRS, config=cfg, overwrite=True)  # allowed with overwrite
    (tmp_path / "file").write_text("x")
    with pytest.raises(GafuError, match="is a file"):
        DemoPage(tmp_path / "file", PAIRS)


def test_render_html_links_only_to_written_files():
    item = _fake_item(PAIRS[1])
    text = render_html([item], files={f"{PAIRS[1].name}.png": True})
    srcs = [a["src"] for a in parse(text).all("img")]
    assert srcs == [f"{PAIRS[1].name}.png"]


# ---------------------------------------------------------------------------------------------
# Real runs at tiny sizes (real VGG19 and Magenta weights)
# ---------------------------------------------------------------------------------------------
def test_time_limit_stops_each_stage_and_ends_at_full_size():
    cfg = demo_config(size=64, steps=20).replace(scales=(0.5,), scale_steps=(20,))
    seen = []
    result, history = run_optimization(PAIRS[0], cfg, time_limit=1e-6, on_step=lambda it: seen.append(it.step))
    # one step per stage (each stage stops at its share of the limit), numbered across stages
    assert seen == [1, 2] and history["step"] == [1, 2]
    info = result.info
    assert info["stop_reason"] == "time limit" and info["steps"] == 2 and info["planned_steps"] == 40
    assert max(result.size) == 64 and set(info["final_loss"]) >= {"style", "content", "total"}
    with pytest.raises(GafuError, match="time_limit"):
        run_optimization(PAIRS[0], cfg, time_limit=0)


def test_cli_demo_writes_page_and_prints_its_path_last(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "-o", str(out), "--size", "32", "--steps", "2"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    page = out / PAGE
    assert stdout.strip().splitlines()[-1] == str(page)
    lines = err.strip().splitlines()
    fast = [i for i, line in enumerate(lines) if line.startswith("fast ")]
    opt = [i for i, line in enumerate(lines) if line.startswith("optimized ")]
    assert len(fast) == 2 and len(opt) == 2 and max(fast) < min(opt)  # fast results first
    assert all(" s)" in lines[i] for i in fast + opt)  # each line says how long it took
    page_text = page.read_text(encoding="utf-8")
    for src in (a["src"] for a in parse(page_text).all("img")):
        assert (out / unquote(src)).is_file()
    assert "http-equiv" not in page_text and (out / DIAGNOSTICS).is_file()

    code = main(["demo", "-o", str(out), "--size", "32", "--steps", "1", "--overwrite", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["page"] == str(page) and len(summary["results"]) == 2
    assert all(r["steps"] == 1 and Path(r["losses"]).is_file() for r in summary["results"])
    assert summary["time_limit"] == 40.0 and not err.strip()  # --json: no progress lines

    code = main(["demo", "-o", str(out), "--size", "32", "--steps", "1", "--time-limit", "-1"])
    assert code == 2
