"""Temporal stability: the warping error of Lai et al. (2018), "Learning Blind Video Temporal
Consistency" (ECCV), eq. 8::

    E_warp = 1/(T-1) * sum_{t=2..T}  1/sum_p M_t(p) * sum_p M_t(p) * || V_t(p) - warp(V_{t-1}, F_t)(p) ||^2

``V`` are the *output* frames (RGB in [0, 1]); the backward flow ``F_t`` (t -> t-1) and the
non-occlusion mask ``M_t`` are computed on the *input* frames, so that a result is judged by how
well it follows the motion of the original clip (not its own). Lai et al. use FlowNet2; gafu uses
the same OpenCV flow as the stylization (:mod:`gafu.video.flow`), so compare numbers computed with
the same ``flow`` only. Lower is steadier; a still frame repeated scores 0.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import GafuError
from .flow import FlowEstimator


def _float(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)


def input_flows(inputs: Sequence[np.ndarray], method: str = "dis") -> List[Tuple[np.ndarray, np.ndarray]]:
    """(backward flow, mask) for t = 1..T-1 from the input frames; reuse them for several outputs."""
    est = FlowEstimator("dis" if method == "none" else method)
    return [est.pair(inputs[t], inputs[t - 1]) for t in range(1, len(inputs))]


def warping_errors(
    outputs: Sequence[np.ndarray],
    flows: Sequence[Tuple[np.ndarray, np.ndarray]],
) -> List[float]:
    """Per-step masked warping errors (one per t = 1..T-1) of ``outputs`` under ``flows``."""
    from .flow import warp

    if len(flows) != len(outputs) - 1:
        raise GafuError(f"{len(outputs)} output frames need {len(outputs) - 1} flows, got {len(flows)}")
    errs = []
    for t in range(1, len(outputs)):
        back, mask = flows[t - 1]
        cur, prev = _float(outputs[t]), _float(outputs[t - 1])
        if cur.shape[:2] != back.shape[:2]:
            raise GafuError("output frames must have the input frames' size for the warping error")
        diff = ((cur - warp(prev, back)) ** 2).sum(-1)
        total = float(mask.sum())
        errs.append(float((mask * diff).sum() / total) if total > 0 else 0.0)
    return errs


def warping_error(
    outputs: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    method: str = "dis",
    *,
    flows: Optional[Sequence[Tuple[np.ndarray, np.ndarray]]] = None,
) -> float:
    """Mean warping error of ``outputs`` (flow and occlusions from ``inputs``, ``method`` 'dis' or
    'farneback'; 'none' measures with 'dis'). 0 for a single frame."""
    if len(outputs) != len(inputs):
        raise GafuError(f"{len(outputs)} output frames for {len(inputs)} input frames")
    if len(outputs) < 2:
        return 0.0
    errs = warping_errors(outputs, flows if flows is not None else input_flows(inputs, method))
    return float(np.mean(errs))
