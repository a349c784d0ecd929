#!/usr/bin/env python
"""TensorFlow's JPEG pixels, as hashes: the reference for gafu.jpeg.decode_like_tf.

Decodes each JPEG with ``tf.io.decode_image(tf.io.read_file(path), channels=3)`` (what the TF
style-transfer tutorial's ``load_img`` does) and prints one JSON object: per file the sha256 of the
file, the shape and the sha256 of the decoded uint8 array (C order, HxWx3), whether
``tf.io.decode_jpeg(channels=3)`` with its defaults gives the same array, and how far Pillow's
decode (the accurate IDCT; gafu's default loader) is from it. It does not import gafu. Run it with
the TensorFlow venv (see benchmarks/README.md):

    /work/tfvenv/bin/python benchmarks/tf_decode_reference.py \
        ../shared/images tests/data/jpeg gafu/data > tests/data/tf_decode_reference.json

Folders are searched recursively for files whose first bytes are the JPEG signature; names in
the JSON are relative to the folder given (``shared:`` for ../shared/images, else the path
relative to the current folder).

``--make-fixtures DIR`` first writes the small synthetic JPEGs kept in tests/data/jpeg (made with
Pillow from a seeded random pattern: greyscale progressive, 4:2:0 and 4:2:2 at odd sizes,
progressive 4:2:0, restart markers, CMYK with and without the Adobe marker, EXIF orientation 6 with
an ICC profile, stray bytes before two markers); the committed files are the reference, regenerating them may give other bytes
with another Pillow.
"""
import argparse
import hashlib
import io
import json
import os
import platform
import sys

JPEG_MAGIC = b"\xff\xd8\xff"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def find_jpegs(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                if fh.read(3) == JPEG_MAGIC:
                    out.append(p)
    return out


def label(path, root):
    shared = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "images"))
    if os.path.normpath(os.path.abspath(root)) == shared:
        return "shared:" + os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.relpath(path).replace(os.sep, "/")


def _pattern(h, w, seed):
    """A smooth colour pattern with texture and sharp edges (exercises IDCT and upsampling)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        127 + 100 * np.sin(x / 5.0 + seed),
        127 + 100 * np.cos(y / 3.0),
        127 + 100 * np.sin((x + y) / 7.0),
    ], axis=-1)
    img[h // 3: h // 2, w // 4: w // 2] = [250, 10, 40]  # a saturated block with hard edges
    img += rng.normal(0, 18, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _strip_app14(data):
    """Remove the Adobe APP14 segment (a CMYK JPEG without it: libjpeg's non-Adobe CMYK)."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEE:
            return data[:pos] + data[pos + 2 + length:]
        if marker == 0xDA:
            break
        pos += 2 + length
    raise SystemExit("error: no APP14 marker found")


def make_fixtures(folder):
    import numpy as np
    from PIL import Image, ImageCms

    os.makedirs(folder, exist_ok=True)

    def save(name, im, **kw):
        path = os.path.join(folder, name)
        im.save(path, "JPEG", **kw)
        return path

    rgb = Image.fromarray(_pattern(29, 37, 1))
    save("gray_progressive.jpg", rgb.convert("L"), quality=85, progressive=True)
    save("gray_baseline.jpg", rgb.convert("L"), quality=60)
    save("ycc420_odd.jpg", rgb, quality=80, subsampling=2)
    save("ycc420_odd_progressive.jpg", Image.fromarray(_pattern(31, 45, 2)), quality=90,
         subsampling=2, progressive=True)
    save("ycc422_odd.jpg", Image.fromarray(_pattern(27, 41, 3)), quality=75, subsampling=1)
    save("ycc444_restart.jpg", Image.fromarray(_pattern(40, 48, 4)), quality=92, subsampling=0,
         restart_marker_blocks=2)
    cmyk = Image.fromarray(np.concatenate([_pattern(23, 35, 5), _pattern(23, 35, 6)[..., :1]], axis=-1),
                           "CMYK")
    p = save("cmyk_adobe.jpg", cmyk, quality=85)
    with open(p, "rb") as fh:
        data = fh.read()
    with open(os.path.join(folder, "cmyk_no_adobe.jpg"), "wb") as fh:
        fh.write(_strip_app14(data))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display; TF ignores it
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    save("exif_orient6_icc.jpg", Image.fromarray(_pattern(26, 38, 7)), quality=88, exif=exif.tobytes(),
         icc_profile=icc)
    # libjpeg warnings TensorFlow lets pass: stray bytes before the start of scan and before the end
    with open(os.path.join(folder, "ycc420_odd.jpg"), "rb") as fh:
        data = fh.read()
    i, j = data.find(b"\xff\xda"), data.rfind(b"\xff\xd9")
    with open(os.path.join(folder, "warn_extraneous_bytes.jpg"), "wb") as fh:
        fh.write(data[:i] + b"\x00\x07" + data[i:j] + b"\x00\x00\x00" + data[j:])
    log(f"wrote fixtures to {folder}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="JPEG files or folders (searched recursively)")
    p.add_argument("--make-fixtures", metavar="DIR", help="first write the synthetic JPEGs into DIR")
    args = p.parse_args(argv)
    if args.make_fixtures:
        make_fixtures(args.make_fixtures)

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    files = {}
    for root in args.paths:
        for path in find_jpegs(root):
            with open(path, "rb") as fh:
                data = fh.read()
            img = tf.io.decode_image(data, channels=3).numpy()  # the tutorial's call (uint8)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3, img.shape
            via_jpeg = tf.io.decode_jpeg(data, channels=3).numpy()
            entry = {
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "shape": list(img.shape),
                "pixels_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
                "decode_jpeg_defaults_same": bool(np.array_equal(img, via_jpeg)),
            }
            try:
                with Image.open(io.BytesIO(data)) as im:
                    entry["pillow_mode"] = im.mode
                    entry["progressive"] = bool(im.info.get("progressive") or im.info.get("progression"))
                    pil = np.asarray(im.convert("RGB"), dtype=np.int16)
                if pil.shape == img.shape:
                    d = np.abs(pil - img.astype(np.int16))
                    entry["pillow_vs_tf"] = {"mean_abs": round(float(d.mean()), 4), "max_abs": int(d.max()),
                                             "equal_fraction": round(float((d == 0).mean()), 4)}
            except OSError as exc:
                entry["pillow_error"] = str(exc)
            name = label(path, root)
            files[name] = entry
            log(f"{name}: {entry['shape']} {entry['pixels_sha256'][:12]}")
    result = {
        "tool": "benchmarks/tf_decode_reference.py",
        "call": "tf.io.decode_image(tf.io.read_file(path), channels=3) -> uint8 HxWx3, sha256 of C-order bytes",
        "versions": {"tensorflow": tf.__version__, "numpy": np.__version__,
                     "pillow": Image.__version__, "python": platform.python_version()},
        "files": files,
    }
    # one line per file: small diffs when a file is added
    lines = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in files.items()]
    head = json.dumps({k: v for k, v in result.items() if k != "files"}, indent=1)[:-2]
    print(head + ',\n "files": {\n' + ",\n".join(lines) + "\n }\n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
