"""What the server offers, each capability proven by the exchange that uses it.

Every check here is INFO (what is offered and what is not, with the exchange that shows
it), except the allocation lifetime: a server that grants allocations for more than an hour
is LOW (`lifetime-long`). Every allocation is made by `checks.allocated` and deleted on
every path; the 401 that the challenge check reads comes from an Allocate without
credentials, which makes no allocation at all.

    mobility                   RFC 8016: an empty MOBILITY-TICKET in the Allocate
    even-port                  RFC 8656 §7.2: EVEN-PORT with R=1, then its RESERVATION-TOKEN
    dont-fragment              RFC 8656 §7.2: DONT-FRAGMENT in the Allocate
    third-party-authorization  RFC 7635 §6: THIRD-PARTY-AUTHORIZATION in the 401
    password-algorithms        RFC 8489 §9.2: the nonce cookie and PASSWORD-ALGORITHMS
    userhash                   RFC 8489 §9.2: the username-anonymity feature bit
    origin                     RFC 8656 §7 (RFC 7635 §5.1 ORIGIN): an ORIGIN in the Allocate
    lifetime-long              RFC 8656 §7.2: LIFETIME 86400 asked, what was granted
    rfc5780                    RFC 5780 §7.3: OTHER-ADDRESS in a Binding response
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from turncheck import stun
from turncheck.advisories import EVEN_PORT_LEAK, identify, known_vulnerable, version_text
from turncheck.audit import AuditContext, Check
from turncheck.checks import allocated, anonymous, open_channel
from turncheck.errors import AuthFailure, CheckFailure, ErrorResponse, UnprotectedAnswer
from turncheck.explain import COTURN, explain, server_family
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.transport import Address
from turncheck.turn import Allocation, Redirect
from turncheck.urls import Transport, fmt_address

ASKED_LIFETIME = 86400  # seconds (a day): the most any server should think of granting
LONG_LIFETIME = 3600  # RFC 8656 §7.2 suggests at most an hour; coturn's default cap
ORIGIN = "https://turncheck.invalid"  # RFC 6761 §6.4: a name that is never anyone's
EVEN_PORT_R = b"\x80"  # RFC 8656 §18.8: R bit set, 7 bits RFFU; aioice pads it to 4 bytes
NONCE_COOKIE = b"obMatJos2"  # RFC 8489 §9.2
PASSWORD_ALGORITHMS = {0x0001: "MD5", 0x0002: "SHA-256"}  # RFC 8489 §18.5


def _target(ep: Endpoint) -> str:
    text = ep.target.url.text
    return text if ep.address in text else f"{text} ({ep.server})"


def _endpoint(ctx: AuditContext) -> Endpoint | None:
    return ctx.turn(Transport.UDP) or ctx.turn()


def _not_run(finding_id: str, why: str, target: str = "", hint: str = "") -> list[Finding]:
    return [Finding(finding_id, Severity.INFO, why, hint=hint, target=target, skipped=True)]


def _unknown(finding_id: str, what: str, exc: CheckFailure | Redirect, ep: Endpoint) -> Finding:
    """A failed exchange that says nothing about the capability."""
    if isinstance(exc, Redirect):
        return Finding(
            finding_id,
            Severity.INFO,
            f"{what} not checked: the server redirects to {fmt_address(exc.alternate)}",
            target=_target(ep),
            skipped=True,
        )
    said = explain(exc, server=ep.server)
    needs = isinstance(exc, AuthFailure) and ep.target.entry.credentials is None
    return Finding(
        finding_id,
        Severity.INFO,
        f"{what} not checked: "
        + ("it needs an allocation, and that needs credentials" if needs else said.reason),
        hint="give -u/-p or --secret-file" if needs else said.hint,
        target=_target(ep),
        skipped=True,
    )


@dataclass(frozen=True, slots=True)
class Granted:
    """One Allocate with extra attributes: the allocation's facts, or the error code."""

    relayed: Address | None = None
    response: dict[str, Any] | None = None  # the success response's attributes
    lifetime: int | None = None
    realm: str | None = None
    software: str | None = None
    code: int | None = None  # the error response's code, when the server refused
    phrase: str = ""
    failure: str = ""  # no answer to judge by (why), when neither came

    @property
    def refused(self) -> str:
        if self.code:
            return f"{self.code} {self.phrase}".strip()
        return self.phrase or "an error without ERROR-CODE"


# Error responses that answer "is this attribute understood?": 420 Unknown Attribute (RFC
# 8489 §6.3.1), 400 Bad Request. Any other code (486 quota, 508 capacity, 403 this client)
# says nothing about the attribute: the check could not tell.
NOT_UNDERSTOOD = frozenset({400, 420})


async def _allocate(
    ctx: AuditContext,
    ep: Endpoint,
    extra: dict[str, Any],
    deadline: float,
    inside: Callable[[Allocation], Awaitable[None]] | None = None,
    answers: frozenset[int] = NOT_UNDERSTOOD,
) -> Granted:
    """One allocation with *extra* Allocate attributes, deleted before this returns; an
    error response whose code is in *answers* becomes a Granted with that code; any other
    failure is raised."""
    server = (ep.address, ep.port)
    try:
        async with allocated(ep, server, ctx.settings, deadline, extra) as (_, allocation):
            if inside is not None:
                await inside(allocation)
            return Granted(
                relayed=allocation.relayed,
                response=dict(allocation.response.attributes) if allocation.response else {},
                lifetime=allocation.lifetime,
                realm=allocation.realm,
                software=allocation.software,
            )
    except ErrorResponse as exc:
        if exc.code not in answers:
            raise
        return Granted(code=exc.code, phrase=exc.phrase, software=exc.software)
    except UnprotectedAnswer as exc:
        # pion answers an attribute it does not know with an unsigned 420: RFC 8489 §9.2.5
        # says to ignore it as an answer, but it is what the server says about the attribute.
        if exc.kind != "error" or exc.code not in answers:
            raise
        phrase = f"{exc.phrase} (without MESSAGE-INTEGRITY)".strip()
        return Granted(code=exc.code, phrase=phrase, software=exc.software)


# -- RFC 8016 mobility ----------------------------------------------------------------------


async def mobility(ctx: AuditContext) -> list[Finding]:
    """RFC 8016: an Allocate with an empty MOBILITY-TICKET is answered with a ticket."""
    ep = _endpoint(ctx)
    if ep is None:
        return _not_run("mobility", "RFC 8016 mobility not checked: no TURN URL")
    try:
        # RFC 8016 §3.3: 405 Mobility Forbidden.
        got = await _allocate(
            ctx, ep, {"MOBILITY-TICKET": b""}, ctx.deadline(), answers=NOT_UNDERSTOOD | {405}
        )
    except (CheckFailure, Redirect) as exc:
        return [_unknown("mobility", "RFC 8016 mobility", exc, ep)]
    asked = "Allocate with an empty MOBILITY-TICKET"
    family = server_family(ctx.software or got.software)
    hint = "coturn: `mobility` turns it on" if family == COTURN else ""
    if got.code is not None:
        return [
            Finding(
                "mobility",
                Severity.INFO,
                f"RFC 8016 mobility not offered: {got.refused}",
                hint=hint,
                evidence=f"{asked}: {got.refused}",
                target=_target(ep),
            )
        ]
    assert got.response is not None
    ticket = got.response.get("MOBILITY-TICKET")
    if ticket:
        return [
            Finding(
                "mobility",
                Severity.INFO,
                "RFC 8016 mobility offered: the Allocate success carries a MOBILITY-TICKET",
                evidence=f"{asked}: success, relay {_where(got)}, MOBILITY-TICKET of "
                f"{len(ticket)} bytes",
                target=_target(ep),
            )
        ]
    return [
        Finding(
            "mobility",
            Severity.INFO,
            "RFC 8016 mobility not offered: the server ignored the MOBILITY-TICKET",
            hint=hint,
            evidence=f"{asked}: success, relay {_where(got)}, no MOBILITY-TICKET in it",
            target=_target(ep),
        )
    ]


def _where(got: Granted) -> str:
    return fmt_address(got.relayed) if got.relayed else "?"


# -- EVEN-PORT and RESERVATION-TOKEN ----------------------------------------------------------


def even_port_harms(software: str | None) -> str | None:
    """Why an EVEN-PORT Allocate may harm this server, from its SOFTWARE (None: no known
    reason). coturn before 4.17.0 kept the odd sibling of an EVEN-PORT relay port reserved
    with nothing to release it (advisories.EVEN_PORT_LEAK, coturn commit 4adbd82e); the
    old rfc5766-turn-server is older still. A version string is evidence, not proof."""
    text = software or ""
    if "rfc5766-turn-server" in text.lower():
        return f"SOFTWARE '{text}' is coturn's predecessor, older than coturn 4.17.0"
    if known_vulnerable(text, EVEN_PORT_LEAK):
        version = identify(text).version
        shown = version_text(version) if version is not None else "?"
        return (
            f"SOFTWARE says coturn {shown}: coturn before 4.17.0 can leak a relay port for "
            "good on an EVEN-PORT Allocate"
        )
    return None


async def even_port(ctx: AuditContext) -> list[Finding]:
    """RFC 8656 §7.2: EVEN-PORT with R=1 gives an even relay port and a RESERVATION-TOKEN;
    an Allocate with that token gets the odd port above it. Skipped on a server whose
    SOFTWARE says it leaks ports on EVEN-PORT; never repeated, never with R=0."""
    ep = _endpoint(ctx)
    if ep is None:
        return _not_run("even-port", "EVEN-PORT not checked: no TURN URL")
    deadline = ctx.deadline()
    software = ctx.software
    if software is None:
        try:
            software = (await _binding(ctx, ep, deadline)).get("SOFTWARE")
        except CheckFailure:
            software = None  # the Allocate below finds out what it can
        software = stun.clean_text(software) if software else None
    harm = even_port_harms(software)
    if harm is not None:
        return _not_run(
            "even-port",
            f"EVEN-PORT not checked, to spare the server: {harm}",
            _target(ep),
            hint="upgrade coturn to 4.17.0 or later",
        )
    reserved: list[Granted] = []

    async def redeem(first: Allocation) -> None:
        token = first.response.attributes.get("RESERVATION-TOKEN") if first.response else None
        if not token:
            return
        # One Allocate with the token, while the first allocation lives (§7.2: no EVEN-PORT
        # beside a RESERVATION-TOKEN). A token the server cannot find: 508 (§7.2), coturn's 404.
        try:
            reserved.append(
                await _allocate(
                    ctx,
                    ep,
                    {"RESERVATION-TOKEN": bytes(token)},
                    deadline,
                    answers=frozenset({400, 404, 508}),
                )
            )
        except (CheckFailure, Redirect) as exc:
            said = explain(exc).reason if isinstance(exc, CheckFailure) else str(exc)
            reserved.append(Granted(failure=said))

    try:
        got = await _allocate(ctx, ep, {"EVEN-PORT": EVEN_PORT_R}, deadline, redeem)
    except (CheckFailure, Redirect) as exc:
        return [_unknown("even-port", "EVEN-PORT", exc, ep)]
    asked = "Allocate with EVEN-PORT (R=1)"
    if got.code is not None:
        return [
            Finding(
                "even-port",
                Severity.INFO,
                f"EVEN-PORT not offered: {got.refused}",
                evidence=f"{asked}: {got.refused}",
                target=_target(ep),
            )
        ]
    assert got.relayed is not None and got.response is not None
    port = got.relayed[1]
    token = got.response.get("RESERVATION-TOKEN")
    evidence = f"{asked}: relay {_where(got)}"
    if port % 2:
        finding = f"EVEN-PORT ignored: the relay port {port} is odd"
    elif not token:
        finding = f"EVEN-PORT offered without a reservation: even port {port}, no token"
        evidence += ", no RESERVATION-TOKEN"
    else:
        evidence += f", RESERVATION-TOKEN of {len(token)} bytes"
        finding, said = _redeemed(port, got, reserved[0] if reserved else None)
        evidence += f"; Allocate with the token: {said}"
    return [Finding("even-port", Severity.INFO, finding, evidence=evidence, target=_target(ep))]


def _redeemed(port: int, first: Granted, second: Granted | None) -> tuple[str, str]:
    if second is None or second.failure:
        said = f"no answer to judge by: {second.failure}" if second else "not made"
        return f"EVEN-PORT offered: even port {port} and a RESERVATION-TOKEN", said
    if second.code is not None:
        return (
            f"EVEN-PORT offered, but its RESERVATION-TOKEN was refused ({second.refused})",
            second.refused,
        )
    said = f"relay {_where(second)}"
    assert first.relayed is not None
    if second.relayed == (first.relayed[0], port + 1):
        return f"EVEN-PORT and RESERVATION-TOKEN offered: ports {port} and {port + 1}", said
    return (
        f"EVEN-PORT offered, but its RESERVATION-TOKEN gave {_where(second)}, not port {port + 1}",
        said,
    )


# -- DONT-FRAGMENT ----------------------------------------------------------------------------


async def dont_fragment(ctx: AuditContext) -> list[Finding]:
    """RFC 8656 §7.2: a server that cannot set DF on relayed packets answers 420."""
    ep = _endpoint(ctx)
    if ep is None:
        return _not_run("dont-fragment", "DONT-FRAGMENT not checked: no TURN URL")
    try:
        got = await _allocate(ctx, ep, {"DONT-FRAGMENT": None}, ctx.deadline())
    except (CheckFailure, Redirect) as exc:
        return [_unknown("dont-fragment", "DONT-FRAGMENT", exc, ep)]
    asked = "Allocate with DONT-FRAGMENT"
    if got.code is None:
        finding = "DONT-FRAGMENT offered: the Allocate with it succeeded"
        evidence = f"{asked}: success, relay {_where(got)}"
    else:
        finding = f"DONT-FRAGMENT not offered: {got.refused}"
        evidence = f"{asked}: {got.refused}"
    return [Finding("dont-fragment", Severity.INFO, finding, evidence=evidence, target=_target(ep))]


# -- the 401: third-party authorization, password algorithms, USERHASH ------------------------


async def _challenge(ctx: AuditContext, ep: Endpoint, deadline: float) -> stun.Message | None:
    """The 401 to an Allocate without credentials (no allocation is made); None when the
    server granted that Allocate (then deleted) without asking."""
    async with anonymous(ep, ctx.settings, deadline) as allocation:
        try:
            await allocation.allocate(deadline)
        except AuthFailure:
            return allocation.challenge
    return None


@dataclass(frozen=True, slots=True)
class NonceCookie:
    """RFC 8489 §9.2: "obMatJos2" and the 24-bit security feature set (base64, 4 chars)."""

    features: int

    @property
    def password_algorithms(self) -> bool:
        # Erratum 6290: bit 0 is the rightmost; some servers set the leftmost as the
        # RFC's prose reads. Either means "password algorithms".
        return bool(self.features & 0x000001 or self.features & 0x800000)

    @property
    def username_anonymity(self) -> bool:
        return bool(self.features & 0x000002 or self.features & 0x400000)


def nonce_cookie(nonce: bytes) -> NonceCookie | None:
    """The nonce cookie of a NONCE, or None when it has none (or a malformed one)."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return None
    try:
        raw = base64.b64decode(nonce[9:13], validate=True)
    except ValueError:
        return None
    return NonceCookie(int.from_bytes(raw, "big"))


def password_algorithms(value: bytes) -> list[str]:
    """RFC 8489 §14.11 PASSWORD-ALGORITHMS: (algorithm, length, parameters padded to 4)."""
    names: list[str] = []
    pos = 0
    for _ in range(64):  # bounded
        if pos + 4 > len(value):
            break
        algorithm, length = struct.unpack_from("!HH", value, pos)
        names.append(PASSWORD_ALGORITHMS.get(algorithm, f"0x{algorithm:04x}"))
        pos += 4 + length + (-length % 4)
    return names


async def challenge(ctx: AuditContext) -> list[Finding]:
    """What the 401 offers: RFC 7635 third-party authorization, RFC 8489 password
    algorithms and username anonymity (USERHASH)."""
    ep = _endpoint(ctx)
    ids = ("third-party-authorization", "password-algorithms", "userhash")
    if ep is None:
        return [f for i in ids for f in _not_run(i, "the 401 not checked: no TURN URL")]
    try:
        message = await _challenge(ctx, ep, ctx.deadline())
    except (CheckFailure, Redirect) as exc:
        return [_unknown(i, "the 401's offer", exc, ep) for i in ids]
    if message is None:
        why = "the 401 not checked: the server granted an Allocate without credentials"
        return [f for i in ids for f in _not_run(i, why, _target(ep))]
    return challenge_findings(message.attributes, _target(ep))


def challenge_findings(attrs: dict[str, Any], target: str) -> list[Finding]:
    """The 401's attributes judged (pure: no exchange)."""
    out: list[Finding] = []
    third = attrs.get("THIRD-PARTY-AUTHORIZATION")
    if third:
        out.append(
            Finding(
                "third-party-authorization",
                Severity.INFO,
                "RFC 7635 third-party authorization (OAuth) offered",
                evidence=f"401 with THIRD-PARTY-AUTHORIZATION '{stun.clean_text(third)}'",
                target=target,
            )
        )
    else:
        out.append(
            Finding(
                "third-party-authorization",
                Severity.INFO,
                "RFC 7635 third-party authorization not offered",
                evidence="401 without THIRD-PARTY-AUTHORIZATION",
                target=target,
            )
        )
    nonce = bytes(attrs.get("NONCE") or b"")
    cookie = nonce_cookie(nonce)
    offered = attrs.get("PASSWORD-ALGORITHMS")
    names = password_algorithms(bytes(offered)) if offered else []
    nonce_said = (
        f"NONCE with the nonce cookie, feature bits 0x{cookie.features:06x}"
        if cookie is not None
        else f"NONCE of {len(nonce)} bytes without the {NONCE_COOKIE.decode()} cookie"
    )
    listed = f"PASSWORD-ALGORITHMS {', '.join(names)}" if names else "no PASSWORD-ALGORITHMS"
    if names and cookie is not None and cookie.password_algorithms:
        finding = f"RFC 8489 password algorithms offered: {', '.join(names)}"
    elif names or (cookie is not None and cookie.password_algorithms):
        finding = (
            "RFC 8489 password algorithms half offered: the nonce cookie and the list disagree"
        )
    else:
        finding = "RFC 8489 password algorithms not offered: MD5 long-term credentials only"
    out.append(
        Finding(
            "password-algorithms",
            Severity.INFO,
            finding,
            evidence=f"401: {nonce_said}, {listed}",
            target=target,
        )
    )
    anonymous = cookie is not None and cookie.username_anonymity
    out.append(
        Finding(
            "userhash",
            Severity.INFO,
            f"RFC 8489 username anonymity (USERHASH) {'offered' if anonymous else 'not offered'}",
            evidence=f"401: {nonce_said}",
            target=target,
        )
    )
    return out


# -- ORIGIN -----------------------------------------------------------------------------------


async def origin(ctx: AuditContext) -> list[Finding]:
    """An ORIGIN in the Allocate: refused, accepted, or used to pick another realm (coturn
    picks the realm by ORIGIN, and with check-origin-consistency holds the session to it)."""
    ep = _endpoint(ctx)
    if ep is None:
        return _not_run("origin", "ORIGIN not checked: no TURN URL")
    deadline = ctx.deadline()

    try:
        # 403: the server refuses this ORIGIN (RFC 7635 §5.1 lets it pick the realm by it).
        got = await _allocate(ctx, ep, {"ORIGIN": ORIGIN}, deadline, answers=NOT_UNDERSTOOD | {403})
        plain = await _challenge(ctx, ep, deadline) if got.code is None else None
    except (CheckFailure, Redirect) as exc:
        return [_unknown("origin", "ORIGIN", exc, ep)]
    asked = f"Allocate with ORIGIN {ORIGIN}"
    if got.code is not None:
        finding = f"ORIGIN refused: {got.refused}"
        evidence = f"{asked}: {got.refused}"
    else:
        realm = plain.attributes.get("REALM") if plain is not None else None
        evidence = f"{asked}: success in realm '{got.realm}'"
        if realm is not None and str(realm) != got.realm:
            finding = f"ORIGIN picks the realm: '{got.realm}' instead of '{realm}'"
            evidence += f"; without ORIGIN the realm is '{realm}'"
        else:
            finding = "ORIGIN accepted, with no visible effect (the same realm)"
            if realm is not None:
                evidence += ", as without ORIGIN"
    return [Finding("origin", Severity.INFO, finding, evidence=evidence, target=_target(ep))]


# -- LIFETIME ---------------------------------------------------------------------------------


async def lifetime(ctx: AuditContext) -> list[Finding]:
    """The largest allocation lifetime granted: LIFETIME 86400 asked in the Allocate."""
    ep = _endpoint(ctx)
    if ep is None:
        return _not_run("lifetime-long", "the allocation lifetime not checked: no TURN URL")
    try:
        got = await _allocate(ctx, ep, {"LIFETIME": ASKED_LIFETIME}, ctx.deadline())
    except (CheckFailure, Redirect) as exc:
        return [_unknown("lifetime-long", "the allocation lifetime", exc, ep)]
    asked = f"Allocate with LIFETIME {ASKED_LIFETIME}"
    if got.code is not None or got.lifetime is None:
        said = got.refused if got.code is not None else "success without LIFETIME"
        return [
            Finding(
                "lifetime-long",
                Severity.INFO,
                f"could not tell the largest lifetime granted: {said}",
                evidence=f"{asked}: {said}",
                target=_target(ep),
            )
        ]
    evidence = f"{asked}: granted {got.lifetime} s, relay {_where(got)}"
    if got.lifetime <= LONG_LIFETIME:
        return [
            Finding(
                "lifetime-long",
                Severity.OK,
                f"allocations last at most {got.lifetime} s (asked {ASKED_LIFETIME} s)",
                evidence=evidence,
                target=_target(ep),
            )
        ]
    family = server_family(ctx.software or got.software)
    hint = (
        "coturn: lower max-allocate-lifetime (default 3600)"
        if family == COTURN
        else "cap the allocation lifetime at 3600 s or less in the server's configuration"
    )
    return [
        Finding(
            "lifetime-long",
            Severity.LOW,
            f"allocations are granted for {got.lifetime} s: a client that vanishes holds its "
            "relay port that long",
            hint=hint,
            evidence=evidence,
            target=_target(ep),
        )
    ]


# -- RFC 5780 ---------------------------------------------------------------------------------


async def _binding(ctx: AuditContext, ep: Endpoint, deadline: float) -> dict[str, Any]:
    """The attributes of a Binding response from the endpoint (one transaction)."""
    server = (ep.address, ep.port)
    async with open_channel(ep, server, ctx.settings, deadline) as channel:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        answer = await channel.request(
            request,
            server,
            deadline=deadline,
            policy=ctx.settings.policy,
            what=f"STUN Binding ({ep.target.transport.value})",
        )
    return dict(answer.message.attributes)


async def rfc5780(ctx: AuditContext) -> list[Finding]:
    """RFC 5780 §7.3: a server that can run the NAT behaviour tests says where its other
    address is (OTHER-ADDRESS) in every Binding response. Over UDP, of any URL."""
    udp = [ep for ep in ctx.endpoints if ep.target.transport is Transport.UDP]
    if not udp:
        return _not_run("rfc5780", "RFC 5780 not checked: no URL over UDP")
    ep = udp[0]
    try:
        attrs = await _binding(ctx, ep, ctx.deadline())
    except CheckFailure as exc:
        return [_unknown("rfc5780", "RFC 5780", exc, ep)]
    other = attrs.get("OTHER-ADDRESS")
    origin_of = attrs.get("RESPONSE-ORIGIN")
    said = "Binding: " + (
        f"OTHER-ADDRESS {fmt_address((str(other[0]), int(other[1])))}"
        if other
        else "no OTHER-ADDRESS"
    )
    if origin_of:
        said += f", RESPONSE-ORIGIN {fmt_address((str(origin_of[0]), int(origin_of[1])))}"
    if other:
        return [
            Finding(
                "rfc5780",
                Severity.INFO,
                "RFC 5780 NAT behaviour discovery offered",
                hint="not needed to relay: hardening guides turn it off unless clients use it "
                "(coturn: no-rfc5780)",
                evidence=said,
                target=_target(ep),
            )
        ]
    return [
        Finding(
            "rfc5780",
            Severity.INFO,
            "RFC 5780 NAT behaviour discovery not offered",
            evidence=said,
            target=_target(ep),
        )
    ]


CHECKS: tuple[Check, ...] = (
    mobility,
    even_port,
    dont_fragment,
    challenge,
    origin,
    lifetime,
    rfc5780,
)
