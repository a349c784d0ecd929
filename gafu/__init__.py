"""gafu (画風): neural style transfer — Gatys optimization over VGG19, fast arbitrary stylization, diagnostics.

The public API is listed in ``__all__``. Importing gafu does no work: torch, models and weights are
loaded on first use of the functions below.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_API = {
    "stylize": "gafu.api",
    "stylize_result": "gafu.api",
    "StyleResult": "gafu.result",
    "StyleTargets": "gafu.optimize",
    "Criterion": "gafu.losses",
    "StyleConfig": "gafu.config",
    "PRESETS": "gafu.config",
    "get_preset": "gafu.config",
    "Iterate": "gafu.optimize",
    "StyleTransfer": "gafu.optimize",
    "VGG19Features": "gafu.vgg",
    "load_vgg19": "gafu.vgg",
    "gram_matrix": "gafu.losses",
    "total_variation": "gafu.losses",
    "KerasAdam": "gafu.optim",
    "load_image": "gafu.image",
    "save_image": "gafu.image",
    "GafuError": "gafu.errors",
    # diagnostics and reports
    "classify_image": "gafu.classify",  # not "classify": that name is the submodule
    "layer_table": "gafu.analysis",
    "layer_stats": "gafu.analysis",
    "tensor_stats": "gafu.analysis",
    "high_pass": "gafu.analysis",
    "sobel_edges": "gafu.analysis",
    "edge_preservation": "gafu.analysis",
    "analyze": "gafu.analysis",
    "analysis_figure": "gafu.analysis",
    "contact_sheet": "gafu.report",
    "compare_styles": "gafu.workflows.compare",
    "write_run_report": "gafu.report",
    "fast_stylize": "gafu.fast",
    "FastStylizer": "gafu.fast",
    "combine_luminance": "gafu.color",
    "match_color": "gafu.color",
    "load_mask": "gafu.masks",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'gafu' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name if name != "load_image" else "load")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
