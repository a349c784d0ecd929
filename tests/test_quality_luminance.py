"""Luminance-mode transfer: the image the network sees stays grey, and the style's contrast is kept."""

import torch

from gafu import color as C
from gafu.optimize import StyleTransfer
from gafu.config import get_preset


def test_keep_style_contrast_never_lowers_the_style_std():
    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 32, 32, generator=g)  # std ~0.17
    content = 0.5 + 0.02 * torch.rand(1, 3, 32, 32, generator=g)  # nearly flat
    paper = C.luminance(C.match_luminance(style, content))
    kept = C.luminance(C.match_luminance(style, content, keep_style_contrast=True))
    ys, yc = C.luminance(style), C.luminance(content)
    assert abs(float(kept.mean()) - float(yc.mean())) < 1e-3  # brightness still the content's
    assert abs(float(kept.std(unbiased=False)) - float(ys.std(unbiased=False))) < 1e-3
    assert float(paper.std()) < 0.3 * float(kept.std())


def test_luminance_mode_image_stays_grey(content_path, style_path):
    cfg = get_preset("fast").replace(size=48, steps=4, preserve_color="luminance", precision="fp32")
    st = StyleTransfer(content_path, [style_path], cfg)
    list(st.run())
    x = st._image.detach()
    assert float((x - x.mean(dim=1, keepdim=True)).abs().max()) < 1e-6  # R = G = B: what VGG saw is the output's Y
    assert float((x - st.content).abs().mean()) > 1e-3  # and it did change
