"""The audit without credentials (turncheck/audit/unauth.py), against real servers on loopback:
open relay, Binding needs auth, reflection and amplification, classic RFC 3489 requests.

audit_context() and run() here serve the other test_audit_* files of these checks too."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block, release_ports
from turncheck import stun
from turncheck.audit import AuditContext, unauth
from turncheck.checks import CheckSettings, make_ssl_context
from turncheck.config import Credentials
from turncheck.findings import Finding, Severity
from turncheck.plan import build_targets, command_line_entries
from turncheck.resolve import Endpoint
from turncheck.transport import DatagramPeer, RetryPolicy, datagram_exchange

ALICE = Credentials("alice", "s3cret")
T = TypeVar("T")


def audit_context(
    *urls: str,
    ca_file: object = None,
    software: str | None = None,
    timeout: float = 2.0,
    budget: float = 8.0,
) -> AuditContext:
    """An AuditContext for URLs on loopback (localhost is 127.0.0.1), as the runner builds it."""
    entries = command_line_entries(list(urls), ALICE, "command line")
    targets = [t for t in build_targets(entries) if t.srv_name is None]
    endpoints = tuple(
        Endpoint(t, "127.0.0.1" if t.url.host == "localhost" else t.url.host, t.port, "test")
        for t in targets
    )
    settings = CheckSettings(
        timeout=timeout,
        ssl_context=make_ssl_context(str(ca_file) if ca_file else None, False),
        relay=None,
    )
    return AuditContext(
        endpoints=endpoints,
        settings=settings,
        software=software,
        budget=budget,
        hosts=tuple(dict.fromkeys(t.url.host for t in targets)),
    )


def run(
    check: Callable[[AuditContext], Awaitable[Sequence[Finding]]], ctx: AuditContext
) -> list[Finding]:
    return list(asyncio.run(check(ctx)))


def closing_everything(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), failing when a socket was left for the garbage collector to close
    (asyncio's "unclosed transport" ResourceWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        out = asyncio.run(main)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed
    return out


def only(findings: list[Finding], check_id: str) -> Finding:
    matching = [f for f in findings if f.id == check_id]
    assert len(matching) == 1, findings
    return matching[0]


def udp_url(server: Coturn) -> str:
    return f"turn:{server.host}:{server.port}?transport=udp"


def tcp_url(server: Coturn) -> str:
    return f"turn:{server.host}:{server.port}?transport=tcp"


# -- open relay -------------------------------------------------------------------------------


def test_no_auth_coturn_is_an_open_relay_and_the_allocations_are_deleted(coturn_factory) -> None:
    server = coturn_factory(extra=["no-auth"], tls=False)
    ctx = audit_context(udp_url(server))
    relay = only(run(unauth.open_relay, ctx), "open-relay")
    assert relay.severity is Severity.CRITICAL
    assert "success: XOR-RELAYED-ADDRESS 127.0.0.1:" in relay.evidence
    assert "deleted with Refresh LIFETIME=0" in relay.evidence
    assert "no-auth" in relay.hint
    # The raw Allocate of the amplification check succeeds too: it is deleted as well.
    amplification = only(run(unauth.reflection, ctx), "amplification")
    assert "Allocate 28 B → success" in amplification.evidence
    assert "was deleted (Refresh 0)" in amplification.evidence
    made, deleted = server.allocation_sessions()
    assert len(made) == 2 and made <= deleted


def test_default_coturn_refuses_an_allocate_without_credentials(coturn: Coturn) -> None:
    relay = only(run(unauth.open_relay, audit_context(udp_url(coturn))), "open-relay")
    assert relay.severity is Severity.OK
    assert relay.finding == "an Allocate without credentials is refused (401 Unauthorized)"
    assert relay.evidence.endswith("over udp → 401 Unauthorized")
    assert relay.target == f"127.0.0.1:{coturn.port}/udp"


# -- Binding needs authentication -------------------------------------------------------------


def test_binding_answered_without_credentials(coturn: Coturn) -> None:
    found = only(run(unauth.binding_auth, audit_context(udp_url(coturn))), "binding-needs-auth")
    assert found.severity is Severity.OK
    assert found.evidence == "Binding without attributes over udp → success"


def test_secure_stun_binding_needs_credentials(coturn_factory) -> None:
    # The fixture's readiness probe is a UDP Binding, which secure-stun answers 401: so this
    # server listens on TCP only, and the check uses the TCP URL.
    server = coturn_factory(extra=["secure-stun", "no-udp"], tls=False)
    ctx = audit_context(tcp_url(server))
    found = only(run(unauth.binding_auth, ctx), "binding-needs-auth")
    assert found.severity is Severity.INFO
    assert "secure-stun" in found.finding and "no srflx" in found.finding
    assert found.evidence == "Binding without attributes over tcp → 401 Unauthorized"
    assert only(run(unauth.open_relay, ctx), "open-relay").severity is Severity.OK
    skipped = only(run(unauth.reflection, ctx), "amplification")
    assert skipped.skipped and "UDP" in skipped.finding


# -- reflection and amplification -------------------------------------------------------------


def test_default_coturn_amplifies_with_the_figures(coturn: Coturn) -> None:
    found = only(run(unauth.reflection, audit_context(udp_url(coturn))), "amplification")
    assert found.severity is Severity.LOW
    # Debian 12's coturn 4.6.1: RFC 5780 (two listening IPs), MAPPED-ADDRESS and SOFTWARE in
    # the Binding answer; "Unauthorized" and SOFTWARE in the 401.
    assert "Binding 20 B → success 92 B (×4.6: XOR-MAPPED-ADDRESS 12, MAPPED-ADDRESS 12" in (
        found.evidence
    )
    assert "Allocate 28 B → 401 Unauthorized 104 B (×3.7" in found.evidence
    assert "the RFC minimum is 32 B" in found.evidence
    assert "the Binding's success ×4.6 (limit ×2.0)" in found.finding
    assert "no-rfc5780" in found.hint


def test_trimmed_coturn_binding_stays_within_the_limit_but_its_401_does_not(
    coturn_factory,
) -> None:
    server = coturn_factory(
        extra=[
            "no-rfc5780",
            "response-origin-only-with-rfc5780",
            "no-stun-backward-compatibility",
            "no-software-attribute",
        ],
        tls=False,
    )
    found = only(run(unauth.reflection, audit_context(udp_url(server))), "amplification")
    assert "Binding 20 B → success 32 B (×1.6: XOR-MAPPED-ADDRESS 12;" in found.evidence
    # coturn 4.6.1 still sends the reason phrase "Unauthorized" (4.10.0 dropped it).
    assert found.severity is Severity.LOW
    assert "the Binding's" not in found.finding
    assert "the Allocate's 401 Unauthorized ×2.9 (limit ×2.4)" in found.finding
    classic = only(run(unauth.rfc3489, audit_context(udp_url(server))), "rfc3489-answered")
    assert classic.severity is Severity.OK
    assert "an RFC 8489 Binding was answered" in classic.evidence


def test_pion_answers_within_the_limits(pion_factory) -> None:
    server = pion_factory("udp")
    ctx = audit_context(server.url)
    found = only(run(unauth.reflection, ctx), "amplification")
    assert found.severity is Severity.OK, found
    assert "Allocate 28 B → 401 84 B" in found.evidence
    assert only(run(unauth.rfc3489, ctx), "rfc3489-answered").severity is Severity.OK
    assert only(run(unauth.open_relay, ctx), "open-relay").severity is Severity.OK


# -- classic RFC 3489 requests ----------------------------------------------------------------


def test_default_coturn_answers_classic_requests(coturn: Coturn) -> None:
    found = only(run(unauth.rfc3489, audit_context(udp_url(coturn))), "rfc3489-answered")
    assert found.severity is Severity.LOW
    assert "MAPPED-ADDRESS 12, SOURCE-ADDRESS 12, CHANGED-ADDRESS 12" in found.evidence
    assert "classic Binding (RFC 3489, no magic cookie) 20 B → success 84 B" in found.evidence
    assert "no-stun-backward-compatibility" in found.hint


def test_ejabberd_answers_classic_requests(ejabberd) -> None:
    found = only(run(unauth.rfc3489, audit_context(ejabberd.url("udp"))), "rfc3489-answered")
    assert found.severity is Severity.LOW
    assert "p1_stun" in found.hint


# -- nothing there ----------------------------------------------------------------------------


def test_a_closed_port_is_could_not_tell_at_once() -> None:
    port = free_port_block(1)
    try:
        ctx = audit_context(f"turn:127.0.0.1:{port}?transport=udp", budget=4.0)
        relay, took = asyncio.run(_time_of(unauth.open_relay, ctx))
        assert relay.severity is Severity.INFO and relay.skipped
        assert "could not tell" in relay.finding and "refused" in relay.finding
        assert took < 2.0
        for check in (unauth.reflection, unauth.rfc3489):
            found = run(check, ctx)[0]
            assert found.skipped and "refused" in found.finding, found
    finally:
        release_ports(port, 1)


async def _time_of(
    check: Callable[[AuditContext], Awaitable[Sequence[Finding]]], ctx: AuditContext
) -> tuple[Finding, float]:
    loop = asyncio.get_running_loop()
    began = loop.time()
    found = await check(ctx)
    return found[0], loop.time() - began


# -- pure -------------------------------------------------------------------------------------


def _answer(message: stun.Message) -> bytes:
    return bytes(message)


def test_sizes_and_the_rfc_minimum_of_an_answer() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    answer = stun.Message(
        stun.Method.BINDING,
        stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
        attributes={"XOR-MAPPED-ADDRESS": ("192.0.2.1", 4242), "SOFTWARE": "Example 1.0"},
    )
    shown = unauth.reflection_of("Binding", bytes(request), _answer(answer), socket.AF_INET)
    assert shown.attributes == (("XOR-MAPPED-ADDRESS", 12), ("SOFTWARE", 16))
    assert (shown.request, shown.answer, shown.minimal) == (20, 48, 32)
    assert shown.amplifies and shown.limit == 2.0
    # Over IPv6 the smallest Binding answer is 44 B: the limit follows it (×2.2).
    six = stun.Message(
        stun.Method.BINDING,
        stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
        attributes={"XOR-MAPPED-ADDRESS": ("2001:db8::1", 4242)},
    )
    minimal = unauth.reflection_of("Binding", bytes(request), _answer(six), socket.AF_INET6)
    assert minimal.factor == pytest.approx(2.2) and not minimal.amplifies


def test_a_401_is_judged_against_its_realm_and_nonce() -> None:
    request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    challenge = stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.ERROR,
        transaction_id=request.transaction_id,
        attributes={
            "ERROR-CODE": (401, ""),
            "REALM": "a-rather-long-realm.example.org",
            "NONCE": b"0123456789abcdef0123456789abcdef",
        },
    )
    shown = unauth.reflection_of("Allocate", bytes(request), _answer(challenge), socket.AF_INET)
    assert shown.kind == "401"
    assert shown.minimal == shown.answer  # nothing to trim: realm and nonce are required
    finding = unauth.judge_reflection([shown], "192.0.2.1:3478/udp", "udp 192.0.2.1:3478")
    assert finding.severity is Severity.OK
    with_phrase = stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.ERROR,
        transaction_id=request.transaction_id,
        attributes={**challenge.attributes, "ERROR-CODE": (401, "Unauthorized")},
    )
    phrased = unauth.reflection_of("Allocate", bytes(request), _answer(with_phrase), socket.AF_INET)
    assert phrased.answer == shown.answer + 12 and phrased.amplifies


def test_classic_binding_has_no_magic_cookie() -> None:
    for _ in range(50):
        data, transaction = unauth.classic_binding()
        assert len(data) == 20 and data[:4] == b"\x00\x01\x00\x00"
        assert data[4:] == transaction
        assert struct.unpack_from("!I", data, 4)[0] != 0x2112A442


# -- transport.DatagramPeer: bounded, closed on every path ------------------------------------

FAST = RetryPolicy(rto=0.05, max_sends=3, last_wait_factor=4)  # 0.05, 0.1, 0.2 s


class _Junk(asyncio.DatagramProtocol):
    """Answers every datagram with bytes no exchange accepts, and counts them."""

    def __init__(self) -> None:
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        assert self.transport is not None
        self.transport.sendto(b"not the answer", addr)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _unanswered() -> tuple[bytes | None, int, float, int]:
    loop = asyncio.get_running_loop()
    junk = _Junk()
    server, _ = await loop.create_datagram_endpoint(lambda: junk, local_addr=("127.0.0.1", 0))
    try:
        dest = server.get_extra_info("sockname")[:2]
        before = _fds()
        began = loop.time()
        data = await datagram_exchange(
            dest, b"request", lambda d: d == b"the answer", deadline=began + 5, policy=FAST
        )
        took = loop.time() - began
        async with DatagramPeer(dest) as peer:  # cancelled mid-wait: the socket goes too
            task = asyncio.create_task(
                peer.exchange(b"request", lambda d: False, deadline=began + 30, policy=FAST)
            )
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0)  # asyncio closes a transport's socket on the next loop turn
        return data, junk.received, took, _fds() - before
    finally:
        server.close()


def test_a_raw_exchange_ignores_other_datagrams_and_ends_after_its_sends() -> None:
    data, received, took, leaked = closing_everything(_unanswered())
    assert data is None
    assert received >= 3  # three sends of the first exchange, one or more of the second
    assert 0.35 <= took < 2.0  # 0.05 + 0.1 + 0.2 s, never the 5 s deadline
    assert leaked == 0
