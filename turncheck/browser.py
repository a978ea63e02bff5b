"""The browser model: what Chromium does with an RTCConfiguration. Pure: no sockets, no DNS.

turncheck's first answer is "what will a browser given this configuration get". Every rule
here is read from the browsers' public source and checked against a real headless Chromium
(tests/browser/test_equivalence.py). Sources, in the Chromium tree:

- Blink  third_party/blink/renderer/modules/peerconnection/rtc_peer_connection.cc
         (iceServers dictionary checks; RTCError → DOMException mapping)
- libwebrtc pc/ice_server_parsing.cc      (URL grammar, default ports, transports, priorities)
- libwebrtc p2p/client/basic_port_allocator.cc, p2p/base/port_allocator.cc
         (UDP TURN servers double as STUN servers; relay policy filters candidates)
- libwebrtc p2p/base/turn_port.cc, p2p/base/stun_port.cc (run-time failures and their
         icecandidateerror codes and texts; disallowed TURN ports; name resolution)
- libwebrtc api/candidate.cc, p2p/base/port.cc, p2p/base/p2p_constants.h (priorities)

Firefox differs in places; each rule says where (dom/media/PeerConnection.sys.mjs,
dom/media/webrtc/jsapi/MediaTransportHandler.cpp).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from turncheck.errors import ConfigRejected
from turncheck.results import CheckResult
from turncheck.urls import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    IceUrl,
    Scheme,
    Transport,
    hostport,
)

ENGINE = "chromium"

SYNTAX = "SyntaxError"
INVALID_ACCESS = "InvalidAccessError"
TYPE_ERROR = "TypeError"

# -- constructor validation --------------------------------------------------------------------
# Two passes, as in Chromium: Blink's ParseConfiguration (rtc_peer_connection.cc) checks every
# URL's shape and the presence of credentials first; then libwebrtc's ParseIceServersOrError
# (pc/ice_server_parsing.cc) parses each URL and checks the credentials' values. Its RTCError
# types reach JavaScript through Blink's ThrowExceptionFromRTCError (rtc_error_util.cc):
# SYNTAX_ERROR → SyntaxError, INVALID_PARAMETER → InvalidAccessError, message verbatim.
# Firefox (PeerConnection.sys.mjs _validateIceServers) words them differently ("RTCPeerConnection
# constructor passed invalid RTCConfiguration - ..."), accepts "" credentials and queries on
# stun:, and refuses urls: [] itself.
_MSG_NOT_URL = "'{url}' is not a valid URL."
_MSG_NOT_ICE_URL = "'{url}' is not a valid stun or turn URL."
_MSG_NEED_CREDENTIALS = (
    'Both username and credential are required when the URL scheme is "turn" or "turns".'
)
_MSG_POLICY = (
    "Failed to read the 'iceTransportPolicy' property from 'RTCConfiguration': The provided "
    "value '{value}' is not a valid enum value of type RTCIceTransportPolicy."
)

_P = "ICE server parsing failed: "
MSG_EMPTY_URI = _P + "Empty uri."
MSG_TRANSPORT_KEY = _P + "Invalid transport parameter key."
MSG_TRANSPORT_VALUE_MISSING = _P + "Transport parameter missing value."
MSG_TRANSPORT_VALUE = _P + "Transport parameter should always be udp or tcp."
MSG_SERVICE = _P + "Invalid transport parameter in ICE URI"  # (sic: an unknown scheme or no host)
MSG_STUN_QUERY = _P + "Invalid stun url with query parameters"
MSG_USER_AT_HOST = _P + "Invalid url with long deprecated user@host syntax"
MSG_HOSTNAME = _P + "Invalid hostname format"
MSG_PORT = _P + "Invalid port"
MSG_EMPTY_CREDENTIALS = _P + "TURN server with empty username or password"
MSG_USERNAME_LONG = _P + "TURN server username is too long"
MAX_TURN_USERNAME = 509  # bytes; p2p_constants.h kMaxTurnUsernameLength (RFC 8489 §14.3)
MAX_TURN_SERVERS = 32  # api/candidate.h kMaxTurnServers: TURN URLs past the 32nd are dropped

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# RFC 3986 reg-name characters, as ParseHostnameAndPortFromString accepts them.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=]+")


def reject(exception: str, message: str, culprit: str, why: str = "") -> ConfigRejected:
    return ConfigRejected(exception, message, culprit, why)


def blink_check(text: str) -> str:
    """Blink's shape check of one URL: the URL as Blink hands it on (scheme lower-cased),
    or ConfigRejected (SyntaxError) naming the URL."""
    raw = text.strip()  # KURL drops leading and trailing spaces and controls
    culprit = f"'{raw}'"
    scheme_text, colon, rest = raw.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme_text):
        raise reject(
            SYNTAX, _MSG_NOT_URL.format(url=text), culprit, "ICE URLs look like turn:host:port"
        )
    scheme = scheme_text.lower()
    query = rest.partition("?")[2]
    if scheme in ("turn", "turns"):
        words = [w for w in query.split("=") if w]
        shape_ok = not query or (words[:1] == ["transport"] and len(words) >= 2)
    else:
        shape_ok = scheme in ("stun", "stuns") and not query
    if not shape_ok:
        why = (
            "ICE server URLs start with stun:, stuns:, turn: or turns:"
            if scheme not in _SCHEMES
            else f"{scheme}: URLs take no query (Firefox tolerates one; Chromium refuses it)"
            if scheme in ("stun", "stuns")
            else "the only query allowed is ?transport=udp or ?transport=tcp"
        )
        raise reject(SYNTAX, _MSG_NOT_ICE_URL.format(url=text), culprit, why)
    return scheme + ":" + rest


_SCHEMES = ("stun", "stuns", "turn", "turns")


def libwebrtc_parse(text: str, culprit: str) -> IceUrl:
    """ParseIceServerUrl: the URL's scheme, host, port and ?transport=, or ConfigRejected."""
    tokens = text.split("?")
    authority_part = tokens[0]
    written: Transport | None = None
    if len(tokens) == 2:
        words = tokens[1].split("=")
        if words[0] != "transport":
            raise reject(SYNTAX, MSG_TRANSPORT_KEY, culprit, "write ?transport=udp or tcp")
        if len(words) < 2:
            raise reject(SYNTAX, MSG_TRANSPORT_VALUE_MISSING, culprit, "write ?transport=udp")
        value = words[1].lower()  # Chromium 156 takes ?transport=UDP too
        if value not in ("udp", "tcp"):
            raise reject(SYNTAX, MSG_TRANSPORT_VALUE, culprit, f"unknown transport '{words[1]}'")
        written = Transport(value)
    scheme_text, colon, host_part = authority_part.partition(":")
    if not colon or scheme_text not in _SCHEMES or not host_part:
        raise reject(SYNTAX, MSG_SERVICE, culprit, "missing host")
    scheme = Scheme(scheme_text)
    if not scheme.is_turn and len(tokens) > 1:
        raise reject(SYNTAX, MSG_STUN_QUERY, culprit, f"{scheme}: URLs take no query")
    if "@" in host_part:
        raise reject(
            SYNTAX,
            MSG_USER_AT_HOST,
            culprit,
            "credentials do not belong in the URL; give username and credential",
        )
    host, port = _host_and_port(host_part, culprit)
    return IceUrl(scheme=scheme, host=host, port=port, query=written, text=text)


def parse_ice_url(text: str) -> IceUrl:
    """One ICE server URL as Chromium takes it: Blink's check, then libwebrtc's parse."""
    if not text.strip():
        raise reject(SYNTAX, _MSG_NOT_URL.format(url=text), "''", "the URL is empty")
    canonical = blink_check(text)
    url = libwebrtc_parse(canonical, f"'{text.strip()}'")
    return IceUrl(url.scheme, url.host, url.port, url.query, text.strip())


def _host_and_port(authority: str, culprit: str) -> tuple[str, int | None]:
    """ParseHostnameAndPortFromString: '[v6]:port', or 'host:port' split at the first ':'."""
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise reject(SYNTAX, MSG_HOSTNAME, culprit, "unclosed '[' in an IPv6 address")
        host = authority[1:end]
        tail = authority[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise reject(SYNTAX, MSG_HOSTNAME, culprit, f"unexpected '{tail}' after ']'")
            port_text = tail[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            # Chromium takes anything in brackets here; its lookup then fails. turncheck
            # refuses it now: nothing in brackets but an IPv6 address can ever work.
            raise reject(
                SYNTAX, MSG_HOSTNAME, culprit, f"'[{host}]' is not an IPv6 address"
            ) from None
    else:
        host, colon, port_part = authority.partition(":")
        if colon:
            port_text = port_part
        if not host or not _REG_NAME.fullmatch(host):
            why = "missing host" if not host else f"'{host}' is not a valid host name"
            if colon and ":" in port_part:
                why = "an IPv6 address must be written in brackets, e.g. turn:[2001:db8::1]"
            raise reject(SYNTAX, MSG_HOSTNAME, culprit, why)
    if port_text is None:
        return host, None
    if not port_text:
        # Chromium 156: "turn:host:" is "Invalid hostname format" (ParsePort fails on the
        # empty string, so ParseHostnameAndPortFromString does); Firefox takes it as 3478.
        raise reject(SYNTAX, MSG_HOSTNAME, culprit, "nothing after ':' where the port goes")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 9:
        # Chromium 156 reads a port that is not a number as 0: "Invalid port".
        why = (
            "an IPv6 address must be written in brackets, e.g. turn:[2001:db8::1]"
            if ":" in port_text
            else f"port '{port_text}' is not a number"
        )
        raise reject(SYNTAX, MSG_PORT, culprit, why)
    port = int(port_text)
    if not 0 < port <= 0xFFFF:
        raise reject(SYNTAX, MSG_PORT, culprit, f"port {port} is out of range 1-65535")
    return host, port


@dataclass(frozen=True, slots=True)
class IceServerInput:
    """One RTCIceServer as given: URL texts and the credential fields as they were written."""

    urls: tuple[str, ...]
    username: str | None  # None: absent; "" is a value (Chromium refuses it for TURN)
    credential: str | None
    origin: str  # "iceServers[2] in ice.json" or "command line"


def check_constructor(servers: Sequence[IceServerInput]) -> list[list[IceUrl]]:
    """`new RTCPeerConnection({iceServers})`: the parsed URLs per entry, or ConfigRejected.

    Blink's pass over every entry first (URL shape, credentials present), then libwebrtc's
    (URL grammar, credentials not empty): the first fault is the one thrown. Firefox
    accepts "" credentials and a username up to 512 bytes, and throws its own SyntaxError
    "... - urls is empty" for urls: [].
    """
    canonical: list[list[str]] = []
    for server in servers:
        texts: list[str] = []
        for text in server.urls:
            if not text.strip():
                raise reject(SYNTAX, _MSG_NOT_URL.format(url=text), f"{server.origin}: ''")
            try:
                texts.append(blink_check(text))
            except ConfigRejected as exc:
                raise exc.within(server.origin) from None
            if texts[-1].startswith("turn") and (
                server.username is None or server.credential is None
            ):
                raise reject(
                    INVALID_ACCESS,
                    _MSG_NEED_CREDENTIALS,
                    f"{server.origin}: '{text.strip()}'",
                    "a TURN URL needs a username and a credential",
                )
        canonical.append(texts)
    out: list[list[IceUrl]] = []
    for server, texts in zip(servers, canonical, strict=True):
        if not texts:
            raise reject(SYNTAX, MSG_EMPTY_URI, server.origin, '"urls" is an empty list')
        parsed: list[IceUrl] = []
        for text, original in zip(texts, server.urls, strict=True):
            culprit = f"{server.origin}: '{original.strip()}'"
            url = libwebrtc_parse(text, culprit)
            if url.is_turn and (server.username == "" or server.credential == ""):
                raise reject(
                    INVALID_ACCESS,
                    MSG_EMPTY_CREDENTIALS,
                    culprit,
                    "the username or credential is an empty string",
                )
            if url.is_turn and len((server.username or "").encode()) > MAX_TURN_USERNAME:
                raise reject(
                    INVALID_ACCESS,
                    MSG_USERNAME_LONG,
                    culprit,
                    f"more than {MAX_TURN_USERNAME} bytes (RFC 8489 §14.3)",
                )
            parsed.append(IceUrl(url.scheme, url.host, url.port, url.query, original.strip()))
        out.append(parsed)
    return out


def check_policy(value: Any, origin: str) -> bool:
    """iceTransportPolicy: "all" or "relay" (True); anything else is Blink's TypeError."""
    if value is None or value == "all":
        return False
    if value == "relay":
        return True
    raise reject(
        TYPE_ERROR,
        _MSG_POLICY.format(value=value),
        origin,
        'iceTransportPolicy is "all" or "relay"',
    )


# -- what the browser does with each URL -------------------------------------------------------


def protocol_of(url: IceUrl) -> Transport:
    """The client-to-server protocol Chromium uses for a URL (ice_server_parsing.cc).

    - stun: and stuns: are STUN over UDP: Chromium has no STUN over TLS, so stuns: is
      plain UDP STUN (Firefox 151+ throws NotSupportedError: firefox.py).
    - turn: is UDP unless ?transport=tcp; never TLS.
    - turns: is TLS over TCP, whatever ?transport= says (?transport=udp does not mean DTLS).
    """
    if not url.is_turn:
        return Transport.UDP
    if url.scheme is Scheme.TURNS:
        return Transport.TLS
    return url.query or Transport.UDP


def port_of(url: IceUrl) -> int:
    """ice_server_parsing.cc: 5349 (kDefaultStunTlsPort) for turns: only, else 3478."""
    if url.port is not None:
        return url.port
    return DEFAULT_TLS_PORT if url.scheme is Scheme.TURNS else DEFAULT_PORT


def allowed_turn_port(port: int) -> bool:
    """turn_port.cc AllowedTurnPort: below 1024 only 53, 80 and 443 are allowed.

    Firefox (MediaTransportHandler.cpp) allows 53, 3478 and 5349 and any port Necko's
    generic bad-port list lets through, and refuses a blocked one outright."""
    return port in (53, 80, 443) or port >= 1024


def candidate_url(url: IceUrl) -> str:
    """The `url` Chromium gives relay candidates and TURN icecandidateerror events.

    turn_port.cc ReconstructServerUrl: scheme:host:port?transport=proto from the server's
    name as configured; TLS is written turns:...?transport=tcp."""
    port = port_of(url)
    if not url.is_turn:
        return stun_url(url)
    proto = "udp" if protocol_of(url) is Transport.UDP else "tcp"
    scheme = "turns" if protocol_of(url) is Transport.TLS else "turn"
    return f"{scheme}:{url.host_for_url}:{port}?transport={proto}"


def stun_url(url: IceUrl) -> str:
    """The `url` of srflx candidates and STUN errors: "stun:host:port", whatever the scheme
    (stun_port.cc: stuns: servers and UDP TURN servers are STUN servers like any other)."""
    return f"stun:{url.host_for_url}:{port_of(url)}"


@dataclass(frozen=True, slots=True)
class BrowserUse:
    """One URL of the configuration as Chromium uses it."""

    url: IceUrl
    protocol: Transport
    port: int
    kind: str  # "stun" (Binding only) | "turn" (Allocate; over UDP a Binding too)
    candidate_url: str
    relay_preference: int = 0  # TURN: N for the first of N TURN URLs, ..., 1 for the last
    skipped: str | None = None  # why Chromium does not use it at all

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.url), self.protocol.value)

    @property
    def stun_server(self) -> bool:
        """Used as a STUN server: stun:/stuns:, and every UDP TURN server Chromium keeps,
        even one whose TURN port it skips (basic_port_allocator.cc
        PortConfiguration::StunServers takes the UDP relay servers' addresses; AllowedTurnPort
        only stops the TurnPort). TURN URLs past the 32nd are dropped at parsing: no STUN."""
        if self.protocol is not Transport.UDP:
            return False
        return self.kind == "stun" or self.relay_preference > 0


def uses(urls: Sequence[IceUrl]) -> list[BrowserUse]:
    """Every URL of the configuration, in order, as Chromium uses it (each server once)."""
    turn_urls = [u for u in urls if u.is_turn]
    # basic_port_allocator.cc CreateRelayPorts: relative priority N, N-1, ... 1 by position;
    # ice_server_parsing.cc keeps at most kMaxTurnServers of them. (Firefox enforces no
    # limit; it only warns from five servers on.)
    preference = {id(u): len(turn_urls[:MAX_TURN_SERVERS]) - i for i, u in enumerate(turn_urls)}
    out: list[BrowserUse] = []
    seen: set[tuple[str, str, int, str]] = set()
    for url in urls:
        protocol = protocol_of(url)
        port = port_of(url)
        kind = "turn" if url.is_turn else "stun"
        key = (kind, url.host.lower(), port, protocol.value)
        if key in seen:
            continue
        seen.add(key)
        skipped = None
        if url.is_turn and preference[id(url)] <= 0:
            skipped = (
                f"Chromium uses at most {MAX_TURN_SERVERS} TURN URLs and drops the rest "
                "(ice_server_parsing.cc kMaxTurnServers)"
            )
        elif url.is_turn and not allowed_turn_port(port):
            skipped = (
                f"Chromium never uses a TURN server on port {port}: below 1024 only 53, 80 "
                "and 443 are allowed, and it says nothing (turn_port.cc AllowedTurnPort)"
            )
        out.append(
            BrowserUse(
                url,
                protocol,
                port,
                kind,
                candidate_url(url),
                max(preference.get(id(url), 0), 0),
                skipped,
            )
        )
    return out


def relay_variant(check: CheckResult) -> str | None:
    """What this Allocate asked for that no browser asks for: 'ipv4', 'ipv6' or 'dual' (probe
    --relay-family: REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY), 'tcp' (--tcp-relay:
    an RFC 6062 TCP allocation); None for an Allocate as browsers make it. Browsers ask for
    no address family, so they get the server's default, IPv4 (RFC 8656 §7.1), and relay UDP
    only (turn_port.cc: REQUESTED-TRANSPORT UDP, over TCP and TLS too)."""
    family = check.details.get("relay_family")
    if isinstance(family, dict):
        return str(family.get("asked"))
    return "tcp" if "tcp_relay" in check.details else None


def browser_like(check: CheckResult) -> bool:
    """A check like those browsers make: none of turncheck's extras (other transports, SRV,
    STUN over TLS), and no Allocate asking for what browsers never ask for (relay_variant).
    Only these answer what a browser gets; the others are shown, never counted as its."""
    return not check.extra and relay_variant(check) is None


def makes(check: CheckResult, browser_uses: Sequence[BrowserUse]) -> bool:
    """Whether Chromium makes this check of turncheck's: its Allocates (but on skipped
    ports), and Bindings over UDP to stun: and UDP TURN servers (skipped ports included)."""
    if not browser_like(check):
        return False
    for use in browser_uses:
        if use.key != (check.url, check.transport):
            continue
        if check.kind == "turn":
            return use.kind == "turn" and use.skipped is None
        return use.stun_server
    return False


# -- what the browser gets, from turncheck's check results ------------------------------------

# icecandidateerror codes and texts: stun_port.cc (StunBindingRequest::OnTimeout,
# UDPPort::OnResolveResult, OnErrorResponse) and turn_port.cc (OnAllocateRequestTimeout,
# ResolveTurnAddress, Close, TurnAllocateRequest::OnAuthChallenge, OnErrorResponse).
TEXT_STUN_LOOKUP = "STUN host lookup received error."
TEXT_STUN_TIMEOUT = "STUN binding request timed out."
TEXT_TURN_LOOKUP = "TURN host lookup received error."
TEXT_TURN_TIMEOUT = "TURN allocate request timed out."
TEXT_CONNECT = "Failed to establish connection"
TEXT_UNAUTHORIZED = "Unauthorized."
TEXT_ALLOCATE_ERROR = "TURN allocate error."


def binding_error(check: CheckResult) -> tuple[int, str] | None:
    """The icecandidateerror of a failed STUN Binding over UDP (None: none is raised)."""
    if check.details.get("absolute_lookup_failed"):
        return 701, TEXT_STUN_LOOKUP  # Chromium looked up "name.", which failed
    if check.ok or check.cause is None:
        return None
    if check.cause == "dns":
        return 701, TEXT_STUN_LOOKUP
    if check.error is not None and check.error.code is not None and check.cause == "error":
        # stun_port.cc passes ERROR-CODE's number() only (401 → 1, 420 → 20); 0 is dropped.
        number = check.error.code % 100
        return (number, str(check.details.get("phrase", ""))) if number else None
    # A timeout, and also an ICMP "port unreachable": Chromium ignores ICMP errors on UDP,
    # so it waits out its ~40 s of retransmissions.
    return 701, TEXT_STUN_TIMEOUT


def allocate_error(protocol: str, check: CheckResult) -> tuple[int, str] | None:
    """The icecandidateerror of a failed TURN Allocate (None: none is raised)."""
    if check.details.get("absolute_lookup_failed"):
        return 701, TEXT_TURN_LOOKUP  # Chromium looked up "name.", which failed
    if check.details.get("unchallenged"):
        # Chromium 156 discards an unauthenticated success to an Allocate (stun_request.cc
        # CheckResponse: "Discarding unauthenticated success response", since M148/M150) and
        # waits out its timeout: a server without authentication gives browsers no relay
        # (namespace lab, coturn no-auth).
        return 701, TEXT_TURN_TIMEOUT
    cause = check.cause
    if check.ok or cause is None or check.candidate("relay") is not None:
        return None
    if cause == "dns" and protocol == "udp":
        # turn_port.cc OnResolveResult: only the UDP port resolves the name itself; TCP and
        # TLS hand it to the socket factory, whose failure is Close()'s "Failed to establish
        # connection" (Chromium 156, namespace lab).
        return 701, TEXT_TURN_LOOKUP
    if cause == "auth":
        return 401, TEXT_UNAUTHORIZED
    if cause == "error" and check.error is not None and check.error.code is not None:
        return check.error.code, TEXT_ALLOCATE_ERROR
    if protocol != "udp":
        # turn_port.cc Close() before the allocation: refused, reset, TLS or certificate
        # failure all read the same (turncheck names which).
        return 701, TEXT_CONNECT
    return 701, TEXT_TURN_TIMEOUT


@dataclass(frozen=True, slots=True)
class BrowserView:
    """What Chromium given this configuration gathers, from the checks it would make."""

    ok: bool
    relay: tuple[str, ...]  # client-to-server protocols of the relay candidates
    srflx: bool
    relay_only: bool
    skipped: tuple[tuple[str, str], ...] = ()  # (url, reason)
    errors: tuple[tuple[str, int, str], ...] = ()  # (url, code, text)
    has_turn: bool = False
    relays_media: bool | None = None  # a relay the browser gathers carried turncheck's echo
    unchecked: tuple[str, ...] = ()  # URLs whose browser use turncheck did not check
    uses: tuple[BrowserUse, ...] = field(default=(), repr=False)
    engine: str = ENGINE
    rejected: tuple[str, str] | None = None  # (exception, message) the constructor throws
    late: tuple[str, ...] = ()  # error urls raised only after the browser's UDP timeout

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "rejected": (
                None
                if self.rejected is None
                else {"exception": self.rejected[0], "message": self.rejected[1]}
            ),
            "ok": self.ok,
            "relay": list(self.relay),
            "srflx": self.srflx,
            "relay_only": self.relay_only,
            "relays_media": self.relays_media,
            "skipped": [{"url": u, "reason": r} for u, r in self.skipped],
            "errors": [{"url": u, "code": c, "text": t} for u, c, t in self.errors],
            "unchecked": list(self.unchecked),
            "late": list(self.late),
        }


ORDER = {"udp": 0, "tcp": 1, "tls": 2}  # relay protocols, as both browsers list them


def view(
    browser_uses: Sequence[BrowserUse], checks: Sequence[CheckResult], relay_only: bool
) -> BrowserView:
    """Chromium's gathering outcome: relay candidates by protocol, srflx, errors."""
    relay: set[str] = set()
    srflx = False
    media: list[bool] = []
    errors: list[tuple[str, int, str]] = []
    skipped: list[tuple[str, str]] = []
    unchecked: list[str] = []
    stun_done: set[str] = set()
    stun_answered = False
    for use in browser_uses:
        if use.skipped:
            skipped.append((use.candidate_url, use.skipped))
            if not use.stun_server:
                continue
        mine = [c for c in checks if browser_like(c) and (c.url, c.transport) == use.key]
        if not mine:
            unchecked.append(str(use.url))
            continue
        binding = _first_used([c for c in mine if c.kind == "stun"], use.protocol)
        allocate = _first_used([c for c in mine if c.kind == "turn"], use.protocol)
        stun = stun_url(use.url)
        if use.protocol is Transport.UDP and binding is not None and stun not in stun_done:
            # stun:/stuns: over UDP, and every UDP TURN server doubles as a STUN server
            # (basic_port_allocator.cc PortConfiguration::StunServers); each server once.
            stun_done.add(stun)
            if binding.ok and not binding.details.get("absolute_lookup_failed"):
                stun_answered = True
                srflx = srflx or (srflx_differs(binding) and not relay_only)
            else:
                found = binding_error(binding)
                if found is not None:
                    errors.append((stun, *found))
        if use.kind == "turn" and allocate is not None and not use.skipped:
            unchallenged = bool(
                allocate.details.get("unchallenged")
                or allocate.details.get("absolute_lookup_failed")
            )
            if allocate.candidate("relay") is not None and not unchallenged:
                relay.add(use.protocol.value)
                if allocate.relay is not None:
                    media.append(allocate.relay.carries_calls)
            else:
                found = allocate_error(use.protocol.value, allocate)
                if found is not None:
                    errors.append((use.candidate_url, *found))
    has_turn = any(u.kind == "turn" and not u.skipped for u in browser_uses)
    # STUN only: a srflx, or an answer that shows no NAT (the host candidate is public).
    ok = bool(relay) if (has_turn or relay_only) else srflx or stun_answered
    return BrowserView(
        ok=ok,
        relay=tuple(sorted(relay, key=ORDER.__getitem__)),
        srflx=srflx,
        relay_only=relay_only,
        skipped=tuple(skipped),
        errors=tuple(errors),
        has_turn=has_turn,
        relays_media=None if not media else any(media),
        unchecked=tuple(unchecked),
        uses=tuple(browser_uses),
    )


def _first_used(checks: list[CheckResult], protocol: Transport) -> CheckResult | None:
    """The address Chromium uses: over UDP the first the name resolves to, and nothing else
    (stun_port.cc/turn_port.cc take one resolved address); over TCP/TLS the first that
    connects, in order (the socket factory tries the addresses in turn)."""
    if not checks:
        return None
    if protocol is Transport.UDP:
        return checks[0]
    return next((c for c in checks if c.ok or c.candidate("relay") is not None), checks[0])


def srflx_differs(check: CheckResult) -> bool:
    """stun_port.cc: a mapped address equal to the socket's own address is no srflx (nICEr
    prunes it the same way: ice_component maybe_prune_candidate)."""
    srflx = check.candidate("srflx")
    local = check.details.get("local_ip")
    if srflx is None:
        return False
    if local is None or check.local is None:
        return True
    return hostport(local, int(check.local.rsplit(":", 1)[1])) != srflx.hostport
