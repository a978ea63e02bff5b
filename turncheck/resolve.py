"""URL → concrete endpoints: A/AAAA as Chromium resolves, SRV for the extra targets.

A/AAAA go through the operating system's resolver by default. Chromium looks up UDP
STUN/TURN server names as absolute names ("name."), which /etc/hosts does not match, and
TCP/TLS names as written: browser targets do the same (Target.absolute). SRV is asked only
for the extra SRV targets; a name without SRV records gives them no endpoint. With
--dns-server every query goes to that server through dnspython. DNS errors are mapped to
DnsFailure here and nowhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from turncheck.errors import DnsFailure, InputError
from turncheck.plan import Target
from turncheck.urls import hostport

if TYPE_CHECKING:  # dnspython is imported on first use: IP literals and A/AAAA via the OS need none
    import dns.asyncresolver
    import dns.exception

MAX_ENDPOINTS = 16  # per target: a bound on what one name can make us probe


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of one target, with how it was found."""

    target: Target
    address: str
    port: int
    via: str
    # Chromium's lookup of "name." failed (a name in /etc/hosts only) where the name as
    # written resolved, as Firefox resolves it: the check runs, for Firefox's sake.
    absolute_failure: str | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET

    @property
    def server(self) -> str:
        return hostport(self.address, self.port)


def parse_dns_server(text: str) -> tuple[str, int]:
    """'IP[:PORT]' or '[IPv6]:PORT' → (ip, port); InputError otherwise."""
    return parse_ip_port(text, "--dns-server", default_port=53)


def parse_ip_port(text: str, option: str, *, default_port: int | None) -> tuple[str, int]:
    """'IP[:PORT]' or '[IPv6]:PORT' → (ip, port); InputError naming the option otherwise."""
    raw = text.strip()
    host, port_text = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    form = "IP[:PORT]" if default_port is not None else "IP:PORT"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(f"{option}: '{text}' is not an IP address ({form})") from None
    if not port_text:
        if default_port is None:
            raise InputError(f"{option}: '{text}' has no port ({form})")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"{option}: bad port in '{text}'")
    return host, int(port_text)


class Resolver:
    """Resolution policy of one run: the OS resolver, or one DNS server via dnspython."""

    def __init__(
        self,
        dns_server: tuple[str, int] | None,
        *,
        timeout: float,
        families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
    ) -> None:
        self.dns_server = dns_server
        self.timeout = timeout
        self.families = families
        self._dns: dns.asyncresolver.Resolver | None = None

    def _dnspython(self, name: str) -> dns.asyncresolver.Resolver:
        import dns.asyncresolver
        import dns.exception

        if self._dns is None:
            if self.dns_server is not None:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [self.dns_server[0]]
                resolver.port = self.dns_server[1]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver()
                except dns.exception.DNSException as exc:
                    # No nameserver in /etc/resolv.conf: the lookup of `name` cannot start.
                    raise DnsFailure(
                        "unreachable", name, "this host's resolv.conf names no DNS server"
                    ) from exc
            resolver.lifetime = self.timeout
            resolver.timeout = min(2.0, self.timeout)
            resolver.search = []
            resolver.use_search_by_default = False
            self._dns = resolver
        return self._dns

    async def endpoints(self, target: Target) -> list[Endpoint]:
        """All endpoints of a target, or DnsFailure."""
        url = target.url
        if url.host_is_ip:
            endpoints = [Endpoint(target, url.host, target.port, "IP literal")]
        elif target.srv_name is None:
            name = url.host
            absolute_failure = None
            if target.absolute and not name.endswith(".") and not _is_localhost(name):
                # Chromium's UDP lookup: the hosts file does not match "name."; Firefox's
                # does. When only the name as written resolves, both are told apart.
                try:
                    addresses = await self.addresses(name + ".")
                    name += "."
                except DnsFailure as exc:
                    addresses = await self._plain_or_raise(name, exc)
                    absolute_failure = f"{exc.name}: {exc.detail}"
            else:
                addresses = await self.addresses(name)
            endpoints = [
                Endpoint(target, a, target.port, _via_addr(name), absolute_failure)
                for a in addresses
            ]
        else:
            endpoints = await self._via_srv(target, target.srv_name)
            if not endpoints:
                return []
        allowed = [e for e in endpoints if e.family in self.families]
        if not allowed:
            only = "IPv4" if self.families == (socket.AF_INET,) else "IPv6"
            raise DnsFailure("noanswer", url.host, f"no {only} address (restricted by -4/-6)")
        return allowed[:MAX_ENDPOINTS]

    async def _plain_or_raise(self, name: str, absolute: DnsFailure) -> list[str]:
        try:
            return await self.addresses(name)
        except DnsFailure:
            raise absolute from None

    async def _via_srv(self, target: Target, name: str) -> list[Endpoint]:
        records = await self.srv(name)
        if records is None:
            # RFC 5928 §3: no SRV records → A/AAAA on the default port, which the
            # target without SRV already checks.
            return []
        endpoints: list[Endpoint] = []
        lookups = [self.addresses(host) for host, _ in records]
        found = await asyncio.gather(*lookups, return_exceptions=True)
        first_error: DnsFailure | None = None
        for (host, port), result in zip(records, found, strict=True):
            if isinstance(result, DnsFailure):
                first_error = first_error or result
                continue
            if isinstance(result, BaseException):
                raise result
            via = f"SRV {name} → {host}:{port}"
            endpoints.extend(Endpoint(target, a, port, via) for a in result)
        if not endpoints and first_error is not None:
            raise first_error
        return endpoints

    async def srv(self, name: str) -> list[tuple[str, int]] | None:
        """SRV records in processing order; None when the name has none; DnsFailure on error."""
        import dns.exception
        import dns.resolver

        try:
            answer = await self._dnspython(name).resolve(name, "SRV", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            raise _map_dns_error(exc, name) from exc
        if answer.rrset is None:
            return None
        ordered: list[Any] = answer.rrset.processing_order()  # SRV rdata: .target, .port
        records = [(r.target.to_text(omit_final_dot=True), int(r.port)) for r in ordered]
        # RFC 2782: a lone target of "." means the service is decidedly not available.
        if len(records) == 1 and records[0][0] in ("", "."):
            raise DnsFailure("not-offered", name, "the SRV record's target is '.'")
        return [(host, port) for host, port in records if host not in ("", ".")]

    async def addresses(self, host: str) -> list[str]:
        """A/AAAA of a name; through dnspython with --dns-server, else the OS resolver."""
        if self.dns_server is not None:
            return await self._dns_addresses(host)
        return await self._os_addresses(host)

    async def _dns_addresses(self, host: str) -> list[str]:
        import dns.exception
        import dns.resolver

        kinds = [
            (fam, "A" if fam == socket.AF_INET else "AAAA")
            for fam in (socket.AF_INET, socket.AF_INET6)
            if fam in self.families
        ]
        results = await asyncio.gather(
            *(self._dnspython(host).resolve(host, rdtype, search=False) for _, rdtype in kinds),
            return_exceptions=True,
        )
        out: list[str] = []
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            elif result.rrset is not None:
                out.extend(r.to_text() for r in result.rrset)
        if out:
            return out
        for exc in errors:
            if not isinstance(exc, dns.exception.DNSException):
                raise exc
        hard = [e for e in errors if not isinstance(e, dns.resolver.NoAnswer)]
        if hard:
            raise _map_dns_error(hard[0], host)  # type: ignore[arg-type]
        raise DnsFailure("noanswer", host, "the name has no A or AAAA records")

    async def _os_addresses(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        family = self.families[0] if len(self.families) == 1 else socket.AF_UNSPEC
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(host, None, family=family, type=socket.SOCK_DGRAM)
        except TimeoutError:
            raise DnsFailure(
                "timeout", host, f"no answer from the resolver in {self.timeout:g} s"
            ) from None
        except socket.gaierror as exc:
            raise _map_gai_error(exc, host) from exc
        out: list[str] = []
        for info in infos:
            addr = str(info[4][0])
            if addr not in out:
                out.append(addr)
        return out


def _is_localhost(name: str) -> bool:
    """Chromium resolves localhost names itself (net::IsLocalHostname), never via DNS."""
    return name.lower() == "localhost" or name.lower().endswith(".localhost")


def _via_addr(host: str) -> str:
    return f"A/AAAA {host}"


def _map_dns_error(exc: dns.exception.DNSException, name: str) -> DnsFailure:
    """The one place dnspython's errors become ours."""
    import dns.exception
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsFailure("nxdomain", name, "the name does not exist")
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsFailure("noanswer", name, "no records of that type")
    if isinstance(exc, dns.exception.Timeout):
        return DnsFailure("timeout", name, "the DNS server did not answer in time")
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsFailure("servfail", name, "the DNS server failed or refused the query")
    return DnsFailure("error", name, str(exc) or type(exc).__name__)


def _map_gai_error(exc: socket.gaierror, host: str) -> DnsFailure:
    code = exc.errno
    if code == socket.EAI_NONAME:
        return DnsFailure("nxdomain", host, "the name does not exist (or has no address)")
    if code == getattr(socket, "EAI_NODATA", -5):
        return DnsFailure("noanswer", host, "the name has no address")
    if code == socket.EAI_AGAIN:
        # At once, not after a wait: no DNS server could be reached (no route, nothing
        # configured) or none gave an answer (glibc's "Temporary failure in name resolution").
        return DnsFailure("unreachable", host, "temporary failure in name resolution")
    return DnsFailure("error", host, exc.strerror or str(exc))
