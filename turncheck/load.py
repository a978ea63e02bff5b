"""turncheck load: capacity testing with allocation pairs relaying echoed ChannelData.

Efficient on two cores by construction: one event loop; one pacing task sends
for every pair on each tick (no task per packet, one timer for all); packets
carry their pair, sequence number and send time, so an echo costs a header
unpack and a bitmap update. Every allocation is owned by a Fleet whose close
deletes them all concurrently (bounded), on success, error and Ctrl-C alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import struct
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from turncheck.checks import CheckSettings, UdpPool, allocated, binding_check, failed
from turncheck.errors import CheckFailure, InputError
from turncheck.explain import explain, weigh
from turncheck.resolve import Endpoint
from turncheck.results import CheckResult, Explanation
from turncheck.transport import Address
from turncheck.turn import FIRST_CHANNEL, Allocation, Redirect
from turncheck.urls import fmt_address

T = TypeVar("T")

_PACKET = struct.Struct("!4sIId")  # magic, pair id, sequence, send time (loop clock)
_MAGIC = b"TCld"
MIN_SIZE = _PACKET.size
TICK = 0.005  # seconds between pacing ticks
REFRESH_EVERY = 120.0  # allocations live 600 s, permissions 300 s: refresh well before
DELETE_CONCURRENCY = 64
SYN_RETRY = 0.9  # seconds: a connect this slow waited for a SYN retransmission (first at 1 s)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    clients: int = 10
    duration: float = 10.0
    rate: float = 50.0  # packets per second per pair
    size: int = 160
    ramp: float | None = None  # pairs opened per second; None: as fast as allowed
    concurrency: int = 64  # pairs being set up at once
    max_loss: float = 1.0  # percent
    grace: float = 1.0  # seconds to wait for the last echoes
    event_loop: str = "asyncio"  # or uvloop


def check_limits(settings: LoadSettings, transport: str) -> None:
    """Refuse what cannot be honoured, before any packet: file descriptors first."""
    if not 1 <= settings.clients <= 20000:
        raise InputError(f"--clients {settings.clients}: give 1 to 20000 pairs")
    if not 0 < settings.duration <= 3600:
        raise InputError(f"--duration {settings.duration:g}: give 0 to 3600 seconds")
    if not 0 < settings.rate <= 1000:
        raise InputError(f"--rate {settings.rate:g}: give 0 to 1000 packets per second")
    if not MIN_SIZE <= settings.size <= 1400:
        raise InputError(f"--size {settings.size}: give {MIN_SIZE} to 1400 bytes")
    if settings.ramp is not None and not 0 < settings.ramp <= 10000:
        raise InputError(f"--ramp {settings.ramp:g}: give 0 to 10000 pairs per second")
    if not 0 <= settings.max_loss <= 100:
        raise InputError(f"--max-loss {settings.max_loss:g}: give 0 to 100 percent")
    needed = 2 * settings.clients + 64  # a socket per allocation, and headroom
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            soft = needed
    if soft < needed:
        raise InputError(
            f"--clients {settings.clients} needs {needed} file descriptors ({transport}: one "
            f"socket per allocation) but the limit is {soft} (ulimit -n); raise it or use fewer"
        )
    pps = settings.clients * settings.rate
    if pps > 200_000:
        raise InputError(
            f"--clients × --rate = {pps:g} packets/s: more than one process can pace (200000)"
        )


def _quantiles(values: array[float], points: tuple[float, ...]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    out = {}
    for p in points:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        out[f"p{p:g}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    return out


@dataclass(slots=True)
class Pair:
    """One call: allocation A sends ChannelData to B's relayed address, B echoes it."""

    index: int
    a: Allocation
    b: Allocation
    sent: int = 0
    received: int = 0
    duplicates: int = 0
    seen: bytearray = field(default_factory=bytearray)
    jitter: float = 0.0
    last_rtt: float | None = None
    path: str = "channel"  # "indication" when the server's ChannelBind failed


@dataclass(slots=True)
class Tally:
    """Running figures, read by the live display and the final report."""

    attempted: int = 0
    succeeded: int = 0  # pairs ready to relay
    failures: Counter[str] = field(default_factory=Counter)
    hints: dict[str, str] = field(default_factory=dict)  # reason → what to try (explain.py)
    unbound: Counter[str] = field(default_factory=Counter)  # ChannelBind failures: pairs on
    # Send indications, by reason
    alloc_latency: array[float] = field(default_factory=lambda: array("d"))
    connect: array[float] = field(default_factory=lambda: array("d"))  # TCP connect, seconds
    handshake: array[float] = field(default_factory=lambda: array("d"))  # TLS handshake
    rtts: array[float] = field(default_factory=lambda: array("d"))
    sent: int = 0
    received: int = 0
    send_errors: int = 0
    deleted: int = 0
    delete_failed: int = 0
    lost: Counter[str] = field(default_factory=Counter)  # pairs whose server went away
    started: float = 0.0
    sending_started: float | None = None
    sending_ended: float | None = None


def _failure(
    ep: Endpoint, exc: CheckFailure | Redirect, binding: CheckResult | None
) -> Explanation:
    """The reason and hint of a pair that did not set up: probe's words for the same
    evidence (checks.failed, explain.weigh), Binding answer included."""
    if isinstance(exc, Redirect):
        return Explanation(
            300,
            f"the server redirected the allocation (300 Try Alternate) to "
            f"{fmt_address(exc.alternate)}: load does not follow redirects",
            "load the alternate server directly",
        )
    error = weigh(failed(ep, "turn", exc), binding).error
    assert error is not None
    return error


async def _binding_evidence(ep: Endpoint, settings: CheckSettings) -> CheckResult:
    """One Binding to the server, as probe makes: evidence for the reasons of failures."""
    async with UdpPool(settings.tracer) as pool:
        return await binding_check(ep, settings, pool)


class Fleet:
    """Owns every channel and allocation of a run; close() deletes them all, concurrently."""

    def __init__(self) -> None:
        self.allocations: list[Allocation] = []
        self._stacks: list[contextlib.AsyncExitStack] = []

    async def allocate(
        self, ep: Endpoint, server: Address, settings: CheckSettings, deadline: float
    ) -> Allocation:
        """An allocation on a fresh channel, made the way probe makes its own
        (checks.allocated: a 437 for a just-deleted allocation on a reused local port is
        retried from a fresh one); kept until close()."""
        stack = contextlib.AsyncExitStack()
        self._stacks.append(stack)
        _, allocation = await stack.enter_async_context(allocated(ep, server, settings, deadline))
        self.allocations.append(allocation)
        return allocation

    async def close(self, tally: Tally) -> None:
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete(allocation: Allocation) -> None:
            async with gate:
                await allocation.delete()
            if allocation.deleted is True:
                tally.deleted += 1
            elif allocation.deleted is False:
                tally.delete_failed += 1

        await asyncio.gather(*(delete(a) for a in self.allocations), return_exceptions=True)

        async def close(stack: contextlib.AsyncExitStack) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await stack.aclose()

        # Concurrently: a server that never sends TLS close_notify costs one short bound in
        # all, not one per connection.
        await asyncio.gather(*(close(s) for s in self._stacks), return_exceptions=True)


async def run_load(
    ep: Endpoint,
    load: LoadSettings,
    settings: CheckSettings,
    on_tick: Callable[[Tally, list[Pair]], None] | None = None,
) -> LoadResult:
    """Open the pairs, relay for the duration, delete everything; Ctrl-C stops early."""
    loop = asyncio.get_running_loop()
    tally = Tally(started=time.monotonic())
    pairs: list[Pair] = []
    fleet = Fleet()
    interrupted = False
    server: Address = (ep.address, ep.port)
    expected = max(1, math.ceil(load.rate * load.duration))
    display: asyncio.Task[None] | None = None
    if on_tick is not None:
        display = loop.create_task(_display(tally, pairs, on_tick))
    evidence = loop.create_task(_binding_evidence(ep, settings))
    try:
        await _open_pairs(ep, server, load, settings, fleet, tally, pairs, expected, evidence)
        if pairs:
            await _relay(pairs, load, settings, tally, expected)
        for pair in pairs:
            gone = pair.a.channel.lost(pair.a.server) or pair.b.channel.lost(pair.b.server)
            if gone is not None:
                tally.lost[explain(gone, server=f"{server[0]}:{server[1]}").reason] += 1
    except asyncio.CancelledError:
        interrupted = True
    finally:
        for task in (display, evidence):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Deletion must finish even when Ctrl-C cancelled the run.
        await asyncio.shield(fleet.close(tally))
    return LoadResult.of(load, tally, pairs, interrupted, time.monotonic() - tally.started)


async def _open_pairs(
    ep: Endpoint,
    server: Address,
    load: LoadSettings,
    settings: CheckSettings,
    fleet: Fleet,
    tally: Tally,
    pairs: list[Pair],
    expected: int,
    evidence: asyncio.Task[CheckResult],
) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(load.concurrency)

    def binding() -> CheckResult | None:
        if evidence.done() and not evidence.cancelled() and evidence.exception() is None:
            return evidence.result()
        return None

    start = loop.time()

    async def one(index: int) -> None:
        if load.ramp is not None:
            # Ramp: pair i may start at i / ramp seconds (pacing, not waiting on an outcome).
            delay = start + index / load.ramp - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        async with gate:
            tally.attempted += 1
            deadline = loop.time() + settings.timeout
            try:
                a, b = await _both(
                    fleet.allocate(ep, server, settings, deadline),
                    fleet.allocate(ep, server, settings, deadline),
                )
                assert a.relayed is not None and b.relayed is not None
                for allocation in (a, b):
                    _phases(tally, allocation)
                path = await _bind_or_permit(a, b, deadline, tally)
            except (CheckFailure, Redirect) as exc:
                error = _failure(ep, exc, binding())
                tally.failures[error.reason] += 1
                tally.hints.setdefault(error.reason, error.hint)
                return
            pair = Pair(index, a, b, seen=bytearray(expected), path=path)
            _wire(pair, tally, loop)
            pairs.append(pair)
            tally.succeeded += 1

    await asyncio.gather(*(one(i) for i in range(load.clients)))


def _phases(tally: Tally, allocation: Allocation) -> None:
    """How long each set-up phase of one allocation took: connect, TLS, Allocate."""
    phases = allocation.channel.phases
    if "connect" in phases:
        tally.connect.append(phases["connect"])
    if "tls" in phases:
        tally.handshake.append(phases["tls"])
    if allocation.took is not None:
        tally.alloc_latency.append(allocation.took)


async def _bind_or_permit(a: Allocation, b: Allocation, deadline: float, tally: Tally) -> str:
    """A channel each way (ChannelBind installs the permission too, RFC 8656 §11.2): the
    pair's path. When the server's ChannelBind fails, permissions and Send indications
    carry the load as probe's relay check does, and the failure is counted: Chromium drops
    a TURN connection whose ChannelBind fails (turn_port.cc OnChannelBindError)."""
    assert a.relayed is not None and b.relayed is not None
    try:
        await _both(
            a.channel_bind(FIRST_CHANNEL, b.relayed, deadline),
            b.channel_bind(FIRST_CHANNEL, a.relayed, deadline),
        )
        return "channel"
    except CheckFailure as exc:
        reason = explain(exc, server=fmt_address(a.server)).reason
    await _both(
        a.create_permission(b.relayed[0], deadline), b.create_permission(a.relayed[0], deadline)
    )
    tally.unbound[reason] += 1
    return "indication"


async def _both(first: Coroutine[Any, Any, T], second: Coroutine[Any, Any, T]) -> tuple[T, T]:
    """Both at once; when one fails the other is cancelled (an allocation is then deleted by
    its own clean-up) and the first failure is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            a, b = group.create_task(first), group.create_task(second)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return a.result(), b.result()


def _wire(pair: Pair, tally: Tally, loop: asyncio.AbstractEventLoop) -> None:
    b = pair.b
    a_relay = pair.a.relayed
    assert a_relay is not None

    def at_b(peer: Address, payload: bytes, path: str) -> None:
        if pair.path == "channel":
            b.send_channel(FIRST_CHANNEL, payload)  # the echo
        else:
            b.send_indication(a_relay, payload)

    def at_a(peer: Address, payload: bytes, path: str) -> None:
        if len(payload) < _PACKET.size:
            return
        magic, index, seq, sent_at = _PACKET.unpack_from(payload, 0)
        if magic != _MAGIC or index != pair.index or seq >= len(pair.seen):
            return
        if pair.seen[seq]:
            pair.duplicates += 1
            return
        pair.seen[seq] = 1
        pair.received += 1
        tally.received += 1
        rtt = time.monotonic() - sent_at
        tally.rtts.append(rtt)
        if pair.last_rtt is not None:  # RFC 3550 §6.4.1 over successive round trips
            pair.jitter += (abs(rtt - pair.last_rtt) - pair.jitter) / 16
        pair.last_rtt = rtt

    pair.b.on_peer_data(at_b)
    pair.a.on_peer_data(at_a)


async def _relay(
    pairs: list[Pair], load: LoadSettings, settings: CheckSettings, tally: Tally, expected: int
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tally.sending_started = time.monotonic()
    period = 1.0 / load.rate
    padding = bytes(load.size - _PACKET.size)
    refresher = loop.create_task(_refresh(pairs, settings))
    try:
        while True:
            elapsed = loop.time() - start
            last = elapsed >= load.duration  # the final pass sends what the clock still owes
            # Pair i sends packet k at start + (k + i / clients)·period: phases are spread.
            for pair in pairs:
                since = elapsed - pair.index / load.clients * period
                due = 0 if since < 0 else min(math.floor(since / period) + 1, expected)
                if last:
                    due = expected
                while pair.sent < due:
                    stamp = time.monotonic()  # not the loop clock: uvloop's counts whole ms
                    payload = _PACKET.pack(_MAGIC, pair.index, pair.sent, stamp) + padding
                    try:
                        if pair.path == "channel":
                            pair.a.send_channel(FIRST_CHANNEL, payload)
                        else:
                            assert pair.b.relayed is not None
                            pair.a.send_indication(pair.b.relayed, payload)
                    except CheckFailure:
                        tally.send_errors += 1
                    pair.sent += 1
                    tally.sent += 1
            if last:
                break
            await asyncio.sleep(TICK)  # one timer for all pairs
        tally.sending_ended = time.monotonic()
        p99 = _quantiles(tally.rtts, (99,))
        wait = max(load.grace, 3 * (p99["p99"] if p99 else 0.0))
        deadline = loop.time() + wait
        while tally.received < tally.sent and loop.time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


async def _refresh(pairs: list[Pair], settings: CheckSettings) -> None:
    """Keep long runs alive: Refresh allocations, re-bind channels (permissions with them)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(REFRESH_EVERY)
        deadline = loop.time() + settings.timeout
        jobs = []
        for pair in pairs:
            for me, other in ((pair.a, pair.b), (pair.b, pair.a)):
                assert other.relayed is not None
                jobs.append(me.refresh(deadline))
                jobs.append(me.channel_bind(FIRST_CHANNEL, other.relayed, deadline))
        await asyncio.gather(*jobs, return_exceptions=True)


async def _display(
    tally: Tally, pairs: list[Pair], on_tick: Callable[[Tally, list[Pair]], None]
) -> None:
    while True:
        await asyncio.sleep(0.5)
        on_tick(tally, pairs)


@dataclass(frozen=True, slots=True)
class LoadResult:
    settings: LoadSettings
    attempted: int
    succeeded: int
    failures: dict[str, int]
    hints: dict[str, str]  # failure reason → what to try
    unbound: dict[str, int]  # pairs relaying over Send indications: ChannelBind failures
    alloc_latency: dict[str, float] | None  # seconds
    connect: dict[str, float] | None  # TCP connect, seconds (TCP and TLS only)
    handshake: dict[str, float] | None  # TLS handshake, seconds
    slow_connects: int  # connects that waited for a SYN retransmission (about 1 s)
    connects: int  # connects measured (those of the pairs that set up)
    rtt: dict[str, float] | None  # seconds
    jitter: float | None
    sent: int
    received: int
    duplicates: int
    send_errors: int
    sending_time: float
    wall_time: float
    deleted: int
    delete_failed: int
    lost: dict[str, int]
    interrupted: bool

    @classmethod
    def of(
        cls,
        load: LoadSettings,
        tally: Tally,
        pairs: list[Pair],
        interrupted: bool,
        wall: float,
    ) -> LoadResult:
        jitters = [p.jitter for p in pairs if p.last_rtt is not None]
        sending = 0.0
        if tally.sending_started is not None:
            sending = (tally.sending_ended or time.monotonic()) - tally.sending_started
        return cls(
            settings=load,
            attempted=tally.attempted,
            succeeded=tally.succeeded,
            failures=dict(tally.failures),
            hints=dict(tally.hints),
            unbound=dict(tally.unbound),
            alloc_latency=_quantiles(tally.alloc_latency, (50, 95, 99)),
            connect=_quantiles(tally.connect, (50, 95, 99)),
            handshake=_quantiles(tally.handshake, (50, 95, 99)),
            slow_connects=sum(1 for c in tally.connect if c >= SYN_RETRY),
            connects=len(tally.connect),
            rtt=_quantiles(tally.rtts, (50, 95, 99)),
            jitter=sum(jitters) / len(jitters) if jitters else None,
            sent=tally.sent,
            received=tally.received,
            duplicates=sum(p.duplicates for p in pairs),
            send_errors=tally.send_errors,
            sending_time=max(sending, 0.0),
            wall_time=wall,
            deleted=tally.deleted,
            delete_failed=tally.delete_failed,
            lost=dict(tally.lost),
            interrupted=interrupted,
        )

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def stall(self) -> str | None:
        """Connects that waited for the kernel's first SYN retransmission (1 s, RFC 6298):
        the server's listen backlog overflowed and dropped their SYN."""
        if not self.slow_connects or self.connect is None:
            return None
        return (
            f"{self.slow_connects} of {self.connects} TCP connects took "
            f"over {SYN_RETRY:g} s: their SYN was "
            "dropped and sent again after 1 s, so the server accepts connections more slowly "
            "than they come (its listen backlog overflows): raise its backlog (net.core."
            "somaxconn and the server's own setting) or open pairs slower (--ramp)"
        )

    @property
    def unbound_pairs(self) -> int:
        return sum(self.unbound.values())

    @property
    def loss_pct(self) -> float:
        return 0.0 if not self.sent else 100 * (self.sent - self.received) / self.sent

    @property
    def achieved_pps(self) -> float:
        """Relayed packets per second: echoes received over the sending time (each crossed
        the relay twice)."""
        return self.received / self.sending_time if self.sending_time else 0.0

    @property
    def requested_pps(self) -> float:
        return self.succeeded * self.settings.rate

    @property
    def ok(self) -> bool:
        return (
            not self.interrupted
            and not self.lost
            and self.failed == 0
            and not self.unbound
            and self.succeeded == self.settings.clients
            and self.loss_pct <= self.settings.max_loss
        )

    @property
    def verdict(self) -> str:
        if self.interrupted:
            return f"interrupted: {self.succeeded} pairs were up; every allocation deleted"
        if self.lost:
            reason, count = max(self.lost.items(), key=lambda kv: kv[1])
            return (
                f"the server stopped answering during the run: {sum(self.lost.values())} of "
                f"{self.succeeded} pairs lost their path ({reason})"
            )
        if self.failed:
            top, count = max(self.failures.items(), key=lambda kv: kv[1])
            return (
                f"{self.failed} of {self.attempted} pairs failed to set up "
                f"(most: {count}× {top}); {self.succeeded} relayed"
            )
        if self.unbound:
            top, count = max(self.unbound.items(), key=lambda kv: kv[1])
            return (
                f"calls through TURN fail: {self.unbound_pairs} of {self.succeeded} pairs relay "
                f"only over Send indications because the server's ChannelBind fails ({top}), "
                "and Chromium drops a TURN connection whose ChannelBind fails; over "
                f"indications: {self.achieved_pps:.0f} echoed packets/s, loss "
                f"{self.loss_pct:.2f} %"
            )
        if self.loss_pct > self.settings.max_loss:
            return (
                f"relay loss {self.loss_pct:.2f} % exceeds --max-loss {self.settings.max_loss:g} %"
            )
        stall = f"; set-up stalled: {self.stall}" if self.stall else ""
        return (
            f"{self.succeeded} pairs relayed {self.achieved_pps:.0f} echoed packets/s "
            f"({self.achieved_pps / max(self.requested_pps, 1e-9) * 100:.0f} % of requested), "
            f"loss {self.loss_pct:.2f} %{stall}"
        )

    def to_json(self) -> dict[str, Any]:
        def ms(d: dict[str, float] | None) -> dict[str, float] | None:
            return None if d is None else {k: round(v * 1000, 3) for k, v in d.items()}

        s = self.settings
        return {
            "schema": 1,
            "ok": self.ok,
            "verdict": self.verdict,
            "interrupted": self.interrupted,
            "requested": {
                "clients": s.clients,
                "duration_s": s.duration,
                "rate_pps": s.rate,
                "size": s.size,
                "ramp": s.ramp,
                "max_loss_pct": s.max_loss,
            },
            "event_loop": s.event_loop,
            "allocations": {
                "pairs_attempted": self.attempted,
                "pairs_succeeded": self.succeeded,
                "pairs_failed": self.failed,
                "failures": dict(self.failures),
                "hints": dict(self.hints),
                "pairs_on_indications": self.unbound_pairs,
                "channel_bind_failures": dict(self.unbound),
                "latency_ms": ms(self.alloc_latency),
                "setup_ms": {
                    "connect": ms(self.connect),
                    "tls_handshake": ms(self.handshake),
                    "allocate": ms(self.alloc_latency),
                },
                "stall": self.stall,
                "deleted": self.deleted,
                "delete_failed": self.delete_failed,
                "pairs_lost": sum(self.lost.values()),
                "lost": dict(self.lost),
            },
            "relay": {
                "sent": self.sent,
                "received": self.received,
                "duplicates": self.duplicates,
                "send_errors": self.send_errors,
                "loss_pct": round(self.loss_pct, 3),
                "pps_achieved": round(self.achieved_pps, 1),
                "pps_requested": round(self.requested_pps, 1),
                "bps_achieved": round(self.achieved_pps * s.size * 8, 1),
                "bps_requested": round(self.requested_pps * s.size * 8, 1),
                "rtt_ms": ms(self.rtt),
                "jitter_ms": None if self.jitter is None else round(self.jitter * 1000, 3),
            },
            "sending_time_s": round(self.sending_time, 3),
            "wall_time_s": round(self.wall_time, 3),
        }
