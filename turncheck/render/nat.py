"""`turncheck nat` output: the findings, then each test and what it meant."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from turncheck.nat import NatReport


def _value(value: str | None, reason: str | None) -> Text:
    if value is not None:
        return Text(value, style="bold")
    return Text(f"unknown ({reason or 'not tested'})", style="yellow")


def render(report: NatReport, console: Console) -> None:
    method = {"rfc5780": "RFC 5780", "two-servers": "two servers compared"}.get(
        report.method or "", "no method possible"
    )
    console.print(Text(f"NAT behaviour via {report.server or '-'} ({method})", style="bold"))
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_column(style="dim")
    facts.add_column(overflow="fold")
    facts.add_row("mapping", _value(report.mapping, report.reasons.get("mapping")))
    facts.add_row("filtering", _value(report.filtering, report.reasons.get("filtering")))
    facts.add_row("NAT type", Text(report.classic, style="bold"))
    public = report.public_address or "-"
    if report.local_address:
        public += f" (local {report.local_address})"
    facts.add_row("public address", Text(public))
    facts.add_row(
        "ALG",
        Text(
            "MAPPED-ADDRESS and XOR-MAPPED-ADDRESS disagree: a middlebox rewrites STUN"
            if report.alg
            else "none seen",
            style="yellow" if report.alg else "",
        ),
    )
    console.print(facts)
    tests = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("test", "sent to", "answer", "meaning"):
        tests.add_column(name, overflow="fold")
    for test in report.tests:
        tests.add_row(test.name, test.sent_to, test.answer or "-", Text(test.meaning))
    console.print(tests)
    check = report.classic_check
    if check is not None:
        line = f"classic RFC 3489 test (pystun3): {check.get('classic') or check.get('nat_type')}"
        if check.get("agrees"):
            line += " — agrees"
        console.print(Text(line))
        if check.get("note"):
            console.print(Text(f"note: {check['note']}", style="yellow"))
    console.print(Text.assemble(("advice: ", "bold"), report.advice))
