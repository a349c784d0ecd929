"""What goes inside a defect mask: a stylization of the region around it, restricted to the mask.

Fill sources (``fill=``)
    ``style:PATH_OR_DIR``  a painting, or a folder of them (each item picks one by its seed);
    ``texture:DIR``        a folder of texture photos (same machinery; the name says what it is);
    ``builtin:K``          built-in style(s) of the fast network: ``3``, ``3,7`` or ``all``;
    ``self``               the image's own texture from elsewhere: a patch of the same image, away
                           from the defect, is the style.

Engines (``method=``)
    ``fast``: :class:`gafu.fast.FastStylizer`, one forward pass over a square crop around the mask;
    ``optimize``: :class:`gafu.optimize.StyleTransfer` with ``mask=`` (Gram statistics of the masked
    region only), a short L-BFGS run (:data:`OPTIMIZE_STEPS`) at most :data:`OPTIMIZE_SIZE` px, the
    result resized back to the crop (the fill is an image; masks are never resized but by nearest
    neighbour).

Licences: a file's licence is a ``LICENSE``/``licence.txt`` in its folder, else its row in gafu's
bundled ``gafu/data/CREDITS.md``; built-in styles are Magenta's network (Apache-2.0); ``self``
inherits the source image's licence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import GafuError

FILL_KINDS = ("style", "texture", "builtin", "self")
METHODS = ("fast", "optimize")
#: Optimizer steps of the optimize fill (short: it runs once per defect, on the CPU).
OPTIMIZE_STEPS = 20
#: Long side (px) the optimize fill works at; larger crops are shrunk and the fill resized back.
OPTIMIZE_SIZE = 128
#: Smallest side (px) of the crop that is stylized around a mask (when the image allows).
MIN_CROP = 64
#: Fast network: no cap on the crop size (the crop is already small).
_NO_LIMIT = 1 << 20
BUILTIN_LICENCE = "Magenta multistyle (Dumoulin et al. 2017) network weights, Apache-2.0"


@dataclass(frozen=True)
class FillSpec:
    """A parsed ``fill=``: the kind, the style files (absolute paths) or built-in indices."""

    kind: str
    given: str
    files: Tuple[str, ...] = ()
    builtin: Tuple[int, ...] = ()
    licences: Dict[str, Optional[str]] = field(default_factory=dict)  # file -> licence text

    def keys(self) -> List[str]:
        if self.kind == "builtin":
            return [f"builtin:{i}" for i in self.builtin]
        if self.kind == "self":
            return ["self"]
        return list(self.files)

    def to_dict(self) -> Dict[str, Any]:
        from ..jobs.manifest import sha256_file

        d: Dict[str, Any] = {"kind": self.kind, "given": self.given}
        if self.files:
            d["files"] = [{"path": f, "sha256": sha256_file(f), "licence": self.licences.get(f)} for f in self.files]
        if self.builtin:
            d["builtin"] = list(self.builtin)
        return d


def _licence_of(path: Path) -> Optional[str]:
    from ..jobs.plan import LICENCE_NAMES, read_licence

    for p in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
        if p.is_file() and p.name.lower() in LICENCE_NAMES:
            return read_licence(p)["text"]
    credits = Path(__file__).resolve().parents[1] / "data" / "CREDITS.md"
    if path.resolve().parent == credits.parent and credits.is_file():
        for line in credits.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0] == path.name:
                return f"{cells[1]}, {cells[2]}: {cells[3]} (gafu/data/CREDITS.md)"
    return None


def parse_fill(fill: str) -> FillSpec:
    """``style:PATH_OR_DIR`` | ``texture:DIR`` | ``builtin:K`` | ``self`` -> :class:`FillSpec`."""
    from ..dataset import _builtin_list, _style_files

    text = str(fill).strip()
    kind, _, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind == "self":
        if arg:
            raise GafuError(f"fill 'self' takes no argument, got {text!r}", argument="fill")
        return FillSpec("self", text)
    if kind not in FILL_KINDS or not arg.strip():
        raise GafuError(f"fill must be style:PATH_OR_DIR, texture:DIR, builtin:K or self, got {text!r}",
                        argument="fill")
    arg = arg.strip()
    if kind == "builtin":
        try:
            return FillSpec("builtin", text, builtin=tuple(_builtin_list(arg)))
        except GafuError as exc:
            raise GafuError(str(exc), argument="fill") from None
    p = Path(arg)
    if kind == "texture" and not p.is_dir():
        raise GafuError(f"fill texture: needs a folder of texture images, got {arg!r}", argument="fill")
    try:
        files = _style_files([p])
    except GafuError as exc:
        raise GafuError(f"fill {kind}: {exc}", argument="fill") from None
    paths = tuple(str(f.resolve()) for f in files)
    return FillSpec(kind, text, files=paths, licences={f: _licence_of(Path(f)) for f in paths})


def choose_key(spec: FillSpec, rng: np.random.Generator) -> str:
    keys = spec.keys()
    return keys[0] if len(keys) == 1 else keys[int(rng.integers(len(keys)))]


def crop_box(mask: np.ndarray, margin: float = 0.25, min_side: int = MIN_CROP) -> Tuple[int, int, int, int]:
    """A square box (x0, y0, x1, y1) around the mask's bounding box plus a margin, inside the image."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    side = int(min(max(side + 2 * max(4, int(math.ceil(margin * side))), min_side), max(h, w)))
    sw, sh = min(side, w), min(side, h)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    bx = int(np.clip(cx - sw // 2, 0, w - sw))
    by = int(np.clip(cy - sh // 2, 0, h - sh))
    return bx, by, bx + sw, by + sh


def self_patch(rng: np.random.Generator, image, box: Tuple[int, int, int, int], roi: Optional[np.ndarray],
               candidates: int = 12) -> Tuple[Any, Tuple[int, int, int, int]]:
    """A patch of ``image`` as large as ``box``, from elsewhere: of ``candidates`` random places
    (centred in the ROI when given), the one overlapping ``box`` least."""
    w, h = image.size
    bw, bh = box[2] - box[0], box[3] - box[1]
    pw, ph = max(min(bw, w), min(w, 32)), max(min(bh, h), min(h, 32))
    if roi is not None:
        ys, xs = np.nonzero(roi)
    best, best_overlap = None, None
    for _ in range(candidates):
        if roi is not None and len(ys):
            k = int(rng.integers(len(ys)))
            cx, cy = int(xs[k]), int(ys[k])
            x0, y0 = int(np.clip(cx - pw // 2, 0, w - pw)), int(np.clip(cy - ph // 2, 0, h - ph))
        else:
            x0, y0 = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
        cand = (x0, y0, x0 + pw, y0 + ph)
        ox = max(0, min(cand[2], box[2]) - max(cand[0], box[0]))
        oy = max(0, min(cand[3], box[3]) - max(cand[1], box[1]))
        overlap = ox * oy
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = cand, overlap
    return image.crop(best), best


class Filler:
    """Renders fills for one worker; stylizers and style targets are prepared once per style."""

    def __init__(self, method: str, *, threads: Optional[int] = None, weights: Optional[str] = None,
                 model_dir: Optional[str] = None, steps: int = OPTIMIZE_STEPS, size: int = OPTIMIZE_SIZE) -> None:
        self.method, self.threads, self.weights, self.model_dir = method, threads, weights, model_dir
        self.steps, self.size = steps, size
        self._cache: Dict[str, Any] = {}
        self.device = "cpu"

    def settings(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"method": self.method}
        if self.method == "optimize":
            d.update(steps=self.steps, size=self.size, preset="fast")
        return d

    def _fast(self, key: str, style_image=None):
        from ..fast import FastStylizer

        common = dict(max_size=_NO_LIMIT, device="cpu", threads=self.threads, model_dir=self.model_dir)
        if style_image is not None:  # self: a new style for every item (one pass of the style network)
            return FastStylizer(style=style_image, **common)
        s = self._cache.get(key)
        if s is None:
            if key.startswith("builtin:"):
                s = FastStylizer(builtin=int(key.split(":", 1)[1]), **common)
            else:
                s = FastStylizer(style=key, **common)
            self._cache[key] = s
        return s

    def render(self, crop, crop_mask: np.ndarray, key: str, seed: int, style_image=None):
        """The stylized crop (RGB PIL, the crop's size): ``key`` names the style (a file path,
        ``builtin:K``) or is ``self`` with ``style_image`` the patch."""
        crop = crop.convert("RGB")
        if self.method == "fast":
            return self._fast(key, style_image).stylize(crop)
        if key.startswith("builtin:"):
            raise GafuError("method 'optimize' needs style images; builtin styles are the fast network's",
                            argument="method")
        return self._optimize(crop, crop_mask, key, seed, style_image)

    def _optimize(self, crop, crop_mask: np.ndarray, key: str, seed: int, style_image):
        from PIL import Image

        from ..config import get_preset
        from ..image import fit_shape, to_pil
        from ..optimize import StyleTargets, StyleTransfer

        w, h = crop.size
        if max(w, h) > self.size:
            sh, sw = fit_shape(h, w, self.size)
        else:
            sh, sw = h, w
        base = get_preset("fast").replace(steps=self.steps, resize="antialias", size=max(sw, sh), seed=int(seed) % (2 ** 31))
        small = crop.resize((sw, sh), Image.LANCZOS) if (sw, sh) != (w, h) else crop
        mask_im = Image.fromarray(np.where(crop_mask, 255, 0).astype(np.uint8)).resize((sw, sh), Image.NEAREST)
        if not np.asarray(mask_im).any():  # a thin scratch can vanish when shrunk: use the whole crop
            mask_im = None
        if style_image is not None:
            style = style_image.convert("RGB")
        else:
            style = self._cache.get("optimize:" + key)
            if style is None:
                style = self._cache["optimize:" + key] = StyleTargets(key, base, weights=self.weights)
        st = StyleTransfer(small, style, base, weights=self.weights, mask=mask_im)  # VGG19 loads once per process
        for _ in st.run():
            pass
        out = to_pil(st.image)
        return out.resize((w, h), Image.LANCZOS) if out.size != (w, h) else out


def match_colors(fill: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The fill's colours (mean and covariance) matched to the original's inside the mask
    (:func:`gafu.color.match_color`); HxWx3 uint8 in and out."""
    import torch

    from ..color import match_color

    f = torch.from_numpy(fill.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    o = torch.from_numpy(original.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    out = match_color(f, o, content_mask=m)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

