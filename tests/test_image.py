import io

import numpy as np
import pytest
import torch
from PIL import Image

from gafu.errors import GafuError
from gafu.image import check_output_path, load_tensor, open_image, resize, save_image, seed_shape, to_pil, to_tensor


def test_seed_shape_truncates_like_the_tutorial():
    assert seed_shape(300, 451, 512) == (340, 512)  # 300 * 512/451 = 340.58 -> 340
    assert seed_shape(640, 1024, 512) == (320, 512)
    assert seed_shape(1528, 1200, 512) == (512, 402)  # 1200 * 512/1528 = 402.09
    assert seed_shape(100, 50, 512) == (512, 256)  # small images are enlarged, as tf.image.resize does


def _tf_bilinear_reference(img, out_h, out_w):
    """TF2 bilinear resize (half-pixel centres, no antialias), written with numpy loops."""
    c, h, w = img.shape
    out = np.zeros((c, out_h, out_w))
    sy, sx = h / out_h, w / out_w
    for y in range(out_h):
        fy = max((y + 0.5) * sy - 0.5, 0.0)
        y0 = min(int(np.floor(fy)), h - 1)
        y1 = min(y0 + 1, h - 1)
        wy = fy - y0
        for x in range(out_w):
            fx = max((x + 0.5) * sx - 0.5, 0.0)
            x0 = min(int(np.floor(fx)), w - 1)
            x1 = min(x0 + 1, w - 1)
            wx = fx - x0
            top = img[:, y0, x0] * (1 - wx) + img[:, y0, x1] * wx
            bot = img[:, y1, x0] * (1 - wx) + img[:, y1, x1] * wx
            out[:, y, x] = top * (1 - wy) + bot * wy
    return out


@pytest.mark.parametrize("size", [(7, 5), (23, 31)])
def test_seed_resize_equals_tf_bilinear(size):
    img = torch.rand(1, 3, 13, 17)
    got = resize(img, size, antialias=False)[0].numpy()
    ref = _tf_bilinear_reference(img[0].double().numpy(), *size)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_to_tensor_is_uint8_over_255_and_round_trips():
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor(Image.fromarray(arr))
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    torch.testing.assert_close(t[0, :, 2, 3], torch.tensor(arr[2, 3] / 255.0, dtype=torch.float32))
    assert np.array_equal(np.asarray(to_pil(t)), arr)


def _roundtrip(tmp_path, im, name, **save):
    p = tmp_path / name
    im.save(p, **save)
    return np.asarray(open_image(p)).astype(int)


def test_modes_are_converted(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    assert (_roundtrip(tmp_path, rgba, "a.png") == 255).all()
    la = Image.new("LA", (3, 3), (0, 255))  # opaque black
    assert (_roundtrip(tmp_path, la, "la.png") == 0).all()
    p = Image.new("P", (3, 3), 0)
    p.putpalette([10, 20, 30] + [0] * 765)
    assert (_roundtrip(tmp_path, p, "p.png")[0, 0] == [10, 20, 30]).all()
    i16 = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert (_roundtrip(tmp_path, i16, "i16.png") == 255).all()
    cmyk = Image.new("CMYK", (3, 3), (0, 0, 0, 0))  # no ink -> white
    assert (_roundtrip(tmp_path, cmyk, "c.jpg", quality=100) >= 250).all()


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (6, 2), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes())
    assert open_image(path).size == (2, 6)


def test_bad_files(tmp_path):
    with pytest.raises(GafuError, match="no such file"):
        open_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_text("hello")
    with pytest.raises(GafuError, match="not an image"):
        open_image(junk)
    with pytest.raises(GafuError, match="folder"):
        open_image(tmp_path)


def test_save_refuses_inputs_and_existing(tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (2, 2)).save(src)
    before = src.read_bytes()
    with pytest.raises(GafuError, match="refusing to overwrite input"):
        save_image(Image.new("RGB", (2, 2), "red"), src, inputs=[src])
    assert src.read_bytes() == before
    with pytest.raises(GafuError, match="already exists"):
        check_output_path(src, overwrite=False)
    with pytest.raises(GafuError, match="output format"):
        check_output_path(tmp_path / "out.xyz")


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".tiff", "TIFF"), (".webp", "WEBP")])
def test_save_formats(tmp_path, ext, fmt):
    out = save_image(torch.rand(1, 3, 8, 6), tmp_path / "sub" / f"o{ext}")
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (6, 8)
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_load_tensor_modes(content_path):
    seed = load_tensor(content_path, 128, mode="seed")
    aa = load_tensor(content_path, 128, mode="antialias")
    assert seed.shape == (1, 3, 85, 128) and aa.shape == (1, 3, 85, 128)
    assert (seed - aa).abs().mean() > 1e-4  # antialiasing changes a 451 -> 128 reduction


def test_saved_file_has_normal_permissions(tmp_path):
    import os
    import stat

    out = save_image(torch.rand(1, 3, 4, 4), tmp_path / "perm.png")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def _png16(path, arr):
    import png

    h, w, _ = arr.shape
    with open(path, "wb") as fh:
        png.Writer(w, h, greyscale=False, bitdepth=16).write_array(fh, arr.reshape(-1))


def test_16bit_png_and_tiff_keep_their_precision(tmp_path):
    import numpy as np
    import tifffile
    import torch

    from gafu.image import load_tensor, save_image

    g = np.random.default_rng(0)
    arr = g.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    _png16(tmp_path / "in.png", arr)
    tifffile.imwrite(tmp_path / "in.tif", arr, photometric="rgb")
    for src in ("in.png", "in.tif"):
        t = load_tensor(tmp_path / src, None, bits=16)
        assert torch.equal((t[0].permute(1, 2, 0).double() * 65535).round().to(torch.int64),
                           torch.from_numpy(arr.astype(np.int64)))
        eight = load_tensor(tmp_path / src, None)  # the default path keeps 8 bits
        assert (eight * 255 - (eight * 255).round()).abs().max() < 1e-4
        for ext in ("png", "tif"):
            out = save_image(t, tmp_path / f"out_{src}.{ext}", bits=16)
            back = load_tensor(out, None, bits=16)
            assert torch.equal(back, t)


def test_16bit_output_needs_png_or_tiff(tmp_path):
    import torch

    from gafu.errors import GafuError
    from gafu.image import save_image

    with pytest.raises(GafuError, match="16-bit output"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "a.jpg", bits=16)


def test_16bit_png_carries_srgb(tmp_path):
    import torch
    from PIL import ImageCms

    from gafu.image import save_image

    out = Image.open(save_image(torch.rand(1, 3, 4, 4), tmp_path / "a.png", bits=16))
    prof = ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(prof)


def test_cli_bit_depth_16_end_to_end(tmp_path, style_path):
    import png

    from gafu.cli import main

    g = np.random.default_rng(1)
    _png16(tmp_path / "c.png", g.integers(0, 65536, size=(24, 32, 3), dtype=np.uint16))
    out = tmp_path / "o.png"
    code = main(["stylize", str(tmp_path / "c.png"), str(style_path), "-o", str(out), "--preset", "seed",
                 "--size", "32", "--steps", "1", "--bit-depth", "16"])
    assert code == 0
    assert png.Reader(filename=str(out)).read()[3]["bitdepth"] == 16
    assert main(["stylize", str(tmp_path / "c.png"), str(style_path), "-o", str(tmp_path / "o.jpg"),
                 "--bit-depth", "16"]) == 2
