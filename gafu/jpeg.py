"""Decode JPEG files to the same pixels as TensorFlow's ``tf.io.decode_image(..., channels=3)``.

The TensorFlow tutorial that the ``seed`` preset reproduces reads its images with
``tf.image.decode_image(channels=3)``. For JPEG that is libjpeg-turbo with the options TensorFlow
fixes for ``decode_image`` (tensorflow/core/kernels/image/decode_image_op.cc and
tensorflow/core/lib/jpeg/jpeg_mem.cc):

- the fast integer IDCT (``JDCT_IFAST``; TF's comment: "sacrificing image quality for speed").
  Pillow, and hence every other gafu preset, uses the accurate one (``JDCT_ISLOW``); the two differ
  by about one grey level on average, which is enough to move a 100-step run to 21 dB PSNR
  against TensorFlow's;
- fancy (triangular) chroma upsampling on; block smoothing at libjpeg's default;
- output colour space RGB: a greyscale JPEG comes out with its grey value in all three channels;
  CMYK/YCCK JPEGs are read as CMYK and turned into RGB by TF's own integer formula (inverted
  "Adobe" CMYK when the file carries an Adobe APP14 marker);
- no EXIF orientation, no ICC colour conversion, no ratio (full size);
- a truncated file (or one without its end marker) is an error (``try_recover_truncated`` is off);
  other libjpeg warnings (for example extraneous bytes before a marker) are not.

The decoder is libjpeg-turbo through the ``simplejpeg`` wheel (which bundles it), with
``fastdct=True`` (``TJFLAG_FASTDCT`` -> ``JDCT_IFAST``) and ``fastupsample=False``. Bit-exact
parity with TensorFlow on the shared test images is checked in tests/test_jpeg.py against hashes
made by benchmarks/tf_decode_reference.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from .errors import GafuError

#: TensorFlow recognises a JPEG by these three bytes, whatever the file is called.
JPEG_MAGIC = b"\xff\xd8\xff"

#: TensorFlow refuses images with height * width * components >= 2**29 ("Image too large").
_TF_MAX_SAMPLES = 1 << 29

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def is_jpeg(path: Union[str, os.PathLike]) -> bool:
    """True when the file starts with the JPEG signature (how ``tf.io.decode_image`` tells).

    Looks at the content, not the extension; a missing or unreadable file is not a JPEG.
    """
    try:
        with open(path, "rb") as fh:
            return fh.read(len(JPEG_MAGIC)) == JPEG_MAGIC
    except OSError:
        return False


def decode_like_tf(source: Source) -> np.ndarray:
    """Decode a JPEG (path or encoded bytes) to an HxWx3 uint8 array, pixel for pixel as
    ``tf.io.decode_image(data, channels=3)`` gives it.

    Raises :class:`~gafu.errors.GafuError` for a missing file, data that is not JPEG, and
    damaged or truncated JPEG data.
    """
    data, name = _read(source)
    if not data.startswith(JPEG_MAGIC):
        raise GafuError(f"not a JPEG file (no JPEG signature): {name}")
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        raise GafuError("decoding JPEG like TensorFlow needs the 'simplejpeg' package "
                        "(pip install simplejpeg)") from None

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data, strict=False)
    except (ValueError, KeyError) as exc:  # KeyError: simplejpeg on an unknown subsampling code
        raise GafuError(f"cannot read JPEG {name}: {exc}") from None
    cmyk = colorspace in ("CMYK", "YCCK")
    if height * width * (4 if cmyk else 3) >= _TF_MAX_SAMPLES:
        raise GafuError(f"JPEG too large to decode as TensorFlow does ({width}x{height}): {name}")
    out = _decode(simplejpeg, data, name, "CMYK" if cmyk else "RGB")
    if cmyk:
        out = _cmyk_to_rgb_like_tf(out, _has_adobe_marker(data))
    return np.ascontiguousarray(out)


def to_tensor_like_tf(image: np.ndarray) -> "torch.Tensor":  # noqa: F821
    """HxWx3 uint8 -> 1x3xHxW float32 in [0, 1] as ``tf.image.convert_image_dtype`` does it:
    ``x * float32(1/255)``.

    Dividing by 255 instead (``gafu.image.to_tensor``) differs by one ulp for 126 of the 256 values;
    100 Adam steps of the seed amplify that enough to matter for reproducing a TF run (28.5 dB
    instead of 30.4 dB PSNR on one benchmark pair, benchmarks/results/jpeg_seed_parity_256*.json).
    """
    import torch

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise GafuError(f"expected an HxWx3 uint8 array, got {arr.dtype} of shape {arr.shape}")
    t = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    return t * torch.tensor(1.0 / 255.0, dtype=torch.float32)


def _decode(simplejpeg, data: bytes, name: str, colorspace: str) -> np.ndarray:
    kwargs = dict(colorspace=colorspace, fastdct=True, fastupsample=False)
    try:
        return simplejpeg.decode_jpeg(data, strict=True, **kwargs)
    except ValueError as exc:
        message = str(exc)
    # TensorFlow stops on a truncated file (its source manager has no data left and no fake end
    # marker), but lets every other libjpeg warning pass, as non-strict decoding does.
    if "premature end" in message.lower():
        raise GafuError(f"truncated JPEG (TensorFlow refuses it too): {name}: {message}") from None
    try:
        # simplejpeg reads the headers strictly even with strict=False; libjpeg itself skips stray
        # bytes between header segments with a warning, so drop them first (same segments).
        return simplejpeg.decode_jpeg(_drop_header_garbage(data), strict=False, **kwargs)
    except ValueError as exc:
        raise GafuError(f"cannot decode JPEG {name}: {exc}") from None


def _drop_header_garbage(data: bytes) -> bytes:
    """The headers (up to the first start-of-scan) without the bytes libjpeg's ``next_marker``
    skips: non-0xFF bytes between segments and repeated 0xFF fill bytes."""
    out, pos, n = bytearray(data[:2]), 2, len(data)
    while pos < n:
        while pos < n and data[pos] != 0xFF:  # stray bytes ("extraneous bytes before marker")
            pos += 1
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            break
        marker = data[pos + 1]
        if marker == 0xDA or marker == 0xD9:  # start of scan or end of image: the rest as it is
            out += data[pos:]
            return bytes(out)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            out += data[pos:pos + 2]
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        out += data[pos:end]
        pos = end
    return bytes(out)


def _cmyk_to_rgb_like_tf(cmyk: np.ndarray, adobe: bool) -> np.ndarray:
    """TF's conversion (jpeg_mem.cc): integer products divided by 255, truncated."""
    c, m, y, k = (cmyk[..., i].astype(np.int32) for i in range(4))
    if adobe:  # Adobe files store inverted CMYK
        rgb = [k * c // 255, k * m // 255, k * y // 255]
    else:
        rgb = [(255 - k) * (255 - c) // 255, (255 - k) * (255 - m) // 255, (255 - k) * (255 - y) // 255]
    return np.stack(rgb, axis=-1).astype(np.uint8)


def _has_adobe_marker(data: bytes) -> bool:
    """libjpeg's ``saw_Adobe_marker``: an APP14 segment of >= 12 bytes that starts with 'Adobe'."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: headers are over
            return False
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEE and length - 2 >= 12 and data[pos + 4:pos + 9] == b"Adobe":
            return True
        pos += 2 + length
    return False


def _read(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise GafuError(f"expected a JPEG path or bytes, got {type(source).__name__}")
    p = Path(source)
    if not p.exists():
        raise GafuError(f"no such file: {p}")
    if p.is_dir():
        raise GafuError(f"expected an image file, got a folder: {p}")
    try:
        return p.read_bytes(), str(p)
    except OSError as exc:
        raise GafuError(f"cannot read {p}: {exc.strerror or exc}") from None
