"""Shared test helpers: run the CLI in-process and capture its output and exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from turncheck.cli import main

pytest_plugins = ["tests.servers.fixtures", "tests.lab.netns"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """cli(*args, env={}) → CliResult, running turncheck's main() in this process."""
    monkeypatch.delenv("TURNCHECK_USERNAME", raising=False)
    monkeypatch.delenv("TURNCHECK_CREDENTIAL", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
