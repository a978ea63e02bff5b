"""ICE server URLs (RFC 7064 stun/stuns, RFC 7065 turn/turns) as frozen values."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from turncheck.errors import InputError


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

# RFC 3986 reg-name restricted to what DNS can carry: labels of letters, digits, '-' and '_'.
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")  # fullmatch: no "\n"


@dataclass(frozen=True, slots=True)
class IceUrl:
    """One parsed ICE server URL."""

    scheme: Scheme
    host: str  # without brackets; an IPv6 literal is stored bare
    port: int | None  # None when the URL gives no port
    transport: Transport | None  # from ?transport= (tcp on turns: means TLS)
    text: str  # as the user wrote it

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
        if self.transport is not None:
            query = "tcp" if self.transport is Transport.TLS else self.transport.value
            out += f"?transport={query}"
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


def _fail(text: str, why: str) -> InputError:
    return InputError(f"invalid ICE server URL '{text}': {why}")


def parse_url(text: str) -> IceUrl:
    """Parse a stun:/stuns:/turn:/turns: URL; raise InputError naming the URL and the fault."""
    raw = text.strip()
    if not raw:
        raise InputError("invalid ICE server URL '': the URL is empty")
    scheme_text, sep, rest = raw.partition(":")
    if not sep:
        raise _fail(text, "no scheme: expected stun:, stuns:, turn: or turns:")
    try:
        scheme = Scheme(scheme_text.lower())
    except ValueError:
        raise _fail(
            text, f"unknown scheme '{scheme_text}': expected stun, stuns, turn or turns"
        ) from None
    if rest.startswith("//"):
        raise _fail(text, f"ICE URLs take no '//' (write {scheme}:host:port, RFC 7064/7065)")
    authority, qsep, query = rest.partition("?")
    transport = _parse_query(text, scheme, query) if qsep else None
    host, port = _parse_authority(text, authority)
    if scheme.secure and transport in (None, Transport.TCP):
        transport = Transport.TLS if transport is not None else None
    return IceUrl(scheme=scheme, host=host, port=port, transport=transport, text=raw)


def _parse_query(text: str, scheme: Scheme, query: str) -> Transport:
    if not scheme.is_turn:
        raise _fail(text, f"{scheme}: URLs take no query part (RFC 7064)")
    key, eq, value = query.partition("=")
    if key.lower() != "transport" or not eq or "&" in value:
        raise _fail(text, "the only query allowed is ?transport=udp or ?transport=tcp")
    value = value.lower()
    if value == "udp":
        if scheme is Scheme.TURNS:
            raise _fail(
                text,
                "turns: with transport=udp means TURN over DTLS (RFC 7350), which browsers "
                "do not use and turncheck does not test; use turns:...?transport=tcp for TLS",
            )
        return Transport.UDP
    if value == "tcp":
        return Transport.TCP
    raise _fail(text, f"unknown transport '{value}': expected udp or tcp")


def _parse_authority(text: str, authority: str) -> tuple[str, int | None]:
    if not authority:
        raise _fail(text, "missing host")
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _fail(text, "unclosed '[' in IPv6 address")
        host = authority[1:end]
        tail = authority[end + 1 :]
        addr = _ip_or_none(host)
        if not isinstance(addr, ipaddress.IPv6Address):
            raise _fail(text, f"'[{host}]' is not an IPv6 address")
        if tail:
            if not tail.startswith(":"):
                raise _fail(text, f"unexpected '{tail}' after the IPv6 address")
            port_text = tail[1:]
    else:
        if authority.count(":") > 1:
            raise _fail(
                text, "an IPv6 address must be written in brackets, e.g. turn:[2001:db8::1]"
            )
        host, csep, port_part = authority.partition(":")
        if csep:
            port_text = port_part
        if not host:
            raise _fail(text, "missing host")
        if _ip_or_none(host) is None:
            _check_hostname(text, host)
    port = _parse_port(text, port_text) if port_text is not None else None
    return host, port


def _check_hostname(text: str, host: str) -> None:
    if "@" in host:
        raise _fail(text, "credentials do not belong in the URL; pass them with -u/-p")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not name:
        raise _fail(text, f"'{host}' is not a valid host name")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise _fail(text, f"'{host}' is not a valid host name")
    if re.fullmatch(r"[0-9.]+", name):
        raise _fail(text, f"'{host}' is not a valid IPv4 address")


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not port_text.isascii():
        raise _fail(text, f"port '{port_text}' is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _fail(text, f"port {port} is out of range 1-65535")
    return port
