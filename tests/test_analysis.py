"""gafu.analysis: statistics, high-pass deltas, Sobel, TV and edge score against direct computations."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gafu.analysis import (
    analysis_figure,
    analyze,
    edge_preservation,
    high_pass,
    layer_stats,
    layer_table,
    save_figure,
    sobel_edges,
    tensor_stats,
    total_variation,
)
from gafu.errors import GafuError


def test_tensor_stats_known_tensor():
    t = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, -1.0, 0.0, 5.0]])
    s = tensor_stats(t)
    assert s["shape"] == [2, 4]
    assert s["min"] == -1.0 and s["max"] == 5.0
    assert s["mean"] == pytest.approx(10 / 8)
    values = [0, 1, 2, 3, 0, -1, 0, 5]
    var = sum((v - 1.25) ** 2 for v in values) / 8  # population variance, by hand
    assert s["std"] == pytest.approx(var**0.5)
    assert s["zero_fraction"] == pytest.approx(3 / 8)
    assert list(s) == ["shape", "min", "max", "mean", "std", "zero_fraction"]


def test_total_variation_checkerboard_and_formula():
    n = 6
    board = (np.indices((n, n)).sum(0) % 2).astype(np.float32)
    x = torch.from_numpy(np.stack([board] * 3))[None]
    # every vertical and horizontal neighbour pair differs by exactly 1, in 3 channels
    assert total_variation(x) == pytest.approx(3 * 2 * n * (n - 1))
    rng = np.random.default_rng(1)
    a = rng.random((1, 3, 7, 5)).astype(np.float32)
    ref = np.abs(np.diff(a, axis=2)).sum() + np.abs(np.diff(a, axis=3)).sum()
    assert total_variation(torch.from_numpy(a)) == pytest.approx(float(ref), rel=1e-6)


def test_high_pass_is_the_seeds_neighbour_differences():
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) ** 1.5
    dx, dy = high_pass(a)
    n = a.numpy()
    np.testing.assert_allclose(dx.numpy(), n[..., :, 1:] - n[..., :, :-1])
    np.testing.assert_allclose(dy.numpy(), n[..., 1:, :] - n[..., :-1, :])
    assert dx.shape == (2, 3, 4, 4) and dy.shape == (2, 3, 3, 5)


def test_sobel_of_a_vertical_step():
    x = torch.zeros(1, 1, 5, 6)
    x[..., 3:] = 1.0  # step between columns 2 and 3
    s = sobel_edges(x)
    assert s.shape == (1, 1, 5, 6, 2)
    dy, dx = s[0, 0, ..., 0], s[0, 0, ..., 1]
    assert torch.count_nonzero(dy) == 0
    expected = torch.zeros(5, 6)
    expected[:, 2] = 4.0  # (1 + 2 + 1) * (x[j+1] - x[j-1]) = 4 on both sides of the step
    expected[:, 3] = 4.0
    torch.testing.assert_close(dx, expected)


def test_sobel_of_a_horizontal_step_is_dy_and_sign():
    x = torch.zeros(1, 1, 6, 4)
    x[..., :2, :] = 1.0  # bright top, dark bottom -> negative dy at the edge
    s = sobel_edges(x)
    dy, dx = s[0, 0, ..., 0], s[0, 0, ..., 1]
    assert torch.count_nonzero(dx) == 0
    expected = torch.zeros(6, 4)
    expected[1, :] = -4.0
    expected[2, :] = -4.0
    torch.testing.assert_close(dy, expected)


def test_sobel_uses_reflect_padding():
    # ramp along the width: interior dx = 4 * 2; at the borders REFLECT mirrors x[1] -> 0
    # (zero padding would give a big value, edge-repeat padding 4)
    x = torch.arange(5, dtype=torch.float32).repeat(4, 1)[None, None]
    dx = sobel_edges(x)[0, 0, ..., 1]
    assert dx[:, 1:4].eq(8.0).all()
    assert dx[:, 0].eq(0.0).all() and dx[:, 4].eq(0.0).all()


def _sobel_by_hand(img: np.ndarray):
    """Loop-by-loop Sobel of an HxW array with reflect padding (an independent reference)."""
    ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
    kx = ky.T
    p = np.pad(img, 1, mode="reflect")
    h, w = img.shape
    dy = np.zeros((h, w))
    dx = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            win = p[i : i + 3, j : j + 3]
            dy[i, j] = (win * ky).sum()
            dx[i, j] = (win * kx).sum()
    return dy, dx


def test_sobel_matches_hand_computation_per_channel():
    rng = np.random.default_rng(0)
    a = rng.random((1, 3, 5, 7))
    s = sobel_edges(torch.from_numpy(a)).numpy()
    for c in range(3):
        dy, dx = _sobel_by_hand(a[0, c])
        np.testing.assert_allclose(s[0, c, ..., 0], dy, atol=1e-12)
        np.testing.assert_allclose(s[0, c, ..., 1], dx, atol=1e-12)


def test_sobel_rejects_tiny_images():
    with pytest.raises(GafuError):
        sobel_edges(torch.zeros(1, 3, 1, 5))


def _edge_score_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    def mag(x):
        y = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
        dy, dx = _sobel_by_hand(y)
        return np.sqrt(dy**2 + dx**2).ravel()

    return float(np.corrcoef(mag(a), mag(b))[0, 1])


def test_edge_preservation_matches_direct_computation_and_is_contrast_invariant():
    rng = np.random.default_rng(2)
    a = rng.random((3, 9, 11))
    b = np.clip(a + 0.3 * rng.random((3, 9, 11)), 0, 1)
    ta, tb = torch.from_numpy(a)[None], torch.from_numpy(b)[None]
    assert edge_preservation(ta, tb) == pytest.approx(_edge_score_by_hand(a, b), abs=1e-9)
    assert edge_preservation(ta, ta) == pytest.approx(1.0)
    assert edge_preservation(ta, 0.5 * ta + 0.2) == pytest.approx(1.0)
    flat = torch.full_like(ta, 0.5)
    assert edge_preservation(ta, flat) == 0.0
    with pytest.raises(GafuError):
        edge_preservation(ta, torch.zeros(1, 3, 9, 12))


def test_analyze_numbers_match_direct_computation(content_path):
    content = Image.open(content_path).convert("RGB")
    result = content.resize((96, 64), Image.Resampling.BILINEAR).rotate(180)
    numbers = analyze(content, result)
    assert numbers["size"] == [64, 96]
    r = np.asarray(result, dtype=np.float64) / 255.0
    tv_r = np.abs(np.diff(r, axis=0)).sum() + np.abs(np.diff(r, axis=1)).sum()
    assert numbers["total_variation"]["result"] == pytest.approx(tv_r, rel=1e-6)
    assert numbers["total_variation_per_pixel"]["result"] == pytest.approx(tv_r / (3 * 64 * 96), rel=1e-6)
    assert numbers["mean_abs_delta"]["result"]["x"] == pytest.approx(np.abs(np.diff(r, axis=1)).mean(), rel=1e-6)
    assert numbers["total_variation"]["ratio"] == pytest.approx(
        numbers["total_variation"]["result"] / numbers["total_variation"]["content"]
    )
    assert -1.0 <= numbers["edge_preservation"] < 0.9  # rotated: edges are elsewhere
    assert sorted(numbers) == sorted(
        ["size", "total_variation", "total_variation_per_pixel", "mean_abs_delta", "sobel_mean_magnitude",
         "edge_preservation"]
    )
    json.dumps(numbers)  # plain JSON types only
    same = analyze(content, content.resize((96, 64), Image.Resampling.BILINEAR))
    assert same["edge_preservation"] > 0.95


def test_analyze_refuses_unrelated_aspect_ratio(content_path):
    with pytest.raises(GafuError, match="aspect"):
        analyze(content_path, Image.new("RGB", (50, 50)))


def test_layer_table_shapes_and_params():
    rows = layer_table((224, 224))
    names = [r["name"] for r in rows]
    assert names[0] == "input_1" and names[-1] == "block5_pool" and len(rows) == 22
    by = {r["name"]: r for r in rows}
    assert by["block5_pool"]["output_shape"] == [1, 512, 7, 7]
    assert by["block3_conv4"]["output_shape"] == [1, 256, 56, 56]
    assert sum(r["params"] for r in rows) == 20_024_384  # Keras VGG19(include_top=False).count_params()
    odd = {r["name"]: r for r in layer_table((85, 128))}
    assert odd["block1_pool"]["output_shape"] == [1, 64, 42, 64]  # floor, as 'valid' pooling


def test_layer_stats_match_direct_computation(content_path):
    from gafu.losses import gram_matrix
    from gafu.vgg import VGG19Features
    from gafu.image import load_tensor

    stats = layer_stats(content_path, ["block1_conv1", "conv2_1"], ["block2_conv1"], size=48)
    x = load_tensor(content_path, 48)
    feats = VGG19Features(["block1_conv1", "conv2_1", "block2_conv1"])(x)
    f = feats["block1_conv1"].double().numpy()
    s = stats["layers"]["block1_conv1"]
    assert s["shape"] == list(f.shape)
    assert s["mean"] == pytest.approx(f.mean(), rel=1e-6)
    assert s["max"] == pytest.approx(f.max(), rel=1e-6)
    assert s["std"] == pytest.approx(f.std(), rel=1e-5)
    assert s["zero_fraction"] == pytest.approx((f == 0).mean(), abs=1e-3)
    assert s["min"] == 0.0  # post-ReLU
    assert stats["layers"]["conv2_1"]["min"] < 0  # pre-ReLU
    g = gram_matrix(feats["block2_conv1"]).double().numpy()
    assert stats["grams"]["block2_conv1"]["shape"] == [1, 128, 128]
    assert stats["grams"]["block2_conv1"]["mean"] == pytest.approx(g.mean(), rel=1e-5)
    assert stats["input"]["shape"] == [1, 3, 31, 48] == list(x.shape)  # seed resize truncates 31.9


def test_layer_stats_unknown_layer_did_you_mean(content_path):
    with pytest.raises(GafuError, match="did you mean"):
        layer_stats(content_path, ["block1_conv9"], size=32)


def test_analysis_figure_is_a_valid_png_of_expected_size(tmp_path, content_path):
    content = Image.open(content_path).convert("RGB").resize((90, 60))
    fig = analysis_figure(content, content.rotate(3), panel_inches=2.0, dpi=50)
    out = save_figure(fig, tmp_path / "a.png")
    w_in, h_in = fig.get_size_inches()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (round(w_in * 50), round(h_in * 50))
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 10  # something was drawn
    assert len(fig.axes) == 10
    titles = [ax.get_title() for ax in fig.axes]
    assert any("horizontal deltas" in t for t in titles) and any("Sobel dx" in t for t in titles)
