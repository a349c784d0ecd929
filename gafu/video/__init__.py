"""Stylized video without flicker (``gafu video``): PyAV in/out, OpenCV optical flow, a masked
temporal loss, and the warping-error metric.

- :func:`stylize` (:mod:`gafu.video.stylize`): the fast (feed-forward) and optimize (Gatys) methods.
- :mod:`gafu.video.io`: :func:`read_clip` / :func:`write_clip` (video with PyAV, GIF, frames folders).
- :mod:`gafu.video.flow`: :class:`FlowEstimator` (DIS, Farneback), :func:`warp`, :func:`consistency_mask`.
- :mod:`gafu.video.temporal`: :class:`TemporalLoss`, a term for :meth:`StyleTransfer.add_term`.
- :mod:`gafu.video.metrics`: :func:`warping_error` (Lai et al. 2018).
- :mod:`gafu.video.clips`: synthetic clips with known motion (tests, benchmarks).

Needs the ``video`` extra: ``pip install 'gafu[video]'`` (av, opencv-python-headless); nothing
is imported from them until used.
"""

from .flow import FLOW_METHODS, FlowEstimator, consistency_mask, warp
from .io import Clip, read_clip, write_clip
from .metrics import warping_error
from .stylize import METHODS, VideoResult, stylize


def __getattr__(name: str):
    if name == "TemporalLoss":  # torch is imported only when the temporal term is asked for
        from .temporal import TemporalLoss

        return TemporalLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "FLOW_METHODS", "METHODS", "Clip", "FlowEstimator", "TemporalLoss", "VideoResult",
    "consistency_mask", "read_clip", "stylize", "warp", "warping_error", "write_clip",
]
