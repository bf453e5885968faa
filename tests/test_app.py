"""Browser tests of the Panel app: `panel serve apps/` on a small demo bundle, driven by
Playwright in Debian's chromium (no browser download)."""
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from ddpayne_core.app import load_bundle
from ddpayne_core.constants import CLICK_RADIUS_PX
from ddpayne_core.flags import XFlagConfig

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (tools/setup.sh does)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(bundle: Path):
    """`ddpayne app` (panel serve apps/ bound to localhost) on ``bundle``; yields the URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ddpayne_core.cli", "app", "--bundle",
                             str(bundle), "--port", str(port)], cwd=REPO,
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


@pytest.fixture(scope="module")
def server(demo_bundle):
    yield from _serve(demo_bundle[0])


@pytest.fixture(scope="module")
def real_server(real_bundle):
    yield from _serve(real_bundle[0])


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


def _screen_point(page, figure: str, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the data point (x, y) on the Bokeh figure called ``figure``, through
    the browser's own view of it (its frame's scales and the canvas position)."""
    return page.evaluate("""([name, x, y]) => {
        for (const doc of Bokeh.documents) {
            const fig = doc.get_model_by_name(name);
            if (!fig) continue;
            const view = Bokeh.index.find_one(fig);
            const r = view.canvas_view.el.getBoundingClientRect();
            return [r.left + view.frame.x_scale.compute(x), r.top + view.frame.y_scale.compute(y)];
        }
        return null;
    }""", [figure, x, y])


def test_click_on_a_star_inspects_it_rings_it_and_shows_it_on_screen(page, server, demo_bundle):
    _kiel_map_box(page, server)
    cat = load_bundle(demo_bundle[0]).catalog
    row = int(np.argmin(np.abs(cat["teff"] - cat["teff"].median()) / 300
                        + np.abs(cat["logg"] - cat["logg"].median())))
    page.mouse.click(*_screen_point(page, "kiel-map", cat["teff"].iloc[row], cat["logg"].iloc[row]))
    head = page.locator(".inspector").get_by_text(re.compile("Star row")).first
    head.wait_for()
    assert int(re.search(r"Star row (\d+)", head.inner_text()).group(1)) == row
    assert re.search(r"Teff \d+ (± \d+ )?K", head.inner_text())
    # The answer is on screen without scrolling (1,000 px high window) ...
    page.set_viewport_size({"width": 1600, "height": 1000})
    assert head.bounding_box()["y"] < 1000
    # ... and the star is ringed on both maps.
    for name in ("selected-star-kiel", "selected-star-xfe"):
        page.wait_for_function("(name) => Bokeh.documents.some(d => { const m = "
                               "d.get_model_by_name(name); return m && m.data.x.length === 1; })",
                               arg=name)
    # Labels as a reader writes them: "4986 ± 86" under "Teff [K]".
    table = page.locator(".label-table")
    table.get_by_text(f"{cat['teff'].iloc[row]:.0f} ± {cat['teff_err'].iloc[row]:.0f}").wait_for()
    table.get_by_text("Teff [K]").wait_for()
    page.get_by_text("gradient spectra").first.wait_for()


def test_click_on_empty_sky_selects_nothing_and_says_so(page, server, demo_bundle):
    _kiel_map_box(page, server)
    # The frame as the browser draws it: its screen box and data per screen pixel.
    frame = page.evaluate("""() => {
        for (const doc of Bokeh.documents) {
            const fig = doc.get_model_by_name("kiel-map");
            if (!fig) continue;
            const v = Bokeh.index.find_one(fig), r = v.canvas_view.el.getBoundingClientRect();
            const b = v.frame.bbox, xs = v.frame.x_scale, ys = v.frame.y_scale;
            return [r.left, r.top, b.left, b.top, b.width, b.height,
                    xs.invert(b.left), xs.invert(b.left + 1) - xs.invert(b.left),
                    ys.invert(b.top), ys.invert(b.top + 1) - ys.invert(b.top)];
        }
        return null;
    }""")
    left, top, fx, fy, width, height, x0, dx, y0, dy = frame
    # The emptiest point on a grid inside the frame (20 px from its edges): no star within
    # twice the click radius, wherever this bundle's stars fell.
    cat = load_bundle(demo_bundle[0]).catalog
    sx, sy = np.meshgrid(np.arange(20, width - 20, 5), np.arange(20, height - 20, 5))
    sx, sy = sx.ravel(), sy.ravel()
    star_x = (cat["teff"].to_numpy() - x0) / dx
    star_y = (cat["logg"].to_numpy() - y0) / dy
    d_px = np.hypot(sx[:, None] - star_x[None], sy[:, None] - star_y[None]).min(axis=1)
    best = int(np.argmax(d_px))
    assert d_px[best] > 2 * CLICK_RADIUS_PX, "the test needs empty sky in the frame"
    px, py = float(left + fx + sx[best]), float(top + fy + sy[best])
    page.mouse.click(px, py)
    page.locator(".inspector").get_by_text(re.compile("No shown star within")).first.wait_for()
    assert page.evaluate("""() => Bokeh.documents.map(d => d.get_model_by_name("selected-star-kiel"))
                            .filter(m => m)[0].data.x.length""") == 0


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


def _start_training(page, server, epochs: str):
    """Open the retrain page, type ``epochs`` into the epochs field, press Start; returns the
    status pane."""
    _open(page, server + "?page=retrain")
    field = page.locator(".epochs-input input").first
    field.fill(epochs)
    field.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start training").click()
    return page.locator(".training-status")


def test_retraining_starts_and_cancels(page, server):
    # Enough epochs that the run cannot finish before Cancel is clicked.
    status = _start_training(page, server, "5000")
    status.filter(has_text="/5000").wait_for()
    page.get_by_role("button", name="Cancel").click()
    status.filter(has_text="cancelled").wait_for(timeout=120_000)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()


def test_flag_configuration_is_saved_only_inside_the_bundle(page, server, demo_bundle, tmp_path):
    _open(page, server + "?page=explorer")
    name = page.locator(".flag-config-name input").first
    outside = tmp_path / "evil.json"
    for bad in (str(outside), "../../evil", ""):
        name.fill(bad)
        name.press("Enter")
        page.get_by_role("button", name="Save flag configuration").click()
        page.locator(".save-message").get_by_text("Not saved").first.wait_for()
    assert not outside.exists() and not (demo_bundle[0].parent / "evil.json").exists()
    name.fill("my_cuts")
    name.press("Enter")
    page.get_by_role("button", name="Save flag configuration").click()
    # "Not saved" from the refused names contains "saved": wait for the saved file's name.
    page.locator(".save-message").get_by_text("my_cuts.json").first.wait_for()
    saved = demo_bundle[0] / "flag_configs" / "my_cuts.json"
    assert XFlagConfig.from_json(saved.read_text()) == XFlagConfig()


def test_xfe_map_tooltip_names_the_element_shown(page, server):
    _open(page, server + "?page=explorer")
    page.locator(".xfe-map canvas").first.wait_for()
    page.locator(".element-select select").select_option(label="[Ca/Fe]")
    tooltips = """() => { for (const d of Bokeh.documents) { const f = d.get_model_by_name("xfe-map");
        if (f) return f.toolbar.tools.filter(t => t.type === "HoverTool")
                        .map(t => t.tooltips.map(r => r[0]).join("|")).join(); } return ""; }"""
    page.wait_for_function(f"() => ({tooltips})().includes('[Ca/Fe]')")
    assert "[Mg/Fe]" not in page.evaluate(tooltips)


def test_bad_numbers_are_refused_with_a_message(page, server):
    _open(page, server + "?page=explorer")
    table = page.locator(".flag-counts table")
    table.wait_for()
    cut = page.locator(".chi2-cut-1 input").first
    cut.fill("")
    cut.press("Enter")
    alert = page.locator(".config-error").get_by_text(re.compile(r"chi2_cuts\[0\] must be a number"))
    alert.first.wait_for()
    status = _start_training(page, server, "")
    status.get_by_text(re.compile("cannot train: .*epochs")).wait_for()


def test_box_selection_is_counted_and_exports_those_stars(page, server):
    box = _kiel_map_box(page, server)
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.8 * box["height"], steps=8)
    page.mouse.up()
    counts = page.locator(".counts").get_by_text(re.compile("in the box selection"))
    counts.wait_for()
    selected = int(re.search(r"([\d,]+) in the box selection", counts.inner_text()).group(1)
                   .replace(",", ""))
    button = page.locator(".export-rows").get_by_text("Download the box-selected stars")
    button.wait_for()
    with page.expect_download() as info:
        button.click()
    table = pd.read_csv(info.value.path())
    assert len(table) == selected > 0
    assert {"teff", "logg", "feh", "mg_fe_flag"} <= set(table.columns)


def test_real_bundle_opens_and_a_click_shows_the_reference_labels(page, real_server, real_bundle):
    """The real-data bundle (real LAMOST spectra, LASP labels): no synthetic banner, a star
    clicked on the map shows its fitted labels beside the reference survey's."""
    _kiel_map_box(page, real_server)
    assert page.get_by_text("SYNTHETIC SURVEY").count() == 0
    cat = load_bundle(real_bundle[0]).catalog
    row = int(np.argmin(np.abs(cat["teff"] - cat["teff"].median()) / 300
                        + np.abs(cat["logg"] - cat["logg"].median())))
    page.mouse.click(*_screen_point(page, "kiel-map", cat["teff"].iloc[row], cat["logg"].iloc[row]))
    page.locator(".inspector").get_by_text(re.compile(f"Star row {row}\\b")).first.wait_for()
    table = page.locator(".label-table")
    table.get_by_text("LASP reference").wait_for()
    table.get_by_text(f"{cat['lasp_teff'].iloc[row]:.0f}", exact=True).wait_for()


def _header_row(page) -> int:
    head = page.locator(".inspector").get_by_text(re.compile("Star row")).first
    head.wait_for()
    return int(re.search(r"Star row (\d+)", head.inner_text()).group(1))


def _wait_header_row(page, row: int) -> None:
    page.locator(".inspector").get_by_text(re.compile(rf"Star row {row},")).first.wait_for()


def test_a_star_is_opened_by_url_found_by_identifier_and_stepped_through(page, server, demo_bundle):
    cat = load_bundle(demo_bundle[0]).catalog
    visited = cat["star_id"].duplicated(keep=False).to_numpy()
    row = int(np.nonzero(visited)[0][0])
    _open(page, server + f"?page=explorer&star={row}")
    assert _header_row(page) == row
    # The star's other visits are overlaid on its spectrum.
    n_visits = int((cat["star_id"] == cat["star_id"].iloc[row]).sum()) - 1
    page.wait_for_function("(n) => Bokeh.documents.some(d => { const m = d.get_model_by_name("
                           "'repeat-visits'); return m && m.data.xs.length === n; })", arg=n_visits)
    # Search by specid: the header, the URL and the rings follow.
    other = int(len(cat) // 2)
    find = page.locator(".find-star input").first
    find.fill(str(cat["specid"].iloc[other]))
    find.press("Enter")
    _wait_header_row(page, other)
    page.wait_for_function("(r) => window.location.search.includes('star=' + r)", arg=other)
    page.locator(".find-message").get_by_text(f"Found row {other} by specid").wait_for()
    find.fill("no-such-star")
    find.press("Enter")
    page.locator(".find-message").get_by_text("No star matches").wait_for()
    # Next and previous walk the shown stars in catalogue order.
    page.get_by_role("button", name="next shown star ▶").click()
    _wait_header_row(page, other + 1)
    page.get_by_role("button", name="◀ previous shown star").click()
    page.get_by_role("button", name="◀ previous shown star").click()
    _wait_header_row(page, other - 1)


def test_the_inspected_spectrum_downloads_with_its_model(page, server, demo_bundle):
    cat = load_bundle(demo_bundle[0]).catalog
    row = 7
    _open(page, server + f"?page=explorer&star={row}")
    _wait_header_row(page, row)
    button = page.locator(".download-spectrum").get_by_text("Download spectrum and model")
    with page.expect_download() as info:
        button.click()
    assert info.value.suggested_filename == f"ddpayne_star_{cat['specid'].iloc[row]}.csv"
    table = pd.read_csv(info.value.path())
    model = load_bundle(demo_bundle[0]).model
    assert len(table) == model.wave.size
    assert np.allclose(table["wavelength_vacuum_rest_aa"], model.wave)
    used = table["used_in_fit"].to_numpy()
    assert used.any() and np.isfinite(table["model"][used]).all()


def test_a_cutoff_no_bin_passes_is_said_in_words(page, server):
    _open(page, server + "?page=explorer")
    message = page.locator(".gradcorr-message")
    message.get_by_text(re.compile(r"bins pass the cutoff 0\.50")).wait_for()
    handle = page.locator(".gradcorr-cutoff .noUi-handle").first
    handle.focus()
    handle.press("End")
    message.get_by_text(re.compile(r"No bin passes the cutoff 1\.00")).wait_for()
    page.locator(".xflag-select select").select_option(label="[Mg/Fe]")
    page.locator(".counts").get_by_text("no star passes the filters").wait_for()
    assert "nan" not in page.locator(".flag-counts table").inner_text().lower()


def test_catalogue_page_histograms_and_scatters_any_columns(page, server, demo_bundle):
    from ddpayne_core.app import histogram, selection

    cat = load_bundle(demo_bundle[0]).catalog
    _open(page, server + "?page=catalog")
    page.locator(".scatter-map canvas").first.wait_for()
    page.locator(".hist-column select").select_option(label="S/N (snr)")
    total = """() => { for (const d of Bokeh.documents) { const f = d.get_model_by_name("histogram-linear");
        if (f) return f.renderers[0].data_source.data.top.reduce((a, b) => a + b, 0); } return -1; }"""
    expected = int(histogram(cat["snr"].to_numpy(), selection(cat))[0].sum())
    page.wait_for_function(f"() => ({total})() === {expected}")
    page.locator(".scatter-y select").select_option(label="logg [dex] (logg)")
    page.wait_for_function("() => Bokeh.documents.some(d => { const f = d.get_model_by_name("
                           "'scatter-map'); return f && f.left[0].axis_label.startsWith('logg'); })")
    page.locator(".scatter-scale").get_by_text("log").click()
    page.wait_for_function("() => Bokeh.documents.some(d => { const f = d.get_model_by_name("
                           "'scatter-map'); return f && f.renderers[0].glyph.color_mapper.type "
                           "=== 'LogColorMapper'; })")


def test_the_star_table_lists_the_shown_stars_and_a_row_click_inspects_one(page, server, demo_bundle):
    cat = load_bundle(demo_bundle[0]).catalog
    _open(page, server + "?page=explorer")
    page.locator(".star-table-card").get_by_text("Table of these stars").click()
    page.get_by_text(f"{len(cat):,} shown stars").wait_for()
    cells = page.locator(".star-table .tabulator-row")
    cells.nth(2).wait_for()
    row = int(cells.nth(2).locator(".tabulator-cell").first.inner_text())
    cells.nth(2).click()
    _wait_header_row(page, row)
    assert row == 2   # the table lists the shown stars in catalogue order


@pytest.fixture(scope="module")
def desi_server(desi_bundle):
    yield from _serve(desi_bundle)


def test_desi_bundle_shows_a_clicked_star_by_camera(page, desi_server, desi_bundle):
    """A DESI bundle (SYNTHETIC, test emulator): a click on the Kiel map inspects the star and
    its spectrum is drawn by camera, B, R and Z, each over its own wavelengths."""
    _kiel_map_box(page, desi_server)
    page.get_by_text("SYNTHETIC SURVEY").first.wait_for()
    cat = load_bundle(desi_bundle).catalog
    row = int(np.argmin(np.abs(cat["teff"] - cat["teff"].median()) / 300
                        + np.abs(cat["logg"] - cat["logg"].median())))
    page.mouse.click(*_screen_point(page, "kiel-map", cat["teff"].iloc[row], cat["logg"].iloc[row]))
    page.locator(".inspector").get_by_text(re.compile(f"Star row {row}\\b")).first.wait_for()
    page.wait_for_function("""() => Bokeh.documents.some(d => {
        const m = d.get_model_by_name("camera-Z"); return m && m.data.x.length > 100; })""")
    ranges = page.evaluate("""() => {
        for (const d of Bokeh.documents) {
            const out = {};
            for (const cam of ["B", "R", "Z"]) {
                const m = d.get_model_by_name("camera-" + cam);
                if (!m) break;
                const x = Array.from(m.data.x);
                out[cam] = [Math.min(...x), Math.max(...x), x.length];
            }
            if (Object.keys(out).length === 3) return out;
        }
        return null; }""")
    assert ranges["B"][0] < 3700 and ranges["B"][1] < 5780 <= ranges["R"][0]
    assert ranges["R"][1] < 7570 <= ranges["Z"][0] and ranges["Z"][1] > 9700
    assert all(n > 1000 for _, _, n in ranges.values())
