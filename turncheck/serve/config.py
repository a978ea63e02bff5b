"""The exporter's YAML configuration: modules, as blackbox_exporter has them.

    modules:
      staging:
        username: alice
        credential_file: /etc/turncheck/alice.cred   # or credential_env: VAR, or secret_file
        ca_file: /etc/turncheck/ca.pem
        timeout: 5
    limits:
      max_concurrent: 8

Credentials come from a file, an environment variable or a TURN REST shared-secret file,
read at each probe (so that rotated files are picked up), never from the query string.
Every error names the file and line: `turncheck.yml:7: module 'staging': unknown key 'pasword'`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turncheck.config import Credentials, read_secret, rest_credentials
from turncheck.errors import InputError
from turncheck.icefetch import FetchSpec

MODULE_KEYS = {
    "username": "TURN username",
    "credential_file": "a file holding the TURN password",
    "credential_env": "an environment variable holding the TURN password",
    "secret_file": "a TURN REST shared-secret file (coturn static-auth-secret)",
    "rest_user": "the user part of minted REST usernames",
    "ttl": "lifetime of minted REST credentials, seconds",
    "ice_servers_url": "fetch iceServers the way the app does (the target is then optional)",
    "fetch_method": "GET, POST or PUT for ice_servers_url",
    "fetch_body": "JSON body for ice_servers_url",
    "fetch_bearer_file": "a file holding the bearer token for ice_servers_url",
    "fetch_bearer_env": "an environment variable holding the bearer token",
    "transports": "udp, tcp, tls for URLs that do not name their transport",
    "timeout": "seconds per check",
    "relay": "run the relay check (true) or allocate only (false)",
    "count": "relay echo packets",
    "size": "relay echo packet size, bytes",
    "packet_interval": "milliseconds between relay packets",
    "relay_only": 'only relay candidates count (iceTransportPolicy "relay")',
    "require": "relay, srflx, udp, tcp, tls",
    "max_rtt": "milliseconds",
    "max_loss": "percent",
    "ca_file": "extra CA certificates (PEM)",
    "insecure": "do not verify TLS certificates",
    "dns_server": "IP[:PORT] for every DNS query",
    "kind": "probe (the default) or audit (turncheck audit's findings as metrics)",
    "fail_on": "audit: probe_success is 0 on a finding at or above this severity",
    "max_allocations": "audit: the quota probe stops at this many allocations",
    "peer": "audit: the one outside IP:PORT relayed data may go to",
    "targets": "audit: the only URLs ?target= may name (an audit goes where the operator says)",
}
LIMIT_KEYS = {"max_concurrent", "queue_timeout"}
# A test page (GET /test/NAME): the ICE servers a user's browser tests, and what is kept.
TEST_KEYS = {
    "title": "a line the page shows under its heading",
    "ice_servers": "an iceServers list (urls, username, credential_file or credential_env)",
    "urls": "ICE URLs, with secret_file: credentials minted per page load",
    "secret_file": "a TURN REST shared-secret file (coturn static-auth-secret)",
    "rest_user": "the user part of minted REST usernames",
    "ttl": "lifetime of credentials minted for the page, seconds (default 300)",
    "ice_servers_url": "fetch iceServers the way the app does, per page load, server-side",
    "fetch_method": "GET, POST or PUT for ice_servers_url",
    "fetch_body": "JSON body for ice_servers_url",
    "fetch_bearer_file": "a file holding the bearer token for ice_servers_url",
    "fetch_bearer_env": "an environment variable holding the bearer token",
    "ca_file": "extra CA certificates (PEM) for serve's own probe and fetch",
    "dns_server": "IP[:PORT] for serve's own probe",
    "retention_days": "how long results are kept (default 30)",
    "max_results": "results kept for this profile, oldest dropped first (default 1000)",
    "redact_public": "also redact the user's public addresses (host ones always are)",
}
RESULTS_KEYS = {
    "path": "the SQLite file results are stored in",
    "admin_token_file": "a file holding the token that reads results over HTTP",
}


@dataclass(frozen=True, slots=True)
class Module:
    """How to probe a target: the options `turncheck probe` would take."""

    name: str
    username: str | None = None
    credential_file: str | None = None
    credential_env: str | None = None
    secret_file: str | None = None
    rest_user: str | None = None
    ttl: int = 600
    ice_servers_url: str | None = None
    fetch_method: str = "GET"
    fetch_body: str | None = None
    fetch_bearer_file: str | None = None
    fetch_bearer_env: str | None = None
    transports: tuple[str, ...] | None = None
    timeout: float = 5.0
    relay: bool = True
    count: int = 10
    size: int = 100
    packet_interval: float = 20.0
    relay_only: bool = False
    require: tuple[str, ...] = ()
    max_rtt: float | None = None
    max_loss: float | None = None
    ca_file: str | None = None
    insecure: bool = False
    dns_server: str | None = None
    kind: str = "probe"
    fail_on: str = "medium"
    max_allocations: int = 20
    peer: str | None = None
    targets: tuple[str, ...] = ()

    def credentials(self) -> Credentials | None:
        """Read now: a file, an environment variable, or minted from the shared secret."""
        if self.secret_file is not None:
            secret = read_secret(self.secret_file, None, f"module '{self.name}': secret_file")
            assert secret is not None
            return rest_credentials(secret, self.rest_user, self.ttl)
        if self.username is None:
            return None
        if self.credential_file is not None:
            try:
                password = Path(self.credential_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"module '{self.name}': credential_file {self.credential_file}: cannot "
                    f"read it ({getattr(exc, 'strerror', None) or type(exc).__name__})"
                ) from None
            return Credentials(self.username, password)
        if self.credential_env is not None:
            value = os.environ.get(self.credential_env)
            if value is None:
                raise InputError(
                    f"module '{self.name}': credential_env {self.credential_env} is not set"
                )
            return Credentials(self.username, value)
        raise InputError(
            f"module '{self.name}': username without credential_file, credential_env or secret_file"
        )


@dataclass(frozen=True, slots=True)
class PageServer:
    """One entry of a test profile's iceServers: credentials are read when a page loads."""

    urls: tuple[str, ...]
    username: str | None = None
    credential_file: str | None = None
    credential_env: str | None = None


@dataclass(frozen=True, slots=True)
class TestProfile:
    """A test page: which ICE servers the user's browser tests, and how results are kept."""

    name: str
    title: str | None = None
    ice_servers: tuple[PageServer, ...] = ()
    urls: tuple[str, ...] = ()
    secret_file: str | None = None
    rest_user: str | None = None
    ttl: int = 300
    ice_servers_url: str | None = None
    fetch_method: str = "GET"
    fetch_body: str | None = None
    fetch_bearer_file: str | None = None
    fetch_bearer_env: str | None = None
    ca_file: str | None = None
    dns_server: str | None = None
    retention_days: float = 30.0
    max_results: int = 1000
    redact_public: bool = False


@dataclass(frozen=True, slots=True)
class ResultsStore:
    """Where test-page results are kept, and the token that reads them over HTTP."""

    path: str
    admin_token_file: str | None = None

    def admin_token(self) -> str | None:
        """Read now (a rotated file is picked up); None: no token configured."""
        if self.admin_token_file is None:
            return None
        return read_secret(self.admin_token_file, None, "results: admin_token_file")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    path: str
    modules: dict[str, Module]
    max_concurrent: int = 8
    queue_timeout: float = 5.0  # seconds a probe may wait for a free slot (then 503)
    lines: dict[str, int] = field(default_factory=dict)  # module → line, for messages
    tests: dict[str, TestProfile] = field(default_factory=dict)
    results: ResultsStore | None = None


def _node_value(node: Any) -> Any:
    """A YAML node as plain Python values (mappings keep (key, line) order for errors)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [(k.value, k.start_mark.line + 1, _node_value(v)) for k, v in node.value]
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node))


def load_config(path: str, text: str | None = None) -> ServeConfig:
    """Read and validate the configuration; InputError 'file:line: what is wrong'."""
    import yaml

    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{path}: cannot read it ({getattr(exc, 'strerror', None) or type(exc).__name__})"
            ) from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: not YAML ({getattr(exc, 'problem', None) or exc})") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise InputError(f"{path}:1: expected a mapping with a 'modules' key")
    top = _node_value(root)
    modules: dict[str, Module] = {}
    lines: dict[str, int] = {}
    limits: dict[str, Any] = {}
    tests: dict[str, TestProfile] = {}
    results: ResultsStore | None = None
    for key, line, value in top:
        if key == "modules":
            if not isinstance(value, list) or not value:
                raise InputError(f"{path}:{line}: 'modules' must map module names to options")
            for name, mline, options in value:
                modules[str(name)] = _module(path, str(name), mline, options)
                lines[str(name)] = mline
        elif key == "limits":
            if not isinstance(value, list):
                raise InputError(f"{path}:{line}: 'limits' must be a mapping")
            for lkey, lline, lvalue in value:
                if lkey not in LIMIT_KEYS:
                    raise InputError(
                        f"{path}:{lline}: unknown limit '{lkey}' (known: "
                        f"{', '.join(sorted(LIMIT_KEYS))})"
                    )
                if not isinstance(lvalue, int | float) or isinstance(lvalue, bool) or lvalue <= 0:
                    raise InputError(f"{path}:{lline}: '{lkey}' must be a number above 0")
                limits[lkey] = lvalue
        elif key == "tests":
            if not isinstance(value, list) or not value:
                raise InputError(f"{path}:{line}: 'tests' must map profile names to options")
            for name, tline, options in value:
                tests[str(name)] = _profile(path, str(name), tline, options)
        elif key == "results":
            results = _results(path, line, value)
        else:
            raise InputError(
                f"{path}:{line}: unknown key '{key}' (known: modules, tests, results, limits)"
            )
    if not modules and not tests:
        raise InputError(
            f"{path}:1: nothing to serve: define modules (for /probe) or tests (for /test/NAME)"
        )
    if tests and results is None:
        raise InputError(
            f"{path}:1: test pages need a 'results' section with the path of their SQLite file"
        )
    return ServeConfig(
        path,
        modules,
        max_concurrent=int(limits.get("max_concurrent", 8)),
        queue_timeout=float(limits.get("queue_timeout", 5.0)),
        lines=lines,
        tests=tests,
        results=results,
    )


_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _profile(path: str, name: str, line: int, options: Any) -> TestProfile:
    where = f"{path}:{line}: test '{name}'"
    if not _PROFILE_NAME.fullmatch(name) or name == "static":
        raise InputError(f"{where}: a name is letters, digits, '.', '_' or '-' (not 'static')")
    if not isinstance(options, list):
        raise InputError(f"{where} must be a mapping of options")
    values: dict[str, Any] = {}
    for key, kline, value in options:
        at = f"{path}:{kline}: test '{name}'"
        if key not in TEST_KEYS:
            raise InputError(f"{at}: unknown key '{key}' (known: {', '.join(TEST_KEYS)})")
        if key == "ice_servers":
            values[key] = _page_servers(at, value)
        elif key == "urls":
            words = [value] if isinstance(value, str) else value
            if (
                not isinstance(words, list)
                or not words
                or not all(isinstance(w, str) and w for w in words)
            ):
                raise InputError(f"{at}: urls must be an ICE URL or a list of them")
            values[key] = tuple(words)
        elif key == "retention_days":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InputError(f"{at}: retention_days must be a number of days above 0")
            values[key] = float(value)
        elif key == "max_results":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100000:
                raise InputError(f"{at}: max_results must be a whole number from 1 to 100000")
            values[key] = value
        elif key == "redact_public":
            if not isinstance(value, bool):
                raise InputError(f"{at}: redact_public must be true or false")
            values[key] = value
        elif key == "ttl":
            if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= 86400:
                raise InputError(f"{at}: ttl must be 60 to 86400 seconds")
            values[key] = value
        else:
            values[key] = _checked(at, key, value, ())
    profile = TestProfile(name, **values)
    sources = [k for k in ("ice_servers", "urls", "ice_servers_url") if k in values]
    if len(sources) != 1:
        raise InputError(
            f"{where}: give one of ice_servers, urls (with secret_file) or ice_servers_url"
        )
    if (profile.secret_file is None) != (sources[0] != "urls"):
        raise InputError(f"{where}: urls go with secret_file, and secret_file with urls")
    for key in ("secret_file", "ca_file", "fetch_bearer_file"):
        value = values.get(key)
        if value is not None and not Path(value).is_file():
            raise InputError(f"{where}: {key} {value}: no such file")
    from turncheck.browser import parse_ice_url

    for url in (*profile.urls, *(u for s in profile.ice_servers for u in s.urls)):
        try:
            parse_ice_url(url)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    return profile


def _page_servers(where: str, value: Any) -> tuple[PageServer, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: ice_servers must be a list of servers")
    out = []
    for i, entry in enumerate(value):
        at = f"{where}: ice_servers[{i}]"
        if not isinstance(entry, list):
            raise InputError(f"{at} must be a mapping with urls")
        fields = {k: v for k, _, v in entry}
        for key in fields:
            if key in ("credential", "password"):
                raise InputError(f"{at}: put the password in credential_file or credential_env")
            if key not in ("urls", "username", "credential_file", "credential_env"):
                raise InputError(
                    f"{at}: unknown key '{key}' (known: urls, username, credential_file, "
                    "credential_env)"
                )
        urls = fields.get("urls")
        words = [urls] if isinstance(urls, str) else urls
        if (
            not isinstance(words, list)
            or not words
            or not all(isinstance(w, str) and w for w in words)
        ):
            raise InputError(f"{at}: urls must be an ICE URL or a list of them")
        for key in ("username", "credential_file", "credential_env"):
            if key in fields and not (isinstance(fields[key], str) and fields[key]):
                raise InputError(f"{at}: {key} must be a non-empty string")
        server = PageServer(
            tuple(words),
            fields.get("username"),
            fields.get("credential_file"),
            fields.get("credential_env"),
        )
        sources = [k for k in ("credential_file", "credential_env") if k in fields]
        if len(sources) > 1 or (server.username is None) != (not sources):
            raise InputError(f"{at}: username goes with one of credential_file or credential_env")
        if server.credential_file is not None and not Path(server.credential_file).is_file():
            raise InputError(f"{at}: credential_file {server.credential_file}: no such file")
        out.append(server)
    return tuple(out)


def _results(path: str, line: int, value: Any) -> ResultsStore:
    if not isinstance(value, list):
        raise InputError(f"{path}:{line}: 'results' must be a mapping with a path")
    fields: dict[str, str] = {}
    for key, kline, v in value:
        if key not in RESULTS_KEYS:
            raise InputError(
                f"{path}:{kline}: results: unknown key '{key}' (known: {', '.join(RESULTS_KEYS)})"
            )
        if not isinstance(v, str) or not v:
            raise InputError(f"{path}:{kline}: results: {key} must be a non-empty string")
        fields[key] = v
    if "path" not in fields:
        raise InputError(f"{path}:{line}: results: give the path of the SQLite file")
    token = fields.get("admin_token_file")
    if token is not None and not Path(token).is_file():
        raise InputError(f"{path}:{line}: results: admin_token_file {token}: no such file")
    store = Path(fields["path"])
    if not store.parent.is_dir():
        raise InputError(f"{path}:{line}: results: path {store}: no such directory {store.parent}")
    return ResultsStore(str(store), token)


def _module(path: str, name: str, line: int, options: Any) -> Module:
    from turncheck.require import KINDS

    if options is None:
        return Module(name)
    if not isinstance(options, list):
        raise InputError(f"{path}:{line}: module '{name}' must be a mapping of options")
    values: dict[str, Any] = {}
    for key, kline, value in options:
        where = f"{path}:{kline}: module '{name}'"
        if key not in MODULE_KEYS:
            raise InputError(f"{where}: unknown key '{key}' (known: {', '.join(MODULE_KEYS)})")
        if key in ("credential", "password"):
            raise InputError(f"{where}: put the password in credential_file or credential_env")
        values[key] = _checked(where, key, value, KINDS)
    module = Module(name, **values)
    if module.kind == "audit" and not module.targets:
        raise InputError(
            f"{path}:{line}: module '{name}': an audit module needs targets: the URLs it may audit"
        )
    sources = [k for k in ("credential_file", "credential_env", "secret_file") if values.get(k)]
    if len(sources) > 1:
        raise InputError(f"{path}:{line}: module '{name}': give one of {', '.join(sources)}")
    if sources and sources[0] != "secret_file" and module.username is None:
        raise InputError(f"{path}:{line}: module '{name}': {sources[0]} needs username")
    if module.username is not None and not sources:
        raise InputError(
            f"{path}:{line}: module '{name}': username needs credential_file, credential_env "
            "or secret_file"
        )
    for key in ("credential_file", "secret_file", "ca_file"):
        value = values.get(key)
        if value is not None and not Path(value).is_file():
            raise InputError(f"{path}:{line}: module '{name}': {key} {value}: no such file")
    return module


def _checked(where: str, key: str, value: Any, kinds: tuple[str, ...]) -> Any:
    def number(lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value <= hi:
            raise InputError(f"{where}: {key} must be a number above {lo:g}, at most {hi:g}")
        return float(value)

    if key in ("timeout",):
        return number(0, 60)
    if key in ("max_rtt",):
        return number(0, 60000)
    if key in ("max_loss",):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise InputError(f"{where}: max_loss must be a percentage from 0 to 100")
        return float(value)
    if key == "packet_interval":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10000:
            raise InputError(f"{where}: packet_interval must be 0 to 10000 milliseconds")
        return float(value)
    if key == "kind":
        if value not in ("probe", "audit"):
            raise InputError(f"{where}: kind must be probe or audit")
        return value
    if key == "fail_on":
        from turncheck.findings import Severity

        try:
            Severity.parse(str(value))
        except ValueError as exc:
            raise InputError(f"{where}: fail_on {exc}") from None
        return str(value)
    if key in ("count", "size", "ttl", "max_allocations"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{where}: {key} must be a whole number above 0")
        return value
    if key in ("relay", "relay_only", "insecure"):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {key} must be true or false")
        return value
    if key == "targets":
        words = [value] if isinstance(value, str) else value
        if (
            not isinstance(words, list)
            or not words
            or not all(isinstance(w, str) and w for w in words)
        ):
            raise InputError(f"{where}: targets must be an ICE URL or a list of them")
        return tuple(words)
    if key in ("transports", "require"):
        words = value.split(",") if isinstance(value, str) else value
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise InputError(f"{where}: {key} must be a list or a comma-separated string")
        allowed = ("udp", "tcp", "tls") if key == "transports" else kinds
        out = tuple(w.strip().lower() for w in words if w.strip())
        for word in out:
            if word not in allowed:
                raise InputError(f"{where}: {key}: '{word}' is not one of {', '.join(allowed)}")
        return out
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: {key} must be a non-empty string")
    return value


def fetch_spec(source: Module | TestProfile, timeout: float) -> FetchSpec:
    """How a module or a test profile fetches its iceServers (ice_servers_url and fetch_*)."""
    assert source.ice_servers_url is not None
    return FetchSpec(
        url=source.ice_servers_url,
        method=source.fetch_method.upper(),
        body=source.fetch_body,
        bearer_file=source.fetch_bearer_file,
        bearer_env=source.fetch_bearer_env,
        ca_file=source.ca_file,
        timeout=timeout,
    )
