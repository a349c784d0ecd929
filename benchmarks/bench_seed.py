"""Seconds per step and peak memory of gafu's seed preset (fp32) at 512x384.

    python benchmarks/bench_seed.py [--height 384 --width 512 --steps 20 --warmup 2]

Prints one JSON object. The content is the bundled chelsea.jpg cropped to 4:3 and resized to the
requested size; the style is the bundled Starry Night. Peak RSS is the whole process's
(``ru_maxrss``), so run one configuration per invocation.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from gafu.cli.demo import data_path
    from gafu.config import get_preset
    from gafu.image import load, resize, to_tensor
    from gafu.optimize import StyleTransfer

    im = load(data_path("chelsea.jpg"))
    w, h = im.size
    cw = min(w, h * 4 // 3)
    im = im.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    content = resize(to_tensor(im), (args.height, args.width), antialias=True)
    cfg = get_preset("seed").replace(size=max(args.height, args.width))

    t0 = time.perf_counter()
    st = StyleTransfer(content, [data_path("vangogh_starry_night.jpg")], cfg)
    prepare = time.perf_counter() - t0
    times, last = [], time.perf_counter()
    for it in st.run(args.warmup + args.steps, tune_allocator=True):
        now = time.perf_counter()
        if it.step > args.warmup:
            times.append(now - last)
        last = now
    print(
        json.dumps(
            {
                "benchmark": "seed preset, fp32, one optimization step",
                "content_shape": list(st.content.shape[-2:]),
                "steps_timed": len(times),
                "seconds_per_step_median": round(statistics.median(times), 4),
                "seconds_per_step_min": round(min(times), 4),
                "seconds_per_step_max": round(max(times), 4),
                "prepare_seconds": round(prepare, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "final_loss": st.evaluate()["total"],
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
