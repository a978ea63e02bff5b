"""TLS certificate diagnostics for stuns:/turns:, with certificates made for each case."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trustme

from tests.servers.coturn import Coturn

CREDS = ("-u", "alice", "-p", "s3cret")
NOW = dt.datetime.now(dt.UTC)


def leaf_pem(ca: trustme.CA, **dates: dt.datetime) -> tuple[bytes, bytes]:
    leaf = ca.issue_cert("localhost", "127.0.0.1", **dates)
    return b"".join(p.bytes() for p in leaf.cert_chain_pems), leaf.private_key_pem.bytes()


def self_signed_pem() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_url(server: Coturn) -> str:
    return f"turns:localhost:{server.tls_port}?transport=tcp"


def test_valid_certificate_details(cli, coturn: Coturn, ca_file: Path) -> None:
    result = cli("probe", tls_url(coturn), *CREDS, "--ca-file", str(ca_file), "--json")
    assert result.code == 0
    tls = result.json()["checks"][0]["details"]["tls"]
    assert tls["verified"] is True
    assert tls["version"].startswith("TLSv1.")
    cert = tls["certificate"]
    assert cert["san_match"] is True
    assert "localhost" in cert["san"]
    assert cert["days_left"] > 14
    assert cert["subject"] and cert["issuer"] and cert["self_signed"] is False
    assert result.json()["notes"] == []


def test_expired_certificate_fails_and_insecure_passes_with_a_note(
    cli, coturn_factory, tls_ca: trustme.CA, ca_file: Path
) -> None:
    pem = leaf_pem(
        tls_ca, not_before=NOW - dt.timedelta(days=40), not_after=NOW - dt.timedelta(days=10)
    )
    server = coturn_factory(cert_pem=pem)
    result = cli("probe", tls_url(server), *CREDS, "--ca-file", str(ca_file), "--json")
    assert result.code == 1
    error = result.json()["checks"][0]["error"]
    assert error["reason"].startswith("the server's TLS certificate has expired")
    assert "expired 10 days ago" in error["reason"]
    assert error["hint"] == "renew the certificate"
    insecure = cli("probe", tls_url(server), *CREDS, "--insecure", "--json")
    assert insecure.code == 0
    assert any("expired 10 days ago" in n and "--insecure" in n for n in insecure.json()["notes"])
    assert insecure.json()["checks"][0]["details"]["tls"]["verified"] is False


def test_near_expiry_certificate_passes_with_a_warning(
    cli, coturn_factory, tls_ca: trustme.CA, ca_file: Path
) -> None:
    pem = leaf_pem(
        tls_ca,
        not_before=NOW - dt.timedelta(days=80),
        not_after=NOW + dt.timedelta(days=5, hours=12),
    )
    server = coturn_factory(cert_pem=pem)
    result = cli("probe", tls_url(server), *CREDS, "--ca-file", str(ca_file))
    assert result.code == 0
    assert "note: TLS certificate of " in result.out
    assert "expires in 5 days" in result.out or "expires in 6 days" in result.out


def test_self_signed_certificate(cli, coturn_factory) -> None:
    server = coturn_factory(cert_pem=self_signed_pem())
    result = cli("probe", tls_url(server), *CREDS, "--json")
    assert result.code == 1
    error = result.json()["checks"][0]["error"]
    assert error["reason"].startswith("the server's TLS certificate is self-signed")
    assert "CN=localhost" in error["reason"]
    assert "--ca-file" in error["hint"] and "--insecure" in error["hint"]
    insecure = cli("probe", tls_url(server), *CREDS, "--insecure", "--json")
    assert insecure.code == 0
    assert any("self-signed" in n for n in insecure.json()["notes"])


def test_wrong_host_reason_names_the_certificate(cli, coturn: Coturn, ca_file: Path) -> None:
    url = f"turns:127.0.0.2:{coturn.tls_port}"
    result = cli("probe", url, "-u", "alice", "-p", "s3cret", "--ca-file", str(ca_file), "--json")
    error = result.json()["checks"][0]["error"]
    assert "does not match the URL host" in error["reason"]
    assert "certificate: subject " in error["reason"]
    allocate = next(c for c in result.json()["checks"] if c["kind"] == "turn")
    assert allocate["details"]["browser_error"] == {
        "code": 701,
        "text": "Failed to establish connection",
    }
    # --browser chromium: Firefox drops turns: with an IP address before any handshake.
    insecure = cli(
        "probe", url, "-u", "alice", "-p", "s3cret", "--insecure", "--json", "--browser", "chromium"
    )
    assert insecure.code == 0
    assert any("does not name the URL host" in n for n in insecure.json()["notes"])
