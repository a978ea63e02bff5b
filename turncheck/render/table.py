"""The rich table renderer: one row per (URL, server address, transport, check)."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from turncheck.render import plain_text
from turncheck.report import CheckResult, Report


def _result(check: CheckResult) -> Text:
    return Text("ok", style="bold green") if check.ok else Text("failed", style="bold red")


def _details(check: CheckResult) -> Text:
    # Server-supplied text (SOFTWARE, reason phrases) is untrusted: Text never parses markup.
    if check.error is not None:
        out = Text(check.error.reason)
        seen = check.details.get("browser_error")
        if seen:
            out.append(f" (Chromium: {seen['code']} {seen['text']})".rstrip(), style="dim")
        out.append("\nhint: ", style="yellow")
        out.append(check.error.hint)
        return out
    parts: list[str] = []
    d = check.details
    if d.get("redirected_from"):
        parts.append(f"redirected from {d['redirected_from']}")
    if d.get("lifetime") is not None:
        parts.append(f"lifetime {d['lifetime']} s")
    tls = d.get("tls")
    if tls:
        parts.append(
            f"{tls['version']}" + ("" if tls["verified"] else " (NOT verified: --insecure)")
        )
    if d.get("software"):
        parts.append(str(d["software"]))
    if d.get("deleted") is False:
        parts.append("allocation NOT deleted")
    if d.get("note"):
        parts.append(str(d["note"]))
    return Text("; ".join(parts), style="dim")


def _relay(check: CheckResult) -> Text:
    relay = check.relay
    if relay is None:
        return Text("")
    if relay.stats is None:
        return Text("failed", style="red")
    st = relay.stats
    assert st.rtt_min is not None and st.rtt_avg is not None and st.rtt_max is not None
    style = "green" if st.received == st.sent else "yellow"
    text = Text(f"{st.received}/{st.sent} {st.path}, loss {st.loss_pct:.0f} %", style=style)
    text.append(
        f"\nrtt {st.rtt_min * 1000:.1f}/{st.rtt_avg * 1000:.1f}/{st.rtt_max * 1000:.1f} ms"
        f", jitter {(st.jitter or 0) * 1000:.2f} ms",
        style="dim",
    )
    return text


def _check_name(check: CheckResult) -> str:
    """Binding or Allocate; "(extra)" when the browser would not make this check."""
    name = "Allocate" if check.kind == "turn" else "Binding"
    return f"{name} (extra)" if check.extra else name


def _rtt(check: CheckResult) -> str:
    return "" if check.rtt_ms is None else f"{check.rtt_ms:.1f}"


def table(report: Report) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    t.add_column("URL", overflow="fold")
    t.add_column("transport")
    t.add_column("check")
    t.add_column("server", overflow="fold")
    t.add_column("result")
    t.add_column("srflx", overflow="fold")
    t.add_column("relay", overflow="fold")
    t.add_column("RTT ms", justify="right")
    t.add_column("relay echo (min/avg/max)")
    t.add_column("details", overflow="fold", ratio=1)
    for check in report.checks:
        srflx = check.candidate("srflx")
        relay = check.candidate("relay")
        t.add_row(
            Text(check.url),
            check.transport,
            ("Allocate" if check.kind == "turn" else "Binding")
            + (" (extra)" if check.extra else ""),
            Text(check.server or "-"),
            _result(check),
            srflx.hostport if srflx else "",
            relay.hostport if relay else "",
            _rtt(check),
            _relay(check),
            _details(check),
        )
    return t


def summary(report: Report) -> Group:
    style = "bold green" if report.ok else "bold red"
    parts: list[RenderableType] = [Text.assemble(("verdict: ", "bold"), (report.verdict, style))]
    parts.append(Text(report.nat.text))
    for req in report.requirements:
        mark = ("met", "green") if req.ok else ("NOT MET", "bold red")
        parts.append(
            Text.assemble(("requirement ", ""), (req.name, "bold"), ": ", mark, f" ({req.detail})")
        )
    parts.extend(Text(f"note: {note}", style="yellow") for note in report.notes)
    parts.extend(Text(f"advice: {line}", style="cyan") for line in report.advice)
    return Group(*parts)


def render(report: Report, console: Console) -> None:
    console.print(table(report))
    console.print(summary(report))


def render_text(report: Report) -> str:
    """The table as plain text (for --output FILE): no colour, wide."""
    return plain_text(lambda console: render(report, console))
