"""The only module that touches sockets: UDP with RFC 8489 retransmission, TCP/TLS framing.

A Channel carries STUN transactions to a server. UDP channels use an unconnected
socket with IP_RECVERR so that one socket can talk to several servers (as a
browser's host candidate does), still learn about ICMP errors per destination,
and notice answers that come from another address than the one asked.

The audit's raw probes live here too, each bounded (every read by a size, every wait by a
deadline) and closing its socket on every path, cancellation included: DatagramPeer and
datagram_exchange (a connected UDP socket; the bytes as sent and received),
stream_exchange (connect, optionally TLS, one request, a bounded read) and tls_handshake
(one handshake with the caller's pinned version or ciphers).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from turncheck import stun
from turncheck.errors import (
    CheckFailure,
    ConnectFailure,
    ProtocolFailure,
    TlsFailure,
    TransactionTimeout,
    UnprotectedAnswer,
)
from turncheck.tlsinfo import CertInfo, parse_cert
from turncheck.urls import fmt_address

Address = tuple[str, int]

# Linux constants Python's socket module does not export everywhere.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_MAX_IGNORED_NOTES = 4
# How long a close waits for the peer's TLS close_notify before it aborts: pion never sends
# one, and nothing of ours depends on it (every allocation is deleted before the close).
_CLOSE_TIMEOUT = 0.1
_UNSIGNED = "answer without MESSAGE-INTEGRITY to an authenticated request"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """RFC 8489 §6.2.1 retransmission parameters; a check's deadline cuts the schedule."""

    rto: float = 0.5
    max_sends: int = 7  # Rc
    last_wait_factor: int = 16  # Rm

    def waits(self) -> list[float]:
        """Seconds to wait after each send: RTO, 2·RTO, 4·RTO, ..., then Rm·RTO."""
        out = [self.rto * (2**i) for i in range(self.max_sends - 1)]
        return [*out, self.rto * self.last_wait_factor]


# An early verdict on an unanswered transaction: (sends so far, seconds waited) → the failure
# the evidence proves, or None to keep to the RFC 8489 schedule.
Conclusive = Callable[[int, float], Awaitable[CheckFailure | None]]
JUDGE_SENDS = 3  # the evidence is weighed once, after this many unanswered sends
JUDGE_AFTER = 0.25  # seconds after that send
# When the judge would end the transaction (the path carried a burst of Bindings, so the
# request looks ignored, not lost), the request itself first goes CONFIRM_SENDS more times,
# CONFIRM_GAP apart, and gets CONFIRM_WAIT to be answered: a lossy or slow path (the lab's
# 10 % drops per crossing on a loaded machine) then cannot pass for a server that ignores
# the request. Eight sends in all lost on a path that answered 20 Bindings of 20: about
# 0.19**8 * 0.81**20, once in 25 million.
CONFIRM_SENDS = 5
CONFIRM_GAP = 0.01
CONFIRM_WAIT = 0.5


@dataclass(frozen=True, slots=True)
class Answer:
    """A matched, validated response to one request."""

    message: stun.Message
    rtt: float  # seconds, from the send it most plausibly answers
    sends: int
    source: Address


@dataclass(slots=True)
class _Pending:
    request: stun.Message
    dest: Address
    source: Address  # where the answer must come from: dest, or another address (RFC 5780)
    key: bytes | None
    long_term: bool
    future: asyncio.Future[tuple[stun.Message, Address, float]]
    ignored: list[str] = field(default_factory=list)
    ignored_count: int = 0
    # Answers without MESSAGE-INTEGRITY to a signed request: (class, code, phrase, SOFTWARE).
    unprotected: list[tuple[str, int, str, str | None]] = field(default_factory=list)
    sends: int = 0

    def ignore(self, why: str) -> None:
        self.ignored_count += 1
        if why not in self.ignored and len(self.ignored) < _MAX_IGNORED_NOTES:
            self.ignored.append(why)

    def notes(self) -> tuple[str, ...]:
        if self.ignored_count > len(self.ignored):
            return (*self.ignored, f"{self.ignored_count} ignored answers in all")
        return tuple(self.ignored)


def _norm(addr: Any) -> Address:
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host.split("%", 1)[0], int(addr[1])


# (direction "send"/"recv", message, peer address, local address of the socket)
Tracer = Callable[[str, stun.Message, Address, Address], None]
DataHandler = Callable[[bytes, Address], None]


class Channel:
    """STUN transactions over one local socket or connection."""

    reliable: bool = False

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._pending: dict[bytes, _Pending] = {}
        self._closed_reason: CheckFailure | None = None
        self.tracer = tracer
        self.on_data: DataHandler | None = None
        self.on_indication: Callable[[stun.Message, Address], None] | None = None
        # Seconds each set-up phase took: "connect", "tls" (streams only; UDP has none).
        self.phases: dict[str, float] = {}

    # -- hooks for subclasses ------------------------------------------------------------

    def _send_bytes(self, data: bytes, dest: Address) -> None:
        raise NotImplementedError

    def pending_notes(self) -> str | None:
        """Anything half-received when a transaction times out (streams only)."""
        return None

    def lost(self, server: Address) -> CheckFailure | None:
        """Why the path to server is gone (connection closed, ICMP unreachable), if it is."""
        errors: dict[Address, ConnectFailure] = getattr(self, "errors", {})
        return self._closed_reason or errors.get(server)

    @property
    def local_address(self) -> Address:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _trace_local(self) -> Address:
        try:
            return self.local_address
        except OSError:
            return ("?", 0)

    # -- transactions ---------------------------------------------------------------------

    def send_raw(self, data: bytes, dest: Address) -> None:
        """Send bytes that need no answer (indications, ChannelData)."""
        if self._closed_reason is not None:
            raise self._closed_reason
        self._send_bytes(data, dest)

    def send_indication(self, message: stun.Message, dest: Address) -> None:
        if self.tracer:
            self.tracer("send", message, dest, self._trace_local())
        self.send_raw(bytes(message), dest)

    async def request(
        self,
        message: stun.Message,
        dest: Address,
        *,
        deadline: float,
        policy: RetryPolicy,
        key: bytes | None = None,
        long_term: bool = False,
        what: str = "request",
        expect_source: Address | None = None,
        conclusive: Conclusive | None = None,
    ) -> Answer:
        """Run one transaction to the deadline (absolute loop time); raise CheckFailure.

        expect_source: the address the answer must come from when it is not `dest`
        (a CHANGE-REQUEST is answered from the server's other address, RFC 5780 §4.4).
        conclusive: asked once, JUDGE_AFTER seconds after the JUDGE_SENDS-th send went
        unanswered, whether the evidence already decides the outcome; the failure it
        returns ends the transaction then instead of at the deadline.
        """
        if self._closed_reason is not None:
            raise self._closed_reason
        loop = asyncio.get_running_loop()
        target = _norm(dest)
        source = _norm(expect_source) if expect_source is not None else target
        pending = _Pending(message, target, source, key, long_term, loop.create_future())
        self._pending[message.transaction_id] = pending
        data = bytes(message)
        send_times: list[float] = []
        start = loop.time()
        try:
            # RFC 8489 §6.2.2: no retransmission over TCP/TLS: one send, one timeout.
            waits = [max(0.0, deadline - start)] if self.reliable else policy.waits()
            for wait in waits:
                now = loop.time()
                if now >= deadline:
                    break
                if self.tracer:
                    self.tracer("send", message, pending.dest, self._trace_local())
                self._send_bytes(data, pending.dest)
                pending.sends += 1
                # Round trips on time.monotonic(): uvloop's loop clock counts whole ms.
                send_times.append(time.monotonic())
                end = min(deadline, now + wait)
                if conclusive is not None and pending.sends == JUDGE_SENDS:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(min(end, loop.time() + JUDGE_AFTER)):
                            await asyncio.shield(pending.future)
                    if not pending.future.done():
                        verdict = await conclusive(pending.sends, loop.time() - start)
                        if verdict is not None and not await self._confirm(pending, data, deadline):
                            if isinstance(verdict, TransactionTimeout):
                                verdict.sends = pending.sends
                                verdict.waited = loop.time() - start
                            raise verdict
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(end):
                        await asyncio.shield(pending.future)
                if pending.future.done():
                    break
            if not pending.future.done():
                if pending.unprotected:  # the only answers came unsigned: that is the finding
                    method = stun.method_name(message.message_method)
                    raise UnprotectedAnswer(method, *pending.unprotected[-1])
                notes = pending.notes()
                stuck = self.pending_notes()
                raise TransactionTimeout(
                    what, len(send_times), loop.time() - start, (*notes, stuck) if stuck else notes
                )
            response, source, arrived = pending.future.result()
        finally:
            self._pending.pop(message.transaction_id, None)
            if not pending.future.done():
                pending.future.cancel()
        # Karn: with retransmissions the answer's send is ambiguous; the latest send bounds it.
        rtt = arrived - (send_times[0] if len(send_times) == 1 else send_times[-1])
        return Answer(response, max(rtt, 0.0), len(send_times), source)

    # -- receiving --------------------------------------------------------------------------

    async def _confirm(self, pending: _Pending, data: bytes, deadline: float) -> bool:
        """The request CONFIRM_SENDS more times, within the transaction's deadline: whether
        it got its answer after all."""
        loop = asyncio.get_running_loop()
        end = min(deadline, loop.time() + CONFIRM_SENDS * CONFIRM_GAP + CONFIRM_WAIT)
        for _ in range(CONFIRM_SENDS):
            if pending.future.done() or loop.time() >= end:
                break
            if self.tracer:
                self.tracer("send", pending.request, pending.dest, self._trace_local())
            self._send_bytes(data, pending.dest)
            pending.sends += 1
            await asyncio.sleep(CONFIRM_GAP)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                await asyncio.shield(pending.future)
        return pending.future.done()

    def _deliver(self, data: bytes, source: Address) -> None:
        first = data[0] if data else 0xFF
        if 0x40 <= first <= 0x7F:  # RFC 8656 §12: ChannelData, channel numbers 0x4000-0x7FFF
            if self.on_data is not None:
                self.on_data(data, source)
            else:
                self._ignore_for(
                    source, f"ChannelData from {fmt_address(source)} outside a relay check"
                )
            return
        if first & 0xC0:
            self._ignore_for(
                source, f"{len(data)} bytes that are not STUN from {fmt_address(source)}"
            )
            return
        try:
            message = stun.decode(data)
        except stun.MalformedMessage as exc:
            self._ignore_for(source, f"malformed answer from {fmt_address(source)} ({exc})")
            return
        if self.tracer:
            self.tracer("recv", message, source, self._trace_local())
        pending = self._pending.get(message.transaction_id)
        if message.message_class == stun.Class.INDICATION:
            if pending is not None:
                pending.ignore(f"an indication instead of a response from {fmt_address(source)}")
            elif self.on_indication is not None:
                self.on_indication(message, source)
            return
        if pending is None:
            self._ignore_for(
                source, f"answer with an unknown transaction ID from {fmt_address(source)}"
            )
            return
        why = self._reject(pending, message, source)
        if why:
            pending.ignore(why)
            if why == _UNSIGNED:
                self._unprotected(pending, message)
            return
        if not pending.future.done():
            pending.future.set_result((message, source, time.monotonic()))

    def _reject(self, pending: _Pending, message: stun.Message, source: Address) -> str | None:
        if not self.reliable and source != pending.source:
            expected = fmt_address(pending.source)
            return f"answer from {fmt_address(source)}, not from {expected} as expected"
        if message.message_class == stun.Class.REQUEST:
            return f"a request instead of a response from {fmt_address(source)}"
        if message.message_method != pending.request.message_method:
            return (
                f"{stun.method_name(message.message_method)} answer to a "
                f"{stun.method_name(pending.request.message_method)} request "
                f"from {fmt_address(source)}"
            )
        if pending.key is not None:
            code, _ = stun.error_of(message)
            # RFC 8489 §9.2.5: 401/438 carry no usable integrity; everything else must.
            exempt = (
                pending.long_term
                and message.message_class == stun.Class.ERROR
                and code
                in (
                    401,
                    438,
                )
            )
            if not exempt:
                if "MESSAGE-INTEGRITY" not in message.attributes:
                    return _UNSIGNED
                if not message.check_message_integrity(pending.key):
                    return "answer with a bad MESSAGE-INTEGRITY"
        return None

    def _unprotected(self, pending: _Pending, message: stun.Message) -> None:
        """An unsigned answer to a signed request is ignored (RFC 8489 §9.2.5) but kept as
        evidence. On a reliable transport it ends the transaction at once (§9.2.5); over
        UDP once a retransmission drew one too (two sends, two unsigned answers)."""
        code, phrase = stun.error_of(message)
        kind = "error" if message.message_class == stun.Class.ERROR else "success"
        software = message.attributes.get("SOFTWARE")
        pending.unprotected.append(
            (kind, code, phrase, stun.clean_text(software) if software else None)
        )
        conclusive = len(pending.unprotected) >= 2 and pending.sends >= 2
        if (self.reliable or conclusive) and not pending.future.done():
            method = stun.method_name(pending.request.message_method)
            failure = UnprotectedAnswer(method, *pending.unprotected[-1])
            pending.future.set_exception(failure)
            pending.future.exception()

    def _ignore_for(self, source: Address, why: str) -> None:
        # Attribute it to the transactions sent to that source; if none, to all (we cannot tell).
        targets = [
            p for p in self._pending.values() if self.reliable or source in (p.dest, p.source)
        ]
        for pending in targets or list(self._pending.values()):
            pending.ignore(why)

    def _fail_pending(self, exc: CheckFailure, dest: Address | None = None) -> None:
        for pending in list(self._pending.values()):
            if (dest is None or pending.dest == dest) and not pending.future.done():
                pending.future.set_exception(exc)
                # Mark retrieved: a failure with no waiter left must not warn at shutdown.
                pending.future.exception()

    def _close_with(self, exc: CheckFailure) -> None:
        if self._closed_reason is None:
            self._closed_reason = exc
        self._fail_pending(exc)


def _errno_failure(exc: OSError) -> ConnectFailure:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return ConnectFailure("refused", "connection refused (ICMP port unreachable or TCP RST)")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ConnectFailure("unreachable", exc.strerror or "no route to host")
    if isinstance(exc, ConnectionResetError):
        return ConnectFailure("reset", "connection reset by the server")
    return ConnectFailure("error", exc.strerror or str(exc))


# ---------------------------------------------------------------------------------------------
# UDP


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, channel: UdpChannel) -> None:
        self.channel = channel

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.channel._deliver(data, _norm(addr))

    def error_received(self, exc: Exception) -> None:
        self.channel._icmp_error(exc)


class UdpChannel(Channel):
    """An unconnected UDP socket: STUN to any number of servers, ICMP errors per destination."""

    reliable = False

    def __init__(self, sock: socket.socket, tracer: Tracer | None = None) -> None:
        super().__init__(tracer)
        self._sock = sock
        self.errors: dict[Address, ConnectFailure] = {}  # the last ICMP error per destination
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, family: int, tracer: Tracer | None = None) -> UdpChannel:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            channel = cls(sock, tracer)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(channel), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        channel._transport = transport
        return channel

    @property
    def local_address(self) -> Address:
        return _norm(self._sock.getsockname())

    def _send_bytes(self, data: bytes, dest: Address) -> None:
        assert self._transport is not None
        self._transport.sendto(data, dest)

    def _icmp_error(self, exc: Exception) -> None:
        # With IP_RECVERR the error queue names the destination that failed and the host
        # that sent the ICMP error (ip(7), SO_EE_OFFENDER): a firewall in the path is not
        # the server.
        drained = False
        for _ in range(64):
            try:
                _, anc, _, addr = self._sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            drained = True
            code, offender = errno.ECONNREFUSED, None
            for _level, _type, cdata in anc:
                if len(cdata) >= 4:
                    code = struct.unpack_from("=I", cdata, 0)[0]
                offender = _offender(cdata)
            if not addr:
                continue
            dest = _norm(addr)
            failure = _errno_failure(OSError(code, _strerror(code)))
            if offender is not None and offender != dest[0] and failure.kind == "refused":
                failure = ConnectFailure(
                    "rejected",
                    f"ICMP unreachable from {offender}, a host on the path, not the server",
                )
            self.errors[dest] = failure
            self._fail_pending(failure, dest)
        if (
            not drained
            and isinstance(exc, OSError)
            and len({p.dest for p in self._pending.values()}) == 1
        ):
            self._fail_pending(_errno_failure(exc))

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
        self._close_with(ConnectFailure("closed", "socket closed"))


def _offender(cdata: bytes) -> str | None:
    """The ICMP sender's address after struct sock_extended_err (16 bytes), if present."""
    if len(cdata) >= 16 + 8 and struct.unpack_from("=H", cdata, 16)[0] == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, cdata[20:24])
    if len(cdata) >= 16 + 24 and struct.unpack_from("=H", cdata, 16)[0] == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, cdata[24:40])
    return None


def _strerror(code: int) -> str:
    try:
        return os.strerror(code)
    except ValueError:
        return f"errno {code}"


# ---------------------------------------------------------------------------------------------
# TCP and TLS


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    verified: bool
    cert: CertInfo | None = None


class StreamChannel(Channel):
    """STUN over TCP or TLS: RFC 8489 §6.2.2 framing, no retransmission."""

    reliable = True

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: Address,
        tls: TlsInfo | None,
        tracer: Tracer | None,
    ) -> None:
        super().__init__(tracer)
        self._reader = reader
        self._writer = writer
        self.server = server
        self.tls = tls
        self._buffer = bytearray()
        # RFC 6062 §4.3: after a successful ConnectionBind the connection carries the peer's
        # bytes, raw. Until a handler takes them they wait here.
        self._raw_after: stun.Method | None = None
        self.raw = False
        self._raw_buffer = bytearray()
        self._on_stream: Callable[[bytes], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        server: Address,
        *,
        deadline: float,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        tracer: Tracer | None = None,
    ) -> StreamChannel:
        """Connect (and handshake) before the deadline or raise ConnectFailure/TlsFailure."""
        began = time.monotonic()
        phases: dict[str, float] = {}
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(server[0], server[1])
            phases["connect"] = time.monotonic() - began
        except TimeoutError:
            raise ConnectFailure(
                "timeout", f"TCP connect to {fmt_address(server)} timed out"
            ) from None
        except OSError as exc:
            raise _errno_failure(exc) from exc
        tls: TlsInfo | None = None
        if ssl_context is not None:
            try:
                loop = asyncio.get_running_loop()
                await writer.start_tls(
                    ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=max(0.05, deadline - loop.time()),
                )
            except ssl.SSLCertVerificationError as exc:
                writer.transport.abort()
                # Read the rejected certificate over a second, unverified handshake: the
                # reason can then say what is wrong with it (dates, names, issuer).
                der = await _fetch_certificate(server, server_hostname, deadline)
                raise _cert_failure(exc, parse_cert(der)) from exc
            except ssl.SSLError as exc:
                writer.transport.abort()
                raise TlsFailure("handshake", exc.reason or str(exc)) from exc
            except (TimeoutError, ConnectionAbortedError):
                # asyncio reports its ssl_handshake_timeout as ConnectionAbortedError.
                writer.transport.abort()
                raise TlsFailure("timeout", "the TLS handshake did not finish in time") from None
            except (OSError, EOFError) as exc:
                writer.transport.abort()
                raise TlsFailure(
                    "handshake", f"connection closed during the TLS handshake ({exc or 'EOF'})"
                ) from exc
            obj = writer.get_extra_info("ssl_object")
            cipher = obj.cipher() if obj else None
            tls = TlsInfo(
                version=(obj.version() or "") if obj else "",
                cipher=cipher[0] if cipher else "",
                verified=ssl_context.verify_mode != ssl.CERT_NONE,
                cert=parse_cert(obj.getpeercert(binary_form=True)) if obj else None,
            )
            phases["tls"] = time.monotonic() - began - phases["connect"]
        channel = cls(reader, writer, server, tls, tracer)
        channel.phases = phases
        return channel

    @property
    def local_address(self) -> Address:
        return _norm(self._writer.get_extra_info("sockname"))

    # -- RFC 6062 data connections ----------------------------------------------------------

    def raw_after(self, method: stun.Method) -> None:
        """Turn raw after the first success response to a *method* request (ConnectionBind):
        from the next byte on, the stream is the peer's data, not STUN framing."""
        self._raw_after = method

    def stream_to(self, handler: Callable[[bytes], None]) -> None:
        """Hand the peer's bytes to *handler* (those already received first); b"" once the
        connection is closed."""
        self._on_stream = handler
        if self._raw_buffer:
            data = bytes(self._raw_buffer)
            self._raw_buffer.clear()
            handler(data)
        if self._closed_reason is not None and self.raw:
            handler(b"")

    def send_stream(self, data: bytes) -> None:
        """Raw bytes to the peer over a bound data connection (no STUN framing, no padding)."""
        if not self.raw:
            raise ProtocolFailure("bad-answer", "raw data on a connection that is not bound")
        if self._closed_reason is not None:
            raise self._closed_reason
        if self._writer.is_closing():
            raise ConnectFailure("closed", "connection closed")
        self._writer.write(data)

    def _stream_data(self, data: bytes) -> None:
        if self._on_stream is not None:
            self._on_stream(data)
        else:
            self._raw_buffer.extend(data)

    def _bound_by(self, frame: bytes) -> bool:
        """True when *frame* was the verified success to the request that makes us raw."""
        if self._raw_after is None or len(frame) < stun.HEADER_LENGTH:
            return False
        pending = self._pending.get(frame[8:20])
        if pending is None or pending.request.message_method != self._raw_after:
            return False
        future = pending.future
        if not future.done() or future.cancelled() or future.exception() is not None:
            return False
        return bool(future.result()[0].message_class == stun.Class.RESPONSE)

    def _send_bytes(self, data: bytes, dest: Address) -> None:
        if self._writer.is_closing():
            raise self._closed_reason or ConnectFailure("closed", "connection closed")
        # RFC 8656 §12.5: ChannelData over a stream is padded to a multiple of four.
        self._writer.write(data + bytes(-len(data) % 4))

    async def _read_loop(self) -> None:
        """Frames from our own buffer (RFC 8489 §6.2.2, RFC 8656 §12.5), so that a frame the
        server leaves half-sent can be named when the check's time runs out."""
        buffer = self._buffer
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                if self.raw:
                    self._stream_data(chunk)
                    continue
                buffer.extend(chunk)
                if not self._drain(buffer):
                    return
            if self.raw:
                self._close_with(ConnectFailure("closed", "the peer's connection was closed"))
                self._stream_data(b"")
                return
            if buffer or self._pending:
                what = f"mid-message ({self._partial()})" if buffer else "before answering"
                self._close_with(
                    ConnectFailure("closed", f"the server closed the connection {what}")
                )
            else:
                self._close_with(ConnectFailure("closed", "the server closed the connection"))
        except ssl.SSLError as exc:
            self._close_with(TlsFailure("handshake", exc.reason or str(exc)))
        except OSError as exc:
            failure = _errno_failure(exc)
            if failure.kind == "reset":
                failure = ConnectFailure(
                    "reset", "connection reset by the server (connection lost)"
                )
            self._close_with(failure)

    def _drain(self, buffer: bytearray) -> bool:
        """Deliver every whole frame in the buffer; False when the stream is not STUN."""
        while len(buffer) >= 4:
            kind = buffer[0] & 0xC0
            length = struct.unpack_from("!H", buffer, 2)[0]
            if kind == 0:
                size = 20 + length
            elif kind == 0x40:
                size = 4 + length + (-length % 4)
            else:
                head = bytes(buffer[:4]).hex()
                detail = f"the server sent bytes that are not STUN framing ({head}...)"
                self._close_with(ProtocolFailure("not-stun", detail))
                return False
            if len(buffer) < size:
                return True
            frame = bytes(buffer[:size])
            del buffer[:size]
            self._deliver(frame if kind == 0 else frame[: 4 + length], self.server)
            if kind == 0 and self._bound_by(frame):
                self.raw = True
                if buffer:
                    self._stream_data(bytes(buffer))
                    buffer.clear()
                return True
        return True

    def _partial(self) -> str:
        buffer = self._buffer
        if len(buffer) < 4:
            return f"{len(buffer)} bytes of a frame header"
        length = struct.unpack_from("!H", buffer, 2)[0]
        size = 20 + length if buffer[0] & 0xC0 == 0 else 4 + length
        return f"{len(buffer)} of {size} bytes"

    def pending_notes(self) -> str | None:
        """What is stuck in the buffer when a transaction times out (a stalled half frame)."""
        return (
            f"an incomplete message ({self._partial()}) and then nothing" if self._buffer else None
        )

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._close_with(ConnectFailure("closed", "connection closed"))
        if not self._writer.is_closing():
            self._writer.close()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            self._writer.transport.abort()


async def _fetch_certificate(
    server: Address, server_hostname: str | None, deadline: float
) -> bytes | None:
    """The server's certificate, without verifying it; None when that fails too."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout_at(max(deadline, asyncio.get_running_loop().time() + 0.5)):
            _, writer = await asyncio.open_connection(
                server[0], server[1], ssl=context, server_hostname=server_hostname
            )
            obj = writer.get_extra_info("ssl_object")
            return obj.getpeercert(binary_form=True) if obj else None
    except (OSError, ssl.SSLError, TimeoutError, EOFError):
        return None
    finally:
        if writer is not None:
            writer.transport.abort()


def _cert_failure(exc: ssl.SSLCertVerificationError, cert: CertInfo | None) -> TlsFailure:
    message = exc.verify_message or exc.reason or str(exc)
    code = exc.verify_code
    # OpenSSL X509_V_ERR_*: 10 expired, 9 not yet valid, 18/19 self-signed, 20/21 untrusted,
    # 62 hostname mismatch, 64 IP mismatch.
    if code == 10:
        kind = "expired"
    elif code == 9:
        kind = "not-yet-valid"
    elif code in (18, 19):
        kind = "self-signed"
    elif code in (20, 21, 2):
        kind = "untrusted"
    elif code in (62, 64) or "mismatch" in message.lower():
        kind = "hostname"
    else:
        kind = "verify"
    return TlsFailure(kind, message, cert)


def local_ip_towards(dest: Address) -> str | None:
    """The source address this host uses towards dest (a routing lookup; nothing is sent)."""
    with (
        contextlib.suppress(OSError),
        socket.socket(
            socket.AF_INET6 if ":" in dest[0] else socket.AF_INET, socket.SOCK_DGRAM
        ) as probe,
    ):
        probe.connect(dest)
        return str(probe.getsockname()[0])
    return None


# ---------------------------------------------------------------------------------------------
# Raw probes: bytes out, bytes back, no STUN transactions (the audit's checks)


def _os_reason(exc: BaseException) -> str:
    """An OSError in words: 'connection refused' rather than asyncio's 'Connect call
    failed (...)'."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError) or code == errno.ECONNRESET:
        return "connection reset"
    if code:
        with contextlib.suppress(ValueError):
            return os.strerror(code).lower()
    return str(exc) or type(exc).__name__


# Whether a datagram is the answer an exchange waits for.
Accept = Callable[[bytes], bool]


class _DatagramCollector(asyncio.DatagramProtocol):
    """Each datagram goes to every waiting exchange that accepts it; the rest are dropped:
    nothing is buffered, and a datagram is at most 64 KiB."""

    def __init__(self) -> None:
        self.waiters: list[tuple[Accept, asyncio.Future[bytes]]] = []
        self.failure: ConnectFailure | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        for accept, future in self.waiters:
            if not future.done() and accept(data):
                future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected UDP socket an ICMP port unreachable arrives here: the port is closed.
        self.failure = ConnectFailure(
            "refused", "connection refused (ICMP port unreachable): nothing listens on that port"
        )
        for _, future in self.waiters:
            if not future.done():
                future.set_exception(self.failure)
                future.exception()


class DatagramPeer:
    """One connected UDP socket to one server, for raw request/answer exchanges whose own
    bytes count (an answer's size, a request that is not STUN): each exchange is bounded by
    its deadline and resent on its RetryPolicy's schedule. Several exchanges may wait on
    the socket at once. The socket is closed when the `async with` ends, however it ends."""

    def __init__(self, dest: Address) -> None:
        self.dest = dest
        self._transport: asyncio.DatagramTransport | None = None
        self._collector = _DatagramCollector()

    async def __aenter__(self) -> DatagramPeer:
        """Open the socket; ConnectFailure when the system refuses (no route, no family)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.dest[0] else socket.AF_INET
        try:
            # asyncio closes the socket itself when this fails or is cancelled.
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: self._collector, remote_addr=self.dest, family=family
            )
        except OSError as exc:
            raise ConnectFailure("error", _os_reason(exc)) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, payload: bytes) -> None:
        """One datagram, no answer awaited (a last Refresh(0) on the way out)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(payload)

    async def exchange(
        self, payload: bytes, accept: Accept, *, deadline: float, policy: RetryPolicy
    ) -> bytes | None:
        """The first datagram *accept* takes, or None at the deadline or after the policy's
        last wait; ConnectFailure when the port is closed (ICMP)."""
        assert self._transport is not None, "exchange() outside the peer's async with"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        waiter = (accept, future)
        self._collector.waiters.append(waiter)
        try:
            for wait in policy.waits():
                if self._collector.failure is not None:
                    raise self._collector.failure
                now = loop.time()
                if now >= deadline:
                    break
                self._transport.sendto(payload)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(min(deadline, now + wait)):
                        return await asyncio.shield(future)
            if future.done() and future.exception() is None:
                return future.result()
            if self._collector.failure is not None:
                raise self._collector.failure
            return None
        finally:
            self._collector.waiters.remove(waiter)
            if not future.done():
                future.cancel()


async def datagram_exchange(
    dest: Address, payload: bytes, accept: Accept, *, deadline: float, policy: RetryPolicy
) -> bytes | None:
    """One raw exchange on a UDP socket of its own (DatagramPeer.exchange), closed after."""
    async with DatagramPeer(dest) as peer:
        return await peer.exchange(payload, accept, deadline=deadline, policy=policy)


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """What one stream exchange got: whether it connected, the bytes, and how it ended."""

    connected: bool
    data: bytes = b""
    ended: str = ""  # "closed", "quiet", "limit", "deadline", or why it did not connect


async def stream_exchange(
    address: str,
    port: int,
    request: bytes | None,
    *,
    deadline: float,
    limit: int,
    quiet: float,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> StreamAnswer:
    """Connect (then TLS when given a context), send *request* if any, read a bounded
    answer: until the peer closes, *limit* bytes, *quiet* seconds without a new byte, or
    the deadline. Failures are the answer's words, never raised; the connection is aborted
    on every path (cancellation too)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return StreamAnswer(False, ended="no answer to the connect (filtered)")
    except OSError as exc:
        return StreamAnswer(False, ended=_os_reason(exc))
    if tls is not None:
        try:
            await writer.start_tls(
                tls,
                server_hostname=server_hostname,
                ssl_handshake_timeout=max(0.05, deadline - loop.time()),
            )
        except ssl.SSLError as exc:
            writer.transport.abort()
            return StreamAnswer(False, ended=f"TLS handshake failed ({exc.reason or exc})")
        except (TimeoutError, ConnectionAbortedError):
            # asyncio reports its ssl_handshake_timeout as ConnectionAbortedError.
            writer.transport.abort()
            return StreamAnswer(False, ended="no answer to the TLS ClientHello")
        except (OSError, EOFError) as exc:
            writer.transport.abort()
            why = _os_reason(exc) if isinstance(exc, OSError) else "EOF"
            return StreamAnswer(False, ended=f"the TLS handshake ended ({why})")
        except BaseException:  # cancelled: the connection goes too
            writer.transport.abort()
            raise
    data = bytearray()
    ended = "deadline"
    try:
        if request:
            writer.write(request)
        while len(data) < limit:
            wait = deadline if not data else min(deadline, loop.time() + quiet)
            try:
                async with asyncio.timeout_at(wait):
                    chunk = await reader.read(limit - len(data))
            except TimeoutError:
                ended = "quiet" if data and loop.time() < deadline else "deadline"
                break
            if not chunk:
                ended = "closed"
                break
            data.extend(chunk)
        else:
            ended = "limit"
    except OSError as exc:
        ended = _os_reason(exc)
    finally:
        writer.transport.abort()
    return StreamAnswer(True, bytes(data), ended)


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    """One handshake's outcome: accepted (version, cipher, certificate), or why not."""

    accepted: bool
    version: str = ""
    cipher: str = ""
    der: bytes | None = None
    refused: str = ""  # the alert or error, when not accepted
    silent: bool = False  # the server never answered the ClientHello


async def tls_handshake(
    server: Address, server_hostname: str | None, context: ssl.SSLContext, *, deadline: float
) -> TlsHandshake:
    """Connect and shake hands with *context* as it is (the caller pins the version or the
    ciphers) before the deadline, then abort: no data, no close_notify. A refused handshake
    is an answer; ConnectFailure when TCP itself fails."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(server[0], server[1])
    except TimeoutError:
        raise ConnectFailure("timeout", f"TCP connect to {fmt_address(server)} timed out") from None
    except OSError as exc:
        raise ConnectFailure("refused", _os_reason(exc)) from exc
    try:
        try:
            await writer.start_tls(
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=max(0.05, deadline - loop.time()),
            )
        except ssl.SSLError as exc:
            return TlsHandshake(False, refused=exc.reason or str(exc))
        except (TimeoutError, ConnectionAbortedError):
            # asyncio reports its ssl_handshake_timeout as ConnectionAbortedError.
            return TlsHandshake(False, refused="no answer to the ClientHello", silent=True)
        except (OSError, EOFError) as exc:
            why = _os_reason(exc) if isinstance(exc, OSError) else "EOF"
            return TlsHandshake(False, refused=f"the connection ended in the handshake ({why})")
        obj = writer.get_extra_info("ssl_object")
        cipher = obj.cipher()
        return TlsHandshake(
            True,
            version=obj.version() or "",
            cipher=cipher[0] if cipher else "",
            der=obj.getpeercert(binary_form=True),
        )
    finally:
        # The TCP transport when the handshake failed (or was cancelled), else the TLS one:
        # aborted either way, since pion never sends close_notify: do not wait for one.
        writer.transport.abort()
