"""The JUnit XML renderer: one testsuite per URL, one testcase per check, for CI test reports.

    <testsuites name="turncheck" tests failures errors="0" time>
      <testsuite name="<URL>" tests failures errors skipped time>      (first-seen URL order)
        <testcase classname="turncheck.<URL, dotted-safe>"
                  name="<transport> Allocate|Binding <server or 'unresolved'>" time="<RTT s>">
          <failure message="<reason>" type="<STUN code or 'error'>">reason
    hint: hint</failure>                                                (failed checks only)
          <system-out>candidates, relay figures, TLS certificate</system-out>
      <testsuite name="requirements" ...>                               (only with requirements)
        <testcase classname="turncheck.requirements" name="<requirement>">[<failure>]

Built with xml.etree.ElementTree, which escapes markup; text the server supplied (SOFTWARE,
reason phrases) is untrusted and also loses the characters XML 1.0 forbids.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from turncheck.report import Report
from turncheck.require import Requirement
from turncheck.results import CheckResult

# XML 1.0 §2.2 Char: tab, newline, carriage return and everything from U+0020, less the
# surrogates and U+FFFE/U+FFFF. ElementTree escapes markup but writes these through verbatim,
# which makes the document unparsable.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]+")


def clean(text: object) -> str:
    """Text with every character XML 1.0 forbids removed."""
    return _NOT_XML_CHAR.sub("", str(text))


def classname(url: str) -> str:
    """turncheck.<url>, dotted-safe: CI tools split a classname at dots into packages."""
    return "turncheck." + (_NOT_NAME_CHAR.sub("_", url).strip("_") or "_")


def _seconds(value: float) -> str:
    # Plain decimal seconds: the Surefire time pattern admits no exponent.
    return f"{value:.6f}"


def _rtt_s(check: CheckResult) -> float:
    return 0.0 if check.rtt_ms is None else check.rtt_ms / 1000


def _testcase_name(check: CheckResult) -> str:
    what = "Allocate" if check.kind == "turn" else "Binding"
    return f"{check.transport} {what} {check.server or 'unresolved'}"


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: clean(v) for k, v in attrs.items()})
    if text is not None:
        node.text = clean(text)
    return node


def _certificate(check: CheckResult) -> dict[str, Any] | None:
    tls = check.details.get("tls")
    cert = tls.get("certificate") if isinstance(tls, dict) else None
    return cert if isinstance(cert, dict) else None


def _system_out(check: CheckResult) -> str:
    """What the check found, one fact a line: the Trickle ICE page's candidates and figures."""
    lines = [c.sdp() for c in check.candidates]
    relay = check.relay
    if relay is not None:
        st = relay.stats
        if st is not None:
            line = (
                f"relay echo via {relay.peer}: {st.received}/{st.sent} on the {st.path} path"
                f", loss {st.loss_pct:.1f} %"
            )
            if st.rtt_min is not None and st.rtt_avg is not None and st.rtt_max is not None:
                line += (
                    f", rtt min/avg/max {st.rtt_min * 1000:.3f}/{st.rtt_avg * 1000:.3f}"
                    f"/{st.rtt_max * 1000:.3f} ms"
                )
            if st.jitter is not None:
                line += f", jitter {st.jitter * 1000:.3f} ms"
            lines.append(line)
        elif relay.error is not None:
            lines.append(f"relay echo via {relay.peer}: {relay.error.reason}")
    cert = _certificate(check)
    if cert is not None:
        lines.append(
            f"TLS certificate: subject {cert.get('subject')}, not after {cert.get('not_after')}"
            f" ({cert.get('days_left')} days left)"
        )
    software = check.details.get("software")
    if software:
        lines.append(f"server software: {software}")
    return "\n".join(lines)


def _check_case(suite: ET.Element, check: CheckResult) -> None:
    case = _element(
        suite,
        "testcase",
        classname=classname(check.url),
        name=_testcase_name(check),
        time=_seconds(_rtt_s(check)),
    )
    if not check.ok:
        error = check.error
        reason = error.reason if error is not None else "check failed"
        body = reason if error is None else f"{reason}\nhint: {error.hint}"
        kind = str(error.code) if error is not None and error.code is not None else "error"
        _element(case, "failure", body, message=reason, type=kind)
    out = _system_out(check)
    if out:
        _element(case, "system-out", out)


def _suite(parent: ET.Element, name: str, tests: int, failures: int, time: float) -> ET.Element:
    return _element(
        parent,
        "testsuite",
        name=name,
        tests=str(tests),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=_seconds(time),
    )


def _requirements_suite(parent: ET.Element, requirements: Sequence[Requirement]) -> None:
    failed = sum(1 for r in requirements if not r.ok)
    suite = _suite(parent, "requirements", len(requirements), failed, 0.0)
    for req in requirements:
        case = _element(
            suite, "testcase", classname="turncheck.requirements", name=req.name, time=_seconds(0)
        )
        if req.ok:
            _element(case, "system-out", req.detail)
        else:
            _element(case, "failure", req.detail, message=req.detail, type="requirement")


def render(report: Report) -> str:
    """The report as a JUnit XML document."""
    by_url: dict[str, list[CheckResult]] = {}
    for check in report.checks:
        by_url.setdefault(check.url, []).append(check)
    root = ET.Element("testsuites")
    for url, checks in by_url.items():
        suite = _suite(
            root,
            url,
            len(checks),
            sum(1 for c in checks if not c.ok),
            sum(_rtt_s(c) for c in checks),
        )
        for check in checks:
            _check_case(suite, check)
    if report.requirements:
        _requirements_suite(root, report.requirements)
    tests = len(report.checks) + len(report.requirements)
    failures = sum(1 for c in report.checks if not c.ok) + sum(
        1 for r in report.requirements if not r.ok
    )
    root.attrib.update(
        name="turncheck",
        tests=str(tests),
        failures=str(failures),
        errors="0",
        time=_seconds(sum(_rtt_s(c) for c in report.checks)),
    )
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
