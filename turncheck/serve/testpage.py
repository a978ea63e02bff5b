"""Test pages: a link support staff send, a test in the user's own browser, a stored answer.

    GET  /test/NAME               the page (turncheck/serve/page/test.html)
    GET  /test/static/FILE        its script and style sheet; nothing else, no other origin
    GET  /test/NAME/config        iceServers for this page load, and a token to post once
    POST /test/NAME/results       the page's measurements → stored → {"id", "summary", "ok"}
    GET  /results, /results/ID    stored results as JSON: admin only (docs/support.md)

Credentials are read, minted (TURN REST, `ttl` seconds) or fetched (ice_servers_url) per
page load, on the server: the page gets the iceServers a browser of the app would get, the
shared secret and the bearer token never leave serve. When a result arrives, serve checks
the same servers itself (turncheck.api, the browser model of the user's browser), so the
answer tells the user's network from the server; usertest.judge says it in words.

Bounds: a page load and a post per client address are rate-limited (RATE per WINDOW); a
post needs the token of a page load of the same profile, at most TOKEN_AGE old, once;
its body is at most store.MAX_DOCUMENT bytes; serve's own check of a profile is shared by
the results of CHECK_REUSE seconds and runs in the probes' slots, within CHECK_BUDGET.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from turncheck.errors import InputError
from turncheck.serve.config import ServeConfig, TestProfile
from turncheck.serve.store import MAX_DOCUMENT, Retention, Store, normal_id

if TYPE_CHECKING:
    from turncheck.config import IceServer
    from turncheck.results import CheckResult

PAGE_DIR = Path(__file__).parent / "page"
STATIC = {"test.js": "text/javascript", "test.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
RATE = 20  # page loads, and posts, per client address per WINDOW
WINDOW = 600.0  # seconds
MAX_CLIENTS = 10_000  # addresses the rate limiter remembers (the oldest are forgotten)
TOKEN_AGE = 600.0  # seconds from page load to post
CHECK_REUSE = 30.0  # seconds one server-side check serves every result of a profile
CHECK_BUDGET = 15.0  # seconds serve's own check may take
POST_S = CHECK_BUDGET + 10  # seconds the page waits for its POST's answer (test.js)
# What the page is told (test.js): 12 s of gathering catches Firefox's UDP timeout (701 at
# about 11 s; Chromium's comes after about 40 s, past any budget: "no answer in 12 s").
BUDGET_S, GATHER_S, RELAY_S = 30, 12, 4


class Exporter(Protocol):
    """What the test pages use of serve's state (app.Exporter)."""

    config: ServeConfig
    metrics: Any
    slots: asyncio.Semaphore | None
    admin_port: int | None

    def log(self, line: str) -> None: ...


class Limiter:
    """At most `rate` events per `window` seconds per key, remembering `keys` keys."""

    def __init__(self, rate: int, window: float, keys: int = MAX_CLIENTS) -> None:
        self.rate, self.window, self.keys = rate, window, keys
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self.seen.pop(key, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self.seen[key] = times
        while len(self.seen) > self.keys:
            self.seen.popitem(last=False)
        if len(times) >= self.rate:
            return False
        times.append(now)
        return True


@dataclass
class ServerCheck:
    """serve's own check of a profile's servers: when, its checks, its verdict."""

    at: float  # time.monotonic(), for the cache
    checks: tuple[CheckResult, ...]
    verdict: str
    ok: bool
    skipped: tuple[tuple[str, str], ...] = ()  # (url, why) the browser model leaves unused
    when: float = field(default_factory=time.time)  # wall clock, for the stored record


@dataclass
class Pages:
    """The test pages' state: the token key, rate limits, tokens used, the store."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    loads: Limiter = field(default_factory=lambda: Limiter(RATE, WINDOW))
    posts: Limiter = field(default_factory=lambda: Limiter(RATE, WINDOW))
    # token → (when, the answer once stored): a page's retry gets the same answer
    used: OrderedDict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=OrderedDict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    checks: dict[tuple[str, str], ServerCheck] = field(default_factory=dict)
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    store: Store | None = None

    def token(self, profile: str, now: float | None = None) -> str:
        issued = f"{(time.time() if now is None else now):.3f}.{secrets.token_hex(4)}"
        mac = hmac.new(self.key, f"{profile}|{issued}".encode(), hashlib.sha256).hexdigest()
        return f"{issued}.{mac[:32]}"

    def redeem(
        self, profile: str, token: Any, now: float | None = None
    ) -> tuple[str | None, dict[str, Any] | None]:
        """(None, None) when the token is good and now taken; (None, answer) when its results
        were stored already (a retry gets the same answer); (why, None) otherwise."""
        now = time.time() if now is None else now
        if not isinstance(token, str) or token.count(".") != 3 or not token.isascii():
            return "no token from a page load", None
        issued, _, mac = token.rpartition(".")
        good = hmac.new(self.key, f"{profile}|{issued}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode(), good[:32].encode()):
            return "the token is not from this server or this test (reload the page)", None
        try:
            age = now - float(issued.rsplit(".", 1)[0])
        except ValueError:
            return "no token from a page load", None
        if not -5 <= age <= TOKEN_AGE:
            return "the page was loaded too long ago: reload it and run the test again", None
        if token in self.used:
            answer = self.used[token][1]
            if answer is None:
                return "these results are being stored: wait for the answer", None
            return None, answer
        self.used[token] = (now, None)
        while self.used and next(iter(self.used.values()))[0] < now - TOKEN_AGE:
            self.used.popitem(last=False)
        return None, None


def _client(request: web.Request) -> str:
    return request.remote or "-"


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=HEADERS)


def _profile(request: web.Request) -> TestProfile | None:
    exporter: Exporter = request.app["exporter"]
    return exporter.config.tests.get(request.match_info["profile"])


async def page_handler(request: web.Request) -> web.StreamResponse:
    if _profile(request) is None:
        raise web.HTTPNotFound(text="no such test page\n")
    if request.path.endswith("/"):  # the page's relative URLs need /test/NAME as its base
        raise web.HTTPMovedPermanently(request.path.rstrip("/"))
    body = (PAGE_DIR / "test.html").read_bytes()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=HEADERS)


async def static_handler(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(text="not found\n")
    body = (PAGE_DIR / name).read_bytes()
    headers = {**HEADERS, "Cache-Control": "public, max-age=300"}
    return web.Response(body=body, content_type=STATIC[name], charset="utf-8", headers=headers)


async def ice_servers(profile: TestProfile, timeout: float = 5.0) -> list[IceServer]:
    """The profile's iceServers for one page load: credentials read, minted or fetched now."""
    from turncheck.config import Credentials, IceServer, read_secret, rest_credentials

    origin = f"test '{profile.name}'"
    if profile.urls:
        secret = read_secret(profile.secret_file, None, f"{origin}: secret_file")
        assert secret is not None
        creds = rest_credentials(secret, profile.rest_user, profile.ttl)
        return [IceServer(profile.urls, creds, origin, creds.username, creds.password)]
    if profile.ice_servers:
        out = []
        for i, server in enumerate(profile.ice_servers):
            where = f"{origin} ice_servers[{i}]"
            password = None
            if server.credential_file is not None:
                password = read_secret(server.credential_file, None, f"{where}: credential_file")
            elif server.credential_env is not None:
                import os

                password = os.environ.get(server.credential_env)
                if password is None:
                    raise InputError(f"{where}: credential_env {server.credential_env} is not set")
            given = (
                Credentials(server.username, password)
                if server.username is not None and password is not None
                else None
            )
            out.append(IceServer(server.urls, given, where, server.username, password))
        return out
    from turncheck.icefetch import fetch
    from turncheck.serve.config import fetch_spec

    return list((await fetch(fetch_spec(profile, timeout))).servers)


def _browser_json(server: IceServer) -> dict[str, Any]:
    out: dict[str, Any] = {"urls": list(server.urls)}
    if server.username is not None:
        out["username"] = server.username
    if server.credential is not None:
        out["credential"] = server.credential
    return out


async def config_handler(request: web.Request) -> web.StreamResponse:
    exporter: Exporter = request.app["exporter"]
    profile = _profile(request)
    if profile is None:
        return _json(404, {"error": "no such test page"})
    pages: Pages = request.app["pages"]
    if not pages.loads.allow(_client(request)):
        return _json(429, {"error": "too many tests from this address: try again in 10 minutes"})
    try:
        servers = await ice_servers(profile)
    except InputError as exc:
        exporter.log(f"test profile={profile.name}: cannot give the page its servers: {exc}")
        return _json(503, {"error": "this test is not set up right on the server: tell support"})
    _warm(exporter, pages, profile, request.headers.get("User-Agent", ""))
    return _json(
        200,
        {
            "profile": profile.name,
            "post_s": POST_S,
            "title": profile.title,
            "token": pages.token(profile.name),
            "iceServers": [_browser_json(s) for s in servers],
            "budget_s": BUDGET_S,
            "gather_s": GATHER_S,
            "relay_s": RELAY_S,
        },
    )


async def results_handler(request: web.Request) -> web.StreamResponse:
    from turncheck.usertest import parse_page

    exporter: Exporter = request.app["exporter"]
    pages: Pages = request.app["pages"]
    profile = _profile(request)
    if profile is None:
        return _json(404, {"error": "no such test page"})

    def refuse(status: int, why: str) -> web.Response:
        exporter.metrics.test_results.labels(profile=profile.name, outcome="refused").inc()
        exporter.log(f"test profile={profile.name} refused={status}: {why}")
        return _json(status, {"error": why})

    if not pages.posts.allow(_client(request)):
        return refuse(429, "too many results from this address: try again in 10 minutes")
    if (request.content_length or 0) > MAX_DOCUMENT:
        return refuse(413, f"the results are larger than {MAX_DOCUMENT // 1024} KiB")
    body = await request.content.read(MAX_DOCUMENT + 1)
    if len(body) > MAX_DOCUMENT:
        return refuse(413, f"the results are larger than {MAX_DOCUMENT // 1024} KiB")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return refuse(400, "the results are not JSON")
    if not isinstance(doc, dict):
        return refuse(400, "the results are not a JSON object")
    try:
        page = parse_page(doc)
    except InputError as exc:
        return refuse(400, str(exc))
    token = doc.get("token")
    problem, answered = pages.redeem(profile.name, token)
    if answered is not None:
        return _json(201, answered)
    if problem is not None:
        return refuse(403, problem)
    key = str(token)
    try:
        answer = await _store(exporter, pages, profile, page)
    except sqlite3.Error as exc:
        pages.used.pop(key, None)  # not stored: the page may send it again
        exporter.log(f"test profile={profile.name}: the results file refused the result: {exc}")
        return _json(503, {"error": "the server could not store the result: try again"})
    except BaseException:  # the client went away (cancelled), or a bug: not stored either
        pages.used.pop(key, None)
        raise
    pages.used[key] = (time.time(), answer)
    return _json(201, answer)


async def _store(
    exporter: Exporter, pages: Pages, profile: TestProfile, page: Any
) -> dict[str, Any]:
    """Judge one result beside serve's own check, store it; the page's answer."""
    from turncheck.usertest import browser_of, judge, redact

    browser = browser_of(page.user_agent)
    check = await _server_check(exporter, pages, profile, browser.engine)
    judgement = judge(page, check.checks, browser.name, browser.engine, check.skipped)
    record = {
        "profile": profile.name,
        "browser": browser.to_json(),
        "page": redact(page, profile.redact_public).to_json(),
        "server_side": {
            "at": check.when,
            "ok": check.ok,
            "verdict": check.verdict,
            "checks": [_compact(c) for c in check.checks],
        },
        "judgement": judgement.to_json(),
    }
    assert pages.store is not None
    rid = pages.store.add(record, Retention(profile.retention_days, profile.max_results))
    outcome = "calls_connect" if judgement.ok else "calls_fail"
    exporter.metrics.test_results.labels(profile=profile.name, outcome=outcome).inc()
    exporter.log(
        f"test profile={profile.name} id={rid} browser={browser.name} ok={int(judgement.ok)} "
        f"verdict={judgement.verdict}"
    )
    return {"id": rid, "summary": judgement.summary(rid), "ok": judgement.ok}


def _warm(exporter: Exporter, pages: Pages, profile: TestProfile, user_agent: str) -> None:
    """Start serve's own check when a page loads, so that it is ready (or nearly) when the
    results come: the page's tests take 5 to 26 s, the check up to CHECK_BUDGET."""
    from turncheck.usertest import browser_of

    task = asyncio.create_task(
        _server_check(exporter, pages, profile, browser_of(user_agent).engine)
    )
    pages.background.add(task)
    task.add_done_callback(pages.background.discard)


def _compact(check: CheckResult) -> dict[str, Any]:
    return {
        "url": check.url,
        "transport": check.transport,
        "kind": check.kind,
        "server": check.server,
        "ok": check.ok,
        "rtt_ms": None if check.rtt_ms is None else round(check.rtt_ms, 3),
        "relayed": None if check.relay is None else check.relay.ok,
        "reason": None if check.error is None else check.error.reason,
        "hint": None if check.error is None else check.error.hint,
        "extra": check.extra,
    }


async def _server_check(
    exporter: Exporter, pages: Pages, profile: TestProfile, engine: str | None
) -> ServerCheck:
    """serve's own check of the profile's servers with the user's browser's rules (Chromium's
    for an engine without a model: Safari's WebKit uses libwebrtc too); one per CHECK_REUSE."""
    rules = engine if engine in ("chromium", "firefox") else "chromium"
    key = (profile.name, rules)
    async with pages.locks.setdefault(key, asyncio.Lock()):  # results at once share one
        cached = pages.checks.get(key)
        if cached is not None and time.monotonic() - cached.at < CHECK_REUSE:
            return cached
        check = await _check_now(exporter, profile, rules)
        pages.checks[key] = check
        return check


async def _check_now(exporter: Exporter, profile: TestProfile, rules: str) -> ServerCheck:
    from turncheck.api import ProbeOptions, run
    from turncheck.errors import ConfigRejected
    from turncheck.plan import entries_from
    from turncheck.relay import RelaySettings
    from turncheck.resolve import parse_dns_server

    started = time.monotonic()
    try:
        servers = await ice_servers(profile)
        try:
            entries = entries_from(servers, rules)
        except ConfigRejected:  # the browser refuses it all: check what Chromium would use
            entries, rules = entries_from(servers), "chromium"
        options = ProbeOptions(
            entries=tuple(entries),
            relay=RelaySettings(count=5, size=100, interval=0.02),
            timeout=3.0,
            dns_server=parse_dns_server(profile.dns_server) if profile.dns_server else None,
            ca_file=profile.ca_file,
            engines=(rules,),
        )
        assert exporter.slots is not None
        async with asyncio.timeout(CHECK_BUDGET):
            async with exporter.slots:
                report = await run(options)
        view = report.views.get(rules)
        skipped = view.skipped if view is not None else ()
        check = ServerCheck(started, report.checks, report.verdict, report.ok, skipped)
    except TimeoutError:
        check = ServerCheck(started, (), f"serve's own check took over {CHECK_BUDGET:g} s", False)
    except InputError as exc:
        check = ServerCheck(started, (), f"serve could not check the servers: {exc}", False)
    return check


def _admin(request: web.Request) -> bool:
    """Results are read on the admin listen address, or with the admin token."""
    exporter: Exporter = request.app["exporter"]
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if exporter.admin_port is not None and sock is not None and sock[1] == exporter.admin_port:
        return True
    results = exporter.config.results
    try:
        token = results.admin_token() if results is not None else None
    except InputError as exc:  # a missing or empty token file (a rotation): nobody gets in
        exporter.log(f"turncheck serve: results.admin_token_file: {exc}")
        return False
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def list_handler(request: web.Request) -> web.StreamResponse:
    if not _admin(request):
        return _json(403, {"error": "results are read on the admin address or with its token"})
    pages: Pages = request.app["pages"]
    assert pages.store is not None
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "50"))))
    except ValueError:
        return _json(400, {"error": "limit: give a number"})
    listed = pages.store.recent(limit, request.query.get("profile"))
    return _json(200, {"results": [r.to_json() for r in listed]})


async def one_handler(request: web.Request) -> web.StreamResponse:
    if not _admin(request):
        return _json(403, {"error": "results are read on the admin address or with its token"})
    pages: Pages = request.app["pages"]
    assert pages.store is not None
    rid = normal_id(request.match_info["rid"])
    record = pages.store.get(rid) if rid is not None else None
    if record is None:
        return _json(404, {"error": "no result with this reference"})
    return _json(200, record)


def add_routes(app: web.Application, exporter: Exporter) -> None:
    """The test pages' routes, when the config has test profiles."""
    pages = Pages()
    if exporter.config.results is not None:
        pages.store = Store(exporter.config.results.path)
        for profile in exporter.config.tests.values():
            pages.store.prune(profile.name, Retention(profile.retention_days, profile.max_results))
    app["pages"] = pages
    app.router.add_get("/test/static/{name}", static_handler)
    app.router.add_get("/test/{profile}", page_handler)
    app.router.add_get("/test/{profile}/", page_handler)
    app.router.add_get("/test/{profile}/config", config_handler)
    app.router.add_post("/test/{profile}/results", results_handler)
    app.router.add_get("/results", list_handler)
    app.router.add_get("/results/{rid}", one_handler)


def results_section(request: web.Request) -> str:
    """The status page's list of recent test results (admin only; else how to read them)."""
    import html

    exporter: Exporter = request.app["exporter"]
    if not exporter.config.tests:
        return ""
    pages: Pages = request.app["pages"]
    names = ", ".join(
        f"<a href='/test/{html.escape(n)}'>/test/{html.escape(n)}</a>"
        for n in sorted(exporter.config.tests)
    )
    head = f"<h2>Test pages</h2><p>Send users: {names}.</p><h2>Recent test results</h2>"
    if not _admin(request) or pages.store is None:
        return head + (
            "<p>Results are listed on the admin address (--admin-listen), or read with "
            "<code>turncheck results</code>.</p>"
        )
    rows = []
    for r in pages.store.recent(50):
        rows.append(
            "<tr>"
            f"<td><a href='/results/{html.escape(r.id)}'>{html.escape(r.id)}</a></td>"
            f"<td>{html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created)))}"
            f"</td><td>{html.escape(r.profile)}</td><td>{html.escape(r.browser)}</td>"
            f"<td>{'calls connect' if r.ok else 'CALLS FAIL'}</td>"
            f"<td>{html.escape(r.verdict)}</td></tr>"
        )
    return (
        head + "<table border='1' cellpadding='4'><tr><th>reference</th><th>when</th>"
        "<th>test</th><th>browser</th><th>result</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
    )
