"""NAT behaviour: RFC 5780 mapping and filtering discovery, and the symmetric-NAT verdict.

Mapping tests (RFC 5780 §4.3), on one fresh unconnected UDP socket:
  I   Binding to the primary address               → mapped address M1, OTHER-ADDRESS
  II  Binding to the other IP, primary port        → M2; M2 = M1: endpoint-independent
  III Binding to the other IP and port             → M3; M3 = M2: address-dependent,
                                                      else address-and-port-dependent
Filtering tests (§4.4), on another fresh socket (a Linux NAT's conntrack state from an
unanswered change-request reply skews a later mapping test on the same socket):
  I   Binding to the primary address (opens the mapping)
  II  CHANGE-REQUEST change IP and port → an answer: endpoint-independent
  III CHANGE-REQUEST change port        → an answer: address-dependent, else
                                          address-and-port-dependent
Without OTHER-ADDRESS, symmetric mapping still shows when one socket gets different
mapped addresses from two server addresses (the two-servers method).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from turncheck import stun
from turncheck.errors import CheckFailure, ConnectFailure
from turncheck.results import CheckResult, NatVerdict
from turncheck.transport import Address, RetryPolicy, Tracer, UdpChannel, local_ip_towards
from turncheck.urls import fmt_address

EIM = "endpoint-independent"
ADM = "address-dependent"
APDM = "address-and-port-dependent"

CHANGE_IP = 0x04
CHANGE_PORT = 0x02

ADVICE = {
    "UDP blocked": "UDP is blocked: only TURN over TCP/TLS, ideally turns: on 443, will work",
    "symmetric": "direct peer-to-peer will usually fail between two such NATs: clients need TURN",
    "port-restricted cone": "direct peer-to-peer works with most peers through STUN, but not "
    "with peers behind a symmetric NAT: keep TURN available",
    "restricted cone": "direct peer-to-peer usually works; TURN is needed only for peers "
    "behind symmetric NATs",
    "full cone": "direct peer-to-peer works; TURN is needed only for peers behind symmetric NATs",
    "open internet": "no NAT: direct connections work; peers behind NATs still need STUN/TURN",
    "symmetric UDP firewall": "no NAT, but a firewall filters incoming UDP: direct connections "
    "work when this side sends first; keep TURN available",
    "no NAT": "this host's own address is what the server sees, so direct connections need "
    "no STUN; whether a firewall filters incoming UDP is unknown (the server cannot run the "
    "filtering tests: it has no RFC 5780 second address)",
    "unknown": "the NAT type could not be determined: see the reasons; test with a STUN server "
    "that supports RFC 5780 (two IP addresses), or give two STUN servers",
}


@dataclass(frozen=True, slots=True)
class NatTest:
    """One test as run: where it went, what came back, what that means."""

    name: str
    sent_to: str
    answer: str | None  # the mapped address, or None for no answer
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sent_to": self.sent_to,
            "answer": self.answer,
            "meaning": self.meaning,
        }


@dataclass(frozen=True, slots=True)
class NatReport:
    """The NAT discovery's findings; None fields carry their reason in `reasons`."""

    server: str | None
    method: str | None  # rfc5780 | rfc3489 | two-servers | None
    mapping: str | None
    filtering: str | None
    classic: str
    public_address: str | None
    local_address: str | None
    alg: bool
    advice: str
    reasons: dict[str, str] = field(default_factory=dict)
    tests: tuple[NatTest, ...] = ()
    classic_check: dict[str, Any] | None = None
    software: str | None = None  # the server's SOFTWARE (untrusted text, cleaned)

    @property
    def answered(self) -> bool:
        return self.public_address is not None

    @property
    def verdict(self) -> str:
        """One line: the NAT type and what it means for calls, or why it is unknown."""
        if not self.answered:
            why = self.reasons.get("mapping", "no answer")
            if self.classic == "UDP blocked":
                return f"UDP blocked: {why}; {self.advice}"
            return f"NAT type unknown: {why}"
        parts = [f"mapping {self.mapping}" if self.mapping else "mapping unknown"]
        parts.append(f"filtering {self.filtering}" if self.filtering else "filtering unknown")
        return f"{self.classic} ({', '.join(parts)}): {self.advice}"

    @property
    def symmetric(self) -> bool | None:
        if self.mapping is not None:
            return self.mapping != EIM
        return True if self.classic == "symmetric" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "classic": self.classic,
            "public_address": self.public_address,
            "local_address": self.local_address,
            "method": self.method,
            "alg": self.alg,
            "advice": self.advice,
            "symmetric": self.symmetric,
            "server": self.server,
            "reasons": dict(self.reasons),
            "tests": [t.to_json() for t in self.tests],
            "classic_check": self.classic_check,
            "software": self.software,
        }


@dataclass(frozen=True, slots=True)
class _Reply:
    mapped: Address
    other: Address | None
    plain_mapped: Address | None
    other_method: str | None = None  # rfc5780 (OTHER-ADDRESS) | rfc3489 (CHANGED-ADDRESS)
    software: str | None = None


def classic_name(
    mapping: str | None, filtering: str | None, nat: bool | None, answered: bool
) -> str:
    """RFC 3489 names from RFC 5780 results (PROTOCOL.md)."""
    if not answered:
        return "UDP blocked"
    if nat is False:
        if filtering == EIM:
            return "open internet"
        # No NAT answers the mapping question; only a firewall's filtering may stay open.
        return "symmetric UDP firewall" if filtering is not None else "no NAT"
    if mapping is None:
        return "unknown"
    if mapping != EIM:
        return "symmetric"
    return {EIM: "full cone", ADM: "restricted cone", APDM: "port-restricted cone"}.get(
        filtering or "", "unknown"
    )


async def _binding(
    channel: UdpChannel,
    dest: Address,
    deadline: float,
    policy: RetryPolicy,
    *,
    change: int = 0,
    expect_source: Address | None = None,
    failures: list[CheckFailure] | None = None,
) -> _Reply | None:
    """One Binding; None when nothing (acceptable) came back before the deadline."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    if change:
        request.attributes["CHANGE-REQUEST"] = change
    request.add_fingerprint()
    try:
        answer = await channel.request(
            request,
            dest,
            deadline=deadline,
            policy=policy,
            what="NAT test Binding (udp)",
            expect_source=expect_source,
        )
    except CheckFailure as exc:
        if failures is not None:
            failures.append(exc)
        return None
    attrs = answer.message.attributes
    mapped = attrs.get("XOR-MAPPED-ADDRESS") or attrs.get("MAPPED-ADDRESS")
    if answer.message.message_class != stun.Class.RESPONSE or mapped is None:
        return None
    other, method = stun.other_address(attrs)
    plain = attrs.get("MAPPED-ADDRESS")
    return _Reply(
        (str(mapped[0]), int(mapped[1])),
        other,
        (str(plain[0]), int(plain[1])) if plain and "XOR-MAPPED-ADDRESS" in attrs else None,
        method,
        stun.clean_text(attrs["SOFTWARE"]) if attrs.get("SOFTWARE") else None,
    )


async def discover(
    servers: Sequence[Address],
    *,
    timeout: float = 5.0,
    filter_timeout: float = 1.0,
    policy: RetryPolicy | None = None,
    tracer: Tracer | None = None,
) -> NatReport:
    """Run RFC 5780 discovery against the first server with OTHER-ADDRESS, else two-servers."""
    policy = policy or RetryPolicy()
    servers = list(dict.fromkeys(servers))[:8]
    if not servers:
        return _unknown(None, "no UDP STUN server address to test")
    family = socket.AF_INET6 if ":" in servers[0][0] else socket.AF_INET
    servers = [s for s in servers if (":" in s[0]) == (family == socket.AF_INET6)]
    loop = asyncio.get_running_loop()
    async with (
        await UdpChannel.open(family, tracer) as mapping_sock,
        await UdpChannel.open(family, tracer) as filtering_sock,
    ):
        assert isinstance(mapping_sock, UdpChannel) and isinstance(filtering_sock, UdpChannel)
        deadline = loop.time() + timeout
        failures: list[CheckFailure] = []
        firsts = await asyncio.gather(
            *(_binding(mapping_sock, s, deadline, policy, failures=failures) for s in servers)
        )
        tests = [
            NatTest(
                "mapping I",
                fmt_address(s),
                fmt_address(r.mapped) if r else None,
                "mapped address seen by this server" if r else "no answer",
            )
            for s, r in zip(servers, firsts, strict=True)
        ]
        answered = [(s, r) for s, r in zip(servers, firsts, strict=True) if r is not None]
        refused = [f for f in failures if isinstance(f, ConnectFailure) and f.kind == "refused"]
        if not answered and refused and len(refused) == len(failures):
            # ICMP port unreachable: the network carried our UDP; the server is not there.
            where = ", ".join(fmt_address(s) for s in servers)
            why = f"the server did not answer (connection refused: nothing listens on {where})"
            advice = (
                "check that the STUN server runs and listens on this port (UDP is not "
                "blocked: the refusal came back)"
            )
            return _unanswered(servers[0], "unknown", advice, why, why, tests)
        if not answered:
            return _unanswered(
                servers[0],
                "UDP blocked",
                ADVICE["UDP blocked"],
                "no STUN server answered over UDP",
                "idem",
                tests,
            )
        primary, first = next(((s, r) for s, r in answered if r.other is not None), answered[0])
        local_ip = local_ip_towards(primary)
        local = (local_ip, mapping_sock.local_address[1]) if local_ip else None
        behind_nat = None if local is None else first.mapped != local
        alg = first.plain_mapped is not None and first.plain_mapped != first.mapped
        if first.other is not None:
            report = await _rfc5780(
                mapping_sock, filtering_sock, primary, first, policy, timeout, filter_timeout
            )
            mapping, filtering, reasons, more = report
            method: str | None = first.other_method
        else:
            mapping, reasons, more = _two_servers(answered)
            filtering = None
            reasons["filtering"] = (
                f"{fmt_address(primary)} gives neither OTHER-ADDRESS (RFC 5780) nor "
                "CHANGED-ADDRESS (RFC 3489): filtering cannot be tested"
            )
            method = "two-servers" if len({s for s, _ in answered}) > 1 else None
        if behind_nat is False:
            mapping = EIM  # no NAT: the mapping is the address itself
            reasons.pop("mapping", None)
        classic = classic_name(mapping, filtering, behind_nat, True)
        if classic == "unknown" and mapping is None and reasons.pop("symmetric", "") == "yes":
            classic = "symmetric"  # the mapping changed, so it is not endpoint-independent
        reasons.pop("symmetric", None)
        return NatReport(
            server=fmt_address(primary),
            method=method,
            mapping=mapping,
            filtering=filtering,
            classic=classic,
            public_address=fmt_address(first.mapped),
            local_address=fmt_address(local) if local else None,
            alg=alg,
            advice=ADVICE.get(classic, ADVICE["unknown"]),
            reasons=reasons,
            tests=tuple(tests + more),
            software=first.software,
        )


async def _rfc5780(
    mapping_sock: UdpChannel,
    filtering_sock: UdpChannel,
    primary: Address,
    first: _Reply,
    policy: RetryPolicy,
    timeout: float,
    filter_timeout: float,
) -> tuple[str | None, str | None, dict[str, str], list[NatTest]]:
    assert first.other is not None
    other_ip, other_port = first.other
    loop = asyncio.get_running_loop()
    reasons: dict[str, str] = {}
    to_ii = (other_ip, primary[1])
    to_iii = (other_ip, other_port)

    async def mapping_tests() -> tuple[_Reply | None, _Reply | None]:
        deadline = loop.time() + timeout
        ii = await _binding(mapping_sock, to_ii, deadline, policy)
        if ii is None or ii.mapped == first.mapped:
            return ii, None
        return ii, await _binding(mapping_sock, to_iii, deadline, policy)

    async def filtering_tests() -> tuple[_Reply | None, _Reply | None, _Reply | None]:
        base = await _binding(filtering_sock, primary, loop.time() + timeout, policy)
        if base is None:
            return None, None, None
        deadline = loop.time() + filter_timeout
        both, port_only = await asyncio.gather(
            _binding(
                filtering_sock,
                primary,
                deadline,
                policy,
                change=CHANGE_IP | CHANGE_PORT,
                expect_source=(other_ip, other_port),
            ),
            _binding(
                filtering_sock,
                primary,
                deadline,
                policy,
                change=CHANGE_PORT,
                expect_source=(primary[0], other_port),
            ),
        )
        return base, both, port_only

    (ii, iii), (base, both, port_only) = await asyncio.gather(mapping_tests(), filtering_tests())
    tests: list[NatTest] = []
    mapping: str | None
    if ii is None:
        mapping = None
        reasons["mapping"] = (
            f"no answer from the other address {fmt_address(to_ii)} (mapping test II)"
        )
        tests.append(NatTest("mapping II", fmt_address(to_ii), None, "no answer"))
    elif ii.mapped == first.mapped:
        mapping = EIM
        tests.append(
            NatTest(
                "mapping II", fmt_address(to_ii), fmt_address(ii.mapped), "same as test I: " + EIM
            )
        )
    else:
        tests.append(
            NatTest("mapping II", fmt_address(to_ii), fmt_address(ii.mapped), "differs from test I")
        )
        if iii is None:
            mapping = None
            reasons["mapping"] = f"no answer from {fmt_address(to_iii)} (mapping test III)"
            reasons["symmetric"] = "yes"
            tests.append(NatTest("mapping III", fmt_address(to_iii), None, "no answer"))
        else:
            mapping = ADM if iii.mapped == ii.mapped else APDM
            tests.append(
                NatTest(
                    "mapping III",
                    fmt_address(to_iii),
                    fmt_address(iii.mapped),
                    ("same as test II: " if mapping == ADM else "differs from test II: ") + mapping,
                )
            )
    filtering: str | None
    if base is None:
        filtering = None
        reasons["filtering"] = "no answer to filtering test I"
    elif both is not None:
        filtering = EIM
    elif port_only is not None:
        filtering = ADM
    else:
        filtering = APDM
    if base is not None:
        tests.append(
            NatTest(
                "filtering II (change IP and port)",
                fmt_address(primary),
                fmt_address(both.mapped) if both else None,
                "answered from the other IP and port: " + EIM if both else "no answer",
            )
        )
        tests.append(
            NatTest(
                "filtering III (change port)",
                fmt_address(primary),
                fmt_address(port_only.mapped) if port_only else None,
                ("answered from the other port" + (": " + ADM if not both else ""))
                if port_only
                else "no answer",
            )
        )
    return mapping, filtering, reasons, tests


def _two_servers(
    answered: list[tuple[Address, _Reply]],
) -> tuple[str | None, dict[str, str], list[NatTest]]:
    reasons: dict[str, str] = {}
    if len(answered) < 2:
        reasons["mapping"] = (
            f"{fmt_address(answered[0][0])} gives neither OTHER-ADDRESS (RFC 5780) nor "
            "CHANGED-ADDRESS (RFC 3489), and no second server address answered: give a "
            "second STUN server"
        )
        return None, reasons, []
    mapped = {r.mapped for _, r in answered}
    if len(mapped) == 1:
        return EIM, reasons, []
    same_ip = len({s[0] for s, _ in answered}) == 1
    if same_ip:
        return APDM, reasons, []
    reasons["mapping"] = (
        "the mapping changes with the server address, but two servers cannot tell "
        "address-dependent from address-and-port-dependent"
    )
    reasons["symmetric"] = "yes"
    return None, reasons, []


def _unanswered(
    server: Address, classic: str, advice: str, mapping: str, filtering: str, tests: list[NatTest]
) -> NatReport:
    """No server answered the first test: nothing else could run."""
    return NatReport(
        server=fmt_address(server),
        method=None,
        mapping=None,
        filtering=None,
        classic=classic,
        public_address=None,
        local_address=None,
        alg=False,
        advice=advice,
        reasons={"mapping": mapping, "filtering": filtering},
        tests=tuple(tests),
    )


def _unknown(server: str | None, why: str) -> NatReport:
    return NatReport(
        server=server,
        method=None,
        mapping=None,
        filtering=None,
        classic="unknown",
        public_address=None,
        local_address=None,
        alg=False,
        advice=ADVICE["unknown"],
        reasons={"mapping": why, "filtering": why},
    )


def symmetric_from_bindings(results: Iterable[CheckResult]) -> NatVerdict:
    """The probe's line, by nat's method: a server's alternate address (RFC 5780
    OTHER-ADDRESS, else RFC 3489 CHANGED-ADDRESS) or two server addresses seen from one
    local UDP socket; a mapping equal to this host's own address means no NAT.

    A symmetric (address-dependent) mapping gives a socket a new public port per
    destination (RFC 4787 §4.1); an endpoint-independent one keeps it.
    """
    seen: dict[str, dict[str, str]] = {}  # local socket → server → mapped
    via_other: dict[str, str] = {}  # server → rfc5780 | rfc3489
    usable = [
        r
        for r in results
        if r.ok and r.kind == "stun" and r.transport == "udp" and r.local and r.server
    ]
    for result in usable:  # the URLs' own servers first: they win over "other address" ones
        srflx = result.candidate("srflx")
        if srflx is not None and result.local and result.server:
            seen.setdefault(result.local, {})[result.server] = srflx.hostport
    for result in usable:
        other = result.details.get("other_mapped")
        if other and result.local and other["server"] not in seen.get(result.local, {}):
            seen.setdefault(result.local, {})[other["server"]] = other["mapped"]
            via_other[other["server"]] = other.get("method", "rfc5780")
    if not seen:
        return NatVerdict(None, "no STUN server answered over UDP")
    for result in usable:
        srflx = result.candidate("srflx")
        local_ip = result.details.get("local_ip")
        if srflx is not None and local_ip and result.local:
            own = f"{local_ip}:{result.local.rsplit(':', 1)[1]}"
            if srflx.hostport == own or srflx.hostport == f"[{local_ip}]:{own.rsplit(':', 1)[1]}":
                return NatVerdict(False, "no NAT: the server sees this host's own address")
    servers = max(seen.values(), key=len)
    if len(servers) < 2:
        return NatVerdict(
            None,
            "only one server address answered over UDP (and it gives no RFC 5780 "
            "OTHER-ADDRESS or RFC 3489 CHANGED-ADDRESS)",
        )
    methods = {via_other[s] for s in servers if s in via_other}
    rfc = "RFC 3489" if methods == {"rfc3489"} else "RFC 5780" if methods else ""
    note = f" (one is a server's {rfc} alternate address)" if rfc else ""
    mapped = set(servers.values())
    if len(mapped) == 1:
        how = f"addresses, {rfc}" if rfc else "server addresses"
        return NatVerdict(False, f"the same mapping {mapped.pop()} from {len(servers)} {how}")
    pairs = ", ".join(f"{server} saw {addr}" for server, addr in sorted(servers.items()))
    return NatVerdict(True, f"the mapping changes with the destination{note}: {pairs}")


# -- the classic RFC 3489 cross-check with pystun3 --------------------------------------------

PYSTUN3_NAMES = {
    "Open Internet": "open internet",
    "Full Cone": "full cone",
    "Restric NAT": "restricted cone",
    "Restric Port NAT": "port-restricted cone",
    "Symmetric NAT": "symmetric",
    "Symmetric UDP Firewall": "symmetric UDP firewall",
    "Blocked": "UDP blocked",
}


async def classic_check(
    server: Address,
    ours: str,
    *,
    total: float = 10.0,
    per_try: float = 0.5,
    software: str | None = None,
) -> dict[str, Any]:
    """pystun3's RFC 3489 test on its own fresh socket in a worker thread, bounded in time.

    pystun3 blocks, is IPv4-only, reuses one socket for all tests and sends
    cookie-less RFC 3489 requests; it is an independent opinion, not the verdict.
    """
    out: dict[str, Any] = {"tool": "pystun3", "server": fmt_address(server), "nat_type": None}
    if ":" in server[0]:
        return {**out, "classic": None, "agrees": None, "note": "pystun3 is IPv4-only"}
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[str, Any]] = loop.create_future()
    local_ip = local_ip_towards(server) or "0.0.0.0"

    def work() -> None:
        try:
            import stun as pystun3  # pystun3's module name

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(per_try)
                sock.bind((local_ip, 0))
                # source_ip = the real local address, so its open-internet test can match.
                result = pystun3.get_nat_type(
                    sock, local_ip, sock.getsockname()[1], stun_host=server[0], stun_port=server[1]
                )
            loop.call_soon_threadsafe(_settle, future, result, None)
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)

    import threading

    threading.Thread(target=work, name="pystun3", daemon=True).start()
    try:
        async with asyncio.timeout(total):
            nat_type, _ = await future
    except ValueError:
        odd = len(software.encode()) if software else 0
        if odd % 4:
            # pystun3's reader steps attribute by attribute without the padding to 4 bytes
            # (RFC 8489 §14): after an odd-length one (p1_stun's 15-byte SOFTWARE "P1 STUN
            # library") it reads mid-attribute and fails on what it finds.
            return {
                **out,
                "classic": None,
                "agrees": None,
                "note": "pystun3 failed reading the server's answer: it does not skip the "
                f"padding after an attribute whose length is not a multiple of 4 (this "
                f"server's SOFTWARE is {odd} bytes); turncheck's own verdict above does not "
                "depend on it",
            }
        return _unreadable(out)
    except TimeoutError:
        return {
            **out,
            "classic": None,
            "agrees": None,
            "note": f"pystun3 did not finish in {total:g} s",
        }
    except Exception:
        return _unreadable(out)
    classic = PYSTUN3_NAMES.get(str(nat_type))
    # turncheck's "no NAT" leaves filtering open; pystun3's two no-NAT names both fit it.
    agrees = classic == ours or (
        ours == "no NAT" and classic in ("open internet", "symmetric UDP firewall")
    )
    note = None
    if classic is None:
        note = "pystun3 gave no verdict"
    elif classic == "UDP blocked" and ours != "UDP blocked":
        # pystun3 sends RFC 3489 requests without the magic cookie; answering them is
        # optional (RFC 8489 §12) and pion does not: the server is the cause, not the NAT.
        note = (
            "the server does not answer RFC 3489 requests (without the magic cookie; RFC 8489 "
            "§12 makes answering them optional), so pystun3 heard nothing: its 'UDP blocked' "
            "says nothing about this network"
        )
    elif not agrees:
        note = (
            f"pystun3 says {classic}, turncheck says {ours}: pystun3 runs every test on one "
            "socket (a NAT's state from one test skews the next) and trusts RFC 3489 answers"
        )
    kind = None if nat_type is None else str(nat_type)
    return {**out, "nat_type": kind, "classic": classic, "agrees": agrees, "note": note}


def _unreadable(out: dict[str, Any]) -> dict[str, Any]:
    return {
        **out,
        "classic": None,
        "agrees": None,
        "note": "pystun3 could not read the server's answer (it raised an error reading it); "
        "turncheck's own verdict above does not depend on it",
    }


def _settle(
    future: asyncio.Future[tuple[str, Any]], result: Any, exc: BaseException | None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
