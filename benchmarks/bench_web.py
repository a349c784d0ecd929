"""Benchmark: gafu web as a visitor sees it, in headless Chromium (Playwright + Debian's chromium).

    PYTHONPATH=. flock /tmp/gafu-cpu.lock python benchmarks/bench_web.py [--out benchmarks/results/web_512.json]
        [--screenshots docs/]

Starts the app in this process on a free loopback port, opens it in /usr/bin/chromium and times,
from the click to the image appearing on the page:
- Fast: the result at 512 px (NASA astronaut portrait, content/astronaut.png, 512x512, full resolution,
  The Starry Night), the first click of the process (ONNX models load) and then warm clicks;
- where that time goes on the server (prepare, first step, preview PNG, loss plot), in-process;
- Stylize: the first live preview of a 512 px optimization (preset "fast", preview every step),
  cold (VGG19 weights load) and warm; each run is cancelled after the first preview and the time
  until the cancelled result shows is recorded too.
Prints JSON (CPU model, load average before/after, versions). With --screenshots, also saves a
small screenshot of each tab (web-stylize.png, web-fast.png, web-compare.png, web-diagnose.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
PHOTO_512 = IMAGES / "content" / "astronaut.png"
DATA = ROOT / "gafu" / "data"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def src(page, elem_id):
    return page.evaluate(
        "id => { const im = document.querySelector('#' + id + ' img'); return im ? im.getAttribute('src') : null }",
        elem_id)


def wait_change(page, elem_id, old, timeout, poll=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = src(page, elem_id)
        if s and s != old:
            return s
        time.sleep(poll)
    shot = Path(tempfile.gettempdir()) / f"bench_web_timeout_{elem_id}.png"
    page.screenshot(path=str(shot), full_page=True)
    raise SystemExit(f"timed out waiting for #{elem_id} to change (page: {shot})")


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def screenshot(page, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def shrink(path: Path, width: int = 900) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im = im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    im.save(path, optimize=True)


def breakdown(work: Path) -> dict:
    """Where the click-to-first-preview time goes on the server, without browser or Gradio (warm:
    the VGG19 weights are already loaded by the page runs above)."""
    import io

    from gafu.config import get_preset
    from gafu.image import load, to_pil
    from gafu.optimize import StyleTransfer
    from gafu.report import loss_figure, loss_history

    out = {}
    content, style = load(PHOTO_512), load(DATA / "vangogh_starry_night.jpg")
    for preset in ("fast", "seed"):
        cfg = get_preset(preset).replace(size=512, steps=3)
        t0 = time.perf_counter()
        st = StyleTransfer(content, [style], cfg)
        t1 = time.perf_counter()
        its = []
        for it in st.run(image_every=1):
            its.append(it)
            if len(its) == 1:
                t2 = time.perf_counter()
                im = to_pil(it.image)
                buf = io.BytesIO()
                im.save(buf, "PNG")
                t3 = time.perf_counter()
                fig = loss_figure(loss_history(its), title="Loss", dpi=60)
                fig.savefig(io.BytesIO(), format="png")
                t4 = time.perf_counter()
        out[preset] = {"prepare_s": round(t1 - t0, 3), "first_step_s": round(t2 - t1, 3),
                       "preview_png_s": round(t3 - t2, 3), "loss_plot_s": round(t4 - t3, 3),
                       "steps_2_3_s": round(its[-1].elapsed - its[0].elapsed, 3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--screenshots", help="folder for one screenshot per tab")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for one result (default 300)")
    ap.add_argument("--warm", type=int, default=3, help="warm fast clicks to time (default 3)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gafu-bench-web-"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    import gradio
    from playwright.sync_api import sync_playwright

    from gafu.web.app import build_app, launch

    load_before = os.getloadavg()
    demo = build_app(workdir=work / "app")
    _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    out: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.monotonic()
        page.goto(url)
        page.locator("#s-go").wait_for()
        out["page_load_s"] = round(time.monotonic() - t0, 3)

        # ---- Fast at 512 px --------------------------------------------------------------
        page.get_by_role("tab", name="Fast").click()
        page.locator("#f-content input[type=file]").set_input_files(str(PHOTO_512))
        wait_change(page, "f-content", None, 30)
        times, old = [], None
        for i in range(1 + args.warm):
            # A different strength each time: the same image would keep the same URL on the page.
            set_number(page, "f-strength", round(1.0 - 0.05 * i, 2))
            t0 = time.monotonic()
            page.locator("#f-go").click()
            old = wait_change(page, "f-result", old, args.timeout)
            times.append(time.monotonic() - t0)
        out["fast_512"] = {
            "result_px": page.locator("#f-info").inner_text().split(" px")[0],
            "server_seconds": page.locator("#f-info").inner_text(),
            "click_to_result_cold_s": round(times[0], 3),
            "click_to_result_warm_s": round(statistics.median(times[1:]), 3) if times[1:] else None,
            "warm_runs_s": [round(t, 3) for t in times[1:]],
        }
        if args.screenshots:
            screenshot(page, Path(args.screenshots) / "web-fast.png")

        # ---- Stylize at 512 px: first live preview ------------------------------------------
        page.get_by_role("tab", name="Stylize").click()
        page.locator("#s-content input[type=file]").set_input_files(str(PHOTO_512))
        wait_change(page, "s-content", None, 30)
        set_number(page, "s-size", 512)
        set_number(page, "s-steps", 200)
        set_number(page, "s-every", 1)
        runs, old_prev, old_res = [], None, None
        for label, strength in (("cold", 0.5), ("warm", 0.55)):
            set_number(page, "s-strength", strength)
            t0 = time.monotonic()
            page.locator("#s-go").click()
            old_prev = wait_change(page, "s-preview", old_prev, 600)
            first = time.monotonic() - t0
            page.locator("#s-cancel").click()
            old_res = wait_change(page, "s-result", old_res, 600)
            runs.append({"run": label, "click_to_first_preview_s": round(first, 3),
                         "click_to_cancelled_result_s": round(time.monotonic() - t0, 3),
                         "status": page.locator("#s-status").inner_text()})
            old_prev = src(page, "s-preview")
        out["stylize_512_fast_preset"] = runs
        # The seed preset (Adam: one gradient per step) at 512 px, warm.
        page.get_by_label("seed").check()
        t0 = time.monotonic()
        page.locator("#s-go").click()
        wait_change(page, "s-preview", old_prev, 600)
        first = time.monotonic() - t0
        page.locator("#s-cancel").click()
        old_res = wait_change(page, "s-result", old_res, 600)
        out["stylize_512_seed_preset_warm"] = {"click_to_first_preview_s": round(first, 3),
                                               "status": page.locator("#s-status").inner_text()}
        page.get_by_label("fast").first.check()

        if args.screenshots:
            shots = Path(args.screenshots)
            # A finished small run for the picture.
            page.locator("#s-content input[type=file]").set_input_files(str(DATA / "chelsea.jpg"))
            wait_change(page, "s-content", src(page, "s-content"), 30)
            set_number(page, "s-size", 256)
            set_number(page, "s-steps", 30)
            set_number(page, "s-every", 5)
            t0 = time.monotonic()
            page.locator("#s-go").click()
            wait_change(page, "s-result", old_res, 600)
            out["stylize_256_30_steps_click_to_result_s"] = round(time.monotonic() - t0, 3)
            screenshot(page, shots / "web-stylize.png")

            page.get_by_role("tab", name="Compare").click()
            page.locator("#c-content input[type=file]").set_input_files(str(DATA / "chelsea.jpg"))
            wait_change(page, "c-content", None, 30)
            page.locator("#c-go").click()
            wait_change(page, "c-sheet", None, 300)
            screenshot(page, shots / "web-compare.png")

            from gafu.fast import fast_stylize

            result = work / "chelsea_starry.png"
            fast_stylize(DATA / "chelsea.jpg", DATA / "vangogh_starry_night.jpg").save(result)
            page.get_by_role("tab", name="Diagnose").click()
            page.locator("#d-content input[type=file]").set_input_files(str(DATA / "chelsea.jpg"))
            page.locator("#d-result input[type=file]").set_input_files(str(result))
            wait_change(page, "d-result", None, 30)
            page.locator("#d-classify").click()
            page.wait_for_function("() => document.querySelector('#d-label').innerText.includes('%')",
                                   timeout=120_000)
            page.locator("#d-analyze").click()
            wait_change(page, "d-figure", None, 300)
            screenshot(page, shots / "web-diagnose.png")
            for name in ("web-stylize.png", "web-fast.png", "web-compare.png", "web-diagnose.png"):
                shrink(shots / name)
        browser.close()
    demo.close()
    out["server_breakdown_512_warm"] = breakdown(work)
    summary = {
        "benchmark": "gafu web in headless Chromium: click to image on the page",
        "machine": {
            "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "gradio": gradio.__version__,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "photo": str(PHOTO_512.relative_to(IMAGES)), "style": "gafu/data/vangogh_starry_night.jpg",
        **out,
    }
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
