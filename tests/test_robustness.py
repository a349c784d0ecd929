"""Bad input, faults and limits: every command gives a result or one clear line (exit 2), never a
traceback, a hang, a library warning as the message, or a file left behind."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corpus import commands, make_corpus, run_case
from gafu.errors import GafuError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "gafu" / "data"


def _run_corpus(tmp_path: Path, full: bool) -> list:
    cases = make_corpus(tmp_path / "corpus", full=full)
    content = tmp_path / "content.png"
    Image.open(DATA / "chelsea.jpg").convert("RGB").resize((64, 42)).save(content)
    style = DATA / "vangogh_starry_night.jpg"
    outcomes = []
    for name, (command, argv, writes) in commands(content, style).items():
        for case in cases:
            out = tmp_path / "out" / name / case.name
            out.mkdir(parents=True)
            o = run_case(command, argv(case.path, out), f"{name}:{case.name}", out, writes=writes)
            outcomes.append(o)
    return outcomes


def _summary(outcomes) -> dict:
    return dict(collections.Counter(o.verdict for o in outcomes))


def test_corpus_subset_every_command(tmp_path):
    outcomes = _run_corpus(tmp_path, full=False)
    bad = [o for o in outcomes if not o.good]
    assert len(outcomes) >= 150
    assert not bad, "\n".join(f"{o.case}: {o.verdict}: {o.stderr}" for o in bad[:20])
    summary = _summary(outcomes)
    assert summary.get("result", 0) > 20 and summary.get("clean_error", 0) > 50


@pytest.mark.corpus
def test_corpus_full_every_command(tmp_path):
    outcomes = _run_corpus(tmp_path, full=True)
    cases = {o.case.split(":", 1)[1] for o in outcomes}
    summary = _summary(outcomes)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    print(json.dumps({"cases": len(cases), "runs": len(outcomes), **summary}))
    bad = [o for o in outcomes if not o.good]
    assert len(cases) >= 200
    assert not bad, "\n".join(f"{o.case}: {o.verdict}: {o.stderr}" for o in bad[:30])


def test_bomb_refused_before_decoding_with_the_numbers(tmp_path):
    from corpus import _bomb_png

    from gafu.image import open_image

    p = tmp_path / "b.png"
    p.write_bytes(_bomb_png(50000, 40000))
    with pytest.raises(GafuError, match=r"50000x40000 = 2,000,000,000 pixels, over the limit of 89,478,485"):
        open_image(p)
    with pytest.raises(GafuError, match="over the limit of 100"):
        open_image(tmp_path / "b.png", max_pixels=100)


def test_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    from gafu.image import open_image, pixel_limit

    p = tmp_path / "ok.png"
    Image.new("RGB", (30, 20)).save(p)
    with pytest.raises(GafuError, match="600 pixels, over the limit of 599"):
        open_image(p, max_pixels=599)
    monkeypatch.setenv("GAFU_MAX_PIXELS", "599")
    assert pixel_limit() == 599
    with pytest.raises(GafuError):
        open_image(p)
    monkeypatch.setenv("GAFU_MAX_PIXELS", "600")
    assert open_image(p).size == (30, 20)


def test_fifo_is_refused_without_opening(tmp_path):
    from gafu.image import open_image

    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(GafuError, match="named pipe"):
        open_image(fifo)  # opening a FIFO for reading would block forever
    assert time.perf_counter() - t0 < 5


def test_output_symlink_loop_is_a_clear_error(tmp_path):
    from gafu.image import check_output_path

    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(GafuError, match="symbolic link|cannot use output path"):
        check_output_path(tmp_path / "a.png", inputs=[tmp_path / "c.png"], overwrite=True)


def test_pickle_that_runs_code_is_never_executed(tmp_path):
    from gafu.vgg import VGG19Features

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"block1_conv1.weight": Evil()}, path)
    with pytest.raises(GafuError, match="cannot read VGG19 weights"):
        VGG19Features(("block1_conv1",), weights=path)
    assert not marker.exists()


def test_tampered_bundled_weights_are_refused(tmp_path, monkeypatch):
    import gafu.weights as w

    real = w.bundled_path()
    fake = tmp_path / real.name
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fake.write_bytes(bytes(data))
    monkeypatch.setattr(w, "bundled_path", lambda: fake)
    monkeypatch.setattr(w, "_cache", type(w._cache)())  # a fresh cache: nothing loaded yet
    monkeypatch.delenv("GAFU_VGG19_WEIGHTS", raising=False)
    with pytest.raises(GafuError, match="sha256"):
        w.load_vgg19_weights(None)


def test_non_finite_loss_stops_with_the_last_good_image(tiny_vgg):
    from gafu.config import get_preset
    from gafu.optimize import StyleTransfer

    st = StyleTransfer(torch.rand(1, 3, 40, 40), [torch.rand(1, 3, 48, 48)], get_preset("seed").replace(size=40, steps=10),
                       extractor=tiny_vgg)
    real = st.criterion.forward
    calls = {"n": 0}

    def poisoned(features, image):
        calls["n"] += 1
        out = real(features, image)
        if calls["n"] == 4:
            out["total"] = out["total"] * float("nan")
        return out

    st.criterion.forward = poisoned
    snapshots = []
    for it in st.run(image_every=1):
        snapshots.append(it.image)
    assert st.stop_reason == "non-finite" and st.steps_done == 4
    assert torch.isfinite(st.image).all()
    assert torch.equal(st.image, snapshots[1])  # the image of step 3, whose loss was finite


def _wait_for(path_glob: Path, pattern: str, proc, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(path_glob.glob(pattern)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never got going")


@pytest.mark.slow  # two real subprocess runs (~14 s each quiet); CI runs them (make test-corpus)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_image_and_leaves_no_temp_files(tmp_path, sig, code):
    out = tmp_path / "out.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gafu", "stylize", str(DATA / "chelsea.jpg"), str(DATA / "vangogh_starry_night.jpg"),
         "-o", str(out), "--size", "48", "--steps", "100000", "--preset", "seed", "--save-every", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        # As from a terminal: a shell's background job (CI's, a test runner's) starts with SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler (POSIX semantics, kept).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(tmp_path, "out_step*.png", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)  # a loaded machine can take minutes to wind down
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert Image.open(out).size[0] == 48
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert "Traceback" not in err


def test_kill9_while_overwriting_keeps_the_old_file(tmp_path):
    old = tmp_path / "out.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(old)
    before = old.read_bytes()
    code = (
        "import os, signal\n"
        "from gafu.image import atomic_write\n"
        "def write(fh):\n"
        "    fh.write(b'partial' * 1000); fh.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write({str(old)!r}, write)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -signal.SIGKILL
    assert old.read_bytes() == before


def test_memory_estimate_refuses_what_cannot_fit(monkeypatch):
    from gafu.optimize import memory

    monkeypatch.setattr(memory, "available_mb", lambda: 2000.0)
    # 2048 px no longer fits whole in 2 GB: it is tiled (tests/test_print.py); 8192 px cannot fit even in tiles.
    assert memory.plan_memory((1536, 2048), precision="fp32") is not None
    with pytest.raises(GafuError, match=r"needs about .* GB .* largest size that fits is about \d+ px"):
        memory.plan_memory((6144, 8192), precision="fp32")
    fits = memory.largest_fitting(300, 400, 2000.0, precision="fp32")
    assert memory.estimate_peak_mb(fits * 3 // 4, fits, precision="fp32") <= 2000.0 * 1.01
    assert memory.estimate_peak_mb(768, 1024, precision="fp32") > memory.estimate_peak_mb(768, 1024, precision="bf16")


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (12, 9), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=600),
                      st.tuples(st.integers(0, len(PNG)), st.integers(0, 255)).map(
                          lambda t: PNG[:t[0]] + bytes([t[1]]) + PNG[t[0] + 1:])))
def test_fuzz_image_bytes_never_crash(tmp_path, data):
    from gafu.image import open_image

    p = tmp_path / "fuzz.png"
    p.write_bytes(data)
    try:
        im = open_image(p)
    except GafuError as exc:
        assert "\n" not in str(exc)
    else:
        assert im.mode == "RGB"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arr=st.lists(st.integers(0, 255), min_size=4, max_size=64).map(lambda v: np.array(v, dtype=np.uint8)))
def test_fuzz_mask_files(tmp_path, arr):
    from gafu.masks import prepare_mask

    side = int(np.sqrt(arr.size))
    img = arr[: side * side].reshape(side, side)
    p = tmp_path / "m.png"
    Image.fromarray(img, "L").save(p)
    try:
        m = prepare_mask(p, (side, side))
    except GafuError as exc:
        assert "selects no pixel" in str(exc) or "aspect" in str(exc)
    else:
        assert m.shape == (1, 1, side, side) and float(m.max()) == 1.0


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(str),
                       st.integers(-10**12, 10**12).map(str)),
       flag=st.sampled_from(["--size", "--steps", "--style-weight", "--tv-weight", "--lr", "--strength",
                             "--style-scale", "--feather", "--stop-tol", "--scales", "--style-weights"]))
def test_fuzz_cli_numbers_are_checked_before_work(value, flag):
    import contextlib
    import io

    from gafu.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        # A missing content file: if the number is accepted, the run fails on the file, in one line.
        code = main(["stylize", "/nonexistent/c.png", "/nonexistent/s.png", "-o", "/nonexistent/o.png",
                     flag, value])
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert code == 2
    assert len(lines) == 1 or lines[0].startswith("usage:"), err.getvalue()
