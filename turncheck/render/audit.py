"""`turncheck audit` for people (the table), and as SARIF 2.1.0 for code-scanning tools.

The table groups findings by severity, the worst first, one finding a line (prose wraps at
spaces, an id or address is never split), its hint and CVEs below it; passes (OK) and
skipped checks are counted, listed only with -v (with the evidence of every finding: the
exchanges behind it); then the verdict.

    CRITICAL
      open-relay        an Allocate without credentials succeeded: anyone can relay
                        hint: turn authentication on (coturn: lt-cred-mech or …)
    ...
    verdict: 2 finding(s) at or above MEDIUM (1 CRITICAL, 1 HIGH, 2 INFO): CRITICAL: …

JSON is AuditReport.to_json() (docs/audit.md documents it; docs/audit.schema.json is its
schema). SARIF: one rule per finding id (with `security-severity`, as GitHub reads it),
one result per finding (passes and skipped checks are left out), located by the URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from turncheck import __version__
from turncheck.auditing import AuditReport
from turncheck.findings import Finding, Severity
from turncheck.render import plain_text, print_lines, wrap

if TYPE_CHECKING:
    from turncheck.auditing import AuditOptions
    from turncheck.plan import Target

STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "",
    Severity.OK: "green",
}
ID_WIDTH = 22
# GitHub code scanning: > 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
    Severity.OK: "0.0",
}
SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
    Severity.OK: "none",
}
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)


def lines(report: AuditReport, width: int, everything: bool = False) -> list[Text]:
    """The table: findings by severity, then the verdict (with *everything*: passes and
    skipped checks too)."""
    out: list[Text] = []
    out += wrap("audit of ", ", ".join(report.targets), width, "", 4)
    if report.software:
        out += wrap("SOFTWARE ", report.software, width, "dim", 4)
    if not report.ran:
        out += wrap("verdict: ", report.verdict, width, "bold red", 4)
        return out
    shown = [f for f in report.findings if everything or not (f.skipped or f.severity == 0)]
    current: Severity | None = None
    for finding in shown:
        if finding.severity != current:
            current = finding.severity
            out.append(Text(current.name, style=STYLE[current] or "bold"))
        out += _finding(finding, width, everything)
    hidden = len(report.findings) - len(shown)
    if hidden:
        passes = sum(1 for f in report.findings if f.severity == 0 and not f.skipped)
        skipped = sum(1 for f in report.findings if f.skipped)
        out += wrap(
            "",
            f"{passes} check{'s' * (passes != 1)} passed, {skipped} skipped (-v lists them)",
            width,
            "dim",
        )
    style = "bold red" if report.failing else "bold green"
    out += wrap("verdict: ", report.verdict, width, style, 4)
    return out


def _finding(finding: Finding, width: int, everything: bool = False) -> list[Text]:
    indent = 2 + ID_WIDTH
    name = finding.id if len(finding.id) < ID_WIDTH else finding.id + " "
    words = ("skipped: " if finding.skipped else "") + finding.finding
    first = wrap(f"  {name.ljust(ID_WIDTH)}", words, width, "", indent)
    rest: list[Text] = []
    if finding.cve and not all(c in finding.finding for c in finding.cve):
        rest += wrap(" " * indent, ", ".join(finding.cve), width, "dim", indent)
    if finding.hint:
        rest += wrap(" " * indent + "hint: ", finding.hint, width, "", indent + 6)
    if finding.evidence and everything:  # the exchanges behind it: -v, and in JSON
        rest += wrap(" " * indent + "seen: ", finding.evidence, width, "dim", indent + 6)
    return first + rest


def render(report: AuditReport, console: Console, everything: bool = False) -> None:
    print_lines(console, lines(report, console.width, everything))


def render_text(report: AuditReport, everything: bool = False) -> str:
    return plain_text(lambda console: render(report, console, everything), width=80)


def sarif(report: AuditReport) -> dict[str, Any]:
    """SARIF 2.1.0: the findings (not passes, not skipped checks) as results of rules."""
    results = [f for f in report.findings if f.severity > Severity.OK and not f.skipped]
    rules: dict[str, dict[str, Any]] = {}
    for f in results:
        if f.id in rules:
            continue
        rules[f.id] = {
            "id": f.id,
            "name": "".join(w.capitalize() for w in f.id.replace(".", "-").split("-")),
            "shortDescription": {"text": f.finding},
            "help": {"text": f.hint or f.finding},
            "properties": {
                "security-severity": SECURITY_SEVERITY[f.severity],
                "problem.severity": SARIF_LEVEL[f.severity],
                "tags": ["security", "turn"],
            },
        }
    index = {rid: i for i, rid in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "turncheck",
                        "version": __version__,
                        "informationUri": "https://github.com/turncheck/turncheck",
                        "rules": list(rules.values()),
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": report.ran,
                        **({} if report.ran else {"exitCodeDescription": report.why}),
                    }
                ],
                "results": [
                    {
                        "ruleId": f.id,
                        "ruleIndex": index[f.id],
                        "level": SARIF_LEVEL[f.severity],
                        "message": {"text": f.finding + (f" Hint: {f.hint}" if f.hint else "")},
                        "locations": [
                            {
                                "logicalLocations": [
                                    {"fullyQualifiedName": f.target or ", ".join(report.targets)}
                                ]
                            }
                        ],
                        "properties": {
                            "severity": f.severity.name,
                            "cve": list(f.cve),
                            "evidence": f.evidence,
                        },
                    }
                    for f in results
                ],
            }
        ],
    }


def plan_json(targets: Sequence[Target], options: AuditOptions) -> dict[str, Any]:
    """--dry-run as data: the targets (credentials masked) and where the audit would send."""
    from turncheck.audit.surfaces import DEFAULT_PORTS

    return {
        "schema": 1,
        "dry_run": True,
        "targets": [
            {
                "url": str(t.url),
                "transport": t.transport.value,
                "port": t.port,
                "credentials": None if t.entry.credentials is None else t.entry.credentials.masked,
            }
            for t in targets
        ],
        "credentialed_checks": any(t.entry.credentials is not None for t in targets),
        "management_ports": sorted(
            {
                DEFAULT_PORTS.cli,
                DEFAULT_PORTS.web_admin,
                DEFAULT_PORTS.coturn_metrics,
                DEFAULT_PORTS.eturnal_metrics,
            }
        ),
        "peer": None if options.peer is None else f"{options.peer[0]}:{options.peer[1]}",
        "max_allocations": options.max_allocations,
        "fail_on": options.fail_on.name,
    }


def plan_lines(targets: Sequence[Target], options: AuditOptions) -> list[str]:
    """--dry-run for people: one line per target, then what goes where."""
    doc = plan_json(targets, options)
    lines = ["audit plan (nothing is sent)"]
    for t in doc["targets"]:
        creds = f"  credentials {t['credentials']}" if t["credentials"] else ""
        lines.append(f"  {t['url']}  {t['transport']} {t['port']}{creds}")
    ports = ", ".join(str(p) for p in doc["management_ports"])
    lines += [
        "anyone's checks: open relay, Binding, amplification, RFC 3489, SOFTWARE and",
        "  advisories, TLS and DTLS (turns:), management surfaces (TURN TCP ports and",
        f"  {ports}, on the URLs' hosts only)",
    ]
    if doc["credentialed_checks"]:
        lines += [
            "with credentials: peer ACL (CreatePermission and ChannelBind only: nothing",
            "  is sent to a peer), capabilities, TCP and IPv6 relays, quota (at most",
            f"  {doc['max_allocations']} allocations, all deleted)",
        ]
    else:
        lines.append("no credentials: the peer ACL, capabilities and quota are not checked")
    peer = doc["peer"] or "none: only between turncheck's own allocations"
    lines.append(f"relayed data goes to: {peer}")
    lines.append(f"exit 1 on a finding at or above {doc['fail_on']}")
    return lines
