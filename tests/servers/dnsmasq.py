"""Run a private dnsmasq as an authoritative-looking DNS server for tests.

It listens only on 127.0.0.1 on a free port, reads no config file, no
/etc/hosts and no resolv.conf, forwards nothing anywhere, and answers only
from the records given on its command line.

Behaviour of dnsmasq 2.90 (checked on this machine):

* With ``--no-resolv`` and no ``--server`` alone, a name outside its records
  gets **REFUSED** ("config error is REFUSED (EDE: not ready)").  We therefore
  add ``--local=/#/`` (every domain is local, never forwarded): unknown names
  then get **NXDOMAIN**, and a known name asked for a type it lacks (e.g.
  AAAA of an A-only host-record) gets NOERROR with an empty answer (NODATA).
* An SRV record whose target is "." (RFC 2782 "service decidedly not
  available"): ``--srv-host=NAME`` with no target gives ``0 0 1 .`` (dnsmasq
  fills in port 1); ``--srv-host=NAME,.,PORT,PRIO,WEIGHT`` gives exactly
  ``PRIO WEIGHT PORT .``.  Passing target "." (or "") in *srv* uses the
  latter form.
* Answers to configured records are authoritative (AA set), TTL 0.
* TCP queries are served by a forked child process; :meth:`DnsServer.stop`
  signals the whole process group of the server it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port_block, release_ports, terminate

__all__ = ["DnsServer", "running_dnsmasq"]

DNSMASQ = "dnsmasq"
STOP_TIMEOUT = 5.0


@dataclass
class DnsServer:
    host: str  # "127.0.0.1"
    port: int
    process: subprocess.Popen
    workdir: Path = field(default=None)  # type: ignore[assignment]
    log_path: Path = field(default=None)  # type: ignore[assignment]
    _stopped: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, TypeError, AttributeError):
            return ""

    def resolver(self, timeout: float = 2.0):
        """A dnspython Resolver that asks only this server (never the system one)."""
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [self.host]
        r.port = self.port
        r.timeout = r.lifetime = timeout
        r.cache = None
        return r

    def stop(self) -> None:
        """SIGTERM (to the server's own process group), wait up to 5 s, then SIGKILL.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process.poll() is None:
                terminate(self.process, lambda sig: _signal_group(self.process, sig), STOP_TIMEOUT)
            else:
                # parent gone; make sure no forked TCP child of ours lingers
                _signal_group(self.process, signal.SIGKILL)
        finally:
            release_ports(self.port, 1)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    # The server was started with start_new_session=True, so its pgid is its
    # own pid: this reaches only that dnsmasq and its forked TCP children.
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def _query_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    """One DNS query over a *connected* UDP socket (so an ICMP port-unreachable
    while dnsmasq is still starting fails at once instead of timing out)."""
    import dns.exception
    import dns.message

    q = dns.message.make_query("turncheck-readiness.invalid.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(q.to_wire())
            for _ in range(5):  # bounded; skip anything that isn't our answer
                data = s.recv(4096)
                try:
                    r = dns.message.from_wire(data)
                except dns.exception.DNSException:
                    continue
                if q.is_response(r):
                    return True
        except OSError:  # refused, timeout
            return False
    return False


@contextmanager
def running_dnsmasq(
    workdir: Path,
    *,
    srv: Sequence[tuple[str, str, int, int, int]] = (),  # (name, target, port, priority, weight)
    hosts: Sequence[tuple[str, str]] = (),  # (name, ip) -> --host-record, IPv4 or IPv6
    extra: Sequence[str] = (),
    ready_timeout: float = 5.0,
) -> Iterator[DnsServer]:
    """Start dnsmasq on 127.0.0.1:<free port> serving only *srv* and *hosts*.

    Several *hosts* entries with the same name give several addresses for it
    (in order).  An SRV target of "." or "" means "no service" (target ".").
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    port = free_port_block(1, host=host)
    log_path = workdir / "dnsmasq.log"
    args = [
        DNSMASQ,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        f"--port={port}",
        f"--listen-address={host}",
        "--bind-interfaces",
        # every domain is local: unknown names -> NXDOMAIN, never forwarded
        # (without this dnsmasq answers REFUSED); no --server anywhere.
        "--local=/#/",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
        f"--log-facility={log_path}",
        "--log-queries",
    ]
    if os.geteuid() == 0:
        # otherwise dnsmasq drops to user "dnsmasq", which can't write workdir
        args.append("--user=root")
    for name, target, sport, prio, weight in srv:
        target = target or "."
        args.append(f"--srv-host={name},{target},{int(sport)},{int(prio)},{int(weight)}")
    for name, ip in hosts:
        args.append(f"--host-record={name},{ip}")
    args += list(extra)

    stdout_path = workdir / "dnsmasq.stdout"
    with stdout_path.open("wb") as out:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    server = DnsServer(host=host, port=port, process=process, workdir=workdir, log_path=log_path)
    try:
        started = time.monotonic()
        deadline = started + ready_timeout
        for _ in range(2000):  # bounded
            rc = process.poll()
            if rc is not None:
                raise RuntimeError(
                    f"dnsmasq exited early with code {rc}: "
                    f"{stdout_path.read_text(errors='replace')[-2000:]}\n{server.log_text()[-2000:]}"
                )
            if _query_ok(host, port, timeout=0.2):
                break
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"dnsmasq not answering on {host}:{port} after {ready_timeout:.1f} s\n"
                    f"{server.log_text()[-2000:]}"
                )
            time.sleep(0.02)
        else:
            raise RuntimeError("dnsmasq readiness loop exhausted")
        yield server
    finally:
        server.stop()
