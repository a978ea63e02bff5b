"""ICE server URLs (RFC 7064 stun/stuns, RFC 7065 turn/turns) as frozen values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class Scheme(StrEnum):
    STUN = "stun"
    STUNS = "stuns"
    TURN = "turn"
    TURNS = "turns"

    @property
    def is_turn(self) -> bool:
        return self in (Scheme.TURN, Scheme.TURNS)

    @property
    def secure(self) -> bool:
        return self in (Scheme.STUNS, Scheme.TURNS)


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


DEFAULT_PORT = 3478
DEFAULT_TLS_PORT = 5349


@dataclass(frozen=True, slots=True)
class IceUrl:
    """One parsed ICE server URL."""

    scheme: Scheme
    host: str  # without brackets; an IPv6 literal is stored bare
    port: int | None  # None when the URL gives no port
    query: Transport | None  # ?transport= as written: udp or tcp (None: no query)
    text: str  # as the user wrote it

    @property
    def transport(self) -> Transport | None:
        """The transport the URL names: ?transport=, which on turns: always means TLS."""
        if self.query is None:
            return None
        return Transport.TLS if self.scheme is Scheme.TURNS else self.query

    @property
    def is_turn(self) -> bool:
        return self.scheme.is_turn

    @property
    def host_is_ip(self) -> bool:
        return _ip_or_none(self.host) is not None

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        out = f"{self.scheme}:{self.host_for_url}"
        if self.port is not None:
            out += f":{self.port}"
        if self.query is not None:
            out += f"?transport={self.query.value}"
        return out


def hostport(host: str, port: int) -> str:
    """host:port, an IPv6 literal in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fmt_address(addr: tuple[str, int]) -> str:
    """An (ip, port) address as text, an IPv6 literal in brackets."""
    return hostport(str(addr[0]), int(addr[1]))


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
