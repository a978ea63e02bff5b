"""Run pion/turn's example TURN servers for tests.

The servers are the ``examples/turn-server/{simple,tcp,tls,perm-filter}`` programs of
Debian's ``golang-github-pion-turn.v2-dev`` (pion/turn v2.1.0), built offline with
Debian's ``golang-go`` in GOPATH mode (``GOPATH=/usr/share/gocode GO111MODULE=off
GOPROXY=off``; nothing is ever downloaded) -- once per test session, see
:func:`build_pion`.

Loopback only: every example binds ``0.0.0.0`` unconditionally, both its listener
(``net.ListenPacket("udp4", "0.0.0.0:"+port)``, ``net.Listen("tcp4", ...)``,
``tls.Listen("tcp4", ...)``) and its relay sockets
(``RelayAddressGeneratorStatic{Address: "0.0.0.0"}``); there is no flag for it.  So
:func:`build_pion` builds a copy of each example's ``main.go`` in which exactly those two
string literals read ``127.0.0.1`` instead (checked: two per file; any other count fails
the build with a clear error) and changes nothing else.  The source under
/usr/share/gocode is only read.

Behaviour of these servers (pion/turn v2.1.0, checked on this machine):

* No SOFTWARE attribute in any answer (only the add-software-attribute example adds one).
* A wrong password or an unknown user gets **400 without MESSAGE-INTEGRITY**, REALM or
  NONCE, with an empty reason phrase -- never 401.
* The TLS server never sends a TLS close_notify: not when the client sends one (it does
  not even close the TCP connection, which stays in CLOSE-WAIT until the process exits),
  not when it stops.
* Nothing answers 403: pion/turn v2.1.0 has no allocation policy at all.  The
  perm-filter example (kind ``"perm-filter"``, UDP) refuses peers other than the client's
  own IP: CreatePermission gets an error response with **no ERROR-CODE** (only
  MESSAGE-INTEGRITY), ChannelBind gets 401 (no REALM/NONCE/MESSAGE-INTEGRITY).
* Relay sockets get kernel-chosen (ephemeral) ports; there is no relay port range.
* The examples' ``-users`` flag is parsed with the regexp ``(\\w+)=(\\w+)``: a user name or
  password with anything but ASCII letters, digits and ``_`` is silently cut, so
  :func:`running_pion` refuses such credentials.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .coturn import _tcp_connect_ok, stun_binding_ok
from .ports import free_port_block, release_ports, stop_server

if TYPE_CHECKING:  # pragma: no cover
    import trustme

__all__ = [
    "KINDS",
    "PION_SOURCE",
    "PionBinaries",
    "PionServer",
    "build_pion",
    "running_pion",
]

GO = "go"
PION_SOURCE = Path("/usr/share/gocode/src/github.com/pion/turn/v2")
GOPATH = "/usr/share/gocode"
# kind -> (example directory under examples/turn-server, transport it listens on)
KINDS: dict[str, tuple[str, str]] = {
    "udp": ("simple", "udp"),
    "tcp": ("tcp", "tcp"),
    "tls": ("tls", "tls"),
    "perm-filter": ("perm-filter", "udp"),
}
BUILD_TIMEOUT = 300.0  # s per example (a cold build takes ~1 s here)
STOP_TIMEOUT = 5.0
_WILDCARD = '"0.0.0.0'
_LOOPBACK = '"127.0.0.1'
_WILDCARD_COUNT = 2  # the listener and the relay address generator
_GO_WORD = re.compile(r"\w+", re.ASCII)  # Go's \w: [0-9A-Za-z_]


@dataclass
class PionBinaries:
    """The examples built by :func:`build_pion`: kind -> executable."""

    paths: dict[str, Path]
    build_seconds: float  # wall time of the whole build
    go_version: str
    workdir: Path

    def __getitem__(self, kind: str) -> Path:
        return self.paths[kind]


@dataclass
class PionServer:
    kind: str  # "udp", "tcp", "tls" or "perm-filter"
    transport: str  # "udp", "tcp" or "tls"
    host: str  # always 127.0.0.1
    port: int
    realm: str
    users: dict[str, str]
    workdir: Path
    log_path: Path
    process: subprocess.Popen  # type: ignore[type-arg]
    binary: Path
    cert: Path | None = None  # TLS certificate chain PEM (kind "tls")
    key: Path | None = None  # its private key PEM
    startup_seconds: float = 0.0  # from Popen to readiness
    _port_block: tuple[int, int] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The ICE server URL of this server (``turn:`` or ``turns:``)."""
        if self.transport == "tls":
            # A host name, as browsers need for TLS (Firefox drops turns: with an IP).
            return f"turns:localhost:{self.port}?transport=tcp"
        return f"turn:{self.host}:{self.port}?transport={self.transport}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self) -> None:
        """SIGTERM (the examples close the server on it), wait, then SIGKILL.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        blocks = [self._port_block] if self._port_block is not None else []
        self._port_block = None
        stop_server(self.process, blocks, STOP_TIMEOUT)


def _go_env(build_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GOPATH=GOPATH,
        GO111MODULE="off",
        GOPROXY="off",
        GOFLAGS="",
        GOTOOLCHAIN="local",
        GOENV="off",
        GOCACHE=str(build_dir / "gocache"),
        GOTMPDIR=str(build_dir / "gotmp"),
        CGO_ENABLED="0",
        HOME=str(build_dir),
    )
    return env


def _run_go(args: list[str], *, cwd: Path, env: dict[str, str], what: str) -> str:
    try:
        r = subprocess.run(
            [GO, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what}: go {' '.join(args)} took over {BUILD_TIMEOUT:.0f} s") from exc
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what}: go {' '.join(args)} failed ({r.returncode}):\n{tail}")
    return r.stdout.strip()


def build_pion(build_dir: Path, kinds: tuple[str, ...] = tuple(KINDS)) -> PionBinaries:
    """Build the pion example servers of *kinds* into *build_dir*/bin (offline, GOPATH
    mode, GOCACHE in *build_dir*), each from a copy of its main.go bound to 127.0.0.1.
    Raises RuntimeError (with go's output) if anything fails."""
    build_dir = Path(build_dir)
    (build_dir / "gotmp").mkdir(parents=True, exist_ok=True)
    (build_dir / "bin").mkdir(exist_ok=True)
    env = _go_env(build_dir)
    started = time.monotonic()
    version = _run_go(["version"], cwd=build_dir, env=env, what="go version")
    paths: dict[str, Path] = {}
    for kind in kinds:
        example = KINDS[kind][0]
        src = PION_SOURCE / "examples" / "turn-server" / example / "main.go"
        text = src.read_text()
        count = text.count(_WILDCARD)
        if count != _WILDCARD_COUNT:
            raise RuntimeError(
                f'{src}: expected {_WILDCARD_COUNT} {_WILDCARD}..." literals (listener and '
                f"relay address) to bind to 127.0.0.1 instead, found {count}; the example "
                "changed -- check what it binds before using it"
            )
        copy_dir = build_dir / "src" / example
        copy_dir.mkdir(parents=True, exist_ok=True)
        (copy_dir / "main.go").write_text(text.replace(_WILDCARD, _LOOPBACK))
        out = build_dir / "bin" / f"pion-{example}"
        _run_go(["build", "-o", str(out), "."], cwd=copy_dir, env=env, what=f"pion {example}")
        paths[kind] = out
    return PionBinaries(
        paths=paths,
        build_seconds=time.monotonic() - started,
        go_version=version,
        workdir=build_dir,
    )


def pion_missing() -> str | None:
    """Why pion servers can't be built here (None: they can)."""
    if shutil.which(GO) is None:
        return "'go' not found on PATH (apt-get install golang-go)"
    if not (PION_SOURCE / "examples" / "turn-server" / "simple" / "main.go").is_file():
        return f"pion/turn source not found at {PION_SOURCE} (apt-get install golang-github-pion-turn.v2-dev)"
    return None


def _check_credentials(users: Mapping[str, str]) -> str:
    if not users:
        raise ValueError("pion examples need at least one user")
    for user, password in users.items():
        for what, value in (("user name", user), ("password", password)):
            if not _GO_WORD.fullmatch(value):
                raise ValueError(
                    f"{what} {value!r}: the pion examples parse -users with (\\w+)=(\\w+), "
                    "so only ASCII letters, digits and _ survive"
                )
    return ",".join(f"{u}={p}" for u, p in users.items())


@contextmanager
def running_pion(
    workdir: Path,
    kind: str = "udp",
    *,
    binaries: PionBinaries,
    users: Mapping[str, str] | None = None,
    realm: str = "turncheck.test",
    ca: trustme.CA | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    cert_hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    debug: bool = False,
    ready_timeout: float = 10.0,
) -> Iterator[PionServer]:
    """Start pion example *kind* on 127.0.0.1:<free port>, wait until it answers (UDP: a
    STUN Binding; TCP/TLS: a TCP connect), yield a :class:`PionServer`, always stop it.

    TLS (kind "tls") needs *cert* and *key* (PEM paths) or a trustme *ca* to issue a leaf
    for *cert_hostnames*.  *debug*: log every packet (PION_LOG_DEBUG=all) instead of
    info level; the log is ``<workdir>/pion-<kind>.log``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    if kind not in binaries.paths:
        raise ValueError(f"pion kind {kind!r} was not built")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    users = {"alice": "s3cret"} if users is None else dict(users)
    users_flag = _check_credentials(users)
    transport = KINDS[kind][1]

    argv = [str(binaries[kind])]
    if transport == "tls":
        if cert is None or key is None:
            if ca is None:
                raise ValueError("kind 'tls' needs cert= and key= paths or a trustme ca=")
            leaf = ca.issue_cert(*cert_hostnames)
            cert, key = workdir / "pion_cert.pem", workdir / "pion_key.pem"
            with cert.open("wb") as f:
                for pem in leaf.cert_chain_pems:
                    f.write(pem.bytes())
            leaf.private_key_pem.write_to_path(str(key))
        argv += ["-cert", str(cert), "-key", str(key)]

    host = "127.0.0.1"
    port = free_port_block(1, host=host)
    log_path = workdir / f"pion-{kind}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PION_LOG_", "PIONS_LOG_"))}
    env["PION_LOG_DEBUG" if debug else "PION_LOG_INFO"] = "all"
    argv += ["-public-ip", host, "-port", str(port), "-users", users_flag, "-realm", realm]
    started = time.monotonic()
    try:
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
    except BaseException:
        release_ports(port, 1)
        raise
    server = PionServer(
        kind=kind,
        transport=transport,
        host=host,
        port=port,
        realm=realm,
        users=users,
        workdir=workdir,
        log_path=log_path,
        process=process,
        binary=binaries[kind],
        cert=cert,
        key=key,
        _port_block=(port, 1),
    )
    try:
        _wait_ready(server, ready_timeout, started)
        server.startup_seconds = time.monotonic() - started
        yield server
    finally:
        server.stop()


def _wait_ready(server: PionServer, timeout: float, started: float) -> None:
    deadline = started + timeout
    for _ in range(5000):  # bounded count as well as time
        rc = server.process.poll()
        if rc is not None:
            raise RuntimeError(
                f"pion {server.kind} exited early with code {rc}; last log lines:\n"
                f"{server.log_tail(40)}"
            )
        if server.transport == "udp":
            ok = stun_binding_ok(server.host, server.port, timeout=0.2)
        else:
            ok = _tcp_connect_ok(server.host, server.port, timeout=0.2)
        if ok:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    raise RuntimeError(
        f"pion {server.kind} not ready on {server.host}:{server.port} after {timeout:.1f} s; "
        f"last log lines:\n{server.log_tail(40)}"
    )
