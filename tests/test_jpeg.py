"""gafu.jpeg.decode_like_tf gives TensorFlow's JPEG pixels, bit for bit, and with them the seed
preset reproduces TensorFlow's tutorial run.

References (made with TensorFlow 2.21, see benchmarks/README.md):

- tests/data/tf_decode_reference.json: per JPEG the sha256 of the file and of
  ``tf.io.decode_image(data, channels=3)`` as uint8 HxWx3 (benchmarks/tf_decode_reference.py), for
  every JPEG in ../shared/images, gafu/data and the small synthetic files in tests/data/jpeg
  (greyscale, progressive, 4:2:0/4:2:2 at odd sizes, restart markers, CMYK with and without the
  Adobe marker, EXIF orientation + ICC profile, stray bytes TensorFlow tolerates).
- tests/data/tf_seed_reference_*: TensorFlow runs of the tutorial (benchmarks/tf_seed_reference.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gafu.errors import GafuError
from gafu.jpeg import decode_like_tf, is_jpeg, to_tensor_like_tf

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "images"
REFERENCE = json.loads((DATA / "tf_decode_reference.json").read_text())["files"]
FIXTURES = DATA / "jpeg"


def _path(name: str) -> Path:
    return SHARED / name[len("shared:"):] if name.startswith("shared:") else ROOT / name


def _sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


# --------------------------------------------------------------------------- bit-exact pixels


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_decode_matches_tensorflow_bit_for_bit(name):
    path = _path(name)
    if name.startswith("shared:") and not path.exists():
        pytest.skip(f"shared images not found at {SHARED}")
    ref = REFERENCE[name]
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == ref["file_sha256"], f"{name} changed: remake the reference"
    arr = decode_like_tf(path)
    assert arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]
    assert list(arr.shape) == ref["shape"]
    assert _sha(arr) == ref["pixels_sha256"], f"{name}: pixels differ from TensorFlow's"


def test_reference_covers_every_jpeg_we_ship_or_test_with(shared_images):
    """A JPEG added to the shared images, the package data or the fixtures needs a TF hash."""
    found = set()
    for folder, prefix in ((shared_images, "shared:"), (ROOT / "gafu" / "data", "gafu/data/"), (FIXTURES, "tests/data/jpeg/")):
        for p in sorted(folder.rglob("*")):
            if p.is_file() and is_jpeg(p):
                found.add(prefix + p.relative_to(folder).as_posix())
    assert found - set(REFERENCE) == set()
    kinds = {(e["pillow_mode"], e["progressive"]) for e in REFERENCE.values()}
    assert {("L", True), ("L", False), ("RGB", True), ("RGB", False), ("CMYK", False)} <= kinds
    # the shared set itself has a greyscale and a progressive JPEG
    shared = [e for n, e in REFERENCE.items() if n.startswith("shared:")]
    assert any(e["pillow_mode"] == "L" for e in shared) and any(e["progressive"] for e in shared)


def test_accurate_idct_is_not_tensorflows_pixels(shared_images):
    """The check above can fail: Pillow's decoder and libjpeg's accurate IDCT give other pixels."""
    import simplejpeg

    name = "shared:style/vangogh_starry_night.jpg"
    data = _path(name).read_bytes()
    accurate = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
    pillow = np.asarray(Image.open(_path(name)).convert("RGB"))
    fast_upsample = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True)
    ours = decode_like_tf(data)
    for other in (accurate, pillow, fast_upsample):
        assert other.shape == ours.shape and _sha(other) != REFERENCE[name]["pixels_sha256"]
    assert np.abs(accurate.astype(int) - ours).mean() > 0.5  # about one grey level


def test_bytes_and_path_give_the_same_pixels():
    p = FIXTURES / "ycc420_odd_progressive.jpg"
    data = p.read_bytes()
    a = decode_like_tf(p)
    for src in (str(p), data, bytearray(data), memoryview(data)):
        assert np.array_equal(decode_like_tf(src), a)


def test_greyscale_is_replicated_to_three_channels():
    arr = decode_like_tf(FIXTURES / "gray_progressive.jpg")
    assert arr.shape == (29, 37, 3)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
    assert arr.std() > 10  # a picture, not a flat fill


def test_exif_orientation_and_icc_profile_are_ignored_as_tensorflow_does():
    p = FIXTURES / "exif_orient6_icc.jpg"
    with Image.open(p) as im:
        assert im.getexif().get(0x0112) == 6 and im.info.get("icc_profile")
    assert decode_like_tf(p).shape == (26, 38, 3)  # not rotated to 38x26


def test_stray_bytes_tensorflow_tolerates_are_tolerated():
    clean = decode_like_tf(FIXTURES / "ycc420_odd.jpg")
    assert np.array_equal(decode_like_tf(FIXTURES / "warn_extraneous_bytes.jpg"), clean)


def test_to_tensor_like_tf_scales_as_convert_image_dtype():
    from gafu.image import to_tensor

    values = np.arange(256, dtype=np.uint8)
    arr = np.stack([values.reshape(16, 16)] * 3, axis=-1)
    t = to_tensor_like_tf(arr)
    assert t.shape == (1, 3, 16, 16) and str(t.dtype) == "torch.float32"
    expected = values.astype(np.float32) * np.float32(1.0 / 255.0)  # what TF computes
    assert np.array_equal(t[0, 0].numpy().ravel(), expected)
    divided = to_tensor(Image.fromarray(arr))[0, 0].numpy().ravel()
    assert (divided != expected).sum() == 126  # one ulp apart: why this function exists
    with pytest.raises(GafuError, match="uint8"):
        to_tensor_like_tf(arr.astype(np.float32))


# --------------------------------------------------------------------------- is_jpeg and errors


def test_is_jpeg_looks_at_content_not_name(tmp_path):
    assert is_jpeg(FIXTURES / "ycc422_odd.jpg")
    assert not is_jpeg(DATA / "starry_night_256.png")
    fake = tmp_path / "png_named.jpg"
    fake.write_bytes((DATA / "starry_night_256.png").read_bytes())
    assert not is_jpeg(fake)
    real = tmp_path / "jpeg_named.png"
    real.write_bytes((FIXTURES / "ycc422_odd.jpg").read_bytes())
    assert is_jpeg(real) and decode_like_tf(real).shape == (27, 41, 3)
    assert not is_jpeg(tmp_path / "missing.jpg")
    assert not is_jpeg(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert not is_jpeg(tmp_path / "empty.jpg")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, t: t / "missing.jpg", "no such file"),
        (lambda d, t: t, "folder"),
        (lambda d, t: (DATA / "starry_night_256.png"), "not a JPEG"),
        (lambda d, t: b"", "not a JPEG"),
        (lambda d, t: b"\xff\xd8\xff\xe0garbage", "cannot"),
        (lambda d, t: d[: len(d) * 2 // 3], "truncated"),
        (lambda d, t: d[:-2], "truncated"),  # no end-of-image marker: TF refuses it as well
        (lambda d, t: 12345, "expected a JPEG path or bytes"),
    ],
)
def test_bad_input_raises_gafu_error(make, message, tmp_path):
    data = (FIXTURES / "ycc420_odd.jpg").read_bytes()
    with pytest.raises(GafuError, match=message):
        decode_like_tf(make(data, tmp_path))


# --------------------------------------------------------------------------- seed parity


def _seed_run(ref: dict, content, style) -> np.ndarray:
    from gafu.config import get_preset
    from gafu.image import to_pil
    from gafu.optimize import StyleTransfer

    cfg = get_preset("seed").replace(size=ref["size"], steps=ref["steps"], tv_weight=ref["tv_weight"])
    st = StyleTransfer(content, [style], cfg)
    assert list(st.content.shape[-2:]) == ref["content_shape"][1:3]
    for _ in st.run():
        pass
    return np.asarray(to_pil(st.image))


def _source(name: str, shared_images: Path):
    """The image as the tutorial's load_img has it before resizing: TF's pixels, scaled as TF does."""
    for sub in ("content", "style", "inspection"):
        p = shared_images / sub / name
        if p.exists():
            arr = decode_like_tf(p) if is_jpeg(p) else np.asarray(Image.open(p).convert("RGB"))
            return to_tensor_like_tf(arr)
    raise AssertionError(name)


def _check_pair(stem: str, shared_images: Path, min_psnr: float = 30.0) -> float:
    ref = json.loads((DATA / f"{stem}.json").read_text())
    tf_img = np.asarray(Image.open(DATA / ref["saved_image"]).convert("RGB"))
    ours = _seed_run(ref, _source(ref["content"], shared_images), _source(ref["style"], shared_images))
    psnr = _psnr(ours, tf_img)
    assert psnr >= min_psnr, f"{stem}: PSNR {psnr:.2f} dB against TensorFlow's run"
    return psnr


def test_seed_preset_with_tf_pixels_reproduces_tensorflow_run_128(shared_images):
    """chelsea x Starry Night (JPEG) at 128 px, 100 steps, TensorFlow's style pixels (39 dB)."""
    _check_pair("tf_seed_reference_chelsea_starry_128", shared_images)


@pytest.mark.slow
@pytest.mark.parametrize("stem", [
    "tf_seed_reference_chelsea_starry_256",  # PNG content, 4:2:0 style
    "tf_seed_reference_rocket_hokusai_tv30_256",  # JPEG content with an ICC profile, progressive style, TV 30
    "tf_seed_reference_hazelnut_kandinsky_tv30_256",  # JPEG content and 4:2:0 style, TV 30
])
def test_seed_preset_with_tf_pixels_reproduces_tensorflow_run_256(stem, shared_images):
    """256 px, 100 steps, every input JPEG decoded as TensorFlow decodes it."""
    _check_pair(stem, shared_images)


def test_seed_preset_reads_images_as_tensorflow_does(tmp_path):
    """The wiring: under the seed preset every input goes through TF's decoder and scaling; the
    fast preset keeps Pillow's accurate decoder."""
    import torch

    from gafu.config import get_preset
    from gafu.image import as_tensor, load_tensor
    from gafu.jpeg import decode_like_tf, to_tensor_like_tf
    from gafu.optimize import StyleTargets

    jpg = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"
    tf = to_tensor_like_tf(decode_like_tf(jpg))
    assert torch.equal(as_tensor(jpg, None, decoder="tf"), tf)
    assert not torch.equal(load_tensor(jpg, None), tf)  # Pillow's pixels differ
    seed, fast = get_preset("seed"), get_preset("fast")
    assert (seed.jpeg_decoder, fast.jpeg_decoder) == ("tf", "pillow")
    assert torch.equal(StyleTargets([jpg], seed).images[0], tf)
    assert torch.equal(StyleTargets([jpg], fast).images[0], load_tensor(jpg, None))
