"""``gafu web``: a local web page (Gradio) for everything gafu does. Optional: ``pip install gafu[web]``.

Nothing is imported or built at import time; :func:`build_app` builds the page, :func:`launch`
serves it on 127.0.0.1. The jobs behind the page (:mod:`gafu.web.jobs`) need no Gradio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'gafu.web' has no attribute '{name}'")
