"""Image I/O and the one tensor convention used at every boundary of gafu.

Tensors are float32, NCHW, RGB, values in [0, 1]. PIL images are RGB.

Loading handles what real files contain: EXIF orientation, palette/grey/alpha/CMYK/16-bit modes
(alpha is composited on white), embedded ICC profiles (converted to sRGB). Saving is atomic (a
temporary file in the target folder, then a rename) and refuses to overwrite an input file.
"""

from __future__ import annotations

import functools
import io
import os
import secrets
import stat
import struct
from pathlib import Path
from typing import IO, Callable, Iterable, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import GafuError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, "torch.Tensor"]  # noqa: F821

#: Output formats chosen by file extension, with the save options used for each.
#: JPEG: quality 95 without chroma subsampling (4:4:4): stylized strokes are colour detail that
#: 4:2:0 would halve.
SAVE_FORMATS = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".tif": ("TIFF", {"compression": "tiff_deflate"}),
    ".tiff": ("TIFF", {"compression": "tiff_deflate"}),
    ".webp": ("WEBP", {"quality": 95}),
}

#: Extensions recognised when collecting images from a folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")


#: Default pixel limit of a decoded image (Pillow's own default guard, ~9459 x 9459 px): a file
#: whose header claims more is refused before decoding (a decompression bomb). Raise it with the
#: ``GAFU_MAX_PIXELS`` environment variable or ``max_pixels=``.
DEFAULT_MAX_PIXELS = 89_478_485
MAX_PIXELS_ENV = "GAFU_MAX_PIXELS"


def pixel_limit(max_pixels: Optional[int] = None) -> int:
    """The pixel limit in force: ``max_pixels``, else ``$GAFU_MAX_PIXELS``, else the default."""
    if max_pixels is not None:
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise GafuError(f"{MAX_PIXELS_ENV} must be a number of pixels, got '{raw}'") from None
    if value < 1:
        raise GafuError(f"{MAX_PIXELS_ENV} must be >= 1, got {value}")
    return value


def open_image(path: Union[str, os.PathLike], *, max_pixels: Optional[int] = None) -> Image.Image:
    """Open an image file as an RGB PIL image (orientation, mode and colour profile normalised).

    Refused with a GafuError, never a traceback: missing files, folders, anything that is not a
    regular file (a FIFO would block, a device never ends: neither is opened), files Pillow cannot
    read, truncated or corrupt data, and images whose header claims more than the pixel limit
    (:func:`pixel_limit`), before any pixel is decoded. What matters in Pillow's warnings (a
    garbage EXIF block, ...) is handled here; the warnings themselves are the caller's to filter
    (the CLI does).
    """
    p = _check_file(path)
    limit = pixel_limit(max_pixels)
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > limit:
                raise GafuError(
                    f"{p} claims {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} (a decompression "
                    f"bomb guard); raise it with max_pixels or ${MAX_PIXELS_ENV} if the image is real",
                    argument="max_pixels",
                )
            im.load()
            return to_rgb(im)
    except UnidentifiedImageError:
        raise GafuError(f"not an image file Pillow can read: {p}") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, twice its default
        raise GafuError(f"{p}: {exc}; raise the limit with max_pixels or ${MAX_PIXELS_ENV}", argument="max_pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
            ZeroDivisionError, MemoryError) as exc:
        # Pillow's decoders raise all of these on malformed data (fuzzing shows each).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise GafuError(f"cannot read image {p}: {first}") from None


def _check_file(path: Union[str, os.PathLike]) -> Path:
    """``path`` as a Path if it names a regular file (symlinks followed); GafuError otherwise.
    Nothing is opened: a FIFO or device is refused by its type, without blocking."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise GafuError(f"broken symbolic link: {p}") from None
        raise GafuError(f"no such file: {p}") from None
    except OSError as exc:  # a symlink loop, a name too long, permission denied on a folder
        raise GafuError(f"cannot use {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise GafuError(f"expected an image file, got a folder: {p}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise GafuError(f"expected an image file, got {kind}: {p}")
    if not os.access(p, os.R_OK):
        raise GafuError(f"cannot read {p}: permission denied")
    return p


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit sRGB RGB.

    - EXIF orientation is applied.
    - 16-bit and 32-bit grey (I;16, I, F) are scaled to 8 bits by their nominal range.
    - Alpha (RGBA, LA, PA, P with transparency) is composited on white.
    - An embedded ICC profile is converted to sRGB when Pillow's CMS support is available.
    """
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a garbage EXIF block (Pillow raises SyntaxError, ValueError, ...): keep the pixels as they are
        pass
    icc = im.info.get("icc_profile")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode == "F":
            hi = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        elif mode.startswith("I;16") or arr.max(initial=0) > 255:
            hi = 65535.0
        else:
            hi = 255.0
        arr = np.clip(np.rint(arr / hi * 255.0), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "L")
        mode = "L"
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("1",):
        im = im.convert("L")
    if im.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba).convert("RGB")
    if icc and im.mode in ("RGB", "CMYK", "L"):
        im = _icc_to_srgb(im, icc)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def _icc_to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    transform = _srgb_transform(bytes(icc), im.mode)
    if transform is None:
        return im
    try:
        from PIL import ImageCms

        return ImageCms.applyTransform(im, transform)
    except (ImportError, OSError, ValueError):
        return im


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str):
    """ICC profile -> sRGB transform, built once per distinct profile (building costs ~10 ms)."""
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littlecms: keep the pixels as they are
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.buildTransform(src, dst, mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # a broken profile is ignored, as browsers do


def load(image: ImageLike) -> Image.Image:
    """Accept a path, PIL image, HxWx3 uint8/float array or 1x3xHxW / 3xHxW tensor; return RGB PIL."""
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise GafuError(f"expected an HxWx3 array, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        return to_rgb(Image.fromarray(arr))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch = None
    if torch is not None and isinstance(image, torch.Tensor):
        return to_pil(image)
    raise GafuError(f"cannot use {type(image).__name__} as an image")


def to_tensor(im: Image.Image) -> "torch.Tensor":  # noqa: F821
    """RGB PIL image -> float32 tensor 1x3xHxW in [0, 1] (``uint8 / 255``; TF's convert_image_dtype
    multiplies by float32(1/255) instead, one ulp apart for half the values: the seed preset uses
    :func:`gafu.jpeg.to_tensor_like_tf`)."""
    import torch

    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)
    return t.to(torch.float32) / 255.0


def to_pil(t: "torch.Tensor") -> Image.Image:  # noqa: F821
    """float tensor (1x3xHxW or 3xHxW, [0, 1]) -> RGB PIL image (rounded, clipped)."""
    t = t.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise GafuError(f"expected a single image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise GafuError(f"expected a 3xHxW image tensor, got shape {tuple(t.shape)}")
    arr = (t.float().clamp(0, 1) * 255.0).round().to("cpu").permute(1, 2, 0).numpy().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def seed_shape(height: int, width: int, max_dim: int) -> tuple[int, int]:
    """The seed's new shape: scale = max_dim / long side in float32, shape*scale truncated to int.

    Note that this also *enlarges* images smaller than max_dim, as the tutorial does.
    """
    shape = np.array([height, width], dtype=np.float32)
    scale = np.float32(max_dim) / shape.max()
    new = (shape * scale).astype(np.int32)
    return int(max(new[0], 1)), int(max(new[1], 1))


def fit_shape(height: int, width: int, max_dim: int) -> tuple[int, int]:
    """gafu's shape: the long side becomes max_dim (rounded), aspect ratio kept."""
    scale = max_dim / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(t: "torch.Tensor", size: tuple[int, int], *, antialias: bool) -> "torch.Tensor":  # noqa: F821
    """Bilinear resize of an NCHW tensor with half-pixel centres.

    antialias=False equals TensorFlow 2's ``tf.image.resize(..., 'bilinear')`` (the seed);
    antialias=True filters when shrinking (better for photos larger than the target).
    """
    import torch.nn.functional as F

    if tuple(t.shape[-2:]) == tuple(size):
        return t
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out


#: Output extensions that hold 16 bits per channel (``save_image(..., bits=16)``).
HIGH_BIT_EXTENSIONS = (".png", ".tif", ".tiff")

#: Values of ``decoder``: 'pillow' (accurate IDCT, EXIF orientation and ICC applied) or 'tf'
#: (JPEG files decoded exactly as ``tf.io.decode_image`` does: :func:`gafu.jpeg.decode_like_tf`;
#: every file scaled to [0, 1] as TF does: :func:`gafu.jpeg.to_tensor_like_tf`).
DECODERS = ("pillow", "tf")


def _decode_tf(path: Union[str, os.PathLike]):
    """An image file as the seed (the TF tutorial) reads it: JPEG decoded as ``tf.io.decode_image``
    does (no EXIF orientation or ICC conversion), other files by Pillow as usual; scaled to
    [0, 1] as ``tf.image.convert_image_dtype`` does (``x * float32(1/255)``)."""
    from .jpeg import decode_like_tf, is_jpeg, to_tensor_like_tf

    p = _check_file(path)
    if not is_jpeg(p):
        return to_tensor_like_tf(np.asarray(open_image(p), dtype=np.uint8))
    try:
        with Image.open(p) as im:  # header only: the pixel limit applies to this decoder too
            w, h = im.size
    except Exception:
        w = h = 0  # let the decoder say what is wrong
    if w * h > pixel_limit():
        open_image(p)  # raises the usual one-line refusal
    return to_tensor_like_tf(decode_like_tf(p))


def load_tensor(
    image: ImageLike, max_dim: int | None, *, mode: str = "seed", bits: int = 8, decoder: str = "pillow"
) -> "torch.Tensor":  # noqa: F821
    """Load an image as a 1x3xHxW float tensor with its long side scaled to max_dim.

    mode='seed' reproduces the tutorial's ``load_img`` (float32 truncation, bilinear, no antialias,
    enlarging small images); mode='antialias' rounds the shape and antialiases when shrinking.
    max_dim=None keeps the image's own size. ``bits=16``: a 16-bit PNG/TIFF file keeps its full
    precision (:func:`gafu.highbit.load_array16`); anything else loads as usual. ``decoder='tf'``: JPEG files
    are decoded as TensorFlow does (the seed preset); other files as usual.
    """
    t = None
    if decoder not in DECODERS:
        raise GafuError(f"unknown decoder '{decoder}'; choose from: {', '.join(DECODERS)}")
    if decoder == "tf" and isinstance(image, (str, os.PathLike)):
        t = _decode_tf(image)
    if t is None and bits == 16 and isinstance(image, (str, os.PathLike)):
        from .highbit import load_array16

        _check_file(image)
        arr = load_array16(image)
        if arr is not None:
            import torch

            t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()
    if t is None:
        t = to_tensor(load(image))
    if max_dim is None:
        return t
    if max_dim < 1:
        raise GafuError(f"size must be a positive number of pixels, got {max_dim}")
    h, w = t.shape[-2:]
    if mode == "seed":
        return resize(t, seed_shape(h, w, max_dim), antialias=False)
    if mode == "antialias":
        return resize(t, fit_shape(h, w, max_dim), antialias=True)
    raise GafuError(f"unknown resize mode '{mode}'; choose from: seed, antialias")


def as_tensor(
    image: Union[ImageLike, "torch.Tensor"], size: Optional[int] = None, mode: str = "seed", *, decoder: str = "pillow"  # noqa: F821
) -> "torch.Tensor":  # noqa: F821
    """The one coercion to gafu's tensor convention: any image -> float32 1x3xHxW in [0, 1], CPU.

    Paths, PIL images and arrays are decoded with :func:`load` (EXIF, modes, ICC handled); a
    tensor (1x3xHxW or 3xHxW in [0, 1]) is detached and copied. ``size`` scales the long side as
    :func:`load_tensor` does (``mode`` 'seed' or 'antialias'); None keeps the size.
    """
    import torch

    if not isinstance(image, torch.Tensor):
        return load_tensor(image, size, mode=mode, decoder=decoder)
    t = image.detach().to(torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 3):
        raise GafuError(f"expected an image tensor of shape 1x3xHxW, got {tuple(image.shape)}")
    t = t.cpu()
    if size is None:
        return t
    h, w = t.shape[-2:]
    if mode not in ("seed", "antialias"):
        raise GafuError(f"unknown resize mode '{mode}'; choose from: seed, antialias")
    shape = seed_shape(h, w, size) if mode == "seed" else fit_shape(h, w, size)
    return resize(t, shape, antialias=(mode != "seed"))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    path: Union[str, os.PathLike],
    *,
    inputs: Iterable[Union[str, os.PathLike]] = (),
    overwrite: bool = False,
) -> Path:
    """Validate an output path before any work is done: known extension, not an input, not existing."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SAVE_FORMATS:
        raise GafuError(
            f"cannot tell the output format from '{p.name}'; use one of: {', '.join(SAVE_FORMATS)}"
        )
    try:
        resolved = p.resolve()
        for src in inputs:
            src_p = Path(src)
            if _same_file(p, src_p) or resolved == src_p.resolve():
                raise GafuError(f"refusing to overwrite input file {src_p}")
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before Python 3.13), ELOOP, ...
        raise GafuError(f"cannot use output path {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if p.is_symlink() and not p.exists():
        raise GafuError(f"output path is a broken or looping symbolic link: {p}")
    if p.exists() and not p.is_file():
        raise GafuError(f"output path is a folder or not a regular file: {p}")
    if p.exists() and not overwrite:
        raise GafuError(f"{p} already exists; pass overwrite=True to replace it", argument="overwrite")
    return p


def save_image(
    image: Union[Image.Image, "torch.Tensor"],  # noqa: F821
    path: Union[str, os.PathLike],
    *,
    inputs: Iterable[Union[str, os.PathLike]] = (),
    overwrite: bool = True,
    bits: int = 8,
) -> Path:
    """Save atomically in the format given by the extension (JPEG/WebP quality 95, 4:4:4), with
    an sRGB ICC profile embedded.

    ``bits=16``: 16 bits per channel (PNG or TIFF only) from a tensor, ``round(x * 65535)``.
    Refuses to replace any file in ``inputs``; with overwrite=False also refuses an existing file.
    Parent folders are created.
    """
    if bits not in (8, 16):
        raise GafuError(f"bits must be 8 or 16, got {bits!r}", argument="bits")
    if bits == 16 and Path(path).suffix.lower() not in HIGH_BIT_EXTENSIONS:
        raise GafuError(f"16-bit output needs a .png or .tif file, got '{Path(path).name}'", argument="bits")
    p = check_output_path(path, inputs=inputs, overwrite=overwrite)
    if bits == 16:
        from .highbit import array16, write16

        atomic_write(p, functools.partial(write16, array16(image), p.suffix.lower()))
        return p
    im = image if isinstance(image, Image.Image) else to_pil(image)
    fmt, opts = SAVE_FORMATS[p.suffix.lower()]
    icc = srgb_profile()
    if icc is not None:
        opts = {**opts, "icc_profile": icc}  # the pixels are sRGB: say so, as browsers and print shops expect
    atomic_write(p, lambda fh: im.save(fh, format=fmt, **opts))
    return p


@functools.lru_cache(maxsize=1)
def srgb_profile() -> Optional[bytes]:
    """The sRGB ICC profile embedded in saved images (littlecms' built-in sRGB); None when Pillow
    has no CMS support."""
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except (ImportError, OSError, ValueError):
        return None


def atomic_write(path: Union[str, os.PathLike], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file atomically: ``write(fh)`` fills a temporary file in the same folder, then it is
    renamed over ``path`` (readers never see a half-written file; a failure leaves nothing behind).
    Parent folders are created; the file gets the usual umask-based permissions."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(p)
    except OSError as exc:
        raise GafuError(f"cannot write {p}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # disk full, folder gone: nothing partial is left behind
            raise GafuError(f"cannot write {p}: {exc.strerror or exc}") from None
        raise
    return p


def _create_temp(p: Path) -> tuple[int, str]:
    """A new temporary file beside ``p``, created exclusively with mode 0666 minus the process's
    umask (the kernel applies it: no need to read or change the umask, which is process-wide)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise GafuError(f"cannot create a temporary file beside {p}")


def collect_images(folder: Union[str, os.PathLike]) -> list[Path]:
    """All image files under a folder (recursive, sorted), by extension."""
    root = Path(folder)
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
