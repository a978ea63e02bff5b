"""Resource hygiene against the real coturn on loopback: many runs in one process leave no
file descriptor, no asyncio task and no thread behind, passing or failing."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block
from turncheck.browser import parse_ice_url
from turncheck.checks import CheckSettings, make_ssl_context
from turncheck.config import Credentials
from turncheck.plan import ServerEntry, build_targets
from turncheck.probe import run_probe
from turncheck.relay import RelaySettings
from turncheck.report import Report
from turncheck.resolve import Resolver

CREDS = ("-u", "alice", "-p", "s3cret")
ALICE = Credentials("alice", "s3cret")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(f"{name} -> {os.readlink(f'/proc/self/fd/{name}')}")
    return sorted(out)


def wait_until(condition, seconds: float) -> bool:
    """Poll `condition` for at most `seconds`: closes and thread exits may lag a little."""
    end = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


@contextlib.contextmanager
def dead_ends() -> Iterator[dict[str, int]]:
    """A closed port, a UDP socket that never answers, a TCP listener that never accepts."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield {
            "closed": free_port_block(1),
            "silent": silent.getsockname()[1],
            "listener": listener.getsockname()[1],
        }
    finally:
        silent.close()
        listener.close()


def test_many_cli_runs_leave_no_file_descriptor_or_thread(
    cli, coturn: Coturn, ca_file: Path
) -> None:
    threads_before = threading.active_count()
    fds_before = fd_count()
    listing_before = fd_targets()
    ok_url = f"turn:127.0.0.1:{coturn.port}"
    tls_url = f"turns:localhost:{coturn.tls_port}?transport=tcp"
    ca = ("--ca-file", str(ca_file))
    fast = ("--timeout", "0.6")
    with dead_ends() as port:
        closed, silent, listener = port["closed"], port["silent"], port["listener"]
        runs: list[tuple[int, tuple[str, ...]]] = [
            # udp, tcp and tls, Binding and Allocate with the relay check.
            (0, ("probe", ok_url, tls_url, *CREDS, *ca, "--json")),
            (0, ("probe", ok_url, tls_url, *CREDS, *ca)),
            (0, ("probe", f"{ok_url}?transport=udp", *CREDS, "--json")),
            (0, ("probe", f"{ok_url}?transport=tcp", *CREDS, "--json")),
            (0, ("probe", f"stun:127.0.0.1:{coturn.port}", f"stun:127.0.0.2:{coturn.port}")),
            (
                0,
                (
                    "probe",
                    f"stuns:localhost:{coturn.tls_port}",
                    *ca,
                    "--transport",
                    "tls",
                    "--json",
                ),
            ),
            # wrong password over udp, tcp and tls
            (1, ("probe", ok_url, tls_url, "-u", "alice", "-p", "WRONG-pw", *ca, "--json")),
            # refused: ICMP port unreachable (udp) and RST (tcp)
            (1, ("probe", f"stun:127.0.0.1:{closed}", "--timeout", "2", "--json")),
            (1, ("probe", f"turn:127.0.0.1:{closed}", *CREDS, "--timeout", "2")),
            # silence: the UDP schedule runs out, the TCP connection is never answered
            (1, ("probe", f"stun:127.0.0.1:{silent}", "--transport", "udp", *fast, "--json")),
            (1, ("probe", f"turn:127.0.0.1:{silent}?transport=udp", *CREDS, *fast)),
            (1, ("probe", f"stun:127.0.0.1:{listener}", "--transport", "tcp", *fast)),
            (1, ("probe", f"turn:127.0.0.1:{listener}?transport=tcp", *CREDS, *fast)),
            # a TLS handshake that never completes; a certificate for another name; no CA
            (1, ("probe", f"turns:localhost:{listener}?transport=tcp", *CREDS, *ca, *fast)),
            (1, ("probe", f"turns:127.0.0.2:{coturn.tls_port}?transport=tcp", *CREDS, *ca)),
            (1, ("probe", f"stuns:localhost:{coturn.tls_port}", "--transport", "tls", "--json")),
            # NAT behaviour discovery: RFC 5780, silence, refusal, pystun3 in its thread
            (0, ("nat", f"stun:127.0.0.1:{coturn.port}", "--json")),
            (1, ("nat", f"stun:127.0.0.1:{silent}", *fast, "--json")),
            (1, ("nat", f"stun:127.0.0.1:{closed}", *fast, "--json")),
            (0, ("nat", f"stun:127.0.0.1:{coturn.port}", "--classic", "--json")),
            # and the passing run once more, after all the failures
            (0, ("probe", ok_url, tls_url, *CREDS, *ca, "--json")),
        ]
        for expected, args in runs:
            result = cli(*args)
            assert result.code == expected, (args, result.out, result.err)
            assert "Traceback" not in result.err and "internal error" not in result.err, args
        assert fd_count() > fds_before  # the helper sockets are still open here
    # No gc.collect() first: a socket only a collected cycle closes is a leak too.
    if not wait_until(lambda: fd_count() <= fds_before, 2.0):
        left, listing = fd_count() - fds_before, fd_targets()
        gc.collect()
        pytest.fail(
            f"{left} file descriptor(s) left open after {len(runs)} runs "
            f"({fd_count() - fds_before} still open after gc.collect()); new ones:\n"
            + "\n".join(sorted(set(listing) - set(listing_before)))
        )
    assert fd_count() == fds_before
    # pystun3's worker (nat --classic) is a daemon bounded by its own timeout; wait for it.
    assert wait_until(lambda: threading.active_count() <= threads_before, 12.0), [
        t.name for t in threading.enumerate()
    ]


def _entries(*urls: str) -> list[ServerEntry]:
    out = []
    for text in urls:
        url = parse_ice_url(text)
        creds = ALICE if url.is_turn else None
        out.append(ServerEntry(url, creds, "command line" if creds else "none"))
    return out


def _run(urls: tuple[str, ...], ca_file: Path, timeout: float) -> Report:
    """run_probe in a fresh loop; on its return only the calling task may be left."""
    leftovers: list[str] = []

    async def main() -> Report:
        settings = CheckSettings(
            timeout=timeout,
            ssl_context=make_ssl_context(str(ca_file), False),
            relay=RelaySettings(count=3, interval=0.005),
        )
        report = await run_probe(
            build_targets(_entries(*urls)), Resolver(None, timeout=2), settings
        )
        current = asyncio.current_task()
        leftovers.extend(repr(t) for t in asyncio.all_tasks() if t is not current)
        return report

    report = asyncio.run(main())
    assert leftovers == [], leftovers
    return report


def test_run_probe_leaves_no_task_passing_or_failing(coturn: Coturn, ca_file: Path) -> None:
    threads_before = threading.active_count()
    fds_before = fd_count()
    passing = _run(
        (
            f"turn:127.0.0.1:{coturn.port}",
            f"turns:localhost:{coturn.tls_port}?transport=tcp",
            f"stun:127.0.0.2:{coturn.port}",
        ),
        ca_file,
        2,
    )
    assert passing.checks and all(c.ok for c in passing.checks), [
        (c.transport, c.kind, c.error) for c in passing.checks if not c.ok
    ]
    assert {(c.transport, c.kind) for c in passing.checks} >= {
        (t, k) for t in ("udp", "tcp", "tls") for k in ("stun", "turn")
    }
    with dead_ends() as port:
        refused = _run(
            (f"stun:127.0.0.1:{port['closed']}", f"turn:127.0.0.1:{port['closed']}"), ca_file, 2
        )
        timed_out = _run(
            (
                f"stun:127.0.0.1:{port['silent']}",
                f"turn:127.0.0.1:{port['listener']}?transport=tcp",
                f"turns:localhost:{port['listener']}?transport=tcp",
            ),
            ca_file,
            0.6,
        )
    for report in (refused, timed_out):
        assert report.checks and not any(c.ok for c in report.checks)
    assert any(c.timed_out for c in timed_out.checks)
    assert wait_until(lambda: fd_count() <= fds_before, 2.0), fd_targets()
    assert wait_until(lambda: threading.active_count() <= threads_before, 5.0), [
        t.name for t in threading.enumerate()
    ]
