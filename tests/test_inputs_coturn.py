"""iceServers files and stdin, REST API credentials against coturn's use-auth-secret, and
proof that invalid input sends nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from turncheck.config import rest_credentials

SECRET = "Sh4red-S3cret-QQ"


def test_ice_servers_file_each_entry_uses_its_own_credentials(
    cli, coturn_factory, tmp_path: Path
) -> None:
    server = coturn_factory(users={"alice": "a-pass", "bob": "b-pass"}, tls=False)
    doc = {
        "iceServers": [
            {
                "urls": f"turn:127.0.0.1:{server.port}?transport=udp",
                "username": "alice",
                "credential": "a-pass",
            },
            {"urls": [f"stun:127.0.0.2:{server.port}"]},
        ]
    }
    path = tmp_path / "ice.json"
    path.write_text(json.dumps(doc))
    result = cli(
        "probe",
        "--ice-servers",
        str(path),
        f"turn:127.0.0.1:{server.port}?transport=tcp",
        "-u",
        "bob",
        "-p",
        "b-pass",
        "--json",
    )
    assert result.code == 0, result.out
    checks = result.json()["checks"]
    users = {(c["url"], c["kind"]): c["details"].get("username") for c in checks}
    assert users[(f"turn:127.0.0.1:{server.port}?transport=udp", "turn")] == "alice"
    assert users[(f"turn:127.0.0.1:{server.port}?transport=tcp", "turn")] == "bob"
    assert len(checks) == 6  # stun URL: udp + tcp Bindings; two TURN URLs: Binding + Allocate
    advice = result.json()["advice"]
    assert any(a.startswith("no turns: on port 443") for a in advice)


def test_ice_servers_from_stdin(cli, coturn: Coturn, monkeypatch) -> None:
    import io

    doc = [
        {
            "urls": f"turn:127.0.0.1:{coturn.port}?transport=udp",
            "username": "alice",
            "credential": "s3cret",
        }
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))
    result = cli("probe", "--ice-servers", "-", "--json")
    assert result.code == 0, result.out
    assert result.json()["checks"][1]["candidates"][1]["type"] == "relay"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            '{"iceServers": [{"urls": "turn:127.0.0.1:PORT"}]}',
            'iceServers[0] in ice.json: \'turn:127.0.0.1:PORT\': the browser throws InvalidAccessError: Both username and credential are required when the URL scheme is "turn" or "turns". (a TURN URL needs a username and a credential)',
        ),
        (
            '{"iceServers": [{"urls": "stun:127.0.0.1:PORT"}, {"urls": "stun:[::1"}]}',
            "iceServers[1] in ice.json: 'stun:[::1': the browser throws SyntaxError: ICE server parsing failed: Invalid hostname format (unclosed '[' in an IPv6 address)",
        ),
        (
            '{"iceServers": [\n  {"urls": "stun:127.0.0.1:PORT"}\n  {"urls": "stun:a"}]}',
            "--ice-servers ice.json: neither JSON nor a JavaScript object literal: line 3, "
            "column 3: Expecting ',' delimiter; replace variables, function calls and template "
            "strings with their values in quotes (turncheck reads JSON and JavaScript object "
            "literals)",
        ),
    ],
)
def test_invalid_input_exits_2_before_any_packet(
    cli, tmp_path: Path, document: str, message: str
) -> None:
    counter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    counter.bind(("127.0.0.1", 0))
    counter.setblocking(False)
    try:
        port = counter.getsockname()[1]
        path = tmp_path / "ice.json"
        path.write_text(document.replace("PORT", str(port)))
        result = cli("probe", "--ice-servers", str(path), f"stun:127.0.0.1:{port}", "--json")
        assert result.code == 2
        assert result.out == ""
        expected = message.replace("PORT", str(port)).replace("ice.json", str(path))
        assert result.err.strip() == f"turncheck: error: {expected}"
        with pytest.raises(BlockingIOError):
            counter.recv(2048)  # the counting server saw no request
    finally:
        counter.close()


def test_rest_credentials_minted_by_turncheck_allocate(cli, coturn_factory, tmp_path: Path) -> None:
    server = coturn_factory(extra=["use-auth-secret", f"static-auth-secret={SECRET}"], tls=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    url = f"turn:127.0.0.1:{server.port}?transport=udp"
    result = cli("probe", url, "--secret-file", str(secret_file), "--user", "alice", "--json")
    assert result.code == 0, result.out
    turn = result.json()["checks"][1]
    assert turn["details"]["username"].endswith(":alice")
    assert turn["relay_test"]["received"] == 10
    env = cli("probe", url, "--json", env={"TURNCHECK_SECRET": SECRET})
    assert env.code == 0


def test_creds_output_is_accepted_by_the_same_server(
    cli, coturn_factory, tmp_path: Path, monkeypatch
) -> None:
    import io

    server = coturn_factory(extra=["use-auth-secret", f"static-auth-secret={SECRET}"], tls=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    minted = cli(
        "creds",
        "--secret-file",
        str(secret_file),
        "--user",
        "carol",
        "--ttl",
        "300",
        f"turn:127.0.0.1:{server.port}?transport=udp",
        f"turn:127.0.0.1:{server.port}?transport=tcp",
    )
    assert minted.code == 0
    doc = minted.json()
    entry = doc["iceServers"][0]
    expiry = int(entry["username"].split(":")[0])
    assert 290 <= expiry - time.time() <= 310
    monkeypatch.setattr("sys.stdin", io.StringIO(minted.out))
    result = cli("probe", "--ice-servers", "-", "--json")
    assert result.code == 0, result.out
    assert SECRET not in minted.out + minted.err


def test_expired_rest_credential_is_explained(cli, coturn_factory) -> None:
    server = coturn_factory(extra=["use-auth-secret", f"static-auth-secret={SECRET}"], tls=False)
    expired = rest_credentials(SECRET, "alice", ttl=-3600)
    result = cli(
        "probe",
        f"turn:127.0.0.1:{server.port}?transport=udp",
        "-u",
        expired.username,
        "--json",
        env={"TURNCHECK_CREDENTIAL": expired.password},
    )
    assert result.code == 1
    doc = result.json()
    turn = doc["checks"][1]
    assert turn["error"]["reason"].startswith(
        "the TURN REST API credential has expired: the timestamp in the username"
    )
    assert "is in the past" in turn["error"]["reason"]
    assert any("has expired: the timestamp in the username" in a for a in doc["advice"])


def test_secret_options_refused_or_conflicting(cli, tmp_path: Path) -> None:
    refused = cli("probe", "turn:127.0.0.1:3478", "--secret", SECRET)
    assert refused.code == 2 and "use --secret-file" in refused.err
    assert SECRET not in refused.err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in cli("creds", "--secret-file", str(empty), "turn:a.example").err
    both = tmp_path / "s"
    both.write_text(SECRET)
    clash = cli("probe", "turn:127.0.0.1:3478", "--secret-file", str(both), "-u", "a", "-p", "b")
    assert clash.code == 2 and "exclude each other" in clash.err
    missing = cli("creds", "turn:a.example")
    assert missing.code == 2 and "needs --secret-file" in missing.err
