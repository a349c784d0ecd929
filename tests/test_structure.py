"""The restructure's promises: styles prepared once, named loss terms, one result type, no
process-wide side effects, library errors that name library arguments."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from gafu.config import get_preset
from gafu.errors import GafuError
from gafu.losses import ContentLoss, Criterion, StyleLoss, TotalVariationLoss, gram_matrix, total_variation
from gafu.optimize import StyleTargets, StyleTransfer
from gafu.result import StyleResult

CFG = get_preset("seed").replace(size=48, steps=3)


def _photo(seed: int, size=(40, 56)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, *size, generator=g)


class _Counting(torch.nn.Module):
    """Wraps an extractor and counts forward passes per image size."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, x, layers=None):
        self.calls.append(tuple(x.shape[-2:]))
        return self.inner(x, layers)


def test_style_targets_computed_once_for_many_photos(tiny_vgg):
    style = _photo(99, (64, 64))
    net = _Counting(tiny_vgg)
    targets = StyleTargets([style], CFG, extractor=net)
    results = []
    for i in range(8):
        st = StyleTransfer(_photo(i), targets, CFG, extractor=net)
        results.append(st)
    style_calls = [c for c in net.calls if c == (48, 48)]
    assert targets.extractor_calls == 1 and len(style_calls) == 1
    # The same Gram targets as a transfer that prepares its own.
    own = StyleTransfer(_photo(0), [style], CFG, extractor=tiny_vgg)
    for name, g in own.style_loss.targets().items():
        assert torch.equal(g, results[0].style_loss.targets()[name])


def test_style_targets_per_stage_of_coarse_to_fine(tiny_vgg):
    cfg = CFG.replace(size=64, steps=1, scales=(0.5, 0.75), scale_steps=(1, 1), optimizer="adam")
    targets = StyleTargets([_photo(5, (64, 64))], cfg, extractor=tiny_vgg)
    st = StyleTransfer(_photo(1, (48, 64)), targets, cfg, extractor=tiny_vgg)
    list(st.run())
    assert st.steps_done == 3
    assert targets.extractor_calls == 3  # full size, 32 px and 48 px: one pass each, no more
    list(StyleTransfer(_photo(2, (48, 64)), targets, cfg, extractor=tiny_vgg).run())
    assert targets.extractor_calls == 3  # a second photo reuses all three


def test_style_targets_reject_other_settings(tiny_vgg):
    targets = StyleTargets([_photo(5, (64, 64))], CFG, extractor=tiny_vgg)
    with pytest.raises(GafuError, match="style_scale"):
        StyleTransfer(_photo(1), targets, CFG.replace(style_scale=2.0), extractor=tiny_vgg)
    with pytest.raises(GafuError, match="style_weights"):
        StyleTransfer(_photo(1), targets, CFG, style_weights=[1.0], extractor=tiny_vgg)


def test_colour_preservation_prepares_per_content(tiny_vgg):
    cfg = CFG.replace(preserve_color="histogram")
    targets = StyleTargets([_photo(5, (64, 64))], cfg, extractor=tiny_vgg)
    a = StyleTransfer(_photo(1), targets, cfg, extractor=tiny_vgg)
    b = StyleTransfer(_photo(2) * 0.3, targets, cfg, extractor=tiny_vgg)
    ga, gb = a.style_loss.targets(), b.style_loss.targets()
    assert targets.extractor_calls == 2  # matched to each content: not shared
    assert any(not torch.allclose(ga[k], gb[k]) for k in ga)


def test_criterion_named_terms_and_a_new_term(tiny_vgg):
    st = StyleTransfer(_photo(1), [_photo(5, (64, 64))], CFG.replace(tv_weight=2.0), extractor=tiny_vgg)
    assert st.criterion.names == ["style", "content", "tv"]

    class Brightness(torch.nn.Module):
        layers = ()

        def forward(self, features, image):
            return 1e3 * image.mean()

    st.add_term("bright", Brightness())
    its = list(st.run(2))
    assert set(its[-1].terms) == {"style", "content", "tv", "bright"}
    x = st._image.detach().clamp(0, 1)
    terms = st.evaluate()
    assert terms["bright"] == pytest.approx(1e3 * float(x.mean()), rel=1e-5)
    assert terms["tv"] == pytest.approx(2.0 * float(total_variation(x)), rel=1e-5)
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"), rel=1e-6)
    with pytest.raises(ValueError):
        st.add_term("style", Brightness())


def test_criterion_equals_the_functions():
    feats = {"a": torch.rand(1, 4, 5, 6), "b": torch.rand(1, 8, 3, 3)}
    tgt = {"a": torch.rand(1, 4, 5, 6)}
    grams = {"b": torch.rand(1, 8, 8)}
    img = torch.rand(1, 3, 7, 7)
    c = Criterion({"content": ContentLoss(tgt, 3.0), "style": StyleLoss(grams, 0.5), "tv": TotalVariationLoss(0.1),
                   "none": None})
    out = c(feats, img)
    assert set(c.layers) == {"a", "b"}
    assert float(out["content"]) == pytest.approx(3.0 * float(((feats["a"] - tgt["a"]) ** 2).mean()))
    assert float(out["style"]) == pytest.approx(0.5 * float(((gram_matrix(feats["b"]) - grams["b"]) ** 2).mean()))
    assert float(out["tv"]) == pytest.approx(0.1 * float(total_variation(img)))
    assert float(out["none"]) == 0.0
    assert float(out["total"]) == pytest.approx(float(out["content"] + out["style"] + out["tv"]))


def test_one_result_type_for_both_engines(tiny_vgg):
    st = StyleTransfer(_photo(1), [_photo(5, (64, 64))], CFG, extractor=tiny_vgg)
    list(st.run())
    r = st.result()
    assert isinstance(r, StyleResult) and r.method == "optimize"
    assert r.steps == 3 and r.info["stop_reason"] == "steps"
    assert r.size == (48, 34)  # 40x56 at 48 px, the seed's truncating resize
    assert isinstance(r.image, Image.Image) and r.image.size == r.size
    assert r.settings["size"] == 48 and r.timings["loop"] > 0
    arr = np.asarray(r.image, dtype=np.float64) / 255.0
    assert np.abs(arr - r.tensor[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_stop_reason_stalled(tiny_vgg):
    cfg = CFG.replace(steps=200, stop_tol=0.5, stop_window=2)
    st = StyleTransfer(_photo(1), [_photo(5, (64, 64))], cfg, extractor=tiny_vgg)
    list(st.run())
    assert st.stop_reason == "stalled" and st.steps_done < 200


def test_run_leaves_the_allocator_alone_unless_asked(monkeypatch, tiny_vgg):
    from contextlib import contextmanager

    import gafu.optimize.loop as loop

    calls = {"keep_freed_memory": [], "return_freed_memory": []}

    def recorder(name):
        @contextmanager
        def fake(enabled=True):
            calls[name].append(enabled)
            yield enabled

        return fake

    for name in calls:
        monkeypatch.setattr(loop, name, recorder(name))
    st = StyleTransfer(_photo(1), [_photo(5, (64, 64))], CFG.replace(steps=1), extractor=tiny_vgg)
    list(st.run())
    list(st.run(1, tune_allocator=True))
    # runs whose buffer sizes change return freed memory instead: coarse stages...
    cfg = CFG.replace(size=96, steps=1, scales=(0.5,), scale_steps=(1,))
    st = StyleTransfer(_photo(1, (64, 96)), [_photo(5, (64, 64))], cfg, extractor=tiny_vgg)
    list(st.run(tune_allocator=True))
    # ...and tiles (a moving grid)
    st = StyleTransfer(_photo(1, (64, 160)), [_photo(5, (64, 64))], CFG.replace(size=160, steps=1),
                       extractor=tiny_vgg, init_image=_photo(2, (64, 160)), tile=96)
    assert st._tiled is not None
    list(st.run(tune_allocator=True))
    list(st.run(1))  # a tiled run keeps to its plan unasked
    assert calls == {"keep_freed_memory": [False, True], "return_freed_memory": [True, True, True]}


def test_return_freed_memory_is_reentrant_and_restores(monkeypatch):
    import gafu.optimize.precision as precision

    calls = []

    class FakeLibc:  # records what would be set, so the test runs (and can fail) off glibc too
        def mallopt(self, param, value):
            calls.append((param, value))

        def malloc_trim(self, pad):
            calls.append(("trim", pad))

    monkeypatch.setattr(precision, "_libc", lambda: FakeLibc())
    with precision.return_freed_memory() as outer:
        with precision.keep_freed_memory() as inner:  # nested: the outermost block's setting holds
            assert outer and inner and precision._alloc_depth == 2
    assert precision._alloc_depth == 0
    mmap, trim = precision._M_MMAP_THRESHOLD, precision._M_TRIM_THRESHOLD
    assert calls == [(mmap, precision._BOUNDED_MMAP), (trim, precision._BOUNDED_MMAP),
                     (mmap, precision._GLIBC_SETTLED_MMAP), (trim, precision._GLIBC_SETTLED_TRIM), ("trim", 0)]
    with precision.return_freed_memory(enabled=False) as off:
        assert off is False and len(calls) == 5


def test_atomic_write_never_touches_the_umask(monkeypatch, tmp_path):
    from gafu.image import save_image

    def boom(*a):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", boom)
    out = save_image(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_mode_follows_the_umask(tmp_path):
    from gafu.image import save_image

    old = os.umask(0o027)
    try:
        out = save_image(Image.new("RGB", (4, 4)), tmp_path / "b.png")
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o640


def test_unwritable_folder_is_a_clear_error(tmp_path):
    from gafu.image import save_image

    if os.geteuid() == 0:
        target = tmp_path / "file_not_folder"
        target.write_bytes(b"x")
        path = target / "out.png"  # a parent that is a file: cannot be created, even as root
    else:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        path = d / "out.png"
    with pytest.raises(GafuError, match="cannot write"):
        save_image(Image.new("RGB", (4, 4)), path)


def test_model_cache_is_thread_safe(monkeypatch):
    import gafu.vgg as vgg

    built = []
    real = vgg.VGG19Features

    class Slow(real):
        def __init__(self, *a, **k):
            built.append(1)
            threading.Event().wait(0.05)
            super().__init__(*a, **k)

    monkeypatch.setattr(vgg, "VGG19Features", Slow)
    monkeypatch.setattr(vgg, "_model_cache", {})
    out = []
    threads = [threading.Thread(target=lambda: out.append(vgg.load_vgg19(("block1_conv1",)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(m is out[0] for m in out)


def test_library_errors_name_library_arguments(tmp_path):
    from gafu.image import check_output_path

    p = tmp_path / "x.png"
    p.write_bytes(b"")
    with pytest.raises(GafuError) as e:
        check_output_path(p)
    assert "overwrite=True" in str(e.value) and "--" not in str(e.value)
    assert "--overwrite" in e.value.for_client()


def test_cli_help_comes_from_the_config():
    from gafu.cli import build_parser
    from gafu.config import setting_help

    parser = build_parser()
    stylize = parser._subparsers._group_actions[0].choices["stylize"]
    helps = {a.dest: a.help for a in stylize._actions}
    for name in ("size", "steps", "stop_tol", "precision"):
        assert helps[name] == setting_help(name)
    assert "fast: auto; seed: fp32" in helps["precision"]
    assert "(default: 1000)" in helps["steps"]  # the same in both presets


def _swapped_primaries_profile() -> bytes:
    """sRGB with its red and blue primaries swapped: a real ICC profile whose colours differ."""
    import struct

    from PIL import ImageCms

    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    entries = {}
    for i in range(struct.unpack(">I", b[128:132])[0]):
        o = 132 + 12 * i
        entries[bytes(b[o:o + 4])] = o
    r, bl = entries[b"rXYZ"], entries[b"bXYZ"]
    b[r + 4:r + 12], b[bl + 4:bl + 12] = b[bl + 4:bl + 12], b[r + 4:r + 12]
    b[84:100] = bytes(16)  # profile ID no longer matches: clear it
    return bytes(b)


def test_icc_profile_is_applied_on_load(tmp_path):
    from gafu.image import load

    p = tmp_path / "swapped.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(p, icc_profile=_swapped_primaries_profile())
    r, g, b = load(p).getpixel((0, 0))
    assert b > 200 and r < 60  # "red" in that profile is sRGB blue


def test_saved_images_carry_srgb_and_full_chroma(tmp_path):
    from PIL import ImageCms, JpegImagePlugin

    from gafu.image import save_image

    im = Image.new("RGB", (16, 16), (10, 200, 30))
    for ext in ("png", "jpg", "tif", "webp"):
        out = Image.open(save_image(im, tmp_path / f"a.{ext}"))
        prof = ImageCms.ImageCmsProfile(__import__("io").BytesIO(out.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(prof)
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "a.jpg")) == 0  # 4:4:4


def test_report_html_escapes_text(tmp_path):
    from gafu.report import write_run_report

    evil = "<script>alert('x')</script>"
    write_run_report(tmp_path / "rep", [], settings={"content": evil}, summary={"output": evil})
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
