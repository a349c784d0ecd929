"""Old import path of gafu's L-BFGS (now :mod:`gafu.optimize.optimizers`; kept for existing code)."""

from .optimize.optimizers import LBFGS, MEMORY_BUDGET_BYTES, Closure, history_for  # noqa: F401

__all__ = ["LBFGS", "MEMORY_BUDGET_BYTES", "Closure", "history_for"]
