"""turns: endpoints: the TLS versions and weak ciphers accepted, the certificate, DTLS.

    tls-1.0, tls-1.1     accepted: MEDIUM (with TLS 1.0's CBC ciphers, BEAST); refused: OK
    tls-versions         TLS 1.2/1.3 offered: OK; neither: MEDIUM (no browser connects)
    tls-cipher-*         NULL, anonymous, EXPORT, RC4 accepted: MEDIUM; 3DES: LOW
    tls-cert-*           expired, not yet valid, wrong host, self-signed, untrusted: HIGH
                         (browsers refuse it: the turns: URL is dead for them); expiring
                         within tlsinfo.WARN_DAYS: LOW; weak key or signature: MEDIUM
    tls-certificate      none of those: OK
    dtls                 a DTLS 1.2 ClientHello on the TLS port over UDP answered or not: INFO

Each handshake offers exactly one version (or one cipher group, TLS 1.0 to 1.2) with
OpenSSL's security level 0, the only way OpenSSL 3 offers TLS 1.0/1.1 at all. What this
machine's OpenSSL cannot offer is reported as "could not test", never as "not offered".
Every handshake has its own deadline, and no handshake is verified except the one that
judges the certificate (the run's trust: --ca-file, else the system store).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from turncheck.advisories import known_vulnerable
from turncheck.audit import AuditContext, Check
from turncheck.audit.unauth import RAW_POLICY
from turncheck.checks import make_ssl_context
from turncheck.errors import CheckFailure, ConnectFailure, TlsFailure
from turncheck.explain import explain
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.tlsinfo import WARN_DAYS, CertInfo, parse_cert
from turncheck.transport import (
    Address,
    StreamChannel,
    TlsHandshake,
    datagram_exchange,
    tls_handshake,
)
from turncheck.urls import Transport

MAX_TLS_ENDPOINTS = 4  # distinct TLS address:port pairs checked per run
HANDSHAKE_TIMEOUT = 3.0  # seconds, at most, for one handshake
_LEGACY = "DEFAULT:@SECLEVEL=0"
# What transport.py's TlsFailure.kind says about a certificate (the rest: the handshake).
_CERT_KINDS = ("expired", "not-yet-valid", "hostname", "self-signed", "untrusted", "verify")


@dataclass(frozen=True, slots=True)
class TlsVersion:
    name: str  # "TLS 1.0"
    finding_id: str
    version: ssl.TLSVersion


def _versions() -> tuple[TlsVersion, ...]:
    with warnings.catch_warnings():  # ssl.TLSVersion.TLSv1 and TLSv1_1 are deprecated names
        warnings.simplefilter("ignore", DeprecationWarning)
        return (
            TlsVersion("TLS 1.0", "tls-1.0", ssl.TLSVersion.TLSv1),
            TlsVersion("TLS 1.1", "tls-1.1", ssl.TLSVersion.TLSv1_1),
            TlsVersion("TLS 1.2", "tls-1.2", ssl.TLSVersion.TLSv1_2),
            TlsVersion("TLS 1.3", "tls-1.3", ssl.TLSVersion.TLSv1_3),
        )


VERSIONS = _versions()
_OLD = VERSIONS[:2]


@dataclass(frozen=True, slots=True)
class CipherGroup:
    """A testssl-like family of weak ciphers, as an OpenSSL cipher string."""

    finding_id: str
    ciphers: str  # OpenSSL cipher string
    label: str
    severity: Severity
    cve: tuple[str, ...] = ()


WEAK_CIPHERS = (
    CipherGroup("tls-cipher-null", "eNULL", "NULL ciphers (no encryption)", Severity.MEDIUM),
    CipherGroup(
        "tls-cipher-anon", "aNULL", "anonymous key exchange (no authentication)", Severity.MEDIUM
    ),
    CipherGroup(
        "tls-cipher-export",
        "EXPORT",
        "EXPORT-grade ciphers (FREAK, Logjam)",
        Severity.MEDIUM,
        ("CVE-2015-0204", "CVE-2015-4000"),
    ),
    CipherGroup(
        "tls-cipher-rc4",
        "RC4",
        "RC4 ciphers (RFC 7465 forbids them)",
        Severity.MEDIUM,
        ("CVE-2013-2566", "CVE-2015-2808"),
    ),
    CipherGroup(
        "tls-cipher-3des",
        "3DES",
        "3DES ciphers (64-bit blocks: SWEET32)",
        Severity.LOW,
        ("CVE-2016-2183",),
    ),
)

_VERSIONS_HINT = (
    "accept TLS 1.2 and 1.3 only: coturn before 4.10.0: no-tlsv1 and no-tlsv1_1 (4.10.0 and "
    "later accept them only with tlsv1/tlsv1_1: remove those); eturnal: tls_options: "
    "[no_tlsv1, no_tlsv1_1]; "
    "pion/turn: tls.Config MinVersion tls.VersionTLS12"
)
_CIPHERS_HINT = (
    "offer strong ciphers only: coturn: cipher-list (e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20'); "
    "eturnal: tls_ciphers; pion/turn: tls.Config CipherSuites"
)
_CERT_HINT = (
    "serve a certificate from a public CA that names the URL's host, with its chain "
    "(coturn: cert= and pkey=; eturnal: tls_crt_file and tls_key_file), and renew it in time"
)
_DTLS_HINT = (
    "browsers never use DTLS for TURN (Chromium uses TLS over TCP for turns:): coturn before "
    "4.17 starts DTLS unless no-dtls; 4.17 and later only with dtls"
)


# -- handshakes --------------------------------------------------------------------------------


def client_context(
    version: ssl.TLSVersion | None = None,
    ciphers: str = _LEGACY,
    *,
    lowest: ssl.TLSVersion | None = None,
    highest: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """An unverified client context offering one version (or lowest..highest), at OpenSSL's
    security level 0. ssl.SSLError when OpenSSL has none of the ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            context.minimum_version = version
            context.maximum_version = version
        if lowest is not None:
            context.minimum_version = lowest
        if highest is not None:
            context.maximum_version = highest
    context.set_ciphers(ciphers)
    return context


def can_offer(context: ssl.SSLContext) -> bool:
    """Whether this machine's OpenSSL writes a ClientHello with that context (in memory)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="turncheck.invalid")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.pending > 0
    except ssl.SSLError:
        return False
    return True


async def handshake(
    server: Address, server_hostname: str | None, context: ssl.SSLContext, deadline: float
) -> TlsHandshake:
    """One handshake (transport.tls_handshake) before the deadline and within
    HANDSHAKE_TIMEOUT; ConnectFailure when TCP fails."""
    limit = min(deadline, asyncio.get_running_loop().time() + HANDSHAKE_TIMEOUT)
    return await tls_handshake(server, server_hostname, context, deadline=limit)


async def _all(
    handshakes: list[Coroutine[Any, Any, TlsHandshake]],
) -> list[TlsHandshake] | CheckFailure:
    """Every handshake to its end (each has its deadline); the first CheckFailure instead
    when TCP itself failed."""
    results = await asyncio.gather(*handshakes, return_exceptions=True)
    out: list[TlsHandshake] = []
    for result in results:
        if isinstance(result, CheckFailure):
            return result
        if isinstance(result, BaseException):
            raise result
        out.append(result)
    return out


def _tls_endpoints(ctx: AuditContext) -> list[Endpoint]:
    seen: set[tuple[str, int]] = set()
    out: list[Endpoint] = []
    for ep in ctx.endpoints:
        if ep.target.transport is Transport.TLS and (ep.address, ep.port) not in seen:
            seen.add((ep.address, ep.port))
            out.append(ep)
    return out[:MAX_TLS_ENDPOINTS]


def _target(ep: Endpoint, transport: str = "tls") -> str:
    return f"{ep.server}/{transport}"


def _no_tls(ctx: AuditContext, check_id: str) -> list[Finding]:
    return [
        Finding(
            check_id,
            Severity.INFO,
            "no turns: (TLS) endpoint among the URLs: not checked",
            target=", ".join(ctx.hosts),
            skipped=True,
        )
    ]


def _could_not_test(check_id: str, what: str, target: str) -> Finding:
    return Finding(
        check_id,
        Severity.INFO,
        f"could not test: this machine's OpenSSL cannot offer {what}",
        hint="run the audit from a host whose OpenSSL still offers it (to test, not to use)",
        target=target,
        skipped=True,
    )


def _unreachable(check_id: str, exc: CheckFailure, ep: Endpoint) -> Finding:
    reason = explain(exc, server=ep.server).reason
    return Finding(
        check_id,
        Severity.INFO,
        f"could not tell: {reason}",
        evidence=reason,
        target=_target(ep),
        skipped=True,
    )


def _offering(version: ssl.TLSVersion) -> ssl.SSLContext | None:
    """A context offering that version alone, if this machine's OpenSSL can."""
    try:
        context = client_context(version)
    except (ValueError, ssl.SSLError):  # a build without that version refuses to set it
        return None
    return context if can_offer(context) else None


def _cbc(cipher: str) -> bool:
    return not any(mode in cipher for mode in ("GCM", "CHACHA", "CCM", "RC4", "NULL"))


# -- versions --------------------------------------------------------------------------------


async def tls_versions(ctx: AuditContext) -> list[Finding]:
    """One handshake per TLS version, each offering that version alone."""
    endpoints = _tls_endpoints(ctx)
    if not endpoints:
        return _no_tls(ctx, "tls-versions")
    deadline = ctx.deadline()
    found = await asyncio.gather(*(_versions_of(ep, deadline) for ep in endpoints))
    return [f for findings in found for f in findings]


async def _versions_of(ep: Endpoint, deadline: float) -> list[Finding]:
    target = _target(ep)
    server = (ep.address, ep.port)
    contexts = {v: c for v in VERSIONS if (c := _offering(v.version)) is not None}
    tried = list(contexts)
    results = await _all(
        [handshake(server, ep.target.url.host, contexts[v], deadline) for v in tried]
    )
    if isinstance(results, CheckFailure):
        return [_unreachable("tls-versions", results, ep)]
    outcomes = dict(zip(tried, results, strict=True))
    findings: list[Finding] = []
    for v in _OLD:
        outcome = outcomes.get(v)
        if outcome is None:
            findings.append(_could_not_test(v.finding_id, v.name, target))
        elif outcome.accepted:
            beast = v is VERSIONS[0] and _cbc(outcome.cipher)
            findings.append(
                Finding(
                    v.finding_id,
                    Severity.MEDIUM,
                    f"{v.name} is accepted (deprecated by RFC 8996)"
                    + (", with a CBC cipher (BEAST)" if beast else ""),
                    hint=_VERSIONS_HINT,
                    cve=("CVE-2011-3389",) if beast else (),
                    evidence=f"a {v.name}-only ClientHello → {outcome.version} {outcome.cipher}",
                    target=target,
                )
            )
        else:
            findings.append(
                Finding(
                    v.finding_id,
                    Severity.OK,
                    f"{v.name} is not accepted",
                    evidence=f"a {v.name}-only ClientHello → {outcome.refused}",
                    target=target,
                )
            )
    findings.append(_modern(outcomes, {v: v in contexts for v in VERSIONS}, target))
    return findings


def _modern(
    outcomes: dict[TlsVersion, TlsHandshake], offerable: dict[TlsVersion, bool], target: str
) -> Finding:
    shown = []
    for v in VERSIONS[2:]:
        outcome = outcomes.get(v)
        if outcome is None:
            shown.append(f"{v.name}: could not test (this machine's OpenSSL cannot offer it)")
        elif outcome.accepted:
            shown.append(f"{v.name}: accepted ({outcome.cipher})")
        else:
            shown.append(f"{v.name}: not accepted ({outcome.refused})")
    accepted = [v.name for v in VERSIONS if (o := outcomes.get(v)) is not None and o.accepted]
    modern = [name for name in accepted if name in ("TLS 1.2", "TLS 1.3")]
    evidence = "; ".join(shown)
    if modern:
        return Finding(
            "tls-versions",
            Severity.OK,
            f"offers {', '.join(modern)}" + ("" if "TLS 1.3" in modern else " (not TLS 1.3)"),
            evidence=evidence,
            target=target,
        )
    if not any(offerable[v] for v in VERSIONS[2:]):
        return _could_not_test("tls-versions", "TLS 1.2 or 1.3", target)
    return Finding(
        "tls-versions",
        Severity.MEDIUM,
        "neither TLS 1.2 nor TLS 1.3 is accepted: browsers cannot connect",
        hint=_VERSIONS_HINT,
        evidence=evidence,
        target=target,
    )


# -- weak ciphers -----------------------------------------------------------------------------


def _cipher_context(group: CipherGroup) -> ssl.SSLContext | None:
    """TLS 1.0 (or the lowest this OpenSSL offers) to 1.2, that group's ciphers alone; None
    when this machine's OpenSSL has none of them."""
    for low in VERSIONS[:3]:
        try:
            context = client_context(
                ciphers=f"{group.ciphers}:@SECLEVEL=0",
                lowest=low.version,
                highest=VERSIONS[2].version,
            )
        except ssl.SSLError:
            return None  # this OpenSSL has none of the group's ciphers
        except ValueError:
            continue  # nor that lowest version
        if can_offer(context):
            return context
    return None


async def tls_ciphers(ctx: AuditContext) -> list[Finding]:
    """One handshake per weak cipher group, offering that group alone."""
    endpoints = _tls_endpoints(ctx)
    if not endpoints:
        return _no_tls(ctx, "tls-ciphers")
    deadline = ctx.deadline()
    found = await asyncio.gather(*(_ciphers_of(ep, deadline) for ep in endpoints))
    return [f for findings in found for f in findings]


async def _ciphers_of(ep: Endpoint, deadline: float) -> list[Finding]:
    target = _target(ep)
    server = (ep.address, ep.port)
    tried = [(g, c) for g in WEAK_CIPHERS if (c := _cipher_context(g)) is not None]
    results = await _all([handshake(server, ep.target.url.host, c, deadline) for _, c in tried])
    if isinstance(results, CheckFailure):
        return [_unreachable("tls-ciphers", results, ep)]
    outcomes = dict(zip((g for g, _ in tried), results, strict=True))
    findings: list[Finding] = []
    for group in WEAK_CIPHERS:
        outcome = outcomes.get(group)
        if outcome is None:
            findings.append(_could_not_test(group.finding_id, group.label, target))
        elif outcome.accepted:
            findings.append(
                Finding(
                    group.finding_id,
                    group.severity,
                    f"accepts {group.label}",
                    hint=_CIPHERS_HINT,
                    cve=group.cve,
                    evidence=f"a ClientHello offering only '{group.ciphers}' → "
                    f"{outcome.version} {outcome.cipher}",
                    target=target,
                )
            )
        else:
            findings.append(
                Finding(
                    group.finding_id,
                    Severity.OK,
                    f"does not accept {group.label}",
                    evidence=f"a ClientHello offering only '{group.ciphers}' → {outcome.refused}",
                    target=target,
                )
            )
    return findings


# -- the certificate ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyFacts:
    kind: str  # "RSA", "EC", "Ed25519", ...
    bits: int
    signature_hash: str  # "sha256", "sha1", ... ("" when none: Ed25519)

    @property
    def weak_key(self) -> bool:
        return (self.kind in ("RSA", "DSA") and self.bits < 2048) or (
            self.kind == "EC" and self.bits < 256
        )

    @property
    def weak_signature(self) -> bool:
        return self.signature_hash in ("md5", "sha1")


def key_facts(der: bytes) -> KeyFacts | None:
    """The certificate's key type and size and its signature hash (cryptography)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            kind, bits = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            kind, bits = "EC", key.curve.key_size
        elif isinstance(key, dsa.DSAPublicKey):
            kind, bits = "DSA", key.key_size
        else:
            kind, bits = type(key).__name__.replace("PublicKey", ""), 256
        algorithm = cert.signature_hash_algorithm
        return KeyFacts(kind, bits, algorithm.name if algorithm is not None else "")
    except Exception:  # a certificate we cannot read is judged by what tlsinfo read
        return None


def certificate_findings(
    cert: CertInfo,
    key: KeyFacts | None,
    host: str,
    failure: TlsFailure | None,
    target: str,
    *,
    trust: str,
    now: float | None = None,
) -> list[Finding]:
    """What is wrong with a certificate, from its facts and the verified handshake's
    failure (None: it verified)."""
    findings: list[Finding] = []
    summary = cert.summary(now)
    evidence = f"{summary}; SAN {', '.join((*cert.san_dns, *cert.san_ips)) or 'none'}"
    if key is not None:
        evidence += f"; key {key.kind} {key.bits} bits, signed with {key.signature_hash or 'n/a'}"

    def add(check_id: str, severity: Severity, text: str) -> None:
        findings.append(
            Finding(check_id, severity, text, hint=_CERT_HINT, evidence=evidence, target=target)
        )

    days = cert.days_left(now)
    if days < 0:
        add("tls-cert-expired", Severity.HIGH, f"the certificate expired {-days:.0f} days ago")
    elif days < WARN_DAYS:
        add("tls-cert-expiring", Severity.LOW, f"the certificate expires in {days:.0f} days")
    if failure is not None and failure.kind == "not-yet-valid":
        add("tls-cert-not-yet-valid", Severity.HIGH, "the certificate is not valid yet")
    if not cert.matches(host) or (failure is not None and failure.kind == "hostname"):
        add(
            "tls-cert-hostname",
            Severity.HIGH,
            f"the certificate does not name the URL's host {host}: browsers refuse it",
        )
    if failure is not None and failure.kind == "self-signed":
        add("tls-cert-self-signed", Severity.HIGH, f"the certificate is self-signed ({trust})")
    elif failure is not None and failure.kind in ("untrusted", "verify"):
        add(
            "tls-cert-untrusted",
            Severity.HIGH,
            f"the certificate does not verify ({trust}): {failure.detail}",
        )
    elif failure is not None and failure.kind not in _CERT_KINDS:
        findings.append(
            Finding(
                "tls-certificate",
                Severity.INFO,
                f"a verified handshake failed ({trust}): {failure.detail}",
                evidence=evidence,
                target=target,
            )
        )
    if key is not None and key.weak_key:
        add(
            "tls-cert-key",
            Severity.MEDIUM,
            f"the certificate's key is weak: {key.kind} {key.bits} bits",
        )
    if key is not None and key.weak_signature:
        add(
            "tls-cert-signature",
            Severity.MEDIUM,
            f"the certificate is signed with {key.signature_hash.upper()}",
        )
    if not findings:
        findings.append(
            Finding(
                "tls-certificate",
                Severity.OK,
                f"the certificate verifies for {host} ({trust}), {days:.0f} days left",
                evidence=evidence,
                target=target,
            )
        )
    return findings


async def tls_certificate(ctx: AuditContext) -> list[Finding]:
    """The certificate of each TLS endpoint: its facts, then a verified handshake."""
    endpoints = _tls_endpoints(ctx)
    if not endpoints:
        return _no_tls(ctx, "tls-certificate")
    deadline = ctx.deadline()
    context = ctx.settings.ssl_context
    trust = "against --ca-file and the system's trust store"
    if context is None or context.verify_mode == ssl.CERT_NONE:
        context = make_ssl_context(None, False)
        trust = "against the system's trust store (--insecure: not against --ca-file)"
        if ctx.settings.ssl_context is None:
            trust = "against the system's trust store"
    found = await asyncio.gather(
        *(_certificate_of(ep, context, trust, deadline) for ep in endpoints)
    )
    return [f for findings in found for f in findings]


async def _certificate_of(
    ep: Endpoint, context: ssl.SSLContext, trust: str, deadline: float
) -> list[Finding]:
    target = _target(ep)
    server = (ep.address, ep.port)
    host = ep.target.url.host
    try:
        # Security level 0: a certificate with a weak key is read, not refused, so it can be
        # named.
        seen = await handshake(server, host, client_context(), deadline)
    except CheckFailure as exc:
        return [_unreachable("tls-certificate", exc, ep)]
    if not seen.accepted or not seen.der:
        return [
            Finding(
                "tls-certificate",
                Severity.INFO,
                f"could not read the certificate: {seen.refused or 'none sent'}",
                target=target,
                skipped=True,
            )
        ]
    cert = parse_cert(seen.der)
    if cert is None:
        return [
            Finding(
                "tls-certificate",
                Severity.INFO,
                "could not parse the server's certificate",
                target=target,
                skipped=True,
            )
        ]
    failure: TlsFailure | None = None
    try:
        channel = await StreamChannel.open(
            server, deadline=deadline, ssl_context=context, server_hostname=host
        )
        await channel.aclose()
    except TlsFailure as exc:
        failure = exc
    except CheckFailure as exc:
        return [_unreachable("tls-certificate", exc, ep)]
    return certificate_findings(cert, key_facts(seen.der), host, failure, target, trust=trust)


# -- DTLS --------------------------------------------------------------------------------------

# TLS_ECDHE_ECDSA/RSA_WITH_AES_128/256_GCM, CHACHA20, and the RSA/AES-CBC fallbacks
_DTLS_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009C, 0x002F, 0x0035)
_DTLS_GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
_DTLS_SIGNATURES = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def dtls_client_hello() -> bytes:
    """One DTLS 1.2 ClientHello record, no cookie (RFC 6347 §4.2.1; RFC 5246 §7.4.1.2)."""
    suites = b"".join(struct.pack("!H", s) for s in _DTLS_SUITES)
    groups = b"".join(struct.pack("!H", g) for g in _DTLS_GROUPS)
    signatures = b"".join(struct.pack("!H", s) for s in _DTLS_SIGNATURES)
    extensions = b"".join(
        (
            _extension(0x000A, struct.pack("!H", len(groups)) + groups),  # supported_groups
            _extension(0x000B, b"\x01\x00"),  # ec_point_formats: uncompressed
            _extension(0x000D, struct.pack("!H", len(signatures)) + signatures),
            _extension(0x0017, b""),  # extended_master_secret
            _extension(0xFF01, b"\x00"),  # renegotiation_info
        )
    )
    body = (
        b"\xfe\xfd"  # client_version DTLS 1.2
        + os.urandom(32)
        + b"\x00"  # session_id
        + b"\x00"  # cookie
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"  # compression: null
        + struct.pack("!H", len(extensions))
        + extensions
    )
    length = struct.pack("!I", len(body))[1:]
    handshake = b"\x01" + length + b"\x00\x00" + b"\x00\x00\x00" + length + body
    # record: handshake(22), DTLS 1.0 on the record layer (RFC 6347 §4.2.1), epoch 0, seq 0
    return b"\x16\xfe\xff" + b"\x00" * 8 + struct.pack("!H", len(handshake)) + handshake


def dtls_answer(data: bytes) -> str | None:
    """What a DTLS record says: 'HelloVerifyRequest', 'ServerHello', 'an alert'; None when
    the datagram is not DTLS."""
    if len(data) < 13 or data[1:3] not in (b"\xfe\xff", b"\xfe\xfd"):
        return None
    if data[0] == 21:
        return "an alert"
    if data[0] != 22 or len(data) < 14:
        return None
    return {3: "HelloVerifyRequest", 2: "ServerHello"}.get(data[13], "a handshake record")


async def dtls(ctx: AuditContext) -> list[Finding]:
    """A DTLS 1.2 ClientHello to each TLS port over UDP (coturn before 4.17 answers DTLS
    there unless no-dtls)."""
    endpoints = _tls_endpoints(ctx)
    if not endpoints:
        return _no_tls(ctx, "dtls")
    deadline = ctx.deadline()
    found = await asyncio.gather(*(_dtls_of(ctx, ep, deadline) for ep in endpoints))
    return list(found)


async def _dtls_of(ctx: AuditContext, ep: Endpoint, deadline: float) -> Finding:
    target = _target(ep, "udp")
    hello = dtls_client_hello()
    limit = min(deadline, asyncio.get_running_loop().time() + ctx.settings.timeout)
    refused = None
    answer = None
    try:
        data = await datagram_exchange(
            (ep.address, ep.port),
            hello,
            lambda d: dtls_answer(d) is not None,
            deadline=limit,
            policy=RAW_POLICY,
        )
        answer = dtls_answer(data) if data is not None else None
    except ConnectFailure as exc:
        refused = exc.detail
    sent = f"a DTLS 1.2 ClientHello ({len(hello)} B) to udp {ep.server}"
    if answer is not None:
        note = ""
        if known_vulnerable(ctx.software, "CVE-2026-73214"):
            note = "; the SOFTWARE's release is in the range of CVE-2026-73214 (DTLS state "
            note += "exhaustion without credentials)"
        return Finding(
            "dtls",
            Severity.INFO,
            f"DTLS is answered on the TLS port over UDP ({answer})",
            hint=_DTLS_HINT,
            evidence=f"{sent} → {answer}{note}",
            target=target,
        )
    why = refused or "no DTLS record came back"
    return Finding(
        "dtls",
        Severity.INFO,
        "DTLS is not answered on the TLS port over UDP",
        evidence=f"{sent} → {why}",
        target=target,
    )


CHECKS: tuple[Check, ...] = (tls_versions, tls_ciphers, tls_certificate, dtls)
