"""--ice-servers-url against a local HTTPS credentials endpoint (certificate from trustme)
serving every response shape the apps' services use, and the failures: the fetched
credentials reach coturn and never any output."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block, release_ports

USER, PASSWORD, TOKEN = "fetchuser", "F3tchedPw9x", "tok-8f2a1c"


def shapes(turn: str, stun: str) -> dict[str, object]:
    entry = {"urls": [turn], "username": USER, "credential": PASSWORD}
    return {
        "twilio": {
            "ice_servers": [
                {"url": stun, "urls": stun},
                {"url": turn, "urls": turn, "username": USER, "credential": PASSWORD},
            ],
            "ttl": "86400",
        },
        "cloudflare": {"iceServers": [entry]},
        "cloudflare-old": {"iceServers": entry},
        "metered": [{"urls": stun}, entry],
        "xirsys": {"v": {"iceServers": [entry]}, "s": "ok"},
        "matrix": {"uris": [turn], "username": USER, "password": PASSWORD, "ttl": 86400},
        "rtc": {"iceServers": [entry], "iceTransportPolicy": "relay"},
    }


@pytest.fixture
def endpoint(tls_ca, coturn_factory) -> Iterator[tuple[str, Coturn]]:
    server = coturn_factory(users={USER: PASSWORD}, tls=False)
    turn = f"turn:127.0.0.1:{server.port}?transport=udp"
    documents = shapes(turn, f"stun:127.0.0.1:{server.port}")

    async def shape(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "cloudflare" and request.method != "POST":
            return web.Response(status=405)
        if name == "xirsys" and request.method != "PUT":
            return web.Response(status=405)
        return web.json_response(documents[name])

    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="no")
        return web.json_response(documents["rtc"])

    async def header(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != TOKEN:
            return web.Response(status=403, text="no")
        return web.json_response(documents["cloudflare"])

    async def failing(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "500":
            return web.Response(status=500, text="boom")
        if kind == "html":
            return web.Response(text="<!doctype html><html>login</html>", content_type="text/html")
        if kind == "slow":
            await asyncio.sleep(3)
        if kind == "huge":
            return web.Response(body=b"[" + b" " * (2 << 20) + b"]")
        if kind == "empty":
            return web.json_response({"iceServers": []})
        return web.json_response({"token": "x", "expires": 1})

    app = web.Application()
    app.router.add_route("*", "/shape/{name}", shape)
    app.router.add_get("/auth", auth)
    app.router.add_get("/header", header)
    app.router.add_get("/fail/{kind}", failing)
    port = free_port_block(1)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    leaf = tls_ca.issue_cert("localhost", "127.0.0.1")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"https://localhost:{port}", server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        release_ports(port, 1)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("twilio", ()),
        ("cloudflare", ("--fetch-method", "POST", "--fetch-body", '{"ttl": 86400}')),
        ("cloudflare-old", ()),
        ("metered", ()),
        ("xirsys", ("--fetch-method", "PUT")),
        ("matrix", ()),
        ("rtc", ()),
    ],
)
def test_every_shape_reaches_coturn_and_no_output(
    cli, endpoint, ca_file: Path, name: str, extra: tuple[str, ...]
) -> None:
    base, server = endpoint
    result = cli(
        "probe",
        "--ice-servers-url",
        f"{base}/shape/{name}?key={TOKEN}",
        *extra,
        "--ca-file",
        str(ca_file),
        "--json",
    )
    assert result.code == 0, (result.out, result.err)
    doc = result.json()
    assert doc["browser"]["relay"] == ["udp"]
    if name == "rtc":
        assert doc["relay_only"] is True
    for text in (result.out, result.err):
        assert PASSWORD not in text and USER not in text and TOKEN not in text
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted


def test_auth_from_a_file_and_a_header_from_the_environment(
    cli, endpoint, ca_file: Path, tmp_path: Path
) -> None:
    base, _ = endpoint
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    bearer = cli(
        "probe",
        "--ice-servers-url",
        f"{base}/auth",
        "--fetch-bearer-file",
        str(token),
        "--ca-file",
        str(ca_file),
        "--json",
    )
    assert bearer.code == 0, bearer.err
    header = cli(
        "probe",
        "--ice-servers-url",
        f"{base}/header",
        "--fetch-header",
        "X-Api-Key=APP_KEY",
        "--ca-file",
        str(ca_file),
        "--json",
        env={"APP_KEY": TOKEN},
    )
    assert header.code == 0, header.err
    for text in (bearer.out, bearer.err, header.out, header.err):
        assert TOKEN not in text and PASSWORD not in text


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("/auth", "HTTP 401 Unauthorized: the endpoint wants credentials"),
        ("/fail/500", "HTTP 500 Internal Server Error"),
        ("/fail/html", "the answer is HTML, not iceServers JSON"),
        ("/fail/huge", "the answer is larger than 1048576 bytes"),
        ("/fail/empty", "the answer has an empty list of ICE servers"),
        ("/fail/weird", "an unknown answer shape (keys: expires, token)"),
        ("/shape/cloudflare", "HTTP 405 Method Not Allowed: try --fetch-method POST"),
    ],
)
def test_failures_are_one_plain_line(cli, endpoint, ca_file: Path, path: str, line: str) -> None:
    base, _ = endpoint
    result = cli("probe", "--ice-servers-url", base + path, "--ca-file", str(ca_file))
    assert result.code == 2
    (only,) = result.err.strip().splitlines()
    assert only.startswith(f"turncheck: error: --ice-servers-url {base}") and line in only, only


def test_slow_endpoint_is_bounded_and_tls_is_verified(cli, endpoint, ca_file: Path) -> None:
    base, _ = endpoint
    slow = cli(
        "probe",
        "--ice-servers-url",
        f"{base}/fail/slow",
        "--ca-file",
        str(ca_file),
        "--timeout",
        "0.5",
    )
    assert slow.code == 2 and "no answer within 1 s" in slow.err
    untrusted = cli("probe", "--ice-servers-url", f"{base}/shape/rtc")
    assert untrusted.code == 2 and "TLS failed" in untrusted.err


def test_query_string_is_never_shown(cli, endpoint, ca_file: Path) -> None:
    base, _ = endpoint
    result = cli(
        "probe", "--ice-servers-url", f"{base}/fail/500?api_key={TOKEN}", "--ca-file", str(ca_file)
    )
    assert result.code == 2 and TOKEN not in result.err and "?…" in result.err
    _ = json  # documents are built with json_response


def test_serve_module_fetches_like_the_app(endpoint, ca_file: Path, tmp_path: Path) -> None:
    from tests.test_serve import start_exporter, stop_exporter

    base, _ = endpoint
    config = tmp_path / "turncheck.yml"
    config.write_text(
        f"modules:\n  app:\n    ice_servers_url: {base}/shape/matrix\n    ca_file: {ca_file}\n"
    )
    exporter = start_exporter(config, tmp_path)
    try:
        status, body, _ = exporter.get("/probe?module=app")
        log = exporter.log.read_text()
    finally:
        stop_exporter(exporter)
    assert status == 200 and "probe_success 1" in body, body
    for text in (body, log):
        assert PASSWORD not in text and USER not in text
