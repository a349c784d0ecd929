"""Old import path of gafu's controls (kept for existing code): colour, masks, region maps, style
scale and strength now live in their own rooms:

- :mod:`gafu.color`: BT.601 YCbCr, luminance, luminance/histogram matching, chroma error;
- :mod:`gafu.masks`: mask loading, resizing, feathering, blending, region maps;
- :mod:`gafu.losses`: :class:`~gafu.losses.RegionStyleLoss` with the other loss terms;
- :mod:`gafu.config`: strength -> style weight, style sizes; :mod:`gafu.vgg`: minimum image side;
- :mod:`gafu.optimize.targets`: :func:`~gafu.optimize.targets.prepare_style`;
- :mod:`gafu.analysis`: :func:`~gafu.analysis.spectral_centroid`.
"""

from .analysis import spectral_centroid  # noqa: F401
from .checks import check_strength  # noqa: F401
from .color import (  # noqa: F401
    BT601_LUMA,
    chroma_error,
    combine_luminance,
    gray3,
    luminance,
    match_color,
    match_luminance,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from .config import (  # noqa: F401
    PRESERVE_COLOR_MODES,
    STRENGTH_DECADES,
    STYLE_SCALE_RANGE,
    effective_style_weight,
    strength_to_style_weight,
    style_size,
)
from .losses import RegionStyleLoss  # noqa: F401
from .masks import (  # noqa: F401
    COLOR_NAMES,
    MASK_THRESHOLD,
    REGION_TOLERANCE,
    MaskLike,
    Region,
    blend,
    check_aspect,
    color_hex,
    feather_mask,
    gaussian_kernel1d,
    label_masks,
    layer_mask,
    load_mask,
    normalize_region_styles,
    parse_color,
    parse_region_styles,
    prepare_mask,
    prepare_regions,
    resize_mask,
)
from .optimize.targets import prepare_style  # noqa: F401
from .vgg import check_min_side, min_side  # noqa: F401
