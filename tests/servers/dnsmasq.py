"""Run a private dnsmasq as an authoritative-looking DNS server for tests.

It listens only on 127.0.0.1 on a free port, reads no config file, no
/etc/hosts and no resolv.conf, forwards nothing anywhere, and answers only
from the records given on its command line.  With ``netns=`` it runs inside
that (test-created) network namespace instead, on an address of that
namespace and a fixed port (53 by default), so the lab's other namespaces can
use it as their resolver.

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

import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port_block, release_ports, terminate

__all__ = ["DnsServer", "running_dnsmasq"]

DNSMASQ = "dnsmasq"
STOP_TIMEOUT = 5.0
NETNS_PORT = 53  # with netns=: the usual DNS port, on an address of that namespace


@dataclass
class DnsServer:
    host: str  # "127.0.0.1", or the namespace address it listens on
    port: int
    process: subprocess.Popen
    workdir: Path = field(default=None)  # type: ignore[assignment]
    log_path: Path = field(default=None)  # type: ignore[assignment]
    netns: str | None = None  # network namespace it runs in (None: this one)
    _port_reserved: bool = field(default=True, repr=False)  # from free_port_block
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
        """A dnspython Resolver that asks only this server (never the system one).
        For a server in a namespace (``netns``) it works only from inside the lab."""
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
            if self._port_reserved:
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


def _netns_probe_script() -> str:
    """Python source of a one-shot readiness probe to run inside a namespace:
    argv host port deadline_seconds; exit 0 once a query is answered, 1 at the
    deadline.  Reuses :func:`_query_ok` verbatim."""
    return "\n".join(
        [
            "import socket, sys, time",
            inspect.getsource(_query_ok),
            """
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
for _ in range(2000):
    if _query_ok(host, port, timeout=0.2):
        sys.exit(0)
    if time.monotonic() >= deadline:
        break
    time.sleep(0.02)
sys.exit(1)
""",
        ]
    )


def _wait_ready_netns(server: DnsServer, netns: str, timeout: float) -> None:
    """Probe from inside *netns* (one bounded ``ip netns exec`` process)."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _netns_probe_script()]
    argv += [server.host, str(server.port), f"{timeout:.3f}"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 10.0,  # python start-up slack
            check=False,
        )
        ok, why = done.returncode == 0, (done.stderr or done.stdout).strip()[-2000:]
    except subprocess.TimeoutExpired:
        ok, why = False, "probe did not finish"
    if ok:
        return
    rc = server.process.poll()
    state = f"exited with code {rc}" if rc is not None else "not answering"
    raise RuntimeError(
        f"dnsmasq (netns {netns}) {state} on {server.host}:{server.port} after "
        f"{timeout:.1f} s ({why or 'no answer'})\n{server.log_text()[-2000:]}"
    )


@contextmanager
def running_dnsmasq(
    workdir: Path,
    *,
    srv: Sequence[tuple[str, str, int, int, int]] = (),  # (name, target, port, priority, weight)
    hosts: Sequence[tuple[str, str]] = (),  # (name, ip) -> --host-record, IPv4 or IPv6
    extra: Sequence[str] = (),
    ready_timeout: float = 5.0,
    netns: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Iterator[DnsServer]:
    """Start dnsmasq on 127.0.0.1:<free port> serving only *srv* and *hosts*.

    Several *hosts* entries with the same name give several addresses for it
    (in order).  An SRV target of "." or "" means "no service" (target ".").

    *netns*: run it as ``ip netns exec <netns> dnsmasq`` (a namespace the test
    created), listening on *host* (required: an address of that namespace) and
    *port* (default 53); readiness is probed from inside the namespace.
    Without *netns*, *host* must be 127.0.0.1 (the default) and *port* is a
    free port unless given.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if netns is not None:
        if not host:
            raise ValueError("netns= needs host= (an address of that namespace)")
        port = NETNS_PORT if port is None else int(port)
        reserved = False
    else:
        host = host or "127.0.0.1"
        if not host.startswith("127."):
            raise ValueError(f"outside a namespace dnsmasq listens on loopback only, not {host}")
        reserved = port is None
        port = free_port_block(1, host=host) if port is None else int(port)
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

    if netns is not None:
        # `ip netns exec` execs dnsmasq: the Popen pid (and its new session's
        # process group) is dnsmasq's own, so stop() signals the server itself.
        args = ["ip", "netns", "exec", netns, *args]
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
    server = DnsServer(
        host=host,
        port=port,
        process=process,
        workdir=workdir,
        log_path=log_path,
        netns=netns,
        _port_reserved=reserved,
    )
    try:
        if netns is not None:
            _wait_ready_netns(server, netns, ready_timeout)
        else:
            _wait_ready(server, stdout_path, ready_timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: DnsServer, stdout_path: Path, ready_timeout: float) -> None:
    host, port, process = server.host, server.port, server.process
    deadline = time.monotonic() + ready_timeout
    for _ in range(2000):  # bounded
        rc = process.poll()
        if rc is not None:
            raise RuntimeError(
                f"dnsmasq exited early with code {rc}: "
                f"{stdout_path.read_text(errors='replace')[-2000:]}\n{server.log_text()[-2000:]}"
            )
        if _query_ok(host, port, timeout=0.2):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"dnsmasq not answering on {host}:{port} after {ready_timeout:.1f} s\n"
                f"{server.log_text()[-2000:]}"
            )
        time.sleep(0.02)
    raise RuntimeError("dnsmasq readiness loop exhausted")
