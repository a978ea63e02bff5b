"""--ice-servers-url: fetch iceServers the way the app does, from its credentials endpoint.

Response shapes understood (what the services' documentation shows):

    Twilio token          {"ice_servers": [{"url"|"urls", "username", "credential"}], ...}
    Cloudflare            {"iceServers": [...]}, older {"iceServers": {"urls", "username", ...}}
    Metered               [{"urls", "username", "credential"}, ...]
    Xirsys                {"v": {"iceServers": [...] | {...}}, "s": "ok"}
    Matrix /voip/turnServer, draft-uberti TURN REST
                          {"uris": [...], "username", "password", "ttl"}
    an RTCConfiguration   {"iceServers": [...], "iceTransportPolicy": "relay"}

Authentication comes from the environment or a file (a bearer token, basic auth, an extra
header), never from the command line; the fetch is TLS-verified, bounded in time and size.
Every failure is one plain line (InputError, exit 2). The fetched credentials are used for the
probe and never printed: messages name the endpoint without its query string.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from turncheck.config import IceConfiguration, IceServer, parse_configuration
from turncheck.errors import InputError

MAX_BYTES = 1 << 20  # an iceServers answer is a few hundred bytes; 1 MiB is generous
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class FetchSpec:
    """How the app asks its endpoint: method, body and where the secrets come from."""

    url: str
    method: str = "GET"
    body: str | None = None  # JSON text
    bearer_file: str | None = None
    bearer_env: str | None = None
    basic_file: str | None = None  # "user:password"
    basic_env: str | None = None
    headers_env: tuple[tuple[str, str], ...] = ()  # (header name, environment variable)
    ca_file: str | None = None
    timeout: float = FETCH_TIMEOUT

    @property
    def shown(self) -> str:
        """The URL for messages: without its query string (tokens live there too)."""
        parts = urlsplit(self.url)
        query = "?…" if parts.query else ""
        return (
            urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")) + query
        )


def _secret_from(file: str | None, env: str | None, what: str) -> str | None:
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{what} file {file}: cannot read it "
                f"({getattr(exc, 'strerror', None) or type(exc).__name__})"
            ) from None
        if not value:
            raise InputError(f"{what} file {file}: the file is empty")
        return value
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise InputError(f"{what}: the environment variable {env} is not set")
        return value
    return None


def request_headers(spec: FetchSpec) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "turncheck"}
    bearer = _secret_from(spec.bearer_file, spec.bearer_env, "--fetch-bearer")
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    basic = _secret_from(spec.basic_file, spec.basic_env, "--fetch-basic")
    if basic is not None:
        if ":" not in basic:
            raise InputError("--fetch-basic: give user:password (in the file or variable)")
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    for name, env in spec.headers_env:
        value = os.environ.get(env)
        if value is None:
            raise InputError(f"--fetch-header {name}={env}: the environment variable is not set")
        headers[name] = value
    if spec.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


async def fetch(spec: FetchSpec) -> IceConfiguration:
    """GET (or POST/PUT) the endpoint and read the iceServers out of its answer."""
    import ssl

    import aiohttp

    if urlsplit(spec.url).scheme not in ("https", "http"):
        raise InputError(f"--ice-servers-url {spec.shown}: give an https:// URL")
    headers = request_headers(spec)
    context = ssl.create_default_context(cafile=spec.ca_file) if spec.ca_file else None
    if context is None:
        context = ssl.create_default_context()
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    where = f"--ice-servers-url {spec.shown}"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.request(
                spec.method,
                spec.url,
                headers=headers,
                data=spec.body.encode() if spec.body is not None else None,
                ssl=context,
                allow_redirects=True,
                max_redirects=3,
            ) as answer,
        ):
            if answer.status >= 400:
                raise InputError(
                    f"{where}: HTTP {answer.status} {answer.reason or ''}".rstrip()
                    + _status_hint(answer.status)
                )
            body = b""
            while len(body) <= MAX_BYTES:  # bounded: stops past the limit or at the end
                chunk = await answer.content.read(65536)
                if not chunk:
                    break
                body += chunk
            if len(body) > MAX_BYTES:
                raise InputError(f"{where}: the answer is larger than {MAX_BYTES} bytes")
    except TimeoutError:
        raise InputError(f"{where}: no answer within {spec.timeout:g} s") from None
    except aiohttp.ClientSSLError as exc:
        raise InputError(
            f"{where}: TLS failed ({exc.__class__.__name__}): check --ca-file"
        ) from None
    except aiohttp.ClientError as exc:
        raise InputError(f"{where}: the fetch failed ({exc.__class__.__name__})") from None
    return parse_answer(body, where)


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return (
            ": the endpoint wants credentials (--fetch-bearer-file, --fetch-basic-file, "
            "--fetch-header)"
        )
    if status == 405:
        return ": try --fetch-method POST (Cloudflare) or PUT (Xirsys)"
    return ""


def parse_answer(body: bytes, where: str) -> IceConfiguration:
    """The iceServers of any known response shape; InputError naming the keys found."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        start = body[:40].decode("utf-8", "replace").strip()
        looks = "HTML" if start.lower().startswith(("<!doctype", "<html")) else "not JSON"
        raise InputError(f"{where}: the answer is {looks}, not iceServers JSON") from None
    servers = ice_servers_of(document, where)
    if not servers:
        raise InputError(f"{where}: the answer has an empty list of ICE servers")
    relay_only = isinstance(document, dict) and document.get("iceTransportPolicy") == "relay"
    text = json.dumps(
        {"iceServers": servers, **({"iceTransportPolicy": "relay"} if relay_only else {})}
    )
    configuration = parse_configuration(text, where)
    return IceConfiguration(
        [
            IceServer(
                s.urls,
                s.credentials,
                s.origin.replace(f" in {where}", f" fetched from {where}"),
                s.username,
                s.credential,
            )
            for s in configuration.servers
        ],
        configuration.relay_only,
    )


def ice_servers_of(document: Any, where: str) -> list[Any]:
    if isinstance(document, list):  # Metered
        return document
    if not isinstance(document, dict):
        raise InputError(f"{where}: expected a JSON object or list, not {type(document).__name__}")
    for key in ("iceServers", "ice_servers"):  # Cloudflare / RTCConfiguration, Twilio
        if key in document:
            value = document[key]
            return [value] if isinstance(value, dict) else value  # Cloudflare's older object
    if isinstance(document.get("v"), dict) and "iceServers" in document["v"]:  # Xirsys
        value = document["v"]["iceServers"]
        return [value] if isinstance(value, dict) else value
    if "uris" in document:  # Matrix /voip/turnServer, draft-uberti TURN REST
        return [
            {
                "urls": document["uris"],
                "username": document.get("username"),
                "credential": document.get("password"),
            }
        ]
    keys = ", ".join(sorted(map(str, document))[:8]) or "none"
    raise InputError(
        f"{where}: an unknown answer shape (keys: {keys}); expected iceServers, ice_servers, "
        "v.iceServers, uris or a list"
    )
