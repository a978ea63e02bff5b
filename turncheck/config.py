"""Server entries and their credentials: iceServers JSON, TURN REST API credentials, advice.

Validation follows RTCPeerConnection.setConfiguration(): an unparsable URL is the
browser's SyntaxError, a turn:/turns: URL without username and credential its
InvalidAccessError. Everything here runs before any DNS query or packet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turncheck.browser import check_policy
from turncheck.errors import InputError
from turncheck.urls import Scheme, Transport


@dataclass(frozen=True, slots=True)
class Credentials:
    """Long-term credentials; the password never shows in repr or output."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    @property
    def masked(self) -> str:
        return f"{self.username}:***"

    @property
    def rest_expiry(self) -> int | None:
        """The expiry time of a TURN REST API username ('<unix time>[:user]'), else None."""
        return rest_expiry(self.username)


@dataclass(frozen=True, slots=True)
class IceServer:
    """One RTCIceServer entry: its URL texts, credentials, and where it came from."""

    urls: tuple[str, ...]
    credentials: Credentials | None
    origin: str  # e.g. "iceServers[2] in ice.json"
    username: str | None = None  # the fields as written ("" is a value; None: absent)
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IceConfiguration:
    """An RTCConfiguration's iceServers and iceTransportPolicy ("relay" → relay_only)."""

    servers: list[IceServer]
    relay_only: bool = False


# -- iceServers JSON --------------------------------------------------------------------------

_LIST_KEYS = ("iceServers", "ice_servers", "customServers")


def read_ice_servers(source: str) -> IceConfiguration:
    """Read FILE or '-' (stdin) holding iceServers JSON; InputError naming what is wrong."""
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--ice-servers {name}: cannot read it ({_os_reason(exc)})") from None
    return parse_configuration(text, name)


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def parse_ice_servers(text: str, name: str = "<input>") -> list[IceServer]:
    """{"iceServers": [...]}, {"customServers": [...]} or a bare [...] list of RTCIceServer."""
    return parse_configuration(text, name).servers


def parse_configuration(text: str, name: str = "<input>") -> IceConfiguration:
    """The iceServers list and, in an RTCConfiguration, its iceTransportPolicy."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        document = _javascript_literal(text, name, exc)
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, [[[[... 100000 deep
        raise InputError(f"--ice-servers {name}: unusable JSON ({type(exc).__name__})") from None
    entries: Any = document
    key = "iceServers"
    if isinstance(document, dict):
        found = [k for k in _LIST_KEYS if k in document]
        if not found:
            raise InputError(
                f"--ice-servers {name}: expected a list of RTCIceServer objects or an object "
                f'with an "iceServers" list; found an object with keys {sorted(document)[:6]}'
            )
        key = found[0]
        entries = document[key]
    if not isinstance(entries, list):
        raise InputError(f'--ice-servers {name}: "{key}" must be a list of RTCIceServer objects')
    if not entries:
        raise InputError(
            f'--ice-servers {name}: "{key}" is an empty list: there is no server to test '
            "(a browser would gather host candidates only)"
        )
    relay_only = False
    if isinstance(document, dict) and "iceTransportPolicy" in document:
        relay_only = check_policy(document["iceTransportPolicy"], f"iceTransportPolicy in {name}")
    servers = [_entry(value, f"{key}[{i}] in {name}") for i, value in enumerate(entries)]
    return IceConfiguration(servers, relay_only)


_JS_LIMIT = 1 << 20  # bytes: the JSON5 parser is pure Python; app snippets are small
_BARE_KEY = re.compile(r"\s*[A-Za-z_$][\w$]*\s*:")


def _javascript_literal(text: str, name: str, error: json.JSONDecodeError) -> Any:
    """Not JSON: perhaps a JavaScript object literal pasted from app code (unquoted keys,
    single quotes, trailing commas, comments), which JSON5 reads. Else say what to change."""
    where = f"--ice-servers {name}"
    if len(text) <= _JS_LIMIT:
        import json5

        try:
            return json5.loads(text)
        except Exception:  # any failure of the fallback: report the JSON error below
            pass
    hint = (
        "wrap it in { } (it starts with a bare key)"
        if _BARE_KEY.match(text)
        else "replace variables, function calls and template strings with their values in "
        "quotes (turncheck reads JSON and JavaScript object literals)"
    )
    raise InputError(
        f"{where}: neither JSON nor a JavaScript object literal: line {error.lineno}, "
        f"column {error.colno}: {error.msg}; {hint}"
    ) from None


def _entry(value: Any, origin: str) -> IceServer:
    if not isinstance(value, dict):
        raise InputError(f"{origin}: an RTCIceServer must be an object, not {type(value).__name__}")
    urls = value.get("urls", value.get("url"))  # "url" is the legacy spelling
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InputError(f'{origin}: "urls" must be a URL string or a list of them')
    username = value.get("username")
    credential = value.get("credential")
    for field_name, field_value in (("username", username), ("credential", credential)):
        if field_value is not None and not isinstance(field_value, str):
            raise InputError(f'{origin}: "{field_name}" must be a string')
    # credentialType is not read by Chromium (Blink's RTCIceServer has no such member):
    # whatever it says, the credential is a password, as here.
    creds = (
        Credentials(username, credential)
        if username is not None and credential is not None
        else None
    )
    return IceServer(tuple(urls), creds, origin, username, credential)


# -- TURN REST API credentials (coturn use-auth-secret) ----------------------------------------

_REST_USERNAME = re.compile(r"(\d{9,11})(?::.*)?")


def rest_expiry(username: str) -> int | None:
    match = _REST_USERNAME.fullmatch(username)
    return int(match.group(1)) if match else None


def rest_credentials(
    secret: str, user: str | None, ttl: int, now: float | None = None
) -> Credentials:
    """username = '<expiry>[:user]', password = base64(HMAC-SHA1(secret, username))."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user}" if user else str(expiry)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return Credentials(username, base64.b64encode(digest).decode())


def read_secret(
    path: str | None,
    env_value: str | None,
    what: str = "--secret-file",
    env: str = "TURNCHECK_SECRET",
) -> str | None:
    """A secret from a file (*what* names where it was given) or an environment variable
    (*env*); never from argv. InputError naming the culprit when it is unreadable or empty."""
    if path is not None:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{what} {path}: cannot read it ({_os_reason(exc)})") from None
        if not secret:
            raise InputError(f"{what} {path}: the file is empty")
        return secret
    if env_value is not None:
        if not env_value.strip():
            raise InputError(f"{env} is set but empty")
        return env_value.strip()
    return None


# -- configuration advice ---------------------------------------------------------------------

EXPIRY_WARNING = 3600  # seconds: a REST credential closer than this to its expiry is flagged


def advice(entries: list[Any], now: float | None = None) -> list[str]:
    """What a careful engineer would say about this set of ICE servers (ServerEntry values)."""
    now = time.time() if now is None else now
    out: list[str] = []
    urls = [e.url for e in entries]
    turn = [u for u in urls if u.is_turn]
    if not turn:
        out.append(
            "no TURN server: calls fail when both peers are behind symmetric NATs or UDP is "
            "blocked; add a turn: and a turns: URL"
        )
    if len(urls) == 1:
        out.append("only one ICE server URL: nothing to fall back on if it fails")
    if turn:
        # A browser uses turn:host without ?transport= over UDP only.
        streamed = [
            u
            for u in turn
            if u.scheme is Scheme.TURNS
            or (u.transport is not None and u.transport is not Transport.UDP)
        ]
        if not streamed:
            out.append(
                "no TURN over TCP or TLS: networks that block UDP will fail; add "
                "turn:host?transport=tcp and turns:host:443?transport=tcp"
            )
        if not any(u.scheme is Scheme.TURNS and u.port == 443 for u in turn):
            out.append(
                "no turns: on port 443: firewalls that allow only HTTPS block every other port; "
                "add turns:host:443?transport=tcp"
            )
        kinds: dict[tuple[str, str], set[str]] = {}
        for u in turn:
            transport = (
                u.transport.value if u.transport else ("tls" if u.scheme is Scheme.TURNS else "udp")
            )
            kinds.setdefault((u.scheme.value, transport), set()).add(u.host.lower())
        for (scheme, transport), hosts in sorted(kinds.items()):
            if len(hosts) > 1:
                out.append(
                    f"{len(hosts)} {scheme}: URLs over {transport} on different hosts: the browser "
                    "tries them all and keeps one at random; load-balancing belongs on the server "
                    "side (DNS or a load balancer)"
                )
    # Firefox's own rules (firefox.py): what breaks there though Chromium takes it.
    for u in urls:
        if u.scheme is Scheme.STUNS:
            out.append(
                f"{u.text}: Firefox throws NotSupportedError for stuns: URLs, so the whole "
                "configuration fails there; drop it (Chromium uses it as plain stun: anyway)"
            )
        if u.scheme is Scheme.TURNS and u.host_is_ip:
            out.append(
                f"{u.text}: Firefox drops turns: with an IP address (TLS needs a host name) and "
                "says nothing; use the name the server's certificate names"
            )
    seen_users: set[str] = set()
    for entry in entries:
        creds = entry.credentials
        if creds is None or creds.username in seen_users:
            continue
        if entry.credential_source.startswith("TURN REST API credentials from the shared"):
            continue  # turncheck minted it a moment ago: its lifetime is --ttl
        seen_users.add(creds.username)
        expiry = creds.rest_expiry
        if expiry is None:
            continue
        left = expiry - now
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry))
        if left <= 0:
            out.append(
                f"the credential '{creds.username}' has expired: the timestamp in the username "
                f"({stamp}) is in the past; mint a new one"
            )
        elif left < EXPIRY_WARNING:
            out.append(
                f"the credential '{creds.username}' expires in {int(left // 60)} min ({stamp}): "
                "calls that start later will fail to allocate"
            )
    return out
