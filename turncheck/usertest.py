"""What the test page measured in a user's browser, and what it means.

The page (turncheck/serve/page, served by `turncheck serve` at /test/NAME) gathers with
every ICE URL on its own and with the whole configuration, and relays data between two
of its own peer connections through each TURN URL. It posts one document (schema 1,
docs/support.md); `parse_page` validates it into values. `judge` puts it beside the check
serve ran against the same servers when the result arrived, and says in plain words what
the user's network does: a matrix per URL and transport, a verdict for support staff, a
summary for the user. The words come from explain (icecandidateerror codes, the server's
failures) and from the browser models (which URLs the user's browser uses).

Nothing here ever holds a credential: the page's document carries none, and the judgement
names no address of the user's (their public address may be redacted in what is stored).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from turncheck.browser import ORDER, parse_ice_url, port_of, protocol_of
from turncheck.errors import InputError
from turncheck.explain import candidate_error
from turncheck.results import CheckResult

SCHEMA = 1
MAX_ITEMS = 50  # candidates or errors per gathering, gatherings, relay tests
MAX_TEXT = 300  # characters of any text field (errorText, user agent, exception message)
REDACTED = "redacted"

CAVEAT = (
    "a pass proves that this browser, on this network, reached these servers and relayed "
    "data to itself through them; not the other party's network, nor call quality at a "
    "call's bitrate"
)


@dataclass(frozen=True, slots=True)
class PageCandidate:
    type: str
    protocol: str
    address: str | None
    port: int | None
    related_address: str | None = None
    related_port: int | None = None
    relay_protocol: str | None = None
    url: str | None = None
    ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "protocol": self.protocol,
            "address": self.address,
            "port": self.port,
            "relatedAddress": self.related_address,
            "relatedPort": self.related_port,
            "relayProtocol": self.relay_protocol,
            "url": self.url,
            "ms": self.ms,
        }


@dataclass(frozen=True, slots=True)
class PageError:
    url: str
    code: int
    text: str
    ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "code": self.code, "text": self.text, "ms": self.ms}


@dataclass(frozen=True, slots=True)
class PageGather:
    """One gathering in the page: one URL alone, or (url None) the whole configuration."""

    url: str | None
    server: int | None
    ms: float | None
    complete: bool
    exception: tuple[str, str] | None
    candidates: tuple[PageCandidate, ...]
    errors: tuple[PageError, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "server": self.server,
            "ms": self.ms,
            "complete": self.complete,
            "exception": None
            if self.exception is None
            else {"name": self.exception[0], "message": self.exception[1]},
            "candidates": [c.to_json() for c in self.candidates],
            "errors": [e.to_json() for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class PageRelay:
    """The page's relay test through one TURN URL: two relay-only peer connections."""

    url: str
    server: int | None
    connected: bool
    connect_ms: float | None
    state: str
    local: tuple[str | None, str | None, str | None] | None  # type, protocol, relayProtocol
    sent: int
    received: int
    rtt_ms: tuple[float, float, float, float] | None  # min, p50, p95, max
    throughput_kbps: float | None
    error: str | None

    @property
    def loss(self) -> float | None:
        return None if self.sent == 0 else max(0.0, 1.0 - self.received / self.sent)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "server": self.server,
            "connected": self.connected,
            "connect_ms": self.connect_ms,
            "state": self.state,
            "local": None
            if self.local is None
            else dict(zip(("type", "protocol", "relayProtocol"), self.local, strict=True)),
            "sent": self.sent,
            "received": self.received,
            "rtt_ms": None
            if self.rtt_ms is None
            else dict(zip(("min", "p50", "p95", "max"), self.rtt_ms, strict=True)),
            "throughput_kbps": self.throughput_kbps,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class PageResult:
    profile: str
    user_agent: str
    elapsed_ms: float | None
    gathers: tuple[PageGather, ...]
    relays: tuple[PageRelay, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA,
            "profile": self.profile,
            "browser": {"userAgent": self.user_agent},
            "elapsed_ms": self.elapsed_ms,
            "gathers": [g.to_json() for g in self.gathers],
            "relays": [r.to_json() for r in self.relays],
        }


@dataclass(frozen=True, slots=True)
class BrowserName:
    """A browser from its UserAgent: its name and version, and the engine whose rules
    explain it (None: an engine turncheck has no model of, such as Safari's WebKit)."""

    user_agent: str
    name: str
    engine: str | None

    def to_json(self) -> dict[str, Any]:
        return {"user_agent": self.user_agent, "name": self.name, "engine": self.engine}


# Order matters: Edge and Opera also say Chrome/, Chrome also says Safari/.
_BROWSERS = (
    (re.compile(r"Firefox/(\d+)"), "Firefox", "firefox"),
    (re.compile(r"Edg(?:e|A|iOS)?/(\d+)"), "Edge", "chromium"),
    (re.compile(r"OPR/(\d+)"), "Opera", "chromium"),
    (re.compile(r"(?:Headless)?Chrome/(\d+)"), "Chrome", "chromium"),
    (re.compile(r"Version/(\d+)[\d.]* .*Safari/"), "Safari", None),
)


def browser_of(user_agent: str) -> BrowserName:
    """Which browser a UserAgent names."""
    for pattern, name, engine in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            return BrowserName(user_agent, f"{name} {match.group(1)}", engine)
    return BrowserName(user_agent, "an unknown browser", None)


# -- reading the page's document ---------------------------------------------------------------


class _Doc:
    """Typed reads from untrusted JSON: every failure names its path (gathers[2].port)."""

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def _bad(self, key: str, what: str) -> InputError:
        where = f"{self.path}.{key}" if self.path else key
        return InputError(f"the page's results: {where}: {what}")

    def get(self, key: str) -> Any:
        if not isinstance(self.value, dict):
            raise InputError(f"the page's results: {self.path or 'the document'}: not an object")
        return self.value.get(key)

    def text(self, key: str, *, optional: bool = False) -> str | None:
        v = self.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self._bad(key, "expected a string")
        return v[:MAX_TEXT]

    def number(self, key: str, *, optional: bool = True) -> float | None:
        v = self.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self._bad(key, "expected a number")
        return float(v)

    def whole(self, key: str, *, optional: bool = True, top: int = 1 << 31) -> int | None:
        v = self.number(key, optional=optional)
        if v is None:
            return None
        if v != int(v) or not 0 <= v <= top:
            raise self._bad(key, f"expected a whole number from 0 to {top}")
        return int(v)

    def flag(self, key: str) -> bool:
        v = self.get(key)
        if not isinstance(v, bool):
            raise self._bad(key, "expected true or false")
        return v

    def items(self, key: str) -> list[_Doc]:
        v = self.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self._bad(key, "expected a list")
        if len(v) > MAX_ITEMS:
            raise self._bad(key, f"more than {MAX_ITEMS} items")
        base = f"{self.path}.{key}" if self.path else key
        return [_Doc(item, f"{base}[{i}]") for i, item in enumerate(v)]

    def child(self, key: str) -> _Doc | None:
        v = self.get(key)
        if v is None:
            return None
        return _Doc(v, f"{self.path}.{key}" if self.path else key)


def parse_page(value: Any) -> PageResult:
    """The page's posted document as values; InputError naming the first bad field."""
    doc = _Doc(value, "")
    if doc.get("version") != SCHEMA:
        raise InputError(f"the page's results: version: expected {SCHEMA}")
    browser = doc.child("browser")
    user_agent = (browser.text("userAgent", optional=True) if browser else None) or ""
    gathers = tuple(_gather(g) for g in doc.items("gathers"))
    relays = tuple(_relay(r) for r in doc.items("relays"))
    return PageResult(
        profile=doc.text("profile") or "",
        user_agent=user_agent,
        elapsed_ms=doc.number("elapsed_ms"),
        gathers=gathers,
        relays=relays,
    )


def _gather(g: _Doc) -> PageGather:
    exception = g.child("exception")
    return PageGather(
        url=g.text("url", optional=True),
        server=g.whole("server", top=1000),
        ms=g.number("ms"),
        complete=g.flag("complete"),
        exception=None
        if exception is None
        else (exception.text("name") or "", exception.text("message", optional=True) or ""),
        candidates=tuple(_candidate(c) for c in g.items("candidates")),
        errors=tuple(
            PageError(
                url=e.text("url", optional=True) or "",
                code=e.whole("code", optional=False, top=999) or 0,
                text=e.text("text", optional=True) or "",
                ms=e.number("ms"),
            )
            for e in g.items("errors")
        ),
    )


def _candidate(c: _Doc) -> PageCandidate:
    return PageCandidate(
        type=c.text("type") or "",
        protocol=c.text("protocol", optional=True) or "",
        address=c.text("address", optional=True),
        port=c.whole("port", top=65535),
        related_address=c.text("relatedAddress", optional=True),
        related_port=c.whole("relatedPort", top=65535),
        relay_protocol=c.text("relayProtocol", optional=True),
        url=c.text("url", optional=True),
        ms=c.number("ms"),
    )


def _relay(r: _Doc) -> PageRelay:
    local = r.child("local")
    rtt = r.child("rtt_ms")
    rtts = None
    if rtt is not None:
        values = [rtt.number(k) for k in ("min", "p50", "p95", "max")]
        if all(v is not None for v in values):
            rtts = tuple(float(v or 0.0) for v in values)
    return PageRelay(
        url=r.text("url") or "",
        server=r.whole("server", top=1000),
        connected=r.flag("connected"),
        connect_ms=r.number("connect_ms"),
        state=r.text("state", optional=True) or "",
        local=None
        if local is None
        else (
            local.text("type", optional=True),
            local.text("protocol", optional=True),
            local.text("relayProtocol", optional=True),
        ),
        sent=r.whole("sent", optional=False, top=1_000_000) or 0,
        received=r.whole("received", optional=False, top=1_000_000) or 0,
        rtt_ms=rtts,  # type: ignore[arg-type]
        throughput_kbps=r.number("throughput_kbps"),
        error=r.text("error", optional=True),
    )


def redact(page: PageResult, public: bool) -> PageResult:
    """The document as it may be stored: host addresses always gone (and the host
    address srflx candidates relate to); with *public* the user's public address too (the
    srflx address, and the address relay candidates relate to). Relay addresses are the
    TURN server's own and stay."""

    def one(c: PageCandidate) -> PageCandidate:
        if c.type == "host":
            return replace(c, address=REDACTED if c.address else c.address)
        if c.type in ("srflx", "prflx"):
            return replace(
                c,
                address=REDACTED if public and c.address else c.address,
                related_address=REDACTED if c.related_address else None,
            )
        if public and c.related_address:
            return replace(c, related_address=REDACTED)
        return c

    gathers = tuple(
        replace(g, candidates=tuple(one(c) for c in g.candidates)) for g in page.gathers
    )
    return replace(page, gathers=gathers)


# -- the judgement -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One URL of the configuration: what the user's browser got, what serve's check got."""

    url: str
    transport: str  # udp, tcp, tls: how the browser reaches the server
    kind: str  # stun | turn
    port: int
    user_ok: bool | None  # None: the browser did not use the URL (it refused it)
    user: str
    server_ok: bool | None  # None: serve did not check it
    server: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "transport": self.transport,
            "kind": self.kind,
            "port": self.port,
            "user_ok": self.user_ok,
            "user": self.user,
            "server_ok": self.server_ok,
            "server": self.server,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class Judgement:
    browser: str  # "Firefox 153"
    engine: str | None
    rows: tuple[Row, ...]
    nat: str
    symmetric: bool | None
    ipv6: str
    verdict: str
    ok: bool
    plain: str  # the summary's words for the user, without the reference
    cause: str = ""  # a few words for lists: "UDP blocked", "TURN server failing"

    def summary(self, reference: str) -> str:
        """The paragraph the user sees and copies for support."""
        return f"{self.plain} Reference {reference}."

    def to_json(self) -> dict[str, Any]:
        return {
            "browser": self.browser,
            "engine": self.engine,
            "ok": self.ok,
            "verdict": self.verdict,
            "plain": self.plain,
            "cause": self.cause,
            "nat": {"symmetric": self.symmetric, "basis": self.nat},
            "ipv6": self.ipv6,
            "rows": [r.to_json() for r in self.rows],
            "caveat": CAVEAT,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Judgement:
        """A stored judgement (serve kept it as JSON) back as a value."""
        return cls(
            browser=str(doc.get("browser", "")),
            engine=doc.get("engine"),
            rows=tuple(Row(**r) for r in doc.get("rows", [])),
            nat=str(doc.get("nat", {}).get("basis", "")),
            symmetric=doc.get("nat", {}).get("symmetric"),
            ipv6=str(doc.get("ipv6", "")),
            verdict=str(doc.get("verdict", "")),
            ok=bool(doc.get("ok")),
            plain=str(doc.get("plain", "")),
            cause=str(doc.get("cause", "")),
        )


_NAMES = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


def _key(url: str) -> str:
    try:
        return parse_ice_url(url).text
    except InputError:
        return url


def judge(
    page: PageResult,
    checks: Sequence[CheckResult],
    browser: str,
    engine: str | None,
    skipped: Sequence[tuple[str, str]] = (),
) -> Judgement:
    """The page's measurements beside serve's own check of the same servers (*checks*, run
    with the browser model of the user's browser; *skipped*: the URLs that model says the
    browser leaves unused, and why), in words."""
    unused = {_key(url): why for url, why in skipped}
    alone = {_key(g.url): g for g in page.gathers if g.url is not None}
    relays = {_key(r.url): r for r in page.relays}
    rows = []
    for url in alone:
        try:
            parsed = parse_ice_url(url)
        except InputError:
            continue
        transport = protocol_of(parsed).value
        kind = "turn" if parsed.is_turn else "stun"
        mine = [
            c for c in checks if _key(c.url) == url and c.transport == transport and not c.extra
        ]
        mine = [c for c in mine if c.kind == kind] or mine
        user_ok, user, hint = _user_side(alone[url], relays.get(url), kind, browser, transport)
        if url in unused and not user_ok:  # the browser's own rule, not the network
            user_ok, user, hint = None, f"{browser} does not use it: {unused[url]}", ""
        server_ok, server = _server_side(mine, kind)
        rows.append(
            Row(url, transport, kind, port_of(parsed), user_ok, user, server_ok, server, hint)
        )
    rows.sort(key=lambda r: (r.kind != "turn", ORDER.get(r.transport, 9), r.port, r.url))
    symmetric, nat = _nat(page)
    verdict, plain, ok, cause = _verdict(rows, page, symmetric)
    return Judgement(
        browser, engine, tuple(rows), nat, symmetric, _ipv6(page), verdict, ok, plain, cause
    )


def _user_side(
    gather: PageGather, relay: PageRelay | None, kind: str, browser: str, transport: str
) -> tuple[bool | None, str, str]:
    """(ok, words, hint) for one URL as the user's browser got it."""
    if gather.exception is not None:
        name, message = gather.exception
        return None, f"{browser} refused the URL ({name}: {message})", ""
    if kind == "turn":
        if relay is not None and relay.connected:
            return True, f"relayed data{_figures(relay)}", ""
        if any(c.type == "relay" for c in gather.candidates):
            why = f" ({relay.error})" if relay is not None and relay.error else ""
            return False, f"relay candidate, but no data through it{why}", ""
    elif any(c.type == "srflx" for c in gather.candidates):
        return True, "answered (srflx)", ""
    return False, *_no_answer(gather, transport)


def _no_answer(gather: PageGather, transport: str) -> tuple[str, str]:
    for error in gather.errors:
        reason, hint = candidate_error(error.url, error.code, error.text)
        timed_out = "timed out" in error.text.lower()
        if error.code == 701 and (timed_out or (not error.text and transport == "udp")):
            # Firefox's errorText is always "": over UDP its 701 is its ~11 s timeout.
            return "no answer (timed out)", hint
        if error.code == 701 and "lookup" in error.text.lower():
            return "name lookup failed", hint
        if error.code == 701:
            return "could not connect", hint
        if error.code == 401:
            return "refused the credentials (401)", hint
        return f"{error.code} {error.text.rstrip('.')}".strip() + f": {reason}", hint
    waited = f" in {gather.ms / 1000:.0f} s" if gather.ms else ""
    return f"no answer{waited}", "a firewall on the user's network drops these packets"


def _figures(relay: PageRelay) -> str:
    parts = []
    if relay.rtt_ms is not None:
        parts.append(f"{relay.rtt_ms[1]:.0f} ms")
    if relay.loss is not None:
        parts.append(f"{relay.loss * 100:.0f}% loss")
    if relay.throughput_kbps:
        parts.append(f"{relay.throughput_kbps / 1000:.1f} Mbit/s")
    return f", {', '.join(parts)}" if parts else ""


def _server_side(checks: Sequence[CheckResult], kind: str) -> tuple[bool | None, str]:
    if not checks:
        return None, "not checked"
    good = [c for c in checks if c.ok]
    if good:
        rtt = min((c.rtt_ms for c in good if c.rtt_ms is not None), default=None)
        what = "relays" if kind == "turn" else "answers"
        relayed = [c.relay for c in good if c.relay is not None]
        if kind == "turn" and relayed and not any(r.ok for r in relayed):
            return False, "allocates, but relayed nothing back"
        return True, what + (f", {rtt:.0f} ms" if rtt is not None else "")
    failed = checks[0]
    reason = failed.error.reason if failed.error is not None else "failed"
    return False, reason


def _nat(page: PageResult) -> tuple[bool | None, str]:
    """A symmetric NAT gives one socket a different public mapping per server address:
    the whole configuration's gathering shows it as several srflx candidates of one base."""
    whole = next((g for g in page.gathers if g.url is None), None)
    servers = {
        _server_of(g.url)
        for g in page.gathers
        if g.url is not None and any(c.type == "srflx" for c in g.candidates)
    }
    servers.discard(None)
    if whole is None:
        return None, "the page did not gather with the whole configuration"
    bases: dict[tuple[str | None, int | None], set[tuple[str | None, int | None]]] = {}
    for c in whole.candidates:
        if c.type != "srflx" or c.protocol != "udp":
            continue
        base = (c.related_address, c.related_port)
        if c.related_address in (None, "", "0.0.0.0", "::", REDACTED) or not c.related_port:
            base = (None, None)  # the browser hides the base: one socket per network
        bases.setdefault(base, set()).add((c.address, c.port))
    most = max((len(m) for m in bases.values()), default=0)
    if most > 1:
        return True, f"{most} different public mappings of one socket, one per server"
    if most == 1 and len(servers) > 1:
        return False, f"one public mapping seen by {len(servers)} server addresses"
    if not servers:
        return None, "no STUN server answered over UDP"
    return None, "only one server address answered over UDP: two are needed to tell"


def _server_of(url: str) -> str | None:
    try:
        parsed = parse_ice_url(url)
    except InputError:
        return None
    if protocol_of(parsed).value != "udp":
        return None
    return f"{parsed.host}:{port_of(parsed)}"


def _ipv6(page: PageResult) -> str:
    for g in page.gathers:
        for c in g.candidates:
            if c.type == "srflx" and c.address and ":" in c.address:
                return "yes: a server saw the user over IPv6"
    return "not seen: no server saw the user over IPv6 (they may have no IPv6 address)"


def _best(rows: Sequence[Row], page: PageResult) -> Row | None:
    relays = {_key(r.url): r for r in page.relays}
    good = [r for r in rows if r.kind == "turn" and r.user_ok]

    def rank(row: Row) -> tuple[int, float]:
        relay = relays.get(row.url)
        rtt = relay.rtt_ms[1] if relay is not None and relay.rtt_ms is not None else 1e9
        return ORDER.get(row.transport, 9), rtt

    return min(good, key=rank) if good else None


def _ports(rows: Sequence[Row]) -> str:
    ports = sorted({r.port for r in rows})
    return ", ".join(str(p) for p in ports)


def _verdict(
    rows: Sequence[Row], page: PageResult, symmetric: bool | None
) -> tuple[str, str, bool, str]:
    """(verdict for support, plain words for the user, calls connect, the cause in a few
    words for lists)."""
    turn = [r for r in rows if r.kind == "turn"]
    best = _best(rows, page)
    nat_words = (
        "; the user's network has a symmetric NAT (a new public port per server): calls "
        "there need the TURN relay"
        if symmetric
        else ""
    )
    if not turn:
        srflx = any(r.user_ok for r in rows)
        ok = srflx and not symmetric
        if srflx:
            verdict = (
                "no TURN server in the configuration: the user's network answers STUN, so calls "
                "connect only where both networks let a direct path through" + nat_words
            )
        else:
            verdict = (
                "no TURN server in the configuration, and no STUN server answered the user's "
                "browser: calls between different networks will fail"
            )
        plain = (
            "Your browser reached the connection servers, but the app has no relay server."
            if srflx
            else "Your browser could not reach the app's connection servers."
        )
        return verdict, plain, ok, "no TURN server" if srflx else "no TURN; STUN unreachable"
    if best is not None:
        relay = next((r for r in page.relays if _key(r.url) == best.url), None)
        how = f"TURN over {_NAMES[best.transport]} on {best.port}"
        figures = _figures(relay).lstrip(", ") if relay is not None else ""
        cause = _cause(rows, best)
        calls = f"calls will connect, relayed over {_NAMES[best.transport]} ({best.url})"
        if cause:
            verdict = f"{cause}, calls will relay over {_NAMES[best.transport]}"
        elif all(r.user_ok for r in turn):
            verdict = (
                f"every TURN URL relayed data from the user's network ({_list_transports(turn)})"
                f": {calls}"
            )
        else:
            verdict = f"{how} relayed data from the user's network: {calls}"
        plain = (
            f"Calls can connect from your network, through the relay server over "
            f"{_NAMES[best.transport]} on port {best.port}"
            + (f" ({figures})" if figures else "")
            + "."
        )
        label = f"TURN over {_NAMES[best.transport]} works"
        if "blocks UDP" in verdict:
            only443 = "only port 443" in verdict
            plain = (
                "Your network blocks UDP"
                + (" and lets only port 443 through. " if only443 else ". ")
                + plain
            )
            label = "UDP blocked" + (", only 443 open" if only443 else "")
        elif "only port 443" in verdict:
            plain = "Your network lets only port 443 through. " + plain
            label = "only port 443 open"
        elif all(r.user_ok for r in turn):
            label = "every TURN URL works"
        return verdict + nat_words, plain, True, label + (", symmetric NAT" if symmetric else "")
    # No TURN URL relayed anything from the user's network.
    refused = [r for r in turn if r.user_ok is None]
    server_good = [r for r in turn if r.server_ok]
    auth = [r for r in turn if "401" in r.user]
    if auth:
        same = [r for r in auth if r.server_ok is False]
        side = (
            "serve's own check with credentials from the same source was refused too: the "
            "profile's credentials (or its REST shared secret) do not match the TURN server's"
            if same
            else "serve's own check was accepted: the credentials the page got had expired "
            "or were for another server"
        )
        verdict = f"the TURN server refused the page's credentials (401); {side}"
        plain = "The relay server refused the app's credentials: this is a server problem."
        label = "credentials refused"
    elif server_good:
        works = _list_transports(server_good)
        failures = "; ".join(f"{r.url}: {r.user}" for r in turn if r.user_ok is False)
        verdict = (
            f"from serve's side TURN works over {works}; from the user's network every TURN "
            f"URL failed ({failures}): the user's network blocks the TURN server, calls that "
            "need a relay will fail"
        )
        plain = (
            "Your network blocks the app's relay server on every port it offers: calls that "
            "need the relay will fail. Ask your network administrator to allow "
            f"{_allow(turn)}."
        )
        label = "network blocks TURN"
    elif refused and len(refused) == len(turn):
        verdict = f"the user's browser refused every TURN URL: {refused[0].user}"
        plain = "Your browser refused the app's relay server settings."
        label = "browser refused TURN"
    else:
        reasons = "; ".join(dict.fromkeys(r.server for r in turn if r.server_ok is False))
        verdict = (
            f"TURN failed from the user's network and from serve's side too ({reasons}): the "
            "TURN server is down or misconfigured, not the user's network; calls that need a "
            "relay fail"
        )
        plain = "The app's relay server is not working right now: this is a server problem."
        label = "TURN server failing"
    return verdict + nat_words, plain, False, label + (", symmetric NAT" if symmetric else "")


def _allow(turn: Sequence[Row]) -> str:
    parts = [f"{_NAMES[r.transport]} to port {r.port}" for r in turn]
    return ", ".join(dict.fromkeys(parts))


def _list_transports(rows: Sequence[Row]) -> str:
    names = sorted({r.transport for r in rows}, key=lambda t: ORDER.get(t, 9))
    return ", ".join(_NAMES[n] for n in names)


def _cause(rows: Sequence[Row], best: Row) -> str:
    """What the user's network does, when it is what stops some URLs: UDP blocked, or only
    port 443 let through. Empty when nothing the user's network does explains a failure."""
    udp = [r for r in rows if r.transport == "udp" and r.user_ok is not None]
    stream = [
        r for r in rows if r.transport != "udp" and r.kind == "turn" and r.user_ok is not None
    ]
    udp_dead = bool(udp) and not any(r.user_ok for r in udp)
    udp_fine_at_server = any(r.server_ok for r in udp)
    best_words = f"TURN over {_NAMES[best.transport]} on {best.port} worked"
    if udp_dead and udp_fine_at_server:
        turn_udp = [r for r in udp if r.kind == "turn" and r.server_ok]
        server_words = (
            f"TURN over UDP on {_ports(turn_udp)} works"
            if turn_udp
            else f"STUN over UDP on {_ports([r for r in udp if r.server_ok])} answers"
        )
        closed = [r for r in stream if not r.user_ok and r.port != 443]
        only443 = bool(closed) and best.port == 443 and any(r.server_ok for r in closed)
        network = (
            "the user's network blocks UDP and lets only port 443 through"
            if only443
            else "the user's network blocks UDP"
        )
        return (
            f"from serve's side {server_words}; from the user's network UDP to {_ports(udp)} got "
            f"no answer and {best_words}: {network}"
        )
    closed = [r for r in stream if not r.user_ok and r.port != 443 and r.server_ok]
    if closed and best.port == 443:
        return (
            f"from serve's side TURN over {_list_transports(closed)} on {_ports(closed)} works; "
            f"from the user's network only port 443 got through ({best_words}): the user's "
            "network lets only port 443 through"
        )
    return ""
