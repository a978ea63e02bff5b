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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turncheck.config import Credentials, read_secret, rest_credentials
from turncheck.errors import InputError

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
}
LIMIT_KEYS = {"max_concurrent", "queue_timeout"}


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

    def credentials(self) -> Credentials | None:
        """Read now: a file, an environment variable, or minted from the shared secret."""
        if self.secret_file is not None:
            secret = read_secret(self.secret_file, None)
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
class ServeConfig:
    path: str
    modules: dict[str, Module]
    max_concurrent: int = 8
    queue_timeout: float = 5.0  # seconds a probe may wait for a free slot (then 503)
    lines: dict[str, int] = field(default_factory=dict)  # module → line, for messages


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
        else:
            raise InputError(f"{path}:{line}: unknown key '{key}' (known: modules, limits)")
    if not modules:
        raise InputError(f"{path}:1: no modules: define at least one under 'modules'")
    return ServeConfig(
        path,
        modules,
        max_concurrent=int(limits.get("max_concurrent", 8)),
        queue_timeout=float(limits.get("queue_timeout", 5.0)),
        lines=lines,
    )


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
    if key in ("count", "size", "ttl"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{where}: {key} must be a whole number above 0")
        return value
    if key in ("relay", "relay_only", "insecure"):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {key} must be true or false")
        return value
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
