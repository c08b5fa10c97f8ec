"""The README's screenshots of the web app: one scan uploaded, at 1280x800 and at 420 px wide, in Debian's Chromium.

    PYTHONPATH=. python benchmarks/web_screenshots.py http://127.0.0.1:8000 [--scan SCAN] [--out docs/img]

Against a running `python -m pipeline serve` (the trained demo's, for the README); SCAN defaults to a demo-sized
grayscale slice (tests/web_project.py's). Writes OUT/web-1280.png and OUT/web-420.png, each what the window shows
once the answer is drawn, and prints whether the page scrolls sideways at either width.
"""

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.web_project import write_scan

CHROMIUM = "/usr/bin/chromium"
WINDOWS = {"web-1280.png": (1280, 800), "web-420.png": (420, 900)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--scan", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        scan = args.scan or write_scan(Path(folder) / "scan.jpg")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        for name, (width, height) in WINDOWS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(args.url)
            page.wait_for_selector("#warnings .warning")
            page.wait_for_selector("div.curve svg", state="attached")
            page.set_input_files("#files", str(scan))
            page.wait_for_selector(".prediction .top-class")
            page.wait_for_selector(".prediction .bars svg", state="attached")
            page.screenshot(path=args.out / name)
            wide = page.evaluate("document.documentElement.scrollWidth")
            print(f"{args.out / name}: {width}x{height}, page {wide} px wide"
                  + (" (scrolls sideways)" if wide > width else ""))
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
