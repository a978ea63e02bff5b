"""NAT behaviour: the symmetric-NAT verdict from what one local UDP socket was told."""

from __future__ import annotations

from collections.abc import Iterable

from turncheck.report import CheckResult, NatVerdict


def symmetric_from_bindings(results: Iterable[CheckResult]) -> NatVerdict:
    """Compare the mapped addresses one local UDP socket got from different server addresses.

    A symmetric (address-dependent) mapping gives a socket a new public port per
    destination (RFC 4787 §4.1); an endpoint-independent one keeps it.
    """
    seen: dict[str, dict[str, str]] = {}  # local socket → server → mapped
    for result in results:
        srflx = result.candidate("srflx")
        if not (result.ok and result.kind == "stun" and result.transport == "udp"):
            continue
        if srflx is None or result.local is None or result.server is None:
            continue
        seen.setdefault(result.local, {})[result.server] = srflx.hostport
    if not seen:
        return NatVerdict(None, "no STUN server answered over UDP")
    servers = max(seen.values(), key=len)
    if len(servers) < 2:
        return NatVerdict(None, "only one server address answered over UDP")
    mapped = set(servers.values())
    if len(mapped) == 1:
        return NatVerdict(
            False, f"{len(servers)} server addresses saw the same mapped address {mapped.pop()}"
        )
    pairs = ", ".join(f"{server} saw {addr}" for server, addr in sorted(servers.items()))
    return NatVerdict(True, f"the mapping changes with the destination: {pairs}")
