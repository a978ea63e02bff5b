"""A recording STUN/TURN front for the lab: what clients put on the wire, attribute by attribute.

Run inside a lab namespace (``ip netns exec NS python -m tests.servers.recorder ...``): it
listens on UDP, TCP and TLS (terminated here with a trustme certificate, so what goes inside
can be read), forwards every byte unchanged to a real TURN server, and writes one JSON line
per STUN message a client sent: transport, message type, and the attribute types in order.
Nothing is answered by the recorder itself; it stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import struct
import sys
from pathlib import Path
from typing import IO, Any

HEADER = 20
MAGIC = 0x2112A442


def stun_records(data: bytes) -> list[dict[str, Any]]:
    """STUN messages in a datagram or a run of framed stream bytes; ChannelData skipped."""
    out = []
    pos = 0
    for _ in range(10_000):  # bounded: a datagram or one read holds few messages
        if pos + 4 > len(data):
            break
        first = data[pos]
        if 0x40 <= first <= 0x7F:  # ChannelData: 4-byte header, padded to 4 over streams
            (length,) = struct.unpack_from("!H", data, pos + 2)
            pos += 4 + length + (-length % 4)
            continue
        if pos + HEADER > len(data):
            break
        kind, length, magic = struct.unpack_from("!HHI", data, pos)
        if magic != MAGIC:
            break
        attrs = []
        at = pos + HEADER
        end = pos + HEADER + length
        while at + 4 <= end:
            attr, size = struct.unpack_from("!HH", data, at)
            attrs.append(f"0x{attr:04x}")
            at += 4 + size + (-size % 4)
        out.append({"type": f"0x{kind:04x}", "attrs": attrs})
        pos = end
    return out


class Log:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, transport: str, data: bytes) -> None:
        for record in stun_records(data):
            self.out.write(json.dumps({"transport": transport, **record}) + "\n")
        self.out.flush()


class UdpFront(asyncio.DatagramProtocol):
    def __init__(self, log: Log, upstream: tuple[str, int]) -> None:
        self.log = log
        self.upstream = upstream
        self.transport: Any = None
        self.clients: dict[tuple[str, int], asyncio.DatagramTransport] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.write("udp", data)
        asyncio.get_running_loop().create_task(self._forward(data, addr))

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        up = self.clients.get(client)
        if up is None:
            front = self

            class Back(asyncio.DatagramProtocol):
                def datagram_received(self, answer: bytes, addr: tuple[str, int]) -> None:
                    if front.transport is not None:
                        front.transport.sendto(answer, client)

            up, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                Back, remote_addr=self.upstream
            )
            self.clients[client] = up
        up.sendto(data)


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Log | None, name: str
) -> None:
    buffer = b""
    try:
        for _ in range(100_000):  # bounded per connection
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            if log is not None:
                buffer += data
                used = _complete(buffer)
                log.write(name, buffer[:used])
                buffer = buffer[used:]
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _complete(buffer: bytes) -> int:
    """How many bytes of the stream buffer are whole frames (STUN or ChannelData)."""
    pos = 0
    for _ in range(10_000):
        if pos + 4 > len(buffer):
            break
        first = buffer[pos]
        (length,) = struct.unpack_from("!H", buffer, pos + 2)
        size = 4 + length + (-length % 4) if 0x40 <= first <= 0x7F else HEADER + length
        if pos + size > len(buffer):
            break
        pos += size
    return pos


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True, help="IP of the TURN server")
    parser.add_argument("--port", type=int, default=3478, help="UDP and TCP, also upstream")
    parser.add_argument("--tls-port", type=int, default=5349)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    upstream = (args.upstream, args.port)
    loop = asyncio.get_running_loop()
    with Path(args.out).open("w") as out:
        log = Log(out)
        await loop.create_datagram_endpoint(
            lambda: UdpFront(log, upstream), local_addr=(args.listen, args.port)
        )

        def stream_handler(name: str):  # type: ignore[no-untyped-def]
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                up_r, up_w = await asyncio.open_connection(*upstream)
                await asyncio.gather(pipe(reader, up_w, log, name), pipe(up_r, writer, None, name))

            return handle

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        await asyncio.start_server(stream_handler("tcp"), args.listen, args.port)
        await asyncio.start_server(stream_handler("tls"), args.listen, args.tls_port, ssl=context)
        print("ready", flush=True)
        await asyncio.sleep(args.seconds)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
