"""gafu video: temporal stability and speed of both methods, measured in one run; prints JSON.

    flock /tmp/gafu-cpu.lock python benchmarks/bench_video.py [--out benchmarks/results/video.json] [--quick]

Clips (made here, nothing downloaded):
    - ``pan``: a synthetic camera pan over chelsea.png (256x256, 3 px per frame to the left; the
      true flow is known, every frame's right 3 columns are new);
    - ``earth``: a real clip, if installed: the first 2 s of gradio's ``media_assets/videos/b.mp4``
      (a rotating Earth, 30 fps), long side 256;
    - ``panzoom``: a pan with a 1.25x zoom over astronaut.png (sub-pixel, non-uniform motion),
      encoded as H.264 mp4 with PyAV and decoded again (so the frames carry codec noise as a
      real clip does).

For each method, the warping error (Lai et al. 2018; flow and occlusions from the input frames,
DIS) of ``gafu.video.stylize`` against plain per-frame stylization of the same frames with the
same style (fast: ``FastStylizer.run`` per frame; optimize: each frame optimized from its content
with the first frame's step count). Goal: ratio <= 0.5. Also: fast frames/s at 256x256 with 2
threads (goal >= 5, flow included), the optimization's seconds per frame, and a texture measure
(mean |Laplacian| of the result over that of per-frame stylization: < 1 means blurrier).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "images"
STYLE = ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"




def texture(frames) -> float:
    import cv2

    vals = [np.abs(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)).mean()
            for f in frames]
    return float(np.mean(vals))


def clips(n: int, size: int) -> dict:
    from gafu.video import read_clip, write_clip
    from gafu.video.clips import pan_clip, pan_zoom_clip

    photo = SHARED / "content"
    pan = pan_clip(photo / "chelsea.png", n, (size, size), (3, 0))
    pz = pan_zoom_clip(photo / "astronaut.png", n, (size, size))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panzoom.mp4"
        write_clip(pz, path, 12.0)
        pz = read_clip(path).frames
    out = {"pan": pan, "panzoom": pz}
    real = real_clip()
    if real is not None:  # a real camera-less clip: the first 2 s, long side 256
        out["earth"] = read_clip(real, max_size=size, end=2.0).frames
    return out


def real_clip():
    """gradio's wheel ships a short real clip (a rotating Earth, 480x270, 30 fps, with AAC audio);
    found with find_spec, without importing gradio. None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("gradio")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "media_assets" / "videos" / "b.mp4"
        if p.is_file():
            return p
    return None


def run_fast(frames, threads: int, blend=None) -> dict:
    from gafu.fast import FastStylizer
    from gafu.video import stylize
    from gafu.video.metrics import input_flows, warping_errors

    stylize(frames[:2], STYLE, threads=threads)  # warm the sessions
    r = stylize(frames, STYLE, threads=threads, blend=blend)
    fs = r.frame_seconds
    st = FastStylizer(style=STYLE, threads=threads)
    t0 = time.perf_counter()
    plain = [np.asarray(st.run(f).image) for f in frames]
    plain_s = time.perf_counter() - t0
    flows = input_flows(frames)
    ours, base = float(np.mean(warping_errors(r.frames, flows))), float(np.mean(warping_errors(plain, flows)))
    return {
        "blend": r.settings["blend"],
        "frames": len(frames),
        "frames_per_second": len(fs) / sum(fs),
        "seconds_per_frame": sum(fs) / len(fs),
        "per_frame_frames_per_second": len(frames) / plain_s,
        "warping_error": ours,
        "per_frame_warping_error": base,
        "ratio": ours / base,
        "texture_ratio": texture(r.frames) / texture(plain),
    }


def run_optimize(frames, size: int, first_steps: int, steps: int, weight=None, baseline=None) -> dict:
    """``baseline``: a per-frame warping error measured already on the same frames (skips redoing it)."""
    from gafu.video import stylize
    from gafu.video.metrics import warping_error

    r = stylize(frames, STYLE, method="optimize", max_size=size, first_steps=first_steps, steps=steps,
                temporal_weight=weight, metrics=baseline is None)
    fs = r.frame_seconds
    if baseline is None:
        m = r.metrics
    else:
        small = [np.asarray(Image.fromarray(f).resize(r.size, Image.LANCZOS)) for f in frames]  # as stylize resizes
        e = warping_error(r.frames, small)
        m = {"warping_error": e, "per_frame_warping_error": baseline["per_frame_warping_error"],
             "ratio": e / baseline["per_frame_warping_error"],
             "per_frame_seconds": baseline["per_frame_baseline_seconds_per_frame"] * len(frames)}
    return {
        "size": list(r.size),
        "frames": len(frames),
        "first_steps": first_steps,
        "steps": steps,
        "temporal_weight": r.settings["temporal_weight"],
        "first_frame_seconds": fs[0],
        "seconds_per_later_frame": float(np.mean(fs[1:])),
        "per_frame_baseline_seconds_per_frame": m["per_frame_seconds"] / len(frames),
        "warping_error": m["warping_error"],
        "per_frame_warping_error": m["per_frame_warping_error"],
        "ratio": m["ratio"],
        "last_terms": r.settings["optimize_last_terms"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video.json"))
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--opt-frames", type=int, default=5)
    ap.add_argument("--opt-size", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="fewer frames and steps (a smoke run)")
    ap.add_argument("--methods", default="fast,optimize", help="which methods to measure (default both)")
    args = ap.parse_args()
    first, steps = (100, 30) if not args.quick else (10, 4)
    n = args.frames if not args.quick else 4
    t0 = time.perf_counter()
    data = clips(n, 256)
    out = {
        "benchmark": "bench_video",
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "python": platform.python_version()},
        "style": STYLE.name,
        "fast": {},
        "optimize": {},
    }
    methods = args.methods.split(",")
    out["goals"] = {}
    if "fast" in methods:
        for name, frames in data.items():
            out["fast"][name] = run_fast(frames, threads=2)
            out["fast"][name + "_no_blend"] = run_fast(frames, threads=2, blend=0.0)
        out["goals"]["fast_ratio_le_0.5"] = all(out["fast"][c]["ratio"] <= 0.5 for c in data)
        out["goals"]["fast_fps_ge_5_at_256"] = all(out["fast"][c]["frames_per_second"] >= 5 for c in data)
    if "optimize" in methods:
        k = args.opt_frames if not args.quick else 3
        opt_clips = [c for c in ("pan", "earth") if c in data]  # the synthetic pan and the real clip
        for name in opt_clips:
            out["optimize"][name] = run_optimize(data[name][:k], args.opt_size, first, steps)
        out["optimize"]["pan_warm_start_only"] = run_optimize(data["pan"][:k], args.opt_size, first, steps,
                                                              weight=0.0, baseline=out["optimize"]["pan"])
        out["goals"]["optimize_ratio_le_0.5"] = all(out["optimize"][c]["ratio"] <= 0.5 for c in opt_clips)
    out["machine"]["load_average_end"] = os.getloadavg()
    out["seconds"] = time.perf_counter() - t0
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
