"""Peak memory of an optimization, estimated before it starts, and the refusal of what won't fit.

The model is linear in the number of pixels: a fixed part (VGG19 weights, the runtime) plus a
per-megapixel part (activations kept for the backward pass, their gradients, the image, L-BFGS
pairs). Its constants are fitted, with a margin, to peak RSS measured by
``benchmarks/bench_speed.py`` on a 2-core CPU (fast preset, bf16: 935 MB at 340x512, 1.5-1.8 GB at
680x1024, 4.4 GB at 1362x2048, 16.4 GB at 2724x4096; seed preset, fp32: 1.10 GB at 340x512).
It guards against starting a run that the machine would kill; it is not a promise.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Tuple

from ..errors import GafuError

#: Fixed part (MB): weights, runtime, the process itself.
BASE_MB = 700.0
#: Per megapixel (MB), by the precision of the network's activations.
PER_MEGAPIXEL_MB = {"fp32": 2600.0, "bf16": 1500.0, "fp16": 1500.0}
#: Region maps keep one Gram statistic per region: measured ~60% more work, budgeted as 40% more memory.
REGION_FACTOR = 1.4
MARGIN = 1.1


def estimate_peak_mb(height: int, width: int, *, precision: str = "fp32", regions: int = 0) -> float:
    """Estimated peak resident memory (MB) of a run optimizing an ``height`` x ``width`` image."""
    per_mp = PER_MEGAPIXEL_MB.get(precision, PER_MEGAPIXEL_MB["fp32"])
    if regions > 1:
        per_mp *= REGION_FACTOR
    return MARGIN * (BASE_MB + per_mp * height * width / 1e6)


def available_mb() -> Optional[float]:
    """Memory the system can give this process now (MemAvailable), in MB; None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def largest_fitting(height: int, width: int, budget_mb: float, *, precision: str = "fp32", regions: int = 0) -> int:
    """The longest side (pixels) at this aspect ratio whose estimate fits in ``budget_mb`` (0: none)."""
    per_mp = PER_MEGAPIXEL_MB.get(precision, PER_MEGAPIXEL_MB["fp32"]) * (REGION_FACTOR if regions > 1 else 1.0)
    pixels = (budget_mb / MARGIN - BASE_MB) / per_mp * 1e6
    if pixels <= 0:
        return 0
    short_over_long = min(height, width) / max(height, width)
    return int(math.sqrt(pixels / short_over_long))


def check_fits(shape: Tuple[int, int], *, precision: str, regions: int = 0, budget_mb: Optional[float] = None) -> None:
    """GafuError, in one line and before any work, when a run at ``shape`` would not fit in
    ``budget_mb`` (default: the memory available now), naming the largest size that would.
    ``GAFU_MEMORY_CHECK=0`` turns the check off."""
    if os.environ.get("GAFU_MEMORY_CHECK", "1").strip() == "0":
        return
    budget = available_mb() if budget_mb is None else budget_mb
    if budget is None:
        return
    h, w = shape
    need = estimate_peak_mb(h, w, precision=precision, regions=regions)
    if need <= budget:
        return
    fits = largest_fitting(h, w, budget, precision=precision, regions=regions)
    hint = f"the largest size that fits is about {fits} px (size={fits})" if fits >= 64 else "no size fits"
    raise GafuError(
        f"a {w}x{h} run needs about {need / 1024:.1f} GB of memory ({precision}) but {budget / 1024:.1f} GB is "
        f"available; {hint}",
        argument="size",
    )


# -- tiled runs (gafu.optimize.tiled) --------------------------------------------------------------
#: Image-sized fp32 buffers a tiled run keeps at full size, besides its optimizer's: the image, its
#: gradient, the content, the loop's last-good/before copies, the content features (2/3 of an image
#: at block5), the output's temporaries. Counted, with MARGIN; checked against peak RSS in benchmarks/bench_print.py.
FULL_COPIES = 8.0
#: The optimizers' image-sized buffers: Adam's two moments plus temporaries; L-BFGS's working set
#: (start point, cached gradient, direction, new gradient) plus two per curvature pair.
OPTIMIZER_COPIES = {"adam": 4.0, "lbfgs": 4.0}
#: The smallest tile (px) a tiled run uses: smaller tiles repeat too much work in their overlaps.
MIN_TILE = 256


def image_mb(height: int, width: int) -> float:
    """One fp32 RGB image (MB)."""
    return 12.0 * height * width / 2**20


def full_size_copies(height: int, width: int, *, optimizer: str = "adam", lbfgs_history: int = 10) -> float:
    """How many image-sized fp32 buffers a tiled run holds at full size (optimizer state included)."""
    copies = FULL_COPIES + OPTIMIZER_COPIES.get(optimizer, 4.0)
    if optimizer == "lbfgs":
        from .optimizers import history_for

        copies += 2 * history_for(3 * height * width, lbfgs_history)
    return copies


def estimate_tiled_mb(height: int, width: int, tile: int, *, precision: str = "fp32", optimizer: str = "adam",
                      lbfgs_history: int = 10) -> float:
    """Estimated peak resident memory (MB) of a run optimizing ``height`` x ``width`` in tiles of at
    most ``tile`` px: the network's working set for one tile plus the full-size buffers."""
    per_mp = PER_MEGAPIXEL_MB.get(precision, PER_MEGAPIXEL_MB["fp32"])
    th, tw = min(tile, height), min(tile, width)
    full = full_size_copies(height, width, optimizer=optimizer, lbfgs_history=lbfgs_history) * image_mb(height, width)
    return MARGIN * (BASE_MB + per_mp * th * tw / 1e6 + full)


def largest_tile(height: int, width: int, budget_mb: float, *, precision: str = "fp32", optimizer: str = "adam",
                 lbfgs_history: int = 10, multiple: int = 16) -> int:
    """The largest tile side (a multiple of ``multiple``) whose tiled estimate fits ``budget_mb``; 0: none >= MIN_TILE."""
    per_mp = PER_MEGAPIXEL_MB.get(precision, PER_MEGAPIXEL_MB["fp32"])
    full = full_size_copies(height, width, optimizer=optimizer, lbfgs_history=lbfgs_history) * image_mb(height, width)
    pixels = (budget_mb / MARGIN - BASE_MB - full) / per_mp * 1e6
    if pixels <= 0:
        return 0
    side = int(math.sqrt(pixels))
    short = min(height, width)
    if side >= short:  # tiles as wide as the short side: the rest of the budget goes to the long one
        side = int(pixels / short)
    side = min(side, max(height, width)) // multiple * multiple
    return side if side >= MIN_TILE else 0


def largest_tiled_fitting(height: int, width: int, budget_mb: float, *, precision: str = "fp32",
                          optimizer: str = "adam", lbfgs_history: int = 10) -> int:
    """The longest side (pixels) at this aspect ratio that a tiled run fits in ``budget_mb`` (0: none)."""
    lo, hi = 0, 65536
    while hi - lo > 16:
        mid = (lo + hi) // 2
        h, w = _at_side(height, width, mid)
        ok = estimate_tiled_mb(h, w, MIN_TILE, precision=precision, optimizer=optimizer,
                               lbfgs_history=lbfgs_history) <= budget_mb
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def _at_side(height: int, width: int, side: int) -> Tuple[int, int]:
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def parse_size_mb(text: str) -> float:
    """'4GB', '4G', '4096MB', '512M', '1.5 GiB' -> megabytes (MiB). GafuError for anything else."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt])i?b?\s*", str(text), flags=re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise GafuError(f"expected a memory size such as 4GB, 4096MB, 4G or 512M, got '{text}'", argument="max_memory")
    factor = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}[m.group(2).lower()]
    return float(m.group(1)) * factor


def fits_whole(shape: Tuple[int, int], *, precision: str, regions: int = 0, budget_mb: Optional[float] = None) -> bool:
    """Whether a whole (untiled) run at ``shape`` in ``precision`` fits in ``budget_mb`` (default: the
    memory available now; always True where that is unknown or ``GAFU_MEMORY_CHECK=0``)."""
    check = os.environ.get("GAFU_MEMORY_CHECK", "1").strip() != "0"
    budget = (available_mb() if check else None) if budget_mb is None else budget_mb
    return budget is None or estimate_peak_mb(*shape, precision=precision, regions=regions) <= budget


def plan_memory(shape: Tuple[int, int], *, precision: str, regions: int = 0, masked: bool = False,
                optimizer: str = "adam", lbfgs_history: int = 10, budget_mb: Optional[float] = None,
                tile: Optional[int] = None) -> Optional[int]:
    """Decide, before any work, how a run at ``shape`` fits in ``budget_mb`` (default: the memory
    available now): None = whole (untiled), else the tile side to optimize it in. GafuError, in
    one line, when neither fits, naming the largest size that would. ``tile`` forces tiles of that
    side where the image is larger. ``GAFU_MEMORY_CHECK=0`` turns the check off (whole, or ``tile``)."""
    h, w = shape
    forced = tile is not None and max(h, w) > tile
    check = os.environ.get("GAFU_MEMORY_CHECK", "1").strip() != "0"
    budget = (available_mb() if check else None) if budget_mb is None else budget_mb
    whole = estimate_peak_mb(h, w, precision=precision, regions=regions)
    if not forced and (budget is None or whole <= budget):
        return None
    kw = dict(precision=precision, optimizer=optimizer, lbfgs_history=lbfgs_history)
    if regions or masked:  # per-region statistics are not tiled: the whole image must fit
        check_fits(shape, precision=precision, regions=regions, budget_mb=budget)
        return None
    if forced:
        side = tile
    else:
        side = largest_tile(h, w, budget, **kw)
    need = estimate_tiled_mb(h, w, side or MIN_TILE, **kw)
    if budget is not None and (not side or need > budget):
        fits = max(largest_tiled_fitting(h, w, budget, **kw),
                   largest_fitting(h, w, budget, precision=precision, regions=regions))
        hint = f"the largest size that fits is about {fits} px (size={fits})" if fits >= 64 else "no size fits"
        raise GafuError(
            f"a {w}x{h} run needs about {need / 1024:.1f} GB of memory in tiles of {side or MIN_TILE} px "
            f"({precision}, {optimizer}) but the budget (max_memory) is {budget / 1024:.1f} GB; {hint}",
            argument=("size", "max_memory"),
        )
    return side
