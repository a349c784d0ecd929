"""gafu web in a real browser: Playwright (Python) driving Debian's headless Chromium.

Setup (CI does this): ``apt-get install -y chromium`` and ``pip install gafu[web-test]``. Playwright
is pointed at /usr/bin/chromium; ``playwright install`` (a browser download) is never needed.
Skipped only where /usr/bin/chromium (or Playwright / Gradio) is missing.

Set GAFU_WEB_SCREENSHOTS=DIR to keep the screenshots (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import free_port

CHROMIUM = Path(os.environ.get("GAFU_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
DATA = Path(__file__).resolve().parents[1] / "gafu" / "data"
PHOTO = DATA / "chelsea.jpg"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (CI must have it)"),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # Gradio's pandas 3 deprecations
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    root = tmp_path_factory.mktemp("gafu-web-browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        from gafu.web.app import build_app, launch

        demo = build_app(workdir=root / "work")
        _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
        try:
            yield demo, url
        finally:
            demo.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def image_src(page, elem_id: str):
    return page.evaluate(
        "id => { const im = document.querySelector('#' + id + ' img'); return im ? im.getAttribute('src') : null }",
        elem_id,
    )


def set_number(page, elem_id: str, value) -> None:
    """Type into a slider's number box and commit it (Gradio updates on change)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_fast_then_stylize_with_live_preview(server, browser, tmp_path):
    demo, url = server
    shots = Path(os.environ.get("GAFU_WEB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Fast").click()
    page.locator("#f-content input[type=file]").set_input_files(str(PHOTO))
    wait_for(lambda: image_src(page, "f-content"), 30, "the uploaded photo to show")
    t0 = time.monotonic()
    page.locator("#f-go").click()
    wait_for(lambda: image_src(page, "f-result"), 120, "the fast result")
    fast_s = time.monotonic() - t0
    info = page.locator("#f-info").inner_text()
    assert "451x300 px" in info  # full resolution: the photo's own size
    page.screenshot(path=str(shots / "browser-fast.png"))

    page.get_by_role("tab", name="Stylize").click()
    page.locator("#s-content input[type=file]").set_input_files(str(PHOTO))
    wait_for(lambda: image_src(page, "s-content"), 30, "the uploaded photo to show")
    set_number(page, "s-size", 64)
    set_number(page, "s-steps", 12)
    set_number(page, "s-every", 2)
    page.get_by_label("seed").check()  # Adam: one cheap step each
    # Paint a mask on the photo (the editor shows the uploaded photo as its background).
    page.get_by_text("Mask: stylize only where you paint").click()
    page.locator("#s-mask button[aria-label=Brush]").click()
    box = page.locator("#s-mask canvas").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(20):
        page.mouse.move(x0 + (k % 2) * box["width"] * 0.15, y0 + k * box["height"] * 0.03)
    page.mouse.up()
    assert image_src(page, "s-preview") is None
    t0 = time.monotonic()
    page.locator("#s-go").click()
    seen = []

    def preview_changed_twice():
        src = image_src(page, "s-preview")
        if src and (not seen or seen[-1] != src):
            seen.append(src)
            if len(seen) == 1:
                seen_at.append(time.monotonic() - t0)
        return len(seen) >= 3  # first preview, then two changes

    seen_at: list = []
    wait_for(preview_changed_twice, 180, "the live preview to change twice", poll=0.02)
    wait_for(lambda: image_src(page, "s-result"), 180, "the stylize result")
    status = page.locator("#s-status").inner_text()
    assert "done: 12 steps" in status and "64x42 px" in status
    assert page.locator("#s-png a, #s-png [download]").count() >= 1 or "result.png" in page.locator("#s-png").inner_text()
    page.screenshot(path=str(shots / "browser-stylize.png"), full_page=True)
    import json

    reports = list(demo.gafu_workspace.root.glob("sessions/*/stylize-*/report/report.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["settings"]["mask"] is True
    print(f"\nfast result {fast_s:.2f} s, first preview {seen_at[0]:.2f} s, previews seen {len(seen)}")
    assert (shots / "browser-stylize.png").stat().st_size > 10_000
