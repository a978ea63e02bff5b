"""The audit's run: options in, an AuditReport out (the CLI, serve's audit modules, callers).

First the server's identity (one unauthenticated Allocate, or a Binding for a STUN URL):
its SOFTWARE decides which checks a known-vulnerable server must be spared, and no answer
at all means the audit could not run (exit 3). Then every check of turncheck/audit at
once, each within its budget; a check that needs credentials is skipped without them
(unless the server relays without any: an open relay's peer ACL matters most).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from turncheck.audit import DEFAULT_MAX_ALLOCATIONS, AuditContext, Check
from turncheck.checks import CheckSettings, anonymous, make_ssl_context
from turncheck.errors import AuthFailure, CheckFailure, ErrorResponse, InputError
from turncheck.explain import explain
from turncheck.findings import Finding, Severity
from turncheck.plan import ServerEntry, build_targets
from turncheck.resolve import Endpoint, Resolver
from turncheck.transport import Address
from turncheck.turn import Redirect
from turncheck.urls import Transport

SCHEMA = 1
SLACK = 5.0  # seconds past a check's budget before the runner stops waiting for it


def _checks() -> tuple[tuple[Check, ...], tuple[Check, ...], tuple[Check, ...]]:
    """(checks any client can make, checks that need credentials or an open relay, and the
    quota probe: alone, last, as the others' allocations would count against the quota)."""
    from turncheck.audit import (
        acl,
        capabilities,
        identity,
        quota,
        relays,
        surfaces,
        tls,
        unauth,
    )

    anyone = (*unauth.CHECKS, *identity.CHECKS, *tls.CHECKS, *surfaces.CHECKS)
    users = (*acl.CHECKS, *capabilities.CHECKS, *relays.CHECKS)
    return anyone, users, quota.CHECKS


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What one audit checks and how: `turncheck audit`'s options."""

    entries: tuple[ServerEntry, ...]
    timeout: float = 3.0  # per exchange
    budget: float = 10.0  # per check
    dns_server: tuple[str, int] | None = None
    ca_file: str | None = None
    insecure: bool = False
    peer: Address | None = None
    max_allocations: int = DEFAULT_MAX_ALLOCATIONS
    fail_on: Severity = Severity.MEDIUM
    total: float | None = None  # seconds for the whole audit (serve: the scrape's); None: no cap


@dataclass(frozen=True, slots=True)
class AuditReport:
    targets: tuple[str, ...]
    findings: tuple[Finding, ...]  # the worst first
    fail_on: Severity = Severity.MEDIUM
    software: str | None = None
    ran: bool = True  # False: the audit could not run (nothing answered); `why` says why
    why: str = ""
    duration: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failing(self) -> tuple[Finding, ...]:
        """The findings at or above --fail-on (a skipped check is no finding)."""
        return tuple(f for f in self.findings if f.severity >= self.fail_on and not f.skipped)

    @property
    def exit_code(self) -> int:
        """0 nothing at or above --fail-on, 1 findings, 3 the audit could not run."""
        if not self.ran:
            return 3
        return 1 if self.failing else 0

    @property
    def verdict(self) -> str:
        if not self.ran:
            return f"the audit could not run: {self.why}"
        tally = _tally(self.findings)
        if self.failing:
            worst = self.failing[0].severity
            top = [f for f in self.failing if f.severity == worst]
            if len(top) == 1:
                named = f"{top[0].id}: {top[0].finding}"
            else:
                named = ", ".join(dict.fromkeys(f.id for f in top))
            return (
                f"{len(self.failing)} finding(s) at or above {self.fail_on.name} ({tally}); "
                f"{worst.name}: {named}"
            )
        return f"nothing at or above {self.fail_on.name} ({tally or 'no findings'})"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "targets": list(self.targets),
            "ran": self.ran,
            "why": self.why or None,
            "software": self.software,
            "fail_on": self.fail_on.name,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "duration_s": round(self.duration, 3),
            "counts": {s.name: c for s, c in _counter(self.findings).items()},
            "findings": [f.to_json() for f in self.findings],
        }


def _counter(findings: Sequence[Finding]) -> dict[Severity, int]:
    counts = Counter(f.severity for f in findings if not f.skipped)
    return {s: counts[s] for s in sorted(counts, reverse=True)}


def _tally(findings: Sequence[Finding]) -> str:
    return ", ".join(f"{n} {s.name}" for s, n in _counter(findings).items() if s is not Severity.OK)


def order(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """The worst first; skipped checks after the findings of their severity."""
    return tuple(sorted(findings, key=lambda f: (-f.severity, f.skipped, f.id, f.target)))


async def run_audit(options: AuditOptions) -> AuditReport:
    """One audit of the URLs: identity first, then every check at once."""
    started = time.monotonic()
    targets = build_targets(list(options.entries), None)
    shown = tuple(dict.fromkeys(str(t.url) for t in targets))
    settings = _settings(options, {t.transport for t in targets})
    resolver = Resolver(options.dns_server, timeout=options.timeout)
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    for found in await asyncio.gather(
        *(resolver.endpoints(t) for t in targets), return_exceptions=True
    ):
        if isinstance(found, CheckFailure):
            problems.append(explain(found).reason)
        elif isinstance(found, BaseException):
            raise found
        else:
            endpoints.extend(found)
    if not endpoints:
        why = problems[0] if problems else "no address to audit"
        return AuditReport(shown, (), options.fail_on, ran=False, why=why)
    hosts = tuple(dict.fromkeys(t.url.host for t in targets))
    context = AuditContext(
        endpoints=tuple(endpoints),
        settings=settings,
        peer=options.peer,
        max_allocations=options.max_allocations,
        budget=options.budget,
        hosts=hosts,
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + (options.total if options.total is not None else 1e9)

    def left() -> float:
        return end - loop.time()

    try:
        async with asyncio.timeout(min(options.budget, left() / 3)):
            identity = await _identity(context)
    except TimeoutError:
        identity = _Identity(None, False, f"no answer in {min(options.budget, left() / 3):.1f} s")
    if identity.unreachable is not None:
        return AuditReport(
            shown,
            (),
            options.fail_on,
            ran=False,
            why=identity.unreachable,
            duration=time.monotonic() - started,
        )
    context = replace(context, software=identity.software)
    anyone, users, last = _checks()
    runs = list(anyone)
    after: list[Check] = []
    skipped: list[Finding] = []
    if context.credentials is not None or identity.open_relay:
        runs += users
        after += last
    else:
        skipped.append(
            Finding(
                "needs-credentials",
                Severity.INFO,
                "the peer ACL, capabilities, TCP/IPv6 relays and quota were not checked: "
                "they need credentials",
                hint="give -u/-p (or TURNCHECK_USERNAME/TURNCHECK_CREDENTIAL) or --secret-file",
                target=", ".join(shown),
                skipped=True,
            )
        )
    # Within --total (serve: the scrape's time): the concurrent checks, then the quota probe.
    share = left() / (2 if after else 1)
    now = replace(context, budget=min(options.budget, _budget_within(share)))
    results = await asyncio.gather(*(_run(check, now) for check in runs))
    for check in after:
        if left() < 2.0:
            skipped.append(
                Finding(
                    "quota",
                    Severity.INFO,
                    "the quota was not probed: the audit's time ran out",
                    hint="give the scrape (or --timeout) more time",
                    target=", ".join(shown),
                    skipped=True,
                )
            )
            continue
        last_ctx = replace(context, budget=min(options.budget, _budget_within(left())))
        results.append(await _run(check, last_ctx))
    findings = corroborate([f for found in results for f in found] + skipped)
    return AuditReport(
        shown,
        order(findings),
        options.fail_on,
        software=identity.software,
        duration=time.monotonic() - started,
    )


def audit(options: AuditOptions) -> AuditReport:
    """run_audit() for callers without an event loop of their own."""
    return asyncio.run(run_audit(options))


def _settings(options: AuditOptions, transports: set[Transport]) -> CheckSettings:
    import ssl

    context = None
    if Transport.TLS in transports:
        try:
            context = make_ssl_context(options.ca_file, options.insecure)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(
                f"--ca-file '{options.ca_file}': not a usable PEM CA file ({exc})"
            ) from None
    return CheckSettings(
        timeout=options.timeout, ssl_context=context, insecure=options.insecure, relay=None
    )


@dataclass(frozen=True, slots=True)
class _Identity:
    software: str | None
    open_relay: bool
    unreachable: str | None  # why nothing answered, when nothing did


async def _identity(ctx: AuditContext) -> _Identity:
    """SOFTWARE from an unauthenticated Allocate (its 401, or its success: an open relay),
    or from a Binding when no URL is TURN; trying each endpoint until one answers."""
    from turncheck.checks import binding_check

    failures: list[str] = []
    for ep in ctx.endpoints:
        deadline = ctx.deadline()
        if not ep.target.url.is_turn:
            from turncheck.checks import UdpPool

            async with UdpPool() as pool:
                result = await binding_check(ep, ctx.settings, pool)
            if result.ok or (result.error is not None and result.cause in ("auth", "error")):
                return _Identity(result.details.get("software"), False, None)
            failures.append(result.error.reason if result.error else "no answer")
            continue
        try:
            async with anonymous(ep, ctx.settings, deadline) as allocation:
                await allocation.allocate(deadline)
                return _Identity(allocation.software, True, None)
        except (AuthFailure, ErrorResponse) as exc:
            return _Identity(exc.software, False, None)
        except Redirect:
            return _Identity(None, False, None)
        except CheckFailure as exc:
            failures.append(explain(exc, server=ep.server).reason)
    return _Identity(None, False, failures[0] if failures else "nothing to audit")


def _slack(budget: float) -> float:
    """How long past its budget the runner waits for a check (its deletes included)."""
    return min(SLACK, budget / 2)


def _budget_within(seconds: float) -> float:
    """The largest check budget whose budget plus slack fits in *seconds* (at least 0.5)."""
    return max(0.5, min(seconds - SLACK, seconds / 1.5))


async def _run(check: Check, ctx: AuditContext) -> list[Finding]:
    """One check within its budget; what it could not judge becomes an INFO finding."""
    name = f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__}"
    target = ", ".join(ctx.hosts)
    try:
        async with asyncio.timeout(ctx.budget + _slack(ctx.budget)):
            return list(await check(ctx))
    except TimeoutError:
        return [
            Finding(
                f"{name}-timeout",
                Severity.INFO,
                f"{name} did not finish in {ctx.budget + _slack(ctx.budget):g} s: not judged",
                target=target,
                skipped=True,
            )
        ]
    except CheckFailure as exc:
        return [
            Finding(
                f"{name}-failed",
                Severity.INFO,
                f"{name} could not tell: {explain(exc).reason}",
                hint=explain(exc).hint,
                target=target,
                skipped=True,
            )
        ]
    except Exception as exc:  # a bug: said as a finding, never a traceback
        return [
            Finding(
                "internal-error",
                Severity.INFO,
                f"{name} failed with {type(exc).__name__}: {exc} (a bug: please report it)",
                target=target,
                skipped=True,
            )
        ]


def absent(finding: Finding) -> bool:
    """A check's finding says the behaviour or feature is not there: a pass, or a
    capability "not offered"/"not answered" (the capability checks' wording)."""
    if finding.skipped:
        return False
    words = finding.finding
    return finding.severity == Severity.OK or " not offered" in words or "not answered" in words


def corroborate(findings: Sequence[Finding]) -> list[Finding]:
    """Advisories matched by version beside the check that tests their behaviour: when that
    check found the behaviour (or the feature the advisory needs) absent, the advisory drops
    to INFO and says so; when it saw it, the advisory says that too. A version string is
    evidence, a behaviour is proof (issue 22)."""
    from turncheck.advisories import advisory

    by_id: dict[str, list[Finding]] = {}
    for f in findings:
        by_id.setdefault(f.id, []).append(f)
    out = []
    for f in findings:
        row = advisory(f.id.removeprefix("advisory-")) if f.id.startswith("advisory-") else None
        seen = by_id.get(row.check or "", []) if row is not None else []
        judged = [g for g in seen if not g.skipped]
        if row is None or not judged:
            out.append(f)
        elif all(absent(g) for g in judged):
            out.append(
                replace(
                    f,
                    severity=min(f.severity, Severity.INFO),
                    finding=f"{f.finding}; not seen: the audit's {row.check} check found "
                    f"{'it' if not row.condition else 'what it needs'} absent",
                )
            )
        elif row.condition:
            out.append(
                replace(
                    f,
                    finding=f"{f.finding}; the audit's {row.check} check found what it needs "
                    "present",
                )
            )
        else:
            out.append(replace(f, finding=f"{f.finding}; the audit's {row.check} check saw it"))
    return out
