"""CLI of the diagnostics: classify, layers, analyze, compare, stylize --report (small inputs)."""

import json

import pytest
from PIL import Image

from gafu.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err
    return lines[0]


@pytest.fixture
def small_result(tmp_path, content_path):
    """A stand-in 'stylization' of the content at 96 px (posterized: other edges, same layout)."""
    from PIL import ImageOps

    im = Image.open(content_path).convert("RGB").resize((96, 64))
    path = tmp_path / "result.png"
    ImageOps.posterize(im, 2).save(path)
    return path


# --- classify -----------------------------------------------------------------------------------
def test_classify_json(capsys, content_path):
    code, out, _ = run(["classify", str(content_path), "--top", "3", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["command", "results"]
    r = data["results"][0]
    assert list(r) == ["image", "model", "model_description", "weights", "input_size", "preprocessing", "predictions"]
    assert r["model"] == "efficientnet-lite0" and len(r["predictions"]) == 3
    assert 281 <= r["predictions"][0]["index"] <= 285  # a domestic cat class


def test_classify_text_says_which_model(capsys, content_path):
    code, out, _ = run(["classify", str(content_path), "--top", "2"], capsys)
    assert code == 0 and "model: efficientnet-lite0" in out and "%" in out


def test_classify_errors(tmp_path, capsys, content_path):
    code, _, err = run(["classify", str(tmp_path / "nope.jpg")], capsys)
    assert "no such file" in _one_line_error(code, err)
    code, _, err = run(["classify", str(content_path), "--top", "0"], capsys)
    _one_line_error(code, err)
    code, _, err = run(["classify", str(content_path), "--weights", str(tmp_path / "w.h5")], capsys)
    assert "not found" in _one_line_error(code, err)


def test_classify_vgg19_with_headless_weights_is_an_error(capsys, content_path):
    from gafu.weights import bundled_path

    code, _, err = run(["classify", str(content_path), "--weights", str(bundled_path())], capsys)
    assert "no classifier head" in _one_line_error(code, err)


# --- layers -------------------------------------------------------------------------------------
def test_layers_table_without_image(capsys):
    code, out, _ = run(["layers", "--size", "224"], capsys)
    assert code == 0
    assert "block5_pool" in out and "1x512x7x7" in out and "relu4_2" in out


def test_layers_json_with_image(capsys, content_path):
    code, out, _ = run(["layers", str(content_path), "--size", "64", "--layers", "block1_conv1,relu5_2",
                        "--style-layers", "block1_conv1", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["command", "image", "input_size", "layers", "statistics"]
    assert data["input_size"] == [42, 64]
    assert list(data["layers"][1]) == ["name", "aliases", "kind", "output_shape", "params"]
    stats = data["statistics"]
    assert list(stats) == ["input", "layers", "grams"]
    assert list(stats["layers"]) == ["block1_conv1", "relu5_2"]
    assert stats["layers"]["relu5_2"]["shape"] == [1, 512, 2, 4]
    assert list(stats["grams"]["block1_conv1"]) == ["shape", "min", "max", "mean", "std", "zero_fraction"]


def test_layers_text_with_image(capsys, content_path):
    code, out, _ = run(["layers", str(content_path), "--size", "48"], capsys)
    assert code == 0 and "Activations" in out and "Gram matrices" in out and "zeros" in out


def test_layers_errors(capsys, content_path):
    code, _, err = run(["layers", str(content_path), "--size", "48", "--layers", "block9_conv1"], capsys)
    assert "did you mean" in _one_line_error(code, err)
    code, _, err = run(["layers", "--layers", "block1_conv1"], capsys)
    assert "need an IMAGE" in _one_line_error(code, err)


# --- analyze ------------------------------------------------------------------------------------
def test_analyze_json_and_figure(tmp_path, capsys, content_path, small_result):
    fig = tmp_path / "fig.png"
    code, out, _ = run(["analyze", str(content_path), str(small_result), "-o", str(fig), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["command", "content", "result", "figure", "size", "total_variation",
                          "total_variation_per_pixel", "mean_abs_delta", "sobel_mean_magnitude", "edge_preservation"]
    assert data["size"] == [64, 96] and data["figure"] == str(fig)
    assert 0.2 < data["edge_preservation"] < 1.0
    import numpy as np

    r = np.asarray(Image.open(small_result), dtype=np.float64) / 255
    tv = np.abs(np.diff(r, axis=0)).sum() + np.abs(np.diff(r, axis=1)).sum()
    assert data["total_variation"]["result"] == pytest.approx(tv, rel=1e-6)
    with Image.open(fig) as im:
        assert im.format == "PNG" and im.width == 1500  # 5 panels x 3 in x 100 dpi


def test_analyze_text_and_errors(tmp_path, capsys, content_path, small_result):
    code, out, _ = run(["analyze", str(content_path), str(small_result)], capsys)
    assert code == 0 and "edge preservation" in out and "total variation" in out
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"x")
    code, _, err = run(["analyze", str(content_path), str(small_result), "-o", str(existing)], capsys)
    assert "already exists" in _one_line_error(code, err)
    code, _, err = run(["analyze", str(content_path), str(small_result), "-o", str(small_result), "--overwrite"], capsys)
    assert "refusing to overwrite input" in _one_line_error(code, err)
    square = tmp_path / "square.png"
    Image.new("RGB", (40, 40)).save(square)
    code, _, err = run(["analyze", str(content_path), str(square)], capsys)
    assert "aspect" in _one_line_error(code, err)


# --- compare ------------------------------------------------------------------------------------
def test_compare_optimize(tmp_path, capsys, content_path, style_path):
    from gafu.cli.demo import data_path

    sheet = tmp_path / "sheet.png"
    wave = data_path("hokusai_great_wave.jpg")
    code, out, _ = run(["compare", str(content_path), str(style_path), str(wave), "-o", str(sheet),
                        "--size", "40", "--steps", "2", "--cell", "64", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["command", "method", "content", "styles", "sheet", "sheet_size", "results",
                          "result_size", "seconds", "settings"]
    assert data["results"] == [str(tmp_path / "sheet_1_vangogh_starry_night.png"),
                               str(tmp_path / "sheet_2_hokusai_great_wave.png")]
    assert data["result_size"] == [40, 26]
    assert data["settings"]["optimizer"] == "lbfgs"  # --preset fast unless told otherwise
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width == 3 * (64 + 8) + 8 and list(im.size) == data["sheet_size"]
    for p in data["results"]:
        with Image.open(p) as im:
            assert im.size == (40, 26)
    # a second run refuses to replace them
    code, _, err = run(["compare", str(content_path), str(style_path), str(wave), "-o", str(sheet)], capsys)
    assert "already exists" in _one_line_error(code, err)


def test_compare_errors(tmp_path, capsys, content_path, style_path):
    code, _, err = run(["compare", str(content_path), str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "s.png")], capsys)
    assert "no such file" in _one_line_error(code, err)
    code, _, err = run(["compare", str(content_path), str(style_path), "-o", str(tmp_path / "s.xyz")], capsys)
    assert "output format" in _one_line_error(code, err)
    code, _, err = run(["compare", str(content_path), str(style_path), "--method", "slow"], capsys)
    _one_line_error(code, err)
    assert not list(tmp_path.iterdir())


def test_compare_fast(tmp_path, capsys, content_path, style_path):
    sheet = tmp_path / "f.png"
    code, out, _ = run(["compare", str(content_path), str(style_path), "-o", str(sheet), "--method", "fast",
                        "--size", "64", "--json"], capsys)
    assert code == 0 and json.loads(out)["method"] == "fast" and sheet.is_file()


# --- stylize --report ---------------------------------------------------------------------------
def test_stylize_report(tmp_path, capsys, content_path, style_path):
    rep = tmp_path / "rep"
    code, out, _ = run(["stylize", str(content_path), str(style_path), "-o", str(tmp_path / "o.png"),
                        "--size", "40", "--steps", "6", "--report", str(rep), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["report"] == str(rep)
    data = json.loads((rep / "report.json").read_text())
    assert data["frames"] == [0, 1, 2, 3, 4, 5, 6]  # steps // 10 -> every step for a 6-step run
    assert data["settings"]["steps"] == 6 and data["summary"]["steps"] == 6
    assert set(data["history"]) == {"step", "elapsed", "total", "style", "content", "tv"}
    assert data["summary"]["final_loss"]["total"] > 0
    with Image.open(rep / "progress.gif") as im:
        assert im.n_frames == 7
    with Image.open(rep / "losses.png") as im:
        assert im.size == (800, 450)
    assert "<img src='../o.png'" in (rep / "index.html").read_text()
    # an existing report is not replaced: the run does not start
    code, _, err = run(["stylize", str(content_path), str(style_path), "-o", str(tmp_path / "o2.png"),
                        "--size", "40", "--steps", "2", "--report", str(rep)], capsys)
    assert "already exists" in _one_line_error(code, err)
    assert not (tmp_path / "o2.png").exists()
