"""Validation shared by every floor (API, engines, CLI): one place per rule, one message per rule.

Each check raises :class:`gafu.errors.GafuError` with a message that names the library argument
(the CLI maps its flags onto these arguments), and returns the value normalised.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .errors import GafuError


def check_strength(strength) -> float:
    """``strength`` as a float in [0, 1] (bools, NaN, infinities and other types refused)."""
    ok = isinstance(strength, (int, float, np.floating, np.integer)) and not isinstance(strength, bool)
    if ok:
        strength = float(strength)
        ok = math.isfinite(strength) and 0.0 <= strength <= 1.0
    if not ok:
        raise GafuError(f"strength must be a number in [0, 1], got {strength!r}")
    return strength


def normalize_weights(weights: Optional[Sequence[float]], count: int, what: str = "style images") -> np.ndarray:
    """Blend weights of ``count`` styles: one each, finite, >= 0, not all zero; returned summing to 1.

    ``None`` means equal weights. float64 array of length ``count``.
    """
    if count < 1:
        raise GafuError(f"no {what} to weight")
    if weights is None:
        return np.full(count, 1.0 / count, dtype=np.float64)
    try:
        w = np.asarray([float(v) for v in weights], dtype=np.float64)
    except (TypeError, ValueError):
        raise GafuError(f"style weights must be numbers, got {list(weights)!r}") from None
    if w.size != count:
        raise GafuError(f"got {w.size} style weight(s) for {count} {what}; give one weight per style")
    if not np.isfinite(w).all() or (w < 0).any():
        raise GafuError(f"style weights must be finite and >= 0, got {', '.join(f'{v:g}' for v in w)}")
    if w.sum() <= 0:
        raise GafuError("style weights are all zero; at least one must be > 0")
    return w / w.sum()


def check_one_style_weight(strength, style_weight) -> None:
    """``strength`` and ``style_weight`` both set the style weight: at most one may be given."""
    if strength is not None and style_weight is not None:
        raise GafuError("strength and style_weight both set the style weight; give one of them",
                        argument=("strength", "style_weight"))
