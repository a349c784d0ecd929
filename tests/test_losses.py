import torch

from gafu.losses import ContentLoss, StyleLoss, blend_grams, content_loss, gram_matrix, style_loss, total_variation


def test_gram_of_known_tensor():
    # Two channels over 2x2 locations: c0 = [1,2,3,4], c1 = [0,1,0,1]
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    g = gram_matrix(f)
    expected = torch.tensor([[[1 + 4 + 9 + 16, 2 + 4], [2 + 4, 2]]]) / 4.0
    torch.testing.assert_close(g, expected)


def test_gram_matches_einsum_nhwc_formula():
    f = torch.randn(2, 5, 7, 3)
    nhwc = f.permute(0, 2, 3, 1)
    ref = torch.einsum("bijc,bijd->bcd", nhwc, nhwc) / (7 * 3)
    torch.testing.assert_close(gram_matrix(f), ref)


def test_gram_with_full_mask_equals_plain_gram_and_half_mask_uses_region():
    f = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(gram_matrix(f, torch.ones(1, 1, 6, 6)), gram_matrix(f))
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :3] = 1
    torch.testing.assert_close(gram_matrix(f, mask), gram_matrix(f[..., :3]))


def test_total_variation_checkerboard():
    # 4x6 single-channel checkerboard of 0/1: every neighbour pair differs by 1.
    h, w = 4, 6
    board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).float()[None, None]
    assert total_variation(board).item() == (h - 1) * w + h * (w - 1)
    # three identical channels triple it; a constant image has none
    assert total_variation(board.repeat(1, 3, 1, 1)).item() == 3 * ((h - 1) * w + h * (w - 1))
    assert total_variation(torch.full((1, 3, 5, 5), 0.3)).item() == 0


def test_gradcheck_float64():
    f = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (f,))
    x = torch.rand(1, 3, 4, 5, dtype=torch.float64) + torch.arange(5, dtype=torch.float64)  # no ties in |d|
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(total_variation, (x,))


def test_modules_equal_functions():
    feats = {"a": torch.randn(1, 3, 4, 4), "b": torch.randn(1, 6, 2, 2)}
    target = {"a": torch.randn(1, 3, 4, 4), "b": torch.randn(1, 6, 2, 2)}
    cl = ContentLoss(target, weight=7.0)
    torch.testing.assert_close(cl(feats), 7.0 * content_loss(feats, target))
    tg = {k: gram_matrix(v) for k, v in target.items()}
    sl = StyleLoss(tg, weight=0.5)
    torch.testing.assert_close(sl(feats), 0.5 * style_loss({k: gram_matrix(v) for k, v in feats.items()}, tg))


def test_style_loss_is_seed_formula():
    # seed: add_n(reduce_mean((G - T)^2)) * style_weight / num_layers
    g = {"a": torch.ones(1, 2, 2), "b": torch.zeros(1, 3, 3)}
    t = {"a": torch.zeros(1, 2, 2), "b": torch.full((1, 3, 3), 2.0)}
    assert style_loss(g, t).item() == (1.0 + 4.0) / 2


def test_blend_grams_normalises_weights():
    a = {"x": torch.ones(1, 2, 2)}
    b = {"x": torch.zeros(1, 2, 2)}
    out = blend_grams([a, b], [3, 1])
    torch.testing.assert_close(out["x"], torch.full((1, 2, 2), 0.75))
