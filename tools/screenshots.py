"""Screenshots of the running apps for the README (apps/screenshots/*.png): serves the apps on a
bundle with `ddpayne app`, drives Debian's chromium with Playwright, clicks a star on the Kiel
map, opens the catalogue plots and starts a short retraining.

Usage: .venv/bin/python tools/screenshots.py [--bundle data/demo] [--prefix real_]
"""
import argparse
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(REPO / "data" / "demo"))
    ap.add_argument("--port", type=int, default=5077)
    ap.add_argument("--out", default=str(REPO / "apps" / "screenshots"))
    ap.add_argument("--prefix", default="", help="prefix of the PNG names (e.g. real_)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}/apps"
    server = subprocess.Popen([sys.executable, "-m", "ddpayne_core.cli", "app", "--bundle",
                               args.bundle, "--port", str(args.port)], cwd=REPO)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_text("Survey explorer").first.wait_for()
            page.screenshot(path=str(out / f"{args.prefix}index.png"))
            page.goto(url + "?page=explorer")
            canvas = page.locator(".kiel-map canvas").first
            canvas.wait_for()
            page.wait_for_timeout(3000)
            # Click a real star: the catalogue row nearest the middle of the Kiel diagram, placed on
            # screen through the browser's own view of the map.
            cat = pd.read_parquet(Path(args.bundle) / "catalog.parquet", columns=["teff", "logg"])
            row = int(np.argmin(np.abs(cat["teff"] - cat["teff"].median()) / 300
                                + np.abs(cat["logg"] - cat["logg"].median())))
            xy = page.evaluate("""([x, y]) => {
                for (const doc of Bokeh.documents) {
                    const fig = doc.get_model_by_name("kiel-map");
                    if (!fig) continue;
                    const v = Bokeh.index.find_one(fig), r = v.canvas_view.el.getBoundingClientRect();
                    return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
                }
            }""", [float(cat["teff"].iloc[row]), float(cat["logg"].iloc[row])])
            page.mouse.click(*xy)
            page.locator(".inspector").get_by_text("Star row").first.wait_for()
            page.wait_for_timeout(3000)
            page.set_viewport_size({"width": 1500, "height": 2700})
            page.screenshot(path=str(out / f"{args.prefix}explorer.png"), full_page=True)
            page.set_viewport_size({"width": 1500, "height": 1100})
            page.goto(url + "?page=catalog")
            page.locator(".scatter-map canvas").first.wait_for()
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / f"{args.prefix}catalog.png"), full_page=True)
            page.goto(url + "?page=retrain")
            page.get_by_role("button", name="Start training").click()
            # A few epochs, so that the loss curves have something to show.
            page.locator(".training-status").filter(has_text=re.compile(r"epoch ([4-9]|\d\d)/")).wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / f"{args.prefix}retrain.png"))
            page.get_by_role("button", name="Cancel").click()
            page.locator(".training-status").filter(has_text="cancelled").wait_for()
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
