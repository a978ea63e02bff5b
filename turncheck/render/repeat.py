"""--repeat output: a line per round as it ends, then statistics per check."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from turncheck.monitor import Round, Summary
from turncheck.render import plain_text


def round_line(rnd: Round, planned: int) -> Text:
    report = rnd.report
    passed = sum(c.ok for c in report.checks)
    rtts = [c.rtt_ms for c in report.checks if c.rtt_ms is not None]
    losses = [c.relay.stats.loss_pct for c in report.checks if c.relay and c.relay.stats]
    stamp = time.strftime("%H:%M:%S", time.localtime(rnd.started))
    text = Text(f"round {rnd.number}/{planned}  {stamp}  ")
    text.append(f"{passed}/{len(report.checks)} ok", style="green" if report.ok else "bold red")
    if rtts:
        text.append(f"  rtt max {max(rtts):.1f} ms")
    if losses:
        text.append(f"  relay loss max {max(losses):.0f} %")
    text.append(f"  {report.verdict}", style="dim")
    return text


def _ms(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return f"{values['min']:.1f}/{values['avg']:.1f}/{values['p95']:.1f}/{values['max']:.1f}"


def render(summary: Summary, console: Console) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in (
        "URL",
        "transport",
        "check",
        "server",
        "success",
        "RTT ms min/avg/p95/max",
        "relay loss",
    ):
        table.add_column(name, overflow="fold")
    for stats in summary.stats():
        url, transport, kind, server = stats.key
        loss = stats.relay_loss_pct
        table.add_row(
            Text(url),
            transport,
            "Allocate" if kind == "turn" else "Binding",
            Text(server or "-"),
            f"{stats.passed}/{stats.rounds} ({100 * stats.success_rate:.0f} %)",
            _ms(stats.rtt_summary()),
            "" if loss is None else f"{loss:.1f} %",
        )
    console.print(table)
    style = "bold green" if summary.ok else "bold red"
    console.print(Text.assemble(("verdict: ", "bold"), (summary.verdict, style)))


def render_text(summary: Summary) -> str:
    def draw(console: Console) -> None:
        for rnd in summary.rounds:
            console.print(round_line(rnd, summary.planned))
        render(summary, console)

    return plain_text(draw)
