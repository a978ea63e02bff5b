"""One coroutine per check (STUN Binding, TURN Allocate) → a CheckResult. Never prints."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
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
from turncheck.explain import explain, rest_credential_failure
from turncheck.relay import RelaySettings, echo_between, echo_via_peer
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
from turncheck.turn import Allocation, Redirect, alternate_of
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
    """TURN Allocate with long-term credentials; the allocation is deleted before returning."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout
    credentials = ep.target.entry.credentials

    async def attempt(server: Address) -> CheckResult:
        async with allocated(ep, server, settings, deadline) as (channel, allocation):
            relay = None
            if settings.relay is not None:
                relay = await _relay_check(ep, server, allocation, settings, settings.relay)
        tls = channel.tls if isinstance(channel, StreamChannel) else None
        return _allocation_result(ep, allocation, settings, tls, relay)

    try:
        return await _follow_redirect(ep, attempt)
    except CheckFailure as exc:
        result = failed(ep, "turn", exc)
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


# turn_port.cc MAX_ALLOCATE_MISMATCH_RETRIES: a 437 on Allocate means the server still holds
# an allocation on this 5-tuple (the kernel reused a local port the server freed a moment
# ago): retry from a fresh port, as Chromium does, twice at most.
MISMATCH_RETRIES = 2


def _mismatch(exc: ErrorResponse) -> bool:
    return exc.code == 437 and exc.method == "Allocate"


@contextlib.asynccontextmanager
async def allocated(
    ep: Endpoint, server: Address, settings: CheckSettings, deadline: float
) -> AsyncIterator[tuple[Channel, Allocation]]:
    """An allocation on a fresh channel, deleted and closed on exit; a 437 is retried from a
    fresh local port."""
    for tries in range(MISMATCH_RETRIES + 1):
        async with open_channel(ep, server, settings, deadline) as channel:
            allocation = allocation_on(ep, channel, server, settings)
            async with allocation:
                try:
                    await allocation.allocate(deadline)
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
) -> CheckResult:
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
    candidates.append(
        Candidate(
            "relay",
            allocation.relayed[0],
            allocation.relayed[1],
            "udp",
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
