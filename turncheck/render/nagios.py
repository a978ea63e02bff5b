"""--format nagios: one status line and perfdata, by the Nagios plugin rules.

    TURN OK - <verdict> | 'udp_allocate_rtt'=1.2ms;50;200 'udp_relay_loss'=0%;1;5;0;100

Exit codes: 0 OK, 1 WARNING (a threshold's warning level passed), 2 CRITICAL (calls do not
work by turncheck's exit rule, or a critical level passed), 3 UNKNOWN (bad input, a bug).
"""

from __future__ import annotations

from dataclasses import dataclass

from turncheck.report import Report

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning_rtt: float | None = None  # ms
    critical_rtt: float | None = None
    warning_loss: float | None = None  # percent
    critical_loss: float | None = None


def _level(value: float, warning: float | None, critical: float | None) -> int:
    if critical is not None and value > critical:
        return CRITICAL
    if warning is not None and value > warning:
        return WARNING
    return OK


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def render(report: Report, thresholds: Thresholds) -> tuple[str, int]:
    """The plugin's output line and its exit code."""
    t = thresholds
    status = OK if report.ok else CRITICAL
    worst = ""
    perf: list[str] = []
    servers = {c.server for c in report.checks if c.server}
    for check in report.checks:
        what = "allocate" if check.kind == "turn" else "binding"
        where = f"@{check.server}" if len(servers) > 1 and check.server else ""
        extra = "+" if check.extra else ""
        if check.rtt_ms is not None:
            label = f"{check.transport}{extra}_{what}_rtt{where}"
            perf.append(
                f"'{label}'={check.rtt_ms:.1f}ms;{_fmt(t.warning_rtt)};{_fmt(t.critical_rtt)}"
            )
            level = _level(check.rtt_ms, t.warning_rtt, t.critical_rtt)
            if level > status:
                status, worst = level, f"{label} {check.rtt_ms:.1f} ms"
        stats = check.relay.stats if check.relay is not None else None
        if stats is not None:
            label = f"{check.transport}{extra}_relay_loss{where}"
            perf.append(
                f"'{label}'={stats.loss_pct:.1f}%;{_fmt(t.warning_loss)};"
                f"{_fmt(t.critical_loss)};0;100"
            )
            level = _level(stats.loss_pct, t.warning_loss, t.critical_loss)
            if level > status:
                status, worst = level, f"{label} {stats.loss_pct:.1f} %"
            if stats.rtt_avg is not None:
                rtt = stats.rtt_avg * 1000
                label = f"{check.transport}{extra}_relay_rtt{where}"
                perf.append(f"'{label}'={rtt:.1f}ms;{_fmt(t.warning_rtt)};{_fmt(t.critical_rtt)}")
                level = _level(rtt, t.warning_rtt, t.critical_rtt)
                if level > status:
                    status, worst = level, f"{label} {rtt:.1f} ms"
    summary = report.verdict.replace("|", "/")  # "|" starts perfdata in the plugin format
    if worst:
        summary = f"{worst} over the threshold; {summary}"
    line = f"TURN {NAMES[status]} - {summary}"
    if perf:
        line += " | " + " ".join(perf)
    return line + "\n", status


def unknown(message: str) -> str:
    return f"TURN UNKNOWN - {message.replace('|', '/')}\n"
