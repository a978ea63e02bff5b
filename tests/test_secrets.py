"""Secrets never reach any output: every command, every output mode, error paths included."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn

PASSWORD = "Pw-5ecret-XYZ-91"
SHARED = "Sh4red-S3cret-QQ-17"


@pytest.fixture
def servers(coturn_factory) -> tuple[Coturn, Coturn]:
    plain = coturn_factory(users={"alice": PASSWORD}, tls=False)
    rest = coturn_factory(extra=["use-auth-secret", f"static-auth-secret={SHARED}"], tls=False)
    return plain, rest


def assert_clean(result) -> None:
    for secret in (PASSWORD, SHARED):
        assert secret not in result.out, result.out
        assert secret not in result.err, result.err


def test_no_secret_in_any_output(cli, servers, tmp_path: Path, monkeypatch) -> None:
    plain, rest = servers
    url = f"turn:127.0.0.1:{plain.port}?transport=udp"
    rest_url = f"turn:127.0.0.1:{rest.port}?transport=udp"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SHARED)
    ice = tmp_path / "ice.json"
    ice.write_text(json.dumps([{"urls": url, "username": "alice", "credential": PASSWORD}]))
    bad_ice = tmp_path / "bad.json"
    bad_ice.write_text(
        f'[{{"urls": "turn:x:1:2", "username": "alice", "credential": "{PASSWORD}"}}]'
    )
    runs = [
        # success, every output mode
        ("probe", url, "-u", "alice", "-p", PASSWORD),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--json"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--dry-run"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "-v"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "-v", "--json"),
        ("probe", url, "-u", "alice", "-p", PASSWORD + "x", "-v"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "-q"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--repeat", "2", "--interval", "0"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--require", "tls", "--json"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--dry-run", "--json"),
        ("probe", "--ice-servers", str(ice)),
        ("probe", "--ice-servers", str(ice), "--json"),
        ("probe", "--ice-servers", str(ice), "--dry-run", "--json"),
        ("probe", rest_url, "--secret-file", str(secret_file)),
        ("probe", rest_url, "--secret-file", str(secret_file), "--json"),
        ("probe", rest_url, "--secret-file", str(secret_file), "--dry-run"),
        ("probe", rest_url, "--secret-file", str(secret_file), "-v"),
        ("creds", "--secret-file", str(secret_file), url),
        ("nat", f"stun:127.0.0.1:{plain.port}", "--json"),
        # failures and bad input
        ("probe", url, "-u", "alice", "-p", PASSWORD + "x", "--json"),
        ("probe", url, "-u", "alice", "-p", PASSWORD + "x"),
        ("probe", "turn:", "-u", "alice", "-p", PASSWORD),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--transport", "quic"),
        ("probe", url, "-u", "alice", "-p", PASSWORD, "--bogus"),
        ("probe", "--ice-servers", str(bad_ice)),
        ("probe", url, "--secret", SHARED),
        ("creds", "--secret", SHARED, url),
        ("probe", url, "--secret-file", str(secret_file), "-u", "a", "-p", PASSWORD),
    ]
    for args in runs:
        assert_clean(cli(*args))
    env_run = cli(
        "probe",
        url,
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": PASSWORD},
    )
    assert env_run.code == 0
    assert_clean(env_run)
    monkeypatch.delenv("TURNCHECK_USERNAME")
    monkeypatch.delenv("TURNCHECK_CREDENTIAL")
    monkeypatch.setattr("sys.stdin", io.StringIO(ice.read_text()))
    assert_clean(cli("probe", "--ice-servers", "-", "--json"))
    secret_env = cli("probe", rest_url, "--json", env={"TURNCHECK_SECRET": SHARED})
    assert secret_env.code == 0
    assert_clean(secret_env)


def test_argv_credential_draws_a_warning(cli, servers) -> None:
    plain, _ = servers
    url = f"turn:127.0.0.1:{plain.port}?transport=udp"
    argv = cli("probe", url, "-u", "alice", "-p", PASSWORD, "--json")
    assert argv.code == 0
    assert "visible to other users" in argv.err
    env = cli("probe", url, "-u", "alice", "--json", env={"TURNCHECK_CREDENTIAL": PASSWORD})
    assert env.code == 0 and env.err == ""
