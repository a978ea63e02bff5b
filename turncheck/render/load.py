"""turncheck load output: the live display, periodic plain lines, and the final report."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.text import Text

from turncheck.load import LoadResult, Pair, Tally
from turncheck.render import plain_text, print_lines, wrap


class Progress:
    """Called every 0.5 s with the running tally: a rich Live view on a terminal, else a
    plain line on stderr every 5 s."""

    def __init__(self, clients: int, live: bool) -> None:
        self.clients = clients
        self.live_view = None
        self._last = (0.0, 0, 0)
        self._ticks = 0
        if live:
            from rich.live import Live

            self.live_view = Live(Text("starting…"), console=Console(stderr=True), transient=True)
            self.live_view.start()

    def line(self, tally: Tally) -> str:
        now = time.monotonic()
        then, sent, received = self._last
        span = now - then if then else 0.0
        pps_out = (tally.sent - sent) / span if span else 0.0
        pps_in = (tally.received - received) / span if span else 0.0
        self._last = (now, tally.sent, tally.received)
        loss = 100 * (tally.sent - tally.received) / tally.sent if tally.sent else 0.0
        errors = ", ".join(f"{n}× {k}" for k, n in tally.failures.most_common(3)) or "none"
        return (
            f"pairs up {tally.succeeded}/{self.clients} (tried {tally.attempted})  "
            f"sent {pps_out:.0f}/s  echoed {pps_in:.0f}/s  loss so far {loss:.1f} %  "
            f"errors: {errors}"
        )

    def __call__(self, tally: Tally, pairs: list[Pair]) -> None:
        self._ticks += 1
        if self.live_view is not None:
            self.live_view.update(Text(self.line(tally)))
        elif self._ticks % 10 == 0:
            sys.stderr.write(f"turncheck load: {self.line(tally)}\n")

    def stop(self) -> None:
        if self.live_view is not None:
            self.live_view.stop()


def _ms(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return " / ".join(f"{k} {v * 1000:.2f}" for k, v in values.items())


KEY = 23


def lines(result: LoadResult, width: int) -> list[Text]:
    """Facts, one per line (values wrap at spaces under their own column), then the verdict."""
    s = result.settings

    def fact(name: str, value: str, style: str = "") -> list[Text]:
        return wrap(name.ljust(KEY), value, width, style, KEY)

    out = fact(
        "pairs",
        f"{result.succeeded} up of {result.attempted} tried ({s.clients} asked), "
        f"{result.failed} failed",
    )
    for reason, count in sorted(result.failures.items(), key=lambda kv: -kv[1]):
        out += fact("", f"{count}× {reason}", "red")
        if reason in result.hints:
            out += fact("", f"hint: {result.hints[reason]}")
    for reason, count in sorted(result.unbound.items(), key=lambda kv: -kv[1]):
        out += fact("", f"{count}× on Send indications: ChannelBind failed: {reason}", "red")
    if result.connect is not None:
        out += fact("TCP connect ms", _ms(result.connect))
    if result.handshake is not None:
        out += fact("TLS handshake ms", _ms(result.handshake))
    out += fact("allocation latency ms", _ms(result.alloc_latency))
    if result.channel_bind is not None:
        out += fact("ChannelBind ms", _ms(result.channel_bind))
    if result.stall is not None:
        out += fact("set-up stall", result.stall, "yellow")
    out += fact(
        "relayed packets",
        f"{result.sent} sent, {result.received} echoed back, loss {result.loss_pct:.2f} %"
        + (
            f", {result.late} echoed after {result.settings.loss_after:g} s (lost)"
            if result.late
            else ""
        )
        + (f", {result.duplicates} duplicates" if result.duplicates else ""),
    )
    out += fact(
        "throughput",
        f"{result.achieved_pps:.0f} echoed packets/s of {result.requested_pps:.0f} requested "
        f"({result.achieved_pps * s.size * 8 / 1e6:.2f} of "
        f"{result.requested_pps * s.size * 8 / 1e6:.2f} Mbit/s per direction)",
    )
    out += fact("RTT ms", _ms(result.rtt))
    out += fact("jitter ms", "-" if result.jitter is None else f"{result.jitter * 1000:.3f}")
    out += fact(
        "clean-up",
        f"{result.deleted} allocations deleted"
        + (f", {result.delete_failed} NOT deleted" if result.delete_failed else ""),
    )
    out += fact("time", f"{result.sending_time:.1f} s relaying, {result.wall_time:.1f} s in all")
    style = "bold green" if result.ok else "bold red"
    out += wrap("verdict: ", result.verdict, width, style)
    return out


def render(result: LoadResult, console: Console) -> None:
    print_lines(console, lines(result, console.width))


def render_text(result: LoadResult, width: int = 200) -> str:
    return plain_text(lambda console: render(result, console), width)
