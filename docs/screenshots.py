"""Screenshots of web pages in headless Chromium, for docs/screenshots.sh.

    python docs/screenshots.py SPEC.json

SPEC is a JSON list of shots: {"file": "x.png", "url": "http://...", "wait": ["text", ...],
"click": "Artifacts" (optional), "wait_after_click": ["text", ...] (optional),
"scroll_to": "text" (optional), "drag": {"selector": "css", "dx": 120} (optional: widen a
column by its resize handle), "settle": 3 (seconds, optional)}.

Chromium is driven through its DevTools protocol rather than `chromium --screenshot`, so that
each shot waits until the page shows its texts (not a fixed time budget), and so that MLflow's
Assistant side panel, which MLflow opens on a first visit to a local server, stays closed (it
hides a third of the page). Each shot is saved as an optimised palette PNG. Exits 1 when a
page never shows a text it should (the screenshot is still written, for a look).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from websockets.sync.client import connect

# MLflow 3's UI keeps these in localStorage (useLocalStorage: `${key}_v${version}`, JSON):
# mark the Assistant's first-load auto-open as done, and its panel as closed.
CLOSE_ASSISTANT = """
try {
  localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
  localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
} catch (e) {}
"""


class Page:
    def __init__(self, ws_url: str) -> None:
        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_texts(self, texts: list[str], timeout: float) -> list[str]:
        """Wait until the page's text holds every one of ``texts``; return the missing ones."""
        deadline = time.monotonic() + timeout
        check = (
            f"(() => {{ const t = document.body ? document.body.innerText : ''; "
            f"return {json.dumps(texts)}.filter(x => !t.includes(x)); }})()"
        )
        missing = texts
        while time.monotonic() < deadline:
            missing = self.js(check) or []
            if not missing:
                return []
            time.sleep(0.5)
        return missing

    def click_text(self, text: str) -> bool:
        return bool(
            self.js(f"""(() => {{
          const want = {json.dumps(text)};
          const hits = [...document.body.querySelectorAll('*')].filter(
            e => e.textContent.trim() === want && e.getClientRects().length > 0);
          if (!hits.length) return false;
          // the first innermost one (its ancestors hold the same text)
          const el = hits.find(e => !hits.some(o => o !== e && e.contains(o)));
          (el.closest('button, a, [role=tab], [role=button], li') || el).click();
          return true;
        }})()""")
        )

    def drag_right(self, selector: str, dx: int) -> bool:
        """Drag the right edge of ``selector`` (a table's column header: its resize handle)
        ``dx`` pixels right, then move the mouse away (no tooltip in the picture)."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) "
            "return null; const r = e.getBoundingClientRect(); "
            "return [r.right - 3, r.top + r.height / 2]; })()"
        )
        if not box:
            return False
        x, y = box
        mouse = "Input.dispatchMouseEvent"
        held = {"button": "left", "buttons": 1}
        self.call(mouse, type="mouseMoved", x=x, y=y)
        self.call(mouse, type="mousePressed", x=x, y=y, clickCount=1, **held)
        for step in range(1, 11):
            self.call(mouse, type="mouseMoved", x=x + dx * step / 10, y=y, **held)
            time.sleep(0.05)
        self.call(mouse, type="mouseReleased", x=x + dx, y=y, clickCount=1, **held)
        self.call(mouse, type="mouseMoved", x=1, y=1)
        return True

    def scroll_to_text(self, text: str) -> bool:
        return bool(
            self.js(f"""(() => {{
          const want = {json.dumps(text)};
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          while (walker.nextNode()) {{
            if (walker.currentNode.textContent.includes(want)) {{
              walker.currentNode.parentElement.scrollIntoView({{block: 'start'}});
              return true;
            }}
          }}
          return false;
        }})()""")
        )


def start_chromium(
    binary: str, width: int, height: int, profile: str
) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"DevTools listening on ws://([\d.]+:\d+)/", line)
        if match:
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"error: {binary} did not start its DevTools endpoint")


def save_png(data: bytes, path: Path) -> None:
    """Palette PNG (UI screenshots have few colours): a fraction of the size, same look."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    small.save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=90, help="seconds a page may take")
    args = parser.parse_args()
    shots = json.loads(args.spec.read_text())

    profile = tempfile.mkdtemp(prefix="mtlflow-shots-")
    proc, endpoint = start_chromium(args.chromium, args.width, args.height, profile)
    failed = False
    try:
        with urllib.request.urlopen(f"http://{endpoint}/json/list", timeout=30) as reply:
            targets = [t for t in json.load(reply) if t.get("type") == "page"]
        page = Page(targets[0]["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=args.width,
            height=args.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        page.call("Page.addScriptToEvaluateOnNewDocument", source=CLOSE_ASSISTANT)
        for shot in shots:
            page.call("Page.navigate", url="about:blank")
            page.call("Page.navigate", url=shot["url"])
            missing = page.wait_texts(shot.get("wait", []), args.timeout)
            if not missing and shot.get("click"):
                if not page.click_text(shot["click"]):
                    missing = [f"(a '{shot['click']}' to click)"]
                else:
                    missing = page.wait_texts(shot.get("wait_after_click", []), args.timeout)
            drag = shot.get("drag")
            if not missing and drag and not page.drag_right(drag["selector"], drag["dx"]):
                missing = [f"(an element {drag['selector']} to drag)"]
            if not missing and shot.get("scroll_to") and not page.scroll_to_text(shot["scroll_to"]):
                missing = [f"(text to scroll to: '{shot['scroll_to']}')"]
            time.sleep(shot.get("settle", 3))  # charts and fonts finish drawing
            png = page.call("Page.captureScreenshot", format="png")["data"]
            save_png(base64.b64decode(png), Path(shot["file"]))
            size = Path(shot["file"]).stat().st_size // 1024
            if missing:
                failed = True
                print(
                    f"error: {shot['file']}: {shot['url']} never showed {missing}", file=sys.stderr
                )
            else:
                print(f"{shot['file']} ({size} KiB): {shot['url']}")
        page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
