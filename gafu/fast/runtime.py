"""onnxruntime sessions for the Magenta networks: providers, in-memory graph edits, a thread-safe cache.

A session is built once per (model, folder, providers, threads, variant) for the life of the
process; two threads asking for the same session at once get the same one, built once
(:class:`gafu.assets.OnceCache`). onnxruntime's ``InferenceSession.run`` may be called from
several threads on one session.
"""

from __future__ import annotations

import os
from typing import Any, Union

from ..assets import OnceCache
from ..errors import GafuError
from .graph import fuse_instance_norm, make_spatial_dynamic, split_statistics
from .models import PREDICT_INPUT, TRANSFORM_CONTENT, model_dir, read_model

DEVICES = ("cpu", "cuda", "auto")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
#: The variants of a network: as edited for full resolution ('plain'), and the two tiling halves.
VARIANTS = ("plain", "stats", "fixed")

_SESSIONS = OnceCache()


def providers_for(device: str) -> list[str]:
    """onnxruntime providers for cpu|cuda|auto. 'cuda' without a CUDA provider is an error."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise GafuError(f"unknown device '{device}'; choose from: {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return [_CPU]
    if _CUDA in available:
        return [_CUDA, _CPU]
    if device == "auto":
        return [_CPU]
    raise GafuError(
        "device 'cuda' was asked for, but this onnxruntime has no CUDA provider "
        f"(found: {', '.join(available)}); install onnxruntime-gpu or use device cpu"
    )


def prepared_model(name: str, folder: Union[str, os.PathLike, None] = None, variant: str = "plain",
                   as_shipped: bool = False) -> bytes:
    """The model's bytes as gafu runs them (see :func:`session`), after the file's hash check."""
    data = read_model(name, folder)
    if as_shipped:
        return data
    if name == "arbitrary_transform":
        data = make_spatial_dynamic(data, TRANSFORM_CONTENT, output_too=True)
    elif name == "arbitrary_predict":
        data = make_spatial_dynamic(data, PREDICT_INPUT, output_too=False)
    elif name == "multistyle26" and variant == "plain":
        data = fuse_instance_norm(data)
    if variant != "plain":
        data = split_statistics(data, variant, prune=name == "multistyle26")
    return data


def _build(name: str, data: bytes, providers: list[str], threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # 0 = onnxruntime's default: one intra-op thread per physical core.
    opts.intra_op_num_threads = int(threads or 0)
    opts.log_severity_level = 3
    if name == "multistyle26":
        # Without a precomputed memory pattern the float 26-style network peaks at less than
        # half the memory (1.1 GB instead of 2.4 GB at 2048x1365) at the same speed.
        opts.enable_mem_pattern = False
    try:
        sess = ort.InferenceSession(data, opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise GafuError(f"cannot load model {name}: {str(exc).splitlines()[0]}") from None
    if sess.get_providers()[0] != providers[0]:
        raise GafuError(
            f"onnxruntime could not start {providers[0]} (it fell back to "
            f"{sess.get_providers()[0]}); check the CUDA/cuDNN install or use device cpu"
        )
    return sess


def session(name: str, *, device: str = "cpu", threads: int | None = None,
            folder: Union[str, os.PathLike, None] = None, variant: str = "plain",
            as_shipped: bool = False) -> Any:
    """A cached onnxruntime session for one model, edited in memory for gafu's use.

    Arbitrary-style models are made size-dynamic (:func:`make_spatial_dynamic`); the 26-style
    network gets fused instance norms (:func:`fuse_instance_norm`). ``variant`` 'stats' or 'fixed'
    selects the tiling variants of :func:`split_statistics`. ``as_shipped=True`` runs the file
    exactly as shipped (to compare against).
    """
    if as_shipped and variant != "plain":
        raise ValueError("as_shipped sessions have no tiling variants")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    providers = providers_for(device)
    key = (name, str(model_dir(folder).resolve()), tuple(providers), threads or 0, variant, as_shipped)
    return _SESSIONS.get(key, lambda: _build(name, prepared_model(name, folder, variant, as_shipped),
                                             providers, threads))
