"""Old import path of the precision and allocator machinery (now :mod:`gafu.optimize.precision`)."""

from .optimize.precision import *  # noqa: F401,F403
from .optimize.precision import _GramT, keep_freed_memory  # noqa: F401
