"""What anyone on the Internet gets from the server, without credentials.

    open-relay          an Allocate without credentials that succeeds: CRITICAL (deleted
                        at once); refused with 401: OK
    binding-needs-auth  a Binding answered 401 (coturn's secure-stun): INFO
    amplification       answer bytes ÷ request bytes over UDP, for the Binding and for the
                        unauthenticated Allocate's 401: LOW above ×2 (AMPLIFICATION_LIMIT),
                        or above the RFC-minimal answer's ratio where that is higher
    rfc3489-answered    a classic RFC 3489 Binding (no magic cookie) answered: LOW

Reflection needs a spoofable source address, so it is measured over UDP only. The sizes
are the datagrams' own bytes (not a re-encoding), taken on a connected UDP socket of their
own: transport.DatagramPeer, which also serves tls.py's DTLS probe.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from turncheck import stun
from turncheck.audit import AuditContext, Check
from turncheck.checks import allocated, open_channel
from turncheck.errors import AuthFailure, CheckFailure, ErrorResponse
from turncheck.explain import explain
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.transport import DatagramPeer, RetryPolicy, datagram_exchange
from turncheck.turn import Redirect
from turncheck.urls import Transport, fmt_address

# Above this answer-to-request ratio the server is worth abusing as a reflector, and it is
# its own doing: RFC 8489's smallest Binding answer over IPv4 is 32 B for a 20 B request
# (×1.6), so an answer above ×2 carries attributes no client needs (SOFTWARE, RFC 3489's
# MAPPED-ADDRESS, RFC 5780's RESPONSE-ORIGIN and OTHER-ADDRESS) or, for a 401, a long
# reason phrase, realm or nonce. coturn trimmed each of these by default for this reason
# (4.7.0: no RFC 5780 and no SOFTWARE by default; 4.10.0: no reason phrases; 4.14.0: a rate
# limit on 401s). Over IPv6 the smallest Binding answer is 44 B (×2.2): the limit is then
# that ratio, never below what the RFC requires.
AMPLIFICATION_LIMIT = 2.0
RTO = 0.5  # the raw exchanges' first retransmission timeout (RFC 8489 §6.2.1)
SENDS = 3  # a raw exchange is sent at most this often
# RTO, 2·RTO, 4·RTO: doubling to the last send, with no long last wait (RFC 8489's Rm).
RAW_POLICY = RetryPolicy(rto=RTO, max_sends=SENDS, last_wait_factor=2 ** (SENDS - 1))
_COOKIE = 0x2112A442
_SUCCESS = 0x0100
_ERROR = 0x0110
_CLASS_BITS = 0x0110

_ATTRIBUTE_NAMES = {  # RFC 3489 §11.2, RFC 8489 §18.3, RFC 8656 §18, RFC 5780 §7
    0x0001: "MAPPED-ADDRESS",
    0x0002: "RESPONSE-ADDRESS",
    0x0004: "SOURCE-ADDRESS",
    0x0005: "CHANGED-ADDRESS",
    0x0006: "USERNAME",
    0x0008: "MESSAGE-INTEGRITY",
    0x0009: "ERROR-CODE",
    0x000A: "UNKNOWN-ATTRIBUTES",
    0x000B: "REFLECTED-FROM",
    0x000D: "LIFETIME",
    0x0014: "REALM",
    0x0015: "NONCE",
    0x0016: "XOR-RELAYED-ADDRESS",
    0x0020: "XOR-MAPPED-ADDRESS",
    0x8002: "PASSWORD-ALGORITHMS",
    0x8003: "ALTERNATE-DOMAIN",
    0x8022: "SOFTWARE",
    0x8023: "ALTERNATE-SERVER",
    0x8028: "FINGERPRINT",
    0x802B: "RESPONSE-ORIGIN",
    0x802C: "OTHER-ADDRESS",
    0x802E: "THIRD-PARTY-AUTHORIZATION",
}

_OPEN_RELAY_HINT = (
    "require credentials: coturn: remove no-auth, set lt-cred-mech (user=...) or "
    "use-auth-secret with static-auth-secret; pion/turn: an AuthHandler that returns no key "
    "for unknown users; ejabberd_stun: auth_type: user"
)
_AMPLIFICATION_HINT = (
    "answer with fewer bytes: coturn: no-software-attribute (before 4.7.0), no-rfc5780, "
    "response-origin-only-with-rfc5780 and no-stun-backward-compatibility (4.6; the default "
    "from 4.7.0), "
    "unauthorized-ratelimit (4.14.0 and later) for the 401s, and 4.10.0 and later send no "
    "reason phrases; eturnal: software_name: none; ejabberd_stun: a short server_name; any "
    "server: a short realm, no SOFTWARE"
)
_RFC3489_HINT = (
    "stop answering classic STUN: coturn before 4.7.0: no-stun-backward-compatibility; "
    "4.7.0 to 4.15 answer it only with stun-backward-compatibility, 4.16 and later only with "
    "rfc3489-compatibility: remove it; p1_stun (eturnal, ejabberd_stun) answers it with no "
    "setting to stop it: drop UDP whose bytes 4-7 are not the magic cookie 0x2112A442 at the "
    "firewall"
)


# -- raw datagrams -----------------------------------------------------------------------------


def _answer_to(transaction_id: bytes) -> Callable[[bytes], bool]:
    """Accept a response (success or error) carrying this transaction ID: the 12 bytes
    after the magic cookie, or RFC 3489's 16 after the length."""
    start = 20 - len(transaction_id)

    def accept(data: bytes) -> bool:
        if len(data) < 20 or data[0] & 0xC0:
            return False
        kind = struct.unpack_from("!H", data, 0)[0] & _CLASS_BITS
        return kind in (_SUCCESS, _ERROR) and data[start:20] == transaction_id

    return accept


# -- sizes ---------------------------------------------------------------------------------


def attribute_sizes(data: bytes) -> tuple[tuple[str, int], ...]:
    """Each attribute of a STUN answer (classic or not) with its bytes on the wire."""
    out: list[tuple[str, int]] = []
    pos = 20
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        size = 4 + length + (-length % 4)
        out.append((_ATTRIBUTE_NAMES.get(kind, f"0x{kind:04x}"), size))
        pos += size
    return tuple(out)


def _error(data: bytes) -> tuple[int, str] | None:
    """(code, phrase) of an error answer; None for a success."""
    if struct.unpack_from("!H", data, 0)[0] & _CLASS_BITS != _ERROR:
        return None
    pos = 20
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        if kind == 0x0009 and length >= 4 and pos + 4 + length <= len(data):
            value = data[pos + 4 : pos + 4 + length]
            phrase = stun.clean_text(value[4:].decode("utf-8", "replace"), 40)
            return (value[2] & 0x07) * 100 + value[3], phrase
        pos += 4 + length + (-length % 4)
    return 0, ""


def answer_kind(data: bytes) -> str:
    """'success', or '401 Unauthorized' for an error (its code and phrase)."""
    error = _error(data)
    if error is None:
        return "success"
    return f"{error[0]} {error[1]}".strip() if error[0] else "error"


# What an answer must carry (RFC 8489 §9.2.4, §14.2, §14.8; RFC 8656 §7.3; RFC 3489
# §11.1), by the size it has in the answer: everything else can go.
_REQUIRED_SUCCESS: dict[str, tuple[str, ...]] = {
    "Allocate": ("XOR-RELAYED-ADDRESS", "XOR-MAPPED-ADDRESS", "LIFETIME"),
    "classic Binding": ("MAPPED-ADDRESS",),
}
_REQUIRED_CHALLENGE = ("REALM", "NONCE")  # a 401 or 438, beside ERROR-CODE without a phrase


def minimal_answer(what: str, data: bytes, family: int) -> int:
    """The smallest answer the RFCs allow to that request, given the realm, nonce and
    addresses this answer carries."""
    sizes = attribute_sizes(data)
    error = _error(data)
    if error is not None:
        challenge = _REQUIRED_CHALLENGE if error[0] in (401, 438) else ()
        return 20 + 8 + sum(size for name, size in sizes if name in challenge)
    if what == "Binding":
        return 20 + 4 + (20 if family == socket.AF_INET6 else 8)  # XOR-MAPPED-ADDRESS
    needed = _REQUIRED_SUCCESS.get(what, ())
    return 20 + sum(size for name, size in sizes if name in needed)


@dataclass(frozen=True, slots=True)
class Reflection:
    """One request and its answer over UDP, in bytes."""

    what: str  # "Binding", "Allocate", "classic Binding"
    request: int
    answer: int
    kind: str  # "success", "401 Unauthorized"
    attributes: tuple[tuple[str, int], ...] = ()
    minimal: int = 0  # the smallest answer the RFCs allow to this request

    @property
    def factor(self) -> float:
        return self.answer / self.request

    @property
    def limit(self) -> float:
        """AMPLIFICATION_LIMIT, or the RFC-minimal answer's ratio when that is above it."""
        return max(AMPLIFICATION_LIMIT, self.minimal / self.request)

    @property
    def amplifies(self) -> bool:
        return self.factor > self.limit

    def describe(self) -> str:
        parts = ", ".join(f"{name} {size}" for name, size in self.attributes)
        inside = f": {parts}" if parts else ""
        return (
            f"{self.what} {self.request} B → {self.kind} {self.answer} B "
            f"(×{self.factor:.1f}{inside}; the RFC minimum is {self.minimal} B)"
        )


def reflection_of(what: str, request: bytes, answer: bytes, family: int) -> Reflection:
    """A Reflection from the bytes sent and received."""
    return Reflection(
        what,
        len(request),
        len(answer),
        answer_kind(answer),
        attribute_sizes(answer),
        minimal_answer(what, answer, family),
    )


def judge_reflection(reflections: list[Reflection], target: str, where: str) -> Finding:
    """LOW amplification when an answer exceeds its limit, OK otherwise; the figures as
    evidence."""
    evidence = f"{where}: " + "; ".join(r.describe() for r in reflections)
    over = [r for r in reflections if r.amplifies]
    if over:
        named = ", ".join(
            f"the {r.what}'s {r.kind} ×{r.factor:.1f} (limit ×{r.limit:.1f})" for r in over
        )
        return Finding(
            "amplification",
            Severity.LOW,
            f"answers amplify spoofed requests beyond what the protocol needs: {named}",
            hint=_AMPLIFICATION_HINT,
            evidence=evidence,
            target=target,
        )
    worst = max(reflections, key=lambda r: r.factor)
    return Finding(
        "amplification",
        Severity.OK,
        f"answers stay within their limits (worst: the {worst.what}'s {worst.kind} "
        f"×{worst.factor:.1f}, limit ×{worst.limit:.1f})",
        evidence=evidence,
        target=target,
    )


# -- helpers -----------------------------------------------------------------------------------


def target_of(ep: Endpoint) -> str:
    """How findings name an endpoint: host:port/transport."""
    return f"{ep.server}/{ep.target.transport.value}"


def _hosts(ctx: AuditContext) -> str:
    return ", ".join(ctx.hosts) or ", ".join(dict.fromkeys(ep.address for ep in ctx.endpoints))


def _first(ctx: AuditContext, *transports: Transport) -> Endpoint | None:
    for transport in transports:
        for ep in ctx.endpoints:
            if ep.target.transport is transport:
                return ep
    return None


def _exchange_deadline(ctx: AuditContext, deadline: float) -> float:
    return min(deadline, asyncio.get_running_loop().time() + ctx.settings.timeout)


def _without_credentials(ep: Endpoint) -> Endpoint:
    entry = replace(ep.target.entry, credentials=None, credential_source="none")
    return replace(ep, target=replace(ep.target, entry=entry))


def _could_not_tell(check_id: str, exc: CheckFailure, ep: Endpoint, what: str) -> Finding:
    words = explain(exc, server=ep.server)
    reason = words.reason
    return Finding(
        check_id,
        Severity.INFO,
        f"could not tell {what}: {reason}",
        hint=words.hint,
        evidence=reason,
        target=target_of(ep),
        skipped=True,
    )


def _code(code: int, phrase: str) -> str:
    return f"{code} {phrase}".strip()


def _skipped(check_id: str, why: str, target: str) -> Finding:
    return Finding(check_id, Severity.INFO, why, target=target, skipped=True)


def _binding() -> stun.Message:
    # Chromium's srflx Binding: no attribute at all (stun_port.cc StunBindingRequest).
    return stun.Message(stun.Method.BINDING, stun.Class.REQUEST)


def _anonymous_allocate() -> stun.Message:
    return stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.REQUEST,
        attributes={"REQUESTED-TRANSPORT": stun.REQUESTED_TRANSPORT_UDP},
    )


# -- open relay ----------------------------------------------------------------------------


async def open_relay(ctx: AuditContext) -> list[Finding]:
    """An Allocate without credentials: success is an open relay (and is deleted at once)."""
    ep = ctx.turn(Transport.UDP, Transport.TCP, Transport.TLS)
    if ep is None:
        return [_skipped("open-relay", "no turn: URL: no Allocate to try", _hosts(ctx))]
    target = target_of(ep)
    server = (ep.address, ep.port)
    deadline = ctx.deadline()
    sent = f"Allocate without USERNAME or MESSAGE-INTEGRITY over {ep.target.transport.value}"
    try:
        async with allocated(_without_credentials(ep), server, ctx.settings, deadline) as (
            _,
            allocation,
        ):
            relayed = fmt_address(allocation.relayed) if allocation.relayed else "?"
            granted = f"XOR-RELAYED-ADDRESS {relayed}, LIFETIME {allocation.lifetime} s"
        deleted = "deleted with Refresh LIFETIME=0" if allocation.deleted else "NOT deleted"
        return [
            Finding(
                "open-relay",
                Severity.CRITICAL,
                "open relay: an Allocate without credentials succeeded; anyone can relay "
                "through this server",
                hint=_OPEN_RELAY_HINT,
                evidence=f"{sent} → success: {granted}; {deleted}",
                target=target,
            )
        ]
    except AuthFailure as exc:
        return [
            Finding(
                "open-relay",
                Severity.OK,
                f"an Allocate without credentials is refused ({_code(exc.code, exc.phrase)})",
                evidence=f"{sent} → {_code(exc.code, exc.phrase)}",
                target=target,
            )
        ]
    except ErrorResponse as exc:
        return [
            Finding(
                "open-relay",
                Severity.OK,
                f"an Allocate without credentials is refused with {_code(exc.code, exc.phrase)}",
                evidence=f"{sent} → {_code(exc.code, exc.phrase)}",
                target=target,
            )
        ]
    except Redirect as redirect:
        alternate = fmt_address(redirect.alternate)
        return [
            Finding(
                "open-relay",
                Severity.INFO,
                f"an Allocate without credentials is redirected to {alternate} (300 Try "
                "Alternate): audit that server too",
                evidence=f"{sent} → 300 ALTERNATE-SERVER {alternate}",
                target=target,
                skipped=True,
            )
        ]
    except CheckFailure as exc:
        return [_could_not_tell("open-relay", exc, ep, "whether it relays for anyone")]


# -- Binding needs authentication -----------------------------------------------------------


async def binding_auth(ctx: AuditContext) -> list[Finding]:
    """Whether a Binding without credentials is answered (coturn's secure-stun says 401)."""
    ep = _first(ctx, Transport.UDP, Transport.TCP, Transport.TLS)
    if ep is None:
        return [_skipped("binding-needs-auth", "no endpoint to send a Binding to", _hosts(ctx))]
    target = target_of(ep)
    server = (ep.address, ep.port)
    deadline = ctx.deadline()
    sent = f"Binding without attributes over {ep.target.transport.value}"
    try:
        async with open_channel(ep, server, ctx.settings, deadline) as channel:
            answer = await channel.request(
                _binding(),
                server,
                deadline=_exchange_deadline(ctx, deadline),
                policy=ctx.settings.policy,
                what=f"STUN Binding ({ep.target.transport.value})",
            )
    except CheckFailure as exc:
        return [_could_not_tell("binding-needs-auth", exc, ep, "whether Binding needs auth")]
    response = answer.message
    if response.message_class != stun.Class.ERROR:
        return [
            Finding(
                "binding-needs-auth",
                Severity.OK,
                "Binding is answered without credentials, as browsers' STUN needs",
                evidence=f"{sent} → success",
                target=target,
            )
        ]
    code, phrase = stun.error_of(response)
    if code == 401:
        return [
            Finding(
                "binding-needs-auth",
                Severity.INFO,
                "Binding needs credentials (401; coturn's secure-stun): browsers send STUN "
                "Binding without any, so stun: URLs of this server give them no srflx "
                "candidate (their TURN allocations still do)",
                hint=(
                    "intended when the server is TURN-only; if browsers get stun: URLs of this "
                    "server, remove secure-stun"
                ),
                evidence=f"{sent} → {_code(code, phrase)}",
                target=target,
            )
        ]
    return [
        Finding(
            "binding-needs-auth",
            Severity.INFO,
            f"Binding without credentials is refused with {_code(code, phrase)}",
            evidence=f"{sent} → {_code(code, phrase)}",
            target=target,
        )
    ]


# -- reflection and amplification -------------------------------------------------------------


async def reflection(ctx: AuditContext) -> list[Finding]:
    """The Binding's and the unauthenticated Allocate's answer sizes against the request's."""
    ep = _first(ctx, Transport.UDP)
    if ep is None:
        return [
            _skipped(
                "amplification",
                "no UDP endpoint: reflection needs a spoofable source, so UDP only",
                _hosts(ctx),
            )
        ]
    target = target_of(ep)
    deadline = ctx.deadline()
    reflections: list[Reflection] = []
    notes: list[str] = []
    try:
        request = bytes(_binding())
        data = await datagram_exchange(
            (ep.address, ep.port),
            request,
            _answer_to(request[8:20]),
            deadline=_exchange_deadline(ctx, deadline),
            policy=RAW_POLICY,
        )
        if data is not None:
            reflections.append(reflection_of("Binding", request, data, ep.family))
        turn = ctx.turn(Transport.UDP)
        if turn is not None:
            async with DatagramPeer((turn.address, turn.port)) as peer:
                allocate = _anonymous_allocate()
                request = bytes(allocate)
                data = await peer.exchange(
                    request,
                    _answer_to(request[8:20]),
                    deadline=_exchange_deadline(ctx, deadline),
                    policy=RAW_POLICY,
                )
                if data is not None:
                    reflections.append(reflection_of("Allocate", request, data, turn.family))
                    if answer_kind(data) == "success":
                        notes.append(await _delete_raw(peer, _exchange_deadline(ctx, deadline)))
    except CheckFailure as exc:
        return [_could_not_tell("amplification", exc, ep, "how much the answers amplify")]
    if not reflections:
        return [
            Finding(
                "amplification",
                Severity.INFO,
                "could not tell how much the answers amplify: no answer over UDP",
                evidence=f"udp {ep.server}: Binding unanswered after {SENDS} sends",
                target=target,
                skipped=True,
            )
        ]
    finding = judge_reflection(reflections, target, f"udp {ep.server}")
    if notes:
        finding = replace(finding, evidence=f"{finding.evidence}; {'; '.join(notes)}")
    return [finding]


async def _delete_raw(peer: DatagramPeer, deadline: float) -> str:
    """An unauthenticated Allocate that succeeded (an open relay): delete it at once."""
    refresh = bytes(
        stun.Message(stun.Method.REFRESH, stun.Class.REQUEST, attributes={"LIFETIME": 0})
    )
    try:
        answer = await peer.exchange(
            refresh, _answer_to(refresh[8:20]), deadline=deadline, policy=RAW_POLICY
        )
    except CheckFailure:
        answer = None
    except asyncio.CancelledError:
        peer.send(refresh)  # one last Refresh(0) on the way out, unanswered
        raise
    if answer is not None and answer_kind(answer) == "success":
        return "the Allocate succeeded without credentials and was deleted (Refresh 0)"
    return "the Allocate succeeded without credentials and could NOT be deleted"


# -- classic RFC 3489 requests ------------------------------------------------------------------


def classic_binding() -> tuple[bytes, bytes]:
    """An RFC 3489 §11.1 Binding Request: type, length 0, a 128-bit transaction ID with no
    magic cookie in its first four bytes. (bytes, transaction ID)."""
    while True:
        transaction = os.urandom(16)
        if struct.unpack_from("!I", transaction, 0)[0] != _COOKIE:
            return struct.pack("!HH", 0x0001, 0) + transaction, transaction


async def rfc3489(ctx: AuditContext) -> list[Finding]:
    """Whether a classic Binding (no magic cookie) is answered, next to a modern one that
    proves the server answers at all.

    LOW when answered: RFC 8489 dropped RFC 3489's requests (RFC 5389 §12 had kept them for
    compatibility); without the magic cookie a server cannot tell STUN from any other UDP
    payload whose first bytes happen to read 0x0001 0x0000, so it answers junk and spoofed
    packets alike; the answers are classic MAPPED-ADDRESS (rewritten by NAT ALGs) plus
    SOURCE-ADDRESS and CHANGED-ADDRESS, bigger than the request; and a FINGERPRINT cannot
    mark them. coturn itself deprecated the path (rfc3489-compatibility, 4.16)."""
    ep = _first(ctx, Transport.UDP)
    if ep is None:
        return [
            _skipped(
                "rfc3489-answered", "no UDP endpoint: classic STUN is UDP only here", _hosts(ctx)
            )
        ]
    target = target_of(ep)
    deadline = ctx.deadline()
    classic, transaction = classic_binding()
    modern = bytes(_binding())
    try:
        async with DatagramPeer((ep.address, ep.port)) as peer:
            both = await asyncio.gather(
                peer.exchange(
                    classic,
                    _answer_to(transaction),
                    deadline=_exchange_deadline(ctx, deadline),
                    policy=RAW_POLICY,
                ),
                peer.exchange(
                    modern,
                    _answer_to(modern[8:20]),
                    deadline=_exchange_deadline(ctx, deadline),
                    policy=RAW_POLICY,
                ),
                return_exceptions=True,
            )
        for outcome in both:
            if isinstance(outcome, BaseException):
                raise outcome
        answered, baseline = (o if isinstance(o, bytes) else None for o in both)
    except CheckFailure as exc:
        return [_could_not_tell("rfc3489-answered", exc, ep, "whether classic STUN is on")]
    sent = f"udp {ep.server}: classic Binding (RFC 3489, no magic cookie) {len(classic)} B"
    if answered is not None:
        shown = reflection_of("classic Binding", classic, answered, ep.family)
        return [
            Finding(
                "rfc3489-answered",
                Severity.LOW,
                "classic RFC 3489 Binding requests (no magic cookie) are answered: any "
                f"20-byte UDP payload of that shape is reflected (×{shown.factor:.1f})",
                hint=_RFC3489_HINT,
                evidence=f"{sent} → {shown.describe().split('→ ', 1)[1]}",
                target=target,
            )
        ]
    if baseline is None:
        return [
            Finding(
                "rfc3489-answered",
                Severity.INFO,
                "could not tell whether classic STUN is answered: no Binding was answered",
                evidence=f"{sent}; an RFC 8489 Binding was unanswered too",
                target=target,
                skipped=True,
            )
        ]
    return [
        Finding(
            "rfc3489-answered",
            Severity.OK,
            "classic RFC 3489 Binding requests (no magic cookie) are not answered",
            evidence=f"{sent} → no answer after {SENDS} sends; an RFC 8489 Binding was answered",
            target=target,
        )
    ]


CHECKS: tuple[Check, ...] = (open_relay, binding_auth, reflection, rfc3489)
