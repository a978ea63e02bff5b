"""What Firefox does with a configuration: the second browser model, beside browser.py's
Chromium, in the same pure style (no sockets, no DNS: rules over values).

Read from Firefox's source (IceServerParser.cpp ParseStunTurnUri/Parse and nricectx.cpp
ToNicerStunStruct, Firefox 151-158; PeerConnection.sys.mjs; nICEr ice_component and
ice_candidate; the Fetch standard's bad ports, which Necko's NS_CheckPortSafety applies),
and checked against Debian's firefox-esr 153.8 headless in the namespace lab
(tests/browser/test_equivalence.py). Where the two disagreed, the browser won.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from turncheck.browser import (
    INVALID_ACCESS,
    MAX_TURN_USERNAME,
    ORDER,
    SYNTAX,
    BrowserView,
    IceServerInput,
    browser_like,
    srflx_differs,
)
from turncheck.errors import ConfigRejected
from turncheck.results import CheckResult
from turncheck.urls import IceUrl, Scheme, Transport

ENGINE = "firefox"
NOT_SUPPORTED = "NotSupportedError"
_PREFIX = "PeerConnectionImpl.setConfiguration: "
_SCHEMES = ("stun", "stuns", "turn", "turns")

# The Fetch standard's bad ports (Necko's NS_CheckPortSafety), and 0. IceServerParser.cpp
# IsPortAllowed lets 53, 3478 and 5349 through whatever the list says.
BAD_PORTS = frozenset(
    {0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95}
    | {101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161}
    | {179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563}
    | {587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060}
    | {5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}
)
ALWAYS_ALLOWED = (53, 3478, 5349)


def _reject(exception: str, message: str, culprit: str) -> ConfigRejected:
    return ConfigRejected(exception, _PREFIX + message, culprit, "", who="Firefox")


@dataclass(frozen=True, slots=True)
class FirefoxUrl:
    """One URL as Firefox reads it."""

    scheme: str
    host: str
    port: int
    transport: Transport  # the client-to-server protocol
    explicit_port: bool = True
    query: Transport | None = None  # what ?transport= said

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")


def parse(text: str) -> FirefoxUrl:
    """IceServerParser.cpp ParseStunTurnUri, in its order; ConfigRejected as Firefox throws."""
    culprit = f"'{text}'"
    scheme_text, colon, rest = text.partition(":")
    if not colon or not scheme_text or not scheme_text.replace("+", "").isalnum():
        raise _reject(SYNTAX, f"{culprit} is not a valid URI", culprit)
    scheme = scheme_text.lower()
    if scheme not in _SCHEMES:
        raise _reject(
            SYNTAX,
            f"{culprit} has unsupported scheme '{scheme_text}' (must be stun/stuns/turn/turns)",
            culprit,
        )
    authority, question, query = rest.partition("?")
    if not authority:
        raise _reject(SYNTAX, f"{culprit} must have a host", culprit)
    if "@" in authority:
        raise _reject(SYNTAX, f"{culprit} must not contain @", culprit)
    host, port, explicit_port = _host_port(authority, culprit, scheme)
    if port not in ALWAYS_ALLOWED and port in BAD_PORTS:
        raise _reject(SYNTAX, f"{culprit} uses a port that is blocked", culprit)
    transport = Transport.UDP
    if scheme in ("stun", "stuns") and question:
        raise _reject(SYNTAX, f"{culprit}: STUN URLs must not have query parameters", culprit)
    if question:
        key, equals, value = query.partition("=")
        if key != "transport" or not equals or not value:
            raise _reject(
                SYNTAX,
                f"{culprit} has invalid query (must be ?transport=udp or ?transport=tcp)",
                culprit,
            )
        if value not in ("udp", "tcp"):  # exact: ?transport=UDP is refused
            raise _reject(
                SYNTAX,
                f"{culprit} has disallowed transport '{value}' (must be udp or tcp)",
                culprit,
            )
        transport = Transport(value)
    query_transport = transport if question else None
    if scheme == "stuns":
        raise _reject(NOT_SUPPORTED, f"{culprit}: stuns scheme is not supported", culprit)
    if scheme == "turns":
        transport = Transport.TLS  # nricectx.cpp: TLS always uses TCP, ?transport=udp too
    return FirefoxUrl(scheme, host, port, transport, explicit_port, query_transport)


def ice_url(text: str) -> IceUrl:
    """The URL as Firefox reads it, in turncheck's IceUrl shape (--browser firefox)."""
    url = parse(text)
    return IceUrl(
        scheme=Scheme(url.scheme),
        host=url.host,
        port=url.port if url.explicit_port else None,
        query=url.query,
        text=text,
    )


def _host_port(authority: str, culprit: str, scheme: str) -> tuple[str, int, bool]:
    """host[:port] or [v6][:port]; an empty port is the default (Firefox 153: turn:h: is
    3478), as is a missing one: 3478, or 5349 for stuns:/turns:."""
    bad = _reject(SYNTAX, f"{culprit} does not contain a host and optional port", culprit)
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise bad
        host, tail = authority[1:end], authority[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
        if tail and not tail.startswith(":"):
            raise bad
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = authority.partition(":")
        if ":" in port_text or not host or any(c.isspace() for c in host):
            raise bad
    if not port_text:
        return host, 5349 if scheme in ("stuns", "turns") else 3478, False
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise bad
    return host, int(port_text), True


def check_constructor(servers: Sequence[IceServerInput]) -> ConfigRejected | None:
    """What `new RTCPeerConnection` throws in Firefox for these servers (None: nothing);
    servers and URLs in order, the first failure for the whole configuration."""
    for server in servers:
        if not server.urls:
            return _reject(SYNTAX, "ICE server has empty urls list", server.origin)
        for text in server.urls:
            try:
                url = parse(text)
            except ConfigRejected as exc:
                return exc.within(server.origin)
            if not url.is_turn:
                continue
            if server.username is None:
                return _reject(INVALID_ACCESS, "TURN server requires a username", server.origin)
            if server.credential is None:
                return _reject(INVALID_ACCESS, "TURN server requires a credential", server.origin)
            if len(server.username.encode()) > MAX_TURN_USERNAME:
                return _reject(
                    INVALID_ACCESS,
                    "TURN server username exceeds 509 byte limit (RFC 8489 14.3)",
                    server.origin,
                )
            if server.credential == "":
                return _reject(
                    INVALID_ACCESS, "TURN server credential is empty (RFC 8265 4.1)", server.origin
                )
    return None


def error_url(url: FirefoxUrl) -> str:
    """The url of Firefox's icecandidateerror: scheme:host:port, and ?transport=tcp for TCP
    and TLS (a UDP server's ?transport=udp is dropped; seen in Firefox 153)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    tail = "" if url.transport is Transport.UDP else "?transport=tcp"
    return f"{url.scheme}:{host}:{url.port}{tail}"


def _skip_reason(url: FirefoxUrl) -> str | None:
    """nricectx.cpp ToNicerStunStruct: servers dropped silently, without an error event."""
    if url.scheme == "turns":
        try:
            ipaddress.ip_address(url.host)
        except ValueError:
            return None
        return (
            f"Firefox drops {url.scheme}:{url.host}:{url.port}: TLS needs a host name, not an IP "
            'address (nricectx.cpp: "TLS requires FQDN"), and says nothing'
        )
    return None


def view(
    urls: Sequence[IceUrl],
    checks: Sequence[CheckResult],
    relay_only: bool,
    rejected: ConfigRejected | None,
) -> BrowserView:
    """What Firefox given this configuration gathers, from turncheck's check results.

    - A UDP TURN server gives a srflx only through its Allocate's XOR-MAPPED-ADDRESS
      (nICEr's piggyback candidate; no Binding is sent to it): none when the Allocate fails.
    - TCP and TLS TURN give no srflx. The relay policy keeps relay candidates only.
    - Errors: 701 for unreachable servers and timeouts (a UDP server only after ~11.1 s:
      7 sends from RTO 100 ms), the server's code otherwise (401); errorText is always "".
    - An Allocate granted without a challenge gives Firefox 153 no relay either (lab).
    """
    if rejected is not None:
        return BrowserView(
            ok=False,
            relay=(),
            srflx=False,
            relay_only=relay_only,
            engine=ENGINE,
            rejected=(rejected.exception, rejected.message),
        )
    relay: set[str] = set()
    srflx = False
    stun_answered = False
    media: list[bool] = []
    errors: list[tuple[str, int, str]] = []
    late: list[str] = []
    skipped: list[tuple[str, str]] = []
    unchecked: list[str] = []
    seen: set[tuple[str, str, int, str]] = set()
    has_turn = False
    for iceurl in urls:
        try:
            url = parse(iceurl.text)
        except ConfigRejected:  # cannot happen once check_constructor passed
            continue
        key = (url.scheme, url.host.lower(), url.port, url.transport.value)
        if key in seen:
            continue
        seen.add(key)
        why = _skip_reason(url)
        if why is not None:
            skipped.append((error_url(url), why))
            continue
        has_turn = has_turn or url.is_turn
        protocol = url.transport.value
        kind = "turn" if url.is_turn else "stun"
        mine = [c for c in checks if c.url == str(iceurl) and _check_of(c, url)]
        check = next((c for c in mine if c.ok), mine[0] if mine else None)
        if check is None:
            unchecked.append(str(iceurl))
            continue
        unchallenged = bool(check.details.get("unchallenged"))
        if kind == "turn" and check.candidate("relay") is not None and not unchallenged:
            relay.add(protocol)
            if check.relay is not None:
                media.append(check.relay.carries_calls)
            if protocol == "udp" and not relay_only:
                stun_answered = True
                srflx = srflx or srflx_differs(check)
        elif kind == "stun" and check.ok and not relay_only:
            stun_answered = True
            srflx = srflx or srflx_differs(check)
        elif kind == "turn" or not relay_only:
            code = _error_code(check)
            if code is not None:
                errors.append((error_url(url), code, ""))
                if _late(check, protocol):
                    late.append(error_url(url))
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
        engine=ENGINE,
        late=tuple(late),
    )


def makes(check: CheckResult) -> bool:
    """Whether Firefox makes this check of turncheck's: a Binding to stun: servers only (no
    Binding to a TURN server), an Allocate to every TURN server it keeps."""
    try:
        url = parse(check.url)
    except ConfigRejected:
        return False
    return _skip_reason(url) is None and _check_of(check, url)


def _check_of(check: CheckResult, url: FirefoxUrl) -> bool:
    """The check Firefox makes of this URL: its protocol, its port, Binding for stun:,
    Allocate for turn:/turns:; never one of turncheck's extras, nor an Allocate asking for
    what browsers never ask for (browser.relay_variant)."""
    return (
        browser_like(check)
        and check.transport == url.transport.value
        and check.port == url.port
        and (check.kind == "turn") == url.is_turn
    )


def _error_code(check: CheckResult) -> int | None:
    """The errorCode Firefox raises for a failed check (None: it raises none)."""
    if check.details.get("unchallenged"):
        return 701
    if check.ok:
        return None
    if check.cause == "auth":
        return 401
    if check.cause == "error" and check.error is not None and check.error.code is not None:
        return check.error.code
    return 701


def _late(check: CheckResult, protocol: str) -> bool:
    """Raised only when Firefox's own UDP timeout (~11.1 s) runs out."""
    if check.details.get("unchallenged"):
        return True
    return protocol == "udp" and check.cause in ("timeout", "connect", "invalid", "relay")
