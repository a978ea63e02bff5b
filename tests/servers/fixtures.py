"""pytest plugin with real-server lab fixtures (coturn, dnsmasq, pion/turn, ejabberd, a TLS CA).

Load it from the top-level conftest with::

    pytest_plugins = ["tests.servers.fixtures"]

Missing tools (or not being root where needed) skip the tests that need them,
with a clear reason; with ``TURNCHECK_REQUIRE_LAB=1`` in the environment they
fail instead, so a CI lab job can't silently pass by skipping everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .coturn import Coturn, running_coturn
from .dnsmasq import DnsServer, running_dnsmasq
from .ejabberd import Ejabberd, ejabberd_missing, running_ejabberd
from .pion import PionBinaries, PionServer, build_pion, pion_missing, running_pion
from .stund import Stund, running_stund, stund_missing

__all__ = [
    "ca_file",
    "coturn",
    "coturn_factory",
    "dns_server",
    "ejabberd",
    "ejabberd_factory",
    "lab_unavailable",
    "pion_binaries",
    "pion_factory",
    "pion_servers",
    "require_root",
    "require_tool",
    "stund",
    "tls_ca",
]

REQUIRE_LAB_ENV = "TURNCHECK_REQUIRE_LAB"


def lab_required() -> bool:
    return os.environ.get(REQUIRE_LAB_ENV, "").strip() == "1"


def lab_unavailable(reason: str) -> None:
    """Skip with *reason*, or fail when TURNCHECK_REQUIRE_LAB=1.  Never returns."""
    if lab_required():
        pytest.fail(
            f"{reason} ({REQUIRE_LAB_ENV}=1, so this is a failure, not a skip)", pytrace=False
        )
    pytest.skip(reason)


def require_root(why: str = "this lab test") -> None:
    if os.geteuid() != 0:
        lab_unavailable(f"{why} needs root (running as uid {os.geteuid()})")


def require_tool(name: str, *, root: bool = False) -> str:
    """Path of executable *name*; skip (or fail under TURNCHECK_REQUIRE_LAB=1)
    if it's not on PATH, or if *root* is true and we are not root."""
    path = shutil.which(name)
    if path is None:
        lab_unavailable(
            f"'{name}' not found on PATH (apt-get install the lab tools: coturn, dnsmasq)"
        )
    if root:
        require_root(f"'{name}'")
    return path  # type: ignore[return-value]


def _require_trustme():
    try:
        import trustme
    except ImportError:  # pragma: no cover
        lab_unavailable("python package 'trustme' is not installed")
    return trustme


@pytest.fixture(scope="session")
def tls_ca():
    """A throwaway CA (trustme.CA) for the lab servers' certificates."""
    trustme = _require_trustme()
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca, tmp_path_factory) -> Path:
    """Path of the PEM file of :func:`tls_ca`'s certificate."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def coturn(tls_ca, tmp_path_factory) -> Iterator[Coturn]:
    """Shared default coturn: TLS on, 127.0.0.1 + 127.0.0.2, user alice:s3cret,
    realm turncheck.test.  Don't change its state in ways other tests would
    notice (leaked allocations count against quotas; there are none here)."""
    require_tool("turnserver")
    with running_coturn(tmp_path_factory.mktemp("coturn"), ca=tls_ca) as server:
        yield server


@pytest.fixture
def coturn_factory(tls_ca, tmp_path) -> Iterator[Callable[..., Coturn]]:
    """``make(**kwargs) -> Coturn``: start extra servers (kwargs as for
    :func:`running_coturn`; ``workdir`` optional, ``ca`` defaults to tls_ca).
    All are stopped at teardown."""
    require_tool("turnserver")
    counter = 0
    with ExitStack() as stack:

        def make(**kwargs) -> Coturn:
            nonlocal counter
            counter += 1
            workdir = kwargs.pop("workdir", None) or tmp_path / f"coturn{counter}"
            kwargs.setdefault("ca", tls_ca)
            return stack.enter_context(running_coturn(Path(workdir), **kwargs))

        yield make


@pytest.fixture
def dns_server(tmp_path) -> Iterator[Callable[..., DnsServer]]:
    """``make(srv=(), hosts=(), extra=()) -> DnsServer``: a private dnsmasq on
    127.0.0.1:<free port> answering only from the given records (unknown
    names: NXDOMAIN).  All are stopped at teardown."""
    require_tool("dnsmasq")
    counter = 0
    with ExitStack() as stack:

        def make(**kwargs) -> DnsServer:
            nonlocal counter
            counter += 1
            workdir = kwargs.pop("workdir", None) or tmp_path / f"dnsmasq{counter}"
            return stack.enter_context(running_dnsmasq(Path(workdir), **kwargs))

        yield make


# ------------------------------------------------------------------ pion/turn


@pytest.fixture(scope="session")
def pion_binaries(tmp_path_factory) -> PionBinaries:
    """pion/turn's example servers (simple, tcp, tls, perm-filter), built once per
    session from Debian's source with Debian's go, offline, bound to 127.0.0.1."""
    why = pion_missing()
    if why is not None:
        lab_unavailable(why)
    return build_pion(tmp_path_factory.mktemp("pion-build"))


@pytest.fixture(scope="session")
def pion_servers(pion_binaries, tls_ca, tmp_path_factory) -> Iterator[dict[str, PionServer]]:
    """Shared pion servers, one per kind: {"udp": ..., "tcp": ..., "tls": ...}, each on
    127.0.0.1:<its own port>, user alice:s3cret, realm turncheck.test; the TLS one has a
    leaf of tls_ca (use ca_file).  pion has no quota; delete the allocations you make."""
    with ExitStack() as stack:
        servers = {
            kind: stack.enter_context(
                running_pion(
                    tmp_path_factory.mktemp(f"pion-{kind}"),
                    kind,
                    binaries=pion_binaries,
                    ca=tls_ca,
                )
            )
            for kind in ("udp", "tcp", "tls")
        }
        yield servers


@pytest.fixture
def pion_factory(pion_binaries, tls_ca, tmp_path) -> Iterator[Callable[..., PionServer]]:
    """``make(kind="udp", **kwargs) -> PionServer``: start private pion servers (kinds
    udp, tcp, tls, perm-filter; kwargs as for :func:`running_pion`, ``ca`` defaults to
    tls_ca).  Starting one takes ~10 ms.  All are stopped at teardown."""
    counter = 0
    with ExitStack() as stack:

        def make(kind: str = "udp", **kwargs) -> PionServer:
            nonlocal counter
            counter += 1
            workdir = kwargs.pop("workdir", None) or tmp_path / f"pion{counter}"
            kwargs.setdefault("ca", tls_ca)
            return stack.enter_context(
                running_pion(Path(workdir), kind, binaries=pion_binaries, **kwargs)
            )

        yield make


# ------------------------------------------------------------------- ejabberd


def _require_ejabberd() -> None:
    why = ejabberd_missing()
    if why is not None:
        lab_unavailable(why)


@pytest.fixture(scope="session")
def ejabberd(tls_ca, tmp_path_factory) -> Iterator[Ejabberd]:
    """Shared ejabberd (23.01, ejabberd_stun = p1_stun): UDP and TCP on .port, TLS on
    .tls_port (leaf of tls_ca), user alice:s3cret, realm turncheck.test, no
    turn_blacklist.  Heavy (~2-3 s to start and register): once per session."""
    _require_ejabberd()
    with running_ejabberd(tmp_path_factory.mktemp("ejabberd"), ca=tls_ca) as server:
        yield server


@pytest.fixture
def ejabberd_factory(tls_ca, tmp_path) -> Iterator[Callable[..., Ejabberd]]:
    """``make(**kwargs) -> Ejabberd``: extra ejabberd servers (kwargs as for
    :func:`running_ejabberd`, e.g. turn_blacklist=["127.0.0.1/8"]; ``ca`` defaults to
    tls_ca).  ~2-3 s each.  All are stopped at teardown."""
    _require_ejabberd()
    counter = 0
    with ExitStack() as stack:

        def make(**kwargs) -> Ejabberd:
            nonlocal counter
            counter += 1
            workdir = kwargs.pop("workdir", None) or tmp_path / f"ejabberd{counter}"
            kwargs.setdefault("ca", tls_ca)
            return stack.enter_context(running_ejabberd(Path(workdir), **kwargs))

        yield make


@pytest.fixture(scope="session")
def stund(tmp_path_factory) -> Iterator[Stund]:
    """stund (Debian's stun-server): STUN only, RFC 3489, on 127.0.0.1/127.0.0.2 ports p,
    p + 1; it drops every TURN request without an answer."""
    why = stund_missing()
    if why is not None:
        lab_unavailable(why)
    with running_stund(tmp_path_factory.mktemp("stund")) as server:
        yield server
