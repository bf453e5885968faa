"""Screenshots of the running apps for the README (apps/screenshots/*.png): serves the apps on a
bundle with `ddpayne app`, drives Debian's chromium with Playwright, clicks a star on the Kiel
map and starts a short retraining.

Usage: .venv/bin/python tools/screenshots.py [--bundle data/demo]
"""
import argparse
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(REPO / "data" / "demo"))
    ap.add_argument("--port", type=int, default=5077)
    ap.add_argument("--out", default=str(REPO / "apps" / "screenshots"))
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
            page.screenshot(path=str(out / "index.png"))
            page.goto(url + "?page=explorer")
            canvas = page.locator(".kiel-map canvas").first
            canvas.wait_for()
            page.wait_for_timeout(3000)
            box = canvas.bounding_box()
            page.mouse.click(box["x"] + 0.45 * box["width"], box["y"] + 0.72 * box["height"])
            page.locator(".inspector").get_by_text("Star row").first.wait_for()
            page.wait_for_timeout(3000)
            page.set_viewport_size({"width": 1500, "height": 2700})
            page.screenshot(path=str(out / "explorer.png"), full_page=True)
            page.set_viewport_size({"width": 1500, "height": 1100})
            page.goto(url + "?page=retrain")
            page.get_by_role("button", name="Start training").click()
            # A few epochs, so that the loss curves have something to show.
            page.locator(".training-status").filter(has_text=re.compile(r"epoch ([4-9]|\d\d)/")).wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "retrain.png"))
            page.get_by_role("button", name="Cancel").click()
            page.locator(".training-status").filter(has_text="cancelled").wait_for()
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
