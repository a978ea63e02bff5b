"""Free-port helper for the lab servers used by the tests.

Only loopback addresses are ever bound; nothing is sent anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import random
import signal
import socket
import subprocess
import threading
from collections.abc import Callable

__all__ = ["free_port_block", "release_ports", "stop_server", "terminate"]

_LOW = 20000
_HIGH = 45000
_MAX_ATTEMPTS = 200

# Ports handed out by this process and not released yet.  A port range that is
# only reserved (e.g. a TURN relay range, which coturn binds lazily) would
# otherwise look free to the next caller in the same test session.
_handed_out: set[int] = set()
_lock = threading.Lock()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_free(host: str, port: int) -> bool:
    """True when *port* can be bound on *host* for both UDP and TCP."""
    fam = _family(host)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(fam, kind)
        try:
            if kind == socket.SOCK_STREAM:
                # SO_REUSEADDR like the servers do, so TIME_WAIT leftovers of a
                # previous test don't make a port look busy; a listener still
                # makes bind() fail.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
        finally:
            s.close()
    return True


def _hosts_to_check(host: str, extra_hosts: tuple[str, ...]) -> list[str]:
    hosts = [host]
    if host == "127.0.0.1":
        hosts.append("127.0.0.2")
    for h in extra_hosts:
        if h not in hosts:
            hosts.append(h)
    # A wildcard listener (0.0.0.0 / ::) also blocks specific addresses, and
    # bind() on the specific address already detects it, so no extra checks.
    return hosts


def free_port_block(
    n: int = 2, *, host: str = "127.0.0.1", extra_hosts: tuple[str, ...] = ()
) -> int:
    """First port p of n consecutive ports p..p+n-1 that are free for BOTH UDP
    and TCP on *host* (and on 127.0.0.2 too, when host is 127.0.0.1, plus any
    *extra_hosts*).

    Bounded number of attempts; random starting points in 20000-45000 so
    parallel runs rarely collide.  Ports returned are remembered for the rest
    of this process (see :func:`release_ports`) so that two servers started by
    the same test session never get overlapping blocks, even for ranges the
    server binds only later (relay ports).
    """
    if n < 1 or n > 1000:
        raise ValueError(f"n must be in 1..1000, not {n}")
    hosts = _hosts_to_check(host, tuple(extra_hosts))
    rng = random.Random()
    with _lock:
        for _ in range(_MAX_ATTEMPTS):
            start = rng.randrange(_LOW, _HIGH - n + 1)
            block = range(start, start + n)
            if any(p in _handed_out for p in block):
                continue
            if all(_is_free(h, p) for p in block for h in hosts):
                _handed_out.update(block)
                return start
    raise RuntimeError(
        f"no block of {n} free UDP+TCP ports on {hosts} after {_MAX_ATTEMPTS} attempts"
    )


def release_ports(start: int, n: int) -> None:
    """Forget a block returned by :func:`free_port_block` (after its server stopped)."""
    with _lock:
        _handed_out.difference_update(range(start, start + n))


def stop_server(
    process: subprocess.Popen,  # type: ignore[type-arg]
    blocks: list[tuple[int, int]],
    timeout: float,
) -> None:
    """Stop a test server by its PID (terminate()) and forget its port blocks, always."""
    try:
        terminate(process, process.send_signal, timeout)
    finally:
        for start, n in blocks:
            release_ports(start, n)
        blocks.clear()


def terminate(
    process: subprocess.Popen,  # type: ignore[type-arg]
    signal_it: Callable[[int], None],
    timeout: float = 5.0,
) -> None:
    """SIGTERM via signal_it, wait up to timeout, then SIGKILL and wait again (bounded)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        signal_it(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            signal_it(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
