"""The Locust HTML report of turncheck's load, opened in a real headless Chromium (issue 23).

A short headless run (``--processes 1``: a master and one forked worker, about 5 s) against a
coturn on loopback writes ``--html report.html``; Debian's Chromium opens it
(tests/browser/report_page.py) and waits for its echarts charts to be drawn. Then: every chart
has a size and drawn series, the TURN request rows and their µs column titles are on the page
(and no "(ms)"), and the exact-figures section is part of the page with the figures of
PREFIX_turn.csv. A full-page screenshot goes to $TURNCHECK_LOCUST_SHOT (a .png path, or a
directory), else to the test's tmp_path.

Locust is never imported here: it patches the process with gevent at import.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.chromium import require_chromium
from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block, release_ports

pytestmark = pytest.mark.timeout(180)

SHOT_ENV = "TURNCHECK_LOCUST_SHOT"
RUN_TIME_S = 5
PAIRS = 2  # per user
USERS = 2
RUN_BOUND = 90.0  # seconds for the Locust run, start-up and stop included
BROWSER_BOUND = 60.0  # seconds for the browser, at most
ROWS = ("Allocate (µs)", "ChannelBind (µs)", "echo RTT (µs)", "jitter per pair (µs)")
CHARTS = 3  # Total Requests per Second, Response Times, Number of Users
ENV = {
    **os.environ,
    "TURNCHECK_USERNAME": "alice",
    "TURNCHECK_CREDENTIAL": "s3cret",
    "PYTHONUNBUFFERED": "1",
}
ENV.pop("TURNCHECK_SECRET", None)


def locust_bin() -> str:
    from tests.test_locust import find_locust

    return find_locust()


def shot_path(tmp_path: Path) -> Path:
    given = os.environ.get(SHOT_ENV)
    if not given:
        return tmp_path / "locust-report.png"
    path = Path(given)
    if path.is_dir():
        return path / "locust-report.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run_locust(locust: str, server: Coturn, tmp_path: Path) -> tuple[Path, Path, str]:
    """A headless run, --processes 1, its master bound to loopback: (report, prefix, log)."""
    from turncheck.locust import LOCUSTFILE

    port = free_port_block(2)
    prefix, report, log = tmp_path / "run", tmp_path / "report.html", tmp_path / "locust.log"
    argv = [locust, "-f", str(LOCUSTFILE), "--headless", "--processes", "1"]
    argv += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    argv += ["--master-host", "127.0.0.1", "--master-port", str(port)]
    argv += ["-u", str(USERS), "-r", str(USERS), "--run-time", f"{RUN_TIME_S}s"]
    argv += ["--csv", str(prefix), "--html", str(report), "--exit-code-on-error", "0"]
    argv += ["--turn-url", f"turn:127.0.0.1:{server.port}?transport=udp"]
    argv += ["--turn-pairs", str(PAIRS), "--loglevel", "INFO"]
    try:
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=tmp_path,
            )
            try:
                popen.wait(timeout=RUN_BOUND)
            finally:
                if popen.poll() is None:  # by its PID; its forked worker quits with it
                    popen.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        popen.wait(timeout=5)
    finally:
        release_ports(port, 2)
    text = log.read_text(errors="replace")
    assert popen.returncode == 0, text[-3000:]
    return report, prefix, text


def open_report(report: Path, shot: Path, tmp_path: Path) -> dict:
    """tests/browser/report_page.py in its own process: OUT.json (a fatal error fails)."""
    spec = {
        "url": report.as_uri(),
        "screenshot": str(shot),
        "width": 1280,
        "wait_s": 30,
        "timeout_s": BROWSER_BOUND - 5,
    }
    spec_path, out_path = tmp_path / "page-in.json", tmp_path / "page-out.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "tests.browser.report_page", str(spec_path), str(out_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BROWSER_BOUND,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out_path.is_file(), done.stderr[-3000:]
    out = json.loads(out_path.read_text())
    assert "fatal" not in out, (out["fatal"], done.stderr[-3000:])
    return out


@pytest.fixture
def server(coturn_factory) -> Coturn:
    return coturn_factory(tls=False, relay_range=60)


def test_the_html_report_renders_its_charts_and_the_exact_figures(
    server: Coturn, tmp_path: Path
) -> None:
    locust = locust_bin()
    require_chromium()
    report, prefix, log = run_locust(locust, server, tmp_path)
    with open(f"{prefix}_turn.csv", newline="", encoding="utf-8") as f:
        exact = {row["Figure"]: (row["Value"], row["Unit"]) for row in csv.DictReader(f)}
    assert int(exact["packets echoed"][0]) > 0, log[-3000:]
    shot = shot_path(tmp_path)

    page = open_report(report, shot, tmp_path)

    # The page ran: no script error (a broken bundle leaves the report blank).
    errors = [line for line in page["console"] if line.startswith("pageerror")]
    assert not errors, errors
    # Every chart has a size and drew its series (coloured lines, not only grey axes).
    charts = page["charts"]
    assert len(charts) >= CHARTS, page
    for chart in charts:
        assert chart["width"] > 0 and chart["height"] > 0, chart
        assert chart["canvases"] >= 1 and chart["coloured"] > 0, chart
    assert page["stable"], charts
    # The TURN rows, each titled in µs, and the columns too: no "(ms)" left on the page.
    text = page["text"]
    for row in ROWS:
        assert row in text, row
    for title in ("Average (µs)", "Min (µs)", "Max (µs)", "50%ile (µs)", "99%ile (µs)"):
        assert title in text, title
    assert "(ms)" not in text
    # The exact figures are a section of the page, and the same as PREFIX_turn.csv.
    assert "TURN exact figures (turncheck)" in text
    rows = {cells[0]: (cells[1], cells[2]) for cells in page["exact_rows"] if len(cells) == 3}
    for figure in ("packets sent", "packets echoed", "packets lost", "allocations deleted"):
        assert rows[figure] == exact[figure], figure
    assert rows["echo RTT p50"] == exact["echo RTT p50"] and rows["echo RTT p50"][1] == "µs"
    assert int(rows["allocations deleted"][0]) == 2 * USERS * PAIRS
    # The screenshot: a PNG of the whole page.
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
