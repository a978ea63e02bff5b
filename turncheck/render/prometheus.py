"""The Prometheus renderer: text exposition format 0.0.4, for node_exporter's textfile collector.

Every metric is a gauge; samples are sorted by their labels, so one report always gives the
same text. The server label is the address contacted, "" when the URL did not resolve.

    turncheck_check_up{url,transport,kind,server}          1 check passed, 0 failed
    turncheck_rtt_seconds{url,transport,kind,server}       Binding/Allocate round trip, if measured
    turncheck_relay_loss_ratio{url,transport,server}       relay echo loss, 0..1
    turncheck_relay_rtt_seconds{url,transport,server,stat} relay echo round trip, stat=min|avg|max
    turncheck_relay_jitter_seconds{url,transport,server}   relay echo jitter (RFC 3550 §6.4.1)
    turncheck_tls_cert_expiry_seconds{url,transport,server} certificate not-after, Unix time
    turncheck_requirement_met{name}                        1 met, 0 not met
    turncheck_nat_symmetric                                1 symmetric NAT, 0 not (omitted: unknown)
    turncheck_run_ok                                       1 when the run passed (the exit code)
    turncheck_checks_total                                 checks run
    turncheck_checks_failed                                checks failed

Written by hand: the format is a few lines of text and prometheus_client would be a runtime
dependency for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from turncheck.report import Report
from turncheck.results import CheckResult

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name, help text and samples (labels, value)."""

    name: str
    help: str
    samples: tuple[tuple[Labels, float], ...]


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _check_labels(check: CheckResult, *, kind: bool = True) -> Labels:
    labels = [("url", check.url), ("transport", check.transport)]
    if kind:
        labels.append(("kind", check.kind))
    labels.append(("server", check.server or ""))
    return tuple(labels)


def _expiry(check: CheckResult) -> float | None:
    """The certificate's not-after as a Unix timestamp, when the check saw one."""
    tls = check.details.get("tls")
    cert = tls.get("certificate") if isinstance(tls, dict) else None
    not_after = cert.get("not_after") if isinstance(cert, dict) else None
    if not isinstance(not_after, str):
        return None
    try:
        when = datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return when.timestamp()


def _family(name: str, help: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    # One sample per label set: a repeated series makes Prometheus reject the whole scrape.
    unique: dict[Labels, float] = {}
    for labels, value in samples:
        unique.setdefault(labels, value)
    return Family(name, help, tuple(sorted(unique.items())))


def families(report: Report) -> list[Family]:
    """The report's metrics in output order (families without samples left out)."""
    checks = report.checks
    symmetric = report.nat.symmetric
    relays = [
        (c, c.relay.stats) for c in checks if c.relay is not None and c.relay.stats is not None
    ]
    out = [
        _family(
            "turncheck_check_up",
            "1 when the STUN Binding or TURN Allocate check (with its relay test) passed, else 0.",
            ((_check_labels(c), 1.0 if c.ok else 0.0) for c in checks),
        ),
        _family(
            "turncheck_rtt_seconds",
            "Round trip of the check's STUN Binding or TURN Allocate transaction, in seconds.",
            ((_check_labels(c), c.rtt_ms / 1000) for c in checks if c.rtt_ms is not None),
        ),
        _family(
            "turncheck_relay_loss_ratio",
            "Share of relay test packets not echoed back through the TURN relay (0 to 1).",
            ((_check_labels(c, kind=False), st.loss_pct / 100) for c, st in relays),
        ),
        _family(
            "turncheck_relay_rtt_seconds",
            "Round trip of relay test packets through the TURN relay, in seconds (min, avg, max).",
            (
                ((*_check_labels(c, kind=False), ("stat", stat)), value)
                for c, st in relays
                for stat, value in (("min", st.rtt_min), ("avg", st.rtt_avg), ("max", st.rtt_max))
                if value is not None
            ),
        ),
        _family(
            "turncheck_relay_jitter_seconds",
            "Interarrival jitter of relay test round trips (RFC 3550 section 6.4.1), in seconds.",
            (
                (_check_labels(c, kind=False), st.jitter)
                for c, st in relays
                if st.jitter is not None
            ),
        ),
        _family(
            "turncheck_tls_cert_expiry_seconds",
            "Not-after time of the server's TLS certificate as a Unix timestamp in seconds "
            "(the convention of blackbox_exporter's probe_ssl_earliest_cert_expiry).",
            (
                (_check_labels(c, kind=False), when)
                for c in checks
                if (when := _expiry(c)) is not None
            ),
        ),
        _family(
            "turncheck_requirement_met",
            "1 when the requirement (--require, --max-rtt, --max-loss) was met, else 0.",
            (((("name", r.name),), 1.0 if r.ok else 0.0) for r in report.requirements),
        ),
        _family(
            "turncheck_nat_symmetric",
            "1 when a symmetric NAT was detected, 0 when not (absent when unknown).",
            [] if symmetric is None else [((), 1.0 if symmetric else 0.0)],
        ),
        _family(
            "turncheck_run_ok",
            "1 when the run passed (turncheck exit code 0), else 0.",
            [((), 1.0 if report.ok else 0.0)],
        ),
        _family("turncheck_checks_total", "Checks run.", [((), float(len(checks)))]),
        _family(
            "turncheck_checks_failed",
            "Checks that failed.",
            [((), float(sum(1 for c in checks if not c.ok)))],
        ),
    ]
    return [f for f in out if f.samples]


def _sample(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {_value(value)}"
    inner = ",".join(f'{key}="{escape_label(text)}"' for key, text in labels)
    return f"{name}{{{inner}}} {_value(value)}"


def render(report: Report) -> str:
    """The report in the Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for family in families(report):
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} gauge")
        lines.extend(_sample(family.name, labels, value) for labels, value in family.samples)
    return "\n".join(lines) + "\n"
