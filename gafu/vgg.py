"""VGG19 feature extractor with named layers and Caffe preprocessing inside.

Input: float NCHW RGB in [0, 1]. The extractor converts to what the original (Caffe/Keras) VGG19
expects — BGR, x255, minus the ImageNet mean pixel — using buffers, so callers never see a second
pixel scale.

Layer names (one ordered tuple, :data:`LAYERS`):

- classic names: ``conv4_2`` (before ReLU), ``relu4_2`` (after ReLU), ``pool4``;
- Keras names as the seed uses them: ``block4_conv2`` is the *post-ReLU* output (Keras fuses the
  activation into the conv layer), i.e. an alias of ``relu4_2``; ``block4_pool`` is ``pool4``.

The network is truncated after the deepest requested layer: deeper weights are not even built.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import GafuError, unknown_name
from .weights import CONV_LAYERS, load_vgg19_weights

#: Convs per block of VGG19.
BLOCKS = (2, 2, 4, 4, 4)

#: Caffe ImageNet mean pixel in BGR order, on the 0-255 scale.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _build_layers() -> Tuple[str, ...]:
    names = []
    for b, n in enumerate(BLOCKS, start=1):
        for c in range(1, n + 1):
            names += [f"conv{b}_{c}", f"relu{b}_{c}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Every addressable layer in forward order (canonical classic names).
LAYERS: Tuple[str, ...] = _build_layers()
_INDEX = {name: i for i, name in enumerate(LAYERS)}

#: Keras name -> canonical name.
KERAS_ALIASES: Dict[str, str] = {}
for _b, _n in enumerate(BLOCKS, start=1):
    for _c in range(1, _n + 1):
        KERAS_ALIASES[f"block{_b}_conv{_c}"] = f"relu{_b}_{_c}"
    KERAS_ALIASES[f"block{_b}_pool"] = f"pool{_b}"

#: Canonical conv name -> Keras weight name.
_WEIGHT_NAME = {f"conv{n[5]}_{n[11]}": n for n, _, _ in CONV_LAYERS}


def canonical(name: str) -> str:
    """Map a Keras or classic layer name to the canonical classic name, or raise with did-you-mean."""
    key = name.strip()
    if key in _INDEX:
        return key
    if key in KERAS_ALIASES:
        return KERAS_ALIASES[key]
    raise unknown_name("VGG19 layer", key, list(KERAS_ALIASES) + list(LAYERS))


def layer_kind(name: str) -> str:
    c = canonical(name)
    return re.match(r"[a-z]+", c).group(0)  # conv | relu | pool


class VGG19Features(nn.Module):
    """Named-layer VGG19 feature extractor, truncated after the deepest of ``layers``.

    Args:
        layers: layer names the forward pass returns by default (Keras or classic names).
        weights: a weights path (or None for env var / bundled file), or a loaded weights dict.
        pooling: 'max' (as the original and the seed) or 'avg' (Gatys et al.'s suggestion).

    ``forward(x)`` returns ``{name: tensor}`` keyed by the names the caller used.
    """

    def __init__(
        self,
        layers: Sequence[str],
        weights: Union[str, os.PathLike, dict, None] = None,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if not layers:
            raise GafuError("no VGG19 layers requested")
        if pooling not in ("max", "avg"):
            raise GafuError(f"unknown pooling '{pooling}'; choose from: max, avg")
        self.pooling = pooling
        self.requested: Tuple[str, ...] = tuple(layers)
        self._canon = {name: canonical(name) for name in self.requested}
        self.depth = max(_INDEX[c] for c in self._canon.values())
        self.layers: Tuple[str, ...] = LAYERS[: self.depth + 1]
        w = weights if isinstance(weights, dict) else load_vgg19_weights(weights)
        self.convs = nn.ModuleDict()
        for name in self.layers:
            if name.startswith("conv"):
                weight, bias = w[_WEIGHT_NAME[name]]
                # Share the (process-wide cached) weight tensors instead of copying them: ~60 MB
                # less per process. Nothing here writes to them (reduced_precision() copies first).
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, device="meta")
                conv.weight = nn.Parameter(weight.detach().to(torch.float32).contiguous(), requires_grad=False)
                conv.bias = nn.Parameter(bias.detach().to(torch.float32).contiguous(), requires_grad=False)
                self.convs[name] = conv
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        # Set by reduced_precision(): compute dtype, memory format, Caffe scale/flip folded into conv1_1.
        self.compute_dtype: Optional[torch.dtype] = None
        self.channels_last = False
        self.folded = False
        self._lowp: Dict[torch.dtype, "VGG19Features"] = {}
        self._lowp_lock = threading.Lock()

    def at_precision(self, dtype: Optional[torch.dtype]) -> "VGG19Features":
        """This extractor computing in ``dtype``: itself for fp32/None, else its
        :meth:`reduced_precision` copy, made once and kept (thread-safe)."""
        if dtype is None or dtype == torch.float32 or dtype == self.compute_dtype:
            return self
        with self._lowp_lock:
            m = self._lowp.get(dtype)
            if m is None:
                m = self._lowp[dtype] = self.reduced_precision(dtype, channels_last=True)
            return m

    def __deepcopy__(self, memo):
        # The low-precision cache and its lock are per object: a copy starts without them.
        cls = self.__class__
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k in ("_lowp", "_lowp_lock"):
                continue
            new.__dict__[k] = copy.deepcopy(v, memo)
        new._lowp, new._lowp_lock = {}, threading.Lock()
        return new

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB [0,1] -> Caffe input: BGR, x255, minus mean pixel (``keras...vgg19.preprocess_input``).

        In a :meth:`reduced_precision` copy the x255 and the BGR flip live in conv1_1's weights and
        this only subtracts the mean (in fp32), then casts to the compute dtype and layout.
        """
        if not self.folded:
            return x.flip(1) * 255.0 - self.mean.to(x.dtype)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        h = x.float() - self.mean_rgb01
        return h.to(dtype=self.compute_dtype, memory_format=fmt)

    def reduced_precision(self, dtype: torch.dtype, channels_last: bool = True) -> "VGG19Features":
        """A copy that computes in ``dtype`` (bf16/fp16) with ``channels_last`` activations.

        Input and output conventions are unchanged (fp32 RGB in [0, 1] in; features come out in
        ``dtype``). The Caffe preprocessing ``255 * flip_rgb(x) - mean`` is folded exactly:
        ``conv(255 * flip(x) - mean) = conv'(x - mean_rgb / 255)`` with conv1_1's input channels
        flipped and scaled by 255 (zero padding of ``x - mean_rgb/255`` is zero padding of the
        Caffe input, so borders agree too). The fold is done in fp32 before the cast.
        """
        m = copy.deepcopy(self)
        if not m.folded:
            first = m.convs[m.layers[0]]  # conv1_1
            with torch.no_grad():
                first.weight.copy_(first.weight.flip(1) * 255.0)
            m.folded = True
        m.to(dtype)
        if channels_last:
            m.to(memory_format=torch.channels_last)
        # The mean stays fp32 (bf16 would round 103.939 to 104).
        mean = torch.tensor(CAFFE_MEAN_BGR, device=self.mean.device).flip(0).view(1, 3, 1, 1) / 255.0
        m.register_buffer("mean_rgb01", mean, persistent=False)
        m.mean = self.mean.clone()
        m.compute_dtype = dtype
        m.channels_last = channels_last
        m.requires_grad_(False)
        return m

    def forward(self, x: torch.Tensor, layers: Optional[Iterable[str]] = None) -> Dict[str, torch.Tensor]:
        names = tuple(layers) if layers is not None else self.requested
        want: Dict[str, list] = {}
        for n in names:
            c = self._canon.get(n) or canonical(n)
            if _INDEX[c] > self.depth:
                raise GafuError(f"layer '{n}' is deeper than this truncated extractor (last: {self.layers[-1]})")
            want.setdefault(c, []).append(n)
        last = max(_INDEX[c] for c in want)
        out: Dict[str, torch.Tensor] = {}
        h = self.preprocess(x)
        for name in self.layers[: last + 1]:
            kind = name[:4]
            if kind == "conv":
                h = self.convs[name](h)
            elif kind == "relu":
                # In place unless the pre-ReLU value was handed out to the caller.
                h = F.relu(h, inplace=(name.replace("relu", "conv") not in want))
            else:
                h = F.max_pool2d(h, 2, 2) if self.pooling == "max" else F.avg_pool2d(h, 2, 2)
            if name in want:
                for alias in want[name]:
                    out[alias] = h
        return out


def min_side(layers: Sequence[str]) -> int:
    """The smallest image side VGG19 can take to reach the deepest of ``layers`` (2 ** pools before it;
    a pooling layer itself needs one more halving)."""
    if not layers:
        return 1
    deepest = max(LAYERS.index(canonical(n)) for n in layers)
    pools = sum(1 for name in LAYERS[: deepest + 1] if name.startswith("pool"))
    return 2**pools


def check_min_side(image: torch.Tensor, layers: Sequence[str], what: str) -> None:
    """GafuError when ``image`` is too small for the layers (instead of a pooling RuntimeError)."""
    need = min_side(layers)
    h, w = image.shape[-2:]
    if min(h, w) < need:
        raise GafuError(
            f"{what} is {w}x{h} pixels, too small for the VGG19 layers used "
            f"(at least {need} pixels on each side); raise the size"
        )


_model_cache: Dict[tuple, VGG19Features] = {}
_model_lock = threading.Lock()


def load_vgg19(
    layers: Sequence[str],
    weights: Union[str, os.PathLike, None] = None,
    pooling: str = "max",
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = None,
) -> VGG19Features:
    """Build (or reuse) an extractor for ``layers`` on ``device``; weights are loaded once per process.

    ``dtype`` bf16/fp16 gives the :meth:`VGG19Features.reduced_precision` copy (channels_last) of
    the fp32 extractor; None or fp32 gives the fp32 extractor itself.
    """
    from .weights import resolve_path

    path, _ = resolve_path(weights)
    key = (tuple(layers), str(path), pooling, str(device))
    with _model_lock:  # one model per key even when threads (a web server's workers) ask at once
        model = _model_cache.get(key)
        if model is None:
            model = VGG19Features(layers, weights=weights, pooling=pooling).to(device)
            _model_cache[key] = model
    return model.at_precision(dtype)
