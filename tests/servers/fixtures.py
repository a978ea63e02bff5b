"""pytest plugin with real-server lab fixtures (coturn, dnsmasq, a TLS CA).

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

__all__ = [
    "ca_file",
    "coturn",
    "coturn_factory",
    "dns_server",
    "lab_unavailable",
    "require_root",
    "require_tool",
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
