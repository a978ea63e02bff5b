"""One coroutine per check (STUN Binding, TURN Allocate) → a CheckResult. Never prints."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from turncheck import stun
from turncheck.errors import (
    AuthFailure,
    CheckFailure,
    ConnectFailure,
    DnsFailure,
    ErrorResponse,
    ProtocolFailure,
    RedirectedFailure,
    RelayFailure,
    StunOnlyServer,
    TlsFailure,
    TransactionTimeout,
    UnprotectedAnswer,
)
from turncheck.explain import (
    asked_refused,
    explain,
    family_missing,
    family_name,
    rest_credential_failure,
)
from turncheck.relay import (
    DataOpener,
    RelaySettings,
    echo_between,
    echo_via_peer,
    family_of,
    merge_families,
    relayed_in,
    tcp_echo_between,
    tcp_echo_via_peer,
)
from turncheck.resolve import Endpoint
from turncheck.results import Candidate, CheckResult, RelayResult
from turncheck.transport import (
    Address,
    Channel,
    Conclusive,
    RetryPolicy,
    StreamChannel,
    TlsInfo,
    Tracer,
    UdpChannel,
    local_ip_towards,
)
from turncheck.turn import FIRST_CHANNEL, Allocation, Redirect, alternate_of
from turncheck.urls import Transport, fmt_address


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """Timing and TLS policy of a run: parameters, never module globals."""

    timeout: float = 5.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    ssl_context: ssl.SSLContext | None = None
    insecure: bool = False
    tracer: Tracer | None = None
    relay: RelaySettings | None = field(default_factory=RelaySettings)  # None: no relay check


def make_ssl_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """System trust store plus --ca-file; --insecure turns verification off."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class UdpPool:
    """One shared UDP socket per address family for Binding checks, like a host candidate."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer
        self._channels: dict[int, UdpChannel] = {}
        self._lock = asyncio.Lock()

    async def get(self, family: int) -> UdpChannel:
        async with self._lock:
            if family not in self._channels:
                self._channels[family] = await UdpChannel.open(family, self._tracer)
            return self._channels[family]

    async def __aenter__(self) -> UdpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self._channels.values():
            await channel.aclose()
        self._channels.clear()


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


@contextlib.asynccontextmanager
async def open_channel(
    ep: Endpoint, server: Address, settings: CheckSettings, deadline: float
) -> AsyncIterator[Channel]:
    """A fresh channel to the server over the endpoint's transport; closed on exit."""
    transport = ep.target.transport
    channel: Channel
    if transport is Transport.UDP:
        channel = await UdpChannel.open(_family(server[0]), settings.tracer)
    else:
        context = settings.ssl_context if transport is Transport.TLS else None
        if transport is Transport.TLS and context is None:
            context = make_ssl_context(None, settings.insecure)
        channel = await StreamChannel.open(
            server,
            deadline=deadline,
            ssl_context=context,
            server_hostname=ep.target.url.host if context is not None else None,
            tracer=settings.tracer,
        )
    try:
        yield channel
    finally:
        await channel.aclose()


def allocation_on(
    ep: Endpoint, channel: Channel, server: Address, settings: CheckSettings
) -> Allocation:
    """An Allocation with the endpoint's credentials and transport, on an open channel."""
    allocation = Allocation(
        channel,
        server,
        ep.target.entry.credentials,
        policy=settings.policy,
        transport_name=ep.target.transport.value,
    )
    if isinstance(channel, UdpChannel):
        allocation.conclusive = _stun_only_judge(channel, server, settings)
    return allocation


@contextlib.asynccontextmanager
async def anonymous(
    ep: Endpoint, settings: CheckSettings, deadline: float
) -> AsyncIterator[Allocation]:
    """An Allocation without credentials (what anyone may ask; the audit's) on a fresh
    channel, deleted and closed on exit; the caller calls allocate()."""
    server = (ep.address, ep.port)
    async with open_channel(ep, server, settings, deadline) as channel:
        allocation = Allocation(
            channel, server, None, policy=settings.policy, transport_name=ep.target.transport.value
        )
        async with allocation:
            yield allocation


BURST = 20  # Binding requests that weigh an unanswered Allocate (BURST_GAP apart)
BURST_GAP = 0.005


def _stun_only_judge(channel: UdpChannel, server: Address, settings: CheckSettings) -> Conclusive:
    """After three unanswered Allocates: a burst of Bindings from the same socket to the same
    address. All answered means the path carries this 5-tuple's packets both ways, so the
    Allocates were dropped by the server, not lost. With 30 % of requests lost (the lossy
    lab), 20 of 20 answered happens once in 1,250 bursts, and three Allocates lost before
    it in 27 of 1,000 of those: a wrong verdict once in 46,000 allocations."""

    async def judge(sends: int, waited: float) -> CheckFailure | None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        single = RetryPolicy(max_sends=1)

        async def one(i: int) -> float | None:
            await asyncio.sleep(i * BURST_GAP)
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            try:
                answer = await channel.request(
                    request,
                    server,
                    deadline=loop.time() + 0.3,
                    policy=single,
                    what="STUN Binding (udp, weighing an unanswered Allocate)",
                )
            except CheckFailure:
                return None
            return answer.rtt

        rtts = await asyncio.gather(*(one(i) for i in range(BURST)))
        answered = [r for r in rtts if r is not None]
        if len(answered) < BURST:
            return None  # loss on the path: the RFC 8489 schedule goes on
        return StunOnlyServer(
            "TURN Allocate (udp)", sends, waited + loop.time() - began, BURST, min(answered)
        )

    return judge


def _base(ep: Endpoint, kind: str) -> dict[str, Any]:
    return {
        "url": str(ep.target.url),
        "transport": ep.target.transport.value,
        "kind": kind,
        "server": ep.server,
        "port": ep.port,
        "via": ep.via,
        "extra": ep.target.extra,
    }


def cause_of(exc: BaseException) -> str:
    """The kind of failure, as the browser model needs it (browser.py)."""
    if isinstance(exc, RedirectedFailure):
        return cause_of(exc.failure)
    if isinstance(exc, TransactionTimeout):
        return "invalid" if exc.ignored else "timeout"
    if isinstance(exc, ConnectFailure):
        return "timeout-connect" if exc.kind == "timeout" else "connect"
    if isinstance(exc, UnprotectedAnswer):
        return "error" if exc.kind == "error" else "invalid"
    for kind, name in (
        (DnsFailure, "dns"),
        (TlsFailure, "tls"),
        (AuthFailure, "auth"),
        (ErrorResponse, "error"),
        (ProtocolFailure, "protocol"),
        (RelayFailure, "relay"),
    ):
        if isinstance(exc, kind):
            return name
    return "internal"


def failed(ep: Endpoint, kind: str, exc: BaseException, server: str | None = None) -> CheckResult:
    """A failed CheckResult for this endpoint, with the reason and hint from explain.py."""
    base = _base(ep, kind)
    if server is not None:
        base["server"] = server
    inner = exc.failure if isinstance(exc, RedirectedFailure) else exc
    details: dict[str, Any] = {}
    if isinstance(inner, ErrorResponse | UnprotectedAnswer):
        details["phrase"] = inner.phrase
    software = getattr(inner, "software", None)
    if software:
        details["software"] = software
    return CheckResult(
        **base,
        ok=False,
        error=explain(exc, server=base["server"] or ""),
        timed_out=isinstance(exc, TransactionTimeout),
        invalid_answers=isinstance(exc, TransactionTimeout) and bool(exc.ignored),
        cause=cause_of(exc),
        details=details,
    )


def _tls_details(tls: TlsInfo | None, insecure: bool, host: str) -> dict[str, Any]:
    if tls is None:
        return {}
    out: dict[str, Any] = {"version": tls.version, "cipher": tls.cipher, "verified": not insecure}
    if tls.cert is not None:
        out["certificate"] = tls.cert.to_json(host)
    return {"tls": out}


async def _follow_redirect(
    ep: Endpoint,
    attempt: Callable[[Address], Awaitable[CheckResult]],
) -> CheckResult:
    """Run at the endpoint; on 300 Try Alternate follow once (RFC 8489 §10), never in a loop."""
    first: Address = (ep.address, ep.port)
    try:
        return await attempt(first)
    except Redirect as redirect:
        alternate = redirect.alternate
    if alternate == first:
        raise ProtocolFailure(
            "alternate-loop", f"300 Try Alternate points back to {fmt_address(first)}"
        )
    try:
        result = await attempt(alternate)
    except Redirect as again:
        raise ProtocolFailure(
            "alternate-loop",
            f"redirected to {fmt_address(alternate)}, which redirected again to "
            f"{fmt_address(again.alternate)}",
        ) from None
    except CheckFailure as exc:
        raise RedirectedFailure(fmt_address(alternate), exc) from exc
    details = {**result.details, "redirected_from": ep.server}
    return CheckResult(
        **{**_result_fields(result), "details": details, "server": fmt_address(alternate)}
    )


def _result_fields(result: CheckResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in CheckResult.__dataclass_fields__}


# -- STUN Binding -----------------------------------------------------------------------------


async def binding_check(ep: Endpoint, settings: CheckSettings, pool: UdpPool) -> CheckResult:
    """STUN Binding: srflx candidate (XOR-MAPPED-ADDRESS) and RTT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout

    async def attempt(server: Address) -> CheckResult:
        if ep.target.transport is Transport.UDP:
            channel = await pool.get(_family(server[0]))
            return await _binding_on(ep, channel, server, deadline, settings, None)
        async with open_channel(ep, server, settings, deadline) as stream:
            assert isinstance(stream, StreamChannel)
            return await _binding_on(ep, stream, server, deadline, settings, stream.tls)

    try:
        return await _follow_redirect(ep, attempt)
    except CheckFailure as exc:
        return failed(ep, "stun", exc)


async def _binding_on(
    ep: Endpoint,
    channel: Channel,
    server: Address,
    deadline: float,
    settings: CheckSettings,
    tls: TlsInfo | None,
) -> CheckResult:
    # Exactly Chromium's srflx Binding: no attribute at all (stun_port.cc StunBindingRequest;
    # no FINGERPRINT, no SOFTWARE), so the server answers turncheck as it answers browsers.
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    transport = ep.target.transport.value
    answer = await channel.request(
        request,
        server,
        deadline=deadline,
        policy=settings.policy,
        what=f"STUN Binding ({transport})",
    )
    response = answer.message
    if response.message_class == stun.Class.ERROR:
        code, phrase = stun.error_of(response)
        if code == 300:
            raise Redirect(alternate_of(response))
        raise ErrorResponse("Binding", code, phrase)
    attrs = response.attributes
    mapped = attrs.get("XOR-MAPPED-ADDRESS") or attrs.get("MAPPED-ADDRESS")
    if mapped is None:
        raise ProtocolFailure(
            "missing-attribute", "the Binding response has no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS"
        )
    details: dict[str, Any] = {
        "sends": answer.sends,
        **_tls_details(tls, settings.insecure, ep.target.url.host),
    }
    if "XOR-MAPPED-ADDRESS" not in attrs:
        details["note"] = "only MAPPED-ADDRESS (an RFC 3489 server)"
    if "SOFTWARE" in attrs:
        details["software"] = stun.clean_text(attrs["SOFTWARE"])
    if "OTHER-ADDRESS" in attrs:
        details["other_address"] = fmt_address(attrs["OTHER-ADDRESS"])
    plain = attrs.get("MAPPED-ADDRESS")
    if plain is not None and "XOR-MAPPED-ADDRESS" in attrs and tuple(plain) != tuple(mapped):
        details["alg"] = f"MAPPED-ADDRESS {fmt_address(plain)} differs from XOR-MAPPED-ADDRESS"
    local = channel.local_address
    if isinstance(channel, UdpChannel):
        local_ip = local_ip_towards(server)
        if local_ip is not None:
            details["local_ip"] = local_ip  # the browser drops a srflx equal to its host address
    other, method = stun.other_address(attrs)
    same_family = other is not None and (":" in str(other[0])) == (":" in server[0])
    if other is not None and same_family and isinstance(channel, UdpChannel):
        # Mapping test II (RFC 5780, or RFC 3489's CHANGED-ADDRESS) from the same socket: the
        # symmetric-NAT line needs no second URL, and it runs while the allocations run.
        seen = await _mapped_from(channel, (str(other[0]), server[1]), deadline, settings)
        if seen is not None:
            details["other_mapped"] = {
                "server": fmt_address((str(other[0]), server[1])),
                "mapped": seen,
                "method": method,
            }
    srflx = Candidate(
        "srflx",
        str(mapped[0]),
        int(mapped[1]),
        "udp" if ep.target.transport is Transport.UDP else "tcp",
        related_address=details.get("local_ip", local[0]),
        related_port=local[1],
    )
    return CheckResult(
        **_base(ep, "stun"),
        ok=True,
        rtt_ms=answer.rtt * 1000,
        candidates=(srflx,),
        details=details,
        local=fmt_address(local) if ep.target.transport is Transport.UDP else None,
    )


async def _mapped_from(
    channel: Channel, dest: Address, deadline: float, settings: CheckSettings
) -> str | None:
    """The mapped address dest sees for this socket; None if it does not answer in time."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.add_fingerprint()
    try:
        answer = await channel.request(
            request, dest, deadline=deadline, policy=settings.policy, what="STUN Binding (udp)"
        )
    except CheckFailure:
        return None
    mapped = answer.message.attributes.get("XOR-MAPPED-ADDRESS")
    return fmt_address((str(mapped[0]), int(mapped[1]))) if mapped else None


# -- TURN Allocate ----------------------------------------------------------------------------


async def allocate_check(ep: Endpoint, settings: CheckSettings) -> CheckResult:
    """TURN Allocate as browsers make it (no address family, a UDP relay), with long-term
    credentials, and its relay check; the allocation is deleted before returning."""
    return await _allocate(ep, settings, None, browser_relay(settings.relay))


def browser_relay(relay: RelaySettings | None) -> RelaySettings | None:
    """The relay check of the browser's own Allocate: no family, UDP. With --relay-family or
    --tcp-relay, --peer is the echo of their checks (of that family, or over TCP), so this
    one relays to a second allocation."""
    if relay is None or (relay.family is None and not relay.tcp):
        return relay
    return replace(relay, family=None, tcp=False, peer=None)


def asked_checks(ep: Endpoint, settings: CheckSettings) -> list[Awaitable[CheckResult]]:
    """The checks --relay-family and --tcp-relay add beside a TURN endpoint's Allocate, each a
    row of its own that browser.relay_variant keeps out of what a browser gets."""
    relay = settings.relay
    if relay is None or not ep.target.url.is_turn:
        return []
    out: list[Awaitable[CheckResult]] = []
    if relay.family is not None:
        out.append(relay_family_check(ep, settings))
    if relay.tcp and relay.peer is not None and ep.target.transport is not Transport.UDP:
        out.append(tcp_relay_row(ep, settings))
    return out


async def relay_family_check(ep: Endpoint, settings: CheckSettings) -> CheckResult:
    """--relay-family: an Allocate asking for the family (turnutils_uclient -x/-X/-Z does the
    same) and data relayed through each family; details.relay_family says what it got."""
    relay = settings.relay
    assert relay is not None and relay.family is not None
    family = relay.family
    try:
        # With --tcp-relay, --peer is the TCP echo: the family's data goes to a second allocation.
        return await _allocate(
            ep, settings, family, replace(relay, peer=None) if relay.tcp else relay
        )
    except Exception as exc:  # a bug: still this row, never taken for the browser's Allocate
        result = failed(ep, "turn", exc)
        text = f"the {family_name(family)} allocation"
        found = FamilyRelay(family, RelayResult(text, None, {}, result.error), {})
        return replace(result, details={**result.details, "relay_family": found.to_json()})


async def _allocate(
    ep: Endpoint, settings: CheckSettings, family: str | None, relay: RelaySettings | None
) -> CheckResult:
    """An Allocate asking for *family* (None: none, as browsers) and its relay check; deleted
    before returning."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout
    credentials = ep.target.entry.credentials
    tries = family_tries(family)

    async def attempt(server: Address) -> CheckResult:
        more: dict[str, Any] = {}
        for n, extra in enumerate(tries):
            async with allocated(ep, server, settings, deadline, extra) as (channel, allocation):
                if n + 1 < len(tries) and not _answered_dual(allocation):
                    continue  # deleted on the way out: the draft's code point next
                found = None
                if relay is not None and family is None:
                    found = await _relay_check(ep, server, allocation, settings, relay)
                elif relay is not None and family is not None:
                    assert extra is not None
                    by_family = await family_relay_on(
                        ep, server, allocation, settings, relay, family, extra
                    )
                    found = by_family.result
                    shown = " + ".join(fmt_address(r) for r in by_family.relayed) or "none"
                    more = {"relay_family": by_family.to_json(), "note": f"relay {family} {shown}"}
            tls = channel.tls if isinstance(channel, StreamChannel) else None
            result = _allocation_result(ep, allocation, settings, tls, found)
            return replace(result, details={**result.details, **more}) if more else result
        raise AssertionError("unreachable")  # pragma: no cover - the last try returns

    try:
        return await _follow_redirect(ep, attempt)
    except CheckFailure as exc:
        result = failed(ep, "turn", exc)
        if family is not None:
            # 440 to an IPv6 Allocate is no IPv4 problem: say which family was refused.
            refusal = family_refusal(family, exc, f"the {family_name(family)} allocation")
            error = refusal.result.error if refusal.refused is not None else result.error
            details = {**result.details, "relay_family": refusal.to_json()}
            result = replace(result, error=error, details=details)
        if credentials is not None and result.error is not None:
            error = rest_credential_failure(result.error, credentials.username, time.time())
            if error is not result.error:
                result = CheckResult(**{**_result_fields(result), "error": error})
        return result


async def _relay_check(
    ep: Endpoint,
    server: Address,
    a: Allocation,
    settings: CheckSettings,
    relay: RelaySettings,
) -> RelayResult:
    """Echo through allocation A: via a second allocation on the same server, or --peer."""
    loop = asyncio.get_running_loop()
    # Requests (the second Allocate, permissions, channels) get --timeout; the echoes then
    # their sending time and a grace: the relay check keeps to --timeout + 2 s + sending.
    control = loop.time() + settings.timeout
    deadline = control + 2 * relay.grace + relay.count * relay.interval
    if relay.peer is not None:
        return await echo_via_peer(a, relay.peer, relay, deadline, control)
    peer_text = "a second allocation on the same server"

    def second_failed(exc: CheckFailure | Redirect) -> RelayResult:
        reason = explain(exc).reason if isinstance(exc, CheckFailure) else str(exc)
        return RelayResult(peer_text, None, {}, explain(RelayFailure("second-allocation", reason)))

    try:
        async with allocated(ep, server, settings, control) as (_, b):
            return await echo_between(a, b, relay, deadline, control)
    except (CheckFailure, Redirect) as exc:  # no second allocation (or no connection for it)
        return second_failed(exc)


@dataclass(frozen=True, slots=True)
class FamilyRelay:
    """--relay-family's relay check (and the audit's IPv6 and dual-allocation checks): what
    the allocations asking for a family got, and the data relayed through each family."""

    asked: str  # ipv4 | ipv6 | dual
    result: RelayResult  # every family's echo in one (relay.merge_families)
    families: dict[str, RelayResult]  # per family: ipv4, ipv6
    relayed: tuple[Address, ...] = ()  # the first allocation's relayed addresses
    # dual: the ADDITIONAL-ADDRESS-FAMILY code point the server read: "rfc8656" (0x8000) or
    # "draft" (0x8032, coturn's); None when it read neither, or for one family.
    attribute: str | None = None
    address_error: tuple[str, int, str] | None = None  # ADDRESS-ERROR-CODE of a dual answer
    refused: tuple[int, str] | None = None  # the Allocate's error (440: family not offered)

    def has(self, family: str) -> bool:
        """The server gave a relayed address of *family*."""
        return any(family_of(r[0]) == family for r in self.relayed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "asked": self.asked,
            "relayed": [fmt_address(r) for r in self.relayed],
            "families": {f: r.to_json() for f, r in self.families.items()},
        }
        if self.attribute is not None:
            out["attribute"] = self.attribute
        if self.address_error is not None:
            fam, code, phrase = self.address_error
            out["address_error"] = {"family": fam, "code": code, "reason": phrase}
        if self.refused is not None:
            out["refused"] = {"code": self.refused[0], "reason": self.refused[1]}
        return out


@dataclass(frozen=True, slots=True)
class TcpRelay:
    """--tcp-relay's relay check (and the audit's tcp-relay): an RFC 6062 TCP allocation,
    Connect, ConnectionBind, and the data both ways."""

    peer: str  # what A connected to: --peer, or the second TCP allocation's relayed address
    result: RelayResult
    relayed: Address | None = None  # A's relayed address; None: no TCP allocation
    refused: tuple[int, str] | None = None  # the Allocate's error (442: not offered)
    between: bool = False  # the peer was turncheck's own second TCP allocation
    family: str | None = None  # the relay family the TCP Allocate asked for (ipv4, ipv6)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.result.to_json(),
            "peer": self.peer,
            "between": self.between,
            "family": self.family,
            "relayed": fmt_address(self.relayed) if self.relayed else None,
            "both_ways": self.result.ok,
            "refused": (
                None
                if self.refused is None
                else {"code": self.refused[0], "reason": self.refused[1]}
            ),
        }


def _relay_window(settings: CheckSettings, relay: RelaySettings) -> tuple[float, float]:
    """(deadline of the requests, deadline of the echoes), counted as _relay_check does."""
    control = asyncio.get_running_loop().time() + settings.timeout
    return control, control + 2 * relay.grace + relay.count * relay.interval


def _refusal(exc: CheckFailure | Redirect) -> tuple[int, str] | None:
    if isinstance(exc, ErrorResponse) and exc.method == "Allocate":
        return exc.code, exc.phrase
    return None


def _answered_dual(a: Allocation) -> bool:
    """A dual Allocate the server read: both families, or an ADDRESS-ERROR-CODE for one."""
    return a.address_error is not None or len({family_of(r[0]) for r in a.relayed_all}) == 2


def family_tries(family: str | None) -> list[dict[str, Any] | None]:
    """The Allocate attributes to try for a relay family, in turn: none for None (the
    browser's Allocate); a dual Allocate at RFC 8656's ADDITIONAL-ADDRESS-FAMILY (0x8000),
    then at the draft's 0x8032 (coturn's) when the server ignored the first."""
    if family is None:
        return [None]
    if family == "dual":
        return [stun.requested_family("dual"), stun.requested_family("dual", draft=True)]
    return [stun.requested_family(family)]


def family_refusal(family: str, exc: CheckFailure | Redirect, text: str) -> FamilyRelay:
    """A relay family whose first Allocate failed: refused (440, 400...) or not answered."""
    reason = (
        asked_refused(exc, family=family)
        if isinstance(exc, CheckFailure)
        else explain(RelayFailure("second-allocation", str(exc)))
    )
    return FamilyRelay(family, RelayResult(text, None, {}, reason), {}, refused=_refusal(exc))


async def family_relay_check(
    ep: Endpoint,
    server: Address,
    settings: CheckSettings,
    relay: RelaySettings,
    family: str,
) -> FamilyRelay:
    """An allocation A that asks for *family* (ipv4, ipv6, or dual: both), then data
    relayed through each family (family_relay_on); every allocation deleted. A dual
    Allocate the server ignores (one family, no ADDRESS-ERROR-CODE) is deleted and asked
    again at the draft's code point."""
    control = _relay_window(settings, relay)[0]
    tries = family_tries(family)
    try:
        for n, extra in enumerate(tries):
            async with allocated(ep, server, settings, control, extra) as (_, a):
                if n + 1 < len(tries) and not _answered_dual(a):
                    continue  # deleted on the way out: the draft's code point next
                assert extra is not None
                return await family_relay_on(ep, server, a, settings, relay, family, extra)
    except (CheckFailure, Redirect) as exc:
        return family_refusal(family, exc, f"the {family_name(family)} allocation")
    raise AssertionError("unreachable")  # pragma: no cover - the last try returns


async def family_relay_on(
    ep: Endpoint,
    server: Address,
    a: Allocation,
    settings: CheckSettings,
    relay: RelaySettings,
    family: str,
    extra: dict[str, Any],
) -> FamilyRelay:
    """Data through each family of allocation *a* (which asked with *extra*): echoed by a
    second allocation B asking the same (turncheck's own relayed addresses), or by
    relay.peer (one family)."""
    attribute = None
    if family == "dual" and _answered_dual(a):
        attribute = "draft" if "DRAFT-ADDITIONAL-ADDRESS-FAMILY" in extra else "rfc8656"

    def found(result: RelayResult, results: dict[str, RelayResult]) -> FamilyRelay:
        return FamilyRelay(family, result, results, a.relayed_all, attribute, a.address_error)

    if relay.peer is not None:
        via = await _family_via_peer(a, relay.peer, family, settings, relay)
        return found(via, {family: via})
    text = f"a second {family_name(family)} allocation on the same server"
    control = _relay_window(settings, relay)[0]
    try:
        async with allocated(ep, server, settings, control, extra) as (_, b):
            text = "the second allocation " + " + ".join(fmt_address(r) for r in b.relayed_all)
            results = await _families_between(a, b, family, text, settings, relay)
    except (CheckFailure, Redirect) as exc:  # no second allocation (or no connection for it)
        words = explain(exc).reason if isinstance(exc, CheckFailure) else str(exc)
        reason = explain(RelayFailure("second-allocation", words))
        return found(RelayResult(text, None, {}, reason), {})
    return found(merge_families(results, text), results)


async def _families_between(
    a: Allocation,
    b: Allocation,
    asked: str,
    text: str,
    settings: CheckSettings,
    relay: RelaySettings,
) -> dict[str, RelayResult]:
    """A and B echo through each family in turn, each on its own channel number."""
    results: dict[str, RelayResult] = {}
    families = ("ipv4", "ipv6") if asked == "dual" else (asked,)
    for i, family in enumerate(families):
        lacking = next((x for x in (a, b) if relayed_in(x, family) is None), None)
        if lacking is not None:
            missing = family_missing(asked, family, lacking.address_error, lacking.software)
            results[family] = RelayResult(text, None, {}, missing)
            continue
        control, deadline = _relay_window(settings, relay)  # each family its own window
        results[family] = await echo_between(
            a, b, relay, deadline, control, family=family, number=FIRST_CHANNEL + i
        )
    return results


async def _family_via_peer(
    a: Allocation, peer: Address, family: str, settings: CheckSettings, relay: RelaySettings
) -> RelayResult:
    if relayed_in(a, family) is None:
        missing = family_missing(family, family, a.address_error, a.software)
        return RelayResult(f"the peer {fmt_address(peer)}", None, {}, missing)
    control, deadline = _relay_window(settings, relay)
    return await echo_via_peer(a, peer, relay, deadline, control)


async def tcp_relay_check(
    ep: Endpoint,
    server: Address,
    settings: CheckSettings,
    relay: RelaySettings,
    peer: Address | None,
) -> TcpRelay:
    """An RFC 6062 TCP allocation A on a fresh control connection; A Connects to *peer* (the
    operator's TCP echo), or with peer None to a second TCP allocation B that turncheck
    holds (B binds the ConnectionAttempt and echoes); data connections bound, data both
    ways; every allocation deleted. relay.family ipv4/ipv6 asks for that relay family
    (an IPv6 peer alone asks for IPv6)."""
    family = _tcp_family(relay, peer)
    extra = stun.requested_family(family) if family else {}
    control, deadline = _relay_window(settings, relay)
    shown = fmt_address(peer) if peer is not None else "a second TCP allocation"
    relayed: Address | None = None
    try:
        async with tcp_allocated(ep, server, settings, control, extra) as (_, a):
            relayed = a.relayed
            opener = data_opener(ep, server, settings, control)
            if peer is not None:
                result = await tcp_echo_via_peer(a, peer, opener, relay, deadline, control)
            else:
                async with tcp_allocated(ep, server, settings, control, extra) as (_, b):
                    assert b.relayed is not None
                    shown = fmt_address(b.relayed)
                    result = await tcp_echo_between(a, b, opener, relay, deadline, control)
    except (CheckFailure, Redirect) as exc:
        if isinstance(exc, CheckFailure):
            reason = (
                asked_refused(exc, family=family, tcp=True) if relayed is None else explain(exc)
            )
        else:
            reason = explain(RelayFailure("second-allocation", str(exc)))
        failed_result = RelayResult(f"the TCP peer {shown}", None, {}, reason)
        refusal = _refusal(exc) if relayed is None else None
        return TcpRelay(shown, failed_result, relayed, refusal, peer is None, family)
    return TcpRelay(shown, result, relayed, between=peer is None, family=family)


def _tcp_family(relay: RelaySettings, peer: Address | None) -> str | None:
    """The relay family a TCP Allocate asks for: --relay-family ipv4/ipv6, or IPv6 for an
    IPv6 peer (the server's default family is IPv4); None asks for none."""
    if relay.family in ("ipv4", "ipv6"):
        return relay.family
    if peer is not None and family_of(peer[0]) == "ipv6":
        return "ipv6"
    return None


async def tcp_relay_row(ep: Endpoint, settings: CheckSettings) -> CheckResult:
    """--tcp-relay on a TURN URL over TCP or TLS: an RFC 6062 TCP allocation (its relay
    candidate TCP) that Connects to --peer, a TCP echo, and relays data both ways over a
    bound data connection; every allocation and connection closed. details.tcp_relay says
    what it got."""
    relay = settings.relay
    assert relay is not None and relay.peer is not None
    peer = relay.peer
    family = _tcp_family(relay, peer)
    extra = stun.requested_family(family) if family else {}
    shown = fmt_address(peer)

    async def attempt(server: Address) -> CheckResult:
        control, deadline = _relay_window(settings, relay)
        async with tcp_allocated(ep, server, settings, control, extra) as (channel, a):
            opener = data_opener(ep, server, settings, control)
            echo = await tcp_echo_via_peer(a, peer, opener, relay, deadline, control)
        tls = channel.tls if isinstance(channel, StreamChannel) else None
        result = _allocation_result(ep, a, settings, tls, echo, relayed_protocol="tcp")
        return _with_tcp_relay(result, TcpRelay(shown, echo, a.relayed, family=family))

    try:
        return await _follow_redirect(ep, attempt)
    except Exception as exc:  # a bug too: still this row, never taken for the browser's Allocate
        result = failed(ep, "turn", exc)
        refusal = _refusal(exc) if isinstance(exc, CheckFailure) else None
        error = result.error
        if refusal is not None:
            error = asked_refused(exc, family=family, tcp=True, server=result.server or "")
        echo = RelayResult(f"the TCP peer {shown}", None, {}, error)
        found = TcpRelay(shown, echo, None, refusal, family=family)
        return _with_tcp_relay(replace(result, error=error), found)


def _with_tcp_relay(result: CheckResult, found: TcpRelay) -> CheckResult:
    if found.relayed is None:
        outcome = "no TCP allocation"
    else:
        outcome = "data both ways" if found.result.ok else "no data back"
    note = f"TCP relay to {found.peer}: {outcome}"
    return replace(result, details={**result.details, "tcp_relay": found.to_json(), "note": note})


@contextlib.asynccontextmanager
async def tcp_allocated(
    ep: Endpoint,
    server: Address,
    settings: CheckSettings,
    deadline: float,
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Channel, Allocation]]:
    """An RFC 6062 TCP allocation (REQUESTED-TRANSPORT TCP, §6.2) on a fresh TCP/TLS
    control connection (§4.1: never UDP); deleted and closed on exit."""
    if ep.target.transport is Transport.UDP:
        raise ProtocolFailure(
            "bad-answer", "an RFC 6062 TCP allocation needs a TCP or TLS control connection"
        )
    attrs = {"REQUESTED-TRANSPORT": stun.REQUESTED_TRANSPORT_TCP, **(extra or {})}
    async with allocated(ep, server, settings, deadline, attrs) as pair:
        yield pair


def data_opener(
    ep: Endpoint, server: Address, settings: CheckSettings, deadline: float
) -> DataOpener:
    """New data connections to the server for ConnectionBind (RFC 6062 §4.4): the
    endpoint's transport (TCP, or TLS with the URL's SNI), each closed on exit."""

    @contextlib.asynccontextmanager
    async def open_data() -> AsyncIterator[StreamChannel]:
        async with open_channel(ep, server, settings, deadline) as channel:
            assert isinstance(channel, StreamChannel)
            yield channel

    return open_data


# turn_port.cc MAX_ALLOCATE_MISMATCH_RETRIES: a 437 on Allocate means the server still holds
# an allocation on this 5-tuple (the kernel reused a local port the server freed a moment
# ago): retry from a fresh port, as Chromium does, twice at most.
MISMATCH_RETRIES = 2


def _mismatch(exc: ErrorResponse) -> bool:
    return exc.code == 437 and exc.method == "Allocate"


@contextlib.asynccontextmanager
async def allocated(
    ep: Endpoint,
    server: Address,
    settings: CheckSettings,
    deadline: float,
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Channel, Allocation]]:
    """An allocation on a fresh channel, deleted and closed on exit; a 437 is retried from a
    fresh local port. *extra*: more Allocate attributes (the audit's)."""
    for tries in range(MISMATCH_RETRIES + 1):
        async with open_channel(ep, server, settings, deadline) as channel:
            allocation = allocation_on(ep, channel, server, settings)
            async with allocation:
                try:
                    await allocation.allocate(deadline, extra)
                except ErrorResponse as exc:
                    if _mismatch(exc) and tries < MISMATCH_RETRIES:
                        continue  # the next try opens a fresh local port
                    raise
                yield channel, allocation
                return


def _allocation_result(
    ep: Endpoint,
    allocation: Allocation,
    settings: CheckSettings,
    tls: TlsInfo | None,
    relay: RelayResult | None,
    relayed_protocol: str = "udp",
) -> CheckResult:
    """The row of a granted Allocate; *relayed_protocol*: 'tcp' for an RFC 6062 TCP
    allocation's relayed address."""
    assert allocation.relayed is not None
    transport = ep.target.transport.value
    candidates: list[Candidate] = []
    if allocation.mapped is not None:
        candidates.append(
            Candidate(
                "srflx",
                allocation.mapped[0],
                allocation.mapped[1],
                "udp" if transport == "udp" else "tcp",
            )
        )
    # A dual allocation (--relay-family dual) has a relayed address of each family.
    for relayed in allocation.relayed_all or (allocation.relayed,):
        candidates.append(
            Candidate(
                "relay",
                relayed[0],
                relayed[1],
                relayed_protocol,
                related_address=allocation.mapped[0] if allocation.mapped else None,
                related_port=allocation.mapped[1] if allocation.mapped else None,
                relay_protocol=transport,
            )
        )
    details: dict[str, Any] = {
        "lifetime": allocation.lifetime,
        "realm": allocation.realm,
        "deleted": allocation.deleted,
        # Granted without a 401 challenge: no authentication at all (an open relay).
        "unchallenged": allocation.key is None,
        **_tls_details(tls, settings.insecure, ep.target.url.host),
    }
    if allocation.software:
        details["software"] = str(allocation.software)
    if allocation.credentials is not None and " fetched from " not in ep.target.entry.origin:
        # A fetched credential is the app's: used, never shown (its username included).
        details["username"] = allocation.credentials.username
    relay_failed = relay is not None and not relay.ok
    local = None
    if isinstance(allocation.channel, UdpChannel):
        # Firefox's srflx from a UDP TURN server is the Allocate's mapped address, pruned
        # when it equals the host candidate (nICEr ice_component maybe_prune_candidate).
        local = fmt_address(allocation.channel.local_address)
        local_ip = local_ip_towards(allocation.server)
        if local_ip is not None:
            details["local_ip"] = local_ip
    return CheckResult(
        **_base(ep, "turn"),
        ok=not relay_failed,
        local=local,
        rtt_ms=None if allocation.first_rtt is None else allocation.first_rtt * 1000,
        candidates=tuple(candidates),
        error=relay.error if relay is not None and relay_failed else None,
        details=details,
        relay=relay,
        cause="relay" if relay_failed else None,
    )
