import pytest
import torch
import torch.nn.functional as F

from gafu.errors import GafuError
from gafu.vgg import LAYERS, VGG19Features, canonical, load_vgg19
from gafu.weights import BUNDLED_SHA256, bundled_path, load_vgg19_weights, sha256_file


@pytest.fixture(scope="module")
def weights():
    return load_vgg19_weights()


def test_bundled_weights_sha256_and_shapes(weights):
    assert sha256_file(bundled_path()) == BUNDLED_SHA256
    assert len(weights) == 16
    w, b = weights["block1_conv1"]
    assert w.shape == (64, 3, 3, 3) and b.shape == (64,)
    assert weights["block5_conv4"][0].shape == (512, 512, 3, 3)
    # 8-bit k-means quantization: at most 256 distinct values per layer
    assert torch.unique(weights["block3_conv1"][0]).numel() <= 256


def test_weights_are_cached(weights):
    assert load_vgg19_weights() is weights


def test_names():
    assert canonical("block5_conv2") == "relu5_2"  # Keras conv output includes the ReLU
    assert canonical("relu4_2") == "relu4_2"
    assert canonical("block4_pool") == "pool4"
    assert len([n for n in LAYERS if n.startswith("conv")]) == 16
    with pytest.raises(GafuError, match="did you mean 'block5_conv2'"):
        canonical("block5_conv20")


def test_preprocessing_is_caffe_formula(weights):
    m = VGG19Features(["conv1_1"], weights=weights)
    x = torch.rand(1, 3, 4, 5)
    pre = m.preprocess(x)
    for c_out, c_in, mean in ((0, 2, 103.939), (1, 1, 116.779), (2, 0, 123.68)):
        torch.testing.assert_close(pre[:, c_out], x[:, c_in] * 255.0 - mean)


def test_first_layers_match_manual_computation(weights):
    m = VGG19Features(["conv1_1", "block1_conv1", "pool1"], weights=weights)
    x = torch.rand(1, 3, 16, 12)
    out = m(x)
    bgr = torch.stack([x[:, 2] * 255 - 103.939, x[:, 1] * 255 - 116.779, x[:, 0] * 255 - 123.68], 1)
    w1, b1 = weights["block1_conv1"]
    conv = F.conv2d(bgr, w1, b1, padding=1)
    torch.testing.assert_close(out["conv1_1"], conv, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out["block1_conv1"], conv.clamp_min(0), rtol=1e-4, atol=1e-3)
    w2, b2 = weights["block1_conv2"]
    pool = F.max_pool2d(F.conv2d(conv.clamp_min(0), w2, b2, padding=1).clamp_min(0), 2)
    torch.testing.assert_close(out["pool1"], pool, rtol=1e-4, atol=1e-3)
    assert (out["conv1_1"] < 0).any()  # the pre-ReLU output was not clobbered by an in-place ReLU


def test_truncation_and_shapes(weights):
    m = VGG19Features(["block1_conv1", "block5_conv2"], weights=weights)
    assert m.layers[-1] == "relu5_2"
    assert "conv5_3" not in m.convs and "conv5_2" in m.convs
    out = m(torch.rand(1, 3, 64, 48))
    assert set(out) == {"block1_conv1", "block5_conv2"}
    assert out["block1_conv1"].shape == (1, 64, 64, 48)
    assert out["block5_conv2"].shape == (1, 512, 4, 3)
    shallow = VGG19Features(["relu2_1"], weights=weights)
    assert len(shallow.convs) == 3
    with pytest.raises(GafuError, match="deeper"):
        shallow(torch.rand(1, 3, 8, 8), ["relu3_1"])


def test_gradients_flow_to_input(weights):
    m = load_vgg19(["block5_conv2"])
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    m(x)["block5_conv2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in m.parameters())
