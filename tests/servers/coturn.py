"""Run a private coturn (``turnserver``) for tests.

Every server gets its own work directory, config file, user database, pid file,
log file and unique ports, so several can run at once next to each other (and
next to a system coturn, which is left alone).  Only loopback addresses are
used -- except with ``netns=``: then turnserver runs inside that (test-created)
network namespace, on its addresses.
"""

from __future__ import annotations

import inspect
import os
import re
import select
import shlex
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .ports import free_port_block, release_ports, stop_server

if TYPE_CHECKING:  # pragma: no cover
    import trustme

__all__ = ["RELAY_RANGE_SIZE", "Coturn", "running_coturn", "stun_binding_ok"]

TURNSERVER = "turnserver"
RELAY_RANGE_SIZE = 50
STOP_TIMEOUT = 5.0
# Inside a fresh network namespace every port is free: fixed ports, one coturn
# per namespace.
NETNS_PORT = 3478
NETNS_RELAY_MIN_PORT = 49152

_MAGIC_COOKIE = 0x2112A442
_BAD_CONFIG = re.compile(r"Bad configuration format: (\S+)")


@dataclass
class Coturn:
    port: int  # listening-port (UDP+TCP); RFC 5780 alt port is port + 1
    tls_port: int  # tls-listening-port (0 if TLS off); alt TLS port is tls_port + 1
    hosts: tuple[str, ...]  # listening IPs
    realm: str
    users: dict[str, str]
    workdir: Path
    log_path: Path
    process: subprocess.Popen
    min_port: int  # relay port range, unique per server
    max_port: int
    config_path: Path = field(default=None)  # type: ignore[assignment]
    stdout_path: Path = field(default=None)  # type: ignore[assignment]
    startup_seconds: float = 0.0  # how long readiness took
    netns: str | None = None  # network namespace it runs in (None: this one)
    _port_blocks: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def host(self) -> str:
        return self.hosts[0]

    def log_text(self) -> str:
        """The whole coturn log so far ("" if not written yet)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def allocation_sessions(self, settle: float = 2.0) -> tuple[set[str], set[str]]:
        """(sessions that allocated, sessions whose allocation got Refresh LIFETIME=0).

        coturn writes its log a moment after the fact: wait up to *settle* seconds for
        every allocation in it to show its deletion too (bounded; returns what it saw)."""
        deadline = time.monotonic() + settle
        for _ in range(200):
            log = self.log_text()
            made = set(re.findall(r"session (\d+): new, realm=", log))
            deleted = set(re.findall(r"session (\d+): refreshed, .*lifetime=0", log))
            if made <= deleted or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return made, deleted

    def log_tail(self, n: int = 40) -> str:
        text = self.log_text()
        if not text.strip() and self.stdout_path is not None:
            try:
                text = self.stdout_path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
        return "\n".join(text.splitlines()[-n:])

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        stop_server(self.process, self._port_blocks, STOP_TIMEOUT)


def _binding_request() -> tuple[bytes, bytes]:
    tid = os.urandom(12)
    return struct.pack("!HHI", 0x0001, 0, _MAGIC_COOKIE) + tid, tid


def stun_binding_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    """Send one STUN Binding request over UDP; True if a success response with
    our transaction ID arrives within *timeout*.  Loopback use only."""
    req, tid = _binding_request()
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        try:
            # connected, so an ICMP port-unreachable (server not bound yet)
            # surfaces at once as ConnectionRefusedError instead of a timeout
            s.connect((host, port))
            s.send(req)
        except OSError:
            return False
        deadline = time.monotonic() + timeout
        for _ in range(20):  # bounded
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([s], [], [], left)
            if not r:
                return False
            try:
                data = s.recv(2048)
            except OSError:  # ICMP port unreachable (ECONNREFUSED) etc.
                return False
            if len(data) >= 20:
                mtype, _length, cookie = struct.unpack("!HHI", data[:8])
                if cookie == _MAGIC_COOKIE and data[8:20] == tid and mtype == 0x0101:
                    return True
    return False


def _tcp_connect_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


def _option_name(line: str) -> str:
    line = line.strip().lstrip("-")
    for sep in ("=", " ", "\t"):
        line = line.split(sep, 1)[0]
    return line.strip()


# Options that replace lt-cred-mech (use-auth-secret and lt-cred-mech conflict).
_AUTH_REPLACING = {"use-auth-secret", "no-auth"}


def _write_config(
    path: Path,
    *,
    hosts: Sequence[str],
    port: int,
    tls_port: int,
    min_port: int,
    max_port: int,
    realm: str,
    users: dict[str, str],
    workdir: Path,
    log_file: Path,
    cert: Path | None,
    pkey: Path | None,
    extra: Sequence[str],
    relay_ips: Sequence[str] | None = None,
) -> None:
    extra_names = {_option_name(e) for e in extra}
    lines = [
        "# written by tests/servers/coturn.py",
        *(f"listening-ip={h}" for h in hosts),
    ]
    if relay_ips is None:
        relay_ips = []
        if any(":" not in h for h in hosts):
            relay_ips.append("127.0.0.1")
        if any(":" in h for h in hosts):
            relay_ips.append("::1")
    lines += [f"relay-ip={ip}" for ip in relay_ips]
    lines += [
        f"listening-port={port}",
        f"min-port={min_port}",
        f"max-port={max_port}",
        f"realm={realm}",
        f"userdb={workdir / 'turndb'}",
        f"pidfile={workdir / 'turnserver.pid'}",
        f"log-file={log_file}",
        "simple-log",
        "no-cli",
        "allow-loopback-peers",
        "no-dtls",
        "verbose",
    ]
    if tls_port:
        lines += [f"tls-listening-port={tls_port}", f"cert={cert}", f"pkey={pkey}"]
    else:
        lines.append("no-tls")
    if not (extra_names & _AUTH_REPLACING) and "lt-cred-mech" not in extra_names:
        lines.append("lt-cred-mech")
    if "no-auth" not in extra_names:
        lines += [f"user={u}:{p}" for u, p in users.items()]
    lines += [e.strip() for e in extra]
    path.write_text("\n".join(lines) + "\n")


@contextmanager
def running_coturn(
    workdir: Path,
    *,
    ca: trustme.CA | None = None,
    hosts: Sequence[str] = ("127.0.0.1", "127.0.0.2"),
    users: dict[str, str] | None = None,
    realm: str = "turncheck.test",
    tls: bool = True,
    cert_hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    extra: Sequence[str] = (),
    ready_timeout: float = 10.0,
    netns: str | None = None,
    relay_ips: Sequence[str] | None = None,
    cert_pem: tuple[bytes, bytes] | None = None,
    relay_range: int = RELAY_RANGE_SIZE,
    netns_ports: tuple[int, int, int] | None = None,
) -> Iterator[Coturn]:
    """Start turnserver with its own config in *workdir*, wait until it answers,
    yield a :class:`Coturn`, and always stop it afterwards.

    Ports: a block of 4 (tls) or 2 consecutive ports: ``port``, ``port+1``
    (coturn's default alt-listening-port for RFC 5780), ``tls_port = port+2``,
    ``tls_port+1`` (alt TLS port), plus a separate range of 50 relay ports.

    *netns*: run it as ``ip netns exec <netns> turnserver`` (the namespace
    must exist and own *hosts*).  Ports are then fixed (3478, TLS 3480, relays
    49152-49201; one server per namespace) and readiness is probed from inside
    the namespace.  *relay_ips*: the ``relay-ip=`` lines (default: 127.0.0.1
    and/or ::1, matching *hosts*).  *cert_pem*: (certificate chain PEM, private
    key PEM) to serve instead of a leaf issued by *ca* (expired, self-signed, ...).
    *relay_range*: how many relay ports (a load test needs two per pair).
    *netns_ports*: (port, tls_port, first relay port) inside a namespace, to run several
    servers in one namespace (default 3478, 3480, 49152).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    hosts = tuple(hosts)
    if not hosts:
        raise ValueError("hosts must not be empty")
    users = {"alice": "s3cret"} if users is None else dict(users)
    if tls and ca is None and cert_pem is None:
        raise ValueError("tls=True needs a trustme CA (ca=...) or cert_pem")

    v4 = [h for h in hosts if ":" not in h]
    v6 = [h for h in hosts if ":" in h]
    main_host = v4[0] if v4 else v6[0]
    extra_hosts = tuple(h for h in hosts if h != main_host)

    blocks: list[tuple[int, int]] = []
    n_listen = 4 if tls else 2
    if netns is not None:
        # a fresh namespace: nothing else listens there, no host checks
        port, min_port = NETNS_PORT, NETNS_RELAY_MIN_PORT
        if netns_ports is not None:
            port, min_port = netns_ports[0], netns_ports[2]
    else:
        port = free_port_block(n_listen, host=main_host, extra_hosts=extra_hosts)
        blocks.append((port, n_listen))
        try:
            relay_hosts = tuple(["127.0.0.1"] * bool(v4) + ["::1"] * bool(v6))
            min_port = free_port_block(
                relay_range, host=relay_hosts[0], extra_hosts=relay_hosts[1:]
            )
        except BaseException:
            release_ports(port, n_listen)
            raise
        blocks.append((min_port, relay_range))
    max_port = min_port + relay_range - 1
    tls_port = port + 2 if tls else 0
    if tls and netns is not None and netns_ports is not None:
        tls_port = netns_ports[1]

    cert_path = pkey_path = None
    if tls and cert_pem is not None:
        cert_path = workdir / "turn_cert.pem"
        pkey_path = workdir / "turn_pkey.pem"
        cert_path.write_bytes(cert_pem[0])
        pkey_path.write_bytes(cert_pem[1])
    elif tls:
        assert ca is not None
        leaf = ca.issue_cert(*cert_hostnames)
        cert_path = workdir / "turn_cert.pem"
        pkey_path = workdir / "turn_pkey.pem"
        # leaf first, then the chain (intermediates, if any)
        with cert_path.open("wb") as f:
            for pem in leaf.cert_chain_pems:
                f.write(pem.bytes())
        leaf.private_key_pem.write_to_path(str(pkey_path))

    # With simple-log, coturn 4.6.1 writes to exactly the log-file name given
    # (checked: <workdir>/turn.log).  Without simple-log it adds a date for
    # daily rollover: log-file=<dir>/turn.log -> <dir>/turn_2026-11-22.log.
    log_path = workdir / "turn.log"
    config_path = workdir / "turnserver.conf"
    stdout_path = workdir / "turnserver.stdout"
    _write_config(
        config_path,
        hosts=hosts,
        port=port,
        tls_port=tls_port,
        min_port=min_port,
        max_port=max_port,
        realm=realm,
        users=users,
        workdir=workdir,
        log_file=log_path,
        cert=cert_path,
        pkey=pkey_path,
        extra=extra,
        relay_ips=relay_ips,
    )

    argv = [TURNSERVER, "-c", str(config_path)]
    if netns is not None:
        # `ip netns exec` execs turnserver: the Popen pid is turnserver's own,
        # so stop() signals the server itself.
        argv = ["ip", "netns", "exec", netns, *argv]
    started = time.monotonic()
    with stdout_path.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Coturn(
        port=port,
        tls_port=tls_port,
        hosts=hosts,
        realm=realm,
        users=users,
        workdir=workdir,
        log_path=log_path,
        process=process,
        min_port=min_port,
        max_port=max_port,
        config_path=config_path,
        stdout_path=stdout_path,
        netns=netns,
        _port_blocks=blocks,
    )
    try:
        if netns is None:
            udp = not any(e.strip() == "no-udp" for e in extra)
            _wait_ready(server, main_host, ready_timeout, started, udp)
        else:
            _wait_ready_netns(server, netns, main_host, ready_timeout, started)
        server.startup_seconds = time.monotonic() - started
        # coturn ignores unknown config lines (logging "Bad configuration
        # format: <name>") and starts anyway; a typo in `extra` must not
        # silently give a server without the intended option.
        bad = sorted({m for m in _BAD_CONFIG.findall(server.log_text())})
        if bad:
            raise RuntimeError(
                f"turnserver rejected config option(s) {bad}; last log lines:\n{server.log_tail(40)}"
            )
        yield server
    finally:
        server.stop()


def _wait_ready(
    server: Coturn, host: str, timeout: float, started: float, udp: bool = True
) -> None:
    deadline = started + timeout
    udp_ok = False
    tls_ok = not server.tls_port
    for _ in range(5000):  # bounded count as well as time
        rc = server.process.poll()
        if rc is not None:
            raise RuntimeError(
                f"turnserver exited early with code {rc}; last log lines:\n{server.log_tail(40)}"
            )
        if not udp_ok:
            # A server started with no-udp is ready when its TCP listener accepts.
            udp_ok = (
                stun_binding_ok(host, server.port, timeout=0.2)
                if udp
                else _tcp_connect_ok(host, server.port, timeout=0.2)
            )
        if udp_ok and not tls_ok:
            tls_ok = _tcp_connect_ok(host, server.tls_port, timeout=0.2)
        if udp_ok and tls_ok:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    state = f"udp_ok={udp_ok} tls_ok={tls_ok}"
    raise RuntimeError(
        f"turnserver not ready after {timeout:.1f} s ({state}); last log lines:\n{server.log_tail(40)}"
    )


def _netns_probe_script() -> str:
    """Python source of a one-shot readiness probe to run inside a namespace:
    argv host port tls_port deadline_seconds; exit 0 once UDP STUN Binding
    works (and a TCP connect to tls_port, if not 0), 1 at the deadline.
    Reuses this module's own probe functions verbatim."""
    parts = [
        "import os, select, socket, struct, sys, time",
        f"_MAGIC_COOKIE = {_MAGIC_COOKIE:#x}",
        inspect.getsource(_binding_request),
        inspect.getsource(stun_binding_ok),
        inspect.getsource(_tcp_connect_ok),
        """
host, port, tls_port, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
udp_ok, tls_ok = False, not tls_port
for _ in range(5000):
    if not udp_ok:
        udp_ok = stun_binding_ok(host, port, timeout=0.2)
    if udp_ok and not tls_ok:
        tls_ok = _tcp_connect_ok(host, tls_port, timeout=0.2)
    if udp_ok and tls_ok:
        print("ready")
        sys.exit(0)
    if time.monotonic() >= deadline:
        break
    time.sleep(0.01)
print(f"udp_ok={udp_ok} tls_ok={tls_ok}")
sys.exit(1)
""",
    ]
    return "\n".join(parts)


def _wait_ready_netns(
    server: Coturn, netns: str, host: str, timeout: float, started: float
) -> None:
    """Like :func:`_wait_ready`, but the probes run inside *netns* (one
    ``ip netns exec <netns> python -c ...`` process, bounded by *timeout*)."""
    left = max(0.5, started + timeout - time.monotonic())
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _netns_probe_script()]
    argv += [host, str(server.port), str(server.tls_port), f"{left:.3f}"]
    probe = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = "probe did not finish"
    try:
        hard_deadline = time.monotonic() + left + 5.0  # python start-up slack
        for _ in range(100000):  # bounded count as well as time
            rc = server.process.poll()
            if rc is not None:
                raise RuntimeError(
                    f"turnserver (netns {netns}) exited early with code {rc}; "
                    f"last log lines:\n{server.log_tail(40)}"
                )
            prc = probe.poll()
            if prc is not None:
                out = (probe.stdout.read() if probe.stdout else "").strip()
                if prc == 0:
                    return
                state = out or f"probe exited with code {prc}"
                break
            if time.monotonic() >= hard_deadline:
                break
            time.sleep(0.01)
    finally:
        if probe.poll() is None:
            probe.kill()
        probe.wait(timeout=STOP_TIMEOUT)
        if probe.stdout:
            probe.stdout.close()
    raise RuntimeError(
        f"turnserver (netns {netns}) not ready after {timeout:.1f} s ({state}); "
        f"probe: {shlex.join(argv[:5])} ...; last log lines:\n{server.log_tail(40)}"
    )
