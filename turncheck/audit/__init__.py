"""`turncheck audit`: one check per concern, each a coroutine from an AuditContext to findings.

    unauth.py        open relay, Binding needs auth, reflection and amplification, RFC 3489
    identity.py      SOFTWARE against the advisories (turncheck/advisories.py)
    tls.py           turns: versions, ciphers, certificate; DTLS answered
    surfaces.py      management surfaces on the host named in the URL
    acl.py           the peer ACL matrix, by CreatePermission and ChannelBind alone
    capabilities.py  mobility, EVEN-PORT, DONT-FRAGMENT, third-party auth, password
                     algorithms, ORIGIN, LIFETIME, RFC 5780
    relays.py        RFC 6062 TCP allocations, IPv6 and dual-family relays, with data
    quota.py         allocations per user, bounded, all deleted

The rules every check keeps (README "Audit", SECURITY.md):

- Nothing is sent to a peer address other than one turncheck itself listens on (its own
  allocations, its own sockets) or the one the operator names (`ctx.peer`, --peer);
  CreatePermission and ChannelBind send nothing to the peer, so the ACL is probed by them
  alone, and never with data.
- Every allocation is made with `checks.allocated` (or another `async with` that deletes
  it) and is deleted on every path; every loop is bounded in count and by `ctx.deadline()`.
- A check a known-vulnerable server would be harmed by is not run: it returns a finding
  with skipped=True saying why (EVEN-PORT with R=0 against coturn below 4.17 leaks ports).
- A check returns findings for what it found, passes included (Severity.OK), and never
  raises for a failed exchange: a CheckFailure it cannot judge becomes an INFO finding that
  says the check could not tell (explain's reason). The runner (turncheck/auditing.py) turns
  anything else into the same, and a bug into an internal-error finding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from turncheck.checks import CheckSettings
from turncheck.config import Credentials
from turncheck.findings import Finding
from turncheck.resolve import Endpoint
from turncheck.transport import Address
from turncheck.urls import Transport

DEFAULT_MAX_ALLOCATIONS = 20  # the quota probe stops here (--max-allocations)
CHECK_BUDGET = 10.0  # seconds one check may take, all its exchanges included


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What a check may use: the resolved targets, the settings, the operator's peer."""

    endpoints: tuple[Endpoint, ...]  # every URL × transport × address being audited
    settings: CheckSettings
    peer: Address | None = None  # --peer: the only outside address data may go to
    max_allocations: int = DEFAULT_MAX_ALLOCATIONS
    software: str | None = None  # SOFTWARE seen before this phase (for the skip rules)
    budget: float = CHECK_BUDGET
    hosts: tuple[str, ...] = field(default=())  # host names/IPs as the URLs wrote them

    @property
    def credentials(self) -> Credentials | None:
        """The credentials of the first TURN URL that has any."""
        for ep in self.endpoints:
            if ep.target.url.is_turn and ep.target.entry.credentials is not None:
                return ep.target.entry.credentials
        return None

    def turn(self, *transports: Transport) -> Endpoint | None:
        """The first TURN endpoint over one of *transports*, in their order (any when none)."""
        turn = [ep for ep in self.endpoints if ep.target.url.is_turn]
        if not transports:
            return turn[0] if turn else None
        for transport in transports:
            for ep in turn:
                if ep.target.transport is transport:
                    return ep
        return None

    def deadline(self) -> float:
        """Now plus the check's budget, on the running loop's clock."""
        return asyncio.get_running_loop().time() + self.budget


Check = Callable[[AuditContext], Awaitable[Sequence[Finding]]]
