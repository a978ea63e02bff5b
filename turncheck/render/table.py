"""The probe's table for people: one line per check, findings numbered below it.

    URL                    check (+ extra)  server     result  candidate        RTT  relay echo
    turn:192.0.2.10:3478   udp Binding                 ok      203.0.113.5:4000  1.7
                           udp Allocate                ok      192.0.2.10:49160  1.4  10/10 0.4ms
                           tcp+ Binding                FAIL 1
    ...
    1  tcp+ Binding, tcp+ Allocate: connection refused: nothing listens on ...
       hint: check that the server runs and listens on this port and transport
    verdict: ...

Cells are never wrapped: when the terminal is too narrow, the URL moves to a line of
its own above its checks, then the least useful columns go (RTT, server when it only
repeats the URL, the relay echo's figures).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from turncheck.browser import relay_variant
from turncheck.render import (
    Column,
    Row,
    fit,
    plain_text,
    print_lines,
    table_lines,
    total,
    wrap,
)
from turncheck.report import Report
from turncheck.results import CheckResult, Explanation


def columns(several: bool) -> tuple[Column, ...]:
    """The probe's columns; the server column matters most when a name has several
    addresses (which one fails is the finding), least when it repeats the URL's name."""
    return (
        Column("url", "URL", 9),
        Column("check", "check (+extra)", 9),
        Column("server", "server", 8 if several else 2),
        Column("result", "result", 9),
        Column("candidate", "candidate", 7),
        Column("rtt", "RTT", 3, right=True),
        Column("echo", "relay echo", 6),
        Column("details", "details", 1),
    )


def _check_cell(check: CheckResult) -> Text:
    return Text(check_name(check), style="dim" if check.extra else "")


# What an Allocate asked for that browsers never ask for (browser.relay_variant), in a word:
# the row's figures are that relay's, at any width (the details column goes first).
VARIANT_MARKS = {"ipv4": "v4", "ipv6": "v6", "dual": "v4+v6", "tcp": "TCP"}


def check_name(check: CheckResult) -> str:
    """'udp Allocate'; 'tcp+ Binding' for turncheck's own checks (no browser makes them);
    'udp Binding C' or '... F' for a check only Chromium or only Firefox makes; 'udp+ Allocate
    v6' for --relay-family's Allocate, 'tcp+ Allocate TCP' for --tcp-relay's."""
    name = "Allocate" if check.kind == "turn" else "Binding"
    engines = check.details.get("browsers")
    variant = relay_variant(check)
    mark = "+" if check.extra or engines == [] or variant is not None else ""
    only = ""
    if not mark and engines is not None and len(engines) == 1:
        only = " C" if engines == ["chromium"] else " F"
    if variant is not None:
        only = f" {VARIANT_MARKS.get(variant, variant)}"
    return f"{check.transport}{mark} {name}{only}"


def _url_host_port(url: str) -> tuple[str, int | None]:
    from turncheck.browser import parse_ice_url, port_of
    from turncheck.urls import hostport

    try:
        parsed = parse_ice_url(url)
    except Exception:
        return url, None
    return hostport(parsed.host, port_of(parsed)), port_of(parsed)


def _server_cell(check: CheckResult, several: bool) -> Text:
    """The address contacted, when it says more than the URL: another address, port or
    one of several addresses of a name."""
    if check.server is None:
        return Text("unresolved", style="yellow")
    own, port = _url_host_port(check.url)
    if check.server == own and not several:
        return Text("")
    address, _, server_port = check.server.rpartition(":")
    return Text(address.strip("[]") if server_port == str(port) else check.server)


def _echo_cell(check: CheckResult, finding: int | None) -> Text:
    relay = check.relay
    if relay is None:
        return Text("")
    if relay.stats is None or not relay.ok:
        return Text(f"failed {finding}" if finding else "failed", style="bold red")
    st = relay.stats
    style = "green" if st.received == st.sent else "yellow"
    text = Text(f"{st.received}/{st.sent}", style=style)
    if st.rtt_avg is not None:
        text.append(f" {st.rtt_avg * 1000:.1f}ms")
    return text


def _details(check: CheckResult) -> Text:
    """What else the check learnt: lifetime, TLS, the server's SOFTWARE (untrusted text)."""
    d = check.details
    parts: list[str] = []
    if d.get("redirected_from"):
        parts.append(f"redirected from {d['redirected_from']}")
    if d.get("lifetime") is not None:
        parts.append(f"lifetime {d['lifetime']} s")
    tls = d.get("tls")
    if tls:
        parts.append(str(tls["version"]) + ("" if tls["verified"] else " NOT verified"))
    if d.get("software"):
        parts.append(str(d["software"]))
    if d.get("deleted") is False:
        parts.append("allocation NOT deleted")
    if d.get("note"):
        parts.append(str(d["note"]))
    return Text("; ".join(parts), style="dim")


def _findings(checks: Sequence[CheckResult]) -> list[tuple[Explanation, list[CheckResult]]]:
    """Distinct failure explanations, in order of first appearance, with their checks."""
    out: list[tuple[Explanation, list[CheckResult]]] = []
    for check in checks:
        if check.ok or check.error is None:
            continue
        for explanation, members in out:
            if explanation == check.error:
                members.append(check)
                break
        else:
            out.append((check.error, [check]))
    return out


def rows(report: Report) -> tuple[list[Row], list[tuple[Explanation, list[CheckResult]]]]:
    findings = _findings(report.checks)
    number = {id(c): i for i, (_, members) in enumerate(findings, 1) for c in members}
    per_url: dict[str, set[str]] = {}
    for check in report.checks:
        per_url.setdefault(check.url, set()).add(check.server or "")
    out: list[Row] = []
    previous = None
    for check in report.checks:
        n = number.get(id(check))
        several = len(per_url[check.url]) > 1
        srflx, relay = check.candidate("srflx"), check.candidate("relay")
        candidate = relay if check.kind == "turn" else srflx
        result = (
            Text("ok", style="bold green")
            if check.ok
            else Text(f"FAIL {n}" if n else "FAIL", style="bold red")
        )
        relay_failed = check.relay is not None and not check.relay.ok
        out.append(
            {
                "url": Text(check.url if check.url != previous else ""),
                "check": _check_cell(check),
                "server": _server_cell(check, several),
                "result": result,
                "candidate": Text(candidate.hostport if candidate else ""),
                "rtt": Text("" if check.rtt_ms is None else f"{check.rtt_ms:.1f}"),
                "echo": _echo_cell(check, n if relay_failed else None),
                "details": _details(check),
            }
        )
        previous = check.url
    return out, findings


def _several(report: Report) -> bool:
    servers: dict[str, set[str | None]] = {}
    for check in report.checks:
        servers.setdefault(check.url, set()).add(check.server)
    return any(len(s) > 1 or None in s for s in servers.values())


def _grouped(table: list[Row]) -> list[Row]:
    """The URL on a line of its own above its checks (for narrow terminals)."""
    out: list[Row] = []
    for row in table:
        if row["url"].plain:
            out.append({"url": row["url"]})
        out.append({**row, "url": Text("")})
    return out


def table_part(report: Report, width: int) -> list[Text]:
    """URL inline while that keeps the candidates and the relay echo; else on its own line."""
    table, _ = rows(report)
    cols = columns(_several(report))
    wanted = {"candidate"} | ({"echo"} if any(r["echo"].plain for r in table) else set())
    inline = fit(cols, table, width)
    if wanted <= {c.key for c in inline} and total(inline, table) <= width:
        return table_lines(inline, table)
    grouped = _grouped(table)
    checks = [r for r in grouped if len(r) > 1]
    rendered = iter(table_lines(fit(cols[1:], checks, width), checks))
    out = [next(rendered)]
    for row in grouped:
        out.append(Text(row["url"].plain, style="bold") if len(row) == 1 else next(rendered))
    return out


def _where(members: Sequence[CheckResult]) -> str:
    """'udp Allocate, tcp+ Allocate of turn:h:3478', or per URL when they differ."""
    by_url: dict[str, list[str]] = {}
    for c in members:
        name = check_name(c)
        if c.server and len({m.server for m in members if m.url == c.url}) > 1:
            name += f" {c.server}"
        by_url.setdefault(c.url, [])
        if name not in by_url[c.url]:
            by_url[c.url].append(name)
    return "; ".join(f"{', '.join(names)} of {url}" for url, names in by_url.items())


def summary_part(report: Report, width: int) -> list[Text]:
    _, findings = rows(report)
    out: list[Text] = []
    for i, (explanation, members) in enumerate(findings, 1):
        where = _where(members)
        seen = members[0].details.get("browser_error")
        chromium = f" [Chromium: {seen['code']} {seen['text']}]".rstrip() if seen else ""
        out += wrap(f"{i}  ", f"{where}: {explanation.reason}{chromium}", width, "", 3)
        out += wrap("   hint: ", explanation.hint, width, "", 9)
    style = "bold green" if report.ok else "bold red"
    out += wrap("verdict: ", report.verdict, width, style)
    if _nat_line_applies(report):
        out += wrap("", report.nat.text, width)
    for req in report.requirements:
        mark = "met" if req.ok else "NOT MET"
        out += wrap(f"requirement {req.name}: ", f"{mark} ({req.detail})", width)
    for note in report.notes:
        out += wrap("note: ", note, width, "yellow")
    for line in report.advice:
        out += wrap("advice: ", line, width, "cyan")
    return out


def _nat_line_applies(report: Report) -> bool:
    """The symmetric-NAT line only when a UDP Binding got an answer to compare."""
    return any(c.kind == "stun" and c.transport == "udp" and c.ok for c in report.checks)


def lines(report: Report, width: int) -> list[Text]:
    return table_part(report, width) + summary_part(report, width)


def render(report: Report, console: Console) -> None:
    print_lines(console, lines(report, console.width))


def render_text(report: Report, width: int = 200) -> str:
    """The table as plain text (for --output FILE): no colour."""
    return plain_text(lambda console: render(report, console), width)
