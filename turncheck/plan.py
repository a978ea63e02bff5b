"""What a run will check: server entries × transports, before any packet or DNS query."""

from __future__ import annotations

from dataclasses import dataclass

from turncheck.config import Credentials, IceServer
from turncheck.errors import InputError
from turncheck.urls import DEFAULT_PORT, DEFAULT_TLS_PORT, IceUrl, Transport, parse_url

# The pair most WebRTC libraries and demos ship as their default iceServers.
DEFAULT_STUN_SERVERS = ("stun:stun.l.google.com:19302", "stun:stun1.l.google.com:19302")

ALL_TRANSPORTS = (Transport.UDP, Transport.TCP, Transport.TLS)


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One URL with the credentials that apply to it and where they came from."""

    url: IceUrl
    credentials: Credentials | None = None
    credential_source: str = "none"
    origin: str = "command line"


@dataclass(frozen=True, slots=True)
class Target:
    """One URL tested over one transport on one port."""

    entry: ServerEntry
    transport: Transport
    port: int
    srv_name: str | None  # the SRV name to query, or None for A/AAAA (or a literal) only

    @property
    def url(self) -> IceUrl:
        return self.entry.url

    @property
    def kinds(self) -> tuple[str, ...]:
        """Checks for this target: a STUN Binding always, a TURN Allocate for turn URLs."""
        return ("stun", "turn") if self.url.is_turn else ("stun",)


_SRV_SERVICE = {
    (False, Transport.UDP): "_stun._udp",
    (False, Transport.TCP): "_stun._tcp",
    (False, Transport.TLS): "_stuns._tcp",
    (True, Transport.UDP): "_turn._udp",
    (True, Transport.TCP): "_turn._tcp",
    (True, Transport.TLS): "_turns._tcp",
}


def transports_for(url: IceUrl, override: tuple[Transport, ...] | None) -> tuple[Transport, ...]:
    """The README's rule: a URL that names its transport is tested as a browser would use it."""
    if url.transport is not None:
        return (url.transport,)
    if url.scheme.secure:
        return (Transport.TLS,)
    if override is not None:
        return override
    if url.port is None:
        return ALL_TRANSPORTS
    return (Transport.UDP, Transport.TCP)


def port_for(url: IceUrl, transport: Transport) -> int:
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
    """Expand entries into targets, in input order, without duplicates."""
    seen: set[tuple[str, Transport, int, str]] = set()
    targets: list[Target] = []
    for entry in entries:
        for transport in transports_for(entry.url, override):
            port = port_for(entry.url, transport)
            key = (
                f"{entry.url.scheme}:{entry.url.host.lower()}",
                transport,
                port,
                entry.credentials.username if entry.credentials else "",
            )
            if key in seen:
                continue
            seen.add(key)
            targets.append(Target(entry, transport, port, srv_name_for(entry.url, transport)))
    return targets


def require_credentials(entries: list[ServerEntry]) -> None:
    """Refuse TURN URLs without credentials, as RTCPeerConnection does (InvalidAccessError)."""
    for entry in entries:
        if not (entry.url.is_turn and entry.credentials is None):
            continue
        if entry.origin == "command line":
            raise InputError(
                f"'{entry.url.text}' is a TURN URL but no username and credential were given "
                "(a browser refuses this with InvalidAccessError); pass -u/--username and "
                "-p/--credential, TURNCHECK_USERNAME and TURNCHECK_CREDENTIAL, or --secret-file"
            )
        raise InputError(
            f"{entry.origin}: '{entry.url.text}' is a TURN URL but the entry has no username "
            "and credential (the browser's InvalidAccessError)"
        )


def entries_from(servers: list[IceServer]) -> list[ServerEntry]:
    """iceServers entries → ServerEntry values; a bad URL is the browser's SyntaxError."""
    out: list[ServerEntry] = []
    for server in servers:
        for text in server.urls:
            try:
                url = parse_url(text)
            except InputError as exc:
                raise InputError(f"{server.origin}: {exc} (the browser's SyntaxError)") from None
            source = server.origin if server.credentials else "none"
            out.append(ServerEntry(url, server.credentials, source, server.origin))
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
