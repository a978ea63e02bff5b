"""How many allocations one user gets: allocate, keep, repeat, until the server says no.

Each allocation has its own local socket (its own 5-tuple, as each call of a browser has)
and all stay open until the probe ends; then every one is deleted. The probe stops at the
first refusal, at `ctx.max_allocations`, or at the check's deadline, whichever comes first.

Severity: a quota found is OK. None up to the bound is LOW: every allocation holds a relay
port for its lifetime, so a user without a quota can hold the whole relay port range, and
the "user" is often anyone who loads the web page that hands out TURN REST credentials.
Not higher: it takes valid credentials, and the bound cannot prove there is no quota at
all. The server running out of ports or capacity (508) before any quota is the same
exhaustion, proven: LOW too.

Other allocations of the same user (other checks, other clients, coturn's 1 s delay in
freeing a deleted UDP allocation) count against the same quota: run this check alone.
"""

from __future__ import annotations

import asyncio
import contextlib

from turncheck.audit import AuditContext, Check
from turncheck.checks import allocated
from turncheck.errors import AuthFailure, CheckFailure, ErrorResponse
from turncheck.explain import COTURN, P1_STUN, PION, explain, server_family
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.turn import Allocation, Redirect
from turncheck.urls import Transport, fmt_address

QUOTA_REACHED = 486  # RFC 8656 §7.2 Allocation Quota Reached
NO_CAPACITY = 508  # RFC 8656 §7.2 Insufficient Capacity


def _target(ep: Endpoint) -> str:
    text = ep.target.url.text
    return text if ep.address in text else f"{text} ({ep.server})"


def _hint(family: str | None) -> str:
    if family == COTURN:
        return "coturn: user-quota=N (allocations per user; 0 is unlimited), and total-quota"
    if family == P1_STUN:
        return (
            "eturnal: max_allocations (default 10 per user); ejabberd: turn_max_allocations "
            "of the ejabberd_stun listener"
        )
    if family == PION:
        return (
            "pion/turn has no quota of its own: count allocations per user in the server "
            "built on it; LiveKit: turn.per_user_relay_allocation_limit"
        )
    return (
        "limit allocations per user: coturn user-quota, eturnal max_allocations, ejabberd "
        "turn_max_allocations, LiveKit turn.per_user_relay_allocation_limit"
    )


async def quota(ctx: AuditContext) -> list[Finding]:
    """Allocations per user, probed up to ctx.max_allocations, every one deleted."""
    ep = ctx.turn(Transport.UDP) or ctx.turn()
    if ep is None:
        return [_skipped("no TURN URL to audit", "")]
    target = _target(ep)
    server = (ep.address, ep.port)
    loop = asyncio.get_running_loop()
    deadline = ctx.deadline()
    bound = max(1, ctx.max_allocations)
    held: list[Allocation] = []
    stop: BaseException | None = None
    software = ctx.software
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(bound):
            if loop.time() >= deadline:
                break
            try:
                _, allocation = await stack.enter_async_context(
                    allocated(ep, server, ctx.settings, deadline)
                )
            except (CheckFailure, Redirect) as exc:
                stop = exc
                break
            held.append(allocation)
            software = software or allocation.software
    # Every allocation is deleted here, the last first (AsyncExitStack).
    deleted = sum(1 for a in held if a.deleted)
    family = server_family(software or getattr(stop, "software", None))
    kept = f"{len(held)} granted, {deleted} deleted"
    if deleted < len(held):
        kept += f" ({len(held) - deleted} left to expire)"
    relays = ", ".join(fmt_address(a.relayed) for a in held[:3] if a.relayed)
    if relays:
        kept += f"; relays {relays}{', ...' if len(held) > 3 else ''}"
    return [_judge(len(held), bound, stop, family, kept, ep, target)]


def _judge(
    count: int,
    bound: int,
    stop: BaseException | None,
    family: str | None,
    kept: str,
    ep: Endpoint,
    target: str,
) -> Finding:
    if stop is None and count >= bound:
        return Finding(
            "quota",
            Severity.LOW,
            f"no per-user quota up to {bound} allocations: one credential can hold every "
            "relay port",
            hint=_hint(family),
            evidence=f"{bound} Allocates one after another, each kept: {kept}",
            target=target,
        )
    if isinstance(stop, ErrorResponse) and stop.code == QUOTA_REACHED:
        return Finding(
            "quota",
            Severity.OK,
            f"user quota: {count} allocation{'s' if count != 1 else ''} "
            f"({stop.code} {stop.phrase} at allocation {count + 1})",
            # coturn answers its total-quota with 486 too: the code cannot tell them apart.
            evidence=f"{kept}; allocation {count + 1}: {stop.code} {stop.phrase} (a quota per "
            "user, or in total: 486 does not say which)",
            target=target,
        )
    if isinstance(stop, ErrorResponse) and stop.code == NO_CAPACITY:
        return Finding(
            "quota",
            Severity.LOW,
            f"one user filled the server: {stop.code} {stop.phrase} at allocation {count + 1}, "
            "before any per-user quota",
            hint=_hint(family),
            evidence=f"{kept}; allocation {count + 1}: {stop.code} {stop.phrase}",
            target=target,
        )
    if stop is None:
        why = f"the check's time ran out after {count} allocations"
        return _unknown(why, kept, target)
    if isinstance(stop, Redirect):
        return _skipped(f"the server redirects to {fmt_address(stop.alternate)}", target)
    if count == 0 and isinstance(stop, AuthFailure) and ep.target.entry.credentials is None:
        return _skipped("it needs allocations, and they need credentials", target)
    said = explain(stop, server=ep.server)
    return _unknown(f"allocation {count + 1} failed: {said.reason}", kept, target, said.hint)


def _unknown(why: str, kept: str, target: str, hint: str = "") -> Finding:
    return Finding(
        "quota",
        Severity.INFO,
        f"could not tell the user quota: {why}",
        hint=hint,
        evidence=kept,
        target=target,
    )


def _skipped(why: str, target: str) -> Finding:
    return Finding(
        "quota",
        Severity.INFO,
        f"the user quota was not checked: {why}",
        target=target,
        skipped=True,
    )


CHECKS: tuple[Check, ...] = (quota,)
