"""turns: endpoints (turncheck/audit/tls.py): TLS versions and weak ciphers accepted, the
certificate, DTLS, against coturn with certificates from the test CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import struct
import time

import pytest
import trustme

from tests.servers.coturn import Coturn
from tests.test_audit_unauth import audit_context, closing_everything, only, run
from tests.test_tls_diagnostics import leaf_pem, self_signed_pem
from turncheck.audit import tls
from turncheck.findings import Severity
from turncheck.tlsinfo import CertInfo, parse_cert
from turncheck.transport import TlsHandshake, tls_handshake

NOW = dt.datetime.now(dt.UTC)
# OpenSSL 3 refuses TLS 1.0/1.1 at its default security level on both sides: coturn offers
# them only with a cipher list that lowers it.
LEGACY = 'cipher-list="DEFAULT:@SECLEVEL=0"'


def turns_url(server: Coturn, host: str = "localhost") -> str:
    return f"turns:{host}:{server.tls_port}?transport=tcp"


def offers(version: tls.TlsVersion) -> bool:
    return tls.can_offer(tls.client_context(version.version))


# -- versions and ciphers ----------------------------------------------------------------------


def test_debian_12_coturn_offers_tls_1_2_only(coturn: Coturn, ca_file) -> None:
    found = run(tls.tls_versions, audit_context(turns_url(coturn), ca_file=ca_file))
    for version in tls.VERSIONS[:2]:
        old = only(found, version.finding_id)
        if offers(version):
            assert old.severity is Severity.OK, old
            assert old.evidence.startswith(f"a {version.name}-only ClientHello → ")
        else:
            assert old.skipped
            assert (
                old.finding == f"could not test: this machine's OpenSSL cannot offer {version.name}"
            )
    modern = only(found, "tls-versions")
    assert modern.severity is Severity.OK
    assert modern.finding == "offers TLS 1.2 (not TLS 1.3)"  # coturn 4.6.1 has no TLS 1.3


def test_tls_1_0_and_1_1_accepted_then_refused_with_no_tlsv1(coturn_factory) -> None:
    if not offers(tls.VERSIONS[0]) or not offers(tls.VERSIONS[1]):
        pytest.skip("this machine's OpenSSL cannot offer TLS 1.0/1.1: nothing to compare")
    legacy = coturn_factory(extra=[LEGACY])
    found = run(tls.tls_versions, audit_context(turns_url(legacy)))
    ten = only(found, "tls-1.0")
    assert ten.severity is Severity.MEDIUM
    assert ten.evidence.startswith("a TLS 1.0-only ClientHello → TLSv1 ")
    assert ten.cve == ("CVE-2011-3389",)  # a CBC cipher with TLS 1.0: BEAST
    assert only(found, "tls-1.1").severity is Severity.MEDIUM
    assert "no-tlsv1" in ten.hint
    # coturn 4.6.1 with no-tlsv1/no-tlsv1_1 does not answer those ClientHellos at all.
    strict = coturn_factory(extra=[LEGACY, "no-tlsv1", "no-tlsv1_1"])
    began = time.monotonic()
    found = run(tls.tls_versions, audit_context(turns_url(strict), budget=2.0))
    assert time.monotonic() - began < 4.0
    for check_id in ("tls-1.0", "tls-1.1"):
        refused = only(found, check_id)
        assert refused.severity is Severity.OK, refused
        assert refused.evidence.endswith("no answer to the ClientHello")
    assert only(found, "tls-versions").severity is Severity.OK


def test_weak_cipher_groups(coturn: Coturn) -> None:
    found = run(tls.tls_ciphers, audit_context(turns_url(coturn)))
    assert [f.id for f in found] == [g.finding_id for g in tls.WEAK_CIPHERS]
    for group, finding in zip(tls.WEAK_CIPHERS, found, strict=True):
        if tls._cipher_context(group) is None:
            assert finding.skipped
            assert finding.finding.startswith("could not test: this machine's OpenSSL cannot")
        else:
            assert finding.severity is Severity.OK, finding
            assert f"offering only '{group.ciphers}'" in finding.evidence


# -- the certificate --------------------------------------------------------------------------


def test_a_valid_certificate(coturn: Coturn, ca_file) -> None:
    (found,) = run(tls.tls_certificate, audit_context(turns_url(coturn), ca_file=ca_file))
    assert (found.id, found.severity) == ("tls-certificate", Severity.OK)
    assert "key EC 256 bits, signed with sha256" in found.evidence


def test_a_certificate_for_another_host(coturn: Coturn, ca_file) -> None:
    # The leaf names localhost, 127.0.0.1 and ::1; coturn also listens on 127.0.0.2.
    found = run(tls.tls_certificate, audit_context(turns_url(coturn, "127.0.0.2"), ca_file=ca_file))
    wrong = only(found, "tls-cert-hostname")
    assert wrong.severity is Severity.HIGH
    assert "does not name the URL's host 127.0.0.2" in wrong.finding


def test_an_expired_certificate(coturn_factory, tls_ca: trustme.CA, ca_file) -> None:
    pem = leaf_pem(
        tls_ca, not_before=NOW - dt.timedelta(days=40), not_after=NOW - dt.timedelta(days=10)
    )
    server = coturn_factory(cert_pem=pem)
    found = run(tls.tls_certificate, audit_context(turns_url(server), ca_file=ca_file))
    expired = only(found, "tls-cert-expired")
    assert expired.severity is Severity.HIGH
    assert expired.finding == "the certificate expired 10 days ago"
    assert not any(f.id == "tls-certificate" for f in found)


def test_a_self_signed_certificate(coturn_factory, ca_file) -> None:
    server = coturn_factory(cert_pem=self_signed_pem())
    found = run(tls.tls_certificate, audit_context(turns_url(server), ca_file=ca_file))
    own = only(found, "tls-cert-self-signed")
    assert own.severity is Severity.HIGH
    assert "--ca-file" in own.finding


def test_weak_keys_and_signatures_are_named() -> None:
    cert = CertInfo("CN=turn", "CN=ca", ("turn.example",), (), 0.0, 4e9, False)
    weak = tls.KeyFacts("RSA", 1024, "sha1")
    found = tls.certificate_findings(
        cert, weak, "turn.example", None, "t", trust="against the system's trust store", now=1e9
    )
    assert {f.id: f.severity for f in found} == {
        "tls-cert-key": Severity.MEDIUM,
        "tls-cert-signature": Severity.MEDIUM,
    }
    strong = tls.KeyFacts("EC", 256, "sha256")
    (ok,) = tls.certificate_findings(cert, strong, "turn.example", None, "t", trust="x", now=1e9)
    assert ok.id == "tls-certificate"


# -- DTLS -------------------------------------------------------------------------------------


def test_dtls_answered_unless_no_dtls(coturn: Coturn, coturn_factory) -> None:
    # The shared fixture runs with no-dtls; "no-dtls=false" later in the file turns it back on.
    (off,) = run(tls.dtls, audit_context(turns_url(coturn)))
    assert (off.id, off.severity) == ("dtls", Severity.INFO)
    assert off.finding == "DTLS is not answered on the TLS port over UDP"
    server = coturn_factory(extra=["no-dtls=false"])
    (on,) = run(tls.dtls, audit_context(turns_url(server)))
    assert on.severity is Severity.INFO
    assert on.finding == "DTLS is answered on the TLS port over UDP (HelloVerifyRequest)"
    assert on.target == f"127.0.0.1:{server.tls_port}/udp"
    assert "no-dtls" in on.hint
    made, _ = server.allocation_sessions(settle=0)
    assert not made  # a ClientHello, nothing more


def test_the_dtls_client_hello_is_well_formed() -> None:
    hello = tls.dtls_client_hello()
    kind, version, epoch_seq, length = hello[0], hello[1:3], hello[3:11], hello[11:13]
    assert (kind, version, epoch_seq) == (22, b"\xfe\xff", bytes(8))
    assert struct.unpack("!H", length)[0] == len(hello) - 13
    handshake = hello[13:]
    assert handshake[0] == 1  # ClientHello
    body_length = int.from_bytes(handshake[1:4], "big")
    assert handshake[9:12] == handshake[1:4]  # one fragment: the whole message
    assert len(handshake) == 12 + body_length
    assert handshake[12:14] == b"\xfe\xfd"  # DTLS 1.2
    assert tls.dtls_answer(b"\x16\xfe\xff" + bytes(10) + b"\x03") == "HelloVerifyRequest"
    assert tls.dtls_answer(b"\x15\xfe\xfd" + bytes(12)) == "an alert"
    assert tls.dtls_answer(b"\x00\x01\x00\x00" + bytes(16)) is None  # STUN is not DTLS


def test_no_turns_url_means_not_checked() -> None:
    ctx = audit_context("turn:192.0.2.1:3478?transport=udp")
    for check in tls.CHECKS:
        (found,) = run(check, ctx)
        assert found.skipped and "no turns:" in found.finding


def test_local_openssl_probe_writes_a_client_hello() -> None:
    assert tls.can_offer(tls.client_context(tls.VERSIONS[2].version))
    with pytest.raises(ssl.SSLError):
        tls.client_context(ciphers="NO-SUCH-CIPHER")


# -- transport.tls_handshake: bounded, closed on every path -----------------------------------


async def _silent_peer(cancel: bool) -> tuple[TlsHandshake | None, str]:
    """A TCP peer that reads the ClientHello and never answers: the handshake ends at its
    deadline, or is cancelled once the ClientHello is there; the peer sees the close."""
    loop = asyncio.get_running_loop()
    hello, closed = loop.create_future(), loop.create_future()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(5)  # a TLS record header
            hello.set_result(None)
            try:
                await reader.read()  # to EOF
                closed.set_result("closed")
            except ConnectionResetError:
                closed.set_result("reset")
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        address = ("127.0.0.1", server.sockets[0].getsockname()[1])
        context = tls.client_context(tls.VERSIONS[2].version)
        deadline = loop.time() + (30 if cancel else 0.5)
        task = asyncio.create_task(tls_handshake(address, "turn.test", context, deadline=deadline))
        outcome = None
        if cancel:
            await asyncio.wait_for(hello, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            outcome = await asyncio.wait_for(task, 5)
        return outcome, await asyncio.wait_for(closed, 5)


async def _accepting_peer() -> tuple[TlsHandshake, str]:
    """A TLS server (a test CA's certificate) that shakes hands and watches the close."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("turn.test").configure_cert(server_context)
    closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # to EOF
            closed.set_result("closed")
        except (ConnectionResetError, ssl.SSLError):
            closed.set_result("reset")
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server_context)
    async with server:
        address = ("127.0.0.1", server.sockets[0].getsockname()[1])
        context = tls.client_context(tls.VERSIONS[2].version)
        deadline = asyncio.get_running_loop().time() + 5
        outcome = await tls_handshake(address, "turn.test", context, deadline=deadline)
        return outcome, await asyncio.wait_for(closed, 5)


def test_tls_handshake_accepted_reads_the_certificate_and_closes() -> None:
    outcome, closed = closing_everything(_accepting_peer())
    assert outcome.accepted and outcome.version == "TLSv1.2" and outcome.cipher
    cert = parse_cert(outcome.der)
    assert cert is not None and cert.matches("turn.test")
    assert closed in ("closed", "reset")


def test_tls_handshake_without_an_answer_ends_at_its_deadline() -> None:
    outcome, closed = closing_everything(_silent_peer(cancel=False))
    assert outcome == TlsHandshake(False, refused="no answer to the ClientHello", silent=True)
    assert closed in ("closed", "reset")


def test_tls_handshake_cancelled_closes_its_connection() -> None:
    _, closed = closing_everything(_silent_peer(cancel=True))
    assert closed in ("closed", "reset")
