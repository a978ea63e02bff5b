"""Lab helpers: coturn in the server namespace, turncheck run from the client namespace."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import Lab
from tests.servers.coturn import Coturn, running_coturn


@dataclass
class LabRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class TurnLab:
    lab: Lab
    coturn: Coturn
    ca_file: Path

    @property
    def primary(self) -> str:
        return f"{self.lab.server_ips[0]}:{self.coturn.port}"

    @property
    def secondary(self) -> str:
        return f"{self.lab.server_ips[1]}:{self.coturn.port}"

    def turncheck(self, *args: str, timeout: float = 60) -> LabRun:
        """Run turncheck in the client namespace (behind the lab's NAT)."""
        done = self.lab.run(
            self.lab.client_ns, [sys.executable, "-m", "turncheck", *args], timeout=timeout
        )
        assert "Traceback" not in done.stderr, done.stderr
        return LabRun(done.returncode, done.stdout, done.stderr)

    def client(self, argv: list[str], timeout: float = 30) -> LabRun:
        done = self.lab.run(self.lab.client_ns, argv, timeout=timeout)
        return LabRun(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def turn_lab(lab_factory, tls_ca, ca_file, tmp_path) -> Iterator[Callable[[str], TurnLab]]:
    """make(mode) → a NAT lab with coturn (RFC 5780: two IPs; TLS) in its server namespace."""
    stack: list[Any] = []

    def make(mode: str) -> TurnLab:
        lab = lab_factory(mode)
        manager = running_coturn(
            tmp_path / f"coturn-{lab.tag}",
            ca=tls_ca,
            hosts=lab.server_ips,
            relay_ips=(lab.server_ips[0],),
            cert_hostnames=lab.server_ips,
            netns=lab.server_ns,
        )
        server = manager.__enter__()
        stack.append(manager)
        return TurnLab(lab, server, ca_file)

    yield make
    for manager in reversed(stack):
        manager.__exit__(None, None, None)
