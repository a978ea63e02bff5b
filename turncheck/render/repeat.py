"""--repeat output: a line per round as it ends, then statistics per check."""

from __future__ import annotations

import time

from rich.console import Console
from rich.text import Text

from turncheck.monitor import Round, Summary
from turncheck.render import Column, fit, plain_text, print_lines, table_lines, total, wrap

STATS = (
    Column("url", "URL", 9),
    Column("check", "check (+ extra)", 9),
    Column("server", "server", 5),
    Column("success", "passed", 9),
    Column("rtt", "RTT ms min/avg/p95/max", 7),
    Column("loss", "relay loss", 6),
)


def round_lines(rnd: Round, planned: int, width: int) -> list[Text]:
    """One line per round; its verdict only when it fits on the same line."""
    report = rnd.report
    passed = sum(c.ok for c in report.checks)
    rtts = [c.rtt_ms for c in report.checks if c.rtt_ms is not None]
    losses = [c.relay.stats.loss_pct for c in report.checks if c.relay and c.relay.stats]
    stamp = time.strftime("%H:%M:%S", time.localtime(rnd.started))
    text = Text(f"round {rnd.number}/{planned}  {stamp}  ")
    mark = "ok" if report.ok else "FAILED"
    text.append(
        f"{passed}/{len(report.checks)} checks {mark}",
        style="green" if report.ok else "bold red",
    )
    if rtts:
        text.append(f"  rtt max {max(rtts):.1f} ms")
    if losses:
        text.append(f"  relay loss max {max(losses):.0f} %")
    if text.cell_len + 2 + len(report.verdict) <= width:
        text.append(f"  {report.verdict}", style="dim")
    return [text]


def _ms(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return f"{values['min']:.1f}/{values['avg']:.1f}/{values['p95']:.1f}/{values['max']:.1f}"


def lines(summary: Summary, width: int) -> list[Text]:
    rows = []
    previous = None
    for stats in summary.stats():
        url, transport, kind, server = stats.key
        loss = stats.relay_loss_pct
        rows.append(
            {
                "url": Text(url if url != previous else ""),
                "check": Text(f"{transport} {'Allocate' if kind == 'turn' else 'Binding'}"),
                "server": Text(server or "-"),
                "success": Text(
                    f"{stats.passed}/{stats.rounds} ({100 * stats.success_rate:.0f} %)",
                    style="green" if stats.passed == stats.rounds else "bold red",
                ),
                "rtt": Text(_ms(stats.rtt_summary())),
                "loss": Text("" if loss is None else f"{loss:.1f} %"),
            }
        )
        previous = url
    columns = fit(STATS, rows, width)
    if "rtt" not in {c.key for c in columns} or total(columns, rows) > width:
        # The URL on its own line keeps the figures.
        out: list[Text] = []
        body = fit(STATS[1:], rows, width)
        rendered = table_lines(body, rows)
        out.append(rendered[0])
        for row, line in zip(rows, rendered[1:], strict=True):
            if row["url"].plain:
                out.append(Text(row["url"].plain, style="bold"))
            out.append(line)
    else:
        out = table_lines(columns, rows)
    style = "bold green" if summary.ok else "bold red"
    out += wrap("verdict: ", summary.verdict, width, style)
    return out


def render(summary: Summary, console: Console) -> None:
    print_lines(console, lines(summary, console.width))


def render_text(summary: Summary, width: int = 200) -> str:
    def draw(console: Console) -> None:
        for rnd in summary.rounds:
            print_lines(console, round_lines(rnd, summary.planned, width))
        render(summary, console)

    return plain_text(draw, width)
