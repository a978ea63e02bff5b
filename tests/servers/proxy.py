"""A loopback UDP proxy that delays the server's answers: a slow path without tc/netem.

This kernel has no netem qdisc (PROTOCOL.md), so delay is injected in user space.
It runs its own event loop in a thread; every client address gets its own
upstream socket, so the server sees one 5-tuple per client, as through a NAT.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class UdpDelayProxy:
    host: str
    port: int
    upstream: tuple[str, int]
    delay: float
    forwarded: int = 0
    rewrite: Callable[[bytes], bytes] | None = None  # applied to the server's answers


class _Upstream(asyncio.DatagramProtocol):
    def __init__(
        self,
        front: asyncio.DatagramTransport,
        client: tuple[str, int],
        delay: float,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.front = front
        self.client = client
        self.delay = delay
        self.rewrite = rewrite

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.rewrite is not None:
            data = self.rewrite(data)
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self.front.sendto, data, self.client)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpDelayProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None
        self.upstreams: dict[tuple[str, int], asyncio.DatagramTransport] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._forward(data, addr))

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        assert self.transport is not None
        if client not in self.upstreams:
            loop = asyncio.get_running_loop()
            up, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(  # type: ignore[arg-type]
                    self.transport, client, self.proxy.delay, self.proxy.rewrite
                ),
                remote_addr=self.proxy.upstream,
            )
            self.upstreams[client] = up
        self.proxy.forwarded += 1
        self.upstreams[client].sendto(data)


@contextmanager
def udp_delay_proxy(
    upstream: tuple[str, int],
    delay: float,
    host: str = "127.0.0.1",
    rewrite: Callable[[bytes], bytes] | None = None,
) -> Iterator[UdpDelayProxy]:
    """Forward datagrams to `upstream`; answers come back `delay` seconds late (and
    rewritten by `rewrite`, for what no real server does on purpose)."""
    loop = asyncio.new_event_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    proxy = UdpDelayProxy(host, sock.getsockname()[1], upstream, delay, rewrite=rewrite)
    front = _Front(proxy)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(loop.create_datagram_endpoint(lambda: front, sock=sock))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield proxy
    finally:

        def stop() -> None:
            for up in front.upstreams.values():
                up.close()
            if front.transport is not None:
                front.transport.close()
            loop.stop()

        loop.call_soon_threadsafe(stop)
        thread.join(5)
        loop.close()


def strip_integrity(message_type: int) -> Callable[[bytes], bytes]:
    """A rewrite that removes MESSAGE-INTEGRITY (and what follows it: FINGERPRINT) from
    STUN messages of one type, e.g. 0x0109 ChannelBind success: an unsigned answer."""

    def rewrite(data: bytes) -> bytes:
        if len(data) < 20 or struct.unpack_from("!H", data, 0)[0] != message_type:
            return data
        pos, kept = 20, bytearray()
        while pos + 4 <= len(data):
            kind, length = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + length + (-length % 4)
            if kind == 0x0008:  # MESSAGE-INTEGRITY: it and everything after it go
                break
            kept += data[pos:end]
            pos = end
        return data[:2] + struct.pack("!H", len(kept)) + data[4:20] + bytes(kept)

    return rewrite


@dataclass
class SlowAcceptProxy:
    host: str
    port: int


@contextmanager
def slow_accept_tcp_proxy(
    upstream: tuple[str, int], backlog: int = 1, accept_every: float = 0.1
) -> Iterator[SlowAcceptProxy]:
    """A TCP front to `upstream` whose listen backlog is tiny and which accepts one
    connection every `accept_every` seconds: a server that accepts more slowly than
    connections come. The kernel then drops SYNs, and clients send them again after 1 s.
    Bytes are forwarded both ways unchanged."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.setblocking(False)
    proxy = SlowAcceptProxy("127.0.0.1", listener.getsockname()[1])
    loop = asyncio.new_event_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(1_000_000):  # bounded: at most this many reads per direction
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        for _ in range(100_000):  # bounded: the test's connections are far fewer
            client, _ = await loop.sock_accept(listener)
            client.setblocking(False)
            down_r, down_w = await asyncio.open_connection(sock=client)
            up_r, up_w = await asyncio.open_connection(*upstream)
            for task in (pipe(down_r, up_w), pipe(up_r, down_w)):
                tasks.add(loop.create_task(task))
            await asyncio.sleep(accept_every)

    def run() -> None:
        asyncio.set_event_loop(loop)
        main = loop.create_task(serve())
        tasks.add(main)
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:

        async def shutdown() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        listener.close()
