"""Screenshots of the built book for the README, taken in headless Chromium.

Usage (from the repository root, after ``jupyter-book build .``)::

    python docs/screenshots.py _build/html

Writes, as crops of the pages as a reader sees them:

* ``docs/screenshot_sparse_view.png``: chapter 5, the orthogonal views (axial, coronal,
  sagittal) of every method at 8 views, with their error maps (the first position of the
  chapter's view-count slider);
* ``docs/screenshot_slider_first.png`` and ``docs/screenshot_slider_last.png``: chapter 2, the
  kernel-free TV-weight slider (no Python kernel, saved widget state) at its first and last
  position, so the README shows that moving it changes the picture.

It reuses the DevTools client of ``.ci/browser_check.py`` and exits with 1 if an element is
missing or the two slider pictures are identical.
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from browser_check import IMAGES_LOADED, Chromium, move_first_slider_to_end, open_page, screenshot, wait_until  # noqa: E402

# the element's box in page coordinates (Page.captureScreenshot clips in page coordinates)
RECT = """(() => {{
    const el = {element};
    if (!el) return null;
    el.scrollIntoView({{block: 'center'}});
    const r = el.getBoundingClientRect();
    return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}};
}})()"""
ORTHOVIEWS = "document.querySelector('img.widget-image').closest('.cell_output')"    # the view-count slider
SLIDER_WIDGET = "document.querySelector('.widget-slider').closest('.cell_output')"


def capture(browser, element, path):
    rect = browser.evaluate(RECT.format(element=element))
    if rect is None:
        raise SystemExit(f"{path.name}: element not found ({element})")
    time.sleep(0.3)                                   # let the scroll settle before the capture
    png = screenshot(browser, rect)
    path.write_bytes(png)
    print(f"wrote {path.relative_to(ROOT)} ({rect['width']:.0f} x {rect['height']:.0f} px)")
    return png


def main(html_root):
    html_root = Path(html_root)
    docs = ROOT / "docs"
    browser = Chromium("chromium")
    try:
        open_page(browser, html_root / "book" / "05_diffusionmbir.html", 30)
        wait_until(browser, IMAGES_LOADED, 30)
        capture(browser, ORTHOVIEWS, docs / "screenshot_sparse_view.png")

        open_page(browser, html_root / "book" / "02_mbir.html", 30)
        wait_until(browser, IMAGES_LOADED, 30)
        first = capture(browser, SLIDER_WIDGET, docs / "screenshot_slider_first.png")
        move_first_slider_to_end(browser)
        time.sleep(0.5)
        last = capture(browser, SLIDER_WIDGET, docs / "screenshot_slider_last.png")
    finally:
        browser.close()
    if first == last:
        raise SystemExit("the slider screenshots are identical: moving the slider did not change the page")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/html"))
