"""A three-namespace network lab: client — NAT — server.

::

    client ns ({tag}c)          nat ns ({tag}n)                 server ns ({tag}s)
    eth0 192.0.2.2/24 ── veth ── in0 192.0.2.1/24
                                 out0 203.0.113.1/24 ── veth ── eth0 203.0.113.2/24
                                                                     203.0.113.3/24

Only documentation prefixes are used, and the veths are created directly inside
the lab namespaces, so nothing of the lab ever appears in the root namespace and
no namespace has a route out (the client knows 203.0.113.0/24 via the NAT, the
server knows 192.0.2.0/24 via the NAT, and that is all).  IPv6 is switched off
on the veths (the lab is IPv4 only); ``lo`` is up everywhere.

The NAT namespace's iptables (never the root namespace's) give the behaviours of
:data:`NAT_MODES`; :meth:`Lab.add_loss` drops a random share of forwarded
packets.  Everything is torn down on exit, also on exceptions and Ctrl-C, and
:func:`cleanup_stale` removes namespaces left by a crashed earlier run.

Use it as a context manager (:func:`nat_lab`) or, in pytest, through the
``lab_factory`` fixture (this module is registered as a pytest plugin in
tests/conftest.py).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest

__all__ = [
    "NAT_MODES",
    "Lab",
    "LabError",
    "cleanup_stale",
    "lab_factory",
    "nat_lab",
    "new_tag",
    "require_lab",
]

NAT_MODES = ("none", "masquerade", "symmetric", "block-udp", "reject-udp")

TAG_PREFIX = "tc"
# Interface names are per namespace, so fixed short names can't collide
# between labs (and stay far below the 15-character limit).
CLIENT_IF = "eth0"
NAT_INSIDE_IF = "in0"
NAT_OUTSIDE_IF = "out0"
SERVER_IF = "eth0"

LAB_PREFIXES = ("192.0.2.0/24", "203.0.113.0/24")
SETUP_TIMEOUT = 10.0  # per `ip`/`iptables` command
STOP_TIMEOUT = 3.0  # per process at teardown

_counter = itertools.count()
_counter_lock = threading.Lock()
_active_tags: set[str] = set()  # labs of this process that are set up right now


class LabError(RuntimeError):
    """A lab command failed (its stderr is in the message)."""


def _letters(n: int) -> str:
    """0 → 'a', 25 → 'z', 26 → 'ba', ... (letters only, so the pid part of a
    tag stays unambiguous)."""
    out = ""
    while True:
        out = chr(ord("a") + n % 26) + out
        n //= 26
        if n == 0:
            return out


def new_tag(prefix: str = TAG_PREFIX) -> str:
    """A tag unique to this process and call: ``<prefix><pid><letters>``, e.g.
    ``tc1234a``.  Skips tags whose namespaces already exist."""
    existing = set(_list_netns())
    for _ in range(1000):  # bounded
        with _counter_lock:
            n = next(_counter)
        tag = f"{prefix}{os.getpid()}{_letters(n)}"
        if not any(f"{tag}{role}" in existing for role in "cns"):
            return tag
    raise LabError("could not find a free lab tag")  # pragma: no cover


def _cmd(
    argv: Sequence[str], *, timeout: float = SETUP_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _checked(argv: Sequence[str], *, timeout: float = SETUP_TIMEOUT) -> str:
    proc = _cmd(argv, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} failed with code {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


def _list_netns() -> list[str]:
    try:
        out = _cmd(["ip", "netns", "list"]).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    # lines look like "tc123ac (id: 3)" or just "tc123ac"
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(ns: str) -> list[int]:
    try:
        out = _cmd(["ip", "netns", "pids", ns]).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(p) for p in out.split() if p.isdigit()]


def _delete_netns(ns: str) -> None:
    """SIGKILL whatever still runs in *ns* (only processes the lab started can
    be in there), then delete it.  Errors are ignored: teardown must go on."""
    for pid in _netns_pids(ns):
        if pid == os.getpid():  # pragma: no cover - never enter a lab ns ourselves
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        _cmd(["ip", "netns", "del", ns])
    except (OSError, subprocess.TimeoutExpired):
        pass


def cleanup_stale(prefix: str = TAG_PREFIX) -> list[str]:
    """Delete lab namespaces ``<prefix><pid><letters><role>`` whose pid is not
    a running process (a crashed or killed earlier run), and ones carrying our
    own pid that no live lab of this process owns (pid reuse).  Namespaces of
    other running test processes are left alone.  Returns the deleted names."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)([a-z]+)([cns])$")
    deleted = []
    for ns in _list_netns():
        m = pattern.match(ns)
        if not m:
            continue
        pid = int(m.group(1))
        tag = f"{prefix}{m.group(1)}{m.group(2)}"
        # our own pid: stale unless a live lab of ours owns it (pid reuse)
        stale = tag not in _active_tags if pid == os.getpid() else not _pid_alive(pid)
        if stale:
            _delete_netns(ns)
            deleted.append(ns)
    return deleted


def require_lab() -> None:
    """Skip (or fail under TURNCHECK_REQUIRE_LAB=1) unless we can build a lab:
    root, and ``ip``, ``iptables`` and ``sysctl`` on PATH."""
    from tests.servers.fixtures import lab_unavailable

    if os.geteuid() != 0:
        lab_unavailable(f"the netns lab needs root (running as uid {os.geteuid()})")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("sysctl", "procps")):
        if shutil.which(tool) is None:
            lab_unavailable(f"the netns lab needs '{tool}' on PATH (apt-get install {package})")


@dataclass
class Lab:
    tag: str
    client_ns: str
    nat_ns: str
    server_ns: str
    client_ip: str = "192.0.2.2"
    nat_inside_ip: str = "192.0.2.1"
    nat_outside_ip: str = "203.0.113.1"
    server_ips: tuple[str, str] = ("203.0.113.2", "203.0.113.3")
    client_if: str = CLIENT_IF
    nat_inside_if: str = NAT_INSIDE_IF
    nat_outside_if: str = NAT_OUTSIDE_IF
    server_if: str = SERVER_IF
    mode: str = "none"  # as last set by set_nat
    loss_rules: list[tuple[str, ...]] = field(default_factory=list)
    _processes: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def for_tag(cls, tag: str) -> Lab:
        return cls(tag=tag, client_ns=f"{tag}c", nat_ns=f"{tag}n", server_ns=f"{tag}s")

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.client_ns, self.nat_ns, self.server_ns)

    def _check_ns(self, ns: str) -> None:
        if ns not in self.namespaces:
            raise ValueError(f"{ns!r} is not one of this lab's namespaces {self.namespaces}")

    # -- running things inside the namespaces ---------------------------------

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``ip netns exec <ns> argv...``: text, captured, killed after
        *timeout* (subprocess.TimeoutExpired).  check=True raises LabError with
        stderr on a non-zero exit."""
        self._check_ns(ns)
        full = ["ip", "netns", "exec", ns, *argv]
        proc = subprocess.run(
            full,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{' '.join(full)} failed with code {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def popen(self, ns: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start ``ip netns exec <ns> argv...`` (``ip`` execs argv, so the
        Popen's pid is the program's).  Stopped at teardown."""
        self._check_ns(ns)
        if self._closed:
            raise LabError(f"lab {self.tag} is already torn down")
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self._processes.append(proc)
        return proc

    def iptables(self, ns: str, *args: str) -> None:
        """``ip netns exec <ns> iptables args...`` — lab namespaces only."""
        self._check_ns(ns)
        self.run(ns, ["iptables", *args], timeout=SETUP_TIMEOUT, check=True)

    # -- NAT, firewall, loss ----------------------------------------------------

    def set_nat(self, mode: str) -> None:
        """Flush the NAT namespace's nat and filter tables (this also removes
        loss rules), then apply *mode* (one of :data:`NAT_MODES`).

        Existing conntrack entries survive (there is no ``conntrack`` tool
        here): flows started before a mode change keep their old mapping until
        they time out, so change modes before sending traffic."""
        if mode not in NAT_MODES:
            raise ValueError(f"unknown NAT mode {mode!r}; expected one of {NAT_MODES}")
        ns = self.nat_ns
        for table in ("nat", "filter"):
            self.iptables(ns, "-t", table, "-F")
            self.iptables(ns, "-t", table, "-X")
        for chain in ("INPUT", "FORWARD", "OUTPUT"):
            self.iptables(ns, "-P", chain, "ACCEPT")
        self.loss_rules.clear()
        masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", self.nat_outside_if, "-j"]
        masquerade.append("MASQUERADE")
        if mode == "masquerade" or mode in ("block-udp", "reject-udp"):
            self.iptables(ns, *masquerade)
        elif mode == "symmetric":
            self.iptables(ns, *masquerade, "--random-fully")
        if mode == "block-udp":
            self.iptables(ns, "-A", "FORWARD", "-p", "udp", "-j", "DROP")
        elif mode == "reject-udp":
            self.iptables(ns, "-A", "FORWARD", "-p", "udp", "-j", "REJECT")
        self.mode = mode

    def add_loss(self, probability: float, *, protocol: str = "udp") -> None:
        """Drop a random share *probability* of forwarded *protocol* packets
        (both directions) in the NAT namespace.  Inserted first in FORWARD.
        Several calls add up (independent drops)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], not {probability}")
        rule = (
            "FORWARD",
            "-p",
            protocol,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{probability:.6f}",
            "-j",
            "DROP",
        )
        self.iptables(self.nat_ns, "-I", rule[0], "1", *rule[1:])
        self.loss_rules.append(rule)

    def clear_loss(self) -> None:
        """Remove every rule added by :meth:`add_loss`."""
        while self.loss_rules:
            rule = self.loss_rules.pop()
            self.iptables(self.nat_ns, "-D", *rule)

    # -- life cycle -------------------------------------------------------------

    def setup(self, mode: str = "none") -> None:
        if mode not in NAT_MODES:
            raise ValueError(f"unknown NAT mode {mode!r}; expected one of {NAT_MODES}")
        c, n, s = self.namespaces
        _active_tags.add(self.tag)
        for ns in self.namespaces:
            _checked(["ip", "netns", "add", ns])
        # veths are created inside the nat namespace with their peer placed
        # straight into the other namespace: they never exist in the root one.
        for inside, peer, peer_ns in (
            (self.nat_inside_if, self.client_if, c),
            (self.nat_outside_if, self.server_if, s),
        ):
            veth = ["link", "add", inside, "type", "veth", "peer", "name", peer, "netns", peer_ns]
            _checked(["ip", "-n", n, *veth])
        links = ((c, self.client_if), (n, self.nat_inside_if), (n, self.nat_outside_if))
        for ns, ifname in (*links, (s, self.server_if)):
            # IPv4-only lab: no link-local IPv6 addresses, no router solicitations.
            no_v6 = f"net.ipv6.conf.{ifname}.disable_ipv6=1"
            _checked(["ip", "netns", "exec", ns, "sysctl", "-qw", no_v6])
        _checked(["ip", "-n", c, "addr", "add", f"{self.client_ip}/24", "dev", self.client_if])
        _checked(
            ["ip", "-n", n, "addr", "add", f"{self.nat_inside_ip}/24", "dev", self.nat_inside_if]
        )
        _checked(
            ["ip", "-n", n, "addr", "add", f"{self.nat_outside_ip}/24", "dev", self.nat_outside_if]
        )
        for ip in self.server_ips:
            _checked(["ip", "-n", s, "addr", "add", f"{ip}/24", "dev", self.server_if])
        for ns, ifname in (*links, (s, self.server_if), (c, "lo"), (n, "lo"), (s, "lo")):
            _checked(["ip", "-n", ns, "link", "set", ifname, "up"])
        _checked(["ip", "-n", c, "route", "add", "203.0.113.0/24", "via", self.nat_inside_ip])
        # With MASQUERADE the server answers the on-link 203.0.113.1 anyway; the
        # route matters for mode "none", where it sees the client's real address.
        _checked(["ip", "-n", s, "route", "add", "192.0.2.0/24", "via", self.nat_outside_ip])
        _checked(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.set_nat(mode)

    def stop_processes(self) -> None:
        """SIGTERM every process started with :meth:`popen`, wait a little,
        then SIGKILL.  Bounded."""
        procs, self._processes = self._processes, []
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.terminate()
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass

    def teardown(self) -> None:
        """Stop our processes, kill anything else left in the namespaces and
        delete them (which deletes the veths).  Idempotent; never raises for
        a half-built lab."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_processes()
        finally:
            for ns in self.namespaces:
                _delete_netns(ns)
            _active_tags.discard(self.tag)

    def exists(self) -> dict[str, bool]:
        """Which of the lab's namespaces currently exist."""
        present = set(_list_netns())
        return {ns: ns in present for ns in self.namespaces}


@contextmanager
def nat_lab(mode: str = "none") -> Iterator[Lab]:
    """Build a lab with NAT *mode*, yield it, and always tear it down."""
    if mode not in NAT_MODES:
        raise ValueError(f"unknown NAT mode {mode!r}; expected one of {NAT_MODES}")
    cleanup_stale()
    lab = Lab.for_tag(new_tag())
    try:
        lab.setup(mode)
        yield lab
    finally:
        lab.teardown()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """``make(mode="none") -> Lab``: build netns labs; all are torn down at
    teardown.  Skips (fails under TURNCHECK_REQUIRE_LAB=1) without root/tools."""
    require_lab()
    with ExitStack() as stack:

        def make(mode: str = "none") -> Lab:
            return stack.enter_context(nat_lab(mode))

        yield make
