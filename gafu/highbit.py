"""16 bits per channel: PNG and TIFF files read at full precision and written from tensors.

Pillow reads and writes RGB at 8 bits per channel only (a 48-bit PNG opens as 8-bit RGB), so
these use pypng (PNG, pure Python) and tifffile (TIFF). :func:`gafu.image.load_tensor` and
:func:`gafu.image.save_image` call them for ``bits=16``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from .errors import GafuError
from .image import HIGH_BIT_EXTENSIONS, srgb_profile

# EXIF orientation -> the numpy operation that undoes it (as ImageOps.exif_transpose does).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _is_srgb(icc: bytes | None) -> bool:
    if not icc:
        return True
    try:
        from PIL import ImageCms

        return "srgb" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).lower()
    except Exception:  # an unreadable profile is ignored, as on the 8-bit path
        return True


def load_array16(path: Union[str, os.PathLike]) -> Optional[np.ndarray]:
    """The pixels of a 16-bit PNG or TIFF as HxWx3 float32 in [0, 1] at full precision (EXIF
    orientation applied, alpha composited on white, grey replicated), or None when the file holds
    8 bits per channel, is another format, or carries a non-sRGB profile (those are converted by
    the 8-bit path: Pillow's colour management works in 8 bits)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in HIGH_BIT_EXTENSIONS:
        return None
    with Image.open(p) as im:  # header only: orientation and profile
        orientation = im.getexif().get(0x0112, 1)
        if not _is_srgb(im.info.get("icc_profile")):
            return None
    try:
        if ext == ".png":
            import png

            w, h, rows, meta = png.Reader(filename=str(p)).asDirect()
            if meta["bitdepth"] != 16:
                return None
            arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, meta["planes"])
        else:
            import tifffile

            arr = tifffile.imread(p)
            if arr.dtype != np.uint16:
                return None
    except Exception as exc:  # a malformed file: one line, as on the 8-bit path
        raise GafuError(f"cannot read image {p}: {exc}") from None
    x = arr.astype(np.float32) / np.float32(65535.0)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] in (2, 4):  # alpha on white
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.ndim != 3 or x.shape[-1] != 3:
        return None
    if orientation in _ORIENT:
        x = _ORIENT[orientation](x)
    return np.ascontiguousarray(x)


def array16(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint16) * 257  # 8-bit values, exactly
    t = image.detach()
    t = t[0] if t.ndim == 4 else t
    if t.ndim != 3 or t.shape[0] != 3:
        raise GafuError(f"expected a 3xHxW image tensor, got shape {tuple(image.shape)}")
    arr = (t.double().clamp(0, 1) * 65535.0).round().cpu().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(arr.astype(np.uint16))


def write16(arr: np.ndarray, ext: str, fh) -> None:
    icc = srgb_profile()
    if ext == ".png":
        import zlib

        import png

        h, w, _ = arr.shape
        buf = io.BytesIO()
        png.Writer(w, h, greyscale=False, bitdepth=16, compression=6).write_array(buf, arr.reshape(-1))
        chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
        if icc is not None:  # iCCP right after IHDR, as the PNG spec orders it
            chunks.insert(1, (b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)))
        png.write_chunks(fh, chunks)
    else:
        import tifffile

        buf = io.BytesIO()  # tifffile wants a named file or a BytesIO; the temporary file is an fd
        tifffile.imwrite(buf, arr, photometric="rgb", compression="zlib", iccprofile=icc)
        fh.write(buf.getvalue())
