"""gafu.report: contact sheets, run reports, style comparisons."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gafu.errors import GafuError
from gafu.report import (
    REPORT_FILES,
    compare_styles,
    comparison_sheet,
    contact_sheet,
    loss_figure,
    loss_history,
    save_animation,
    write_run_report,
)


def _solid(colour, size=(40, 20)):
    return Image.new("RGB", size, colour)


def test_contact_sheet_layout_and_labels():
    rows = [[("red", _solid((255, 0, 0))), ("green", _solid((0, 255, 0), (20, 40)))], [None, ("blue", _solid((0, 0, 255)))]]
    sheet = contact_sheet(rows, cell=64, pad=8, font_size=12, title="T")
    assert sheet.width == 2 * (64 + 8) + 8
    a = np.asarray(sheet)
    # each picture is scaled to fit a 64 px box and appears once, where its cell is
    red = np.all(a == (255, 0, 0), axis=-1)
    green = np.all(a == (0, 255, 0), axis=-1)
    blue = np.all(a == (0, 0, 255), axis=-1)
    assert red.sum() == 64 * 32 and green.sum() == 32 * 64 and blue.sum() == 64 * 32
    assert np.nonzero(red)[1].max() < 8 + 64 and np.nonzero(blue)[1].min() >= 8 + 64 + 8
    assert np.nonzero(blue)[0].min() > np.nonzero(green)[0].max()  # second row below the first
    # labels: dark pixels just under the red picture
    below = a[np.nonzero(red)[0].max() + 2 : np.nonzero(red)[0].max() + 18, 8 : 8 + 64]
    assert (below.min(axis=-1) < 100).any()
    # the empty cell stays background
    assert (a[np.nonzero(blue)[0].min() :, :8 + 64] == 255).all()


def test_contact_sheet_rejects_nothing():
    with pytest.raises(GafuError):
        contact_sheet([[]])


def test_comparison_sheet_puts_results_under_styles():
    sheet = comparison_sheet(_solid((10, 10, 10)), [_solid((200, 0, 0)), _solid((0, 0, 200))],
                             [_solid((250, 250, 0)), _solid((0, 250, 250))], cell=50)
    assert sheet.width == 3 * (50 + 8) + 8
    with pytest.raises(GafuError):
        comparison_sheet(_solid((0, 0, 0)), [_solid((0, 0, 0))], [])


def _iterates(n=12, every=4, size=(16, 24)):
    its = []
    for i in range(1, n + 1):
        img = torch.full((1, 3, *size), i / n) if i % every == 0 else None
        its.append({"step": i, "steps": n, "loss": 100.0 / i + 1.0, "terms": {"style": 80.0 / i, "content": 1.0 + 20.0 / i, "tv": 0.0},
                    "elapsed": 0.01 * i, "image": img})
    return its


def test_loss_history_columns():
    h = loss_history(_iterates(5, 2))
    assert h["step"] == [1, 2, 3, 4, 5]
    assert h["style"][1] == 40.0 and h["tv"] == [0.0] * 5 and h["total"][0] == 101.0


def test_loss_figure_axes_and_legend():
    fig = loss_figure(loss_history(_iterates()), steps_per_epoch=4)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(s.startswith("tv (0 throughout)") for s in labels) and any(s.startswith("style") for s in labels)


def test_write_run_report(tmp_path):
    its = _iterates()
    out = tmp_path / "rep"
    report = write_run_report(out, its, initial=torch.zeros(1, 3, 16, 24), settings={"steps": 12, "steps_per_epoch": 4},
                              summary={"final_loss": {"total": 9.3}}, timings={"prepare_seconds": 0.5})
    for name in REPORT_FILES:
        assert (out / name).is_file()
    data = json.loads((out / "report.json").read_text())
    assert list(data) == ["schema", "created", "settings", "summary", "timings", "frames", "files", "history"]
    assert data["schema"] == "gafu.run-report/1"
    assert data["frames"] == [0, 4, 8, 12]
    assert data["history"]["step"] == list(range(1, 13))
    assert data["history"]["style"][3] == pytest.approx(20.0)
    assert data["timings"]["optimize_seconds"] == pytest.approx(0.12)
    assert data["timings"]["prepare_seconds"] == 0.5
    assert report["files"]["json"] == "report.json"
    with Image.open(out / "losses.png") as im:
        assert im.format == "PNG" and im.size == (800, 450)
    with Image.open(out / "progress.gif") as im:
        assert im.n_frames == 4 and im.size == (24, 16)
    with Image.open(out / "progress.png") as im:
        assert im.format == "PNG" and im.width > 4 * 24
    assert "<img src='losses.png'" in (out / "index.html").read_text()
    with pytest.raises(GafuError, match="already exists"):
        write_run_report(out, its, settings={}, summary={})
    write_run_report(out, its[:3], settings={}, summary={}, overwrite=True)  # no frames: no sheet/gif
    assert json.loads((out / "report.json").read_text())["frames"] == []


def test_save_animation_webp_and_bad_extension(tmp_path):
    frames = [_solid((i * 60, 0, 0)) for i in range(3)]
    p = save_animation(frames, tmp_path / "a.webp")
    with Image.open(p) as im:
        assert im.format == "WEBP" and getattr(im, "n_frames", 1) == 3
    with pytest.raises(GafuError):
        save_animation(frames, tmp_path / "a.png")


def test_compare_styles_optimize(content_path, style_path):
    from gafu.cli.demo import data_path

    cmp = compare_styles(content_path, [style_path, data_path("hokusai_great_wave.jpg")], size=40, steps=2, cell=48)
    assert cmp.method == "optimize" and len(cmp.results) == 2
    assert cmp.results[0].size == (40, 26)
    assert cmp.sheet.width == 3 * (48 + 8) + 8
    assert cmp.settings["steps"] == 2 and cmp.settings["size"] == 40
    assert cmp.settings["optimizer"] == "lbfgs"  # gafu.stylize's default preset, "fast"
    seed = compare_styles(content_path, [style_path], size=40, steps=1, cell=48, preset="seed")
    assert seed.settings["optimizer"] == "adam" and seed.settings["precision"] == "fp32"
    with pytest.raises(GafuError, match="did you mean"):
        compare_styles(content_path, [style_path], method="fsat")


def test_compare_styles_fast(content_path, style_path):
    cmp = compare_styles(content_path, [style_path], method="fast", size=64, cell=48)
    assert cmp.method == "fast" and max(cmp.results[0].size) == 64
