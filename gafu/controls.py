"""Controls over a stylization: colour preservation, masks, region maps, style scale, strength.

Pure functions on the one tensor convention (float32 NCHW RGB in [0, 1]; masks are ``1x1xHxW``
in [0, 1]), plus :class:`RegionStyleLoss`, a thin module that holds per-region Gram targets.
:class:`gafu.optimize.StyleTransfer` wires them in; nothing here loads a network, so the fast mode
(or any other tool) can reuse the colour and mask helpers as pre- and post-processing.

Colour
    :func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb` (full-range BT.601, the JPEG convention),
    :func:`luminance`, :func:`gray3` (Y replicated to three channels, for VGG),
    :func:`match_luminance` (style Y mean/std matched to the content's), :func:`combine_luminance`
    (Y of one image, chroma of another): luminance-only transfer of Gatys et al. (2016),
    "Preserving color in neural artistic style transfer". :func:`match_color`: the paper's other
    option, the style's RGB mean and covariance matched to the content's before the transfer.

Masks
    :func:`load_mask` (any image, thresholded: JPEG masks are fine), :func:`resize_mask` (nearest
    neighbour only, never interpolated), :func:`feather_mask` (Gaussian soft edge),
    :func:`layer_mask` (the mask at a feature map's resolution: the covered fraction of each cell),
    :func:`blend` (result inside, content outside).

Region maps (spatial control, Gatys et al. 2017)
    :func:`parse_color`, :func:`parse_region_styles` ("red=a.jpg,#00ff00=b.jpg"),
    :func:`label_masks` (nearest listed colour within a tolerance -> one mask per region).

Weights and sizes
    :func:`strength_to_style_weight`, :func:`effective_style_weight`, :func:`style_size`,
    :func:`check_min_side`.

Preparation (used by StyleTransfer) and measurements
    :func:`prepare_mask`, :func:`prepare_style`, :func:`prepare_regions`; :func:`chroma_error`,
    :func:`spectral_centroid` (dominant spatial frequency), :meth:`RegionStyleLoss.distances`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PRESERVE_COLOR_MODES, STRENGTH_DECADES, STYLE_SCALE_RANGE, check_strength  # noqa: F401
from .errors import GafuError, unknown_name
from .losses import gram_matrix, mse

#: A mask pixel is "in" when its grey value (0..255) is above this (JPEG masks: threshold at 127).
MASK_THRESHOLD = 127

#: Region maps: a pixel belongs to the nearest listed colour if its RGB distance (0..255 per
#: channel, Euclidean) is at most this; farther pixels belong to no region (they keep the content).
REGION_TOLERANCE = 100.0

#: Colour names accepted in ``--region-styles`` (pure primaries, as label maps are painted).
COLOR_NAMES: Dict[str, Tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}

# Full-range BT.601 (JPEG/JFIF): Y, Cb, Cr from R, G, B in [0, 1]; Cb and Cr are centred on 0.5.
_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
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
    style: torch.Tensor, content: torch.Tensor, *, content_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Luminance matching of Gatys et al. (2016): the style's Y shifted and scaled to the content's
    mean and standard deviation (over ``content_mask`` if given), returned as a grey RGB image.

    ``y' = (y_s - mean_s) * std_c / std_s + mean_c``, clamped to [0, 1].
    """
    ys, yc = luminance(style), luminance(content)
    mu_s, sd_s = _masked_mean_std(ys, None)
    mu_c, sd_c = _masked_mean_std(yc, content_mask)
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


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------
MaskLike = Union[str, os.PathLike, "Image.Image", np.ndarray, torch.Tensor]  # noqa: F821


def _grey_array(mask: MaskLike) -> np.ndarray:
    """Any mask source -> HxW float64 on the 0..255 scale."""
    from PIL import Image

    from .image import open_image, to_rgb

    if isinstance(mask, (str, os.PathLike)):
        im = open_image(mask)
        return np.asarray(im.convert("L"), dtype=np.float64)
    if isinstance(mask, Image.Image):
        return np.asarray(to_rgb(mask).convert("L"), dtype=np.float64)
    if isinstance(mask, torch.Tensor):
        arr = mask.detach().to(torch.float64).cpu().numpy()
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[0] == 3:  # 3xHxW RGB in [0, 1]
            arr = np.tensordot(_RGB_TO_YCBCR[0].numpy(), arr, axes=1)
        if arr.ndim != 2:
            raise GafuError(f"expected a mask of shape HxW, 1xHxW or 1x1xHxW, got {tuple(mask.shape)}")
        return arr * 255.0
    if isinstance(mask, np.ndarray):
        arr = mask
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = np.asarray(Image.fromarray(_to_uint8(arr[..., :3])).convert("L"))
        if arr.ndim != 2:
            raise GafuError(f"expected a mask of shape HxW or HxWx3, got {arr.shape}")
        if arr.dtype == np.bool_:
            return arr.astype(np.float64) * 255.0
        if arr.dtype == np.uint8:
            return arr.astype(np.float64)
        return arr.astype(np.float64) * 255.0  # float masks are on the 0..1 scale
    raise GafuError(f"cannot use {type(mask).__name__} as a mask")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def load_mask(mask: MaskLike, *, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """A hard mask ``1x1xHxW`` of 0.0/1.0 at the source's own size.

    Accepts a path or PIL image (converted to grey; EXIF orientation applied, alpha composited on
    white, as images are), an HxW / HxWx3 array (uint8 0..255, bool, or float 0..1) or a tensor
    (float 0..1). A pixel is in the mask when its grey value is above ``threshold`` (0..255 scale;
    127 suits JPEG masks, whose edges and flat areas carry compression noise).
    """
    grey = _grey_array(mask)
    hard = torch.from_numpy((grey > threshold).astype(np.float32))
    return hard[None, None]


def resize_mask(mask: torch.Tensor, shape: Tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a ``(N, C, H, W)`` mask or label map (half-pixel centres, as PIL's
    NEAREST). Never interpolates, so a hard mask stays hard and labels stay labels."""
    shape = (int(shape[0]), int(shape[1]))
    if tuple(mask.shape[-2:]) == shape:
        return mask
    return F.interpolate(mask.to(torch.float32), size=shape, mode="nearest-exact").to(mask.dtype)


def check_aspect(source_hw: Tuple[int, int], target_hw: Tuple[int, int], what: str) -> None:
    """GafuError if a mask/map's aspect ratio does not fit the image it is meant for."""
    (hs, ws), (ht, wt) = source_hw, target_hw
    tol = 0.03 + 1.0 / max(1, min(ht, wt))
    if abs(math.log((ws / hs) / (wt / ht))) > tol:
        raise GafuError(
            f"{what} is {ws}x{hs} but the content is {wt}x{ht} (after resizing): aspect ratios differ; "
            "make the mask from the content image"
        )


def gaussian_kernel1d(sigma: float, dtype=torch.float32) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def feather_mask(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soft edges: Gaussian blur of a ``(N, 1, H, W)`` mask with sigma = ``radius / 2`` pixels.

    The edge then ramps from ~2 % to ~98 % over about ``radius`` pixels on each side of the hard
    edge. Borders are replicated (a mask touching the border stays 1 there). ``radius <= 0``
    returns the mask unchanged.
    """
    if radius <= 0:
        return mask
    sigma = radius / 2.0
    k = gaussian_kernel1d(sigma, mask.dtype).to(mask.device)
    r = (k.numel() - 1) // 2
    n, c, h, w = mask.shape
    x = mask.reshape(n * c, 1, h, w)
    x = F.pad(x, (r, r, 0, 0), mode="replicate") if w > 1 else F.pad(x, (r, r, 0, 0), mode="constant", value=0)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="replicate") if h > 1 else F.pad(x, (0, 0, r, r), mode="constant", value=0)
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w).clamp(0, 1)


def prepare_mask(mask: MaskLike, shape: Tuple[int, int], *, feather: float = 0.0, what: str = "mask") -> torch.Tensor:
    """:func:`load_mask` -> aspect check -> :func:`resize_mask` to ``shape`` -> :func:`feather_mask`."""
    hard = load_mask(mask)
    check_aspect(tuple(hard.shape[-2:]), tuple(shape), what)
    hard = resize_mask(hard, shape)
    if float(hard.sum()) == 0:
        raise GafuError(f"{what} selects no pixel (nothing above grey level {MASK_THRESHOLD}) at {shape[1]}x{shape[0]}")
    return feather_mask(hard, feather)


def layer_mask(mask: torch.Tensor, shape: Tuple[int, int]) -> torch.Tensor:
    """A mask at a feature map's resolution: the fraction of each cell the mask covers (area average).

    Used as Gram weights; unlike the image-size mask it may be fractional at edges.
    """
    shape = (int(shape[0]), int(shape[1]))
    if tuple(mask.shape[-2:]) == shape:
        return mask
    return F.adaptive_avg_pool2d(mask, shape)


def blend(result: torch.Tensor, content: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * result + (1 - mask) * content`` (mask broadcast over channels; resized if needed)."""
    if mask.shape[-2:] != result.shape[-2:]:
        mask = F.interpolate(mask, size=tuple(result.shape[-2:]), mode="bilinear", align_corners=False)
    if content.shape[-2:] != result.shape[-2:]:
        content = F.interpolate(content, size=tuple(result.shape[-2:]), mode="bilinear", align_corners=False)
    m = mask.to(result.dtype).to(result.device)
    return m * result + (1 - m) * content.to(result.dtype).to(result.device)


# ---------------------------------------------------------------------------------------------
# Region maps
# ---------------------------------------------------------------------------------------------
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


def parse_color(text: str) -> Tuple[int, int, int]:
    """A colour name (:data:`COLOR_NAMES`) or hex ``#ff0000`` / ``#f00`` -> (r, g, b) 0..255."""
    key = str(text).strip().lower()
    if key in COLOR_NAMES:
        return COLOR_NAMES[key]
    m = _HEX.match(key)
    if m and (key.startswith("#") or not key.isalpha()):
        h = m.group(1)
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    raise unknown_name("region colour", str(text).strip(), list(COLOR_NAMES) + ["#rrggbb"])


def color_hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


# split "red=a.jpg,blue=b,c.jpg" at commas that start a new "label=" item only
_ITEM_SPLIT = re.compile(r",(?=\s*(?:#?[0-9a-fA-F]{3}|#?[0-9a-fA-F]{6}|[A-Za-z]+)\s*=)")


def parse_region_styles(text: str) -> List[Tuple[str, str]]:
    """``"red=a.jpg,#0000ff=b.jpg"`` -> ``[("red", "a.jpg"), ("#0000ff", "b.jpg")]`` (colours validated).

    A comma inside a path is kept when what follows is not ``colour=``.
    """
    items = []
    for raw in _ITEM_SPLIT.split(str(text)):
        if not raw.strip():
            continue
        if "=" not in raw:
            raise GafuError(
                f"--region-styles expects COLOUR=STYLE items (e.g. red=a.jpg,blue=b.jpg), got '{raw.strip()}'"
            )
        label, path = raw.split("=", 1)
        label, path = label.strip(), path.strip()
        parse_color(label)
        if not path:
            raise GafuError(f"region '{label}' has no style image")
        items.append((label, path))
    if not items:
        raise GafuError("--region-styles is empty")
    return items


def normalize_region_styles(region_styles) -> List[Tuple[str, object]]:
    """Accept a ``"red=a.jpg,..."`` string, a mapping ``{colour: style}`` or ``[(colour, style)]``."""
    if isinstance(region_styles, str):
        items: List[Tuple[str, object]] = list(parse_region_styles(region_styles))
    elif isinstance(region_styles, Mapping):
        items = [(str(k), v) for k, v in region_styles.items()]
    else:
        items = [(str(k), v) for k, v in region_styles]
    if not items:
        raise GafuError("region styles are empty")
    seen = {}
    for label, _ in items:
        rgb = parse_color(label)
        if rgb in seen:
            raise GafuError(f"region colours '{seen[rgb]}' and '{label}' are the same colour")
        seen[rgb] = label
    return items


def label_masks(
    region_map: MaskLike,
    colors: Sequence[Tuple[int, int, int]],
    shape: Tuple[int, int],
    *,
    tolerance: float = REGION_TOLERANCE,
) -> torch.Tensor:
    """One hard mask per listed colour, ``(R, 1, H, W)`` at ``shape``, from an RGB label map.

    Each pixel of the map (at its own size) goes to the nearest of ``colors`` if that is within
    ``tolerance`` (Euclidean RGB distance on the 0..255 scale) or if it is a blend of two listed
    colours (within ``tolerance / 2`` of the segment joining them: antialiased or JPEG edges);
    otherwise to no region. The label image is then resized with nearest neighbour, so labels
    never blend. Masks do not overlap.
    """
    from .image import load

    rgb = np.asarray(load(region_map), dtype=np.float64)
    pal = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    d = np.sqrt(((rgb[:, :, None, :] - pal[None, None, :, :]) ** 2).sum(-1))  # H x W x R
    idx = d.argmin(-1)
    keep = d.min(-1) <= tolerance
    if len(pal) >= 2:
        # Edge pixels that blend two listed colours (antialiasing, JPEG chroma bleeding) lie near the
        # segment joining them: give them to the nearer one instead of leaving a seam of content.
        order = np.argsort(d, axis=-1)[..., :2]
        d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
        d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
        d12 = np.linalg.norm(pal[order[..., 0]] - pal[order[..., 1]], axis=-1)
        keep |= d1 + d2 <= d12 + 0.5 * tolerance
    idx[~keep] = -1
    check_aspect(idx.shape, tuple(shape), "region map")
    lab = resize_mask(torch.from_numpy(idx.astype(np.float32))[None, None], shape)[0, 0]
    return torch.stack([(lab == r).to(torch.float32) for r in range(len(pal))])[:, None]


# ---------------------------------------------------------------------------------------------
# Style loss restricted to regions
# ---------------------------------------------------------------------------------------------
class RegionStyleLoss(nn.Module):
    """Style loss with per-region Gram statistics (Gatys et al. 2017, spatial control).

    For region ``r`` with mask ``m_r`` (image resolution) and target Grams ``T_r``::

        loss = weight * mean_over_layers( sum_r share_r * mse(gram(F, m_r at the layer), T_r) )

    where ``gram(F, m)`` is :func:`gafu.losses.gram_matrix` with the mask at the layer's resolution
    (:func:`layer_mask`) and ``share_r`` = the region's fraction of the image. The share makes a pixel
    feel the same style pressure as in an unmasked run with the same ``weight`` (a region's Gram is
    normalised by its own area), so ``style_weight`` means the same with and without masks.
    One region with mask 1 everywhere equals :class:`gafu.losses.StyleLoss`.
    """

    def __init__(self, masks: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]], weight: float) -> None:
        super().__init__()
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != len(targets):
            raise ValueError(f"expected (R, 1, H, W) masks for {len(targets)} regions, got {tuple(masks.shape)}")
        self.names = tuple(targets[0]) if targets else ()
        self.weight = float(weight)
        self.regions = len(targets)
        self.register_buffer("masks", masks.detach().to(torch.float32).clone(), persistent=False)
        self.register_buffer("shares", masks.detach().to(torch.float32).mean(dim=(1, 2, 3)), persistent=False)
        for r, t in enumerate(targets):
            for i, name in enumerate(self.names):
                self.register_buffer(f"g{r}_{i}", t[name].detach().clone(), persistent=False)

    def targets(self, region: int) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"g{region}_{i}") for i, name in enumerate(self.names)}

    def region_grams(self, features: Mapping[str, torch.Tensor], region: int) -> Dict[str, torch.Tensor]:
        """Gram matrices of ``features`` over region ``region`` (with the mask at each layer)."""
        out = {}
        for name in self.names:
            f = features[name].float()
            m = layer_mask(self.masks[region : region + 1].to(f.device), tuple(f.shape[-2:]))
            out[name] = gram_matrix(f, m)
        return out

    def distances(self, features: Mapping[str, torch.Tensor], *, relative: bool = True) -> List[List[float]]:
        """``d[r][s]``: distance of region ``r``'s Gram statistics from region ``s``'s target, averaged
        over layers. ``relative=True``: ``||G_r - T_s||_F / ||T_s||_F`` (scale-free, so styles with
        large Grams are not "far from everything"); ``False``: the loss's mean squared difference."""
        with torch.no_grad():
            grams = [self.region_grams(features, r) for r in range(self.regions)]
            out = []
            for g in grams:
                row = []
                for s in range(self.regions):
                    t = self.targets(s)
                    if relative:
                        vals = [float((g[k] - t[k]).norm() / t[k].norm().clamp_min(1e-12)) for k in t]
                    else:
                        vals = [float(mse(g[k], t[k])) for k in t]
                    row.append(sum(vals) / len(vals))
                out.append(row)
        return out

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        layer_terms = []
        for i, name in enumerate(self.names):
            f = features[name].float()
            total = f.new_zeros(())
            for r in range(self.regions):
                m = layer_mask(self.masks[r : r + 1].to(f.device), tuple(f.shape[-2:]))
                total = total + self.shares[r] * mse(gram_matrix(f, m), getattr(self, f"g{r}_{i}"))
            layer_terms.append(total)
        return self.weight * torch.stack(layer_terms).sum() / len(layer_terms)


# ---------------------------------------------------------------------------------------------
# Weights and sizes
# ---------------------------------------------------------------------------------------------
def strength_to_style_weight(strength: float, base: float) -> float:
    """Map ``strength`` in [0, 1] onto a style weight, logarithmically around ``base``:

    ``base * 10 ** (STRENGTH_DECADES * (strength - 0.5))``: 0.5 -> base, 0 -> base/100, 1 -> base*100
    (content weight unchanged). Equal steps of strength are equal ratios of style to content.

    With the seed's optimizer (Adam, epsilon 0.1, gradients far larger than epsilon) the step size
    does not depend on the loss scale, so only this ratio matters; in short runs the style loss is
    limited by the number of steps and strengths above 0.5 change the result less than those below.
    """
    check_strength(strength)
    return float(base) * 10.0 ** (STRENGTH_DECADES * (float(strength) - 0.5))


def min_side(layers: Sequence[str]) -> int:
    """The smallest image side VGG19 can take to reach the deepest of ``layers`` (2 ** pools before it;
    a pooling layer itself needs one more halving)."""
    from .vgg import LAYERS, canonical

    if not layers:
        return 1
    deepest = max(LAYERS.index(canonical(n)) for n in layers)
    pools = sum(1 for name in LAYERS[: deepest + 1] if name.startswith("pool"))
    return 2**pools


def check_min_side(image: torch.Tensor, layers: Sequence[str], what: str) -> None:
    """GafuError when ``image`` is too small for the layers (instead of a pooling RuntimeError)."""
    need = min_side(layers)
    h, w = image.shape[-2:]
    if min(h, w) < need:
        raise GafuError(
            f"{what} is {w}x{h} pixels, too small for the VGG19 layers used "
            f"(at least {need} pixels on each side); raise the size"
        )


def style_size(size: int, style_scale: float) -> int:
    """Long side (pixels) at which style images are loaded: ``round(size * style_scale)``, at least 1."""
    return max(1, int(round(size * float(style_scale))))


def effective_style_weight(cfg) -> float:
    """The style weight a config runs with: ``style_weight``, scaled by ``strength`` if set."""
    if cfg.strength is None:
        return float(cfg.style_weight)
    return strength_to_style_weight(cfg.strength, cfg.style_weight)


@dataclass(frozen=True)
class Region:
    """One region of a region map: its label as given, its colour, its style and its pixel share."""

    label: str
    color: Tuple[int, int, int]
    style: object
    share: float


# ---------------------------------------------------------------------------------------------
# Preparation used by StyleTransfer (pure: tensors in, tensors out)
# ---------------------------------------------------------------------------------------------
def prepare_style(
    style: torch.Tensor, content: torch.Tensor, preserve_color: str, *, content_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """A style image as the optimization sees it under ``preserve_color``.

    'none': unchanged. 'luminance': its luminance matched to the content's (over ``content_mask``),
    grey. 'histogram': its colours matched to the content's mean/covariance (over ``content_mask``).
    """
    if preserve_color == "luminance":
        return match_luminance(style, content, content_mask=content_mask)
    if preserve_color == "histogram":
        return match_color(style, content, content_mask=content_mask)
    if preserve_color == "none":
        return style
    raise unknown_name("colour preservation mode", str(preserve_color), PRESERVE_COLOR_MODES)


def prepare_regions(
    region_map: MaskLike,
    region_styles,
    shape: Tuple[int, int],
    *,
    feather: float = 0.0,
    mask: Optional[torch.Tensor] = None,
    tolerance: float = REGION_TOLERANCE,
) -> Tuple[List[Region], torch.Tensor]:
    """Parse region styles, build one mask per region at ``shape`` (feathered, and limited to
    ``mask`` if given); every listed region must select at least one pixel.

    Returns the regions (label, colour, style, share of the image) and masks ``(R, 1, H, W)``.
    """
    items = normalize_region_styles(region_styles)
    colors = [parse_color(label) for label, _ in items]
    hard = label_masks(region_map, colors, shape, tolerance=tolerance)
    for (label, _), rgb, m in zip(items, colors, hard):
        if float(m.sum()) == 0:
            raise GafuError(
                f"region '{label}' ({color_hex(rgb)}) has no pixel in the region map "
                f"(no colour within {tolerance:g} of it)"
            )
    masks = feather_mask(hard, feather)
    if mask is not None:
        masks = masks * mask.to(masks.dtype).cpu()
        for (label, _), m in zip(items, masks):
            if float(m.sum()) == 0:
                raise GafuError(f"region '{label}' lies entirely outside the mask")
    shares = masks.mean(dim=(1, 2, 3)).tolist()
    regions = [Region(label, rgb, style, share) for (label, style), rgb, share in zip(items, colors, shares)]
    return regions, masks


# ---------------------------------------------------------------------------------------------
# Measurements (for tests, benchmarks and reports)
# ---------------------------------------------------------------------------------------------
def spectral_centroid(image: torch.Tensor, reference: Optional[torch.Tensor] = None) -> float:
    """Dominant spatial frequency of an image's luminance texture, in cycles per pixel (0..~0.7).

    The power-weighted mean radial frequency of the Hann-windowed luminance (minus ``reference``'s
    luminance if given, i.e. of what was added to it), DC excluded. Larger brush strokes -> lower.
    """
    y = luminance(image.double())[0, 0]
    if reference is not None:
        y = y - luminance(reference.double())[0, 0]
    y = y - y.mean()
    h, w = y.shape
    win = torch.hann_window(h, periodic=False, dtype=torch.float64)[:, None]
    win = win * torch.hann_window(w, periodic=False, dtype=torch.float64)[None]
    p = torch.fft.fft2(y * win).abs() ** 2
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None]
    r = torch.sqrt(fy**2 + fx**2)
    p[0, 0] = 0
    total = p.sum()
    return float((p * r).sum() / total) if float(total) > 0 else 0.0
