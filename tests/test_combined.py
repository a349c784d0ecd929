"""Controls and speed options working together (coarse-to-fine keeps masks, regions and colour)."""

import torch

from gafu import controls
from gafu.config import get_preset
from gafu.optimize import StyleTransfer


def _half_mask(h=60, w=90):
    m = torch.zeros(h, w)
    m[:, : w // 2] = 1.0
    return m.numpy()


def test_coarse_to_fine_keeps_mask_and_luminance(content_path, style_path):
    cfg = get_preset("seed").replace(
        size=96, steps=4, scales=(0.5,), scale_steps=(4,), preserve_color="luminance", precision="fp32"
    )
    st = StyleTransfer(content_path, [style_path], cfg, mask=_half_mask())
    seen = []
    real_init = StyleTransfer.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        seen.append(self)

    StyleTransfer.__init__ = spy
    try:
        its = list(st.run())
    finally:
        StyleTransfer.__init__ = real_init
    assert len(its) == 8 and len(seen) == 1
    coarse = seen[0]
    assert coarse.mask is not None and isinstance(coarse.style_loss, controls.RegionStyleLoss)
    assert coarse.config.preserve_color == "luminance" and coarse.content.shape[-1] == 48
    out = st.image
    outside = st.mask.reshape(1, 1, *out.shape[-2:]) < 0.5
    assert (out - st.content_rgb.cpu()).abs()[outside.expand_as(out)].max() < 1e-5
