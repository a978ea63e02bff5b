"""`turncheck nat` output: the findings, then each test and what it meant."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from turncheck.nat import NatReport
from turncheck.render import Column, fit, plain_text, print_lines, table_lines, wrap

KEY = 16  # width of the facts' names

TESTS = (
    Column("name", "test", 9),
    Column("sent_to", "sent to", 8),
    Column("answer", "answer", 7),
    Column("meaning", "meaning", 3),
)


def _fact(name: str, value: str, width: int, style: str = "") -> list[Text]:
    return wrap(name.ljust(KEY), value, width, style, KEY)


def _value(value: str | None, reason: str | None) -> str:
    return value if value is not None else f"unknown ({reason or 'not tested'})"


def method_text(report: NatReport) -> str:
    if report.method == "rfc5780":
        return "RFC 5780"
    if report.method == "rfc3489":
        return "RFC 3489 CHANGED-ADDRESS"
    if report.method == "two-servers":
        return "two servers compared"
    if report.mapping is not None:
        return "this host's own address: no NAT"
    return "no method possible"


def lines(report: NatReport, width: int) -> list[Text]:
    out = wrap("", f"NAT behaviour via {report.server or '-'} ({method_text(report)})", width)
    out[0].stylize("bold")
    out += _fact("mapping", _value(report.mapping, report.reasons.get("mapping")), width)
    out += _fact("filtering", _value(report.filtering, report.reasons.get("filtering")), width)
    out += _fact("NAT type", report.classic, width, "bold")
    public = report.public_address or "-"
    if report.local_address:
        public += f" (local {report.local_address})"
    out += _fact("public address", public, width)
    alg = (
        "MAPPED-ADDRESS and XOR-MAPPED-ADDRESS disagree: a middlebox rewrites STUN"
        if report.alg
        else "none seen"
    )
    out += _fact("ALG", alg, width, "yellow" if report.alg else "")
    rows = [
        {
            "name": Text(t.name),
            "sent_to": Text(t.sent_to),
            "answer": Text(t.answer or "-"),
            "meaning": Text(t.meaning),
        }
        for t in report.tests
    ]
    if rows:
        out += table_lines(fit(TESTS, rows, width), rows)
    check = report.classic_check
    if check is not None:
        answer = check.get("classic") or "no verdict"
        line = f"classic RFC 3489 test (pystun3): {answer}"
        if check.get("agrees"):
            line += " (agrees)"
        out += wrap("", line, width)
        if check.get("note"):
            out += wrap("note: ", str(check["note"]), width, "yellow")
    out += wrap("verdict: ", report.verdict, width, "bold" if report.answered else "bold red")
    return out


def render(report: NatReport, console: Console) -> None:
    print_lines(console, lines(report, console.width))


def render_text(report: NatReport, width: int = 200) -> str:
    return plain_text(lambda console: render(report, console), width)
