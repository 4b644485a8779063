"""Check every page of a built book in a real browser (headless Chromium).

Usage::

    python .ci/book_check.py _build/smoke/_build/html [--report report.json]

For every HTML page of the book (``book/*.html`` and the landing page) it asserts:

1. the page loads, with no page error (an uncaught exception or a JavaScript SyntaxError);
2. every image loaded (``complete`` and a natural width > 0), widget pictures included;
3. no raw pipe table: no ``| --- |`` text outside code;
4. no raw maths: MathJax (served from the book's own ``_static``) typeset every formula (each
   ``.math`` element holds an ``mjx-container``), and no ``\\(``, ``\\[`` or ``$$`` is left in
   the visible text outside code;
5. every kernel-free slider changes its picture: each visible slider is moved to its right end
   and the pictures of its widget must change (the sliders of ``viz.live_slider``, which need a
   running kernel, are counted apart and not moved); every axis button of a 3D viewer is pressed and
   the shown picture must change, then its slider is moved too.

Prints one JSON report per page (what was asserted, what was seen) and a summary; exit code 0
when every page passes. Reuses the DevTools-over-a-pipe driver of ``browser_check.py``.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from browser_check import Chromium, click, open_page, request_url, wait_until  # noqa: E402

CODE = "pre, code, script, style, mjx-container, .highlight"
VISIBLE_TEXT = f"""(() => {{
    const main = (document.querySelector('main') || document.body).cloneNode(true);
    main.querySelectorAll('{CODE}').forEach(e => e.remove());
    return main.innerText;
}})()"""
IMAGES = """Array.from(document.images).map(i => ({src: i.src.slice(0, 80), complete: i.complete,
    width: i.naturalWidth}))"""
MATH = """(() => ({math: document.querySelectorAll('.math').length,
    typeset: Array.from(document.querySelectorAll('.math')).filter(m => m.querySelector('mjx-container')).length,
    mathjax: !!(window.MathJax && window.MathJax.startup)}))()"""
MATH_DONE = """(() => { const m = document.querySelectorAll('.math');
    return m.length === 0 || Array.from(m).every(e => e.querySelector('mjx-container')); })()"""
# the i-th visible, not yet checked slider: its rect and the pictures of its widget box
SLIDER = """((i) => {
    const s = Array.from(document.querySelectorAll('.widget-slider')).filter(  // live (kernel) sliders: skipped
        e => e.offsetParent !== null && !e.dataset.checked && !e.closest('.widget-interact'))[0];
    if (!s) return null;
    s.dataset.checked = '1';
    s.scrollIntoView({block: 'center'});
    const r = (s.querySelector('.noUi-target, input[type=range]') || s).getBoundingClientRect();
    window.__box = s.closest('.widget-vbox') || document.body;
    return {x: r.left, y: r.top, width: r.width, height: r.height};
})()"""
BOX_PICTURES = """Array.from((window.__box || document).querySelectorAll('img.widget-image')).filter(
    i => i.offsetParent !== null).map(i => i.src).join('|')"""
WINDOW = (1280, 900)
MIN_SCALE = 0.7          # shown width / pixel width of every picture (check 6)
LAYOUT = """(() => {
    const shown = Array.from(document.images).filter(i => i.offsetParent !== null && i.naturalWidth > 0);
    const shrunk = shown.map((i, k) => ({image: k, natural: i.naturalWidth, shown: i.clientWidth,
        near: ((i.closest('.cell') || {}).innerText || '').slice(0, 60)})).filter(i => i.shown < %s * i.natural);
    const wide = Array.from(document.querySelectorAll('.cell_output, .widget-container')).filter(
        e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 2).map(
        e => ({box: e.className.slice(0, 60), scroll: e.scrollWidth, width: e.clientWidth}));
    return {page: document.documentElement.scrollWidth, window: window.innerWidth, shrunk, wide,
        progress: document.querySelectorAll('.widget-hprogress, .widget-progress, progress').length};
})()""" % MIN_SCALE
TOGGLES = """Array.from(document.querySelectorAll('.widget-toggle-buttons button')).filter(
    b => b.offsetParent !== null && !b.classList.contains('mod-active') && !b.dataset.checked).length"""
TOGGLE = """(() => {
    const b = Array.from(document.querySelectorAll('.widget-toggle-buttons button')).filter(
        b => b.offsetParent !== null && !b.classList.contains('mod-active') && !b.dataset.checked)[0];
    b.dataset.checked = '1';
    b.scrollIntoView({block: 'center'});
    window.__box = b.closest('.widget-vbox') || document.body;
    const r = b.getBoundingClientRect();
    return {x: r.left + r.width / 2, y: r.top + r.height / 2, label: b.innerText};
})()"""


def move_sliders(browser, report):
    """Move every visible unchecked slider to its end; record whether its pictures changed."""
    while True:
        rect = browser.evaluate(SLIDER)
        if rect is None:
            return
        before = browser.evaluate(BOX_PICTURES)
        click(browser, rect["x"] + rect["width"] - 2, rect["y"] + rect["height"] / 2)
        time.sleep(0.4)
        after = browser.evaluate(BOX_PICTURES)
        report["sliders"].append({"pictures": bool(before), "changed": bool(before) and before != after})


def check_page(browser, html, timeout):
    report = {"page": str(html), "sliders": [], "axis_buttons": []}
    report["loaded"] = open_page(browser, html, timeout)
    browser.send("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                 mobile=False)
    wait_until(browser, "document.readyState === 'complete'", timeout)
    wait_until(browser, MATH_DONE, timeout)
    time.sleep(1.0)                                       # widgets render after the load event
    images = browser.evaluate(IMAGES)
    report["images"] = len(images)
    report["images_broken"] = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    text = browser.evaluate(VISIBLE_TEXT) or ""
    report["raw_pipe_table"] = any(line.strip().startswith("|") and "---" in line for line in text.splitlines())
    report["raw_maths"] = [tok for tok in ("\\(", "\\[", "$$") if tok in text]
    report["maths"] = browser.evaluate(MATH)
    layout = browser.evaluate(LAYOUT)
    report["shrunk_pictures"], report["wide_boxes"] = layout["shrunk"], layout["wide"]
    report["sideways_page"] = layout["page"] > layout["window"]
    report["progress_bars"] = layout["progress"] + sum(("it/s]" in line or "s/it]" in line)
                                                       for line in text.splitlines())
    report["live_sliders"] = browser.evaluate("document.querySelectorAll('.widget-interact .widget-slider').length")
    move_sliders(browser, report)
    # the buttons shown pressed at first were seen with the sliders above: not pressed again (a Stack
    # re-renders a page it shows again, with its slider already at the end)
    browser.evaluate("document.querySelectorAll('.widget-toggle-buttons button.mod-active')"
                     ".forEach(b => b.dataset.checked = '1')")
    while browser.evaluate(TOGGLES):
        button = browser.evaluate(TOGGLE)
        before = browser.evaluate(BOX_PICTURES)
        click(browser, button["x"], button["y"])
        time.sleep(0.4)
        after = browser.evaluate(BOX_PICTURES)
        report["axis_buttons"].append({"label": button["label"], "changed": before != after})
        move_sliders(browser, report)                     # the axis's own slider, now visible
    report["failed_requests"] = sorted({request_url(browser.events, e["params"]["requestId"])
                                        for e in browser.events if e.get("method") == "Network.loadingFailed"})
    report["page_errors"] = [str(e["params"]["exceptionDetails"].get("exception", {}).get("description", ""))[:200]
                             or e["params"]["exceptionDetails"].get("text", "")
                             for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
    m = report["maths"]
    report["ok"] = bool(report["loaded"] and not report["page_errors"] and not report["images_broken"]
                        and not report["raw_pipe_table"] and not report["raw_maths"] and m["typeset"] == m["math"]
                        and not report["shrunk_pictures"] and not report["wide_boxes"]
                        and not report["sideways_page"] and not report["progress_bars"]
                        and all(s["changed"] for s in report["sliders"])
                        and all(b["changed"] for b in report["axis_buttons"]))
    return report


def book_pages(html_dir):
    html_dir = Path(html_dir)
    return sorted(html_dir.glob("book/*.html")) + [p for p in [html_dir / "index.html"] if p.exists()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", help="the built book's HTML folder (…/_build/html)")
    parser.add_argument("--chromium", default="chromium", help="the Chromium executable")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for a page and its maths")
    parser.add_argument("--report", help="also write every page's report to this JSON file")
    args = parser.parse_args()
    pages = book_pages(args.html_dir)
    if not pages:
        print(f"no pages under {args.html_dir}")
        return 1
    reports = []
    for page in pages:
        browser = Chromium(shutil.which(args.chromium) or args.chromium)   # a fresh browser per page
        try:
            reports.append(check_page(browser, page, args.timeout))
        finally:
            browser.close()
        r = reports[-1]
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {Path(r['page']).name}: {r['images']} images, "
              f"{r['maths']['typeset']}/{r['maths']['math']} formulas typeset, {len(r['sliders'])} sliders, "
              f"{len(r['axis_buttons'])} axis buttons, {len(r['page_errors'])} page errors", flush=True)
        if not r["ok"]:
            print(json.dumps(r, indent=1))
    if args.report:
        Path(args.report).write_text(json.dumps(reports, indent=1))
    failed = [Path(r["page"]).name for r in reports if not r["ok"]]
    print(f"book check: {len(reports) - len(failed)} of {len(reports)} pages passed"
          + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
