"""serve's audit modules (kind: audit): `turncheck audit` on a scrape, findings as metrics.

    probe_success 1                      no finding at or above the module's fail_on
    probe_duration_seconds 8.2
    turncheck_audit_ran 1                0: the audit could not run (nothing answered)
    turncheck_audit_findings{severity="CRITICAL"} 0   one per severity, passes as OK
    turncheck_audit_finding{id="tls-1.0",severity="MEDIUM",target="…"} 1   one per finding

Alert on `turncheck_audit_findings{severity=~"CRITICAL|HIGH"} > 0`, or on the finding's
id. An audit makes many exchanges: give its scrape a long interval and timeout
(docs/serve.md); the whole audit keeps within the scrape's timeout (the quota probe is
skipped, and says so, when too little is left). It audits only the module's `targets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turncheck.findings import Severity

if TYPE_CHECKING:
    from turncheck.auditing import AuditOptions, AuditReport
    from turncheck.serve.config import Module


def audit_options(module: Module, target: str, budget: float) -> AuditOptions:
    """The audit's options from the module: a check's budget fits the scrape's."""
    from turncheck.auditing import AuditOptions
    from turncheck.errors import InputError
    from turncheck.plan import command_line_entries
    from turncheck.resolve import parse_dns_server, parse_ip_port

    if not target:
        raise InputError("no target: add ?target=<ICE URL>")
    if target not in module.targets:
        # An audit is heavy (management ports, handshakes, allocations held for the quota):
        # it goes only where the operator said, never where a scraper's query points.
        raise InputError(
            f"target '{target}' is not one of module '{module.name}''s targets "
            f"({', '.join(module.targets)})"
        )
    credentials = module.credentials()
    source = "the module's credentials" if credentials else "none"
    entries = command_line_entries([target], credentials, source)
    return AuditOptions(
        entries=tuple(entries),
        timeout=max(0.2, min(module.timeout, budget / 6)),
        budget=min(10.0, budget),
        total=max(1.0, budget - 0.5),  # the whole audit, quota probe included
        dns_server=parse_dns_server(module.dns_server) if module.dns_server else None,
        ca_file=module.ca_file,
        insecure=module.insecure,
        peer=parse_ip_port(module.peer, "peer", default_port=None) if module.peer else None,
        max_allocations=module.max_allocations,
        fail_on=Severity.parse(module.fail_on),
    )


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def audit_exposition(
    report: AuditReport | None, duration: float, openmetrics: bool, why: str = ""
) -> str:
    """probe_success, probe_duration_seconds, the audit's counts and findings."""
    success = report is not None and report.exit_code == 0
    lines = []
    if why:
        lines.append(f"# {why}")
    lines += [
        "# HELP probe_success No audit finding at or above the module's fail_on.",
        "# TYPE probe_success gauge",
        f"probe_success {int(success)}",
        "# HELP probe_duration_seconds How long the audit took.",
        "# TYPE probe_duration_seconds gauge",
        f"probe_duration_seconds {duration:.6f}",
        "# HELP turncheck_audit_ran 1 when the audit ran; 0 when it could not run or did not "
        "finish in time (the # line above says which).",
        "# TYPE turncheck_audit_ran gauge",
        f"turncheck_audit_ran {int(report is not None and report.ran)}",
    ]
    if report is not None:
        counts = {s: 0 for s in Severity}
        for f in report.findings:
            if not f.skipped:
                counts[f.severity] += 1
        lines += [
            "# HELP turncheck_audit_findings Findings by severity (OK: checks that passed).",
            "# TYPE turncheck_audit_findings gauge",
        ]
        lines += [
            f'turncheck_audit_findings{{severity="{s.name}"}} {n}'
            for s, n in sorted(counts.items(), reverse=True)
        ]
        lines += [
            "# HELP turncheck_audit_finding One per finding above OK: its id and severity.",
            "# TYPE turncheck_audit_finding gauge",
        ]
        seen = set()
        for f in report.findings:
            key = (f.id, f.target)
            if f.skipped or f.severity == Severity.OK or key in seen:
                continue
            seen.add(key)
            lines.append(
                f'turncheck_audit_finding{{id="{_label(f.id)}",severity="{f.severity.name}",'
                f'target="{_label(f.target)}"}} 1'
            )
    return "\n".join(lines) + "\n" + ("# EOF\n" if openmetrics else "")
