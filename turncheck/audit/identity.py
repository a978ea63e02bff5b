"""The server's identity: what SOFTWARE says, matched against the advisories.

    software-version     SOFTWARE reveals a release: LOW; names only the product: INFO;
                         absent: OK
    advisory-<id>        one per advisory whose affected range holds that release, citing
                         it (turncheck/advisories.py); a version string is evidence, not
                         proof, and the finding says so

The runner learns SOFTWARE first (its unauthenticated Allocate: the 401, or the success of
an open relay) and passes it in AuditContext.software, so that the checks a vulnerable
server must be spared can ask advisories.known_vulnerable(). When it saw none, this check
asks once more with a Binding: some servers sign only their Binding answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from turncheck import stun
from turncheck.advisories import identity_findings, known_vulnerable, vulnerable
from turncheck.audit import AuditContext, Check
from turncheck.audit.unauth import target_of
from turncheck.checks import open_channel
from turncheck.errors import CheckFailure
from turncheck.explain import explain
from turncheck.findings import Finding, Severity
from turncheck.urls import Transport

__all__ = [
    "CHECKS",
    "SoftwareSeen",
    "identity",
    "identity_findings",
    "known_vulnerable",
    "software_of",
    "vulnerable",
]


@dataclass(frozen=True, slots=True)
class SoftwareSeen:
    """SOFTWARE as one exchange showed it (None: the answer had none), or why none came."""

    software: str | None
    seen_in: str
    failure: CheckFailure | None = None


async def software_of(ctx: AuditContext) -> SoftwareSeen:
    """SOFTWARE in the answer to one Binding without credentials (UDP first)."""
    ep = next(
        (
            ep
            for transport in (Transport.UDP, Transport.TCP, Transport.TLS)
            for ep in ctx.endpoints
            if ep.target.transport is transport
        ),
        None,
    )
    if ep is None:
        return SoftwareSeen(None, "no endpoint")
    server = (ep.address, ep.port)
    deadline = ctx.deadline()
    where = f"the answer to a Binding over {ep.target.transport.value} {ep.server}"
    try:
        async with open_channel(ep, server, ctx.settings, deadline) as channel:
            answer = await channel.request(
                stun.Message(stun.Method.BINDING, stun.Class.REQUEST),
                server,
                deadline=min(deadline, asyncio.get_running_loop().time() + ctx.settings.timeout),
                policy=ctx.settings.policy,
                what=f"STUN Binding ({ep.target.transport.value})",
            )
    except CheckFailure as exc:
        return SoftwareSeen(None, where, exc)
    software = answer.message.attributes.get("SOFTWARE")
    return SoftwareSeen(stun.clean_text(software) if software else None, where)


async def identity(ctx: AuditContext) -> list[Finding]:
    """software-version and the advisories SOFTWARE is in range of."""
    ep = ctx.turn(Transport.UDP, Transport.TCP, Transport.TLS) or (
        ctx.endpoints[0] if ctx.endpoints else None
    )
    target = target_of(ep) if ep is not None else ", ".join(ctx.hosts)
    if ctx.software:
        return identity_findings(
            ctx.software, target, seen_in="the server's first answer, to an unauthenticated request"
        )
    seen = await software_of(ctx)
    if seen.failure is not None:
        reason = explain(seen.failure).reason
        return [
            Finding(
                "software-version",
                Severity.INFO,
                f"could not tell what the server announces: {reason}",
                evidence=f"no SOFTWARE in the first answers; {seen.seen_in}: {reason}",
                target=target,
                skipped=True,
            )
        ]
    return identity_findings(seen.software, target, seen_in=seen.seen_in)


CHECKS: tuple[Check, ...] = (identity,)
