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
ROCKET = DATA / "rocket.jpg"

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
    page.get_by_label("seed", exact=True).check()  # Adam: one cheap step each
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


def gallery_count(page, elem_id: str) -> int:
    return page.evaluate("id => document.querySelectorAll('#' + id + ' img').length", elem_id)


def test_dataset_and_defects_previews(server, browser, tmp_path):
    """The Dataset / defects tab: upload two photos, preview the dataset and the defects; the
    galleries fill, the command is shown, and the files are in this visitor's folder only."""
    demo, url = server
    shots = Path(os.environ.get("GAFU_WEB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Dataset / defects", exact=True).click()
    page.locator("#p-photos input[type=file]").set_input_files([str(PHOTO), str(ROCKET)])
    wait_for(lambda: "rocket" in page.locator("#p-photos").inner_text(), 30, "the uploads to show")

    set_number(page, "p-ds-size", 192)
    t0 = time.monotonic()
    page.locator("#p-ds-go").click()
    wait_for(lambda: gallery_count(page, "p-ds-gallery") >= 2, 180, "the stylized images")
    dataset_s = time.monotonic() - t0
    command = wait_for(lambda: page.locator("#p-ds-cmd textarea").input_value(), 30, "the dataset command")
    assert command.startswith("gafu dataset stylize photos/ -o stylized/ --styles") and "--max-size 192" in command
    assert "2 images" in page.locator("#p-ds-info").inner_text()
    page.screenshot(path=str(shots / "browser-dataset.png"), full_page=True)

    page.get_by_role("tab", name="Defects preview", exact=True).click()
    page.locator("#p-df-types input, #p-df-types textarea").first.fill("crack,stain")
    page.locator("#p-df-fill input").click()
    page.get_by_role("option", name="Van Gogh, The Starry Night").click()  # a fill that shows
    t0 = time.monotonic()
    page.locator("#p-df-go").click()
    wait_for(lambda: gallery_count(page, "p-df-gallery") >= 8, 180, "the defect images and masks")  # 2 types x 2
    defects_s = time.monotonic() - t0
    wait_for(lambda: "keeps every rule" in page.locator("#p-df-info").inner_text(), 30, "the summary")
    wait_for(lambda: image_src(page, "p-df-sheets"), 30, "the contact sheets")
    command = page.locator("#p-df-cmd textarea").input_value()
    assert "gafu defects synth photos/ -o defects/ --category sample --n 2 --defect-types crack,stain" in command
    assert "--fill style:" in command and "vangogh_starry_night.jpg" in command
    page.wait_for_timeout(500)  # let the gallery thumbnails finish loading for the picture
    page.screenshot(path=str(shots / "browser-defects.png"), full_page=True)
    sessions = list((demo.gafu_workspace.root / "sessions").iterdir())
    jobs = sorted(p.name.split("-")[0] for s in sessions for p in s.iterdir() if p.name.startswith(("dataset", "defects")))
    assert jobs == ["dataset", "defects"]  # one visitor, one folder each
    print(f"\ndataset preview {dataset_s:.2f} s, defects preview {defects_s:.2f} s")
    assert (shots / "browser-defects.png").stat().st_size > 10_000
