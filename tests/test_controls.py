"""gafu.controls: colour, mask, region-map and weight helpers (pure functions, no network)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gafu import controls as C
from gafu.config import StyleConfig
from gafu.errors import GafuError
from gafu.losses import StyleLoss, gram_matrix


def _rand_image(h=12, w=16, seed=0, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((1, 3, h, w), generator=g)


# ---------------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------------
def test_ycbcr_matches_pil_and_round_trips():
    img = _rand_image(9, 11)
    arr = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ref = np.asarray(Image.fromarray(arr, "RGB").convert("YCbCr"), dtype=np.float64) / 255.0  # JPEG full range
    ours = C.rgb_to_ycbcr(torch.from_numpy(arr).permute(2, 0, 1)[None].double() / 255.0)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() <= 1.0 / 255 + 1e-9  # PIL rounds to 8 bits
    back = C.ycbcr_to_rgb(C.rgb_to_ycbcr(img.double()))
    torch.testing.assert_close(back, img.double(), atol=1e-12, rtol=0)


def test_known_ycbcr_values():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).double()
    y, cb, cr = C.rgb_to_ycbcr(red).flatten().tolist()
    assert y == pytest.approx(0.299) and cb == pytest.approx(0.5 - 0.168736, abs=1e-6) and cr == pytest.approx(1.0)
    grey = torch.full((1, 3, 2, 2), 0.3).double()
    ycc = C.rgb_to_ycbcr(grey)
    torch.testing.assert_close(ycc[:, 0], torch.full((1, 2, 2), 0.3).double())
    torch.testing.assert_close(ycc[:, 1:], torch.full((1, 2, 2, 2), 0.5).double())
    g3 = C.gray3(_rand_image())
    assert g3.shape == (1, 3, 12, 16) and torch.equal(g3[:, 0], g3[:, 2])


def test_combine_luminance_takes_y_from_one_and_chroma_from_other():
    a = _rand_image(seed=1, lo=0.3, hi=0.7)  # mid-range: no gamut clipping
    b = _rand_image(seed=2, lo=0.4, hi=0.6)
    out = C.combine_luminance(a, b)
    torch.testing.assert_close(C.luminance(out), C.luminance(a), atol=1e-6, rtol=0)
    torch.testing.assert_close(C.rgb_to_ycbcr(out)[:, 1:], C.rgb_to_ycbcr(b)[:, 1:], atol=1e-6, rtol=0)
    assert C.chroma_error(out, b) < 1e-6 and C.chroma_error(a, b) > 0.01


def test_match_luminance_mean_and_std():
    style, content = _rand_image(seed=3, lo=0.0, hi=0.4), _rand_image(seed=4, lo=0.4, hi=0.8)
    out = C.match_luminance(style, content)
    y, yc = C.luminance(out), C.luminance(content)
    assert out.shape == style.shape and torch.equal(out[:, 0], out[:, 1])  # grey
    assert float(y.mean()) == pytest.approx(float(yc.mean()), abs=1e-5)
    assert float(y.std(unbiased=False)) == pytest.approx(float(yc.std(unbiased=False)), abs=1e-5)


def test_match_color_moves_mean_and_covariance_to_content():
    g = torch.Generator().manual_seed(5)
    # correlated style colours, far from the content's, all well inside [0, 1] after matching
    base = torch.randn((1, 1, 40, 40), generator=g) * 0.05
    style = torch.cat([0.2 + base, 0.25 + 0.5 * base, 0.7 - base], 1) + 0.02 * torch.randn((1, 3, 40, 40), generator=g)
    content = 0.5 + 0.06 * torch.randn((1, 3, 30, 20), generator=g)
    out = C.match_color(style, content)

    def stats(t):
        x = t.double()[0].reshape(3, -1)
        return x.mean(1), torch.cov(x, correction=0)

    mo, co = stats(out)
    mc, cc = stats(content)
    ms, cs = stats(style)
    assert float(out.min()) > 0 and float(out.max()) < 1  # no clamping happened
    torch.testing.assert_close(mo, mc, atol=1e-5, rtol=0)
    torch.testing.assert_close(co, cc, atol=2e-5, rtol=1e-3)
    assert float((ms - mc).abs().max()) > 0.2  # it really moved


def test_match_color_with_mask_uses_masked_statistics():
    content = torch.zeros((1, 3, 10, 10))
    content[..., :5] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)  # left red, right black
    mask = torch.zeros((1, 1, 10, 10))
    mask[..., :5] = 1
    style = _rand_image(8, 8, seed=6, lo=0.2, hi=0.4)
    out = C.match_color(style, content, content_mask=mask)
    torch.testing.assert_close(out.mean(dim=(2, 3)).flatten(), torch.tensor([0.9, 0.1, 0.1]), atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------
def test_load_mask_thresholds_a_jpeg(tmp_path):
    hard = np.zeros((40, 60), np.uint8)
    hard[10:30, 15:45] = 255
    path = tmp_path / "m.jpg"
    Image.fromarray(hard).save(path, quality=60)
    noisy = np.asarray(Image.open(path))
    assert len(np.unique(noisy)) > 2  # JPEG really added grey levels
    m = C.load_mask(path)
    assert m.shape == (1, 1, 40, 60) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m[0, 0].numpy() != (hard > 127)).mean() < 0.01
    # arrays and tensors: uint8 0..255, bool, float 0..1
    assert torch.equal(C.load_mask(hard), C.load_mask(hard > 0))
    assert torch.equal(C.load_mask(hard), C.load_mask(torch.from_numpy(hard / 255.0)))
    with pytest.raises(GafuError, match="mask"):
        C.load_mask(np.zeros((2, 3, 4, 5)))


def test_resize_mask_is_nearest_never_interpolated():
    m = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 2, 3)
    up = C.resize_mask(m, (6, 9))
    assert set(up.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(up, m.repeat_interleave(3, 2).repeat_interleave(3, 3))
    big = (torch.rand((1, 1, 512, 512), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    down = C.resize_mask(big, (37, 37))
    assert set(down.unique().tolist()) <= {0.0, 1.0}
    # PIL's NEAREST uses the same half-pixel sampling
    pil = np.asarray(Image.fromarray((big[0, 0].numpy() * 255).astype(np.uint8)).resize((37, 37), Image.NEAREST)) > 127
    assert (down[0, 0].numpy().astype(bool) == pil).all()


def test_feather_matches_the_gaussian_edge_profile():
    radius = 6.0
    m = torch.zeros((1, 1, 5, 80))
    m[..., 40:] = 1.0
    f = C.feather_mask(m, radius)[0, 0, 2].double()
    sigma = radius / 2
    x = torch.arange(80, dtype=torch.float64) - 39.5  # the edge lies between pixels 39 and 40
    # the discrete Gaussian (truncated at 3 sigma) of a step: sum of kernel taps left of each pixel
    k = C.gaussian_kernel1d(sigma, torch.float64)
    r = (k.numel() - 1) // 2
    expected = torch.tensor([float(k[: max(0, min(k.numel(), int(i - 39.5 + r + 0.5)))].sum()) for i in range(80)])
    torch.testing.assert_close(f, expected.double(), atol=1e-6, rtol=0)
    erf = 0.5 * (1 + torch.erf(x / (sigma * math.sqrt(2))))
    assert float((f - erf).abs().max()) < 0.02  # close to the continuous profile too
    assert float(f[40 - int(radius) - 1]) < 0.03 and float(f[39 + int(radius) + 1]) > 0.97
    assert torch.equal(C.feather_mask(m, 0), m)
    full = torch.ones((1, 1, 7, 7))
    torch.testing.assert_close(C.feather_mask(full, 4), full)  # borders replicated, no dark rim


def test_prepare_mask_resizes_checks_aspect_and_emptiness(tmp_path):
    hard = np.zeros((300, 450), np.uint8)
    hard[100:200, 150:300] = 255
    Image.fromarray(hard).save(tmp_path / "m.png")
    m = C.prepare_mask(tmp_path / "m.png", (42, 64))
    assert m.shape == (1, 1, 42, 64) and set(m.unique().tolist()) == {0.0, 1.0}
    assert float(m.mean()) == pytest.approx(100 * 150 / (300 * 450), abs=0.02)
    with pytest.raises(GafuError, match="aspect"):
        C.prepare_mask(tmp_path / "m.png", (64, 64))
    Image.fromarray(np.zeros((300, 450), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(GafuError, match="no pixel"):
        C.prepare_mask(tmp_path / "empty.png", (42, 64))


def test_layer_mask_is_area_coverage():
    m = torch.zeros((1, 1, 8, 8))
    m[..., :, :3] = 1
    lm = C.layer_mask(m, (4, 4))
    torch.testing.assert_close(lm[0, 0, 0], torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_blend_restores_content_outside():
    x, c = _rand_image(seed=7), _rand_image(seed=8)
    m = torch.zeros((1, 1, 12, 16))
    m[..., 4:8, 4:12] = 1
    out = C.blend(x, c, m)
    assert torch.equal(out[..., m[0, 0] == 0], c[..., m[0, 0] == 0])
    assert torch.equal(out[..., m[0, 0] == 1], x[..., m[0, 0] == 1])


# ---------------------------------------------------------------------------------------------
# Region maps
# ---------------------------------------------------------------------------------------------
def test_parse_color_names_hex_and_errors():
    assert C.parse_color("red") == (255, 0, 0) and C.parse_color("Blue ") == (0, 0, 255)
    assert C.parse_color("#00ff00") == (0, 255, 0) and C.parse_color("#0f0") == (0, 255, 0)
    assert C.parse_color("ff8000") == (255, 128, 0)
    with pytest.raises(GafuError, match="did you mean 'green'"):
        C.parse_color("gren")
    with pytest.raises(GafuError, match="unknown region colour"):
        C.parse_color("#12345")


def test_parse_region_styles():
    assert C.parse_region_styles("red=a.jpg,#0000ff=dir/b,c.jpg, yellow = c.png") == [
        ("red", "a.jpg"),
        ("#0000ff", "dir/b,c.jpg"),  # a comma inside a path is kept
        ("yellow", "c.png"),
    ]
    with pytest.raises(GafuError, match="COLOUR=STYLE"):
        C.parse_region_styles("a.jpg")
    with pytest.raises(GafuError, match="no style"):
        C.parse_region_styles("red=")
    with pytest.raises(GafuError, match="same colour"):
        C.normalize_region_styles({"red": "a.jpg", "#ff0000": "b.jpg"})


def test_label_masks_nearest_colour_with_tolerance_and_nearest_resize(tmp_path):
    mp = np.zeros((40, 60, 3), np.uint8)
    mp[:, :20] = (250, 10, 5)  # reddish: red within tolerance
    mp[:, 20:40] = (0, 0, 255)
    mp[:, 40:] = (255, 255, 255)  # white: listed by nobody -> no region
    Image.fromarray(mp).save(tmp_path / "map.jpg", quality=70)
    masks = C.label_masks(tmp_path / "map.jpg", [(255, 0, 0), (0, 0, 255)], (20, 30))
    assert masks.shape == (2, 1, 20, 30) and set(masks.unique().tolist()) == {0.0, 1.0}
    assert float(masks.sum(0).max()) == 1.0  # no overlap
    assert float(masks[0, 0, :, :10].mean()) == 1.0 and float(masks[1, 0, :, 10:20].mean()) == 1.0
    assert float(masks[:, 0, :, 20:].sum()) == 0.0
    with pytest.raises(GafuError, match="aspect"):
        C.label_masks(tmp_path / "map.jpg", [(255, 0, 0)], (30, 30))


def test_prepare_regions_errors_and_shares(tmp_path):
    mp = np.zeros((40, 60, 3), np.uint8)
    mp[:, :15] = (255, 0, 0)
    mp[:, 15:] = (0, 255, 0)
    Image.fromarray(mp).save(tmp_path / "map.png")
    regions, masks = C.prepare_regions(tmp_path / "map.png", "red=a.jpg,green=b.jpg", (40, 60))
    assert [r.label for r in regions] == ["red", "green"] and [r.style for r in regions] == ["a.jpg", "b.jpg"]
    assert [round(r.share, 3) for r in regions] == [0.25, 0.75]
    with pytest.raises(GafuError, match="region 'blue'.*no pixel"):
        C.prepare_regions(tmp_path / "map.png", {"red": "a.jpg", "blue": "b.jpg"}, (40, 60))
    outside = torch.zeros((1, 1, 40, 60))
    outside[..., 30:] = 1
    with pytest.raises(GafuError, match="outside the mask"):
        C.prepare_regions(tmp_path / "map.png", {"red": "a.jpg"}, (40, 60), mask=outside)


# ---------------------------------------------------------------------------------------------
# Region style loss
# ---------------------------------------------------------------------------------------------
def _feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn((1, 4, 8, 8), generator=g), "b": torch.randn((1, 6, 4, 4), generator=g)}


def test_region_style_loss_with_full_mask_equals_style_loss():
    f, t = _feats(0), _feats(1)
    targets = {k: gram_matrix(v) for k, v in t.items()}
    plain = StyleLoss(targets, 0.3)(f)
    region = C.RegionStyleLoss(torch.ones((1, 1, 16, 16)), [targets], 0.3)(f)
    torch.testing.assert_close(region, plain)


def test_region_style_loss_is_share_weighted_region_grams_and_ignores_outside():
    f, t1, t2 = _feats(0), _feats(1), _feats(2)
    tg1 = {k: gram_matrix(v) for k, v in t1.items()}
    tg2 = {k: gram_matrix(v) for k, v in t2.items()}
    masks = torch.zeros((2, 1, 16, 16))
    masks[0, :, :, :4] = 1  # left quarter
    masks[1, :, :, 8:] = 1  # right half; the rest is in no region
    loss = C.RegionStyleLoss(masks, [tg1, tg2], 2.0)
    # independent computation: crop the features of each region and take their plain Gram
    expected = 0.0
    for name, cols in (("a", ((0, 2), (4, 8))), ("b", ((0, 1), (2, 4)))):
        g1 = gram_matrix(f[name][..., cols[0][0] : cols[0][1]].contiguous())
        g2 = gram_matrix(f[name][..., cols[1][0] : cols[1][1]].contiguous())
        expected += 0.25 * ((g1 - tg1[name]) ** 2).mean() + 0.5 * ((g2 - tg2[name]) ** 2).mean()
    torch.testing.assert_close(loss(f), 2.0 * expected / 2)
    # features outside every region get no gradient
    fa = f["a"].clone().requires_grad_(True)
    loss({"a": fa, "b": f["b"]}).backward()
    assert float(fa.grad[..., 2:4].abs().max()) == 0.0 and float(fa.grad[..., :2].abs().max()) > 0


# ---------------------------------------------------------------------------------------------
# Weights, sizes, config validation
# ---------------------------------------------------------------------------------------------
def test_strength_mapping():
    assert C.strength_to_style_weight(0.5, 1e-2) == pytest.approx(1e-2)
    assert C.strength_to_style_weight(0.0, 1e-2) == pytest.approx(1e-4)
    assert C.strength_to_style_weight(1.0, 1e-2) == pytest.approx(1.0)
    assert C.strength_to_style_weight(0.75, 1.0) == pytest.approx(10.0)
    cfg = StyleConfig(strength=0.25)
    assert C.effective_style_weight(cfg) == pytest.approx(1e-3)
    assert C.effective_style_weight(StyleConfig()) == 1e-2
    with pytest.raises(GafuError, match="strength"):
        C.strength_to_style_weight(1.5, 1.0)


def test_style_size():
    assert C.style_size(512, 1.0) == 512 and C.style_size(512, 0.5) == 256 and C.style_size(100, 1.25) == 125


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"preserve_color": "luminence"}, "did you mean 'luminance'"),
        ({"style_scale": 0.4}, "style_scale"),
        ({"style_scale": 2.5}, "style_scale"),
        ({"style_scale": float("nan")}, "style_scale"),
        ({"strength": -0.1}, "strength"),
        ({"strength": True}, "strength"),
        ({"feather": -1.0}, "feather"),
    ],
)
def test_config_rejects_bad_controls(changes, match):
    with pytest.raises(GafuError, match=match):
        StyleConfig(**changes)


def test_config_records_controls():
    d = StyleConfig(preserve_color="histogram", style_scale=2, strength=0.3, feather=4).to_dict()
    assert (d["preserve_color"], d["style_scale"], d["strength"], d["feather"]) == ("histogram", 2, 0.3, 4)


def test_label_masks_give_blended_edge_pixels_to_a_region_but_not_unlisted_colours():
    # one row: red | purple blend (an antialiased/JPEG edge) | blue | black | white
    row = np.array([[[255, 0, 0], [128, 0, 128], [0, 0, 255], [0, 0, 0], [255, 255, 255]]], np.uint8)
    masks = C.label_masks(row, [(255, 0, 0), (0, 0, 255)], (1, 5))
    assert masks[:, 0, 0].sum(0).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert masks[1, 0, 0, 2] == 1.0 and masks[0, 0, 0, 0] == 1.0


def test_spectral_centroid_of_gratings():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")

    def grating(period):
        return (0.5 + 0.4 * torch.sin(2 * math.pi * xx / period)).expand(1, 3, 64, 64)

    assert C.spectral_centroid(grating(16)) == pytest.approx(1 / 16, rel=0.1)
    assert C.spectral_centroid(grating(4)) == pytest.approx(1 / 4, rel=0.1)
    assert C.spectral_centroid(grating(4), grating(4)) == 0.0


def test_min_side_for_layers():
    assert C.min_side(("block1_conv1",)) == 1
    assert C.min_side(("block5_conv1", "block1_conv1")) == 16
    assert C.min_side(("pool5",)) == 32 and C.min_side(()) == 1
    with pytest.raises(GafuError, match="too small"):
        C.check_min_side(torch.zeros((1, 3, 15, 40)), ("block5_conv1",), "style image 1")
    C.check_min_side(torch.zeros((1, 3, 16, 40)), ("block5_conv1",), "style image 1")


def test_region_style_loss_distances():
    f1 = _feats(1)
    masks = torch.zeros((2, 1, 16, 16))
    masks[0, ..., :8] = 1
    masks[1, ..., 8:] = 1
    # targets = the Grams of each half of f1: f1 is at distance 0 from its own regions' targets
    t0 = {k: gram_matrix(v[..., : v.shape[-1] // 2].contiguous()) for k, v in f1.items()}
    t1 = {k: gram_matrix(v[..., v.shape[-1] // 2 :].contiguous()) for k, v in f1.items()}
    d = C.RegionStyleLoss(masks, [t0, t1], 1.0).distances(f1)
    assert d[0][0] == pytest.approx(0, abs=1e-6) and d[1][1] == pytest.approx(0, abs=1e-6)
    assert d[0][1] > 0.05 and d[1][0] > 0.05
    m = C.RegionStyleLoss(masks, [t0, t1], 1.0).distances(f1, relative=False)
    assert m[0][0] == pytest.approx(0, abs=1e-6) and m[0][1] > 0
