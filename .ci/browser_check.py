"""Check that a built book page's kernel-free sliders work in a real browser.

Usage::

    python .ci/browser_check.py _build/html/book/02_mbir.html [--screenshot out.png]

It opens the page in headless Chromium (Debian: ``apt-get install chromium``)
and checks that

(a) the widgets rendered and every widget image loaded (natural width > 0);
(b) moving the first slider changes the picture shown (the visible image's
    ``src`` and a screenshot of it both change).

It talks to Chromium over the DevTools protocol on a pipe
(``--remote-debugging-pipe``), so it needs only the standard library. Failed
requests (e.g. to a CDN that cannot be reached) and page errors are printed.
Exit code 0 when both checks pass, 1 otherwise.
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
    "--window-size=1200,900",
]


class Chromium:
    """A headless Chromium driven over the DevTools protocol on fds 3 and 4."""

    def __init__(self, executable):
        self.profile = tempfile.mkdtemp(prefix="browser_check_")
        to_child, self._write = os.pipe()  # we write commands, Chromium reads fd 3
        self._read, from_child = os.pipe()  # Chromium writes replies on fd 4
        # copy the child's ends above fd 10 so that placing them on 3 and 4 cannot clobber them
        high_in = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
        high_out = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)

        def place_pipes():
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=place_pipes,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_child, from_child, high_in, high_out):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events = []
        self.session = None

    def _receive(self, timeout):
        """One message from Chromium, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                return None
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, timeout=30, **params):
        """Send one command (to the attached page, if any) and return its result."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            command["sessionId"] = self.session
        os.write(self._write, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                break
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)
        raise TimeoutError(f"no reply to {method} within {timeout} s")

    def wait_for_event(self, method, timeout):
        """Wait for an event such as ``Page.loadEventFired``."""
        if any(e.get("method") == method for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                return False
            self.events.append(message)
            if message.get("method") == method:
                return True
        return False

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        self.process.kill()
        self.process.wait()
        os.close(self._read)
        os.close(self._write)
        shutil.rmtree(self.profile, ignore_errors=True)


# JavaScript run in the page -------------------------------------------------

WIDGET_IMAGES = "Array.from(document.querySelectorAll('img.widget-image'))"
VISIBLE_IMAGE = f"{WIDGET_IMAGES}.find(img => img.offsetParent !== null)"
IMAGES_LOADED = f"{WIDGET_IMAGES}.length > 0 && {WIDGET_IMAGES}.every(img => img.complete)"
IMAGES_STATE = f"""{WIDGET_IMAGES}.map(img => ({{
    complete: img.complete, width: img.naturalWidth, visible: img.offsetParent !== null}}))"""
FIRST_SLIDER_RECT = """(() => {
    const s = document.querySelector('.widget-slider .noUi-target, input[type=range]');
    if (!s) return null;
    s.scrollIntoView({block: 'center'});  // a click only lands inside the viewport
    const r = s.getBoundingClientRect();
    return {x: r.left, y: r.top, width: r.width, height: r.height};
})()"""
VISIBLE_IMAGE_RECT = f"""(() => {{
    const img = {VISIBLE_IMAGE};
    if (!img) return null;
    img.scrollIntoView();
    const r = img.getBoundingClientRect();
    // Page.captureScreenshot clips in page coordinates, not viewport ones
    return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}};
}})()"""


def wait_until(browser, expression, timeout):
    """Poll a JavaScript expression until it is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = browser.evaluate(expression)
    while not value and time.monotonic() < deadline:
        time.sleep(0.25)
        value = browser.evaluate(expression)
    return value


def screenshot(browser, rect):
    clip = {**rect, "scale": 1}
    data = browser.send("Page.captureScreenshot", format="png", clip=clip)["data"]
    return base64.b64decode(data)


def click(browser, x, y):
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def move_first_slider_to_end(browser):
    """Click the right end of the page's first slider (located afresh: the page may have scrolled)."""
    slider = browser.evaluate(FIRST_SLIDER_RECT)
    click(browser, slider["x"] + slider["width"] - 2, slider["y"] + slider["height"] / 2)


def open_page(browser, html, timeout):
    """Open a local HTML file in a new tab; True once its load event fired."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    browser.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Network", "Log"):
        browser.send(f"{domain}.enable")
    browser.send("Page.navigate", url=Path(html).resolve().as_uri())
    return browser.wait_for_event("Page.loadEventFired", timeout)


def check_page(html, executable="chromium", timeout=30, screenshot_path=None):
    """Run checks (a) and (b) on one built page; return a dict of findings."""
    browser = Chromium(shutil.which(executable) or executable)
    report = {"page": str(html)}
    try:
        report["loaded"] = open_page(browser, html, timeout)

        images = wait_until(browser, IMAGES_LOADED, timeout) and browser.evaluate(IMAGES_STATE)
        report["images"] = images or []
        report["images_rendered"] = bool(images) and all(i["width"] > 0 for i in images)

        slider = browser.evaluate(FIRST_SLIDER_RECT)
        report["slider_found"] = slider is not None
        if report["images_rendered"] and slider:
            before_rect = browser.evaluate(VISIBLE_IMAGE_RECT)
            before = (browser.evaluate(f"{VISIBLE_IMAGE}.src"), screenshot(browser, before_rect))
            move_first_slider_to_end(browser)
            time.sleep(0.5)
            after_rect = browser.evaluate(VISIBLE_IMAGE_RECT)
            after = (browser.evaluate(f"{VISIBLE_IMAGE}.src"), screenshot(browser, after_rect))
            report["src_changed"] = before[0] != after[0]
            report["screenshot_changed"] = before[1] != after[1]
            if screenshot_path:
                Path(screenshot_path).write_bytes(after[1])
        report["failed_requests"] = sorted(
            {
                request_url(browser.events, e["params"]["requestId"])
                + f" ({e['params'].get('errorText')})"
                for e in browser.events
                if e.get("method") == "Network.loadingFailed"
            }
        )
        report["page_errors"] = [
            e["params"]["exceptionDetails"].get("text", "")
            + " "
            + str(e["params"]["exceptionDetails"].get("exception", {}).get("description", ""))[:200]
            for e in browser.events
            if e.get("method") == "Runtime.exceptionThrown"
        ]
    finally:
        browser.close()
    report["ok"] = bool(
        report.get("images_rendered")
        and report.get("src_changed")
        and report.get("screenshot_changed")
    )
    return report


def request_url(events, request_id):
    for e in events:
        if e.get("method") == "Network.requestWillBeSent" and e["params"]["requestId"] == request_id:
            return e["params"]["request"]["url"]
    return f"request {request_id}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", help="built HTML pages to check")
    parser.add_argument("--chromium", default="chromium", help="the Chromium executable")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for widgets")
    parser.add_argument("--screenshot", help="save the image after moving the slider here")
    args = parser.parse_args()
    ok = True
    for page in args.pages:
        report = check_page(page, args.chromium, args.timeout, args.screenshot)
        print(json.dumps(report, indent=2))
        ok = ok and report["ok"]
    print("browser check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
