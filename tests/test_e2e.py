"""End to end on real images with the real bundled weights, at a small size."""

import torch

import gafu
from gafu.config import get_preset
from gafu.image import to_tensor
from gafu.optimize import StyleTransfer


def test_seed_preset_optimization_reduces_losses(content_path, style_path):
    cfg = get_preset("seed").replace(size=96, steps=40)
    st = StyleTransfer(content_path, [style_path], cfg)
    first = st.evaluate()
    its = list(st.run(image_every=20))
    last = st.evaluate()
    assert [it.step for it in its] == list(range(1, 41))
    assert its[19].image is not None and its[18].image is None and its[-1].image is not None
    assert first["content"] == 0.0  # starts from the content image
    assert last["total"] < 0.3 * first["total"]
    assert last["style"] < first["style"] / 5
    img = st.image
    assert img.min() >= 0 and img.max() <= 1
    assert (img - st.content.cpu()).abs().mean() > 0.02  # visibly changed


def test_api_stylize_returns_pil_with_content_aspect(content_path, style_path):
    out = gafu.stylize(content_path, style_path, size=64, steps=3)
    assert out.mode == "RGB" and out.size == (64, 42)


def test_two_styles_are_averaged(content_path, style_path):
    from gafu.cli.demo import data_path

    cfg = get_preset("seed").replace(size=64, steps=0)
    wave = data_path("hokusai_great_wave.jpg")
    a = StyleTransfer(content_path, [style_path], cfg).style_loss.targets()
    b = StyleTransfer(content_path, [wave], cfg).style_loss.targets()
    ab = StyleTransfer(content_path, [style_path, wave], cfg, style_weights=[3, 1]).style_loss.targets()
    for k in a:
        torch.testing.assert_close(ab[k], 0.75 * a[k] + 0.25 * b[k], rtol=1e-5, atol=1e-3)


def test_same_seed_same_image_noise_init(content_path, style_path):
    cfg = get_preset("seed").replace(size=48, steps=3, init="noise", seed=5)
    x1 = StyleTransfer(content_path, [style_path], cfg)
    list(x1.run())
    x2 = StyleTransfer(content_path, [style_path], cfg)
    list(x2.run())
    assert torch.equal(x1.image, x2.image)
    x3 = StyleTransfer(content_path, [style_path], cfg.replace(seed=6))
    assert not torch.equal(x3.image, x2.image)


def test_tensor_input_accepted(content_path, style_path):
    from PIL import Image

    c = to_tensor(Image.open(content_path).convert("RGB"))
    st = StyleTransfer(c, [style_path], get_preset("seed").replace(size=64, steps=0))
    assert st.content.shape[-1] == 64
