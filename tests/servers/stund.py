"""stund (Debian's stun-server 0.97): a real RFC 3489 STUN server with no TURN at all.

It answers Binding requests on 127.0.0.1 and 127.0.0.2 (its two addresses, ports p and
p + 1) and silently drops anything else, an Allocate included: the server a TURN URL must
never point at. Own ports, stopped by PID, nothing sent anywhere but loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port_block, stop_server

STUND = "/usr/sbin/stund"


def stund_missing() -> str | None:
    if not (os.path.exists(STUND) or shutil.which("stund")):
        return "stund not installed (apt-get install stun-server)"
    return None


@dataclass
class Stund:
    process: subprocess.Popen  # type: ignore[type-arg]
    port: int
    _blocks: list[tuple[int, int]] = field(default_factory=list)

    def stop(self) -> None:
        stop_server(self.process, self._blocks, 5.0)


def _answers(port: int, timeout: float) -> bool:
    """A Binding request (RFC 5389 form) on port: does stund answer yet? (bounded)"""
    request = bytes.fromhex("0001 0000 2112a442") + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        for _ in range(100):
            if time.monotonic() >= deadline:
                return False
            sock.sendto(request, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError, OSError):
                data, _ = sock.recvfrom(2048)
                if data[4:20] == request[4:20]:
                    return True
    return False


@contextlib.contextmanager
def running_stund(workdir: Path) -> Iterator[Stund]:
    """stund on 127.0.0.1/127.0.0.2, ports p and p + 1; stopped (by PID) on exit."""
    port = free_port_block(2)
    log = (Path(workdir) / "stund.log").open("wb")
    process = subprocess.Popen(
        [STUND, "-h", "127.0.0.1", "-a", "127.0.0.2", "-p", str(port), "-o", str(port + 1)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = Stund(process, port, [(port, 2)])
    try:
        if not _answers(port, 5.0):
            raise RuntimeError(f"stund did not answer on 127.0.0.1:{port}")
        yield server
    finally:
        server.stop()
        log.close()
