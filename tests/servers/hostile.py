"""A hostile STUN/TURN server on loopback: every way an answer can be wrong, one per behaviour.

The server runs its own asyncio loop in a thread (like proxy.py) with UDP and TCP on
the same port number and, when asked, TLS on a second port. Each behaviour answers
every request in one particular broken way; well-formed messages are built with
turncheck.stun (aioice), broken ones by hand with struct. Every loop is bounded and
the context manager's exit stops everything: connections, tasks, sockets, thread.

Only loopback addresses are bound (127.0.0.1, and 127.0.0.2 for "other-source").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from turncheck import stun

from .ports import free_port_block, release_ports

__all__ = [
    "BEHAVIOURS",
    "MEGABYTES_TOTAL",
    "PASSWORD",
    "REALM",
    "USERNAME",
    "HostileServer",
    "hostile_server",
]

# Answer every request (UDP datagram or TCP/TLS frame) in one broken way.
COMMON = (
    "silence",  # never answer
    "garbage",  # random bytes starting with 0xFF (not STUN, deterministic)
    "wrong-tid",  # a valid Binding success with another transaction ID
    "wrong-cookie",  # a valid success with a wrong magic cookie
    "wrong-method",  # an Allocate success to a Binding request (and vice versa)
    "wrong-class",  # a request and an indication with the request's transaction ID
    "truncated",  # a valid success cut short by 8 bytes
    "length-too-long",  # length field 64 bytes larger than the datagram
    "attr-overrun",  # an attribute whose length runs past the message's end
    "bad-fingerprint",  # a success whose FINGERPRINT is off by one bit
    "unknown-family",  # XOR-MAPPED-ADDRESS with address family 0x03
    "alternate-self",  # 300 Try Alternate pointing back to this server
    "alternate-unreachable",  # 300 Try Alternate pointing to a port where nothing listens
)
# Binding is answered properly; Allocate (and Refresh) are where it goes wrong.
TURN = (
    "bad-integrity",  # 401 + REALM + NONCE, then a success with a wrong MESSAGE-INTEGRITY
    "401-no-realm",  # 401 without REALM and NONCE
    "endless-401",  # 401 + REALM + NONCE, forever
    "endless-438",  # 401 first, then 438 with a fresh NONCE, forever
)
STREAM_ONLY = (
    "tcp-half-frame",  # the first 10 bytes of a valid response, then stall
    "tcp-reset-mid-frame",  # half a frame, then RST (SO_LINGER 0 and close)
    "tcp-megabytes",  # MEGABYTES_TOTAL of valid-looking frames with wrong transaction IDs
    "tls-stall",  # the TLS port accepts TCP and never says a word of TLS
)
UDP_ONLY = (
    "64k",  # a 65,000-byte datagram
    "other-source",  # the right answer, from another socket (127.0.0.2)
)
BEHAVIOURS = COMMON + TURN + STREAM_ONLY + UDP_ONLY

REALM = "hostile.test"
USERNAME = "alice"
PASSWORD = "s3cret"
OTHER_HOST = "127.0.0.2"

MEGABYTES_TOTAL = 50 * 1024 * 1024
_BIG_VALUE = 65508  # PADDING value length: a frame of 20 + 4 + 65508 = 65532 bytes
_MAX_REQUESTS_PER_CONNECTION = 1000
_STALL_LIMIT = 30.0  # seconds a stalling connection is held at most
_RESET_PAUSE = 0.1  # let the half frame arrive before the RST
_STOP_TIMEOUT = 5.0

# (bytes to send, "main" or "other" socket)
Reply = tuple[bytes, str]


@dataclass
class HostileServer:
    behaviour: str
    host: str
    port: int  # UDP and TCP on the same port number
    tls_port: int | None  # None unless tls_ca was given or the behaviour is tls-stall
    dead_port: int  # where nothing listens (alternate-unreachable points there)
    requests: int = 0  # STUN requests received over any transport
    bytes_sent: int = 0  # tcp-megabytes: bytes written so far
    connections: int = 0  # TCP/TLS connections accepted
    other_port: int | None = None  # other-source: the port of the 127.0.0.2 socket
    errors: list[str] = field(default_factory=list)  # unexpected server-side exceptions

    @property
    def udp_port(self) -> int:
        return self.port

    @property
    def tcp_port(self) -> int:
        return self.port


# -- messages --------------------------------------------------------------------------------


def _random_tid() -> bytes:
    return os.urandom(12)


def _success(request: stun.Message, client: tuple[str, int], **extra: Any) -> stun.Message:
    attributes: dict[str, Any] = {"XOR-MAPPED-ADDRESS": client, **extra}
    return stun.Message(
        request.message_method, stun.Class.RESPONSE, request.transaction_id, attributes
    )


def _binding_success(request: stun.Message, client: tuple[str, int]) -> bytes:
    message = stun.Message(
        stun.Method.BINDING,
        stun.Class.RESPONSE,
        request.transaction_id,
        {"XOR-MAPPED-ADDRESS": client, "SOFTWARE": "hostile"},
    )
    message.add_fingerprint()
    return bytes(message)


def _error(request: stun.Message, code: int, phrase: str, **extra: Any) -> bytes:
    message = stun.Message(
        request.message_method,
        stun.Class.ERROR,
        request.transaction_id,
        {"ERROR-CODE": (code, phrase), **extra},
    )
    message.add_fingerprint()
    return bytes(message)


def _challenge(request: stun.Message, code: int = 401, phrase: str = "Unauthorized") -> bytes:
    return _error(request, code, phrase, REALM=REALM, NONCE=os.urandom(8).hex().encode())


def _allocate_success(request: stun.Message, client: tuple[str, int]) -> stun.Message:
    return stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.RESPONSE,
        request.transaction_id,
        {
            "XOR-RELAYED-ADDRESS": ("127.0.0.1", 40000),
            "XOR-MAPPED-ADDRESS": client,
            "LIFETIME": 600,
        },
    )


def _set_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


def _header(msg_type: int, length: int, tid: bytes, cookie: int = stun.COOKIE) -> bytes:
    return struct.pack("!HHI12s", msg_type, length, cookie, tid)


def _binding_type(cls: stun.Class) -> int:
    return int(stun.Method.BINDING) | int(cls)


def megabytes_frame() -> bytearray:
    """A valid-looking Binding success of 65,532 bytes (PADDING); patch bytes 8..20 per copy."""
    value = bytes(_BIG_VALUE)
    body = struct.pack("!HH", 0x0026, len(value)) + value
    return bytearray(_header(_binding_type(stun.Class.RESPONSE), len(body), bytes(12)) + body)


def _turn_answer(behaviour: str, request: stun.Message, client: tuple[str, int]) -> list[bytes]:
    if request.message_method == stun.Method.BINDING:
        return [_binding_success(request, client)]
    signed = "MESSAGE-INTEGRITY" in request.attributes
    if behaviour == "401-no-realm":
        return [_error(request, 401, "Unauthorized")]
    if not signed:
        return [_challenge(request)]
    if behaviour == "endless-401":
        return [_challenge(request)]
    if behaviour == "endless-438":
        return [_challenge(request, 438, "Stale Nonce")]
    # bad-integrity
    key = stun.long_term_key(USERNAME, REALM, PASSWORD)
    if request.message_method == stun.Method.ALLOCATE:
        message = _allocate_success(request, client)
        message.add_message_integrity(stun.long_term_key(USERNAME, REALM, "not-" + PASSWORD))
        return [bytes(message)]
    # Refresh (the delete) and anything else: a proper signed success, so that the
    # client's cleanup is quick and the failure stays the Allocate's.
    message = stun.Message(
        request.message_method, stun.Class.RESPONSE, request.transaction_id, {"LIFETIME": 0}
    )
    message.add_message_integrity(key)
    return [bytes(message)]


def answers(server: HostileServer, request: stun.Message, client: tuple[str, int]) -> list[Reply]:
    """What the behaviour sends back for one well-formed request."""
    b = server.behaviour
    tid = request.transaction_id
    if b in TURN:
        return [(data, "main") for data in _turn_answer(b, request, client)]
    if b == "garbage":
        return [(b"\xff" + os.urandom(63), "main")]
    if b == "wrong-tid":
        fake = stun.Message(request.message_method, request.message_class, _random_tid())
        return [(_binding_success(fake, client), "main")]
    if b == "wrong-cookie":
        good = _binding_success(request, client)
        return [(good[:4] + struct.pack("!I", 0xDEADBEEF) + good[8:], "main")]
    if b == "wrong-method":
        if request.message_method == stun.Method.BINDING:
            message = _allocate_success(request, client)
        else:
            message = _success(request, client)
            message.message_method = stun.Method.BINDING
        message.add_fingerprint()
        return [(bytes(message), "main")]
    if b == "wrong-class":
        as_request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, tid)
        as_request.add_fingerprint()
        indication = stun.Message(stun.Method.BINDING, stun.Class.INDICATION, tid)
        indication.add_fingerprint()
        return [(bytes(as_request), "main"), (bytes(indication), "main")]
    if b == "truncated":
        return [(_binding_success(request, client)[:-8], "main")]
    if b == "length-too-long":
        good = _binding_success(request, client)
        return [(_set_length(good, len(good) - 20 + 64), "main")]
    if b == "attr-overrun":
        # XOR-MAPPED-ADDRESS claiming 240 bytes of value, with 8 present.
        body = struct.pack("!HH", 0x0020, 240) + bytes(8)
        return [(_header(_binding_type(stun.Class.RESPONSE), len(body), tid) + body, "main")]
    if b == "bad-fingerprint":
        good = bytearray(_binding_success(request, client))
        good[-1] ^= 0x01
        return [(bytes(good), "main")]
    if b == "unknown-family":
        port = client[1] ^ (stun.COOKIE >> 16)
        value = struct.pack("!BBH", 0, 0x03, port) + bytes(4)
        body = struct.pack("!HH", 0x0020, len(value)) + value
        return [(_header(_binding_type(stun.Class.RESPONSE), len(body), tid) + body, "main")]
    if b in ("alternate-self", "alternate-unreachable"):
        port = server.port if b == "alternate-self" else server.dead_port
        data = _error(request, 300, "Try Alternate", **{"ALTERNATE-SERVER": (server.host, port)})
        return [(data, "main")]
    if b == "64k":
        # STUN framing with our transaction ID, length 64,980, and a SOFTWARE attribute
        # whose length runs 4 bytes past the end: 65,000 bytes in all.
        length = 65000 - 20
        body = struct.pack("!HH", 0x8022, length) + b"A" * (length - 4)
        return [(_header(_binding_type(stun.Class.RESPONSE), length, tid) + body, "main")]
    if b == "other-source":
        return [(_binding_success(request, client), "other")]
    return []  # silence, and the stream-only behaviours over UDP


# -- the server --------------------------------------------------------------------------------


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: _Runner) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner.udp_request(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP from a client that went away
        pass


class _Runner:
    """Everything that lives on the server's loop."""

    def __init__(self, state: HostileServer, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.udp: _Udp | None = None
        self.other: _Udp | None = None
        self.servers: list[asyncio.base_events.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    # UDP

    def udp_request(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = stun.decode(data)
        except stun.MalformedMessage:
            return
        if request.message_class != stun.Class.REQUEST:
            return
        self.state.requests += 1
        client = (addr[0], addr[1])
        for payload, via in answers(self.state, request, client):
            sender = self.other if via == "other" else self.udp
            if sender is not None and sender.transport is not None:
                sender.transport.sendto(payload, client)

    # TCP / TLS

    def track(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.state.connections += 1
        self.writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in this server: keep it visible to the tests
            self.state.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.writers.discard(writer)
            if not writer.is_closing():
                writer.transport.abort()

    async def stall(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept and say nothing (tls-stall): wait for the client to give up, bounded."""
        self.state.connections += 1
        self.writers.add(writer)
        try:
            await self._drain_until_eof(reader)
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.transport.abort()

    async def _drain_until_eof(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STALL_LIMIT):
                for _ in range(100_000):
                    if not await reader.read(65536):
                        return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1]))
        behaviour = self.state.behaviour
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            header = await reader.readexactly(20)
            length = struct.unpack_from("!H", header, 2)[0]
            data = header + await reader.readexactly(length)
            try:
                request = stun.decode(data)
            except stun.MalformedMessage:
                continue
            if request.message_class != stun.Class.REQUEST:
                continue
            self.state.requests += 1
            good = _binding_success(request, client)
            if behaviour == "tcp-half-frame":
                writer.write(good[:10])
                await writer.drain()
                await self._drain_until_eof(reader)
                return
            if behaviour == "tcp-reset-mid-frame":
                writer.write(good[: len(good) // 2])
                await writer.drain()
                await asyncio.sleep(_RESET_PAUSE)
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if behaviour == "tcp-megabytes":
                await self._flood(writer)
                await self._drain_until_eof(reader)
                return
            for payload, _via in answers(self.state, request, client):
                writer.write(payload)
            await writer.drain()

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        frame = megabytes_frame()
        for _ in range(MEGABYTES_TOTAL // len(frame) + 1):
            if self.state.bytes_sent >= MEGABYTES_TOTAL or writer.is_closing():
                return
            frame[8:20] = _random_tid()
            writer.write(bytes(frame))
            self.state.bytes_sent += len(frame)
            await writer.drain()

    async def start(
        self,
        udp_sock: socket.socket,
        tcp_sock: socket.socket,
        tls_sock: socket.socket | None,
        tls_context: ssl.SSLContext | None,
        other_sock: socket.socket | None,
    ) -> None:
        _, self.udp = await self.loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        if other_sock is not None:
            _, self.other = await self.loop.create_datagram_endpoint(
                lambda: _Udp(self), sock=other_sock
            )

        def spawn(handler: Any) -> Any:
            def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                self.track(handler(r, w))

            return on_connect

        self.servers.append(await asyncio.start_server(spawn(self.stream), sock=tcp_sock))
        if tls_sock is not None:
            if self.state.behaviour == "tls-stall" or tls_context is None:
                server = await asyncio.start_server(spawn(self.stall), sock=tls_sock)
            else:
                server = await asyncio.start_server(
                    spawn(self.stream), sock=tls_sock, ssl=tls_context
                )
            self.servers.append(server)

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=_STOP_TIMEOUT)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await server.wait_closed()
        for proto in (self.udp, self.other):
            if proto is not None and proto.transport is not None:
                proto.transport.close()
        await asyncio.sleep(0)


def _bind_udp_tcp(host: str) -> tuple[int, socket.socket, socket.socket]:
    """UDP and TCP sockets bound to one free port number (bounded retries)."""
    last: OSError | None = None
    for _ in range(20):
        port = free_port_block(1, host=host)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((host, port))
            tcp.bind((host, port))
            tcp.listen(16)
            udp.setblocking(False)
            tcp.setblocking(False)
            return port, udp, tcp
        except OSError as exc:
            udp.close()
            tcp.close()
            release_ports(port, 1)
            if exc.errno != errno.EADDRINUSE:
                raise
            last = exc
    raise RuntimeError(f"no free UDP+TCP port on {host}: {last}")


@contextmanager
def hostile_server(
    behaviour: str, *, tls_ca: Any = None, host: str = "127.0.0.1"
) -> Iterator[HostileServer]:
    """Run a hostile server for one behaviour; stopped (sockets, thread) on exit.

    tls_ca: a trustme.CA: then TLS listens on `tls_port` with a certificate for
    localhost and 127.0.0.1. "tls-stall" always gets a `tls_port` (it needs no cert).
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; choose from {', '.join(BEHAVIOURS)}")
    sockets: list[socket.socket] = []
    port, udp_sock, tcp_sock = _bind_udp_tcp(host)
    sockets += [udp_sock, tcp_sock]
    dead_port = free_port_block(1, host=host)  # reserved for this process, never bound
    tls_sock: socket.socket | None = None
    tls_context: ssl.SSLContext | None = None
    other_sock: socket.socket | None = None
    try:
        if tls_ca is not None or behaviour == "tls-stall":
            tls_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(tls_sock)
            tls_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tls_sock.bind((host, 0))
            tls_sock.listen(16)
            tls_sock.setblocking(False)
        if tls_ca is not None:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls_context)
        if behaviour == "other-source":
            other_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(other_sock)
            other_sock.bind((OTHER_HOST, 0))
            other_sock.setblocking(False)
        state = HostileServer(
            behaviour=behaviour,
            host=host,
            port=port,
            tls_port=tls_sock.getsockname()[1] if tls_sock is not None else None,
            dead_port=dead_port,
            other_port=other_sock.getsockname()[1] if other_sock is not None else None,
        )
    except BaseException:
        for sock in sockets:
            sock.close()
        release_ports(port, 1)
        release_ports(dead_port, 1)
        raise

    loop = asyncio.new_event_loop()
    runner = _Runner(state, loop)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                runner.start(udp_sock, tcp_sock, tls_sock, tls_context, other_sock)
            )
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name=f"hostile-{behaviour}", daemon=True)
    thread.start()
    try:
        if not started.wait(_STOP_TIMEOUT):
            raise RuntimeError("the hostile server did not start")
        if failure:
            raise RuntimeError(f"the hostile server did not start: {failure[0]!r}")
        yield state
    finally:
        if thread.is_alive() and not failure:
            done = asyncio.run_coroutine_threadsafe(runner.stop(), loop)
            with contextlib.suppress(Exception):
                done.result(_STOP_TIMEOUT * 2)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        for sock in sockets:
            sock.close()
        release_ports(port, 1)
        release_ports(dead_port, 1)
