"""Diagnostics of the seed, as functions: VGG19 layer table and statistics, high-pass deltas, Sobel
edges, total variation, an edge-preservation score, and the figures that show them.

Every function takes images in gafu's convention (paths, PIL images, arrays or float32 NCHW RGB
tensors in [0, 1]) and returns plain data (floats, lists, dicts, tensors). Figures are optional:
:func:`analysis_figure` builds a :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot,
no global state, no display needed) and writes it only when asked to.

Colour scaling of the figures is the seed's: high-pass deltas are shown as ``clip(2*d + 0.5)`` and
Sobel responses as ``clip(s/4 + 0.5)``, per RGB channel, so mid-grey means zero.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .color import BT601_LUMA
from .color import luminance as _luminance
from .errors import GafuError
from .image import ImageLike, load_tensor, resize, to_tensor, load

#: The seed's Sobel kernels (``tf.image.sobel_edges``): dy, and its transpose dx.
SOBEL_DY = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))
SOBEL_DX = tuple(zip(*SOBEL_DY))

#: ITU-R BT.601 luma weights, used to reduce RGB to one channel for the edge-preservation score.
LUMA_WEIGHTS = BT601_LUMA

#: The seed's display mappings.
DELTA_SCALE = (2.0, 0.5)  # clip(2*d + 0.5)
SOBEL_SCALE = (0.25, 0.5)  # clip(s/4 + 0.5)


# ---------------------------------------------------------------------------------------------
# Images in, tensors out
# ---------------------------------------------------------------------------------------------
def as_image_tensor(image: Union[ImageLike, torch.Tensor], size: Optional[int] = None) -> torch.Tensor:
    """Any image -> float32 1x3xHxW in [0, 1] on the CPU; ``size`` scales the long side (seed resize)."""
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise GafuError(f"expected an image tensor of shape 1x3xHxW, got {tuple(image.shape)}")
        if size is not None:
            from .image import seed_shape

            t = resize(t, seed_shape(t.shape[-2], t.shape[-1], size), antialias=False)
        return t
    return load_tensor(image, size, mode="seed")


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def tensor_stats(t: torch.Tensor) -> Dict[str, object]:
    """Summary of a tensor: shape, min, max, mean, std (population, ddof=0), fraction of exact zeros.

    Computed in float64. Keys are stable (they are part of ``gafu layers --json``).
    """
    x = t.detach().to("cpu", torch.float64)
    n = x.numel()
    if n == 0:
        raise GafuError("cannot summarise an empty tensor")
    return {
        "shape": list(x.shape),
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        "std": float(x.std(unbiased=False)) if n > 1 else 0.0,
        "zero_fraction": float((x == 0).sum()) / n,
    }


def layer_table(size: Tuple[int, int] = (224, 224)) -> List[Dict[str, object]]:
    """VGG19's layers as Keras lists them (``include_top=False``), with output shapes for an input
    of ``size`` = (height, width).

    Each row: ``name`` (Keras), ``aliases`` (gafu's classic names for the same tensor), ``kind``,
    ``output_shape`` (NCHW, batch 1), ``params``. Keras' ``blockB_convC`` includes the ReLU, so its
    alias is ``reluB_C``; the pre-ReLU ``convB_C`` is addressable in gafu too.
    """
    from .vgg import BLOCKS
    from .weights import CONV_LAYERS

    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise GafuError(f"image size must be positive, got {h}x{w}")
    channels = {name: (cin, cout) for name, cin, cout in CONV_LAYERS}
    rows: List[Dict[str, object]] = [
        {"name": "input_1", "aliases": [], "kind": "input", "output_shape": [1, 3, h, w], "params": 0}
    ]
    for b, n in enumerate(BLOCKS, start=1):
        for c in range(1, n + 1):
            name = f"block{b}_conv{c}"
            cin, cout = channels[name]
            rows.append(
                {
                    "name": name,
                    "aliases": [f"relu{b}_{c}", f"conv{b}_{c} (before ReLU)"],
                    "kind": "conv3x3+relu",
                    "output_shape": [1, cout, h, w],
                    "params": 9 * cin * cout + cout,
                }
            )
        h, w = h // 2, w // 2  # 2x2 max pooling, stride 2, 'valid' (floor), as Keras and torch
        rows.append(
            {
                "name": f"block{b}_pool",
                "aliases": [f"pool{b}"],
                "kind": "maxpool2x2",
                "output_shape": [1, cout, h, w],
                "params": 0,
            }
        )
    return rows


def all_keras_layers() -> Tuple[str, ...]:
    """Every named VGG19 output in Keras naming (convs after ReLU, pools), in forward order."""
    return tuple(r["name"] for r in layer_table((32, 32)) if r["kind"] != "input")


def layer_stats(
    image: Union[ImageLike, torch.Tensor],
    layers: Optional[Sequence[str]] = None,
    style_layers: Optional[Sequence[str]] = None,
    *,
    size: Optional[int] = 512,
    weights: Union[str, os.PathLike, None] = None,
    pooling: str = "max",
    device: str = "cpu",
) -> Dict[str, object]:
    """VGG19 activation statistics of ``image`` (as the seed prints them, plus std and zero fraction).

    Args:
        image: the image; scaled so its long side is ``size`` with the seed's resize (None: as is).
        layers: layers whose activations are summarised (default: the seed's style + content layers).
        style_layers: layers whose Gram matrices (``gafu.gram_matrix``, normalised by H*W as the
            seed) are summarised (default: the seed's style layers; ``()`` for none).

    Returns ``{"input": stats, "layers": {name: stats}, "grams": {name: stats}}`` where each stats
    dict is :func:`tensor_stats` (activations in NCHW, Grams ``1xCxC``).
    """
    from .config import SEED_CONTENT_LAYERS, SEED_STYLE_LAYERS
    from .losses import gram_matrix
    from .vgg import canonical, load_vgg19

    if layers is None:
        layers = SEED_STYLE_LAYERS + SEED_CONTENT_LAYERS
    if style_layers is None:
        style_layers = SEED_STYLE_LAYERS
    layers, style_layers = tuple(layers), tuple(style_layers)
    for name in layers + style_layers:
        canonical(name)  # unknown -> GafuError with did-you-mean
    wanted = tuple(dict.fromkeys(layers + style_layers))
    if not wanted:
        raise GafuError("no layers to summarise")
    x = as_image_tensor(image, size)
    model = load_vgg19(wanted, weights=weights, pooling=pooling, device=device)
    with torch.no_grad():
        feats = model(x.to(device), wanted)
        out = {
            "input": tensor_stats(x),
            "layers": {name: tensor_stats(feats[name]) for name in layers},
            "grams": {name: tensor_stats(gram_matrix(feats[name].float())) for name in style_layers},
        }
    return out


# ---------------------------------------------------------------------------------------------
# High-pass deltas, Sobel edges, total variation
# ---------------------------------------------------------------------------------------------
def _nchw(image: Union[ImageLike, torch.Tensor]) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4:
            raise GafuError(f"expected an NCHW image tensor, got shape {tuple(image.shape)}")
        return t.to(torch.float32) if not t.is_floating_point() else t
    return as_image_tensor(image)


def high_pass(image: Union[ImageLike, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The seed's ``high_pass_x_y`` in NCHW: ``(x_deltas, y_deltas)``.

    ``x_deltas = I[..., :, 1:] - I[..., :, :-1]`` (neighbours along the width; Nx C x H x W-1) and
    ``y_deltas = I[..., 1:, :] - I[..., :-1, :]`` (along the height; N x C x H-1 x W). The seed
    titles y_deltas "Horizontal Deltas" (they light up horizontal edges) and x_deltas "Vertical".
    """
    t = _nchw(image)
    return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]


def sobel_edges(image: Union[ImageLike, torch.Tensor]) -> torch.Tensor:
    """``tf.image.sobel_edges`` in NCHW: returns N x C x H x W x 2 with ``[..., 0] = dy``, ``[..., 1] = dx``.

    3x3 kernels ``[[-1,-2,-1],[0,0,0],[1,2,1]]`` (dy) and its transpose (dx), applied per channel
    as a cross-correlation on the image padded by one pixel with REFLECT (mirror without repeating
    the edge) padding. Needs H, W >= 2.
    """
    t = _nchw(image)
    n, c, h, w = t.shape
    if h < 2 or w < 2:
        raise GafuError(f"Sobel edges need an image of at least 2x2 pixels, got {h}x{w}")
    k = torch.tensor([SOBEL_DY, SOBEL_DX], dtype=t.dtype, device=t.device)  # 2x3x3
    kernel = k.unsqueeze(1).repeat(c, 1, 1, 1)  # (2C)x1x3x3: per channel [dy, dx]
    padded = F.pad(t, (1, 1, 1, 1), mode="reflect")
    out = F.conv2d(padded, kernel, groups=c)  # N x 2C x H x W, ordered c0dy, c0dx, c1dy, ...
    return out.view(n, c, 2, h, w).permute(0, 1, 3, 4, 2).contiguous()


def total_variation(image: Union[ImageLike, torch.Tensor]) -> float:
    """``tf.image.total_variation`` of one image: sum of |vertical| + |horizontal| neighbour differences
    over all channels (computed in float64)."""
    t = _nchw(image)
    if t.shape[0] != 1:
        raise GafuError(f"total_variation takes one image, got a batch of {t.shape[0]}")
    from .losses import total_variation as tv

    return float(tv(t.to(torch.float64)))


def luma(image: Union[ImageLike, torch.Tensor]) -> torch.Tensor:
    """BT.601 luma of an RGB NCHW image: N x 1 x H x W."""
    t = _nchw(image)
    wts = torch.tensor(LUMA_WEIGHTS, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
    return (t * wts).sum(dim=1, keepdim=True)


def gradient_magnitude(image: Union[ImageLike, torch.Tensor]) -> torch.Tensor:
    """Sobel gradient magnitude ``sqrt(dy^2 + dx^2)`` of the BT.601 luma: N x 1 x H x W."""
    s = sobel_edges(luma(image).to(torch.float64))
    return s.pow(2).sum(dim=-1).sqrt()


def edge_preservation(content: Union[ImageLike, torch.Tensor], result: Union[ImageLike, torch.Tensor]) -> float:
    """How much of the content's edge structure the result keeps, in [-1, 1].

    Pearson correlation, over all pixels, of the Sobel gradient magnitudes of the two images' luma
    (BT.601). 1: edges in the same places with proportional strength (a change of contrast or
    brightness keeps 1); ~0: unrelated edges. Both images must have the same size. A flat image
    (no edges) has no defined correlation: the score is then 0.
    """
    a = _nchw(content)
    b = _nchw(result)
    if a.shape[-2:] != b.shape[-2:]:
        raise GafuError(f"images differ in size: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")
    ga = gradient_magnitude(a).flatten()
    gb = gradient_magnitude(b).flatten()
    ga = ga - ga.mean()
    gb = gb - gb.mean()
    denom = math.sqrt(float((ga * ga).sum()) * float((gb * gb).sum()))
    if denom == 0.0:
        return 0.0
    return float((ga * gb).sum()) / denom


def pair_tensors(
    content: Union[ImageLike, torch.Tensor], result: Union[ImageLike, torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load a content image and its stylization at the result's size.

    The result keeps its own pixels; the content is resized to the result's exact height and width
    (bilinear with antialiasing when shrinking). Aspect ratios more than 3% apart are an error: the
    result is probably not a stylization of this content.
    """
    r = _nchw(result)
    if r.shape[1] != 3:
        raise GafuError(f"expected an RGB image, got {r.shape[1]} channels")
    if isinstance(content, torch.Tensor):
        c = _nchw(content)
    else:
        c = to_tensor(load(content))
    (ch, cw), (rh, rw) = c.shape[-2:], r.shape[-2:]
    ca, ra = cw / ch, rw / rh
    if abs(math.log(ca / ra)) > math.log(1.03):
        raise GafuError(
            f"content ({cw}x{ch}) and result ({rw}x{rh}) have different aspect ratios: "
            "is the result a stylization of this content?"
        )
    if (ch, cw) != (rh, rw):
        c = resize(c, (rh, rw), antialias=True)
    return c.clamp(0, 1), r.clamp(0, 1)


def analyze(content: Union[ImageLike, torch.Tensor], result: Union[ImageLike, torch.Tensor]) -> Dict[str, object]:
    """The numbers behind the seed's closing figures, for a content image and its stylization.

    Returns (stable keys, see ``gafu analyze --json``)::

        {"size": [H, W],                        # the result's size; the content is resized to it
         "total_variation": {"content", "result", "ratio"},           # tf.image.total_variation
         "total_variation_per_pixel": {"content", "result"},          # TV / (3*H*W)
         "mean_abs_delta": {"content": {"x", "y"}, "result": {"x", "y"}},
         "sobel_mean_magnitude": {"content", "result"},               # mean sqrt(dy^2+dx^2), RGB
         "edge_preservation": float}                                  # see edge_preservation()
    """
    c, r = pair_tensors(content, result)
    h, w = r.shape[-2:]
    out: Dict[str, object] = {"size": [int(h), int(w)]}
    tv_c, tv_r = total_variation(c), total_variation(r)
    out["total_variation"] = {"content": tv_c, "result": tv_r, "ratio": (tv_r / tv_c) if tv_c else None}
    npx = 3.0 * h * w
    out["total_variation_per_pixel"] = {"content": tv_c / npx, "result": tv_r / npx}
    deltas = {}
    for key, img in (("content", c), ("result", r)):
        dx, dy = high_pass(img.to(torch.float64))
        deltas[key] = {"x": float(dx.abs().mean()), "y": float(dy.abs().mean())}
    out["mean_abs_delta"] = deltas
    out["sobel_mean_magnitude"] = {
        key: float(sobel_edges(img.to(torch.float64)).pow(2).sum(-1).sqrt().mean()) for key, img in (("content", c), ("result", r))
    }
    out["edge_preservation"] = edge_preservation(c, r)
    return out


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib on the Agg canvas; never pyplot)
# ---------------------------------------------------------------------------------------------
def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A matplotlib Figure attached to an Agg canvas: no pyplot, no GUI, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Union[str, os.PathLike], *, inputs: Sequence = (), overwrite: bool = True):
    """Render a figure to PNG (or any format gafu saves) atomically; size = figsize x dpi exactly."""
    from PIL import Image

    from .image import save_image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    im = Image.fromarray(rgba[..., :3].copy(), "RGB")
    return save_image(im, path, inputs=inputs, overwrite=overwrite)


def to_display(t: torch.Tensor, scale: float, offset: float) -> np.ndarray:
    """1x3xHxW (or 3xHxW) tensor -> HxWx3 float array ``clip(scale*t + offset, 0, 1)``."""
    if t.ndim == 4:
        t = t[0]
    return (t.detach().to("cpu", torch.float32) * scale + offset).clamp(0, 1).permute(1, 2, 0).numpy()


def analysis_figure(
    content: Union[ImageLike, torch.Tensor],
    result: Union[ImageLike, torch.Tensor],
    *,
    numbers: Optional[Dict[str, object]] = None,
    panel_inches: float = 3.0,
    dpi: int = 100,
):
    """The seed's figures in one: rows = original, stylized; columns = image, horizontal deltas,
    vertical deltas, Sobel dy, Sobel dx. Deltas are drawn as ``clip(2d + 0.5)``, Sobel as
    ``clip(s/4 + 0.5)`` (the seed's scaling: grey = 0). The title gives the total variations and
    the edge-preservation score. Returns the Figure (``save_figure`` writes it)."""
    c, r = pair_tensors(content, result)
    if numbers is None:
        numbers = analyze(c, r)
    h, w = r.shape[-2:]
    aspect = h / w
    cols, rows = 5, 2
    fig = new_figure(cols * panel_inches, rows * panel_inches * aspect + 1.4, dpi=dpi)
    top = 1.0 - 0.95 / (rows * panel_inches * aspect + 1.4)
    grid = fig.add_gridspec(rows, cols, left=0.01, right=0.99, bottom=0.02, top=top, wspace=0.04, hspace=0.18)
    col_titles = (
        "image",
        "horizontal deltas (dy)\nclip(2·d + 0.5)",
        "vertical deltas (dx)\nclip(2·d + 0.5)",
        "Sobel dy (horizontal edges)\nclip(s/4 + 0.5)",
        "Sobel dx (vertical edges)\nclip(s/4 + 0.5)",
    )
    tv = numbers["total_variation"]
    for row, (label, img) in enumerate((("original", c), ("stylized", r))):
        dx, dy = high_pass(img)
        s = sobel_edges(img)
        panels = (
            to_display(img, 1.0, 0.0),
            to_display(dy, *DELTA_SCALE),
            to_display(dx, *DELTA_SCALE),
            to_display(s[..., 0], *SOBEL_SCALE),
            to_display(s[..., 1], *SOBEL_SCALE),
        )
        key = "content" if row == 0 else "result"
        for col, panel in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(panel, interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{label}: {col_titles[col]}"
            if col == 0:
                title = f"{label}\nTV = {tv[key]:.4g}"
            ax.set_title(title, fontsize=8)
    ratio = tv.get("ratio")
    fig.suptitle(
        f"High-pass deltas and Sobel edges ({w}x{h} px)   "
        f"TV original {tv['content']:.4g}, stylized {tv['result']:.4g}"
        + (f" (x{ratio:.2f})" if ratio else "")
        + f"   edge preservation {numbers['edge_preservation']:.3f}",
        fontsize=10,
    )
    return fig


def spectral_centroid(image: torch.Tensor, reference: Optional[torch.Tensor] = None) -> float:
    """Dominant spatial frequency of an image's luminance texture, in cycles per pixel (0..~0.7).

    The power-weighted mean radial frequency of the Hann-windowed luminance (minus ``reference``'s
    luminance if given, i.e. of what was added to it), DC excluded. Larger brush strokes -> lower.
    """
    y = _luminance(image.double())[0, 0]
    if reference is not None:
        y = y - _luminance(reference.double())[0, 0]
    y = y - y.mean()
    h, w = y.shape
    win = torch.hann_window(h, periodic=False, dtype=torch.float64)[:, None]
    win = win * torch.hann_window(w, periodic=False, dtype=torch.float64)[None]
    p = torch.fft.fft2(y * win).abs() ** 2
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None]
    r = torch.sqrt(fy**2 + fx**2)
    p[0, 0] = 0
    total = p.sum()
    return float((p * r).sum() / total) if float(total) > 0 else 0.0
