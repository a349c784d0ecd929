import json

import pytest
import torch
from PIL import Image

from gafu.cli import main

from conftest import DATA


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pair(content_path, style_path):
    return str(content_path), str(style_path)


def _one_line_error(code, err):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err
    return lines[0]


def test_missing_content(tmp_path, capsys, style_path):
    code, _, err = run(["stylize", str(tmp_path / "nope.jpg"), str(style_path), "-o", str(tmp_path / "o.png")], capsys)
    assert "no such file" in _one_line_error(code, err)


def test_unreadable_style(tmp_path, capsys, content_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run(["stylize", str(content_path), str(bad), "-o", str(tmp_path / "o.png")], capsys)
    assert "not an image" in _one_line_error(code, err)


def test_unknown_layer_did_you_mean(tmp_path, capsys, pair):
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.png"), "--content-layers", "block5_conv9"], capsys)
    line = _one_line_error(code, err)
    assert "unknown VGG19 layer 'block5_conv9'" in line and "did you mean" in line


@pytest.mark.parametrize("flag,value", [("--steps", "-3"), ("--size", "0"), ("--lr", "nan"), ("--style-weight", "abc")])
def test_nonsense_numbers(tmp_path, capsys, pair, flag, value):
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.png"), flag, value], capsys)
    _one_line_error(code, err)


def test_missing_weights(tmp_path, capsys, pair):
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "w.pth")], capsys)
    assert "weights file not found" in _one_line_error(code, err)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_an_error(tmp_path, capsys, pair):
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.png"), "--device", "cuda"], capsys)
    assert "cuda" in _one_line_error(code, err).lower()


def test_output_exists_and_input_protection(tmp_path, capsys, pair):
    out = tmp_path / "o.png"
    Image.new("RGB", (4, 4), "blue").save(out)
    code, _, err = run(["stylize", *pair, "-o", str(out)], capsys)
    assert "already exists" in _one_line_error(code, err)
    code, _, err = run(["stylize", pair[0], pair[1], "-o", pair[1], "--overwrite"], capsys)
    assert "refusing to overwrite input" in _one_line_error(code, err)


def test_unknown_preset_and_extension(tmp_path, capsys, pair):
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.png"), "--preset", "seeed"], capsys)
    _one_line_error(code, err)
    code, _, err = run(["stylize", *pair, "-o", str(tmp_path / "o.gifx")], capsys)
    assert "output format" in _one_line_error(code, err)


def test_stylize_json_and_intermediates(tmp_path, capsys, pair):
    out = tmp_path / "res.jpg"
    code, stdout, err = run(
        ["stylize", *pair, "-o", str(out), "--size", "64", "--steps", "4", "--save-every", "2", "--json"], capsys
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 4 and summary["output"] == str(out)
    assert summary["settings"]["size"] == 64 and summary["settings"]["lr"] == 0.02
    assert set(summary["final_loss"]) == {"style", "content", "tv", "total"}
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["res.jpg", "res_step0002.jpg", "res_step0004.jpg"]
    with Image.open(out) as im:
        assert im.size == (64, 42)  # 451x300 content at long side 64, seed truncation


def test_stylize_says_why_it_stopped(tmp_path, capsys, pair):
    out = tmp_path / "o.png"
    # Adam's small steps "stall" at once with a 90 % tolerance: 21 bf16 steps (the 20-step window), then 21 in fp32
    args = ["stylize", *pair, "-o", str(out), "--size", "48", "--steps", "60", "--preset", "seed", "--precision",
            "bf16", "--stop-tol", "0.9", "--on-stall", "fp32"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"gafu stylize: saved {out} in ") and "stopped at step 42: the loss fell less than" in line
    assert "bf16 until step 21, when its loss stalled, then fp32" in line
    code, stdout, err = run(args + ["--overwrite", "--json"], capsys)
    summary = json.loads(stdout)
    assert summary["stop_reason"] == "stalled" and summary["fp32_from_step"] == 22 and summary["steps"] == 42
    assert summary["why_stopped"] in line
    code, _, err = run(args[:-1] + ["never", "--overwrite"], capsys)
    assert "never" in _one_line_error(code, err)


def test_module_entry_point_help():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gafu", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "stylize" in r.stdout


def test_ctrl_c_saves_current_image(tmp_path, capsys, pair, monkeypatch):
    from gafu.optimize import StyleTransfer

    real_run = StyleTransfer.run

    def interrupted_run(self, *a, **kw):
        for it in real_run(self, *a, **kw):
            yield it
            if it.step == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(StyleTransfer, "run", interrupted_run)
    out = tmp_path / "o.png"
    code, stdout, err = run(["stylize", *pair, "-o", str(out), "--size", "48", "--steps", "50", "--json"], capsys)
    assert code == 130
    assert "interrupted after 2 steps" in err and out.exists()
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["steps"] == 2


def test_demo_writes_results(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, stdout, err = run(["demo", "-o", str(out_dir), "--size", "32", "--steps", "2", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    # the demo runs gafu stylize's default (the fast preset) unless told otherwise
    assert summary["preset"] == "fast" and summary["settings"]["optimizer"] == "lbfgs"
    results = summary["results"]
    assert len(results) == 2
    for r in results:
        with Image.open(r["output"]) as im:
            assert max(im.size) == 32
        with Image.open(r["fast_output"]) as im, Image.open(DATA / r["content"]) as src:
            assert im.size == src.size  # the fast mode keeps the photo's own resolution
    code, _, err = run(["demo", "-o", str(out_dir), "--size", "32", "--steps", "2"], capsys)
    assert "already exists" in _one_line_error(code, err)
    code, stdout, err = run(["demo", "-o", str(tmp_path / "seed"), "--size", "32", "--steps", "1", "--preset", "seed",
                             "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["settings"]["optimizer"] == "adam" and summary["results"][0]["steps"] == 1


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`gafu layers | head -1` where head has already left: the writer stops quietly with 141."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "gafu", "layers"], stdout=w, stderr=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parents[1], timeout=60)
    finally:
        os.close(w)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
