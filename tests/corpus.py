"""A corpus of malformed and edge-case image files, made in a folder, and a runner that feeds each
one to gafu's commands and classifies what happened.

Kinds: valid files in every mode Pillow knows (RGBA, LA, P with transparency, 1-bit, 16-bit grey
and RGB, CMYK, progressive and grey JPEG, EXIF-rotated, ICC profiles, animated GIF, WebP, BMP,
TIFF), sizes from 1x1 to 20000x10, files truncated at many offsets, wrong magic, empty and text
files, decompression bombs (headers claiming gigapixels in PNG, JPEG, GIF, BMP and TIFF), garbage
EXIF, symlinks (good, broken, looping), a FIFO, a folder and a character device.

``make_corpus(folder) -> [Case]``; ``run_case(argv_fn, case, out_dir) -> Outcome``. An outcome is
good when the command either succeeded and wrote a readable image, or failed with exit code 2 and
exactly one line on stderr starting with ``gafu CMD: error:``, and left no file behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    kind: str  # valid | truncated | magic | bomb | exif | special


def _save(folder: Path, name: str, im: Image.Image, **kw) -> Path:
    p = folder / name
    im.save(p, **kw)
    return p


def _rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    g = np.random.default_rng(seed)
    return Image.fromarray(g.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        _png_chunk(b"IEND", b"")


def _bomb_jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    _rgb(16, 16).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 7] = struct.pack(">H", h)
    data[i + 7:i + 9] = struct.pack(">H", w)
    return bytes(data)


def _bomb_gif(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", w, h)  # logical screen
    j = data.index(b"\x2c")  # image descriptor: left, top, width, height
    data[j + 5:j + 9] = struct.pack("<HH", w, h)
    return bytes(data)


def _bomb_bmp(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "BMP")
    data = bytearray(buf.getvalue())
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def _bomb_tiff(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    n = struct.unpack("<H", data[struct.unpack("<I", data[4:8])[0]:][:2])[0]
    off = struct.unpack("<I", data[4:8])[0] + 2
    for k in range(n):
        tag, typ = struct.unpack("<HH", data[off + 12 * k: off + 12 * k + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            val = w if tag == 256 else h
            if typ == 3:
                data[off + 12 * k + 2: off + 12 * k + 4] = struct.pack("<H", 4)  # make it LONG
            data[off + 12 * k + 8: off + 12 * k + 12] = struct.pack("<I", val)
    return bytes(data)


def _png16_bytes(im: Image.Image) -> bytes:
    import png

    arr = np.asarray(im, dtype=np.uint16) * 257
    buf = io.BytesIO()
    h, w, _ = arr.shape
    png.Writer(w, h, greyscale=False, bitdepth=16).write_array(buf, arr.reshape(-1))
    return buf.getvalue()


def _swapped_profile() -> bytes:
    """sRGB with red and blue primaries swapped: a real, different RGB profile."""
    from PIL import ImageCms

    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    entries = {bytes(b[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(struct.unpack(">I", b[128:132])[0])}
    r, bl = entries[b"rXYZ"], entries[b"bXYZ"]
    b[r + 4:r + 12], b[bl + 4:bl + 12] = b[bl + 4:bl + 12], b[r + 4:r + 12]
    b[84:100] = bytes(16)
    return bytes(b)


def _garbage_exif_jpeg() -> bytes:
    buf = io.BytesIO()
    _rgb(32, 24, 3).save(buf, "JPEG", exif=b"Exif\x00\x00" + b"\x13\x37garbage" * 8)
    return buf.getvalue()


def make_corpus(folder: Path, *, full: bool = True) -> List[Case]:
    """Write the corpus into ``folder``; ``full=False`` gives one or two cases of each kind."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: List[Case] = []

    def add(name, kind, data: Optional[bytes] = None, im: Optional[Image.Image] = None, **kw):
        p = folder / name
        if data is not None:
            p.write_bytes(data)
        elif im is not None:
            im.save(p, **kw)
        cases.append(Case(name, p, kind))

    base = _rgb(48, 40)
    add("rgb.png", "valid", im=base)
    add("rgba.png", "valid", im=base.convert("RGBA"))
    add("la.png", "valid", im=base.convert("LA"))
    pal = base.convert("P")
    pal.info["transparency"] = 0
    add("p_transparent.png", "valid", im=pal, transparency=0)
    add("one_bit.png", "valid", im=base.convert("1"))
    add("grey16.png", "valid", im=Image.fromarray((np.arange(48 * 40, dtype=np.uint16) * 30).reshape(40, 48)))
    add("cmyk.jpg", "valid", im=base.convert("CMYK"))
    add("grey.jpg", "valid", im=base.convert("L"))
    add("progressive.jpg", "valid", im=base, progressive=True)
    ex = Image.Exif()
    ex[0x0112] = 6
    add("exif_rotated.jpg", "valid", im=base, exif=ex.tobytes())
    add("plain.jpg", "valid", im=base, quality=90)
    add("anim.gif", "valid", im=base.convert("P"), save_all=True, append_images=[_rgb(48, 40, 1).convert("P")])
    add("img.webp", "valid", im=base)
    add("img.bmp", "valid", im=base)
    add("img.tif", "valid", im=base)
    add("tiny_1x1.png", "valid", im=_rgb(1, 1))
    add("tiny_2x2.png", "valid", im=_rgb(2, 2))
    add("small_16.png", "valid", im=_rgb(16, 16))
    add("skinny_20000x10.png", "valid", im=Image.new("RGB", (20000, 10), (90, 120, 30)))
    add("tall_10x3000.png", "valid", im=Image.new("RGB", (10, 3000), (90, 120, 30)))
    add("garbage_exif.jpg", "exif", data=_garbage_exif_jpeg())
    if full:
        add("int32.tif", "valid", im=Image.fromarray((np.arange(48 * 40, dtype=np.int32) * 1000).reshape(40, 48)))
        add("float.tif", "valid", im=Image.fromarray(np.linspace(0, 1, 48 * 40, dtype=np.float32).reshape(40, 48)))
        add("la16.tif", "valid", im=base.convert("LA"))
        add("lossless.webp", "valid", im=base, lossless=True)
        add("rgba.webp", "valid", im=base.convert("RGBA"))
        add("rgba.tif", "valid", im=base.convert("RGBA"))
        add("cmyk.tif", "valid", im=base.convert("CMYK"))
        add("grey.bmp", "valid", im=base.convert("L"))
        add("q10.jpg", "valid", im=base, quality=10)
        add("subsampled_444.jpg", "valid", im=base, subsampling=0)
        add("wide_4000x12.jpg", "valid", im=Image.new("RGB", (4000, 12), (10, 20, 30)))
        add("odd_17x33.png", "valid", im=_rgb(17, 33, 5))
        add("rgb16.png", "valid", data=_png16_bytes(_rgb(20, 14, 9)))
        add("icc_swapped.png", "valid", im=base, icc_profile=_swapped_profile())
        add("icc_garbage.png", "valid", im=base, icc_profile=b"not a profile" * 10)
        for o in (2, 3, 4, 5, 7, 8):
            e = Image.Exif()
            e[0x0112] = o
            add(f"exif_orient_{o}.jpg", "valid", im=base, exif=e.tobytes())

    # Truncated at many offsets (every format).
    sources = {"plain.jpg": "jpg", "progressive.jpg": "jpg", "rgb.png": "png", "img.tif": "tif",
               "anim.gif": "gif", "img.webp": "webp", "img.bmp": "bmp"}
    fractions = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99) if full else (0.1, 0.6)
    for src, ext in sources.items():
        data = (folder / src).read_bytes()
        for f in fractions:
            cut = max(1, int(len(data) * f))
            add(f"trunc_{Path(src).stem}_{int(f * 100):02d}.{ext}", "truncated", data=data[:cut])
        if full:
            for cut in (8, 16, 33, 64, 100):
                add(f"trunc_{Path(src).stem}_at{cut}.{ext}", "truncated", data=data[:cut])

    # Wrong magic, empty, text, random bytes, a real image under the wrong extension.
    g = np.random.default_rng(7)
    add("empty.png", "magic", data=b"")
    add("text.jpg", "magic", data=b"this is not an image\n" * 20)
    for ext in (("png", "jpg", "tif", "gif", "webp", "bmp") if full else ("png",)):
        add(f"random.{ext}", "magic", data=g.integers(0, 256, 2048, dtype=np.uint8).tobytes())
        add(f"magic_only.{ext}", "magic", data={"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff", "tif": b"II*\x00",
                                               "gif": b"GIF89a", "webp": b"RIFF\x00\x00\x00\x00WEBP",
                                               "bmp": b"BM"}[ext] + bytes(32))
    add("png_named.jpg", "valid", data=(folder / "rgb.png").read_bytes())

    # Decompression bombs: headers claiming gigapixels.
    dims = ((40000, 40000), (65535, 65535), (60000, 30000)) if full else ((40000, 40000),)
    for w, h in dims:
        add(f"bomb_{w}x{h}.png", "bomb", data=_bomb_png(w, h))
        add(f"bomb_{w}x{h}.jpg", "bomb", data=_bomb_jpeg(w, h))
        add(f"bomb_{w}x{h}.gif", "bomb", data=_bomb_gif(w, h))
        add(f"bomb_{w}x{h}.bmp", "bomb", data=_bomb_bmp(w, h))
        add(f"bomb_{w}x{h}.tif", "bomb", data=_bomb_tiff(w, h))
    add("over_default_10000x10000.png", "bomb", data=_bomb_png(10000, 10000))

    # Special files.
    (folder / "link_ok.png").symlink_to(folder / "rgb.png")
    cases.append(Case("link_ok.png", folder / "link_ok.png", "valid"))
    (folder / "link_broken.png").symlink_to(folder / "does_not_exist.png")
    cases.append(Case("link_broken.png", folder / "link_broken.png", "special"))
    (folder / "loop_a.png").symlink_to(folder / "loop_b.png")
    (folder / "loop_b.png").symlink_to(folder / "loop_a.png")
    cases.append(Case("loop_a.png", folder / "loop_a.png", "special"))
    os.mkfifo(folder / "fifo.png")
    cases.append(Case("fifo.png", folder / "fifo.png", "special"))
    (folder / "a_folder.png").mkdir()
    cases.append(Case("a_folder.png", folder / "a_folder.png", "special"))
    cases.append(Case("dev_null", Path("/dev/null"), "special"))
    cases.append(Case("missing.png", folder / "missing.png", "special"))
    return cases


@dataclass
class Outcome:
    case: str
    command: str
    code: Optional[int]
    stderr: str
    verdict: str  # result | clean_error | traceback | hang | partial_output | unclear_error | bad_result

    @property
    def good(self) -> bool:
        return self.verdict in ("result", "clean_error")


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: int):
    def boom(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_case(command: str, argv: Sequence[str], case: str, out_dir: Path, *, timeout: int = 60,
             writes: bool = True) -> Outcome:
    """Run ``gafu`` in this process with ``argv``; classify the outcome (see module docstring).
    ``writes=False``: the command prints its result (classify) instead of writing a file."""
    from gafu.cli import main

    before = set(_listing(out_dir))
    err = io.StringIO()
    code: Optional[int] = None
    verdict = ""
    try:
        with _alarm(timeout), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(argv))
    except _Hang:
        verdict = "hang"
    except BaseException as exc:  # anything escaping main() is a traceback for the user
        verdict = "traceback"
        err.write(f"{type(exc).__name__}: {exc}")
    text = err.getvalue()
    new = sorted(set(_listing(out_dir)) - before)
    if not verdict:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if code == 0 and not writes:
            verdict = "result" if not new else "bad_result"
        elif code == 0:
            verdict = "result" if new and all(_readable(out_dir / n) for n in new if not n.endswith(".tmp")) \
                and not any(n.endswith(".tmp") for n in new) else "bad_result"
        elif code == 2:
            if new:
                verdict = "partial_output"
            elif len(lines) == 1 and lines[0].startswith(f"gafu {command}: error: "):
                verdict = "clean_error"
            else:
                verdict = "unclear_error"
        else:
            verdict = "unclear_error"
    return Outcome(case, command, code, text.strip()[:300], verdict)


def _listing(d: Path) -> List[str]:
    return [str(p.relative_to(d)) for p in d.rglob("*")] if d.exists() else []


def _readable(p: Path) -> bool:
    if p.is_dir():
        return True
    try:
        with Image.open(p) as im:
            im.load()
        return True
    except Exception:
        return False


Argv = Callable[[Path, Path], List[str]]


def commands(content: Path, style: Path) -> dict:
    """The five commands of the robustness run: name -> (subcommand, (case, out dir) -> argv, writes a file)."""
    tiny = ["--size", "32", "--steps", "1", "--preset", "seed"]
    return {
        "fast-content": ("fast", lambda c, o: ["fast", str(c), str(style), "-o", str(o / "out.png")], True),
        "fast-style": ("fast", lambda c, o: ["fast", str(content), str(c), "-o", str(o / "out.png"), "--max-size", "64"],
                       True),
        "stylize": ("stylize", lambda c, o: ["stylize", str(c), str(style), "-o", str(o / "out.png"), *tiny], True),
        "classify": ("classify", lambda c, o: ["classify", str(c)], False),
        "stylize-mask": ("stylize", lambda c, o: ["stylize", str(content), str(style), "--mask", str(c),
                                                  "-o", str(o / "out.png"), *tiny], True),
    }
