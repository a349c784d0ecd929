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
