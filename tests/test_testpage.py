"""serve's test pages on loopback, against the test coturn: the page and its files, the
config a page load gets (credentials read or minted per load; the secret never leaves), the
results endpoint's bounds (token, size, rate, shape), what is stored (redacted, bounded),
who may read it, and `turncheck results` reading it back. The page itself runs in real
browsers in tests/browser/test_page_lab.py; here its document is written by hand, as the
page's contract (docs/support.md) says it looks."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.coturn import Coturn
from tests.test_serve import Exporter, start_exporter, stop_exporter

SECRET = "page-rest-secret-never-shown"
PASSWORD = "s3cret"  # the test coturn's: never in a stored result, log or answer
TOKEN = "admin-token-for-tests"
REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{3}-[0-9A-HJKMNP-TV-Z]{3}$")


@pytest.fixture(scope="module")
def pages(coturn: Coturn, tmp_path_factory) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("pages")
    (tmp / "alice.cred").write_text(PASSWORD + "\n")
    (tmp / "secret").write_text(SECRET + "\n")
    (tmp / "admin.token").write_text(TOKEN + "\n")
    udp = f"turn:127.0.0.1:{coturn.port}"
    tcp = f"turn:127.0.0.1:{coturn.port}?transport=tcp"
    stun = f"stun:127.0.0.1:{coturn.port}"
    config = tmp / "turncheck.yml"
    config.write_text(
        f"""results:
  path: {tmp / "results.sqlite"}
  admin_token_file: {tmp / "admin.token"}
tests:
  lab:
    title: Example app
    ice_servers:
      - urls: ["{stun}"]
      - urls: ["{udp}", "{tcp}"]
        username: alice
        credential_file: {tmp / "alice.cred"}
  rest:
    urls: ["{udp}"]
    secret_file: {tmp / "secret"}
    rest_user: support
    ttl: 120
  small:
    max_results: 2
    redact_public: true
    ice_servers:
      - urls: ["{udp}"]
        username: alice
        credential_file: {tmp / "alice.cred"}
"""
    )
    server = start_exporter(config, tmp)
    yield server
    stop_exporter(server)


def _request(
    exporter: Exporter, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        exporter.url(path),
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw, status, got = answer.read(), answer.status, dict(answer.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(errors="replace"), got


def _config(exporter: Exporter, profile: str) -> dict[str, Any]:
    status, body, _ = _request(exporter, f"/test/{profile}/config")
    assert status == 200, body
    return dict(body)


def page_document(config: dict[str, Any], *, udp_works: bool = True) -> dict[str, Any]:
    """What the page posts for *config* from a network where UDP works or not (hand-written
    per the contract; the real page makes it in tests/browser/test_page_lab.py)."""
    gathers: list[dict[str, Any]] = []
    relays: list[dict[str, Any]] = []
    host = {"type": "host", "protocol": "udp", "address": "192.168.1.20", "port": 50000}
    for i, server in enumerate(config["iceServers"]):
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            udp = "transport=tcp" not in url and not url.startswith("turns:")
            works = udp_works or not udp
            candidates: list[dict[str, Any]] = [dict(host)]
            errors: list[dict[str, Any]] = []
            if works and udp:
                candidates.append(
                    {
                        "type": "srflx",
                        "protocol": "udp",
                        "address": "198.51.100.7",
                        "port": 4242,
                        "relatedAddress": "192.168.1.20",
                        "relatedPort": 50000,
                        "url": url,
                        "ms": 3,
                    }
                )
            if works and url.startswith("turn"):
                candidates.append(
                    {
                        "type": "relay",
                        "protocol": "udp",
                        "address": "127.0.0.1",
                        "port": 50001,
                        "relatedAddress": "198.51.100.7",
                        "relatedPort": 4242,
                        "relayProtocol": "udp" if udp else "tcp",
                        "url": url,
                        "ms": 5,
                    }
                )
            if not works:
                errors.append(
                    {
                        "url": url,
                        "code": 701,
                        "text": "TURN allocate request timed out.",
                        "ms": 9000,
                    }
                )
            gathers.append(
                {
                    "url": url,
                    "server": i,
                    "ms": 20 if works else 10000,
                    "complete": works,
                    "exception": None,
                    "candidates": candidates,
                    "errors": errors,
                }
            )
            if url.startswith("turn"):
                relays.append(
                    {
                        "url": url,
                        "server": i,
                        "connected": works,
                        "connect_ms": 40 if works else None,
                        "state": "connected" if works else "failed",
                        "local": {
                            "type": "relay",
                            "protocol": "udp",
                            "relayProtocol": "udp" if udp else "tcp",
                        }
                        if works
                        else None,
                        "sent": 150 if works else 0,
                        "received": 150 if works else 0,
                        "rtt_ms": {"min": 1, "p50": 2, "p95": 3, "max": 4} if works else None,
                        "throughput_kbps": 9000 if works else None,
                        "error": None if works else "no relay candidate",
                    }
                )
    whole = {
        "url": None,
        "server": None,
        "ms": 30,
        "complete": True,
        "exception": None,
        "candidates": [c for g in gathers for c in g["candidates"]][:50],
        "errors": [],
    }
    return {
        "version": 1,
        "token": config["token"],
        "profile": config["profile"],
        "browser": {
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0",
            "brands": None,
        },
        "elapsed_ms": 12000,
        "gathers": [*gathers, whole],
        "relays": relays,
    }


def _post(exporter: Exporter, profile: str, doc: Any) -> tuple[int, Any, dict[str, str]]:
    return _request(exporter, f"/test/{profile}/results", json.dumps(doc).encode())


def _results(exporter: Exporter, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turncheck", "results", "--config", str(exporter.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )


def test_the_page_and_its_files_come_with_a_strict_policy(pages: Exporter) -> None:
    status, body, headers = _request(pages, "/test/lab")
    assert status == 200 and "<script" in body and "static/test.js" in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    for name, kind in (("test.js", "javascript"), ("test.css", "css")):
        status, _, headers = _request(pages, f"/test/static/{name}")
        assert status == 200 and kind in headers["Content-Type"]
    assert _request(pages, "/test/static/..%2fconfig.py")[0] == 404
    assert _request(pages, "/test/nope")[0] == 404
    assert _request(pages, "/test/nope/config")[0] == 404
    # /test/lab/ would break the page's relative URLs: it is sent to /test/lab
    request = urllib.request.Request(pages.url("/test/lab/"))
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.url.endswith("/test/lab")


def test_a_page_load_gets_the_servers_and_credentials_a_browser_of_the_app_gets(
    pages: Exporter, coturn: Coturn
) -> None:
    config = _config(pages, "lab")
    assert config["title"] == "Example app"
    assert config["iceServers"][0] == {"urls": [f"stun:127.0.0.1:{coturn.port}"]}
    assert config["iceServers"][1]["username"] == "alice"
    assert config["iceServers"][1]["credential"] == PASSWORD  # the app gives browsers this
    assert config["budget_s"] <= 30 and config["token"]


def test_rest_credentials_are_minted_per_load_and_the_secret_never_leaves(pages: Exporter) -> None:
    import base64
    import hashlib
    import hmac
    import time

    first, second = _config(pages, "rest"), _config(pages, "rest")
    server = first["iceServers"][0]
    expiry, _, user = server["username"].partition(":")
    assert user == "support" and 0 < int(expiry) - time.time() <= 121
    digest = hmac.new(SECRET.encode(), server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(digest).decode()
    assert first["token"] != second["token"]
    assert SECRET not in json.dumps(first) + json.dumps(second)


def test_a_result_is_stored_judged_and_read_back_by_support(
    pages: Exporter, coturn: Coturn
) -> None:
    config = _config(pages, "lab")
    status, answer, _ = _post(pages, "lab", page_document(config, udp_works=False))
    assert status == 201, answer
    rid = answer["id"]
    assert REFERENCE.match(rid) and answer["ok"] is True
    assert rid in answer["summary"] and "blocks UDP" in answer["summary"]
    listed = _results(pages)
    assert listed.returncode == 0, listed.stderr
    assert rid in listed.stdout and "Firefox 153" in listed.stdout
    shown = _results(pages, rid.lower().replace("-", ""))  # as a person types it
    assert shown.returncode == 0, shown.stderr
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    text = " ".join(shown.stdout.split())
    assert f"Reference {rid}" in text and "Firefox 153" in text
    assert "from serve's side TURN over UDP" in text
    assert "the user's network blocks UDP" in text and "calls will relay over TCP" in text
    assert f"turn:127.0.0.1:{coturn.port}?transport=tcp" in shown.stdout  # never split
    document = json.loads(_results(pages, rid, "--json").stdout)
    assert document["id"] == rid and document["summary"] == answer["summary"]
    matrix = {(r["url"], r["transport"]): r for r in document["judgement"]["rows"]}
    assert matrix[(f"turn:127.0.0.1:{coturn.port}", "udp")]["user_ok"] is False
    assert matrix[(f"turn:127.0.0.1:{coturn.port}", "udp")]["server_ok"] is True
    assert matrix[(f"turn:127.0.0.1:{coturn.port}?transport=tcp", "tcp")]["user_ok"] is True
    stored = [c for g in document["page"]["gathers"] for c in g["candidates"]]
    assert "192.168.1.20" not in json.dumps(document)  # host addresses always redacted
    assert any(c["relatedAddress"] == "198.51.100.7" for c in stored)  # public kept
    assert document["server_side"]["ok"] is True


def test_posts_are_bounded_by_token_size_and_shape(pages: Exporter) -> None:
    config = _config(pages, "lab")
    doc = page_document(config)
    assert _post(pages, "lab", {**doc, "token": "1.2.3.4"})[0] == 403
    other = _config(pages, "rest")
    assert _post(pages, "lab", {**doc, "token": other["token"]})[0] == 403  # another test's
    status, answer, _ = _post(pages, "lab", {**doc, "relays": [{"url": 5}]})
    assert status == 400 and "relays[0].url" in answer["error"]
    assert _request(pages, "/test/lab/results", b"not json")[0] == 400
    big = json.dumps({**doc, "pad": "x" * 70_000}).encode()
    assert _request(pages, "/test/lab/results", big)[0] == 413
    status, first, _ = _post(pages, "lab", doc)
    assert status == 201
    status, again, _ = _post(pages, "lab", doc)  # a page's retry: the same stored answer
    assert status == 201 and again == first
    listed = json.loads(_results(pages, "--test", "lab", "--json").stdout)["results"]
    assert [r["id"] for r in listed].count(first["id"]) == 1  # stored once
    assert _post(pages, "lab", {**doc, "token": "a.b.c.\u00e9"})[0] == 403  # no 500
    assert _post(pages, "lab", {**doc, "token": "x.y.z.w"})[0] == 403


def test_a_profile_keeps_its_count_and_redacts_public_addresses_on_request(
    pages: Exporter,
) -> None:
    ids = []
    for _ in range(3):
        status, answer, _ = _post(pages, "small", page_document(_config(pages, "small")))
        assert status == 201, answer
        ids.append(answer["id"])
    listed = json.loads(_results(pages, "--test", "small", "--json").stdout)["results"]
    assert [r["id"] for r in listed] == ids[:0:-1]  # the oldest is gone
    gone = _results(pages, ids[0])
    assert gone.returncode == 2 and f"no result {ids[0]}" in gone.stderr
    document = json.loads(_results(pages, ids[2], "--json").stdout)
    assert "198.51.100.7" not in json.dumps(document["page"])


def test_results_are_read_by_admins_only(pages: Exporter) -> None:
    status, answer, _ = _request(pages, "/results")
    assert status == 403
    status, answer, _ = _request(pages, "/results", headers={"Authorization": "Bearer nope"})
    assert status == 403
    status, answer, _ = _request(pages, "/results", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and answer["results"]
    rid = answer["results"][0]["id"]
    status, record, _ = _request(
        pages, f"/results/{rid}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200 and record["id"] == rid
    status, page, _ = _request(pages, "/")
    assert rid not in page and "turncheck results" in page
    status, page, _ = _request(pages, "/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert rid in page


def test_no_secret_in_any_answer_log_or_stored_result(pages: Exporter) -> None:
    _post(pages, "rest", page_document(_config(pages, "rest")))
    db = Path(str(pages.config).replace("turncheck.yml", "results.sqlite"))
    with sqlite3.connect(db) as conn:
        stored = json.dumps(conn.execute("SELECT * FROM results").fetchall())
    assert stored and SECRET not in stored and PASSWORD not in stored
    assert SECRET not in pages.log.read_text() and PASSWORD not in pages.log.read_text()
    assert TOKEN not in stored and TOKEN not in pages.log.read_text()
    assert SECRET not in _results(pages).stdout


def test_a_page_load_and_a_post_are_rate_limited_per_address(pages: Exporter) -> None:
    statuses = [_request(pages, "/test/lab/config")[0] for _ in range(25)]
    assert statuses.count(429) >= 1 and statuses[0] in (200, 429)
    status, answer, _ = _request(pages, "/test/lab/config")
    assert status == 429 and "too many" in answer["error"]


def test_the_docs_support_config_is_valid(tmp_path: Path) -> None:
    from turncheck.serve.config import load_config

    text = (Path(__file__).resolve().parents[1] / "docs" / "support.md").read_text()
    block = re.search(r"```yaml\n(# turncheck.yml, with test pages.*?)```", text, re.S)
    assert block is not None
    yaml = block.group(1).replace("/etc/turncheck/", f"{tmp_path}/")
    yaml = yaml.replace("/var/lib/turncheck/", f"{tmp_path}/")
    for name in ("admin.token", "turn-secret", "alice.cred", "app-token"):
        (tmp_path / name).write_text("x\n")
    config = load_config(str(tmp_path / "turncheck.yml"), yaml)
    assert set(config.tests) == {"app", "staging", "production"}
    assert config.tests["app"].ttl == 300 and config.results is not None


@pytest.mark.parametrize(
    ("yaml", "culprit"),
    [
        ("tests:\n  app:\n    ice_servers: [{urls: stun:h}]\n", "need a 'results' section"),
        ("results: {path: R}\ntests:\n  app:\n    urls: [turn:h]\n", "urls go with secret_file"),
        (
            "results: {path: R}\ntests:\n  app:\n    ice_servers:\n      - urls: [turn:h]\n"
            "        credential: pw\n",
            "put the password in credential_file",
        ),
        (
            "results: {path: R}\ntests:\n  static:\n    ice_servers: [{urls: stun:h}]\n",
            "not 'static'",
        ),
        (
            "results: {path: R}\ntests:\n  app:\n    ice_servers: [{urls: 'stun:h?x=1'}]\n",
            "is not a valid stun or turn URL",
        ),
        (
            "results: {path: R}\ntests:\n  app:\n    ice_servers: [{urls: stun:h}]\n"
            "    max_results: 0\n",
            "max_results must be a whole number",
        ),
        (
            "results: {path: /nonexistent/dir/r.sqlite}\ntests:\n  a:\n    ice_servers: "
            "[{urls: stun:h}]\n",
            "no such directory",
        ),
    ],
)
def test_a_wrong_test_profile_is_one_line_naming_it(
    yaml: str, culprit: str, tmp_path: Path
) -> None:
    from turncheck.errors import InputError
    from turncheck.serve.config import load_config

    with pytest.raises(InputError) as caught:
        load_config("t.yml", yaml.replace("path: R", f"path: {tmp_path / 'r.sqlite'}"))
    assert culprit in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("t.yml:")


def test_a_url_the_browser_leaves_unused_is_its_rule_not_the_network() -> None:
    from turncheck.usertest import judge, parse_page

    config = {
        "profile": "x",
        "token": "-",
        "iceServers": [
            {"urls": ["turns:203.0.113.2:443?transport=tcp", "turn:203.0.113.2:3478?transport=tcp"]}
        ],
    }
    doc = page_document(config)
    for g in doc["gathers"]:  # Firefox drops turns: with an IP address: nothing, no error
        if g["url"] and g["url"].startswith("turns:"):
            g["candidates"], g["complete"] = [], True
    doc["relays"] = [r for r in doc["relays"] if not r["url"].startswith("turns:")]
    why = "Firefox drops turns: with an IP address"
    judgement = judge(
        parse_page(doc), (), "Firefox 153", "firefox", [(config["iceServers"][0]["urls"][0], why)]
    )
    row = next(r for r in judgement.rows if r.transport == "tls")
    assert row.user_ok is None and why in row.user
    assert judgement.ok and judgement.cause == "TURN over TCP works"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d["gathers"].extend([d["gathers"][0]] * 60),
        lambda d: d["gathers"][0]["candidates"][0].update(port=70000),
        lambda d: d["gathers"][0].update(ms=float("nan")),
        lambda d: d["relays"][0].update(sent=-1),
        lambda d: d["gathers"][0].update(complete="yes"),
        lambda d: d.update(gathers={"a": 1}),
    ],
)
def test_a_hostile_document_is_refused_naming_the_field(mutate: Any) -> None:
    from turncheck.errors import InputError
    from turncheck.usertest import parse_page

    config = {"profile": "x", "token": "-", "iceServers": [{"urls": "turn:203.0.113.2"}]}
    doc = page_document(config)
    mutate(doc)
    with pytest.raises(InputError) as caught:
        parse_page(json.loads(json.dumps(doc, allow_nan=True)))
    assert str(caught.value).startswith("the page's results: ")
