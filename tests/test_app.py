"""Browser tests of the Panel app: `panel serve apps/` on a small demo bundle, driven by
Playwright in Debian's chromium (no browser download)."""
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ddpayne_core.explore import load_bundle, selection

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (scripts/setup.sh does)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_bundle):
    port = _free_port()
    # `ddpayne app` is `panel serve apps/` bound to localhost with the bundle passed on.
    proc = subprocess.Popen([sys.executable, "-m", "ddpayne_core.cli", "app", "--bundle",
                             str(demo_bundle[0]), "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/apps"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"panel serve did not start: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(30)


def _open(page, url):
    page.set_viewport_size({"width": 1500, "height": 2000})
    page.set_default_timeout(60_000)
    page.goto(url)


def test_index_links_every_app_and_marks_synthetic_data(page, server):
    _open(page, server)
    page.get_by_text("SYNTHETIC SURVEY").first.wait_for()
    page.get_by_role("link", name="Survey explorer").click()
    page.get_by_text("spectra shown").wait_for()
    page.locator(".kiel-map canvas").first.wait_for()
    # The banner may render a moment after the rest of the page: wait for it (fails on timeout).
    page.get_by_text("SYNTHETIC SURVEY").first.wait_for(state="visible", timeout=20_000)
    _open(page, server + "?page=retrain")
    page.get_by_role("button", name="Start training").wait_for()
    page.get_by_text("SYNTHETIC SURVEY").first.wait_for(state="visible", timeout=20_000)


def _kiel_map_box(page, server) -> dict:
    """Open the explorer and return the Kiel map canvas's bounding box once it is drawn."""
    _open(page, server + "?page=explorer")
    canvas = page.locator(".kiel-map canvas").first
    canvas.wait_for()
    page.wait_for_timeout(2000)
    return canvas.bounding_box()


def test_click_on_kiel_map_inspects_the_nearest_star(page, server, demo_bundle):
    box = _kiel_map_box(page, server)
    page.mouse.click(box["x"] + 0.35 * box["width"], box["y"] + 0.65 * box["height"])
    head = page.locator(".inspector").get_by_text(re.compile("Star row")).first
    head.wait_for()
    row = int(re.search(r"Star row (\d+)", head.inner_text()).group(1))
    where = page.locator(".inspector").get_by_text(re.compile("click at")).first.inner_text()
    x, y = (float(v) for v in re.search(r"Teff = ([-\d.e+]+), logg = ([-\d.e+]+)", where).groups())
    bundle = load_bundle(demo_bundle[0])
    assert row == bundle.nearest_row(x, y, "teff", "logg", selection(bundle.catalog))
    teff = bundle.catalog["teff"].iloc[row]
    page.locator(".label-table").get_by_text(f"{teff:.3f}").wait_for()
    page.get_by_text("gradient spectra").first.wait_for()


def test_box_selection_on_kiel_map_is_counted(page, server):
    box = _kiel_map_box(page, server)
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.8 * box["height"], steps=8)
    page.mouse.up()
    counts = page.locator(".counts").get_by_text(re.compile("in the box selection"))
    counts.wait_for()
    selected = int(re.search(r"([\d,]+) in the box selection", counts.inner_text()).group(1)
                   .replace(",", ""))
    assert selected > 0


def test_gradcorr_slider_changes_the_flag_counts(page, server):
    _open(page, server + "?page=explorer")
    table = page.locator(".flag-counts table")
    table.wait_for()
    before = table.inner_text()
    handle = page.locator(".gradcorr-cutoff .noUi-handle").first
    handle.focus()
    for _ in range(8):
        handle.press("ArrowRight")
    page.wait_for_function("([el, t]) => el.innerText !== t", arg=[table.element_handle(), before])
    assert table.inner_text() != before


def test_retraining_starts_and_cancels(page, server):
    _open(page, server + "?page=retrain")
    # Enough epochs that the run cannot finish before Cancel is clicked.
    epochs = page.locator(".epochs-input input").first
    epochs.fill("5000")
    epochs.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start training").click()
    status = page.locator(".training-status")
    status.filter(has_text="/5000").wait_for()
    page.get_by_role("button", name="Cancel").click()
    status.filter(has_text="cancelled").wait_for(timeout=120_000)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
