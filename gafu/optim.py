"""Old import path of :class:`gafu.optimize.optimizers.KerasAdam` (kept for existing code)."""

from .optimize.optimizers import KerasAdam  # noqa: F401

__all__ = ["KerasAdam"]
