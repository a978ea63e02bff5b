"""Run a private ejabberd (Debian's 23.01) as a STUN/TURN server for tests.

ejabberd's ``ejabberd_stun`` listener is ProcessOne's p1_stun (1.2.7 here), the engine
of eturnal.  The config has nothing but three ``ejabberd_stun`` listeners -- UDP and
TCP on one port, TLS (``transport: tcp``, ``tls: true``) on the next -- each with
``use_turn: true`` and ``auth_type: user``, ``modules: {}``, one host (the realm), and
the users in ejabberd's internal (mnesia) database with plain passwords (p1_stun needs
the plain password for long-term credentials).

Everything is private and on 127.0.0.1: its own config, spool (mnesia), log and HOME
directories in the work directory, a unique Erlang node name, a random cookie.  The
Erlang distribution listens on 127.0.0.1:<free port> and **no epmd is used or started**
(``-erl_epmd_port PORT -start_epmd false``, what ejabberdctl does when
``ERL_DIST_PORT`` is set); ERL_EPMD_ADDRESS=127.0.0.1 is set all the same.

It is started as the ``erl`` command ``ejabberdctl foreground`` runs (the same
arguments and environment), not through ejabberdctl: as root, ejabberdctl wraps erl in
``su ejabberd`` and a shell, while ``/usr/bin/erl`` execs erlexec which execs
``beam.smp``, so the PID we start is the server's own and SIGTERM stops it cleanly
(about 1 s).  Users are registered with ``ejabberdctl register`` against that node,
through a private ejabberdctl.cfg that also makes ejabberdctl run its ctl node as the
current user instead of ``su ejabberd`` (which could not read the 0700 work directory).
ejabberdctl itself only runs for root or the ejabberd user.

Behaviour (checked on this machine):

* SOFTWARE is ``P1 STUN library`` in every answer (p1_stun's default; ejabberd 23.01's
  documented ``server_name`` default "ejabberd" does not reach p1_stun).
* A wrong password or an unknown user gets **401 Unauthorized** with REALM and NONCE
  (the same nonce again), without MESSAGE-INTEGRITY -- like the first unauthenticated
  request.
* ``turn_blacklist`` is checked against the *client's* address at Allocate: a client on
  127.0.0.1 gets **403 Forbidden** (signed, SOFTWARE as above) with a blacklist of
  ``127.0.0.1/8``; a blacklisted peer gets 403 at CreatePermission.  ejabberd 23.01
  documents a default blacklist of 127.0.0.0/8 and ::1/128, but like server_name the
  listener defaults never reach p1_stun: without the option a loopback client may
  allocate.  This module writes ``turn_blacklist: []`` unless told otherwise.
* ``turn_max_allocations`` is accepted but not enforced: p1_stun 1.2.7's
  ``turn_sm:add_allocation/5`` ignores the limit, so there is never a 486 (checked:
  two allocations of one user with ``turn_max_allocations: 1`` both succeed).
* No RFC 5780: a Binding answer has no OTHER-ADDRESS / RESPONSE-ORIGIN, and a
  CHANGE-REQUEST gets **420 Unknown Attribute**.
* Data indications carry an all-zero transaction ID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .coturn import RELAY_RANGE_SIZE, _tcp_connect_ok, stun_binding_ok
from .ports import free_port_block, release_ports, stop_server

if TYPE_CHECKING:  # pragma: no cover
    import trustme

__all__ = ["EJABBERDCTL", "Ejabberd", "ejabberd_missing", "running_ejabberd"]

EJABBERDCTL = "ejabberdctl"
EJABBERDCTL_PATH = Path("/usr/sbin/ejabberdctl")
STOP_TIMEOUT = 10.0
CTL_TIMEOUT = 60.0  # s for one ejabberdctl command (an Erlang VM start each)
_ERL_LIBS = re.compile(r"^ERL_LIBS='([^']+)'", re.M)
_ERL = re.compile(r'^ERL="([^"]+)"', re.M)


@dataclass
class Ejabberd:
    port: int  # UDP and TCP (ejabberd_stun on both)
    tls_port: int  # TLS (ejabberd_stun, tls: true)
    host: str  # always 127.0.0.1
    realm: str  # auth_realm and the only ejabberd host
    users: dict[str, str]
    workdir: Path
    log_path: Path  # ejabberd.log
    process: subprocess.Popen  # type: ignore[type-arg]
    min_port: int  # turn_min_port..turn_max_port, unique per server
    max_port: int
    node: str  # Erlang node name, e.g. turncheck1234x20000@localhost
    dist_port: int  # Erlang distribution port on 127.0.0.1 (no epmd)
    config_path: Path
    ctl_config_path: Path
    stdout_path: Path
    cert: Path | None  # PEM (chain + key) of the TLS listener
    turn_blacklist: tuple[str, ...] | None = ()  # None: ejabberd's default
    turn_max_allocations: int | None = None  # None: not in the config (never enforced)
    startup_seconds: float = 0.0  # from Popen to all three listeners answering
    register_seconds: float = 0.0  # ejabberdctl register of all users
    _port_blocks: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def udp_port(self) -> int:
        return self.port

    @property
    def tcp_port(self) -> int:
        return self.port

    def url(self, transport: str) -> str:
        """ICE server URL for "udp", "tcp" or "tls"."""
        if transport == "tls":
            # A host name, as browsers need for TLS (Firefox drops turns: with an IP).
            return f"turns:localhost:{self.tls_port}?transport=tcp"
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        text = self.log_text()
        if not text.strip():
            try:
                text = self.stdout_path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
        return "\n".join(text.splitlines()[-n:])

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``ejabberdctl <args>`` against this node (its own ejabberdctl.cfg)."""
        argv = [
            EJABBERDCTL,
            "--ctl-config",
            str(self.ctl_config_path),
            "--config-dir",
            str(self.config_path.parent),
            *args,
        ]
        env = dict(os.environ, HOME=str(self.workdir / "home"))
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.workdir,
        )

    def register(self, user: str, password: str) -> None:
        r = self.ctl("register", user, self.realm, password)
        if r.returncode != 0:
            raise RuntimeError(
                f"ejabberdctl register {user} {self.realm} failed ({r.returncode}): "
                f"{(r.stdout + r.stderr).strip()}\nlast log lines:\n{self.log_tail(20)}"
            )
        self.users[user] = password

    def stop(self) -> None:
        """SIGTERM (beam stops ejabberd cleanly), wait up to 10 s, then SIGKILL.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        stop_server(self.process, self._port_blocks, STOP_TIMEOUT)


def ejabberd_missing() -> str | None:
    """Why ejabberd can't run here (None: it can)."""
    if shutil.which(EJABBERDCTL) is None and not EJABBERDCTL_PATH.is_file():
        return "'ejabberdctl' not found (apt-get install ejabberd)"
    if os.geteuid() != 0:
        return (
            f"ejabberdctl runs only for root or the ejabberd user (running as uid {os.geteuid()})"
        )
    return None


def _from_ejabberdctl() -> tuple[str, str]:
    """(erl, ERL_LIBS) exactly as /usr/sbin/ejabberdctl has them."""
    path = Path(shutil.which(EJABBERDCTL) or EJABBERDCTL_PATH)
    text = path.read_text(errors="replace")
    erl = _ERL.search(text)
    libs = _ERL_LIBS.search(text)
    if erl is None or libs is None:
        raise RuntimeError(f"{path}: no ERL=\"...\" or ERL_LIBS='...' line; ejabberdctl changed")
    return erl.group(1), libs.group(1)


def _q(value: object) -> str:
    """A YAML scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value)


def _write_config(
    path: Path,
    *,
    host: str,
    port: int,
    tls_port: int,
    min_port: int,
    max_port: int,
    realm: str,
    cert: Path,
    turn_blacklist: Sequence[str] | None,
    turn_max_allocations: int | None,
    loglevel: str,
) -> None:
    turn = [
        "    module: ejabberd_stun",
        "    use_turn: true",
        f"    turn_ipv4_address: {_q(host)}",
        f"    turn_min_port: {min_port}",
        f"    turn_max_port: {max_port}",
        "    auth_type: user",
        f"    auth_realm: {_q(realm)}",
    ]
    if turn_blacklist is not None:
        turn.append(f"    turn_blacklist: [{', '.join(_q(c) for c in turn_blacklist)}]")
    if turn_max_allocations is not None:
        turn.append(f"    turn_max_allocations: {int(turn_max_allocations)}")
    lines = [
        "# written by tests/servers/ejabberd.py",
        f"hosts: [{_q(realm)}]",
        f"loglevel: {loglevel}",
        "log_rotate_count: 0",
        "auth_method: internal",
        "auth_password_format: plain",
        "acme:",
        "  auto: false",
        "modules: {}",
        "listen:",
        f"  - port: {port}",
        f"    ip: {_q(host)}",
        "    transport: udp",
        *turn,
        f"  - port: {port}",
        f"    ip: {_q(host)}",
        "    transport: tcp",
        *turn,
        f"  - port: {tls_port}",
        f"    ip: {_q(host)}",
        "    transport: tcp",
        "    tls: true",
        f"    certfile: {_q(str(cert))}",
        *turn,
    ]
    path.write_text("\n".join(lines) + "\n")


@contextmanager
def running_ejabberd(
    workdir: Path,
    *,
    ca: trustme.CA | None = None,
    users: Mapping[str, str] | None = None,
    realm: str = "turncheck.test",
    turn_blacklist: Sequence[str] | None = (),
    turn_max_allocations: int | None = None,
    cert_hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    cert_pem: tuple[bytes, bytes] | None = None,
    relay_range: int = RELAY_RANGE_SIZE,
    loglevel: str = "info",
    ready_timeout: float = 60.0,
) -> Iterator[Ejabberd]:
    """Start ejabberd with only ejabberd_stun listeners on 127.0.0.1, register *users*,
    yield an :class:`Ejabberd`, and always stop it afterwards.

    Ports: a block of 3 -- ``port`` (UDP and TCP), ``tls_port = port + 1``, the Erlang
    distribution port ``port + 2`` -- plus *relay_range* relay ports.
    *turn_blacklist*: CIDRs refused (client at Allocate, peers at CreatePermission);
    default none; None leaves the option out.  *turn_max_allocations*: written to the
    config if not None (p1_stun 1.2.7 does not enforce it).  TLS: a leaf from the trustme *ca*, or
    *cert_pem* (certificate chain PEM, key PEM).
    """
    workdir = Path(workdir)
    users = {"alice": "s3cret"} if users is None else dict(users)
    if ca is None and cert_pem is None:
        raise ValueError("running_ejabberd needs a trustme CA (ca=...) or cert_pem for TLS")
    erl, erl_libs = _from_ejabberdctl()
    confdir, spool, logdir, home = (workdir / d for d in ("conf", "spool", "log", "home"))
    for d in (confdir, spool, logdir, home):
        d.mkdir(parents=True, exist_ok=True)

    # One PEM with chain and key, as ejabberd's certfile wants it.
    cert = confdir / "turn_tls.pem"
    if cert_pem is None:
        assert ca is not None
        leaf = ca.issue_cert(*cert_hostnames)
        chain = b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
        cert_pem = (chain, leaf.private_key_pem.bytes())
    cert.write_bytes(cert_pem[0] + cert_pem[1])
    cert.chmod(0o600)

    host = "127.0.0.1"
    blocks: list[tuple[int, int]] = []
    port = free_port_block(3, host=host)
    blocks.append((port, 3))
    try:
        min_port = free_port_block(relay_range, host=host)
    except BaseException:
        release_ports(port, 3)
        raise
    blocks.append((min_port, relay_range))
    max_port = min_port + relay_range - 1
    tls_port, dist_port = port + 1, port + 2

    config_path = confdir / "ejabberd.yml"
    _write_config(
        config_path,
        host=host,
        port=port,
        tls_port=tls_port,
        min_port=min_port,
        max_port=max_port,
        realm=realm,
        cert=cert,
        turn_blacklist=turn_blacklist,
        turn_max_allocations=turn_max_allocations,
        loglevel=loglevel,
    )
    # Name resolution of the node's host part "localhost" only, from this file: never DNS.
    (confdir / "inetrc").write_text('{lookup, [file]}.\n{host, {127,0,0,1}, ["localhost"]}.\n')
    node = f"turncheck{os.getpid()}x{port}@localhost"
    cookie = secrets.token_hex(16)
    log_path = logdir / "ejabberd.log"
    ctl_config_path = confdir / "ejabberdctl.cfg"
    ctl_config_path.write_text(
        "# written by tests/servers/ejabberd.py; sourced by ejabberdctl\n"
        f"ERLANG_NODE={node}\n"
        f'ERL_OPTIONS="-setcookie {cookie}"\n'
        f"ERL_DIST_PORT={dist_port}\n"
        # Run the ctl node as ourselves (root), not `su ejabberd`: the work directory is
        # ours (pytest's are mode 0700).  ejabberdctl picks EXEC_CMD before it sources
        # this file, so this overrides it.
        "EXEC_CMD=as_current_user\n"
        "ERL_EPMD_ADDRESS=127.0.0.1\n"
        f"EJABBERD_CONFIG_PATH={config_path}\n"
        f"SPOOL_DIR={spool}\n"
        f"LOGS_DIR={logdir}\n"
    )
    ctl_config_path.chmod(0o600)

    # What `ejabberdctl foreground` runs (with ERL_DIST_PORT and INET_DIST_INTERFACE set).
    argv = [
        erl,
        "-sname",
        node,
        "+K",
        "true",
        "+P",
        "250000",
        "-env",
        "ERL_CRASH_DUMP_BYTES",
        "0",
        "-setcookie",
        cookie,
        "-kernel",
        "inet_dist_use_interface",
        "{127,0,0,1}",
        "-erl_epmd_port",
        str(dist_port),
        "-start_epmd",
        "false",
        "-mnesia",
        "dir",
        f'"{spool}"',
        "-s",
        "ejabberd",
        "-noinput",
    ]
    env = dict(
        os.environ,
        HOME=str(home),
        EJABBERD_CONFIG_PATH=str(config_path),
        EJABBERD_LOG_PATH=str(log_path),
        EJABBERD_PID_PATH=str(workdir / "ejabberd.pid"),
        CONTRIB_MODULES_PATH=str(home / "ejabberd-modules"),
        ERL_CRASH_DUMP=str(logdir / "erl_crash.dump"),
        ERL_EPMD_ADDRESS="127.0.0.1",
        ERL_INETRC=str(confdir / "inetrc"),
        ERL_MAX_PORTS="32000",
        ERL_MAX_ETS_TABLES="1400",
        ERL_LIBS=erl_libs,
    )
    for name in ("ERL_DIST_PORT", "ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS"):
        env.pop(name, None)
    stdout_path = workdir / "ejabberd.stdout"
    started = time.monotonic()
    try:
        with stdout_path.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=spool,
                env=env,
            )
    except BaseException:
        for start, n in blocks:
            release_ports(start, n)
        raise
    server = Ejabberd(
        port=port,
        tls_port=tls_port,
        host=host,
        realm=realm,
        users={},
        workdir=workdir,
        log_path=log_path,
        process=process,
        min_port=min_port,
        max_port=max_port,
        node=node,
        dist_port=dist_port,
        config_path=config_path,
        ctl_config_path=ctl_config_path,
        stdout_path=stdout_path,
        cert=cert,
        turn_blacklist=None if turn_blacklist is None else tuple(turn_blacklist),
        turn_max_allocations=turn_max_allocations,
        _port_blocks=blocks,
    )
    try:
        _wait_ready(server, ready_timeout, started)
        server.startup_seconds = time.monotonic() - started
        t0 = time.monotonic()
        for user, password in users.items():
            server.register(user, password)
        server.register_seconds = time.monotonic() - t0
        yield server
    finally:
        server.stop()


def _wait_ready(server: Ejabberd, timeout: float, started: float) -> None:
    deadline = started + timeout
    state = {"udp": False, "tcp": False, "tls": False}
    for _ in range(20000):  # bounded count as well as time
        rc = server.process.poll()
        if rc is not None:
            raise RuntimeError(
                f"ejabberd exited early with code {rc}; last log lines:\n{server.log_tail(40)}"
            )
        if not state["udp"]:
            state["udp"] = stun_binding_ok(server.host, server.port, timeout=0.2)
        if state["udp"] and not state["tcp"]:
            state["tcp"] = _tcp_connect_ok(server.host, server.port, timeout=0.2)
        if state["tcp"] and not state["tls"]:
            state["tls"] = _tcp_connect_ok(server.host, server.tls_port, timeout=0.2)
        if all(state.values()):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    raise RuntimeError(
        f"ejabberd not ready after {timeout:.1f} s ({state}); last log lines:\n"
        f"{server.log_tail(40)}"
    )
