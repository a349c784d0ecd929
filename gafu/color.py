"""Colour maths on gafu's tensor convention (float32 NCHW RGB in [0, 1]).

Full-range BT.601 YCbCr (the JPEG convention) is the one luma definition in gafu:
:data:`BT601_LUMA` is used by the colour preservation of both engines and by the diagnostics.

:func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb`, :func:`luminance`, :func:`gray3` (Y replicated to
three channels, for VGG), :func:`match_luminance` (style Y mean/std matched to the content's),
:func:`combine_luminance` (Y of one image, chroma of another): luminance-only transfer of Gatys et
al. (2016), "Preserving color in neural artistic style transfer". :func:`match_color`: the paper's
other option, the style's RGB mean and covariance matched to the content's before the transfer.
:func:`keep_color_array`: the same luminance swap on HxWx3 arrays (the fast engine).
:func:`chroma_error`: a measurement for tests and benchmarks.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

#: BT.601 luma weights of R, G, B.
BT601_LUMA: Tuple[float, float, float] = (0.299, 0.587, 0.114)

# Full-range BT.601 (JPEG/JFIF): Y, Cb, Cr from R, G, B in [0, 1]; Cb and Cr are centred on 0.5.
_RGB_TO_YCBCR = torch.tensor(
    [
        list(BT601_LUMA),
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=torch.float64,
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------------
def _check_image(t: torch.Tensor, what: str = "image") -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{what} must be an (N, 3, H, W) tensor, got {shape}")


def _apply_matrix(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m.to(t.dtype).to(t.device), t)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` in [0, 1] -> YCbCr (full-range BT.601; Y in [0, 1], Cb/Cr centred on 0.5)."""
    _check_image(rgb)
    return _apply_matrix(rgb, _RGB_TO_YCBCR) + _CHROMA_OFFSET.to(rgb.dtype).to(rgb.device).view(1, 3, 1, 1)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped: out-of-gamut colours leave [0, 1])."""
    _check_image(ycc, "YCbCr image")
    return _apply_matrix(ycc - _CHROMA_OFFSET.to(ycc.dtype).to(ycc.device).view(1, 3, 1, 1), _YCBCR_TO_RGB)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Y (BT.601 luma) of an RGB image: ``(N, 1, H, W)``."""
    _check_image(rgb)
    w = _RGB_TO_YCBCR[0].to(rgb.dtype).to(rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


def gray3(rgb_or_y: torch.Tensor) -> torch.Tensor:
    """Luminance replicated to three channels (what VGG sees in luminance-only transfer)."""
    y = rgb_or_y if rgb_or_y.ndim == 4 and rgb_or_y.shape[1] == 1 else luminance(rgb_or_y)
    return y.expand(-1, 3, -1, -1).contiguous()


def _masked_mean_std(y: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    if mask is None:
        return y.mean(), y.std(unbiased=False)
    w = _weights_like(mask, y)
    total = w.sum().clamp_min(1e-8)
    mu = (y * w).sum() / total
    var = ((y - mu).pow(2) * w).sum() / total
    return mu, var.sqrt()


def _weights_like(mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    m = mask.to(t.dtype).to(t.device)
    if m.shape[-2:] != t.shape[-2:]:
        raise ValueError(f"mask is {tuple(m.shape[-2:])}, image is {tuple(t.shape[-2:])}")
    return m.expand(t.shape[0], 1, -1, -1)


def match_luminance(
    style: torch.Tensor,
    content: torch.Tensor,
    *,
    content_mask: Optional[torch.Tensor] = None,
    keep_style_contrast: bool = False,
) -> torch.Tensor:
    """Luminance matching of Gatys et al. (2016): the style's Y shifted and scaled to the content's
    mean and standard deviation (over ``content_mask`` if given), returned as a grey RGB image.

    ``y' = (y_s - mean_s) * std_c / std_s + mean_c``, clamped to [0, 1].

    ``keep_style_contrast=True`` (what luminance-mode transfer uses; a departure from the paper):
    the target std is ``max(std_c, std_s)``, so a low-contrast photo never flattens the style's
    texture. Measured (hazelnut photo, std 0.069, x Starry Night, std 0.242, fast preset, 192 px,
    60 steps): the paper's scaling changed luma by 0.024, 19% of the plain run's 0.129; this 0.092.
    """
    ys, yc = luminance(style), luminance(content)
    mu_s, sd_s = _masked_mean_std(ys, None)
    mu_c, sd_c = _masked_mean_std(yc, content_mask)
    if keep_style_contrast:
        sd_c = torch.maximum(sd_c, sd_s)
    y = (ys - mu_s) * (sd_c / sd_s.clamp_min(1e-6)) + mu_c
    return gray3(y.clamp(0, 1))


def combine_luminance(luma_from: torch.Tensor, chroma_from: torch.Tensor) -> torch.Tensor:
    """RGB image with the Y of ``luma_from`` and the Cb, Cr of ``chroma_from`` (same size), in [0, 1].

    This is the last step of luminance-only transfer: the stylized luminance, the content's colours.
    Where the combination is out of the RGB gamut it is clamped (chroma changes only there).
    """
    _check_image(luma_from)
    _check_image(chroma_from)
    ycc = rgb_to_ycbcr(chroma_from)
    ycc = torch.cat([luminance(luma_from), ycc[:, 1:]], dim=1)
    return ycbcr_to_rgb(ycc).clamp(0, 1)


def _sqrtm_sym(c: torch.Tensor, power: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp_min(1e-10).pow(power)
    return vecs @ torch.diag(vals) @ vecs.T


def _pixel_stats(t: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    x = t.to(torch.float64).permute(1, 0, 2, 3).reshape(3, -1)  # 3 x (N*H*W)
    if mask is None:
        w = torch.ones(x.shape[1], dtype=torch.float64, device=x.device)
    else:
        w = _weights_like(mask, t).to(torch.float64).permute(1, 0, 2, 3).reshape(-1)
    total = w.sum().clamp_min(1e-12)
    mu = (x * w).sum(dim=1) / total
    d = x - mu[:, None]
    cov = (d * w) @ d.T / total
    return mu, cov


def match_color(
    style: torch.Tensor,
    content: torch.Tensor,
    *,
    content_mask: Optional[torch.Tensor] = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Colour-histogram matching before transfer (Gatys et al. 2016, "colour histogram matching"):
    an affine map of the style's RGB pixels so that their mean and covariance equal the content's
    (over ``content_mask`` if given).

    ``x' = A (x - mu_s) + mu_c`` with ``A = Sigma_c^(1/2) Sigma_s^(-1/2)`` (symmetric square roots, the
    paper's "image analogies" variant), clamped to [0, 1]. ``eps`` regularises flat (e.g. grey) styles.
    """
    _check_image(style, "style")
    _check_image(content, "content")
    mu_s, cov_s = _pixel_stats(style, None)
    mu_c, cov_c = _pixel_stats(content, content_mask)
    eye = torch.eye(3, dtype=torch.float64, device=cov_s.device)
    a = _sqrtm_sym(cov_c + eps * eye, 0.5) @ _sqrtm_sym(cov_s + eps * eye, -0.5)
    x = style.to(torch.float64) - mu_s.view(1, 3, 1, 1)
    out = torch.einsum("ij,njhw->nihw", a, x) + mu_c.view(1, 3, 1, 1)
    return out.clamp(0, 1).to(style.dtype)


def chroma_error(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """Mean absolute Cb/Cr difference of two RGB images (0..1 scale), over ``mask`` if given."""
    d = (rgb_to_ycbcr(a.double())[:, 1:] - rgb_to_ycbcr(b.double())[:, 1:]).abs().mean(dim=1, keepdim=True)
    if mask is None:
        return float(d.mean())
    w = _weights_like(mask, d).double()
    return float((d * w).sum() / w.sum().clamp_min(1e-12))


def keep_color_array(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``stylized`` with the chroma (Cb, Cr) of ``content``, both HxWx3 float in [0, 1].

    With BT.601 YCbCr, replacing Y while keeping Cb and Cr adds the same amount to R, G and B.
    """
    luma = np.asarray(BT601_LUMA, dtype=np.float32)
    delta = stylized @ luma - content @ luma
    return np.clip(content + delta[..., None], 0.0, 1.0)
