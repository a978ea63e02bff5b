"""What a run will check: server entries × transports, before any packet or DNS query."""

from __future__ import annotations

from dataclasses import dataclass

from turncheck import firefox
from turncheck.browser import (
    IceServerInput,
    check_constructor,
    parse_ice_url,
    port_of,
    protocol_of,
)
from turncheck.config import Credentials, IceServer
from turncheck.errors import ConfigRejected, InputError
from turncheck.urls import DEFAULT_PORT, DEFAULT_TLS_PORT, IceUrl, Scheme, Transport

# The pair most WebRTC libraries and demos ship as their default iceServers.
DEFAULT_STUN_SERVERS = ("stun:stun.l.google.com:19302", "stun:stun1.l.google.com:19302")

COMMAND_LINE = "command line"
_CREDENTIALS_HINT = (
    "pass -u/--username and -p/--credential, TURNCHECK_USERNAME and TURNCHECK_CREDENTIAL, "
    "or --secret-file"
)


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One URL with the credentials that apply to it and where they came from."""

    url: IceUrl
    credentials: Credentials | None = None
    credential_source: str = "none"
    origin: str = COMMAND_LINE


@dataclass(frozen=True, slots=True)
class Target:
    """One URL tested over one transport on one port.

    Browser targets are what Chromium itself does with the URL (browser.py): its protocol
    and port, the name resolved as Chromium resolves it. Extra targets are what turncheck
    adds: the other transports of a bare URL, STUN over TLS for stuns:, and the servers
    DNS SRV names (RFC 7064/7065 clients ask SRV; browsers never do).
    """

    entry: ServerEntry
    transport: Transport
    port: int
    srv_name: str | None  # the SRV name to query (an extra target), else A/AAAA or a literal
    extra: bool = False
    absolute: bool = False  # resolve the name as "name." (Chromium does for UDP)

    @property
    def url(self) -> IceUrl:
        return self.entry.url

    @property
    def kinds(self) -> tuple[str, ...]:
        """Checks for this target: a STUN Binding always, a TURN Allocate for turn URLs."""
        return ("stun", "turn") if self.url.is_turn else ("stun",)

    @property
    def role(self) -> str:
        if not self.extra:
            return "browser"
        return "extra (SRV)" if self.srv_name else "extra"


_SRV_SERVICE = {
    (False, Transport.UDP): "_stun._udp",
    (False, Transport.TCP): "_stun._tcp",
    (False, Transport.TLS): "_stuns._tcp",
    (True, Transport.UDP): "_turn._udp",
    (True, Transport.TCP): "_turn._tcp",
    (True, Transport.TLS): "_turns._tcp",
}


def names_transport(url: IceUrl) -> bool:
    """A URL whose transport is fixed: ?transport=, or turns: (always TLS in a browser)."""
    return url.query is not None or url.scheme is Scheme.TURNS


def extra_transports(url: IceUrl) -> tuple[Transport, ...]:
    """What turncheck checks beyond the browser's use of a URL (the table in docs/probe.md)."""
    if names_transport(url):
        return ()
    if url.scheme is Scheme.STUNS:
        return (Transport.TLS,)  # STUN over TLS, as RFC 7064 means stuns: (Chromium: UDP)
    if url.port is None:
        return (Transport.TCP, Transport.TLS)
    return (Transport.TCP,)


def transports_for(url: IceUrl, override: tuple[Transport, ...] | None) -> tuple[Transport, ...]:
    """The browser's transport first, then turncheck's extras; --transport replaces the
    choice for URLs that do not name their transport."""
    if names_transport(url):
        return (protocol_of(url),)
    if override is not None:
        return override
    return (protocol_of(url), *extra_transports(url))


def port_for(url: IceUrl, transport: Transport) -> int:
    """The URL's port; without one, 5349 for TLS and 3478 otherwise."""
    if url.port is not None:
        return url.port
    return DEFAULT_TLS_PORT if transport is Transport.TLS else DEFAULT_PORT


def srv_name_for(url: IceUrl, transport: Transport) -> str | None:
    """RFC 8489 §8 / RFC 5928: SRV only without an explicit port and for a name, not an IP."""
    if url.port is not None or url.host_is_ip:
        return None
    return f"{_SRV_SERVICE[(url.is_turn, transport)]}.{url.host.rstrip('.')}"


def build_targets(
    entries: list[ServerEntry], override: tuple[Transport, ...] | None = None
) -> list[Target]:
    """Expand entries into targets, in input order, without duplicates.

    Per URL: the browser's own target first, then the extras; the SRV targets of names
    without a port come last. A URL's browser target always gets its own row, even when
    another URL's extras would cover it (turn:host?transport=tcp beside turn:host).
    """

    def key(entry: ServerEntry, transport: Transport, port: int) -> tuple[str, ...]:
        kind = "turn" if entry.url.is_turn else "stun"
        user = entry.credentials.username if entry.credentials else ""
        return (kind, entry.url.host.lower(), transport.value, str(port), user)

    def is_browser(url: IceUrl, transport: Transport, port: int) -> bool:
        return transport is protocol_of(url) and port == port_of(url)

    browser_keys = {
        key(e, t, port_for(e.url, t))
        for e in entries
        for t in transports_for(e.url, override)
        if is_browser(e.url, t, port_for(e.url, t))
    }
    seen: set[tuple[str, ...]] = set()
    targets: list[Target] = []
    srv_targets: list[Target] = []
    for entry in entries:
        url = entry.url
        for transport in transports_for(url, override):
            port = port_for(url, transport)
            own = is_browser(url, transport, port)
            k = key(entry, transport, port)
            if (k not in seen or own) and (own or k not in browser_keys):
                if own and (*k, "browser", str(url)) in seen:
                    continue
                seen.add(k)
                seen.add((*k, "browser", str(url)) if own else k)
                absolute = own and transport is Transport.UDP and not url.host_is_ip
                targets.append(
                    Target(entry, transport, port, None, extra=not own, absolute=absolute)
                )
            srv = srv_name_for(url, transport)
            if srv is not None and (*k, "srv") not in seen:
                seen.add((*k, "srv"))
                srv_targets.append(Target(entry, transport, port, srv, extra=True))
    return targets + srv_targets


def parse_for(text: str, rules: str = "chromium") -> IceUrl:
    """One URL as the browser whose rules apply reads it (--browser firefox: Firefox's)."""
    return firefox.ice_url(text) if rules == "firefox" else parse_ice_url(text)


def _check_for(inputs: list[IceServerInput], rules: str) -> list[list[IceUrl]]:
    """The constructor's check as that browser makes it: ConfigRejected, or the URLs."""
    if rules != "firefox":
        return check_constructor(inputs)
    rejected = firefox.check_constructor(inputs)
    if rejected is not None:
        raise rejected
    return [[firefox.ice_url(text) for text in server.urls] for server in inputs]


def entries_from(servers: list[IceServer], rules: str = "chromium") -> list[ServerEntry]:
    """iceServers entries → ServerEntry values, validated as RTCPeerConnection does (in
    Chromium, or with rules="firefox" in Firefox)."""
    inputs = [IceServerInput(s.urls, s.username, s.credential, s.origin) for s in servers]
    parsed = _check_for(inputs, rules)
    out: list[ServerEntry] = []
    for server, urls in zip(servers, parsed, strict=True):
        source = server.origin if server.credentials else "none"
        out.extend(ServerEntry(url, server.credentials, source, server.origin) for url in urls)
    return out


def command_line_entries(
    texts: list[str], credentials: Credentials | None, source: str, rules: str = "chromium"
) -> list[ServerEntry]:
    """URLs from the command line: each validated as an RTCIceServer with the -u/-p
    credentials (environment credentials given to stun: URLs are simply not used)."""
    out: list[ServerEntry] = []
    for text in texts:
        url = parse_for(text, rules)
        creds = credentials if url.is_turn else None
        server = IceServerInput(
            (text,),
            creds.username if creds else None,
            creds.password if creds else None,
            COMMAND_LINE,
        )
        try:
            _check_for([server], rules)
        except ConfigRejected as exc:
            if exc.exception == "InvalidAccessError":
                raise ConfigRejected(
                    exc.exception, exc.message, f"'{url.text}'", _CREDENTIALS_HINT, exc.who
                ) from None
            raise
        out.append(ServerEntry(url, creds, source if creds else "none"))
    return out


def parse_transports(text: str) -> tuple[Transport, ...]:
    """'udp,tcp,tls' → transports; InputError naming the bad word."""
    out: list[Transport] = []
    for word in (w.strip().lower() for w in text.split(",")):
        if not word:
            continue
        try:
            transport = Transport(word)
        except ValueError:
            raise InputError(
                f"--transport: unknown transport '{word}' (choose from udp, tcp, tls)"
            ) from None
        if transport not in out:
            out.append(transport)
    if not out:
        raise InputError("--transport: give at least one of udp, tcp, tls")
    return tuple(out)
