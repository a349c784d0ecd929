"""gafu web's "Dataset / defects" tab: the preview jobs without a server, then the ``dataset_preview``
and ``defects_preview`` endpoints through gradio_client against a live app on a free loopback port.

The app runs with its process's current folder and temporary folder pointed at empty sentinel
folders, so a write anywhere but the app's own folder shows. Its commands are run through the real
CLI on the same images: they must give the same bytes as the preview.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import free_port
from gafu.errors import GafuError
from gafu.web import jobs, preview
from test_web import LIMIT_BYTES, LIMIT_PIXELS, STARRY, client, local, upload

DATA = Path(__file__).resolve().parents[1] / "gafu" / "data"
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # Gradio's pandas 3 deprecations


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two small photos (under the test app's 256 px cap, so the previews work at their own size)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, size in (("chelsea.jpg", (120, 80)), ("rocket.jpg", (72, 108))):
        with Image.open(DATA / name) as im:
            im.convert("RGB").resize(size, Image.LANCZOS).save(folder / Path(name).with_suffix(".png").name)
    return folder


def photo_list(photos: Path):
    return sorted(photos.glob("*.png"))


def files_under(folder: Path) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def written_outside(sentinels) -> list:
    """What the app left in its process's current and temporary folders. Torch makes an empty
    ``torchinductor_<user>`` folder in the temporary one during an optimization (the Stylize tab's
    too); `gafu web` points TMPDIR into its own folder for such things (the slow test below)."""
    cwd, tmp = sentinels
    return files_under(cwd) + [f for f in files_under(tmp) if not (f.startswith("torchinductor_") and "/" not in f
                                                                  and not any((tmp / f).iterdir()))]


def run_cli(command: str, photos: Path, out: Path, paintings: Path = None) -> int:
    """Run the page's command with the real CLI, its placeholder folders replaced by real ones."""
    from gafu.cli import main

    words = shlex.split(command)
    assert words[0] == "gafu"
    real = {preview.PHOTOS: str(photos), preview.STYLIZED: str(out), preview.DEFECTS_OUT: str(out)}
    if paintings is not None:
        real[preview.PAINTINGS] = str(paintings)
    args = [real.get(w, w) for w in words[1:]]
    if paintings is not None:
        args = [a.replace("style:" + preview.PAINTINGS, "style:" + str(paintings)) for a in args]
    return main(args)


# ---------------------------------------------------------------------------------------------
# The commands and the checks, without a server
# ---------------------------------------------------------------------------------------------
def test_commands_parse_with_the_real_cli_parser():
    """Every flag the page writes is one the CLI accepts, with the value the page meant."""
    from gafu.cli import build_parser

    parser = build_parser()
    words = shlex.split(shlex.join(preview.dataset_args(
        source="random", examples=[STARRY], uploaded=True, builtin="", method="fast", steps=10, variants=3,
        strength=0.5, preserve_color=True, max_size=192, seed=7)))
    a = parser.parse_args(words)
    assert (a.command, a.dataset_command, a.in_dir, a.output) == ("dataset", "stylize", "photos/", "stylized/")
    assert a.styles == [str(DATA / "vangogh_starry_night.jpg"), "paintings/"] and a.random_style
    assert (a.method, a.variants, a.strength, a.preserve_color, a.max_size, a.seed) == ("fast", 3, 0.5, True, 192, 7)
    assert a.steps is None and a.builtin is None
    a = parser.parse_args(preview.dataset_args(
        source="built-in", examples=[], uploaded=False, builtin="3,7", method="optimize", steps=12, variants=1,
        strength=1.0, preserve_color=False, max_size=64, seed=0))
    assert (a.builtin, a.method, a.steps, a.styles, a.random_style) == ("3,7", "optimize", 12, None, False)
    a = parser.parse_args(preview.defects_args(category="hazelnut", n=3, defect_types="crack,dent=perlin",
                                               mask="blob", fill="builtin:4", blend="poisson", seed=5))
    assert (a.command, a.defects_command, a.good_dir, a.output, a.category) == (
        "defects", "synth", "photos/", "defects/", "hazelnut")
    assert (a.n, a.defect_types, a.mask, a.fill, a.blend, a.seed) == (3, "crack,dent=perlin", "blob", "builtin:4",
                                                                       "poisson", 5)


def test_fill_choices():
    assert preview.parse_fill_choice("self", False) == ("self", None)
    assert preview.parse_fill_choice("builtin:3,7", False) == ("builtin:3,7", None)
    fill, path = preview.parse_fill_choice(STARRY, False)
    assert fill == f"style:{DATA / 'vangogh_starry_night.jpg'}" and path.is_file()
    assert preview.parse_fill_choice(STARRY, True) == ("style:paintings/", None)  # an upload wins
    with pytest.raises(GafuError, match="fill must be self"):
        preview.parse_fill_choice("paint it red", False)


def test_stage_uploads_caps_count_and_pixels(tmp_path, photos):
    limits = jobs.Limits(max_size=64)
    many = [photo_list(photos)[0]] * (preview.MAX_IMAGES + 1)
    with pytest.raises(GafuError, match=f"at most {preview.MAX_IMAGES} photos"):
        preview.stage_uploads(many, limits, tmp_path / "a", "photo")
    with pytest.raises(GafuError, match="upload at least one photo"):
        preview.stage_uploads([], limits, tmp_path / "b", "photo")
    weird = tmp_path / "my photo (1).png"
    Image.new("RGB", (200, 50), "red").save(weird)
    staged, shrunk = preview.stage_uploads([weird, weird], limits, tmp_path / "c", "photo", max_side=64)
    assert [p.name for p in staged] == ["my_photo__1_.png", "my_photo__1_-2.png"] and len(shrunk) == 2
    assert all(Image.open(p).size == (64, 16) for p in staged)
    over = jobs.Limits(max_pixels=5000)
    with pytest.raises(GafuError, match="megapixels"):
        preview.stage_uploads([weird], over, tmp_path / "d", "photo")


def test_field_message_strips_a_colon_prefix():
    err = GafuError("defect_types: names are lower-case letters", argument="defect_types")
    assert jobs.field_message(err, {"defect_types": "Defect types"}) == (
        "Defect types: names are lower-case letters", "Defect types")


# ---------------------------------------------------------------------------------------------
# A live app: dataset_preview and defects_preview through gradio_client
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(demo, url, sentinels): the app with its process's current and temporary folders pointed at
    empty sentinel folders for the module's duration."""
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    root = tmp_path_factory.mktemp("gafu-web-preview")
    sentinels = [root / "cwd", root / "tmp"]
    for s in sentinels:
        s.mkdir()
    # onnxruntime writes $TMPDIR/.ses when it is imported, whoever imports it: `gafu web` points
    # TMPDIR into its own folder for that (test_gafu_web_writes_only_into_its_folder); here it is
    # imported before the sentinel is set.
    pytest.importorskip("onnxruntime")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        mp.chdir(sentinels[0])
        mp.setenv("TMPDIR", str(sentinels[1]))
        mp.setattr(tempfile, "tempdir", str(sentinels[1]))
        from gafu.web.app import build_app, launch

        limits = jobs.Limits(max_file_bytes=LIMIT_BYTES, max_pixels=LIMIT_PIXELS, max_size=256, max_steps=50)
        demo = build_app(limits=limits, workdir=root / "work", concurrency=1, queue_size=4)
        _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
        try:
            yield demo, url, sentinels
        finally:
            demo.close()


def gallery_paths(value) -> list:
    """(path, caption) of a Gallery output as gradio_client returns it."""
    out = []
    for item in value:
        image = item["image"] if isinstance(item, dict) else item[0]
        caption = item.get("caption") if isinstance(item, dict) else item[1]
        out.append((local(image), caption))
    return out


def dataset_args(photos, *, source="paintings", examples=(STARRY,), builtin="all", method="fast", steps=10,
                 variants=1, strength=1.0, color=False, max_size=96, seed=3, styles=()):
    return ([upload(p) for p in photo_list(photos)], source, list(examples), [upload(s) for s in styles], builtin,
            method, steps, variants, strength, color, max_size, seed)


def defects_args(photos, *, category="pill", types="crack,stain", mask="by defect type", fill="self", fill_file=None,
                 blend="alpha", n=2, seed=4):
    return ([upload(p) for p in photo_list(photos)], category, types, mask, fill,
            upload(fill_file) if fill_file else None, blend, n, seed)


def test_endpoints_have_stable_names_and_share_the_job_queue(app):
    demo, url, _ = app
    names = client(url).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/dataset_preview", "/defects_preview"} <= set(names)
    fns = {f.api_name: f for f in demo.fns.values()}
    ids = {fns[n].concurrency_id for n in ("stylize", "fast", "dataset_preview", "defects_preview")}
    assert len(ids) == 1 and fns["defects_preview"].concurrency_limit == 1  # --concurrency, across all tabs


def test_dataset_preview_matches_the_cli(app, photos, tmp_path):
    demo, url, sentinels = app
    c = client(url)
    gallery, command, summary = c.predict(*dataset_args(photos, variants=2), api_name="/dataset_preview")
    items = gallery_paths(gallery)
    assert len(items) == 4 and "**4 images" in summary
    for path, caption in items:
        with Image.open(path) as im:
            im.load()
            assert im.format == "PNG" and max(im.size) == 96  # --max-size 96
        assert "vangogh_starry_night.jpg" in caption
    assert "--max-size 96 --seed 3" in command and "--variants 2" in command
    # The command, run by the real CLI on a folder of the same images, writes the same bytes.
    out = tmp_path / "cli"
    assert run_cli(command, photos, out) == 0
    cli = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert sorted(cli) == ["chelsea__v0.png", "chelsea__v1.png", "rocket__v0.png", "rocket__v1.png"]
    assert sorted(Path(p).read_bytes() for p, _ in items) == sorted(cli.values())
    # Written only into this visitor's folder of the app's workspace; nothing in cwd or the temp folder.
    written = list((demo.gafu_workspace.root / "sessions" / c.session_hash).glob("dataset-*/stylized/*.png"))
    assert len(written) == 4
    assert written_outside(sentinels) == []


def test_dataset_preview_built_in_and_optimize(app, photos):
    _, url, sentinels = app
    c = client(url)
    gallery, command, _ = c.predict(*dataset_args(photos, source="built-in", builtin="3", max_size=64),
                                    api_name="/dataset_preview")
    assert len(gallery) == 2 and "--builtin 3" in command and "--styles" not in command
    assert all("built-in style 3" in cap for _, cap in gallery_paths(gallery))
    gallery, command, summary = c.predict(*dataset_args(photos, method="optimize", steps=2, max_size=64,
                                                        strength=0.5, color=True),
                                          api_name="/dataset_preview")
    assert len(gallery) == 2 and "optimize" in summary
    args = shlex.split(command)
    assert args[args.index("--method") + 1] == "optimize" and args[args.index("--steps") + 1] == "2"
    assert "--strength" not in args and "--preserve-color" not in args  # fast-only options are left out
    assert written_outside(sentinels) == []


def test_defects_preview_masks_and_cli(app, photos, tmp_path):
    demo, url, sentinels = app
    c = client(url)
    gallery, sheets, command, summary, quality = c.predict(*defects_args(photos), api_name="/defects_preview")
    items = gallery_paths(gallery)
    assert len(items) == 8  # 2 types x 2, each image with its mask
    pairs = list(zip(items[0::2], items[1::2]))
    for (img_path, caption), (mask_path, mask_caption) in pairs:
        with Image.open(img_path) as im, Image.open(mask_path) as m:
            im.load()
            mask = np.asarray(m)
            assert m.mode == "L" and m.size == im.size
        assert set(np.unique(mask).tolist()) == {0, 255}  # binary and not empty
        assert mask_caption.endswith("its mask") and caption.split(" ·")[0] in mask_caption
    assert [cap.split("/")[0] for _, cap in items[0::2]] == ["crack", "crack", "stain", "stain"]
    with Image.open(local(sheets)) as im:  # the contact sheets of both types, one under the other
        assert im.format == "PNG" and im.width == 4 * 160 and im.height == 2 * (160 + 14)
    assert quality["all"]["images"] == 4 and quality["all"]["change_outside"] == 0
    assert "keeps every rule" in summary
    # The command, run by the real CLI, gives the same defect images and masks, and passes the check.
    out = tmp_path / "cli"
    assert run_cli(command, photos, out) == 0
    from gafu import defects

    assert defects.check(out) == []
    cli = sorted(p.read_bytes() for p in (out / "pill").rglob("*.png") if "/good/" not in p.as_posix())
    assert sorted(Path(p).read_bytes() for p, _ in items) == cli
    assert len(list((demo.gafu_workspace.root / "sessions" / c.session_hash).glob("defects-*/defects/manifest.jsonl"))) == 1
    assert written_outside(sentinels) == []


def test_defects_preview_with_an_uploaded_fill_and_a_mask_kind(app, photos, tmp_path):
    _, url, _ = app
    painting = tmp_path / "wave.png"
    with Image.open(DATA / "hokusai_great_wave.jpg") as im:
        im.convert("RGB").resize((96, 64)).save(painting)
    gallery, _, command, _, quality = client(url).predict(
        *defects_args(photos, types="dent", mask="perlin", fill=STARRY, fill_file=painting, blend="mask", n=1),
        api_name="/defects_preview")
    args = shlex.split(command)
    assert args[args.index("--fill") + 1] == "style:paintings/"  # the upload wins over the example
    assert args[args.index("--mask") + 1] == "perlin" and args[args.index("--blend") + 1] == "mask"
    assert "perlin mask" in gallery_paths(gallery)[0][1]
    assert quality["all"]["images"] == 1
    paintings = tmp_path / "paintings"
    paintings.mkdir()
    (paintings / "wave.png").write_bytes(painting.read_bytes())
    assert run_cli(command, photos, tmp_path / "cli", paintings) == 0
    rows = [json.loads(line) for line in (tmp_path / "cli" / "manifest.jsonl").read_text().splitlines()]
    [row] = [r for r in rows if r.get("kind") == "defect"]
    assert row["fill"]["file"] == "wave.png"


@pytest.mark.parametrize("endpoint,change,message", [
    ("defects", {"types": "Crack!"}, "Defect types: names are lower-case"),
    ("defects", {"category": "report"}, "Category: must be a folder name"),
    ("defects", {"fill": "paint it red"}, "Fill: must be self"),
    ("dataset", {"source": "built-in", "builtin": "99"}, "builtin styles are numbers 0-25"),
    ("dataset", {"examples": ()}, "tick an example painting or upload one"),
    ("dataset", {"source": "built-in", "builtin": " "}, "Built-in styles \\(numbers 0-25 or all\\): give built-in"),
    ("dataset", {"method": "optimize", "steps": 500}, "Value 500 is greater than maximum value 50"),  # Gradio's check
])
def test_bad_settings_give_one_clear_message(app, photos, endpoint, change, message):
    _, url, _ = app
    args = (defects_args if endpoint == "defects" else dataset_args)(photos, **change)
    with pytest.raises(Exception, match=message) as caught:
        client(url).predict(*args, api_name=f"/{endpoint}_preview")
    assert "Traceback" not in str(caught.value)


def test_too_many_or_unreadable_images_refused(app, photos, tmp_path):
    _, url, _ = app
    c = client(url)
    many = [upload(p) for p in photo_list(photos)] * 5  # 10 > 8
    with pytest.raises(Exception, match="at most 8 photos in a preview"):
        c.predict(many, "pill", "crack", "by defect type", "self", None, "alpha", 1, 0, api_name="/defects_preview")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(Exception, match="photo 1 is not an image file"):
        c.predict([upload(text)], "pill", "crack", "by defect type", "self", None, "alpha", 1, 0,
                  api_name="/defects_preview")


@pytest.mark.slow  # a fresh `gafu web` process: ~10 s quiet, ~30 s on a loaded 2-core machine
def test_gafu_web_writes_only_into_its_folder(photos, tmp_path):
    """`gafu web` itself, run from an empty folder with an empty TMPDIR: a defects preview (which
    imports onnxruntime) leaves both empty, and SIGTERM removes the app's folder."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("gradio")
    import httpx

    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "gafu", "web", "--port", str(port)], cwd=cwd,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        m = re.search(r"files in (\S+)\)", line)
        assert m, line
        folder = Path(m.group(1))
        assert tmp in folder.parents  # the app's folder is made in the given TMPDIR...
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        out = client(f"http://127.0.0.1:{port}/").predict(*defects_args(photos, n=1), api_name="/defects_preview")
        assert len(out[0]) == 4
        assert [p.name for p in tmp.iterdir()] == [folder.name]  # ...and nothing else is
        assert files_under(cwd) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert files_under(tmp) == [] and files_under(cwd) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
