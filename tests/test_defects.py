"""gafu defects synth/check end to end on small copies of ../shared/images (real fast models, tiny sizes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gafu import defects
from gafu.cli import main
from gafu.defects import blend as dblend
from gafu.defects import masks as dmasks
from gafu.errors import GafuError
from gafu.jobs import read_rows

from conftest import manifest_keys, output_files

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "gafu" / "data"
PX = 96  # long side of the test images: small, so the suite stays fast
KW = dict(category="inspect", n=2, defect_types="crack,stain,spots", seed=3)
# torchvision's IMG_EXTENSIONS, which anomalib's loaders compare suffixes against (case-sensitive)
LOADER_EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _small(src: Path, dst: Path, px: int = PX) -> None:
    with Image.open(src) as im:
        im.load()
        im.thumbnail((px, px), Image.LANCZOS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst)


@pytest.fixture(scope="module")
def good(tmp_path_factory, shared_images) -> Path:
    """hazelnut (JPEG), brick (greyscale PNG), two content photos as "products", a licence, a text file."""
    root = tmp_path_factory.mktemp("defects") / "good"
    _small(shared_images / "inspection/hazelnut_toy_good.jpg", root / "hazelnut.jpg")
    _small(shared_images / "inspection/texture_brick_cc0.png", root / "brick.png")
    _small(shared_images / "content/coffee.png", root / "products/coffee.png")
    _small(shared_images / "content/chelsea.png", root / "products/chelsea.png")
    (root / "LICENSE").write_text("CC BY 4.0 (anomalib contributors); CC0\n")
    (root / "notes.txt").write_text("not an image\n")
    assert Image.open(root / "brick.png").mode == "L"
    return root



@pytest.fixture(scope="module")
def reference(good, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    s = defects.synth(good, out, **KW)
    assert (s.done, s.failed, s.train_good, s.test_good) == (10, 0, 3, 1)
    assert s.defects == {"crack": 2, "stain": 2, "spots": 2}
    return out


def _anomalib_mvtec(root: Path) -> list:
    """The pairing MVTecAD's make_mvtec_ad_dataset does, written again from its rules: every image
    under the category folder is (split, label, file); test images whose label is not 'good' get the
    sorted ground_truth files in order, and each image stem must occur in its mask's stem."""
    files = [p for p in root.glob("**/*") if p.suffix in LOADER_EXT]
    samples = sorted(str(p) for p in files if p.parts[-3] != "ground_truth")
    masks = sorted(str(p) for p in files if p.parts[-3] == "ground_truth")
    abnormal = [s for s in samples if Path(s).parts[-3] == "test" and Path(s).parts[-2] != "good"]
    assert len(abnormal) == len(masks)
    pairs = list(zip(abnormal, masks))
    assert all(Path(i).stem in Path(m).stem for i, m in pairs)
    assert {Path(s).parts[-3] for s in samples} == {"train", "test"}
    return pairs


def test_mvtec_layout_loads_as_anomalib_pairs_it_and_check_passes(good, reference):
    assert defects.check(reference) == []
    root = reference / "inspect"
    pairs = _anomalib_mvtec(root)
    assert [(Path(i).relative_to(root).as_posix(), Path(m).relative_to(root).as_posix()) for i, m in pairs][:2] == [
        ("test/crack/000.png", "ground_truth/crack/000_mask.png"), ("test/crack/001.png", "ground_truth/crack/001_mask.png")]
    rows = {r["output"]: r for r in read_rows(reference / "manifest.jsonl")}
    for img, msk in pairs:
        rel = Path(img).relative_to(reference).as_posix()
        row = rows[rel]
        with Image.open(msk) as m:
            assert m.mode == "L" and m.format == "PNG"
            mask = np.asarray(m)
        assert set(np.unique(mask).tolist()) == {0, 255}  # binary and not empty
        with Image.open(img) as im:
            out = np.asarray(im)
        with Image.open(reference / row["source_copy"]) as im:
            src = np.asarray(im)
        assert out.shape == src.shape and mask.shape == out.shape[:2]  # geometry identical
        outside = mask == 0
        assert np.array_equal(out[outside], src[outside])  # bit for bit outside the mask
        assert row["mask_info"]["pixels"] == int((mask > 0).sum())
        assert (out != src)[mask > 0].any()  # the defect is there
        assert row["licence"].startswith("CC BY 4.0") and row["fill"]["kind"] == "self"
    # untouched copies: the decoded source pixels, greyscale kept greyscale
    copies = {r["source"]: r["output"] for r in rows.values() if r["kind"] == "good"}
    assert len(copies) == 4
    for src, copy in copies.items():
        with Image.open(good / src) as a, Image.open(reference / copy) as b:
            assert a.mode in ("L", "RGB") and b.mode == a.mode
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not list(root.glob("**/*.jpg")) and not (root / "manifest.jsonl").exists()


def test_same_bytes_twice_and_report(good, reference, tmp_path):
    again = tmp_path / "again"
    s = defects.synth(good, again, **KW)
    assert output_files(again) == output_files(reference)  # images, masks and the contact sheets
    assert manifest_keys(again) == manifest_keys(reference)
    q = json.loads(Path(s.report).read_text())
    assert sum(q["all"]["area"]["counts"]) == 6 and q["all"]["change_outside"] == 0.0
    assert q["all"]["change_inside"] > 0 and 0 < q["all"]["structure"] <= 1
    assert set(s.contact_sheets) == {"crack", "stain", "spots"}
    with Image.open(s.contact_sheets["crack"]) as im:
        assert im.size[0] == 4 * 160


def test_resume_after_kill_9(good, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gafu", "defects", "synth", str(good), "-o", str(out), "--category", "inspect",
           "--n", "2", "--defect-types", "crack,stain,spots", "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manifest = out / "manifest.jsonl"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 5:  # the copies and a defect are done
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 5 <= manifest.read_bytes().count(b"\n") < 10
    s = defects.synth(good, out, resume=True, **KW)  # the CLI's --resume is this call
    assert s.kept >= 5 and s.kept + s.done == 10 and s.failed == 0
    assert output_files(out) == output_files(reference)
    assert manifest_keys(out) == manifest_keys(reference)  # one row per output: no duplicates, none lost
    assert not list(out.rglob("*.tmp")) and defects.check(out) == []


def test_resume_redoes_an_item_whose_mask_is_gone(good, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "inspect/ground_truth/stain/001_mask.png").unlink()
    assert any("stain/001" in p for p in defects.check(out))
    s = defects.synth(good, out, resume=True, **KW)
    assert (s.kept, s.done) == (9, 1)
    assert output_files(out) == output_files(reference)
    with pytest.raises(GafuError, match="resume"):
        defects.synth(good, out, **KW)  # a folder holding a run is never overwritten unasked


@pytest.mark.parametrize("kind", ["perlin", "blob", "scratch"])
def test_mask_kinds_are_seeded_and_keep_their_area(kind):
    shape = (80, 120)
    draw = lambda s, **kw: dmasks.generate(kind, np.random.default_rng(s), shape, min_area=0.01, max_area=0.05, **kw)
    a, b, c = draw(1), draw(1), draw(2)
    assert a.dtype == bool and a.shape == shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for m in (a, c):
        assert 0.01 * a.size <= m.sum() <= 0.05 * a.size
    roi = np.zeros(shape, bool)
    roi[10:60, 20:90] = True
    r = draw(4, roi=roi)
    assert r.any() and not (r & ~roi).any()
    with pytest.raises(GafuError, match="min_area"):
        draw(5, roi=np.eye(80, 120, dtype=bool))  # 80 px of object: less than 1 % of the image


def test_perlin_noise_is_smooth_and_blob_area_exact():
    n = dmasks.perlin_noise(np.random.default_rng(0), (64, 64), (4, 4))
    assert np.abs(n).max() <= 1.5 and n.std() > 0.1
    assert np.abs(np.diff(n, axis=1)).max() < 0.2  # gradient noise: no jumps between neighbours
    m = dmasks.blob_mask(np.random.default_rng(0), (50, 50), min_area=0.1, max_area=0.1)
    assert m.sum() == 250


def test_structure_score_uses_gafus_sobel_measure():
    import torch

    from gafu.analysis import gradient_magnitude
    from gafu.defects.synth import gradient_magnitude as numpy_gradient, structure_score

    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    t = torch.from_numpy(a.astype(np.float64) / 255).permute(2, 0, 1)[None]
    assert np.allclose(numpy_gradient(a) / 255, gradient_magnitude(t)[0, 0].numpy(), atol=1e-12)
    band = np.ones((20, 30), bool)
    assert structure_score(a, a, band) == pytest.approx(1.0)
    assert structure_score(a, 255 - a, band) == pytest.approx(1.0)  # an inverted image has the same edges
    assert structure_score(a, a[::-1].copy(), band) < 0.5


def test_foreground_finds_the_object():
    grey = np.full((40, 40), 200, np.uint8)
    grey[10:30, 12:28] = 60
    fg = dmasks.foreground(grey)
    assert fg.sum() == 20 * 16 and fg[20, 20]


def test_mask_folder_and_fill_kinds(good, tmp_path, style_path):
    masks = tmp_path / "masks"
    for rel in ("hazelnut.jpg", "brick.png", "products/coffee.png", "products/chelsea.png"):
        with Image.open(good / rel) as im:
            w, h = im.size
        m = np.zeros((h * 2, w * 2), np.uint8)  # twice the size: resized with nearest neighbour
        m[h // 2:h, w // 2:w + w // 2] = 250
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save((masks / rel).with_suffix(".jpg"), quality=90)  # JPEG masks are thresholded
    textures = tmp_path / "textures"
    textures.mkdir()
    shutil.copy(DATA / "kandinsky_composition_vii.jpg", textures / "k.jpg")
    (textures / "licence.txt").write_text("Public domain (test texture)\n")
    fills = {"style:" + str(style_path): "style", "texture:" + str(textures): "texture", "builtin:5": "builtin"}
    for i, (fill, kind) in enumerate(fills.items()):
        out = tmp_path / f"o{i}"
        kw = dict(KW, n=1, defect_types="stain", holdout=0.0)
        s = defects.synth(good, out, fill=fill, mask=masks if i == 0 else None, blend="mask", **kw)
        assert s.failed == 0 and defects.check(out) == []
        (row,) = [r for r in read_rows(out / "manifest.jsonl") if r["kind"] == "defect"]
        assert row["fill"]["kind"] == kind and row["quality"]["change_inside"] > 0
        if i == 0:
            assert row["mask_info"]["kind"] == "dir" and row["mask_info"]["file"].endswith(".jpg")
            with Image.open(out / row["mask"]) as m:
                got = np.asarray(m) > 0
            h, w = got.shape
            want = np.zeros((h, w), bool)
            want[h // 4:h // 2, w // 4:w // 2 + w // 4] = True
            assert np.array_equal(got, want)
            assert row["fill"]["licence"].startswith("The Starry Night")  # from gafu/data/CREDITS.md
        if kind == "texture":
            assert row["fill"]["licence"] == "Public domain (test texture)"
        if kind == "builtin":
            assert row["fill"]["builtin"] == 5 and "Apache-2.0" in row["fill"]["licence"]


def test_optimize_fill_end_to_end(good, tmp_path, style_path, tiny_vgg, monkeypatch):
    """The optimize engine's plumbing (masked StyleTransfer on the crop, style targets, resize back),
    with the small random VGG19 of conftest in place of the real one (pictures are not the point)."""
    import gafu.optimize.loop as loop
    import gafu.optimize.targets as targets

    def fake_load(*args, **kwargs):
        return tiny_vgg

    monkeypatch.setattr(loop, "load_vgg19", fake_load)
    monkeypatch.setattr(targets, "load_vgg19", fake_load)
    out = tmp_path / "opt"
    kw = dict(KW, n=1, defect_types="stain", holdout=0.0)
    s = defects.synth(good, out, fill="style:" + str(style_path), method="optimize", steps=2, **kw)
    assert s.failed == 0 and defects.check(out) == []
    (row,) = [r for r in read_rows(out / "manifest.jsonl") if r["kind"] == "defect"]
    assert row["method"] == "optimize" and row["quality"]["change_inside"] > 0
    assert row["settings"]["steps"] == 2 and row["settings"]["weights"]
    s2 = defects.synth(good, tmp_path / "opt2", fill="self", method="optimize", steps=2, **kw)
    assert s2.failed == 0 and defects.check(tmp_path / "opt2") == []


@pytest.mark.parametrize("mode", ["alpha", "poisson", "mask"])
def test_blends_change_only_inside_the_mask(mode):
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    fill = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[8:30, 10:35] = True
    out = dblend.apply(orig, fill, mask, blend=mode, feather=3, strength=1.0)
    assert np.array_equal(out[~mask], orig[~mask])
    assert (out != orig)[mask].mean() > 0.5
    if mode == "mask":
        assert np.array_equal(out[mask], fill[mask])
    grey = dblend.apply(orig[..., 0], fill, mask, blend=mode, feather=3, strength=0.5, grey=True)
    assert grey.shape == (40, 50) and np.array_equal(grey[~mask], orig[..., 0][~mask])


def test_inward_alpha_ramps_inside_the_mask():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    a = dblend.inward_alpha(mask, 3)
    assert (a[~mask] == 0).all()
    assert a[5, 10] == pytest.approx(0.25) and a[6, 10] == pytest.approx(0.5) and a[10, 10] == 1.0
    assert np.array_equal(dblend.inward_alpha(mask, 0), mask.astype(float))


def test_poisson_keeps_the_fill_in_place():
    """seamlessClone gets a centre that puts the fill's pixels where they were (no shift)."""
    orig = np.full((48, 60, 3), 100, np.uint8)
    fill = orig.copy()
    fill[20, 25] = 250
    for box in ((10, 31, 15, 40), (10, 30, 15, 41), (0, 30, 0, 41)):
        mask = np.zeros((48, 60), bool)
        mask[box[0]:box[1], box[2]:box[3]] = True
        out = dblend.poisson(fill, orig, mask)
        assert np.unravel_index(out[..., 0].argmax(), out.shape[:2]) == (20, 25)


def test_check_lists_each_problem(reference, tmp_path, capsys):
    out = tmp_path / "bad"
    shutil.copytree(reference, out)
    root = out / "inspect"
    m = root / "ground_truth/crack/000_mask.png"
    arr = np.asarray(Image.open(m)).copy()
    arr[arr == 255] = 128
    Image.fromarray(arr).save(m)  # not binary (and changed since written)
    (root / "ground_truth/stain/001_mask.png").unlink()  # unpaired
    img = root / "test/spots/000.png"
    row = next(r for r in read_rows(out / "manifest.jsonl") if r["output"].endswith("spots/000.png"))
    pix = np.asarray(Image.open(img)).copy()
    ys, xs = np.nonzero(np.asarray(Image.open(out / row["mask"])) == 0)
    pix[ys[0], xs[0]] ^= 1
    Image.fromarray(pix).save(img)  # a pixel outside the mask changed
    shutil.copy(root / "train/good/000.png", root / "stray.png")
    problems = defects.check(out)
    text = "\n".join(problems)
    assert "not binary" in text and "5 defect images but 5 masks" not in text
    assert "6 defect images but 5 masks" in text
    assert "1 pixels outside the mask differ" in text
    assert "stray.png: image outside the layout" in text
    assert "changed since it was written" in text
    assert main(["defects", "check", str(out)]) == 1
    assert "not binary" in capsys.readouterr().out
    assert main(["defects", "check", str(reference), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_folder_layout_pairs_as_anomalib_folder(good, tmp_path):
    out = tmp_path / "folder"
    s = defects.synth(good, out, layout="folder", blend="poisson", fill="builtin:2", **KW)
    assert s.failed == 0 and defects.check(out) == []
    root = out / "inspect"
    assert {p.name for p in root.iterdir()} == {"normal", "normal_test", "abnormal", "mask"}
    # Folder's make_folder_dataset: every file of every folder, sorted together; masks go to the
    # abnormal rows in order and each image stem must occur in its mask's stem.
    every = sorted(str(p) for d in ("normal", "normal_test", "abnormal", "mask")
                   for p in (root / d).glob("**/*") if p.suffix in LOADER_EXT)
    abnormal = [p for p in every if "/abnormal/" in p]
    masks = [p for p in every if "/mask/" in p]
    assert len(abnormal) == len(masks) == 6
    assert all(Path(a).stem in Path(m).stem for a, m in zip(abnormal, masks))


def test_cli_json_and_progress(good, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["defects", "synth", str(good), "-o", str(out), "--category", "inspect", "--n", "1",
                 "--defect-types", "dent", "--mask", "perlin", "--roi", "auto", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["done"] == 5 and d["defects"] == {"dent": 1} and d["root"].endswith("inspect")
    assert d["settings"]["defect_types"] == [{"name": "dent", "mask": "perlin"}]
    seen = []
    s = defects.synth(good, tmp_path / "api", category="preview", n=1, defect_types="crack",
                      progress=lambda done, total: seen.append((done, total)))
    assert s.done == 5 and seen[0] == (0, 5) and seen[-1] == (5, 5)


@pytest.mark.parametrize("argv,message", [
    (["--fill", "paint:x"], "--fill"),
    (["--fill", "builtin:99"], "builtin"),
    (["--fill", "texture:/nonexistent"], "--fill"),
    (["--category", "a/b"], "--category"),
    (["--min-area", "0.2", "--max-area", "0.1"], "--min-area"),
    (["--mask", "zigzag"], "--mask"),
    (["--defect-types", "good"], "--defect-types"),
    (["--defect-types", "crack=wavy"], "wavy"),
    (["--blend", "poisson", "--strength", "2"], "--strength"),
    (["--method", "optimize", "--fill", "builtin:1"], "--method"),
    (["--steps", "3"], "--steps"),
    (["--holdout", "1"], "--holdout"),
])
def test_cli_user_errors_exit_2(good, tmp_path, capsys, argv, message):
    base = ["defects", "synth", str(good), "-o", str(tmp_path / "o"), "--category", "c"]
    if "--category" in argv:
        base = base[:-2]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_api_errors(good, tmp_path):
    with pytest.raises(GafuError, match="inside the good images"):
        defects.synth(good, good / "out", category="c")
    with pytest.raises(GafuError, match="no images"):
        (tmp_path / "empty").mkdir()
        defects.synth(tmp_path / "empty", tmp_path / "o", category="c")
    with pytest.raises(GafuError, match="workers"):
        defects.synth(good, tmp_path / "o", category="c", workers=0)
    assert defects.check(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: not a folder"]


@pytest.mark.slow  # worker processes and a Ray cluster start fresh interpreters (~10 s each on 2 loaded cores)
def test_same_bytes_with_workers_and_ray(good, reference, tmp_path):
    s = defects.synth(good, tmp_path / "w2", workers=2, **KW)
    assert s.done == 10 and output_files(tmp_path / "w2") == output_files(reference)
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="warning")
    try:
        s = defects.synth(good, tmp_path / "ray", workers=2, backend="ray", **KW)
    finally:
        ray.shutdown()
    assert s.done == 10 and output_files(tmp_path / "ray") == output_files(reference)
    assert manifest_keys(tmp_path / "ray") == manifest_keys(reference)


def test_match_color_brings_the_fill_towards_the_image(good, tmp_path):
    kw = dict(KW, n=2, defect_types="stain", holdout=0.0, fill="builtin:0", blend="mask")
    plain = defects.synth(good, tmp_path / "plain", **kw)
    matched = defects.synth(good, tmp_path / "matched", match_color=True, **kw)
    assert defects.check(tmp_path / "matched") == []
    rows = [r for r in read_rows(tmp_path / "matched" / "manifest.jsonl") if r["kind"] == "defect"]
    assert all(r["match_color"] for r in rows)
    # same masks, colours closer to the image's own inside them
    assert matched.quality["all"]["area"] == plain.quality["all"]["area"]
    assert matched.quality["all"]["change_inside"] < plain.quality["all"]["change_inside"]
