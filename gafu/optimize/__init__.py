"""Optimization-based style transfer (Gatys et al.): the rooms of the loop.

- :mod:`~gafu.optimize.targets`: :class:`StyleTargets`, style images and Gram targets prepared once.
- :mod:`~gafu.optimize.prepare`: content, where to stylize, the criterion, the start image.
- :mod:`~gafu.optimize.loop`: :class:`StyleTransfer` and its :class:`Iterate` reports.
- :mod:`~gafu.optimize.optimizers`: Adam with Keras semantics, L-BFGS.
- :mod:`~gafu.optimize.precision`: bf16/fp16 extractor policy, 16-bit Gram, the allocator setting.
"""

from .loop import Iterate, StyleTransfer, _FP16_GRAD_SCALE, _stalled  # noqa: F401
from .targets import StyleTargets, prepare_style

__all__ = ["Iterate", "StyleTransfer", "StyleTargets", "prepare_style"]
