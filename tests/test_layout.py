"""Output for people at 80, 100, 120 and 200 columns: one line per row, nothing a person
copies split across lines, the line budget of a healthy probe, and the same for nat,
--repeat, load and the plan. Reports come from real runs against the test coturn."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.text import Text

from tests.servers.coturn import Coturn
from turncheck.cli.common import prepare
from turncheck.config import Credentials, advice
from turncheck.load import LoadSettings, run_load
from turncheck.monitor import run_rounds
from turncheck.nat import discover
from turncheck.plan import build_targets, command_line_entries
from turncheck.probe import run_probe
from turncheck.relay import RelaySettings
from turncheck.render import load as load_render
from turncheck.render import nat as nat_render
from turncheck.render import plan as plan_render
from turncheck.render import repeat as repeat_render
from turncheck.render import table as table_render
from turncheck.report import Report

WIDTHS = (80, 100, 120, 200)
ALICE = Credentials("alice", "s3cret")


def probe_report(ca_file: Path, *urls: str, creds: Credentials = ALICE) -> Report:
    entries = command_line_entries(list(urls), creds, "test")
    targets = build_targets(entries)
    setup = prepare(
        {t.transport for t in targets}, None, None, 2.0, ca_file, False, RelaySettings(), False
    )
    return asyncio.run(
        run_probe(targets, setup.resolver, setup.settings, advice=tuple(advice(entries)))
    )


def plain(lines: list[Text]) -> list[str]:
    return [line.plain for line in lines]


def assert_fits_and_whole(lines: list[str], width: int, tokens: set[str]) -> None:
    """No line wider than the terminal; every token on one line, whole."""
    for line in lines:
        assert len(line) <= width, (width, line)
    text = "\n".join(lines)
    for token in tokens:
        assert any(token in line for line in lines), (width, token, text)


def probe_tokens(report: Report) -> set[str]:
    tokens = {c.url for c in report.checks}
    for check in report.checks:
        tokens |= {cand.hostport for cand in check.candidates if cand.type in ("srflx", "relay")}
        if check.rtt_ms is not None:
            tokens.add(f"{check.rtt_ms:.1f}")
    return tokens


@pytest.fixture(scope="module")
def healthy(coturn: Coturn, ca_file: Path) -> Report:
    return probe_report(
        ca_file, f"turn:127.0.0.1:{coturn.port}", f"turns:localhost:{coturn.tls_port}"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_healthy_probe_fits_and_keeps_every_address_whole(healthy: Report, width: int) -> None:
    lines = plain(table_render.lines(healthy, width))
    tokens = {c.url for c in healthy.checks}
    tokens |= {
        cand.hostport for c in healthy.checks for cand in c.candidates if cand.type != "srflx"
    }
    assert_fits_and_whole(lines, width, tokens)
    assert len(healthy.checks) == 6 and all(c.relay for c in healthy.checks if c.kind == "turn")
    # One line per check: every check's row is exactly one line.
    rows = [line for line in lines if re.search(r"\b(udp|tcp|tls)\+? (Binding|Allocate)\b", line)]
    assert len(rows) == 6


def test_healthy_probe_at_80_columns_fits_15_lines(healthy: Report) -> None:
    lines = plain(table_render.lines(healthy, 80))
    assert len(lines) <= 15, "\n".join(lines)
    assert lines[-1] and any(line.startswith("verdict: calls connect") for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_failing_probe_names_the_cause_with_numbered_findings(
    coturn: Coturn, ca_file: Path, width: int
) -> None:
    report = probe_report(
        ca_file, f"turn:127.0.0.1:{coturn.port}", creds=Credentials("alice", "wrong-pw")
    )
    lines = plain(table_render.lines(report, width))
    assert_fits_and_whole(lines, width, {f"turn:127.0.0.1:{coturn.port}"})
    text = " ".join(lines)
    assert "FAIL 1" in text and "\n".join(lines).count("\n1  ") <= 1
    assert "see the reasons above" not in text
    assert "TURN authentication failed over udp and tcp" in text
    assert "401" in text


def test_dead_address_behind_a_healthy_one_is_named(
    coturn: Coturn, ca_file: Path, dns_server
) -> None:
    dns = dns_server(hosts=[("two.test", "127.0.0.1"), ("two.test", "127.0.0.3")])
    entries = command_line_entries([f"turn:two.test:{coturn.port}"], ALICE, "test")
    targets = build_targets(entries)
    setup = prepare(
        {t.transport for t in targets},
        ("127.0.0.1", dns.port),
        None,
        1.0,
        ca_file,
        False,
        RelaySettings(count=2),
        False,
    )
    report = asyncio.run(run_probe(targets, setup.resolver, setup.settings))
    assert "1 of 2 addresses of two.test (127.0.0.3) fails udp and tcp" in report.verdict
    assert "the users DNS sends there cannot connect" in report.verdict
    for width in WIDTHS:
        lines = plain(table_render.lines(report, width))
        assert_fits_and_whole(lines, width, {"127.0.0.3", "127.0.0.1"})


@pytest.mark.parametrize("width", WIDTHS)
def test_nat_output_fits(coturn: Coturn, width: int) -> None:
    report = asyncio.run(discover([("127.0.0.1", coturn.port)], timeout=2))
    assert report.method == "rfc5780"
    lines = plain(nat_render.lines(report, width))
    tokens = {report.public_address or "", report.server or ""}
    tokens |= {t.sent_to for t in report.tests} | {t.answer for t in report.tests if t.answer}
    assert_fits_and_whole(lines, width, tokens)
    assert lines[-1].startswith("verdict: ") or any(li.startswith("verdict: ") for li in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_repeat_output_fits(coturn: Coturn, ca_file: Path, width: int) -> None:
    entries = command_line_entries([f"turn:127.0.0.1:{coturn.port}?transport=udp"], ALICE, "t")
    targets = build_targets(entries)
    setup = prepare({t.transport for t in targets}, None, None, 2.0, ca_file, False, None, False)

    async def one() -> Report:
        return await run_probe(targets, setup.resolver, setup.settings)

    summary = asyncio.run(run_rounds(2, 0, one))
    lines = plain(repeat_render.lines(summary, width))
    for rnd in summary.rounds:
        lines += plain(repeat_render.round_lines(rnd, 2, width))
    tokens = {f"turn:127.0.0.1:{coturn.port}?transport=udp", "2/2 (100 %)"}
    for stats in summary.stats():
        rtt = stats.rtt_summary()
        if rtt:
            tokens.add(f"{rtt['min']:.1f}/{rtt['avg']:.1f}/{rtt['p95']:.1f}/{rtt['max']:.1f}")
    assert_fits_and_whole(lines, width, tokens)


@pytest.mark.parametrize("width", WIDTHS)
def test_load_output_fits(coturn: Coturn, ca_file: Path, width: int) -> None:
    from turncheck.resolve import Endpoint

    entries = command_line_entries([f"turn:127.0.0.1:{coturn.port}"], ALICE, "t")
    target = build_targets(entries)[0]
    setup = prepare({target.transport}, None, None, 2.0, ca_file, False, None, False)
    ep = Endpoint(target, "127.0.0.1", coturn.port, "IP literal")
    result = asyncio.run(
        run_load(ep, LoadSettings(clients=2, duration=0.5, rate=20), setup.settings)
    )
    lines = plain(load_render.lines(result, width))
    tokens = {f"{result.sent} sent", f"{result.received} echoed", f"{result.deleted} allocations"}
    assert_fits_and_whole(lines, width, tokens)


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_fits(width: int) -> None:
    entries = command_line_entries(
        ["turn:turn.example.com", "stun:stun.example.com:3478"], ALICE, "t"
    )
    targets = build_targets(entries)
    lines = plain(plan_render.lines(targets, None, width))
    assert_fits_and_whole(lines, width, {"turn:turn.example.com", "stun:stun.example.com:3478"})


def test_cli_honours_columns_for_plain_output(cli, coturn: Coturn, ca_file: Path) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}",
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--ca-file",
        str(ca_file),
        env={"COLUMNS": "80"},
    )
    assert result.code == 0
    assert max(len(line) for line in result.out.splitlines()) <= 80


def test_tmux_at_80_columns_shows_a_whole_table(
    coturn: Coturn, ca_file: Path, tmp_path: Path
) -> None:
    """A real terminal: tmux at 80×40, turncheck's own colour and width detection."""
    tmux = shutil.which("tmux")
    if tmux is None:
        from tests.servers.fixtures import lab_unavailable

        lab_unavailable("'tmux' not found on PATH (apt-get install tmux)")
    session = f"tc{int(time.time() * 1000) % 10**9}"
    socket = tmp_path / "tmux.sock"
    done = tmp_path / "done"
    command = (
        f"TURNCHECK_USERNAME=alice TURNCHECK_CREDENTIAL=s3cret {sys.executable} -m turncheck "
        f"probe turn:127.0.0.1:{coturn.port} turns:localhost:{coturn.tls_port} "
        f"--ca-file {ca_file}; echo $? > {done}"
    )
    base = [tmux, "-S", str(socket)]
    subprocess.run(
        [*base, "new-session", "-d", "-s", session, "-x", "80", "-y", "40", "sh"],
        check=True,
        timeout=10,
    )
    try:
        subprocess.run(
            [*base, "send-keys", "-t", session, command, "Enter"], check=True, timeout=10
        )
        for _ in range(200):  # bounded: 20 s
            if done.exists() and done.read_text().strip():
                break
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
        screen = subprocess.run(
            [*base, "capture-pane", "-p", "-t", session, "-J"],
            check=True,
            timeout=10,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        subprocess.run([*base, "kill-server"], timeout=10, check=False)
    lines = [line.rstrip() for line in screen.splitlines()]
    output = lines[lines.index(next(li for li in lines if li.startswith("URL"))) :]
    output = [li for li in output if li and "echo $?" not in li and not li.startswith("$")]
    assert all(len(li) <= 80 for li in output), screen
    assert any(li.startswith("verdict: calls connect") for li in output), screen
    assert any(f"turn:127.0.0.1:{coturn.port}" in li for li in output), screen
    assert len([li for li in output if li]) <= 15, screen
