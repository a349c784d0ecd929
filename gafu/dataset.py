"""Stylize whole image datasets, reproducibly and resumably: ``gafu.dataset.stylize(IN_DIR, OUT_DIR, ...)``.

Built for style augmentation and inspection datasets (Stylized-ImageNet, Jackson et al. 2019's
style augmentation, product-image variants): the input tree is mirrored (folder names are
labels), every output is recorded in ``OUT_DIR/manifest.jsonl`` and can be regenerated alone.

    from gafu import dataset
    report = dataset.stylize("photos/", "stylized/", styles=["paintings/"], variants=2, seed=7)
    report.run.done, report.run.failed

Per item (an input image x a variant ``k``), written to ``OUT_DIR/<rel dir>/<stem>__v<k>.png``:

- the seed is derived from ``seed``, the input's relative path and ``k`` (BLAKE2b); it chooses the
  style (one of several ``styles`` or ``builtin`` styles), samples the ``random_style`` vector
  and seeds the optimizer, so a rerun gives identical bytes;
- the output has the input's size unless ``size``/``max_size`` say otherwise (never cropped);
  a greyscale input gives a greyscale output; PNG (lossless) unless ``ext='keep'``;
- a file that cannot be stylized (corrupt, too small) gets a row in ``errors.jsonl`` with the
  one-line reason; files without an image extension are listed in the summary and skipped.

Styles
    ``styles``: image files and/or folders of them (each item uses one, chosen by its seed);
    ``builtin``: indices of the 26 built-in styles, or 'all'; ``random_style=True``: no style
    image at all: style vectors are sampled from a Gaussian (mean + covariance) fitted on the
    style vectors that the fast network's own style encoder gives for the given ``styles`` (or,
    without them, the paintings bundled with gafu), as in style augmentation. Few paintings give a
    covariance of low rank, so each painting contributes its whole view and five crops and the
    covariance is shrunk towards its diagonal (:data:`RANDOM_STYLE_SHRINKAGE`).

Methods
    'fast' (default): Magenta's arbitrary network (:class:`gafu.fast.FastStylizer`), one forward
    pass per image; 'optimize': Gatys optimization (:class:`gafu.optimize.StyleTransfer`) with a
    short step budget (``steps``, default :data:`OPTIMIZE_STEPS`); each worker prepares a style's
    Gram targets once (:class:`gafu.optimize.StyleTargets`, per working size) for all its items.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import GafuError
from .jobs.manifest import settings_hash, sha256_bytes, sha256_file, sub_seed
from .jobs.plan import EXT_CHOICES, Item, Plan, build_plan
from .jobs.runner import BACKENDS, ON_ERROR, RunSummary, check_run_options, run_plan  # noqa: F401 (re-exported)

PathLike = Union[str, os.PathLike]

METHODS = ("fast", "optimize")
#: Default optimizer steps of method 'optimize' (short: a dataset has many images).
OPTIMIZE_STEPS = 50
#: Crops per painting used to fit the random-style distribution (besides the whole painting).
RANDOM_STYLE_CROPS = ((0.0, 0.0), (0.4, 0.0), (0.0, 0.4), (0.4, 0.4), (0.2, 0.2))  # (x, y) of 60% crops
RANDOM_STYLE_CROP_SIZE = 0.6
#: Weight of the diagonal in the shrunk covariance: (1 - a) * S + a * diag(S).
RANDOM_STYLE_SHRINKAGE = 0.1
#: FastStylizer's cap on the long side when the user sets none: larger than any photo, so sizes stay.
_NO_LIMIT = 1 << 20
#: PIL modes that mean a greyscale image.
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
RANDOM_KEY = "random"
BUILTIN_PREFIX = "builtin:"


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# styles


def _style_files(styles: Sequence[PathLike]) -> List[Path]:
    from .image import IMAGE_EXTENSIONS

    out: List[Path] = []
    for s in styles:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
                           and not q.name.startswith("."))
            if not found:
                raise GafuError(f"no style images found in {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise GafuError(f"style image not found: {p}")
    if not out:
        raise GafuError("styles is empty; give style image files or folders")
    return list(dict.fromkeys(out))


def bundled_styles() -> List[Path]:
    """The public-domain paintings shipped in gafu/data (used to fit the random-style distribution)."""
    data = Path(__file__).resolve().parent / "data"
    return [data / n for n in ("vangogh_starry_night.jpg", "hokusai_great_wave.jpg", "kandinsky_composition_vii.jpg")]


def _builtin_list(builtin: Any) -> List[int]:
    from .fast import NUM_BUILTIN_STYLES

    if isinstance(builtin, str):
        if builtin.strip().lower() == "all":
            return list(range(NUM_BUILTIN_STYLES))
        try:
            builtin = [int(x) for x in builtin.split(",") if x.strip()]
        except ValueError:
            raise GafuError(f"builtin must be 'all' or numbers like 3,7, got {builtin!r}") from None
    items = list(builtin) if isinstance(builtin, (list, tuple, range)) else [builtin]
    if not items:
        raise GafuError("builtin is empty; give style numbers 0-25 or 'all'")
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < NUM_BUILTIN_STYLES:
            raise GafuError(f"builtin styles are numbers 0-{NUM_BUILTIN_STYLES - 1}, got {i!r}")
    return sorted(dict.fromkeys(int(i) for i in items))


@dataclass(frozen=True)
class StyleDistribution:
    """A Gaussian over 100-number style vectors: ``mean + factor @ z`` with z ~ N(0, I)."""

    mean: np.ndarray  # (100,)
    factor: np.ndarray  # (100, 100): cov = factor @ factor.T
    samples: int  # vectors it was fitted on

    def sample(self, seed: int) -> np.ndarray:
        z = np.random.default_rng(seed).standard_normal(self.mean.shape[0])
        return (self.mean + self.factor @ z).reshape(1, 1, 1, -1)

    def digest(self) -> str:
        return sha256_bytes(self.mean.astype("<f8").tobytes() + self.factor.astype("<f8").tobytes())


def style_views(image) -> list:
    """The whole painting plus crops of it (:data:`RANDOM_STYLE_CROPS`), as PIL images."""
    w, h = image.size
    cw, ch = int(w * RANDOM_STYLE_CROP_SIZE), int(h * RANDOM_STYLE_CROP_SIZE)
    views = [image]
    for fx, fy in RANDOM_STYLE_CROPS:
        x, y = int(w * fx), int(h * fy)
        views.append(image.crop((x, y, x + cw, y + ch)))
    return views


def fit_style_distribution(stylizer, images: Sequence[PathLike], *,
                           shrinkage: float = RANDOM_STYLE_SHRINKAGE) -> StyleDistribution:
    """Fit mean and (shrunk) covariance of the style vectors ``stylizer.style_vector`` gives for
    every view (:func:`style_views`) of ``images``."""
    from .image import load

    vectors = [stylizer.style_vector(v).reshape(-1) for p in images for v in style_views(load(p))]
    x = np.asarray(vectors, dtype=np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    cov = (1.0 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    vals, vecs = np.linalg.eigh(cov)
    factor = vecs * np.sqrt(np.clip(vals, 0.0, None))
    return StyleDistribution(mean, factor, len(x))


# ---------------------------------------------------------------------------------------------
# the worker (one per process; picklable factory)


def _decode(data: bytes, name: str):
    """(RGB PIL image, is_grey) from a file's bytes; GafuError with one line if unreadable."""
    from PIL import Image, UnidentifiedImageError

    from .image import to_rgb

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            grey = im.mode in GREY_MODES or (im.mode == "P" and _grey_palette(im))
            return to_rgb(im), grey
    except UnidentifiedImageError:
        raise GafuError(f"not an image file Pillow can read: {name}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise GafuError(f"cannot read image {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _grey_palette(im) -> bool:
    pal = im.getpalette() or []
    rgb = np.asarray(pal[: len(pal) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def work_size(width: int, height: int, size: Optional[int], max_size: Optional[int]) -> tuple:
    """(width, height) an image is stylized and saved at: its own unless size/max_size say otherwise."""
    from .image import fit_shape

    if size is not None:
        h, w = fit_shape(height, width, size)
        return w, h
    if max_size is not None and max(width, height) > max_size:
        h, w = fit_shape(height, width, max_size)
        return w, h
    return width, height


@dataclass
class StylizeWorkerFactory:
    """Everything a worker needs, as plain data (pickled to worker processes and Ray actors)."""

    in_dir: str
    out_dir: str
    method: str
    styles: Dict[str, str]  # style key -> image path (fast with images, optimize)
    builtin: bool
    distribution: Optional[StyleDistribution]  # random style
    strength: float
    preserve_color: bool
    size: Optional[int]
    max_size: Optional[int]
    steps: int
    preset: str
    device: str
    threads: Optional[int]
    weights: Optional[str]  # VGG19 weights path (optimize)
    model_dir: Optional[str]  # ONNX folder (fast)

    def __call__(self) -> "StylizeWorker":
        return StylizeWorker(self)


class StylizeWorker:
    """Stylizes items; models and each style's vector are prepared once and reused."""

    def __init__(self, spec: StylizeWorkerFactory) -> None:
        self.spec = spec
        self._stylizers: Dict[str, Any] = {}
        self._style_sha: Dict[str, str] = {}

    def _stylizer(self, key: str):
        s = self._stylizers.get(key)
        if s is None:
            from .fast import FastStylizer

            sp = self.spec
            common = dict(strength=sp.strength, preserve_color=sp.preserve_color, max_size=_NO_LIMIT,
                          device=sp.device, threads=sp.threads, model_dir=sp.model_dir)
            if key.startswith(BUILTIN_PREFIX):
                s = FastStylizer(builtin=int(key[len(BUILTIN_PREFIX):]), **common)
            elif key == RANDOM_KEY:
                # Each item passes its own sampled vector; the distribution's mean builds the stylizer.
                s = FastStylizer(vector=sp.distribution.mean, **common)
            else:
                s = FastStylizer(style=sp.styles[key], **common)
            self._stylizers[key] = s
        return s

    def __call__(self, item: Item) -> Dict[str, Any]:
        from PIL import Image

        from .image import SAVE_FORMATS, atomic_write

        sp = self.spec
        timings: Dict[str, float] = {}
        t = time.perf_counter()
        src = Path(sp.in_dir) / item.input
        data = src.read_bytes()
        input_sha = sha256_bytes(data)
        image, grey = _decode(data, item.input)
        size = work_size(*image.size, sp.size, sp.max_size)
        if size != image.size:
            image = image.resize(size, Image.LANCZOS)
        timings["read"] = time.perf_counter() - t
        t = time.perf_counter()
        extra: Dict[str, Any] = {}
        if sp.method == "fast":
            stylizer = self._stylizer(item.style)
            if item.style == RANDOM_KEY:
                style_seed = sub_seed(item.seed, "vector")
                vector = sp.distribution.sample(style_seed)
                extra["style_seed"] = style_seed
            else:
                vector = None
            out = stylizer.run(image, vector=vector).image
            device = stylizer.settings()["providers"][0]
        else:
            out, device, steps = self._optimize(image, item)
            extra["steps"] = steps
        timings["stylize"] = time.perf_counter() - t
        t = time.perf_counter()
        if out.size != size:  # the engines keep the size; guard the contract anyway
            out = out.resize(size, Image.LANCZOS)
        if grey:
            out = out.convert("L")
        fmt, opts = SAVE_FORMATS[Path(item.output).suffix.lower()]
        buf = io.BytesIO()
        out.save(buf, format=fmt, **opts)
        encoded = buf.getvalue()
        timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        atomic_write(Path(sp.out_dir) / item.output, lambda fh: fh.write(encoded))
        output_sha = sha256_bytes(encoded)
        timings["write"] = time.perf_counter() - t
        path = sp.styles.get(item.style) if item.style else None
        if path is not None and path not in self._style_sha:
            self._style_sha[path] = sha256_file(path)
        return {
            "input_sha256": input_sha,
            "style_path": item.style if path is not None else None,  # as the user gave it
            "style_sha256": self._style_sha.get(path) if path is not None else None,
            **extra,
            "method": sp.method,
            "device": device,
            "width": size[0],
            "height": size[1],
            "mode": out.mode,
            "output_sha256": output_sha,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }

    def _optimize(self, image, item: Item):
        import torch

        from .config import get_preset
        from .image import to_pil
        from .optimize import StyleTransfer

        from .optimize import StyleTargets

        sp = self.spec
        base = get_preset(sp.preset).replace(steps=sp.steps, resize="antialias")
        cfg = base.replace(size=max(image.size), seed=sub_seed(item.seed, "init"))
        device = sp.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise GafuError("device 'cuda' was asked for, but this torch build sees no CUDA device")
        # One StyleTargets per style and worker: the style image is decoded once and its Gram
        # targets computed once per working size, then reused by every item with that style.
        key = "optimize:" + item.style
        targets = self._stylizers.get(key)
        if targets is None:
            targets = self._stylizers[key] = StyleTargets(sp.styles[item.style], base, weights=sp.weights,
                                                          device=device)
        st = StyleTransfer(image, targets, cfg, weights=sp.weights, device=device)
        previous = torch.get_num_threads()
        if sp.threads:  # the item's threads, and the caller's back afterwards (in-process runs)
            torch.set_num_threads(int(sp.threads))
        try:
            for _ in st.run():
                pass
        finally:
            torch.set_num_threads(previous)
        return to_pil(st.image), device, st.steps_done


# ---------------------------------------------------------------------------------------------
# the API


@dataclass
class DatasetReport:
    """A dataset job: its plan, and what the run did (``run`` is None for a dry run)."""

    plan: Plan
    run: Optional[RunSummary] = None
    settings: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = {"plan": self.plan.summary(), "dry_run": self.run is None}
        if self.run is not None:
            d["run"] = self.run.to_dict()
        return d


def _weights_hashes(method: str, weights: Optional[PathLike]) -> Dict[str, str]:
    if method == "fast":
        from .fast import MODEL_FILES

        return {f: h for f, h in MODEL_FILES.values()}
    from .weights import BUNDLED_SHA256, BUNDLED_NAME, resolve_path

    path, source = resolve_path(weights)
    if source == "bundled":
        return {BUNDLED_NAME: BUNDLED_SHA256}
    if not Path(path).is_file():
        raise GafuError(f"VGG19 weights file not found: {path}")
    return {Path(path).name: sha256_file(path)}


def _check_device(method: str, device: str) -> None:
    """A device that is not there is an error before any item runs (never a silent fallback)."""
    if method == "fast":
        from .fast import providers_for

        providers_for(device)
    elif device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise GafuError("device 'cuda' was asked for, but this torch build sees no CUDA device")


def _check_pixels(name: str, value: Any, minimum: int = 16) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GafuError(f"{name} must be a whole number of pixels >= {minimum}, got {value!r}")
    return int(value)


def prepare(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    styles: Optional[Sequence[PathLike]] = None,
    builtin: Any = None,
    random_style: bool = False,
    method: str = "fast",
    variants: int = 1,
    strength: float = 1.0,
    preserve_color: bool = False,
    size: Optional[int] = None,
    max_size: Optional[int] = None,
    seed: int = 0,
    ext: str = "png",
    limit: Optional[int] = None,
    steps: int = OPTIMIZE_STEPS,
    preset: str = "fast",
    device: str = "cpu",
    threads: Optional[int] = None,
    weights: Optional[PathLike] = None,
    model_dir: Optional[PathLike] = None,
    fit_random_style: bool = True,
) -> tuple:
    """Validate the arguments and plan the job: returns ``(plan, worker_factory)`` (no model work,
    except fitting the random-style distribution when ``random_style`` and ``fit_random_style``)."""
    from .config import get_preset
    from .fast import DEVICES

    if method not in METHODS:
        raise GafuError(f"unknown method '{method}'; choose from: {', '.join(METHODS)}")
    if ext not in EXT_CHOICES:
        raise GafuError(f"unknown ext '{ext}'; choose from: {', '.join(EXT_CHOICES)}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise GafuError(f"strength must be a number between 0 and 1, got {strength!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise GafuError(f"seed must be a whole number, got {seed!r}")
    seed = int(seed)
    size, max_size = _check_pixels("size", size), _check_pixels("max_size", max_size)
    if size is not None and max_size is not None:
        raise GafuError("size sets the long side, max_size caps it: give one of them")
    if device not in DEVICES:
        raise GafuError(f"unknown device '{device}'; choose from: {', '.join(DEVICES)}")
    _check_device(method, device)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise GafuError(f"threads must be a whole number >= 1, got {threads!r}")
    given = sum([bool(styles), builtin is not None, bool(random_style)])
    if builtin is not None and given > 1:
        raise GafuError("builtin styles go alone: give builtin, or styles (optionally with random_style)")
    if not styles and builtin is None and not random_style:
        raise GafuError("give styles (images or folders), builtin ('all' or numbers) or random_style=True")
    if method == "optimize":
        if builtin is not None or random_style:
            raise GafuError("method 'optimize' needs style images (builtin and random_style are the fast network's)")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise GafuError(f"steps must be a whole number >= 1, got {steps!r}")
        get_preset(preset)
        if preserve_color:
            raise GafuError("preserve_color is a fast-method option here; for optimize use gafu stylize")
        if strength != 1.0:
            raise GafuError("strength is a fast-method option here; for optimize use gafu stylize")

    style_files = _style_files(styles) if styles else []
    style_map = {str(p): str(p.resolve()) for p in style_files}  # key as given -> absolute path
    style_info = [{"path": str(p), "sha256": sha256_file(p)} for p in style_files]
    settings: Dict[str, Any] = {
        "method": method,
        "seed": seed,
        "size": size,
        "max_size": max_size,
        "ext": ext,
        "device": device,
        "weights": _weights_hashes(method, weights),
        "gafu": _version(),
    }
    distribution = None
    if method == "fast":
        settings.update(strength=float(strength), preserve_color=bool(preserve_color))
    else:
        settings.update(steps=steps, preset=preset, config=get_preset(preset).replace(steps=steps).to_dict())
    if builtin is not None:
        keys = [f"{BUILTIN_PREFIX}{i}" for i in _builtin_list(builtin)]
        settings["styles"] = keys
    elif random_style:
        fit_on = style_files or bundled_styles()
        fit_info = style_info or [{"path": p.name, "sha256": sha256_file(p)} for p in fit_on]
        keys = [RANDOM_KEY]
        settings["styles"] = {"random": {"fit_on": fit_info, "crops": [list(c) for c in RANDOM_STYLE_CROPS],
                                         "crop_size": RANDOM_STYLE_CROP_SIZE,
                                         "shrinkage": RANDOM_STYLE_SHRINKAGE}}
        if fit_random_style:
            from .fast import FastStylizer

            encoder = FastStylizer(builtin=0, device=device, threads=threads,
                                   model_dir=str(model_dir) if model_dir else None)
            distribution = fit_style_distribution(encoder, fit_on)
        style_map = {}
    else:
        keys = list(style_map)
        settings["styles"] = style_info

    def choose(item_seed: int) -> str:
        if len(keys) == 1:
            return keys[0]
        return keys[int(np.random.default_rng(sub_seed(item_seed, "style")).integers(len(keys)))]

    plan = build_plan(in_dir, out_dir, settings=settings, seed=seed, variants=variants, ext=ext,
                      limit=limit, choose=choose)
    factory = StylizeWorkerFactory(
        in_dir=str(plan.in_dir.resolve()), out_dir=str(plan.out_dir.resolve()), method=method, styles=style_map,
        builtin=builtin is not None, distribution=distribution, strength=float(strength),
        preserve_color=bool(preserve_color), size=size, max_size=max_size, steps=steps, preset=preset,
        device=device, threads=threads, weights=str(Path(weights).resolve()) if weights else None,
        model_dir=str(Path(model_dir).resolve()) if model_dir else None,
    )
    return plan, factory


def stylize(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    styles: Optional[Sequence[PathLike]] = None,
    builtin: Any = None,
    random_style: bool = False,
    method: str = "fast",
    variants: int = 1,
    strength: float = 1.0,
    preserve_color: bool = False,
    size: Optional[int] = None,
    max_size: Optional[int] = None,
    seed: int = 0,
    workers: int = 1,
    backend: str = "local",
    ray_address: Optional[str] = None,
    ray_cpus: float = 0.5,
    ray_gpus: float = 0.0,
    resume: bool = False,
    overwrite: bool = False,
    on_error: str = "skip",
    limit: Optional[int] = None,
    dry_run: bool = False,
    ext: str = "png",
    steps: int = OPTIMIZE_STEPS,
    preset: str = "fast",
    device: str = "cpu",
    threads: Optional[int] = None,
    weights: Optional[PathLike] = None,
    model_dir: Optional[PathLike] = None,
    on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
    on_start: Optional[Callable[[int, int], None]] = None,
) -> DatasetReport:
    """Stylize every image under ``in_dir`` into ``out_dir`` (tree mirrored), with a manifest.

    Styles (one of): ``styles`` (files/folders; each item's style is chosen by its seed),
    ``builtin`` ('all' or numbers 0-25), ``random_style=True`` (sampled style vectors; fitted on
    ``styles`` if given, else on the bundled paintings).

    Args:
        method: 'fast' (one forward pass) or 'optimize' (``steps`` optimizer steps of ``preset``).
        variants: outputs per input (``<stem>__v0`` ... ``__v<N-1>``), each with its own seed.
        strength, preserve_color: as :class:`gafu.fast.FastStylizer` (fast method).
        size / max_size: long side set exactly / capped (default: the input's own size).
        seed: run seed; each item's seed derives from it, the relative path and the variant.
        workers: worker processes (local) or actors (ray); with several, each uses one thread
            unless ``threads`` says otherwise.
        backend: 'local' or 'ray' (``ray_address``: 'auto' or host:port; ``ray_cpus``/``ray_gpus``:
            resources each actor requests).
        resume: skip items already complete (output and manifest row match); overwrite: start again.
        on_error: 'skip' (record the error, go on) or 'stop'.
        limit: only the first ``limit`` items (sorted by path, then variant).
        dry_run: plan only (no models, no files); ext: 'png' (lossless) or 'keep' the input's.
        on_row: called with every manifest/error row as it is written (progress);
            on_start: once with (items to run, items already complete) before the first.
    Returns:
        :class:`DatasetReport` (``plan``, ``run``: :class:`gafu.jobs.RunSummary`).
    """
    check_run_options(backend, on_error, workers)
    if ray_address is not None and backend != "ray":
        raise GafuError("ray_address needs backend='ray'")
    if threads is None and (workers > 1 or backend == "ray"):
        threads = 1  # N single-threaded workers on N cores scale; N multi-threaded ones fight
    plan, factory = prepare(
        in_dir, out_dir, styles=styles, builtin=builtin, random_style=random_style, method=method,
        variants=variants, strength=strength, preserve_color=preserve_color, size=size,
        max_size=max_size, seed=seed, ext=ext, limit=limit, steps=steps, preset=preset,
        device=device, threads=threads, weights=weights, model_dir=model_dir,
        fit_random_style=not dry_run,
    )
    report = DatasetReport(plan=plan, settings=plan.settings)
    if dry_run:
        return report
    common = {"gafu_version": _version(), "licence": plan.licence["text"] if plan.licence else None,
              "settings": plan.settings}
    ray_options = None
    if backend == "ray":
        ray_options = {"address": ray_address, "cpus_per_worker": ray_cpus, "gpus_per_worker": ray_gpus}
    report.run = run_plan(plan, factory, resume=resume, overwrite=overwrite, workers=workers,
                          backend=backend, on_error=on_error, on_row=on_row, on_start=on_start, common=common,
                          ray_options=ray_options)
    return report


__all__ = ["DatasetReport", "StyleDistribution", "StylizeWorkerFactory", "fit_style_distribution",
           "prepare", "stylize", "work_size", "settings_hash"]
