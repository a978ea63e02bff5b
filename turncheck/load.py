"""turncheck load: capacity testing with allocation pairs relaying echoed ChannelData.

Efficient on two cores by construction: one event loop; one pacing task sends
for every pair on each tick (no task per packet, one timer for all); packets
carry their pair, sequence number and send time, so an echo costs a header
unpack and a window update. Every allocation is owned by a Fleet whose close
deletes them all concurrently (bounded), on success, error and Ctrl-C alike.

A caller beside the loop (the Locust edge) uses one public hook, LoadHook: every Sample as
it happens (set-up phases per allocation, each echo's round trip, each lost packet, each
pair's jitter at the end), the exact Counters at any moment, and a graceful stop.

A packet is lost when no echo came back within `loss_after` seconds of its sending (or by the
end of the run's grace); an echo that comes later counts as late, never as echoed, so at the
end sent = echoed + lost exactly, whichever moment the figures were read.
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
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from turncheck import stun
from turncheck.checks import CheckSettings, UdpPool, allocated, binding_check, failed
from turncheck.errors import CheckFailure, ConnectFailure, InputError, TlsFailure
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
SWEEP_EVERY = 0.1  # seconds between looks for packets unanswered for loss_after
REFRESH_EVERY = 120.0  # allocations live 600 s, permissions 300 s: refresh well before
DEFAULT_LIFETIME = 600  # seconds: an allocation's default lifetime (RFC 8656: 10 minutes)
LOSS_AFTER = 2.0  # seconds without an echo that make a packet lost
DELETE_CONCURRENCY = 64
SYN_RETRY = 0.9  # seconds: a connect this slow waited for a SYN retransmission (first at 1 s)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    clients: int = 10
    duration: float | None = 10.0  # seconds of relaying; None: until the run's LoadHook stops it
    rate: float = 50.0  # packets per second per pair
    size: int = 160
    ramp: float | None = None  # pairs opened per second; None: as fast as allowed
    concurrency: int = 64  # pairs being set up at once
    max_loss: float = 1.0  # percent
    grace: float = 1.0  # seconds to wait for the last echoes
    event_loop: str = "asyncio"  # or uvloop
    # LIFETIME asked for in Allocate and Refresh, refreshed every third of it (a SIGKILLed
    # load leaves allocations that expire soon); None: the server's default, refreshed every
    # REFRESH_EVERY seconds.
    lifetime: int | None = None
    loss_after: float = LOSS_AFTER  # a packet not echoed within this is lost; later: late
    keep_rtts: bool = True  # every RTT for exact percentiles (a hook's caller keeps its own)


def check_limits(settings: LoadSettings, transport: str) -> None:
    """Refuse what cannot be honoured, before any packet: file descriptors first."""
    if not 1 <= settings.clients <= 20000:
        raise InputError(f"--clients {settings.clients}: give 1 to 20000 pairs")
    if settings.duration is not None and not 0 < settings.duration <= 3600:
        raise InputError(f"--duration {settings.duration:g}: give 0 to 3600 seconds")
    if not 0 < settings.rate <= 1000:
        raise InputError(f"--rate {settings.rate:g}: give 0 to 1000 packets per second")
    if not MIN_SIZE <= settings.size <= 1400:
        raise InputError(f"--size {settings.size}: give {MIN_SIZE} to 1400 bytes")
    if settings.ramp is not None and not 0 < settings.ramp <= 10000:
        raise InputError(f"--ramp {settings.ramp:g}: give 0 to 10000 pairs per second")
    if not 0 <= settings.max_loss <= 100:
        raise InputError(f"--max-loss {settings.max_loss:g}: give 0 to 100 percent")
    if settings.lifetime is not None and not 3 <= settings.lifetime <= 3600:
        raise InputError(f"lifetime {settings.lifetime}: give 3 to 3600 seconds")
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


# -- the public hook ------------------------------------------------------------------------


def counters_of(run: Any) -> Counters:
    """The exact totals of a running Tally or a finished LoadResult (the same fields)."""
    return Counters(
        sent=run.sent,
        echoed=run.received,
        lost=run.lost_packets,
        late=run.late,
        duplicates=run.duplicates,
        send_errors=run.send_errors,
        pairs_up=run.succeeded,
        pairs_failed=run.failed,
        pairs_unbound=run.unbound_pairs,
        deleted=run.deleted,
        delete_failed=run.delete_failed,
    )


SampleKind = Literal["connect", "tls", "allocate", "channel_bind", "echo", "loss", "jitter"]
SETUP_PHASES: tuple[SampleKind, ...] = ("connect", "tls", "allocate", "channel_bind")


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement as it happens: a set-up phase of one allocation (connect, tls, allocate,
    channel_bind), one echo's round trip, one lost packet, or one pair's jitter at the end."""

    kind: SampleKind
    seconds: float | None = None  # what it took; None for a loss and for a failed phase
    failure: str | None = None  # a set-up phase that failed: why, in explain's words

    @property
    def failed(self) -> bool:
        return self.kind == "loss" or self.failure is not None


_LOSS = Sample("loss")


@dataclass(frozen=True, slots=True)
class Counters:
    """Exact totals of a run (or a sum of runs): packets and allocations."""

    sent: int = 0
    echoed: int = 0
    lost: int = 0  # no echo within loss_after (or by the end of the grace)
    late: int = 0  # echoes of packets already counted lost
    duplicates: int = 0
    send_errors: int = 0
    pairs_up: int = 0
    pairs_failed: int = 0
    pairs_unbound: int = 0  # relaying over Send indications: the server's ChannelBind failed
    deleted: int = 0  # allocations
    delete_failed: int = 0

    @property
    def in_flight(self) -> int:
        """Sent, neither echoed nor lost yet: 0 once a run has ended."""
        return self.sent - self.echoed - self.lost

    @property
    def loss_pct(self) -> float:
        decided = self.echoed + self.lost
        return 100 * self.lost / decided if decided else 0.0

    def __add__(self, other: Counters) -> Counters:
        return Counters(**{n: getattr(self, n) + getattr(other, n) for n in _COUNTERS})

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTERS}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Counters:
        """Counters from to_json(); unknown keys ignored, missing ones 0."""
        return cls(**{name: int(doc.get(name, 0)) for name in _COUNTERS})


_COUNTERS = tuple(f.name for f in fields(Counters))


class LoadHook:
    """The public hook of one run, for a caller beside its event loop (the Locust edge).

    on_sample gets every Sample on the loop's thread, as it happens: it must be cheap and must
    not raise. counters() and stop() may be called from any thread."""

    def __init__(self, on_sample: Callable[[Sample], None] | None = None) -> None:
        self.on_sample = on_sample
        self._tally: Tally | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_asked = False

    def counters(self) -> Counters:
        """The run's exact counters so far (all zero before it starts)."""
        tally = self._tally
        return Counters() if tally is None else tally.counters()

    def stop(self) -> None:
        """Stop gracefully: no more pairs or packets, the grace for the last echoes, every
        allocation deleted; run_load then returns its result (not interrupted)."""
        self._stop_asked = True
        loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(event.set)

    @property
    def stop_asked(self) -> bool:
        return self._stop_asked

    def _attach(self, tally: Tally) -> asyncio.Event:
        self._tally = tally
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_asked:  # stop() came before the run started
            self._stop.set()
        return self._stop


# -- the run's state ------------------------------------------------------------------------


@dataclass(slots=True)
class Pair:
    """One call: allocation A sends ChannelData to B's relayed address, B echoes it."""

    index: int
    a: Allocation
    b: Allocation
    # The window of packets in flight, slot = sequence & (size - 1): sequence + 1 while in
    # flight, -(sequence + 1) once lost, 0 once echoed; and when each was sent.
    flight: array[int] = field(default_factory=lambda: array("q", bytes(8 * 64)))
    sent_at: array[float] = field(default_factory=lambda: array("d", bytes(8 * 64)))
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    decided: int = 0  # every packet below this sequence number is echoed or lost
    jitter: float = 0.0
    last_rtt: float | None = None
    path: str = "channel"  # "indication" when the server's ChannelBind failed


def _window(load: LoadSettings) -> int:
    """Slots for the packets a pair may have in flight: loss_after and a second's worth more,
    a power of two. A slot still in flight when its turn comes again is lost at that moment."""
    need = int(load.rate * (load.loss_after + 1.0)) + 16
    return 1 << max(6, need.bit_length())


@dataclass(slots=True)
class Tally:
    """Running figures, read by the live display, the hook and the final report."""

    attempted: int = 0
    succeeded: int = 0  # pairs ready to relay
    failed: int = 0  # pairs that did not set up
    failures: Counter[str] = field(default_factory=Counter)
    hints: dict[str, str] = field(default_factory=dict)  # reason → what to try (explain.py)
    unbound: Counter[str] = field(default_factory=Counter)  # ChannelBind failures: pairs on
    # Send indications, by reason
    unbound_pairs: int = 0
    alloc_latency: array[float] = field(default_factory=lambda: array("d"))
    connect: array[float] = field(default_factory=lambda: array("d"))  # TCP connect, seconds
    handshake: array[float] = field(default_factory=lambda: array("d"))  # TLS handshake
    channel_bind: array[float] = field(default_factory=lambda: array("d"))
    rtts: array[float] = field(default_factory=lambda: array("d"))
    sent: int = 0
    received: int = 0
    lost_packets: int = 0
    late: int = 0
    duplicates: int = 0
    send_errors: int = 0
    deleted: int = 0
    delete_failed: int = 0
    lost: Counter[str] = field(default_factory=Counter)  # pairs whose server went away
    started: float = 0.0
    sending_started: float | None = None
    sending_ended: float | None = None

    def counters(self) -> Counters:
        """Plain integers only: safe to read from another thread while the loop runs."""
        return counters_of(self)


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


def _phase_of(exc: CheckFailure | Redirect, stage: SampleKind) -> SampleKind:
    """The set-up phase a failure belongs to: the connection's own, else the stage reached."""
    if isinstance(exc, ConnectFailure):
        return "connect"
    if isinstance(exc, TlsFailure):
        return "tls"
    return stage


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
        self,
        ep: Endpoint,
        server: Address,
        settings: CheckSettings,
        deadline: float,
        lifetime: int | None = None,
    ) -> Allocation:
        """An allocation on a fresh channel, made the way probe makes its own
        (checks.allocated: a 437 for a just-deleted allocation on a reused local port is
        retried from a fresh one); kept until close(). *lifetime*: the LIFETIME to ask for."""
        stack = contextlib.AsyncExitStack()
        self._stacks.append(stack)
        extra = None if lifetime is None else {"LIFETIME": lifetime}
        _, allocation = await stack.enter_async_context(
            allocated(ep, server, settings, deadline, extra)
        )
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
    hook: LoadHook | None = None,
) -> LoadResult:
    """Open the pairs, relay for the duration (or until *hook* stops it), delete everything;
    Ctrl-C stops early."""
    loop = asyncio.get_running_loop()
    tally = Tally(started=time.monotonic())
    stop = hook._attach(tally) if hook is not None else asyncio.Event()
    on_sample = hook.on_sample if hook is not None else None
    pairs: list[Pair] = []
    fleet = Fleet()
    interrupted = False
    server: Address = (ep.address, ep.port)
    display: asyncio.Task[None] | None = None
    if on_tick is not None:
        display = loop.create_task(_display(tally, pairs, on_tick))
    evidence = loop.create_task(_binding_evidence(ep, settings))
    try:
        await _open_pairs(ep, server, load, settings, fleet, tally, pairs, evidence, stop, hook)
        if pairs and not stop.is_set():
            await _relay(pairs, load, settings, tally, stop, on_sample)
        for pair in pairs:
            gone = pair.a.channel.lost(pair.a.server) or pair.b.channel.lost(pair.b.server)
            if gone is not None:
                tally.lost[explain(gone, server=f"{server[0]}:{server[1]}").reason] += 1
    except asyncio.CancelledError:
        interrupted = True
        _sweep(pairs, math.inf, tally, on_sample)  # what was in flight is lost
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
    evidence: asyncio.Task[CheckResult],
    stop: asyncio.Event,
    hook: LoadHook | None,
) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(load.concurrency)
    on_sample = hook.on_sample if hook is not None else None
    size = _window(load)

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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        async with gate:
            if stop.is_set():
                return
            tally.attempted += 1
            deadline = loop.time() + settings.timeout
            stage: SampleKind = "allocate"
            try:
                a, b = await _both(
                    fleet.allocate(ep, server, settings, deadline, load.lifetime),
                    fleet.allocate(ep, server, settings, deadline, load.lifetime),
                )
                assert a.relayed is not None and b.relayed is not None
                for allocation in (a, b):
                    _phases(tally, allocation, on_sample)
                stage = "channel_bind"
                path = await _bind_or_permit(a, b, deadline, tally, on_sample)
            except (CheckFailure, Redirect) as exc:
                error = _failure(ep, exc, binding())
                tally.failures[error.reason] += 1
                tally.failed += 1
                tally.hints.setdefault(error.reason, error.hint)
                if on_sample is not None:
                    on_sample(Sample(_phase_of(exc, stage), failure=error.reason))
                return
            pair = Pair(
                index, a, b, array("q", bytes(8 * size)), array("d", bytes(8 * size)), path=path
            )
            _wire(pair, load, tally, on_sample)
            pairs.append(pair)
            tally.succeeded += 1

    await asyncio.gather(*(one(i) for i in range(load.clients)))


def _phases(
    tally: Tally, allocation: Allocation, on_sample: Callable[[Sample], None] | None
) -> None:
    """How long each set-up phase of one allocation took: connect, TLS, Allocate."""
    phases = allocation.channel.phases
    if "connect" in phases:
        tally.connect.append(phases["connect"])
        if on_sample is not None:
            on_sample(Sample("connect", phases["connect"]))
    if "tls" in phases:
        tally.handshake.append(phases["tls"])
        if on_sample is not None:
            on_sample(Sample("tls", phases["tls"]))
    if allocation.took is not None:
        tally.alloc_latency.append(allocation.took)
        if on_sample is not None:
            on_sample(Sample("allocate", allocation.took))


async def _bind_or_permit(
    a: Allocation,
    b: Allocation,
    deadline: float,
    tally: Tally,
    on_sample: Callable[[Sample], None] | None,
) -> str:
    """A channel each way (ChannelBind installs the permission too, RFC 8656 §11.2): the
    pair's path. When the server's ChannelBind fails, permissions and Send indications
    carry the load as probe's relay check does, and the failure is counted: Chromium drops
    a TURN connection whose ChannelBind fails (turn_port.cc OnChannelBindError)."""
    assert a.relayed is not None and b.relayed is not None

    async def bind(me: Allocation, peer: Address) -> None:
        began = time.monotonic()  # not the loop clock: uvloop's counts whole ms
        await me.channel_bind(FIRST_CHANNEL, peer, deadline)
        took = time.monotonic() - began
        tally.channel_bind.append(took)
        if on_sample is not None:
            on_sample(Sample("channel_bind", took))

    try:
        await _both(bind(a, b.relayed), bind(b, a.relayed))
        return "channel"
    except CheckFailure as exc:
        reason = explain(exc, server=fmt_address(a.server)).reason
    await _both(
        a.create_permission(b.relayed[0], deadline), b.create_permission(a.relayed[0], deadline)
    )
    tally.unbound[reason] += 1
    tally.unbound_pairs += 1
    if on_sample is not None:
        on_sample(Sample("channel_bind", failure=reason))
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


def _lose(
    pair: Pair, slot: int, seq: int, tally: Tally, on_sample: Callable[[Sample], None] | None
) -> None:
    pair.flight[slot] = -(seq + 1)
    pair.lost += 1
    tally.lost_packets += 1
    if on_sample is not None:
        on_sample(_LOSS)


def _wire(
    pair: Pair, load: LoadSettings, tally: Tally, on_sample: Callable[[Sample], None] | None
) -> None:
    b = pair.b
    a_relay = pair.a.relayed
    assert a_relay is not None
    flight = pair.flight
    size = len(flight)
    mask = size - 1
    keep = load.keep_rtts

    def at_b(peer: Address, payload: bytes, path: str) -> None:
        if pair.path == "channel":
            b.send_channel(FIRST_CHANNEL, payload)  # the echo
        else:
            b.send_indication(a_relay, payload)

    def at_a(peer: Address, payload: bytes, path: str) -> None:
        if len(payload) < _PACKET.size:
            return
        magic, index, seq, sent_at = _PACKET.unpack_from(payload, 0)
        if magic != _MAGIC or index != pair.index or seq >= pair.sent:
            return
        if seq + size <= pair.sent:  # older than the window: decided long ago
            tally.late += 1
            return
        slot = seq & mask
        state = flight[slot]
        if state != seq + 1:
            if state == -(seq + 1):
                tally.late += 1
            else:
                pair.duplicates += 1
                tally.duplicates += 1
            return
        flight[slot] = 0
        pair.received += 1
        tally.received += 1
        rtt = time.monotonic() - sent_at
        if keep:
            tally.rtts.append(rtt)
        if pair.last_rtt is not None:  # RFC 3550 §6.4.1 over successive round trips
            pair.jitter += (abs(rtt - pair.last_rtt) - pair.jitter) / 16
        pair.last_rtt = rtt
        if on_sample is not None:
            on_sample(Sample("echo", rtt))

    pair.b.on_peer_data(at_b)
    pair.a.on_peer_data(at_a)


def _sweep(
    pairs: list[Pair],
    cutoff: float,
    tally: Tally,
    on_sample: Callable[[Sample], None] | None,
) -> None:
    """Packets sent before *cutoff* (time.monotonic) and still unanswered are lost."""
    for pair in pairs:
        flight, sent_at = pair.flight, pair.sent_at
        size = len(flight)
        mask = size - 1
        # Below sent - size every slot was reused, and decided when it was.
        seq = max(pair.decided, pair.sent - size)
        while seq < pair.sent:
            slot = seq & mask
            if sent_at[slot] > cutoff:
                break
            if flight[slot] == seq + 1:
                _lose(pair, slot, seq, tally, on_sample)
            seq += 1
        pair.decided = seq


async def _relay(
    pairs: list[Pair],
    load: LoadSettings,
    settings: CheckSettings,
    tally: Tally,
    stop: asyncio.Event,
    on_sample: Callable[[Sample], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tally.sending_started = time.monotonic()
    period = 1.0 / load.rate
    padding = bytes(load.size - _PACKET.size)
    # The packets each pair sends when the duration ends; None: until stopped.
    limit = None if load.duration is None else max(1, math.ceil(load.rate * load.duration))
    refresher = loop.create_task(_refresh(pairs, settings, load))
    swept_at = start
    try:
        while True:
            elapsed = loop.time() - start
            stopping = stop.is_set()
            # The final pass sends what the clock still owes; a stop sends nothing more.
            last = load.duration is not None and elapsed >= load.duration
            for pair in [] if stopping else pairs:
                # Pair i sends packet k at start + (k + i / clients)·period: phases are spread.
                since = elapsed - pair.index / load.clients * period
                due = 0 if since < 0 else math.floor(since / period) + 1
                if limit is not None:
                    due = limit if last else min(due, limit)
                flight, sent_at = pair.flight, pair.sent_at
                mask = len(flight) - 1
                while pair.sent < due:
                    seq = pair.sent
                    stamp = time.monotonic()  # not the loop clock: uvloop's counts whole ms
                    payload = _PACKET.pack(_MAGIC, pair.index, seq, stamp) + padding
                    slot = seq & mask
                    if flight[slot] > 0:  # unanswered for a whole window: its slot is needed
                        _lose(pair, slot, flight[slot] - 1, tally, on_sample)
                    flight[slot] = seq + 1
                    sent_at[slot] = stamp
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
            if loop.time() >= swept_at + SWEEP_EVERY:  # losses decided to a tenth of a second
                swept_at = loop.time()
                _sweep(pairs, time.monotonic() - load.loss_after, tally, on_sample)
            if last or stopping:
                break
            await asyncio.sleep(TICK)  # one timer for all pairs
        tally.sending_ended = time.monotonic()
        p99 = _quantiles(tally.rtts, (99,))
        wait = max(load.grace, 3 * (p99["p99"] if p99 else 0.0))
        deadline = loop.time() + wait
        while tally.sent > tally.received + tally.lost_packets and loop.time() < deadline:
            await asyncio.sleep(0.02)
            _sweep(pairs, time.monotonic() - load.loss_after, tally, on_sample)
        _sweep(pairs, math.inf, tally, on_sample)  # what is still in flight now is lost
        if on_sample is not None:
            for pair in pairs:
                if pair.last_rtt is not None:
                    on_sample(Sample("jitter", pair.jitter))
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


def _first_ask(allocation: Allocation, load: LoadSettings) -> int:
    """The LIFETIME the first Refresh asks for, from what the Allocate was granted: the run's
    own when granted as asked; else at least the default, which a server's maximum caps (a
    grant below the ask means a maximum below it)."""
    if load.lifetime is None:
        return DEFAULT_LIFETIME
    granted = allocation.lifetime
    if granted is None or int(granted) == load.lifetime:
        return load.lifetime
    return max(int(granted), DEFAULT_LIFETIME)


async def _refresh_allocation(allocation: Allocation, ask: int, deadline: float) -> int:
    """One Refresh (RFC 8656 §8); returns the LIFETIME to ask for next time. coturn 4.6.1
    raises an ask below 600 s to 600 s, and grants it, where it caps an ask above its
    max-allocate-lifetime (ns_turn_msg.c stun_adjust_allocate_lifetime): a grant above a short
    ask is answered at once with an ask of 600, which the server's maximum then caps."""
    response = await allocation.authed(stun.Method.REFRESH, {"LIFETIME": ask}, deadline)
    granted = response.attributes.get("LIFETIME")
    if granted is not None and int(granted) > ask and ask < DEFAULT_LIFETIME:
        ask = DEFAULT_LIFETIME
        await allocation.authed(stun.Method.REFRESH, {"LIFETIME": ask}, deadline)
    return ask


async def _refresh(pairs: list[Pair], settings: CheckSettings, load: LoadSettings) -> None:
    """Keep long runs alive: Refresh allocations (every third of the lifetime asked for), and
    re-bind channels, permissions with them, every REFRESH_EVERY (they live 600 and 300 s)."""
    loop = asyncio.get_running_loop()
    every = REFRESH_EVERY if load.lifetime is None else min(REFRESH_EVERY, load.lifetime / 3)
    rebind_at = loop.time() + REFRESH_EVERY
    asks: dict[int, int] = {}  # id(allocation) → LIFETIME to ask for

    async def refresh(me: Allocation, deadline: float) -> None:
        ask = asks.get(id(me)) or _first_ask(me, load)
        asks[id(me)] = await _refresh_allocation(me, ask, deadline)

    while True:
        await asyncio.sleep(every)
        deadline = loop.time() + settings.timeout
        rebind = loop.time() >= rebind_at - every / 2
        if rebind:
            rebind_at = loop.time() + REFRESH_EVERY
        jobs = []
        for pair in pairs:
            for me, other in ((pair.a, pair.b), (pair.b, pair.a)):
                assert other.relayed is not None
                jobs.append(refresh(me, deadline))
                if rebind:
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
    channel_bind: dict[str, float] | None  # each ChannelBind, seconds
    slow_connects: int  # connects that waited for a SYN retransmission (about 1 s)
    connects: int  # connects measured (those of the pairs that set up)
    rtt: dict[str, float] | None  # seconds
    jitter: float | None
    sent: int
    received: int
    lost_packets: int  # not echoed within loss_after (or by the end of the grace)
    late: int  # echoes of packets already counted lost
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
            channel_bind=_quantiles(tally.channel_bind, (50, 95, 99)),
            slow_connects=sum(1 for c in tally.connect if c >= SYN_RETRY),
            connects=len(tally.connect),
            rtt=_quantiles(tally.rtts, (50, 95, 99)),
            jitter=sum(jitters) / len(jitters) if jitters else None,
            sent=tally.sent,
            received=tally.received,
            lost_packets=tally.lost_packets,
            late=tally.late,
            duplicates=tally.duplicates,
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
    def counters(self) -> Counters:
        """The run's exact totals, as LoadHook.counters() gives them during the run."""
        return counters_of(self)

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
                "lifetime_s": s.lifetime,
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
                    "channel_bind": ms(self.channel_bind),
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
                "lost": self.lost_packets,
                "late": self.late,
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
