"""Masks and region maps on gafu's tensor convention (masks are ``1x1xHxW`` float32 in [0, 1]).

Masks
    :func:`load_mask` (any image, thresholded: JPEG masks are fine), :func:`resize_mask` (nearest
    neighbour only, never interpolated), :func:`feather_mask` (Gaussian soft edge),
    :func:`layer_mask` (the mask at a feature map's resolution: the covered fraction of each cell),
    :func:`blend` (result inside, content outside), :func:`prepare_mask` (all of it, checked).

Region maps (spatial control, Gatys et al. 2017)
    :func:`parse_color`, :func:`parse_region_styles` ("red=a.jpg,#00ff00=b.jpg"),
    :func:`label_masks` (nearest listed colour within a tolerance -> one mask per region),
    :func:`prepare_regions` (parsed, masked, every region checked non-empty).

Nothing here loads a network: the fast engine, the defect synthesizer or any other tool can use
the same masks.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .color import BT601_LUMA
from .errors import GafuError, unknown_name

#: A mask pixel is "in" when its grey value (0..255) is above this (JPEG masks: threshold at 127).
MASK_THRESHOLD = 127

#: Region maps: a pixel belongs to the nearest listed colour if its RGB distance (0..255 per
#: channel, Euclidean) is at most this; farther pixels belong to no region (they keep the content).
REGION_TOLERANCE = 100.0

#: Colour names accepted in region styles (pure primaries, as label maps are painted).
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
            arr = np.tensordot(np.asarray(BT601_LUMA), arr, axes=1)
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
                f"region_styles expects COLOUR=STYLE items (e.g. red=a.jpg,blue=b.jpg), got '{raw.strip()}'",
                argument="region_styles",
            )
        label, path = raw.split("=", 1)
        label, path = label.strip(), path.strip()
        parse_color(label)
        if not path:
            raise GafuError(f"region '{label}' has no style image")
        items.append((label, path))
    if not items:
        raise GafuError("region_styles is empty", argument="region_styles")
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


@dataclass(frozen=True)
class Region:
    """One region of a region map: its label as given, its colour, its style and its pixel share."""

    label: str
    color: Tuple[int, int, int]
    style: object
    share: float


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
