"""The relay check: real packets through a TURN allocation, echoed back, measured.

Client to client (as `turnutils_uclient -y`): allocation A sends numbered
packets to allocation B's relayed address, B echoes them to A's. Both legs
are client-initiated, so this works through any NAT. Both relaying paths are
exercised in turn: a short Send/Data indication probe first (before any
ChannelBind, which would turn the peer's data into ChannelData), then the
measured ChannelData run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from turncheck.errors import CheckFailure, ConnectFailure, RelayFailure
from turncheck.explain import explain, in_family
from turncheck.results import Explanation, PathStats, RelayResult
from turncheck.transport import Address, StreamChannel
from turncheck.turn import FIRST_CHANNEL, Allocation
from turncheck.urls import fmt_address

_MAGIC = b"TCrl"
_HEADER = struct.Struct("!4s8sI")  # magic, run id, sequence number
MIN_SIZE = _HEADER.size
MAX_SIZE = 1400  # stay under a 1500-byte MTU with IP, UDP and TURN headers
PATHS = ("indication", "channel")
INDICATION_PROBE = 3  # packets on the Send/Data indication path


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """What the relay check sends: --count packets of --size bytes every --interval seconds."""

    count: int = 10
    size: int = 100
    interval: float = 0.02
    peer: Address | None = None  # an outside UDP echo peer instead of a second allocation
    grace: float = 1.0  # how long to wait for the last echoes after the last send
    # --relay-family: a second Allocate beside the browser's asks for ipv4 or ipv6
    # (REQUESTED-ADDRESS-FAMILY) or both (dual: ADDITIONAL-ADDRESS-FAMILY), and its relay check
    # relays through each family; None asks for none, as browsers do.
    family: str | None = None
    # --tcp-relay: over TCP/TLS, also an RFC 6062 TCP allocation relaying TCP to `peer` (a TCP
    # echo then), beside the browser's Allocate.
    tcp: bool = False


FAMILIES = ("ipv4", "ipv6", "dual")


class EchoMeter:
    """Numbers packets, matches their echoes, and computes loss, RTT and jitter."""

    def __init__(self, path: str, count: int, size: int) -> None:
        self.path = path
        self.count = count
        self.size = size
        self.run_id = os.urandom(8)
        self.sent_at: list[float | None] = [None] * count
        self.rtts: list[float] = []  # in arrival order
        self.seen: set[int] = set()
        self.highest = -1
        self.out_of_order = 0
        self.duplicates = 0
        self.all_back = asyncio.Event()

    def packet(self, seq: int) -> bytes:
        head = _HEADER.pack(_MAGIC, self.run_id, seq)
        return head + bytes(self.size - len(head))

    def sent(self, seq: int, when: float) -> None:
        self.sent_at[seq] = when

    def echo(self, payload: bytes, when: float) -> None:
        if len(payload) < _HEADER.size:
            return
        magic, run_id, seq = _HEADER.unpack_from(payload, 0)
        if magic != _MAGIC or run_id != self.run_id or not 0 <= seq < self.count:
            return
        sent = self.sent_at[seq]
        if sent is None:
            return
        if seq in self.seen:
            self.duplicates += 1
            return
        self.seen.add(seq)
        if seq < self.highest:
            self.out_of_order += 1
        self.highest = max(self.highest, seq)
        self.rtts.append(when - sent)
        if len(self.seen) == sum(1 for t in self.sent_at if t is not None) == self.count:
            self.all_back.set()

    def stats(self) -> PathStats:
        sent = sum(1 for t in self.sent_at if t is not None)
        if not self.rtts:
            return PathStats(self.path, sent, 0, None, None, None, None, 0, self.duplicates)
        # RFC 3550 §6.4.1 interarrival jitter, applied to successive round trips.
        jitter = 0.0
        for before, after in zip(self.rtts, self.rtts[1:], strict=False):
            jitter += (abs(after - before) - jitter) / 16
        return PathStats(
            self.path,
            sent,
            len(self.seen),
            min(self.rtts),
            sum(self.rtts) / len(self.rtts),
            max(self.rtts),
            jitter,
            self.out_of_order,
            self.duplicates,
        )


async def _pump(
    meter: EchoMeter,
    send: Callable[[bytes], None],
    settings: RelaySettings,
    deadline: float,
    *,
    interval: float,
) -> PathStats:
    """Send the numbered packets on schedule, then wait for the echoes (bounded)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(meter.count):
        # Pacing, not waiting on an outcome: packet i leaves at start + i·interval.
        delay = start + seq * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() >= deadline:
            break
        try:
            send(meter.packet(seq))
        except CheckFailure:
            break  # the control connection is gone: _echo reports it as lost
        meter.sent(seq, time.monotonic())  # measurements: not uvloop's whole-ms loop clock
    rtt_max = max(meter.rtts, default=0.0)
    wait_until = min(deadline, loop.time() + max(settings.grace, 3 * rtt_max))
    try:
        async with asyncio.timeout_at(wait_until):
            await meter.all_back.wait()
    except TimeoutError:
        pass
    return meter.stats()


def _choose(paths: dict[str, PathStats | Explanation]) -> PathStats | None:
    for name in ("channel", "indication"):
        value = paths.get(name)
        if isinstance(value, PathStats) and value.received > 0:
            return value
    return None


def _broken(peer_text: str) -> RelayFailure:
    return RelayFailure(
        "broken", f"permission granted but nothing came back from {peer_text} through the relay"
    )


async def echo_between(
    a: Allocation,
    b: Allocation,
    settings: RelaySettings,
    deadline: float,
    control: float | None = None,
    *,
    family: str | None = None,
    number: int = FIRST_CHANNEL,
) -> RelayResult:
    """A sends to B's relayed address; B echoes each packet to A's by the path it came.
    *family*: 'ipv4' or 'ipv6', which relayed address of dual allocations to use; *number*:
    the channel (one per family on the same allocations)."""
    a_relay, b_relay = relayed_in(a, family), relayed_in(b, family)
    assert a_relay is not None and b_relay is not None

    def at_b(peer: Address, payload: bytes, path: str) -> None:
        if peer[0] != a_relay[0]:
            return
        if path == "channel" and b.bound(number):
            b.send_channel(number, payload)
        else:  # also when the server relays on a channel it never confirmed to B
            b.send_indication(a_relay, payload)

    b.on_peer_data(at_b)
    requests = deadline if control is None else min(control, deadline)

    async def permit() -> None:
        await asyncio.gather(
            a.create_permission(b_relay[0], requests), b.create_permission(a_relay[0], requests)
        )

    async def bind() -> None:
        await asyncio.gather(
            a.channel_bind(number, b_relay, requests),
            b.channel_bind(number, a_relay, requests),
        )

    text = f"the second allocation {fmt_address(b_relay)}"
    return await _echo(a, b_relay, text, permit, bind, settings, deadline, number)


async def echo_via_peer(
    a: Allocation,
    peer: Address,
    settings: RelaySettings,
    deadline: float,
    control: float | None = None,
    *,
    number: int = FIRST_CHANNEL,
) -> RelayResult:
    """Relay to an outside UDP echo peer (like turnutils_peer)."""
    requests = deadline if control is None else min(control, deadline)

    async def permit() -> None:
        await a.create_permission(peer[0], requests)

    async def bind() -> None:
        await a.channel_bind(number, peer, requests)

    text = f"the peer {fmt_address(peer)}"
    return await _echo(a, peer, text, permit, bind, settings, deadline, number)


async def _echo(
    a: Allocation,
    peer: Address,
    peer_text: str,
    permit: Callable[[], Awaitable[None]],
    bind: Callable[[], Awaitable[None]],
    settings: RelaySettings,
    deadline: float,
    number: int = FIRST_CHANNEL,
) -> RelayResult:
    """Permissions; a short Send/Data indication probe; ChannelBind; the measured ChannelData run.

    The indication probe goes first because once a channel is bound, the server
    relays the peer's data as ChannelData (RFC 8656 §12). It sends at most
    INDICATION_PROBE packets: enough to tell whether the path works, cheap in time.
    """
    meters: dict[str, EchoMeter] = {}

    def at_a(source: Address, payload: bytes, path: str) -> None:
        # By the packet's run id, whatever path the echo took back: a server may relay on a
        # channel it bound but never confirmed (an unsigned success is ignored).
        if source == peer:
            for meter in meters.values():
                meter.echo(payload, time.monotonic())

    a.on_peer_data(at_a)
    try:
        await permit()
    except CheckFailure as exc:
        return RelayResult(peer_text, None, {}, explain(exc))
    paths: dict[str, PathStats | Explanation] = {}
    probe = EchoMeter("indication", min(settings.count, INDICATION_PROBE), settings.size)
    meters["indication"] = probe
    # The probe asks "does this path relay at all?": its packets go back to back.
    paths["indication"] = await _pump(
        probe, lambda data: a.send_indication(peer, data), settings, deadline, interval=0.0
    )
    measured: str = "channel"
    try:
        await bind()
    except CheckFailure as exc:
        paths["channel"] = explain(exc)
        # No channel: the figures asked for (--count packets at --packet-interval) come from
        # the path that is left, as Chromium sends Send indications while unbound.
        measured = "indication"
    send: dict[str, Callable[[bytes], None]] = {
        "channel": lambda data: a.send_channel(number, data),
        "indication": lambda data: a.send_indication(peer, data),
    }
    meters[measured] = EchoMeter(measured, settings.count, settings.size)
    paths[measured] = await _pump(
        meters[measured], send[measured], settings, deadline, interval=settings.interval
    )
    stats = _choose(paths)
    lost = a.channel.lost(a.server)
    if lost is not None:
        # The server went away during the check: that, not packet loss, is the finding.
        failure = ConnectFailure(
            "lost", f"the server stopped answering during the relay check ({lost})"
        )
        return RelayResult(peer_text, stats, paths, explain(failure, server=fmt_address(a.server)))
    if stats is None:
        return RelayResult(peer_text, None, paths, explain(_broken(peer_text)))
    return RelayResult(peer_text, stats, paths)


# -- relay families (RFC 8656 §7.1, 7.2) ------------------------------------------------------


def family_of(address: str) -> str:
    """'ipv6' for an IPv6 address, else 'ipv4'."""
    return "ipv6" if ":" in address else "ipv4"


def relayed_in(allocation: Allocation, family: str | None) -> Address | None:
    """The allocation's relayed address of *family* ('ipv4'/'ipv6'); None: its first."""
    if family is None:
        return allocation.relayed
    return next((r for r in allocation.relayed_all if family_of(r[0]) == family), None)


def merge_families(results: Mapping[str, RelayResult], peer: str) -> RelayResult:
    """One relay check of several families: the first family's paths under their own names
    ('channel', 'indication'), the others prefixed ('ipv6 channel'); the figures of all
    together; the first failure, named by its family."""
    paths: dict[str, PathStats | Explanation] = {}
    chosen: list[PathStats] = []
    error: Explanation | None = None
    for i, (family, result) in enumerate(results.items()):
        prefix = "" if i == 0 else f"{family} "
        for name, value in result.paths.items():
            paths[prefix + name] = value
        if result.stats is not None:
            chosen.append(result.stats)
        if error is None and result.error is not None:
            error = in_family(family, result.error)
        elif error is None and not result.ok:
            error = in_family(family, explain(_broken(result.peer)))
    if len(chosen) == 1 and len(results) == 1:
        stats: PathStats | None = chosen[0]
    else:
        stats = _together("+".join(results), chosen) if chosen else None
    return RelayResult(peer, stats, paths, error)


def _together(name: str, parts: list[PathStats]) -> PathStats:
    received = sum(p.received for p in parts)
    timed = [p for p in parts if p.rtt_avg is not None and p.received]
    avg = (
        sum(p.rtt_avg * p.received for p in timed if p.rtt_avg is not None) / received
        if timed and received
        else None
    )
    mins = [p.rtt_min for p in parts if p.rtt_min is not None]
    maxes = [p.rtt_max for p in parts if p.rtt_max is not None]
    jitters = [p.jitter for p in parts if p.jitter is not None]
    return PathStats(
        name,
        sum(p.sent for p in parts),
        received,
        min(mins) if mins else None,
        avg,
        max(maxes) if maxes else None,
        max(jitters) if jitters else None,
        sum(p.out_of_order for p in parts),
        sum(p.duplicates for p in parts),
    )


# -- RFC 6062 TCP relays ----------------------------------------------------------------------

# A fresh data connection to the same server, over the control connection's transport (TCP or
# TLS, same SNI): ConnectionBind must come on a new connection (RFC 6062 §4.4).
DataOpener = Callable[[], AbstractAsyncContextManager[StreamChannel]]
TCP_PATH = "tcp"


async def tcp_echo_via_peer(
    a: Allocation,
    peer: Address,
    open_data: DataOpener,
    settings: RelaySettings,
    deadline: float,
    control: float | None = None,
) -> RelayResult:
    """RFC 6062 as a client (§4.3): Connect from TCP allocation A to the operator's TCP echo
    *peer*, ConnectionBind a data connection, then the numbered packets both ways over it."""
    requests = deadline if control is None else min(control, deadline)
    text = f"the TCP peer {fmt_address(peer)}"
    try:
        # A permission first: coturn checks one for Connect's peer (RFC 6062 §5.2).
        await a.create_permission(peer[0], requests)
        connection_id = await a.connect(peer, requests)
        async with open_data() as data:
            await a.connection_bind(data, connection_id, requests)
            stats = await stream_echo(data, settings, deadline)
    except CheckFailure as exc:
        return RelayResult(text, None, {}, explain(exc))
    return _tcp_result(text, stats)


async def tcp_echo_between(
    a: Allocation,
    b: Allocation,
    open_data: DataOpener,
    settings: RelaySettings,
    deadline: float,
    control: float | None = None,
) -> RelayResult:
    """Both sides of RFC 6062 through one server: A Connects to B's relayed address (a peer
    turncheck itself holds), B gets the ConnectionAttempt (§4.4) and binds it; B echoes on
    its data connection what A sends on its own."""
    assert a.relayed is not None and b.relayed is not None
    a_relay, b_relay = a.relayed, b.relayed
    requests = deadline if control is None else min(control, deadline)
    text = f"the TCP allocation {fmt_address(b_relay)}"
    attempt: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def attempted(connection_id: int, peer: Address) -> None:
        if peer[0] == a_relay[0] and not attempt.done():
            attempt.set_result(connection_id)

    b.on_connection_attempt(attempted)
    try:
        # B's permission lets A's connection in (RFC 6062 §5.3); A's lets it Connect.
        await asyncio.gather(
            a.create_permission(b_relay[0], requests), b.create_permission(a_relay[0], requests)
        )
        a_id = await a.connect(b_relay, requests)
        try:
            async with asyncio.timeout_at(requests):
                b_id = await attempt
        except TimeoutError:
            raise RelayFailure(
                "broken",
                f"Connect to {fmt_address(b_relay)} succeeded but no ConnectionAttempt "
                "reached that allocation",
            ) from None
        async with open_data() as a_data, open_data() as b_data:
            await asyncio.gather(
                a.connection_bind(a_data, a_id, requests),
                b.connection_bind(b_data, b_id, requests),
            )

            def echo(chunk: bytes) -> None:
                if chunk:
                    with contextlib.suppress(CheckFailure):
                        b_data.send_stream(chunk)

            b_data.stream_to(echo)
            stats = await stream_echo(a_data, settings, deadline)
    except CheckFailure as exc:
        return RelayResult(text, None, {}, explain(exc))
    finally:
        if not attempt.done():
            attempt.cancel()
    return _tcp_result(text, stats)


async def stream_echo(data: StreamChannel, settings: RelaySettings, deadline: float) -> PathStats:
    """The numbered packets over a bound data connection, on the --packet-interval schedule;
    the echo is a byte stream, cut back into packets of --size bytes."""
    meter = EchoMeter(TCP_PATH, settings.count, settings.size)
    waiting = bytearray()

    def received(chunk: bytes) -> None:
        waiting.extend(chunk)
        while len(waiting) >= settings.size:
            meter.echo(bytes(waiting[: settings.size]), time.monotonic())
            del waiting[: settings.size]

    data.stream_to(received)
    return await _pump(meter, data.send_stream, settings, deadline, interval=settings.interval)


def _tcp_result(text: str, stats: PathStats) -> RelayResult:
    if stats.received == 0:
        failure = RelayFailure(
            "broken", f"the data connection is bound but nothing came back from {text}"
        )
        return RelayResult(text, stats, {TCP_PATH: stats}, explain(failure))
    return RelayResult(text, stats, {TCP_PATH: stats})
