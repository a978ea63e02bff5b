"""Open a Locust HTML report in a real headless Chromium: do its charts render?

    python -m tests.browser.report_page IN.json OUT.json

IN.json::

    {"url": "file:///…/report.html", "screenshot": "/…/report.png", "width": 1280,
     "wait_s": 30, "timeout_s": 60}

The report is one self-contained file (Locust 2.47 bundles its React app and echarts into
it; nothing is fetched). The page is polled until it has its echarts charts, each a
``<div _echarts_instance_>`` holding a ``<canvas>``, and until what they drew is the same on
two polls in a row (echarts animates its lines in): then a full-page screenshot. Drawn
content is counted on the canvases' own pixels: *painted* pixels (any alpha) include axes
and labels; *coloured* ones (saturated, unlike the grey axes, grid and text) are the
series' lines.

OUT.json::

    {"charts": [{"width", "height", "canvases", "painted", "coloured"}, ...],
     "text": document.body.innerText, "exact_rows": rows of the exact-figures table,
     "chromium": version, "screenshot": path, "console": [...], "timing": {...}}

or ``{"fatal": "..."}``. Chromium is Debian's (tests/browser/driver.py: the same flags, a
fresh profile and HOME, every process it started killed at the end and at the timeout).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.browser.driver import FATAL_EXIT, _kill_ours, _launch, _write_json

POLL_S = 0.25
STABLE_POLLS = 2  # the same drawing on this many polls in a row: the animation is over

# Every echarts chart of the page: its box, and what its canvases hold.
CHARTS_JS = """() => {
  const out = [];
  for (const chart of document.querySelectorAll("[_echarts_instance_]")) {
    const box = chart.getBoundingClientRect();
    let painted = 0, coloured = 0, canvases = 0;
    for (const canvas of chart.querySelectorAll("canvas")) {
      canvases += 1;
      if (!canvas.width || !canvas.height) continue;
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;
        painted += 1;
        const hi = Math.max(data[i], data[i + 1], data[i + 2]);
        const lo = Math.min(data[i], data[i + 1], data[i + 2]);
        if (hi - lo > 80 && data[i + 3] > 128) coloured += 1;
      }
    }
    out.push({width: box.width, height: box.height, canvases, painted, coloured});
  }
  return out;
}"""

EXACT_ROWS_JS = """() => Array.from(
  document.querySelectorAll("#turncheck-exact tr"),
  tr => Array.from(tr.cells, td => td.innerText.trim()))"""


def run(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    url, shot = str(spec["url"]), str(spec["screenshot"])
    width = int(spec.get("width") or 1280)
    wait_s = float(spec.get("wait_s") or 30.0)
    console: list[str] = []
    timing: dict[str, float] = {}
    started = time.monotonic()
    with sync_playwright() as pw:
        context = _launch(pw, spec, workdir)
        try:
            timing["launch_s"] = time.monotonic() - started
            version = context.browser.version if context.browser else ""
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda msg: console.append(f"console.{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            page.set_viewport_size({"width": width, "height": 900})
            opened = time.monotonic()
            page.goto(url, wait_until="load", timeout=15_000)
            timing["load_s"] = time.monotonic() - opened
            charts: list[dict[str, Any]] = []
            stable = 0
            deadline = opened + wait_s
            while time.monotonic() < deadline:  # bounded by wait_s
                now = page.evaluate(CHARTS_JS)
                drawn = bool(now) and all(c["coloured"] > 0 for c in now)
                stable = stable + 1 if drawn and now == charts else 0
                charts = now
                if stable >= STABLE_POLLS:
                    break
                time.sleep(POLL_S)
            timing["charts_s"] = time.monotonic() - opened
            page.screenshot(path=shot, full_page=True, timeout=15_000)
            return {
                "charts": charts,
                "stable": stable >= STABLE_POLLS,
                "text": page.evaluate("() => document.body.innerText"),
                "exact_rows": page.evaluate(EXACT_ROWS_JS),
                "chromium": version,
                "screenshot": shot,
                "console": console,
                "timing": timing,
            }
        finally:
            context.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.browser.report_page IN.json OUT.json", file=sys.stderr)
        return 2
    in_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(in_path.read_text())
    timeout_s = float(spec.get("timeout_s") or 60.0)
    workdir = Path(tempfile.mkdtemp(prefix="turncheck-report-"))

    def give_up() -> None:
        # A timer thread: the Playwright call may be stuck, so kill what we started and leave.
        with contextlib.suppress(Exception):
            _write_json(out_path, {"fatal": f"report_page timed out after {timeout_s:.0f} s"})
        _kill_ours(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(FATAL_EXIT)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        out = run(spec, workdir)
    except Exception as exc:
        _write_json(out_path, {"fatal": f"{type(exc).__name__}: {exc}"})
        print(f"report_page: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        watchdog.cancel()
        _kill_ours(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    _write_json(out_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
