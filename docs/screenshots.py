"""Screenshots of the built book for the README, taken in headless Chromium.

Usage (from the repository root, after ``jupyter-book build .``)::

    python docs/screenshots.py _build/html

Writes, as crops of the pages as a reader sees them:

* ``docs/screenshot_sparse_view.png``: chapter 5, the orthogonal views (axial, coronal,
  sagittal) of every method at 8 views, with their error maps (the first position of the
  chapter's view-count slider);
* ``docs/screenshot_slider_first.png`` and ``docs/screenshot_slider_last.png``: chapter 2, the
  kernel-free TV-weight slider (no Python kernel, saved widget state) at its first and last
  position, so the README shows that moving it changes the picture;
* ``docs/screenshot_table.png``: chapter 5, the main sparse-view table (an HTML table with its
  caption, the best value of each column in bold);
* ``docs/screenshot_equation.png``: chapter 5, the flicker-ratio paragraph with its display
  equation as MathJax (served from the book itself) rendered it;
* ``docs/screenshot_viewer_middle.png`` and ``docs/screenshot_viewer_low.png``: chapter 5, the
  kernel-free 3D viewer of the whole test volume (truth, FBP, 3D ADMM-TV, DDS and their error
  maps) on its coronal axis, at the middle slice and after a click a third of the way along its
  slider (inside the body, not an empty end slice);
* ``docs/screenshot_ch5_lam_0.png``, ``..._lam_1.png``, ``..._lam_16.png``: chapter 5, the
  kernel-free lambda slider over saved DiffusionMBIR runs at lambda = 0, the default and 16 times
  the default (each frame's title gives its per-axis PSNR and flicker ratio);
* ``docs/screenshot_ch7_lam_first.png``, ``..._middle.png``, ``..._last.png``: chapter 7, the
  kernel-free lambda slider of 3D ADMM-TV on the validation head at three positions;
* ``docs/screenshot_error_colorbar.png``: chapter 5, the first orthogonal views with error maps and
  their colour bar.

The window is 1280 x 900 px, the width the book is checked at (``.ci/book_check.py``).

It reuses the DevTools client of ``.ci/browser_check.py`` and exits with 1 if an element is
missing, the maths is not typeset, or two pictures that a slider should change are identical.
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from browser_check import IMAGES_LOADED, Chromium, click, move_first_slider_to_end, open_page, screenshot, wait_until  # noqa: E402

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
TABLE = ("Array.from(document.querySelectorAll('table')).find(t => t.caption && "
         "t.caption.textContent.startsWith('Sparse-view CT, '))")
# the paragraph that introduces the flicker ratio, through its display equation
EQUATION = ("Array.from(document.querySelectorAll('div.math')).find(m => m.textContent.includes('flicker') "
            "|| (m.previousElementSibling || {}).textContent?.includes('flicker'))")
EQUATION_TYPESET = f"(() => {{ const m = {EQUATION}; return !!(m && m.querySelector('mjx-container')); }})()"
# a kernel-free slider by its label (live sliders of viz.live_slider are skipped), its track's rect
SLIDER_BY_LABEL = """((label) => {
    const s = Array.from(document.querySelectorAll('.widget-slider')).find(e => !e.closest('.widget-interact')
        && (e.querySelector('.widget-label') || {}).innerText?.trim() === label);
    if (!s) return null;
    s.scrollIntoView({block: 'center'});
    const r = (s.querySelector('.noUi-target, input[type=range]') || s).getBoundingClientRect();
    return {x: r.left, y: r.top, width: r.width, height: r.height};
})"""
SWEEP_BOX = ("Array.from(document.querySelectorAll('.widget-slider')).find(e => !e.closest('.widget-interact') && "
             "(e.querySelector('.widget-label') || {{}}).innerText?.trim() === '{label}').closest('.cell_output')")
ERROR_FIGURE = ("Array.from(document.querySelectorAll('.cell_output img')).find("
                "i => !i.classList.contains('widget-image') && i.naturalWidth > 600).closest('.cell_output')")
VIEWER = ("Array.from(document.querySelectorAll('.widget-toggle-buttons')).map(b => b.closest('.cell_output'))"
          ".find(o => o.querySelector('img.widget-image') && o.closest('section')?.id.startsWith('the-whole-volume'))")
# in the viewer: the button of an axis, and the visible slider (page-viewport rects, for clicks)
VIEWER_BUTTON = f"""((label) => {{
    const b = Array.from({VIEWER}.querySelectorAll('.widget-toggle-buttons button'))
        .find(b => b.innerText.trim() === label);
    b.scrollIntoView({{block: 'center'}});
    const r = b.getBoundingClientRect();
    return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
}})"""
VIEWER_SLIDER = f"""(() => {{
    const s = Array.from({VIEWER}.querySelectorAll('.widget-slider')).find(e => e.offsetParent !== null);
    s.scrollIntoView({{block: 'center'}});
    const r = (s.querySelector('.noUi-target, input[type=range]') || s).getBoundingClientRect();
    return {{x: r.left, y: r.top, width: r.width, height: r.height}};
}})()"""


def capture(browser, element, path):
    rect = browser.evaluate(RECT.format(element=element))
    if rect is None:
        raise SystemExit(f"{path.name}: element not found ({element})")
    time.sleep(0.3)                                   # let the scroll settle before the capture
    png = screenshot(browser, rect)
    path.write_bytes(png)
    print(f"wrote {path.relative_to(ROOT)} ({rect['width']:.0f} x {rect['height']:.0f} px)")
    return png


def slider_positions(browser, label, fractions, paths):
    """Click the kernel-free slider named ``label`` at each fraction of its track and capture its
    output box after each click; fails when two positions give the same picture."""
    shots = []
    for fraction, path in zip(fractions, paths):
        track = browser.evaluate(f"{SLIDER_BY_LABEL}({label!r})")
        if track is None:
            raise SystemExit(f"no kernel-free slider labelled {label!r}")
        x = track["x"] + min(max(fraction, 0.01), 0.99) * track["width"]
        click(browser, x, track["y"] + track["height"] / 2)
        time.sleep(0.5)
        shots.append(capture(browser, SWEEP_BOX.format(label=label), path))
    if len(set(shots)) < len(shots):
        raise SystemExit(f"the slider {label!r} showed the same picture at two positions")


def main(html_root):
    html_root = Path(html_root)
    docs = ROOT / "docs"
    browser = Chromium("chromium")
    try:
        open_page(browser, html_root / "book" / "05_diffusionmbir.html", 30)
        browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        wait_until(browser, IMAGES_LOADED, 30)
        capture(browser, ERROR_FIGURE, docs / "screenshot_error_colorbar.png")
        # lam factors 0, 1/4, 1, 4, 16: positions 0, 2 and 4 of 5
        slider_positions(browser, "lam", (0.0, 0.5, 1.0),
                         [docs / f"screenshot_ch5_lam_{k}.png" for k in ("0", "1", "16")])
        capture(browser, ORTHOVIEWS, docs / "screenshot_sparse_view.png")
        capture(browser, TABLE, docs / "screenshot_table.png")
        if not wait_until(browser, EQUATION_TYPESET, 30):
            raise SystemExit("the flicker-ratio equation is not typeset by MathJax")
        capture(browser, f"(() => {{ const m = {EQUATION}; const p = m.previousElementSibling; "
                         "const box = document.createElement('div'); m.before(box); box.append(p, m); return box; })()",
                docs / "screenshot_equation.png")
        button = browser.evaluate(f"{VIEWER_BUTTON}('coronal')")
        click(browser, button["x"], button["y"])
        time.sleep(0.5)
        middle = capture(browser, VIEWER, docs / "screenshot_viewer_middle.png")
        slider = browser.evaluate(VIEWER_SLIDER)
        click(browser, slider["x"] + 0.3 * slider["width"], slider["y"] + slider["height"] / 2)
        time.sleep(0.5)
        low = capture(browser, VIEWER, docs / "screenshot_viewer_low.png")
        if middle == low:
            raise SystemExit("the viewer screenshots are identical: moving its slider did not change the page")

        open_page(browser, html_root / "book" / "07_mri.html", 30)
        browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        wait_until(browser, IMAGES_LOADED, 30)
        slider_positions(browser, "TV weight", (0.0, 0.5, 1.0),
                         [docs / f"screenshot_ch7_lam_{k}.png" for k in ("first", "middle", "last")])

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
