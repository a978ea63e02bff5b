"""Every failure → (code, reason, hint), in one table; and the run's one-line verdict."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from turncheck.browser import BrowserView, browser_like, parse_ice_url, relay_variant
from turncheck.config import rest_expiry
from turncheck.errors import (
    AuthFailure,
    CheckFailure,
    ConnectFailure,
    DnsFailure,
    ErrorResponse,
    ProtocolFailure,
    RedirectedFailure,
    RelayFailure,
    StunOnlyServer,
    TlsFailure,
    TransactionTimeout,
    UnprotectedAnswer,
)
from turncheck.results import CheckResult, Explanation
from turncheck.tlsinfo import WARN_DAYS

# STUN/TURN error codes (RFC 8489 §14.8, RFC 8656 §18.2): (what it means, what to try).
STUN_CODES: dict[int, tuple[str, str]] = {
    300: (
        "the server redirected us (300 Try Alternate)",
        "the alternate server is shown; test it directly",
    ),
    400: (
        "the server found our request malformed (400 Bad Request)",
        "the server may not speak RFC 8489/8656; check its version and logs",
    ),
    401: (
        "the server wants credentials (401 Unauthenticated)",
        "pass -u/--username and -p/--credential",
    ),
    403: (
        "the server forbids this (403 Forbidden)",
        "check the server's access rules for this user and client address",
    ),
    420: (
        "the server does not understand an attribute we sent (420 Unknown Attribute)",
        "the server is probably too old for RFC 8656",
    ),
    437: (
        "the server has another allocation on this 5-tuple (437 Allocation Mismatch)",
        "wait for the old allocation to expire, or retry from another port",
    ),
    438: (
        "the server kept saying our nonce is stale (438 Stale Nonce)",
        "the server's nonce lifetime may be broken; check its clock and stale-nonce setting",
    ),
    440: (
        "the server does not support that address family (440)",
        "probe over the other IP family (-4 or -6)",
    ),
    441: (
        "the server rejected the credentials (441 Wrong Credentials)",
        "check the username and credential",
    ),
    442: (
        "the server does not relay that transport (442 Unsupported Transport Protocol)",
        "the server's relay transport settings exclude UDP",
    ),
    443: ("peer address family mismatch (443)", "use a peer of the relay's address family"),
    486: (
        "this user has too many allocations (486 Allocation Quota Reached)",
        "allocations may be leaking; wait for them to expire or raise the server's "
        "per-user allocation limit",
    ),
    500: ("the server had an internal error (500 Server Error)", "look at the TURN server's logs"),
    508: (
        "the server is out of relay capacity (508 Insufficient Capacity)",
        "raise the server's total allocation limit or widen its relay port range",
    ),
}

# Codes whose meaning depends on the method that drew them.
METHOD_CODES: dict[tuple[str, int], tuple[str, str]] = {
    ("Allocate", 440): (
        "the server has no relay address of the family asked for (440 Address Family not "
        "Supported): browsers ask for none, which means IPv4 (RFC 8656 §7.1)",
        "give the TURN server an IPv4 relay address (coturn: relay-ip; eturnal: relay_ipv4_addr) "
        "as well as its IPv6 one",
    ),
    ("CreatePermission", 403): (
        "the server refuses to relay to that peer address (403 Forbidden)",
        "check the server's rules for peer addresses (coturn: denied-peer-ip / "
        "allowed-peer-ip / allow-loopback-peers; ejabberd/eturnal: turn_blacklist)",
    ),
    ("ChannelBind", 403): (
        "the server refuses to bind a channel to that peer address (403 Forbidden)",
        "check the server's rules for peer addresses (coturn: denied-peer-ip / "
        "allowed-peer-ip / allow-loopback-peers; ejabberd/eturnal: turn_blacklist)",
    ),
}

_RELAY = {
    "broken": (
        "relay path broken: {detail}",
        "check relay-ip / external-ip on the TURN server and the firewall on its relay "
        "ports (min-port..max-port)",
    ),
    "second-allocation": (
        "could not open the second allocation for the relay check: {detail}",
        "the relay check needs two allocations at once: check user-quota and total-quota",
    ),
}

_DNS = {
    "nxdomain": ("the name {name} does not exist in DNS", "check the spelling and the DNS zone"),
    "noanswer": ("{name}: {detail}", "add the missing A/AAAA (or SRV) records, or check -4/-6"),
    "timeout": (
        "DNS lookup of {name} timed out",
        "check the DNS server (--dns-server) and network",
    ),
    "unreachable": (
        "DNS lookup of {name} failed: no DNS server could be reached or none answered ({detail})",
        "check this host's resolver (/etc/resolv.conf) and its route to the DNS servers, "
        "or name one with --dns-server",
    ),
    "servfail": ("DNS lookup of {name} failed: {detail}", "the DNS server is broken or refuses us"),
    "not-offered": (
        "{name} says the service is not offered (SRV target '.')",
        "the zone deliberately disables this service; use another transport or URL",
    ),
    "error": ("DNS lookup of {name} failed: {detail}", "check the resolver configuration"),
}

_CONNECT = {
    "refused": (
        "connection refused: nothing listens on {server} (ICMP port unreachable or TCP reset)",
        "check that the server runs and listens on this port and transport",
    ),
    "unreachable": (
        "{server} is unreachable: {detail}",
        "check routing and firewalls to the server",
    ),
    "rejected": (
        "a firewall rejects this traffic to {server}: {detail}",
        "open that port on the firewall, or use TURN over TCP/TLS (turns: on 443)",
    ),
    "timeout": ("{detail}", "a firewall may drop TCP to this port; check it and the server"),
    "reset": (
        "{detail}",
        "the server or a middlebox dropped the connection; check the server logs",
    ),
    "closed": (
        "{detail}",
        "the server dropped the connection; check its logs and TLS/port settings",
    ),
    "lost": ("connection lost: {detail}", "the server went away; check that it is running"),
    "error": ("could not reach {server}: {detail}", "check the network path to the server"),
}

_TLS = {
    "expired": ("the server's TLS certificate has expired ({detail})", "renew the certificate"),
    "not-yet-valid": (
        "the server's TLS certificate is not valid yet ({detail})",
        "check the certificate dates and the clocks",
    ),
    "self-signed": (
        "the server's TLS certificate is self-signed ({detail})",
        "use a CA-issued certificate, or pass --ca-file with the CA (--insecure skips checks)",
    ),
    "untrusted": (
        "the server's TLS certificate is not signed by a trusted CA ({detail})",
        "send the full chain from the server, or pass --ca-file (--insecure skips checks)",
    ),
    "hostname": (
        "the server's TLS certificate does not match the URL host ({detail})",
        "the certificate must name the host in the URL (SAN); --insecure skips checks",
    ),
    "verify": (
        "TLS certificate verification failed: {detail}",
        "check the certificate chain; see --ca-file",
    ),
    "handshake": (
        "TLS handshake failed: {detail}",
        "is TLS enabled on this port? (a plain TCP/UDP port gives this)",
    ),
    "timeout": (
        "the TLS handshake did not finish in time",
        "the port may not speak TLS, or a middlebox stalls it",
    ),
}

_PROTOCOL = {
    "missing-attribute": ("{detail}", "the server's answer is incomplete; check its version"),
    "alternate-loop": ("{detail}", "fix alternate-server on the TURN servers (a redirect loop)"),
    "not-stun": ("{detail}", "is this port a STUN/TURN server? (another service may listen here)"),
    "bad-answer": ("{detail}", "the server's answer breaks RFC 8489; check its version"),
}


# -- the server in front of you ------------------------------------------------------------

COTURN, PION, P1_STUN = "coturn", "pion", "p1_stun"


def server_family(software: str | None) -> str | None:
    """The TURN implementation a SOFTWARE attribute names (None: unknown or absent)."""
    text = (software or "").lower()
    if "coturn" in text or "rfc5766-turn-server" in text:
        return COTURN
    if "pion" in text:
        return PION
    if "p1 stun" in text or "p1_stun" in text or "ejabberd" in text or "eturnal" in text:
        return P1_STUN
    return None


# Hints worded for the server in front of you: (family, method, code) → hint. The generic
# hint in STUN_CODES/METHOD_CODES stands when the family is unknown.
SERVER_HINTS: dict[tuple[str, str, int], str] = {
    (COTURN, "Allocate", 403): "coturn refuses this client or user: check its allowed/denied "
    "rules for client addresses and the user's realm in turnserver.conf",
    (P1_STUN, "Allocate", 403): "ejabberd/eturnal refuses this client's own address: check "
    "turn_blacklist (and turn_whitelist) of the ejabberd_stun listener",
    (PION, "Allocate", 403): "the pion-based server's AuthHandler or policy refuses this "
    "client: check the application built on pion/turn",
    (COTURN, "Allocate", 486): "allocations may be leaking; wait for them to expire or raise "
    "user-quota in turnserver.conf",
    (P1_STUN, "Allocate", 486): "ejabberd/eturnal limits allocations per user with "
    "turn_max_allocations: wait for leaked ones to expire, or raise it",
    (COTURN, "Allocate", 508): "raise total-quota or widen min-port..max-port in turnserver.conf",
    (P1_STUN, "Allocate", 508): "widen turn_min_port..turn_max_port of the ejabberd_stun listener",
    (COTURN, "CreatePermission", 403): "check denied-peer-ip / allowed-peer-ip and "
    "allow-loopback-peers in turnserver.conf",
    (COTURN, "ChannelBind", 403): "check denied-peer-ip / allowed-peer-ip and "
    "allow-loopback-peers in turnserver.conf",
    (P1_STUN, "CreatePermission", 403): "check turn_blacklist of the ejabberd_stun listener: it "
    "also refuses peers",
    (P1_STUN, "ChannelBind", 403): "check turn_blacklist of the ejabberd_stun listener: it also "
    "refuses peers",
    (PION, "CreatePermission", 403): "the pion-based server's PermissionHandler refuses this "
    "peer address",
    (PION, "ChannelBind", 403): "the pion-based server's PermissionHandler refuses this peer "
    "address",
    (COTURN, "Allocate", 401): "check -u/-p; with coturn's use-auth-secret the username is "
    "<expiry>:<user> and the password an HMAC of it (--secret-file)",
    (P1_STUN, "Allocate", 401): "check -u/-p: ejabberd/eturnal takes the account's password "
    "(auth_type: user) or its shared secret (auth_type: secret)",
}


def _hint_for(software: str | None, method: str, code: int, generic: str) -> str:
    family = server_family(software)
    if family is None:
        return generic
    return SERVER_HINTS.get((family, method, code), generic)


def explain(failure: BaseException, *, server: str = "") -> Explanation:
    """The reason and hint for one failure."""
    if isinstance(failure, DnsFailure):
        reason, hint = _DNS.get(failure.kind, _DNS["error"])
        return Explanation(None, reason.format(name=failure.name, detail=failure.detail), hint)
    if isinstance(failure, ConnectFailure):
        reason, hint = _CONNECT.get(failure.kind, _CONNECT["error"])
        return Explanation(None, reason.format(server=server, detail=failure.detail), hint)
    if isinstance(failure, TlsFailure):
        reason, hint = _TLS.get(failure.kind, _TLS["verify"])
        text = reason.format(detail=failure.detail)
        summary = getattr(failure.cert, "summary", None)
        if summary is not None:
            text += f"; certificate: {summary()}"
        return Explanation(None, text, hint)
    if isinstance(failure, StunOnlyServer):
        return Explanation(
            None,
            f"this server answers STUN but not TURN: {failure.burst} of {failure.burst} "
            f"Binding requests from the same socket were answered (in {failure.rtt * 1000:.1f} "
            f"ms), but no answer to {failure.what} after {failure.sends} send(s) in "
            f"{failure.waited:.1f} s",
            STUN_ONLY_HINT,
        )
    if isinstance(failure, TransactionTimeout):
        reason = (
            f"no answer to {failure.what} after {failure.sends} send(s) in {failure.waited:.1f} s"
        )
        if failure.ignored:
            reason += "; ignored: " + "; ".join(failure.ignored)
            hint = (
                "something answers, but not validly: check that this is the right server and port"
            )
        elif failure.sends > 1 or failure.what.endswith("(udp)"):
            hint = "UDP may be blocked on this network or by the server's firewall; try tcp/tls"
        else:
            hint = "the server or a firewall drops our requests; check the port and the server"
        return Explanation(None, reason, hint)
    if isinstance(failure, AuthFailure) and failure.method != "Allocate":
        # The allocation's credentials worked a moment ago: a 401 here is a refusal.
        return Explanation(
            failure.code,
            f"{failure.method}: the server refused it with {failure.code} {failure.phrase} "
            "although the allocation's credentials work: it refuses this peer address "
            "(pion's permission filter answers this way)".replace("  ", " "),
            "check the server's rules for peer addresses (a pion-based server: its "
            "PermissionHandler)",
        )
    if isinstance(failure, AuthFailure):
        return Explanation(
            failure.code,
            f"{failure.method}: wrong username or credential, or realm mismatch "
            f"({failure.code} {failure.phrase})".replace(" )", ")"),
            _hint_for(
                failure.software,
                failure.method,
                failure.code,
                "check -u/-p and the realm; with a TURN REST shared secret the username "
                "carries the expiry"
                + (
                    ""
                    if failure.software
                    else " (the server sends no SOFTWARE: which server it is, is not known)"
                ),
            ),
        )
    if isinstance(failure, UnprotectedAnswer):
        return _unprotected(failure)
    if isinstance(failure, ErrorResponse):
        fallback = (
            (f"the server answered error {failure.code}", "look at the server's logs")
            if failure.code
            else (
                "the server answered with an error without ERROR-CODE (it does not say why)",
                "look at the server's logs; a pion-based server's permission filter refuses "
                "peers this way",
            )
        )
        meaning, hint = METHOD_CODES.get(
            (failure.method, failure.code), STUN_CODES.get(failure.code, fallback)
        )
        # The server's own words, unless they only repeat the code's standard name.
        repeated = failure.phrase.lower() in meaning.lower()
        phrase = f": '{failure.phrase}'" if failure.phrase and not repeated else ""
        hint = _hint_for(failure.software, failure.method, failure.code, hint)
        return Explanation(failure.code, f"{failure.method}: {meaning}{phrase}", hint)
    if isinstance(failure, ProtocolFailure):
        reason, hint = _PROTOCOL.get(failure.kind, _PROTOCOL["bad-answer"])
        return Explanation(None, reason.format(detail=failure.detail), hint)
    if isinstance(failure, RedirectedFailure):
        inner = explain(failure.failure, server=failure.alternate)
        return Explanation(
            inner.code,
            f"redirected (300 Try Alternate) to {failure.alternate}, which failed: {inner.reason}",
            inner.hint + "; or fix alternate-server on the first server",
        )
    if isinstance(failure, RelayFailure):
        reason, hint = _RELAY.get(failure.kind, _RELAY["broken"])
        return Explanation(None, reason.format(detail=failure.detail), hint)
    if isinstance(failure, CheckFailure):
        return Explanation(None, str(failure), "see --help")
    return Explanation(
        None,
        f"internal error: {type(failure).__name__}: {failure}",
        "this is a turncheck bug; please report it with the command line (not the secrets)",
    )


STUN_ONLY_HINT = (
    "it is a STUN-only server, or TURN is off on this port: give it to browsers as a stun: URL "
    "and point turn: at a TURN server (coturn: remove stun-only; eturnal/ejabberd: "
    "use_turn: true)"
)


def weigh(check: CheckResult, binding: CheckResult | None) -> CheckResult:
    """A check's reason in the light of the run's other evidence (probe and load alike):
    an Allocate nobody answered, where the same server and transport answered a Binding,
    is a server that speaks STUN but not TURN, not a network that drops UDP."""
    # Over UDP only: there the Allocate was sent again and again to the address that just
    # answered. Over TCP one unanswered send proves less (a server slow to accept, say).
    if (
        binding is not None
        and binding.ok
        and check.error is not None
        and not check.error.reason.startswith("this server answers STUN")
        and check.kind == "turn"
        and check.transport == "udp"
        and check.cause == "timeout"
        and (binding.server, binding.transport) == (check.server, check.transport)
    ):
        return replace(check, error=stun_only(check, binding))
    return check


def stun_only(turn: CheckResult, binding: CheckResult) -> Explanation:
    """An Allocate nobody answered, to the address and port whose Binding was answered: the
    evidence says the server speaks STUN but not TURN, not that the network drops UDP."""
    assert turn.error is not None
    rtt = f" in {binding.rtt_ms:.1f} ms" if binding.rtt_ms is not None else ""
    software = binding.details.get("software")
    named = f" ({software})" if software else ""
    return Explanation(
        turn.error.code,
        f"this server answers STUN but not TURN: its Binding was answered{rtt}{named}, but "
        f"{_core(turn.error.reason)}",
        STUN_ONLY_HINT,
    )


def _unprotected(failure: UnprotectedAnswer) -> Explanation:
    """Unsigned answers to a signed request: ignored as RFC 8489 §9.2.5 says, and reported,
    because they are what the server said."""
    method = failure.method
    if failure.kind == "error":
        answer = f"{failure.code} {failure.phrase}".strip()
        reason = f"the server answered {answer} without integrity to the authenticated {method}"
        if method == "Allocate" and failure.code == 400:
            return Explanation(
                failure.code,
                reason + ": servers built on pion/turn answer a wrong username or password "
                "this way",
                "check the credentials (-u/-p): this server says 400 Bad Request to a wrong "
                "username or password, where RFC 8656 says 401",
            )
        if method == "Allocate" and failure.code in (401, 441):
            return Explanation(
                failure.code,
                reason + ": the server refuses the username or password",
                "check the credentials (-u/-p) and the realm",
            )
        return Explanation(
            failure.code,
            reason + " (RFC 8489 §9.2.5 says to ignore it, and nothing else came)",
            "the server does not sign its error answers; look at its logs for why it refused",
        )
    return Explanation(
        None,
        f"the server answered the authenticated {method} with a success without integrity "
        "(RFC 8489 §9.2.5: such answers are ignored, so the request counts as unanswered)",
        "the server does not sign its answers as RFC 8656 requires; report it to its maintainers",
    )


# -- what browsers never ask for: relay families, TCP relays -------------------------------
# probe --relay-family and --tcp-relay, and the audit's relay checks. A browser's Allocate asks
# for no address family (so it gets the server's default, IPv4: RFC 8656 §7.1) and for a UDP
# relay: a 440 or 442 to these Allocates says nothing about what a browser gets.

# What an Allocate asked for (browser.relay_variant), as the verdict and notes name it.
ASKED = {
    "ipv4": "IPv4 relay",
    "ipv6": "IPv6 relay",
    "dual": "dual allocation",
    "tcp": "TCP relay",
}
_BROWSERS_NEVER = {
    "ipv4": "browsers ask for no address family",
    "ipv6": "browsers ask for no address family",
    "dual": "browsers ask for no address family",
    "tcp": "browsers relay UDP only",
}


def family_name(family: str) -> str:
    """'IPv4', 'IPv6', or 'dual (IPv4 and IPv6)'."""
    return {"ipv4": "IPv4", "ipv6": "IPv6"}.get(family, "dual (IPv4 and IPv6)")


def _relay_address_setting(families: Sequence[str], software: str | None) -> str:
    """Where the server in front of you (else each known one) takes its relay addresses."""
    names = " and ".join(family_name(f) for f in families)
    coturn = f"coturn: relay-ip= with an {names} address in turnserver.conf, one per family"
    if len(families) > 1:
        coturn = "coturn: a relay-ip= of each family in turnserver.conf"
    p1 = "eturnal: " + " and ".join(f"relay_{f}_addr" for f in families)
    p1 += "; ejabberd: " + " and ".join(f"turn_{f}_address" for f in families)
    known = {COTURN: coturn, P1_STUN: p1}.get(server_family(software) or "")
    return known or f"{coturn}; {p1}"


def family_refused(family: str, code: int, phrase: str, software: str | None = None) -> Explanation:
    """A relay family the server would not give, in an Allocate's error or a dual answer's
    ADDRESS-ERROR-CODE (RFC 8656 §7.3): 440 means it has no relay address of that family."""
    name = family_name(family)
    if code == 440 and family != "dual":
        return Explanation(
            code,
            f"the server has no {name} relay address "
            f"({code} {phrase or 'Address Family not Supported'})",
            f"if clients need {name} relays, give the server an {name} relay address "
            f"({_relay_address_setting([family], software)})",
        )
    if code in (400, 440) and family == "dual":
        return Explanation(
            code,
            f"the server refused a dual allocation (IPv4 and IPv6 relays): {code} "
            f"{phrase}".rstrip(),
            "a dual allocation needs a relay address of each family "
            f"({_relay_address_setting(['ipv4', 'ipv6'], software)})",
        )
    if code == 420 and family != "dual":
        return Explanation(
            code,
            "the server does not understand REQUESTED-ADDRESS-FAMILY (420 Unknown Attribute): "
            f"it cannot be asked for an {name} relay",
            "the server predates RFC 6156 and RFC 8656: it relays IPv4 only, which is what "
            "browsers get; upgrade it if clients need IPv6 relays",
        )
    article = "a" if family == "dual" else "an"
    return Explanation(
        code,
        f"the server refused {article} {name} relay ({code} {phrase})".replace(" )", ")"),
        "see the server's log for why it refused this allocation",
    )


def family_missing(
    asked: str, family: str, address_error: tuple[str, int, str] | None, software: str | None
) -> Explanation:
    """An allocation that asked for *asked* (ipv4, ipv6, dual) and got no relayed address of
    *family*: a dual answer's ADDRESS-ERROR-CODE says why (RFC 8656 §7.3), or the server
    ignored the attribute."""
    name = family_name(family)
    if address_error is not None and address_error[0] == name:
        return family_refused(family, address_error[1], address_error[2], software)
    if asked == "dual":
        return Explanation(
            None,
            f"the dual allocation's answer has no {name} relayed address and no ADDRESS-ERROR-CODE",
            "the server ignores ADDITIONAL-ADDRESS-FAMILY: it predates RFC 8656 dual allocation",
        )
    return Explanation(
        None,
        f"the Allocate asked for an {name} relay (REQUESTED-ADDRESS-FAMILY) and got a relayed "
        "address of the other family",
        "the server ignores REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.1): it gives its default "
        "family whatever the client asks",
    )


def in_family(family: str, explanation: Explanation) -> Explanation:
    """One family's failure in a relay check of several, named by its family."""
    name = family_name(family)
    if explanation.reason.startswith(name):
        return explanation
    return Explanation(explanation.code, f"{name} relay: {explanation.reason}", explanation.hint)


def _tcp_refused(exc: ErrorResponse) -> Explanation:
    """442 to an RFC 6062 TCP Allocate: the server does not offer TCP relays."""
    hint = {
        COTURN: "coturn's TCP relays are off (no-tcp-relay in turnserver.conf): remove it if "
        "clients need them",
        P1_STUN: "eturnal and ejabberd relay UDP only: they have no TCP relays to turn on",
    }.get(
        server_family(exc.software) or "",
        "turn TCP relays on if clients need them (coturn: remove no-tcp-relay)",
    )
    return Explanation(
        exc.code,
        f"the server does not offer TCP relays (RFC 6062): {exc.code} {exc.phrase}".rstrip(),
        f"{hint}; browsers never ask for one",
    )


def asked_refused(
    failure: BaseException, *, family: str | None = None, tcp: bool = False, server: str = ""
) -> Explanation:
    """An Allocate asking for what browsers never ask for, failed, in words: a relay *family*
    (REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY: 440, 400, 420), a TCP relay (*tcp*:
    REQUESTED-TRANSPORT TCP, RFC 6062: 442). Any other failure as explain() words it."""
    if isinstance(failure, ErrorResponse) and failure.method == "Allocate":
        if tcp and failure.code == 442:
            return _tcp_refused(failure)
        if family is not None and failure.code in (400, 420, 440):
            return family_refused(family, failure.code, failure.phrase, failure.software)
    return explain(failure, server=server)


def asked_verdict(failed: Sequence[CheckResult], base: str) -> str:
    """--relay-family and --tcp-relay checks that failed, first: the user asked for them, so
    they fail the run. Each is named, with why what the browsers get (*base*) stands."""
    groups: dict[tuple[str, str], list[str]] = {}
    for check in failed:
        asked = relay_variant(check) or "tcp"
        reason = _core(check.error.reason) if check.error is not None else "it failed"
        groups.setdefault((asked, reason), []).append(check.transport)
    parts = [
        f"the {ASKED.get(asked, asked)} failed over "
        f"{_list([t.upper() for t in sorted(set(transports), key=_order)])} "
        f"({_BROWSERS_NEVER.get(asked, 'browsers never ask for it')}): {reason}"
        for (asked, reason), transports in groups.items()
    ]
    return "; ".join([*parts, base])


def verdict(checks: Sequence[CheckResult], *, others: bool = False) -> str:
    """What the checks found, naming the cause: a person can act on this line alone.
    *others*: the checks beside ones the line has named already (asked_verdict)."""
    if not checks:
        return "nothing was checked"
    failed = [c for c in checks if not c.ok]
    if not failed and others:
        return (
            "the other check passed"
            if len(checks) == 1
            else f"the {len(checks)} other checks passed"
        )
    if not failed:
        return "the check passed" if len(checks) == 1 else f"all {len(checks)} checks passed"
    dead = _dead_addresses(checks)
    if dead:
        return dead
    if len(failed) == len(checks):
        if any(c.invalid_answers for c in failed):
            return (
                "answers came, but not valid STUN/TURN answers to our requests: "
                + _shared_cause(failed)
            )
        if all(c.timed_out for c in failed):
            return "nothing answered: the servers are down, or a firewall blocks this network"
        return f"all {len(checks)} checks failed: {_shared_cause(failed)}"
    working = {c.transport for c in checks if c.ok}
    broken = {c.transport for c in checks} - working
    works_text = _works(checks)
    if "udp" in broken and all(c.timed_out for c in failed if c.transport == "udp"):
        return f"UDP looks blocked on this network (or at the server); {works_text}"
    if broken:
        cause = _shared_cause([c for c in failed if c.transport in broken])
        return f"{_list(sorted(broken, key=_order)).upper()} failed: {cause}; {works_text}"
    return f"{len(failed)} of {len(checks)} checks failed: {_shared_cause(failed)}"


def _core(reason: str) -> str:
    """A reason without the method prefix, so that one cause over several checks reads once."""
    for method in ("Allocate: ", "Binding: ", "CreatePermission: ", "ChannelBind: "):
        if reason.startswith(method):
            return reason[len(method) :]
    return reason


def _shared_cause(failed: Sequence[CheckResult]) -> str:
    """The most common reason among failed checks, and over which transports it holds."""
    groups: dict[str, list[CheckResult]] = {}
    for check in failed:
        reason = _core(check.error.reason) if check.error else "failed"
        groups.setdefault(reason, []).append(check)
    reason, members = max(groups.items(), key=lambda kv: len(kv[1]))
    transports = _list(sorted({c.transport for c in members}, key=_order))
    kinds = {c.kind for c in members}
    what = "TURN Allocate" if kinds == {"turn"} else "STUN Binding" if kinds == {"stun"} else ""
    if what and any(c.cause == "auth" for c in members):
        what = "TURN authentication"
    variants = {relay_variant(c) for c in members}
    if len(variants) == 1 and (variant := variants.pop()) is not None:
        what = ASKED.get(variant, what)  # --relay-family, --tcp-relay: not what browsers ask
    head = f"{what} failed over {transports}: " if what else ""
    more = len(groups) - 1
    tail = f" (+{more} other reason{'s' if more > 1 else ''})" if more else ""
    return f"{head}{reason}{tail}"


def _dead_addresses(checks: Sequence[CheckResult]) -> str:
    """A name with several addresses where some fail every check that others pass on the
    same transport: the users DNS sends to the dead ones cannot connect ("calls fail
    sometimes"). Addresses are the IPs the URL's own name resolved to (A/AAAA): not ports,
    not SRV targets; a transport failing on every address is no address's fault."""
    out: list[str] = []
    by_url: dict[str, dict[str, list[CheckResult]]] = {}
    for check in checks:
        if check.server is not None and check.via.startswith("A/AAAA"):
            ip = check.server.rsplit(":", 1)[0].strip("[]")
            by_url.setdefault(check.url, {}).setdefault(ip, []).append(check)
    for url, addresses in by_url.items():
        if len(addresses) < 2:
            continue
        works = {(c.transport, c.kind) for cs in addresses.values() for c in cs if c.ok}
        dead = {
            ip: cs
            for ip, cs in addresses.items()
            if not any(c.ok for c in cs) and any((c.transport, c.kind) in works for c in cs)
        }
        if not dead:
            continue
        host = parse_ice_url(url).host
        transports = _list(sorted({c.transport for cs in dead.values() for c in cs}, key=_order))
        reason = _shared_cause([c for cs in dead.values() for c in cs])
        verb = "fails" if len(dead) == 1 else "fail"
        out.append(
            f"{len(dead)} of {len(addresses)} addresses of {host} ({', '.join(dead)}) {verb} "
            f"{transports} ({reason}): the users DNS sends there cannot connect"
        )
    return "; ".join(out)


def _works(checks: Sequence[CheckResult]) -> str:
    ok = [o for o in checks if o.ok]
    turn = sorted(
        {(o.transport, o.port) for o in ok if o.kind == "turn"}, key=lambda t: _order(t[0])
    )
    if turn:
        parts = [f"{t.upper()} on {p}" if p else t.upper() for t, p in turn]
        return f"TURN over {_list(parts)} works"
    stun = sorted({o.transport for o in ok}, key=_order)
    return f"STUN over {_list([s.upper() for s in stun])} works"


def _order(transport: str) -> int:
    return {"udp": 0, "tcp": 1, "tls": 2}.get(transport, 3)


def _list(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def relay_notes(checks: Sequence[CheckResult]) -> tuple[str, ...]:
    """Warnings a passing relay check still deserves: loss, one path only."""
    notes: list[str] = []
    for check in checks:
        asked = relay_variant(check)
        if check.ok and check.details.get("unchallenged") and asked is None:
            notes.append(
                f"open relay: {check.url} ({check.transport}, {check.server}) granted an "
                "Allocate without asking for credentials: anyone can relay through it; "
                "browsers ignore such an answer and get no relay from it"
            )
        relay = check.relay
        if relay is None or not relay.ok or relay.stats is None:
            continue
        stats = relay.stats
        what = "" if asked is None else f", {ASKED[asked]}"
        where = f"{check.url} ({check.transport}{what}, {check.server})"
        if stats.received < stats.sent:
            notes.append(
                f"relay loss {stats.loss_pct:.0f} % ({stats.received} of {stats.sent} packets "
                f"came back) on {where}: expect choppy media; check the path to the relay ports"
            )
        failed = {n: v for n, v in relay.paths.items() if isinstance(v, Explanation)}
        silent = [
            name
            for name, value in relay.paths.items()
            if not isinstance(value, Explanation) and value.received == 0
        ]
        for name, explanation in failed.items():
            notes.append(
                f"{where}: relaying works over {stats.path} but not over {name}: "
                f"{explanation.reason} (hint: {explanation.hint})"
            )
        if silent:
            notes.append(
                f"{where}: relaying works over {stats.path} but not over "
                f"{', '.join(silent)}: nothing came back on that path"
            )
    return tuple(notes)


def relay_only_verdict(checks: Sequence[CheckResult], base: str) -> str:
    """iceTransportPolicy "relay": the run stands or falls with the relay checks alone (the
    relays browsers get: no --relay-family or --tcp-relay variant)."""
    relays = [c for c in checks if c.relay is not None and relay_variant(c) is None]
    working = [c for c in relays if c.relay is not None and c.relay.ok]
    if working:
        where = _list([t.upper() for t in sorted({c.transport for c in working}, key=_order)])
        passed = f"{len(working)} of {len(relays)} relay checks passed"
        return f"relay-only: TURN relays media over {where} ({passed})"
    if not relays:
        return "relay-only: no relay check could run (no TURN allocation succeeded)"
    return f"relay-only: no relay check passed; {base}"


def tls_notes(checks: Sequence[CheckResult], now: float | None = None) -> tuple[str, ...]:
    """Certificate warnings for passing checks: near expiry, and what --insecure let through."""

    notes: list[str] = []
    seen: set[tuple[str, str]] = set()
    for check in checks:
        tls = check.details.get("tls") or {}
        cert = tls.get("certificate")
        if not cert or (check.server or "", cert["not_after"]) in seen:
            continue
        seen.add((check.server or "", cert["not_after"]))
        where = f"{check.url} ({check.server})"
        days = cert["days_left"]
        if days < 0:
            notes.append(
                f"TLS certificate of {where} expired {-days:.0f} days ago ({cert['not_after']}); "
                "verification was skipped (--insecure): browsers will refuse it"
            )
        elif days < WARN_DAYS:
            who = (
                "browsers start refusing turns: connections"
                if check.url.startswith("turns:")
                else "TLS clients start refusing it"
            )
            notes.append(
                f"TLS certificate of {where} expires in {days:.0f} days ({cert['not_after']}): "
                f"renew it before {who}"
            )
        if not tls["verified"]:
            if cert["san_match"] and not cert["self_signed"] and days >= 0:
                notes.append(f"TLS certificate of {where} was NOT verified (--insecure)")
            if not cert["san_match"]:
                notes.append(
                    f"TLS certificate of {where} does not name the URL host (SAN: "
                    f"{', '.join(cert['san']) or 'none'}); verification was skipped (--insecure)"
                )
            if cert["self_signed"]:
                notes.append(f"TLS certificate of {where} is self-signed (--insecure accepted it)")
    return tuple(notes)


def rest_credential_failure(reason: Explanation, username: str, now: float) -> Explanation:
    """A 401 with an expired TURN REST API username: say that, not 'wrong password'."""

    expiry = rest_expiry(username)
    if expiry is None or expiry > now or reason.code not in (401, 441):
        return reason
    import time

    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry))
    return Explanation(
        reason.code,
        f"the TURN REST API credential has expired: the timestamp in the username ({stamp}) "
        "is in the past",
        "mint a fresh credential (turncheck creds, or your app's credentials endpoint); "
        "check the clocks of the server and the credential issuer",
    )


def requirements_verdict(results: Sequence[Any], base: str) -> str:
    """With --require/--max-*: the gate's outcome first, then what the checks said."""
    unmet = [r for r in results if not r.ok]
    if not unmet:
        return f"all {len(results)} requirements met ({', '.join(r.name for r in results)}); {base}"
    first = unmet[0]
    more = f" (+{len(unmet) - 1} more)" if len(unmet) > 1 else ""
    return f"requirement {first.name} not met: {first.detail}{more}"


# -- the browser's answer first (browser.py) ----------------------------------------------------


def browser_verdict(
    views: dict[str, BrowserView],
    engines: Sequence[str],
    checks: Sequence[CheckResult],
    base: str,
) -> str:
    """What the browsers given exactly this configuration get (one line when they agree,
    each named when they differ), then what the checks said."""
    asked = [e for e in engines if e in views]
    if len(asked) == 1:
        return f"{_one_browser(views[asked[0]], checks, _NAMES[asked[0]], base)}; {base}"
    chromium, firefox = views["chromium"], views["firefox"]
    if _same(chromium, firefox):
        return f"{_one_browser(chromium, checks, 'a browser', base)}; {base}"
    works = {e: _works_in(views[e]) for e in asked}
    if works["chromium"] != works["firefox"]:
        good, bad = ("Chromium", "Firefox") if works["chromium"] else ("Firefox", "Chromium")
        head = f"calls work in {good}, not in {bad}: "
    else:
        head = ""
    clauses = [
        _one_browser(chromium, checks, "Chromium", base),
        _firefox_words(firefox, checks, base),
    ]
    if head:  # the head says where calls work: each browser's clause then says what it gets
        clauses = [_CALLS.sub("", c, count=1) for c in clauses]
    return f"{head}{clauses[0]}; {clauses[1]}; {base}"


_CALLS = re.compile(r"^calls (?:connect|fail|that need TURN fail|through TURN fail): ")


_NAMES = {"chromium": "Chromium", "firefox": "Firefox"}


def _works_in(view: BrowserView) -> bool:
    return view.ok and view.rejected is None and view.relays_media is not False


def _same(a: BrowserView, b: BrowserView) -> bool:
    """The two browsers get the same: candidates, media, and neither throws."""
    return (
        a.rejected is None
        and b.rejected is None
        and (a.ok, a.relay, a.srflx, a.relays_media) == (b.ok, b.relay, b.srflx, b.relays_media)
    )


def _firefox_words(view: BrowserView, checks: Sequence[CheckResult], base: str) -> str:
    """Firefox's outcome where it differs: a refusal, a silent drop, or its candidates."""
    if view.rejected is not None:
        exception, message = view.rejected
        why = message.removeprefix("PeerConnectionImpl.setConfiguration: ")
        advice = (
            "; remove the stuns: URL (Firefox does not support it; turns: gives TLS)"
            if "stuns scheme" in message
            else ""
        )
        return (
            f"Firefox throws {exception} for the whole configuration ({why}) and gathers "
            f"nothing{advice}"
        )
    if view.skipped and not view.relay:
        return f"{view.skipped[0][1]}, and gets no relay: use a host name its certificate names"
    return _one_browser(view, checks, "Firefox", base)


def _one_browser(view: BrowserView, checks: Sequence[CheckResult], who: str, base: str = "") -> str:
    """What one browser given exactly this configuration gets."""
    relay = _list([p.upper() for p in view.relay])
    head = f"{who} with this configuration"
    if view.relay_only:
        head += " (iceTransportPolicy relay)"
    if view.relay and view.relays_media is False:
        unbound = next(
            (
                c.relay.channel_failure
                for c in checks
                if browser_like(c)
                and c.relay is not None
                and c.relay.ok
                and c.relay.channel_failure
            ),
            None,
        )
        first = next(
            (c.error.reason for c in checks if browser_like(c) and c.cause == "relay" and c.error),
            "the relay echo failed",
        )
        if unbound is not None:
            first = (
                f"the server relays Send indications, but its ChannelBind fails "
                f"({unbound.reason}), and Chromium drops a TURN connection whose ChannelBind "
                "fails"
            )
        text = (
            f"calls through TURN fail: {head} gathers relay candidates over {relay}, but "
            f"they carry no data ({first})"
        )
    elif view.ok and view.relay:
        srflx = " and a srflx" if view.srflx else ""
        text = f"calls connect: {head} gets relay candidates over {relay}{srflx}"
    elif view.ok and view.srflx:
        text = f"{head} gets a srflx candidate (STUN only: no relay for peers that need one)"
    elif view.ok:
        text = (
            f"{head} gets no srflx candidate: the server sees this host's own address (no NAT "
            "between them), so its host candidate serves"
        )
    elif view.relay_only and not view.has_turn:
        # iceTransportPolicy "relay" gathers relay candidates only: with no TURN server
        # the browser uses, it gathers nothing at all and raises no error (Chromium 156).
        why = (
            f"it skips every TURN URL of it ({view.skipped[0][1]})"
            if view.skipped
            else "the configuration has no TURN server, and the relay policy forbids the rest"
        )
        text = f"calls fail: {head} gathers no candidate at all: {why}"
    elif view.has_turn or view.relay_only:
        text = f"calls that need TURN fail: {head} gets no relay candidate"
        first = _first_browser_failure(view, checks)
        if first and _core(first.split(": ", 1)[-1].rstrip(")")) not in base:
            text += first
        better = _also_works(view, checks)
        if better:
            text += f"; {better}"
    else:
        text = f"{head} gets no srflx candidate{_first_browser_failure(view, checks)}"
    srv = _srv_differs(checks)
    if srv:
        text += f"; {srv}"
    return text


def _first_browser_failure(view: BrowserView, checks: Sequence[CheckResult]) -> str:
    hosts_only = next(
        (c for c in checks if browser_like(c) and c.details.get("absolute_lookup_failed")), None
    )
    if hosts_only is not None and view.engine == "chromium":
        return (
            f" ({hosts_only.url}: over UDP Chromium looks the name up as an absolute name, which "
            f"fails ({hosts_only.details['absolute_lookup_failed']}): the name is in /etc/hosts "
            "only, not in DNS)"
        )
    open_relay = next(
        (c for c in checks if browser_like(c) and c.details.get("unchallenged")), None
    )
    if open_relay is not None:
        return (
            f" ({open_relay.url}: the server granted the Allocate without authentication, and "
            "Chromium ignores an unauthenticated answer to an Allocate and times out)"
        )
    failing = [c for c in checks if browser_like(c) and not c.ok and c.error is not None]
    if failing:
        check = failing[0]
        assert check.error is not None
        return f" ({check.url} over {check.transport}: {check.error.reason})"
    if view.skipped:
        return f" ({view.skipped[0][1]})"
    return ""


def _also_works(view: BrowserView, checks: Sequence[CheckResult]) -> str:
    """Extra TURN checks that passed: the URLs to add so that browsers use them too."""
    add: list[str] = []
    offered: list[str] = []
    for check in checks:
        if not (check.extra and check.kind == "turn" and check.ok) or check.via.startswith("SRV"):
            continue
        if relay_variant(check) is not None:  # an Allocate no browser would make at all
            continue

        name = parse_ice_url(check.url).host_for_url
        port = check.port
        if check.transport == "tcp":
            url = f"turn:{name}:{port}?transport=tcp"
            what = f"TCP on {port}"
        else:
            url = f"turns:{name}:{port}?transport=tcp"
            what = f"TLS on {port}"
        if url not in add:
            add.append(url)
            offered.append(what)
    if not add:
        return ""
    return f"add {' and '.join(add)}: the server accepts TURN over {_list(offered)}"


def _srv_differs(checks: Sequence[CheckResult]) -> str:
    """SRV targets that differ from the URL's own server: RFC clients and browsers part."""
    out: list[str] = []
    for check in checks:
        if not check.via.startswith("SRV ") or "→" not in check.via or check.kind != "stun":
            continue
        target = check.via.split("→", 1)[1].strip()
        own = next(
            (c for c in checks if c.url == check.url and not c.via.startswith("SRV") and c.server),
            None,
        )
        browser_host = check.url.split(":", 1)[1].split("?")[0]
        text = f"SRV sends RFC clients to {target} ({check.transport}), but browsers use " + (
            f"{browser_host}:{own.port}"
            if own is not None and ":" not in browser_host
            else browser_host
        )
        if text not in out:
            out.append(text)
    return "; ".join(out)


def run_advice(
    config_advice: Sequence[str], view: BrowserView, checks: Sequence[CheckResult]
) -> tuple[str, ...]:
    """Configuration advice, made consistent with what the checks found."""
    out = list(config_advice)
    also = _also_works(view, checks)
    if also:
        out = [a for a in out if not a.startswith("no TURN over TCP or TLS")]
        out.append(f"{also}, and a bare turn: URL is UDP only in browsers")
    stuns_tls = [
        c for c in checks if c.extra and c.url.startswith("stuns:") and c.transport == "tls"
    ]
    if stuns_tls:
        out.append(
            "Chromium uses stuns: URLs as plain STUN over UDP and Firefox refuses them: no "
            "browser uses STUN over TLS; the TLS rows are what RFC 7064 clients get"
        )
    for url, reason in view.skipped:
        out.append(f"{url}: {reason}")
    return tuple(out)


def candidate_error(url: str, code: int, text: str) -> tuple[str, str]:
    """(reason, hint) for one icecandidateerror a browser fired (webrtc-internals dumps, the
    test page): its url, errorCode and errorText in turncheck's words."""
    from turncheck import browser

    lowered = text.lower()
    server = "TURN" if url.startswith("turn") else "STUN"
    if code == 701 and "host lookup" in lowered:
        return (
            f"the browser could not look up the {server} server's name",
            "check the DNS name; over UDP Chromium looks the name up as an absolute name, so "
            "an /etc/hosts entry does not count",
        )
    if code == 701 and "timed out" in lowered:
        return (
            f"no answer from the {server} server over UDP (Chromium waits about 40 s): UDP is "
            "blocked on the user's network, or the server is down",
            "offer TURN over TCP and TLS too (turn:host:3478?transport=tcp, "
            "turns:host:443?transport=tcp); turncheck probe on the URL tells which",
        )
    if code == 701 and text.startswith(browser.TEXT_CONNECT):
        return (
            "could not connect to the TURN server over TCP/TLS: refused, unreachable, or its "
            "TLS certificate was refused (Chromium says the same for all of these)",
            "run turncheck probe on the URL: it names which, and what is wrong with the "
            "certificate",
        )
    if code == 401:
        return (
            "the app's TURN credentials are wrong or expired (the server refused them)",
            "check the app's credentials endpoint or its TURN REST shared secret and clocks "
            "(turncheck probe --ice-servers-url URL fetches them the way the app does)",
        )
    if code in STUN_CODES:
        return STUN_CODES[code]
    return (
        f"the {server} server failed: {code} {text}".strip(),
        "run turncheck probe on the URL from the user's network",
    )
