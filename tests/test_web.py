"""gafu web: the jobs without a server, then gradio_client against a live app on a free loopback port.

Needs the extra: pip install gafu[web] (skipped without Gradio). Images are tiny, runs a few steps.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gafu.errors import GafuError
from gafu.web import jobs
from conftest import free_port

DATA = Path(__file__).resolve().parents[1] / "gafu" / "data"
PHOTO = DATA / "chelsea.jpg"
STARRY = "Van Gogh, The Starry Night"
WAVE = "Hokusai, The Great Wave"
LIMIT_BYTES = 1024 * 1024  # 1 MB uploads in the test app
LIMIT_PIXELS = 2_000_000
# Gradio's queue calls pandas in a way pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


# ---------------------------------------------------------------------------------------------
# Plain helpers (no Gradio)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [("20mb", 20 * 1024**2), ("500KB", 500 * 1024), ("1gb", 1024**3),
                                           ("123", 123), ("1.5mb", int(1.5 * 1024**2))])
def test_parse_file_size(text, expected):
    assert jobs.parse_file_size(text) == expected


@pytest.mark.parametrize("text", ["", "mb", "20 parsecs", "-1mb", "0"])
def test_parse_file_size_rejects(text):
    with pytest.raises(GafuError, match="max file size"):
        jobs.parse_file_size(text)


def test_check_upload_limits(tmp_path):
    limits = jobs.Limits(max_file_bytes=50_000, max_pixels=10_000)
    small = tmp_path / "small.png"
    Image.new("RGB", (50, 40), "red").save(small)
    assert jobs.check_upload(small, limits, "the photo") == small
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), "red").save(wide)  # 20000 px > 10000, tiny file
    with pytest.raises(GafuError, match="200x100 .* megapixels"):
        jobs.check_upload(wide, limits, "the photo")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (99, 99, 3), dtype=np.uint8)).save(noise)
    with pytest.raises(GafuError, match="over this server's upload limit"):
        jobs.check_upload(noise, jobs.Limits(max_file_bytes=1000), "the photo")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(GafuError, match="not an image"):
        jobs.check_upload(text, limits, "the photo")


def test_parse_weights():
    assert jobs.parse_weights("", 2) is None
    assert jobs.parse_weights("0.7, 0.3", 2) == [0.7, 0.3]
    with pytest.raises(GafuError, match="2 style weights for 3"):
        jobs.parse_weights("1,2", 3)
    with pytest.raises(GafuError, match="numbers"):
        jobs.parse_weights("a,b", 2)


def test_errors_name_the_page_field():
    fields = {"strength": "Strength", "style_weights": "Style weights"}
    err = GafuError("strength must be a number from 0 to 1, got 2.0", argument="strength")
    assert jobs.field_message(err, fields) == ("Strength: must be a number from 0 to 1, got 2.0", "Strength")
    with pytest.raises(GafuError) as caught:
        jobs.parse_weights("a,b", 2)
    message, label = jobs.field_message(caught.value, fields)
    assert label == "Style weights" and message.startswith("Style weights: ")
    plain = GafuError("the photo is not an image")  # no field concerned: the error's own words
    assert jobs.field_message(plain, fields) == ("the photo is not an image", None)


def test_workspace_sessions_are_separate(tmp_path):
    ws = jobs.Workspace(tmp_path)
    a, b = ws.job_dir("abc", "fast"), ws.job_dir("../../etc", "fast")
    assert a.parent != b.parent
    assert tmp_path in b.parents  # a hostile session id cannot leave the app's folder
    ws.forget("abc")
    assert not a.exists() and b.exists()


def test_cancel_registry():
    reg = jobs.CancelRegistry()
    assert not reg.cancel("s1")  # nothing running
    flag = reg.start("s1")
    assert not reg.cancel("s2") and not flag.is_set()
    assert reg.cancel("s1") and flag.is_set()
    reg.finish("s1", flag)
    assert not reg.cancel("s1")


def test_stylize_job_previews_and_cancel(tmp_path):
    """The generator yields previews every N steps; cancel keeps the image so far as the result."""
    flag = threading.Event()
    updates = []
    for up in jobs.stylize_job(PHOTO, [DATA / "vangogh_starry_night.jpg"], tmp_path, preset="seed", size=64,
                               steps=50, preview_every=2, cancel=flag):
        updates.append(up)
        if sum(u.image is not None for u in updates) == 2:
            flag.set()
    previews = [u for u in updates if u.image is not None and not u.done]
    assert len(previews) == 2 and [u.step for u in previews] == [2, 4]
    last = updates[-1]
    assert last.done and last.cancelled and last.step == 4
    assert Image.open(last.result_path).size == last.image.size == (64, 42)
    with zipfile.ZipFile(last.report_path) as zf:
        report = json.loads(zf.read("gafu-run-report/report.json"))
    assert report["summary"]["cancelled"] is True and report["summary"]["steps_done"] == 4
    assert report["history"]["step"] == [1, 2, 3, 4]


def test_editor_mask_from_painted_layer():
    from gafu.web.app import _editor_mask

    assert _editor_mask(None) is None
    layer = np.zeros((30, 40, 4), np.uint8)
    assert _editor_mask({"background": None, "layers": [layer], "composite": None}) is None  # nothing painted
    layer[5:10, 0:20] = (255, 0, 0, 255)
    m = _editor_mask({"background": None, "layers": [layer], "composite": None})
    a = np.asarray(m)
    assert m.mode == "L" and m.size == (40, 30)
    assert a[5:10, 0:20].min() == 255 and a.sum() == 255 * 5 * 20


# ---------------------------------------------------------------------------------------------
# A live app driven by gradio_client
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    root = tmp_path_factory.mktemp("gafu-web")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        from gafu.web.app import build_app, launch

        limits = jobs.Limits(max_file_bytes=LIMIT_BYTES, max_pixels=LIMIT_PIXELS, max_size=256, max_steps=50)
        demo = build_app(limits=limits, workdir=root / "work", concurrency=1, queue_size=4)
        _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
        try:
            yield demo, url
        finally:
            demo.close()


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def local(path_or_data) -> str:
    """An output file path as gradio_client returns it with download_files=False."""
    if isinstance(path_or_data, dict):
        return path_or_data["path"]
    return str(path_or_data)


def upload(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def fast_args(photo=PHOTO, example=STARRY, builtin="none", max_size=96):
    return (upload(photo), None, example, builtin, 1.0, False, False, max_size)


def test_endpoints_have_stable_names(server):
    _, url = server
    names = client(url).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("stylize", "fast", "compare", "classify", "analyze"):
        assert f"/{name}" in names


def test_fast(server):
    _, url = server
    image, png, info = client(url).predict(*fast_args(), api_name="/fast")
    with Image.open(local(png)) as im:
        assert im.format == "PNG" and max(im.size) == 96
    assert Path(local(image)).suffix == ".png"
    assert "96x" in info


def test_fast_builtin(server):
    _, url = server
    image, png, info = client(url).predict(*fast_args(example="(none)", builtin="7", max_size=64), api_name="/fast")
    with Image.open(local(png)) as im:
        assert max(im.size) == 64


def test_stylize_streams_previews_and_writes_report(server):
    _, url = server
    job = client(url).submit(upload(PHOTO), [], [STARRY], "seed", 64, 6, 0.5, "", "none", 1.0, None, None, 2,
                             api_name="/stylize")
    outputs = job.result(timeout=240) and job.outputs()
    # "preparing", previews at steps 2, 4, 6 (the last is the result too) and the final update
    assert len(outputs) == 5 and outputs[0][2].startswith("preparing 64 px")
    assert [o[2].split(" ·")[0] for o in outputs[1:4]] == ["step 2/6", "step 4/6", "step 6/6"]
    preview, plot, status, result, png, report = outputs[-1]
    assert "done: 6 steps" in status
    with Image.open(local(png)) as im:
        assert im.format == "PNG" and im.size == (64, 42)
    with zipfile.ZipFile(local(report)) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("gafu-run-report/report.json"))
    assert {"gafu-run-report/report.json", "gafu-run-report/losses.png", "gafu-run-report/index.html"} <= names
    assert data["history"]["step"] == list(range(1, 7))
    assert data["settings"]["optimizer"] == "adam" and data["settings"]["size"] == 64


def test_stylize_cancel_keeps_current_image(server):
    import time

    _, url = server
    c = client(url)
    job = c.submit(upload(PHOTO), [], [STARRY], "seed", 64, 50, 0.5, "", "none", 1.0, None, None, 1,
                   api_name="/stylize")
    deadline = time.time() + 120
    while len(job.outputs()) < 3 and time.time() < deadline and not job.done():
        time.sleep(0.05)
    c.predict(api_name="/cancel")
    outputs = job.result(timeout=120) and job.outputs()
    status, png = outputs[-1][2], outputs[-1][4]
    assert status.startswith("**cancelled") and Path(local(png)).is_file()
    steps = int(status.split(":")[1].split()[0])
    assert 2 <= steps < 50


def test_stylize_with_uploaded_style_and_mask(server, tmp_path):
    _, url = server
    mask = tmp_path / "mask.png"
    m = Image.new("L", (451, 300), 0)
    m.paste(255, (0, 0, 225, 300))  # left half of chelsea (451x300)
    m.save(mask)
    out = client(url).predict(upload(PHOTO), [upload(DATA / "hokusai_great_wave.jpg")], [STARRY], "seed", 64, 3, 0.5,
                              "0.7, 0.3", "luminance", 1.0, None, upload(mask), 3, api_name="/stylize")
    assert "done: 3 steps" in out[2]
    res = np.asarray(Image.open(local(out[4])), dtype=np.float64)
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((64, 42), Image.BILINEAR), dtype=np.float64)
    right = np.abs(res[:, 40:] - photo[:, 40:]).mean()
    left = np.abs(res[:, :24] - photo[:, :24]).mean()
    assert left > right  # stylized where the mask is white; the rest stays (close to) the photo


def test_compare(server):
    _, url = server
    sheet, png, info = client(url).predict(upload(PHOTO), [], [STARRY, WAVE], "fast", 64, 1, api_name="/compare")
    with Image.open(local(png)) as im:
        assert im.format == "PNG" and im.width > 3 * 192  # photo + two styles + two results per row
    assert info.startswith("2 styles")


def test_classify(server):
    _, url = server
    out = client(url).predict(upload(PHOTO), api_name="/classify")
    assert len(out["confidences"]) == 5
    assert "cat" in out["label"]  # chelsea is a tabby / tiger cat
    probs = [c["confidence"] for c in out["confidences"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_analyze(server):
    _, url = server
    c = client(url)
    _, fast_png, _ = c.predict(*fast_args(max_size=128), api_name="/fast")
    figure, numbers = c.predict(upload(PHOTO), upload(local(fast_png)), api_name="/analyze")
    assert numbers["size"] == [85, 128]
    tv = numbers["total_variation"]
    assert tv["content"] > 0 and tv["result"] > 0 and tv["ratio"] == pytest.approx(tv["result"] / tv["content"])
    with Image.open(local(figure)) as im:
        assert im.format == "PNG" and im.width > 500


def test_layers(server):
    _, url = server
    table = client(url).predict(upload(PHOTO), api_name="/layers")
    rows = table["data"] if isinstance(table, dict) else table
    by_name = {r[0]: r for r in rows}
    assert by_name["block5_conv2"][3] == "1x512x18x28"  # 300x451 input, four 2x2 poolings


def test_oversized_upload_refused(server, tmp_path):
    _, url = server
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > LIMIT_BYTES
    # gradio_client reads the limit from the app and refuses before sending...
    with pytest.raises(Exception, match="exceeds the maximum file size of 1048576 bytes"):
        client(url).predict(*fast_args(photo=big), api_name="/fast")
    # ...and the server refuses the upload itself (a client that does not check).
    import httpx

    with open(big, "rb") as fh:
        r = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", fh, "image/png")})
    assert r.status_code == 413 and "maximum allowed size" in r.text
    with open(PHOTO, "rb") as fh:
        assert httpx.post(url + "gradio_api/upload", files={"files": ("c.jpg", fh, "image/jpeg")}).status_code == 200


def test_too_many_pixels_refused(server, tmp_path):
    _, url = server
    huge = tmp_path / "huge.png"
    Image.new("RGB", (2000, 1500), "white").save(huge)  # 3 MP, a few KB
    assert huge.stat().st_size < LIMIT_BYTES
    with pytest.raises(Exception, match="megapixels"):
        client(url).predict(*fast_args(photo=huge), api_name="/fast")


def test_user_error_message(server):
    _, url = server
    with pytest.raises(Exception, match="choose a painting"):
        client(url).predict(*fast_args(example="(none)"), api_name="/fast")


def test_a_bad_value_names_its_field(server):
    _, url = server
    with pytest.raises(Exception, match="Style weights: must be numbers separated by commas"):
        client(url).predict(upload(PHOTO), [], [STARRY], "seed", 64, 3, 0.5, "a, b", "none", 1.0, None, None, 1,
                            api_name="/stylize")


def test_two_concurrent_clients_both_served(server):
    demo, url = server
    a, b = client(url), client(url)
    ja = a.submit(*fast_args(max_size=80), api_name="/fast")
    jb = b.submit(*fast_args(photo=DATA / "rocket.jpg", example=WAVE, max_size=80), api_name="/fast")
    ra, rb = ja.result(timeout=120), jb.result(timeout=120)
    for info in (ra[2], rb[2]):
        w, h = map(int, info.split(" px")[0].split("x"))
        assert max(w, h) == 80
    assert local(ra[1]) != local(rb[1])
    sessions = demo.gafu_workspace.root / "sessions"
    assert {a.session_hash, b.session_hash} <= {p.name for p in sessions.iterdir()}  # one folder per visitor


def test_concurrency_limit_is_shared_and_queue_position_reported(server):
    """concurrency=1 across all job endpoints: a fast job waits in the queue while a stylize runs."""
    import time

    from gradio_client.utils import Status

    _, url = server
    a, b = client(url), client(url)
    long = a.submit(upload(PHOTO), [], [STARRY], "seed", 64, 50, 0.5, "", "none", 1.0, None, None, 1,
                    api_name="/stylize")
    deadline = time.time() + 120
    while len(long.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert long.outputs(), "the stylize job did not start"
    waiting = b.submit(*fast_args(max_size=64), api_name="/fast")
    seen = set()
    for _ in range(100):
        st = waiting.status()
        seen.add(st.code)
        if st.code == Status.IN_QUEUE:
            assert st.rank is not None  # the queue position the page shows
            break
        time.sleep(0.05)
    assert Status.IN_QUEUE in seen
    time.sleep(1.0)  # a 64 px fast job takes well under a second once it runs
    assert not waiting.done() and not long.done()
    a.predict(api_name="/cancel")
    assert waiting.result(timeout=120)[2].startswith("64x")
    assert long.result(timeout=120) and long.outputs()[-1][2].startswith("**cancelled")


def test_full_queue_refuses_more(server):
    """queue_size=4: with one job running and four waiting, the next request is turned away."""
    import time

    _, url = server
    a = client(url)
    long = a.submit(upload(PHOTO), [], [STARRY], "seed", 64, 50, 0.5, "", "none", 1.0, None, None, 1,
                    api_name="/stylize")
    deadline = time.time() + 120
    while len(long.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    waiting = [client(url).submit(*fast_args(max_size=64), api_name="/fast") for _ in range(4)]
    time.sleep(1.0)
    with pytest.raises(Exception, match="(?i)queue is full"):
        client(url).predict(*fast_args(max_size=64), api_name="/fast")
    # Cancel is not queued (the page posts it directly), so it still works with the queue full.
    import httpx

    r = httpx.post(url + "gradio_api/run/cancel", json={"data": [], "session_hash": a.session_hash}, timeout=30)
    assert r.status_code == 200 and "cancelling" in r.text
    assert all(w.result(timeout=120)[2].startswith("64x") for w in waiting)
    assert long.result(timeout=120) and long.outputs()[-1][2].startswith("**cancelled")


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def test_cli_without_gradio_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    from gafu.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["web"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install gafu[web]" in err


def test_cli_bad_file_size(capsys):
    from gafu.cli import main

    assert main(["web", "--max-file-size", "lots"]) == 2
    assert "max file size" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--port", "99999"], "a port is 1-65535"),
    (["--port", "0"], ">= 1"),
    (["--host", "no-such-host.invalid"], "does not resolve"),
])
def test_cli_bad_address_one_line(argv, words, capsys):
    from gafu.cli import main

    assert main(["web", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_cli_port_in_use_one_line_before_anything_loads(capsys, tmp_path, monkeypatch):
    import socket

    from gafu.cli import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["web", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err and "in use" in err
    assert list(tmp_path.iterdir()) == []  # refused before the app's folder was made


@pytest.mark.slow  # a fresh process importing Gradio: ~10 s quiet, ~30 s on a loaded 2-core machine
def test_cli_serves_on_loopback_and_cleans_up_on_sigterm():
    """`gafu web` end to end: serves the page on 127.0.0.1, SIGTERM stops it with exit 0 and its folder removed."""
    import re
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("gradio")
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "gafu", "web", "--port", str(port), "--max-file-size", "5mb"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        m = re.search(r"serving on http://127\.0\.0\.1:(\d+) .*files in (\S+)\)", line)
        assert m and int(m.group(1)) == port, line
        folder = Path(m.group(2))
        deadline, page = time.time() + 60, None
        while time.time() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert page is not None and page.status_code == 200 and "gafu" in page.text
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).json()
        assert config["max_file_size"] == 5 * 1024**2
        assert folder.is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not folder.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
