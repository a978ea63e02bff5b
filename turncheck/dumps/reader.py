"""Read a chrome://webrtc-internals dump ("Download the PeerConnection updates and stats data"),
or an rtcstats dump (turncheck.dumps.rtcstats turns one into the webrtc-internals document
it stands for; its records say format "rtcstats").

Two webrtc-internals formats are in the wild:

- current Chromium: "PeerConnections" → {"<pid>-<lid>": {"rtcConfiguration": "<JSON text>",
  "updateLog": [{"type", "value", "timestamp"}], "stats": {...}, "url"}}; candidate and
  candidate-error values are JSON text;
- older Chromium: updateLog entries are {"time", "type", "value"}; rtcConfiguration is a
  non-JSON text like "{ iceServers: [turn:host:3478], iceTransportPolicy: all, ... }";
  icecandidateerror values are text lines "url: …", "address: …", "port: …", "error_text: …",
  "error_code: N".

Both carry a "stats" map: "<stats id>-<attribute>" → {"statsType", "values": "<JSON list>"},
from which the candidates, candidate pairs and the transport's selectedCandidatePairId are read.
The dump never holds TURN credentials.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from turncheck.dumps.rtcstats import as_internals, looks_like_rtcstats
from turncheck.errors import InputError
from turncheck.usertest import BrowserName, browser_of

MAX_BYTES = 512 * 1024 * 1024  # a dump of hours of stats stays far below this


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    type: str  # host | srflx | prflx | relay
    protocol: str  # udp | tcp
    relay_protocol: str | None
    address: str | None
    port: int | None
    url: str | None  # the STUN/TURN server that produced it

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "protocol": self.protocol,
            "relay_protocol": self.relay_protocol,
            "address": self.address,
            "port": self.port,
            "url": self.url,
        }


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    url: str
    code: int
    text: str
    address: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class StateRecord:
    at_ms: float  # since the connection's first event
    kind: str  # iceconnectionstatechange | connectionstatechange | icegatheringstatechange
    state: str


@dataclass(frozen=True, slots=True)
class SelectedPair:
    local_type: str
    remote_type: str
    relay_protocol: str | None
    url: str | None
    rtt_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "local_type": self.local_type,
            "remote_type": self.remote_type,
            "relay_protocol": self.relay_protocol,
            "url": self.url,
            "rtt_ms": self.rtt_ms,
        }


@dataclass(frozen=True, slots=True)
class PeerConnectionRecord:
    id: str
    url: str  # the page that made it
    ice_servers: tuple[str, ...]
    ice_transport_policy: str
    candidates: tuple[CandidateRecord, ...] = ()
    errors: tuple[ErrorRecord, ...] = ()
    states: tuple[StateRecord, ...] = ()
    selected: SelectedPair | None = None
    format: str = "current"  # current | older | rtcstats
    closed: bool = False

    @property
    def connected(self) -> bool:
        states = [
            s.state
            for s in self.states
            if s.kind in ("connectionstatechange", "iceconnectionstatechange")
        ]
        return self.selected is not None or "connected" in states or "completed" in states


@dataclass(slots=True)
class _Builder:
    id: str
    url: str = ""
    ice_servers: list[str] = field(default_factory=list)
    policy: str = "all"
    candidates: list[CandidateRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    states: list[StateRecord] = field(default_factory=list)
    format: str = "current"
    closed: bool = False


DumpBrowser = BrowserName  # the browser that wrote a dump (usertest.browser_of)


def read_dump(data: bytes, name: str) -> list[PeerConnectionRecord]:
    """The peer connections of a dump, or InputError saying what the file is instead."""
    return read(data, name)[0]


def read(data: bytes, name: str) -> tuple[list[PeerConnectionRecord], DumpBrowser | None]:
    """The peer connections of a dump and the browser that wrote it (None: the dump does
    not say), or InputError saying what the file is instead."""
    if data[:2] == b"\x1f\x8b":
        raise InputError(
            f"{name}: a gzip file, not a webrtc-internals dump: decompress it first "
            f"(zcat {name} | turncheck diagnose -)"
        )
    if len(data) > MAX_BYTES:
        raise InputError(f"{name}: {len(data)} bytes: larger than any dump turncheck reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not text: a webrtc-internals dump is a JSON file") from None
    if looks_like_rtcstats(text):
        records, agent = _records(as_internals(text, name))
        return [replace(r, format="rtcstats") for r in records], agent
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1
        what = "truncated JSON (the download stopped early?)" if truncated else "invalid JSON"
        raise InputError(
            f"{name}: {what} at line {exc.lineno}, column {exc.colno}: expected a "
            "webrtc-internals dump (chrome://webrtc-internals → Create a dump → Download) "
            "or an rtcstats dump"
        ) from None
    except (ValueError, RecursionError):
        raise InputError(f"{name}: unusable JSON: expected a webrtc-internals dump") from None
    if not isinstance(document, dict) or "PeerConnections" not in document:
        keys = sorted(document)[:6] if isinstance(document, dict) else type(document).__name__
        raise InputError(
            f'{name}: JSON, but not a webrtc-internals dump (no "PeerConnections"; found {keys})'
        )
    connections = document["PeerConnections"]
    if not isinstance(connections, dict) or not connections:
        raise InputError(
            f"{name}: a webrtc-internals dump with no peer connections: keep "
            "chrome://webrtc-internals open while the call is made, then download the dump"
        )
    return _records(document)


def _records(document: dict[str, Any]) -> tuple[list[PeerConnectionRecord], DumpBrowser | None]:
    connections = document["PeerConnections"]
    records = [
        _connection(str(key), value)
        for key, value in connections.items()
        if isinstance(value, dict)
    ]
    agent = document.get("UserAgent")
    return records, browser_of(agent) if isinstance(agent, str) and agent else None


def _connection(key: str, data: dict[str, Any]) -> PeerConnectionRecord:
    builder = _Builder(key, url=str(data.get("url", "")))
    config = data.get("rtcConfiguration")
    if isinstance(config, str):
        builder.ice_servers, builder.policy, older = _configuration(config)
        if older:
            builder.format = "older"
    log = data.get("updateLog") or []
    start: float | None = None
    for entry in log if isinstance(log, list) else []:
        if not isinstance(entry, dict):
            continue
        if "time" in entry and "timestamp" not in entry:
            builder.format = "older"
        at = _time_of(entry)
        if start is None and at is not None:
            start = at
        _event(builder, str(entry.get("type", "")), entry.get("value"), (at or 0) - (start or 0))
    stats = data.get("stats") or {}
    candidates, selected = _from_stats(stats if isinstance(stats, dict) else {})
    if not builder.candidates and candidates:
        builder.candidates = candidates
    return PeerConnectionRecord(
        id=key,
        url=builder.url,
        ice_servers=tuple(builder.ice_servers),
        ice_transport_policy=builder.policy,
        candidates=tuple(builder.candidates),
        errors=tuple(builder.errors),
        states=tuple(builder.states),
        selected=selected,
        format=builder.format,
        closed=builder.closed,
    )


def _configuration(text: str) -> tuple[list[str], str, bool]:
    """(ICE server URLs, iceTransportPolicy, older format?) from rtcConfiguration."""
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if isinstance(config, dict):
        urls: list[str] = []
        for server in config.get("iceServers") or []:
            value = server.get("urls", server.get("url")) if isinstance(server, dict) else None
            urls += (
                [value]
                if isinstance(value, str)
                else [u for u in value or [] if isinstance(u, str)]
            )
        return urls, str(config.get("iceTransportPolicy", "all")), False
    # Older: "{ iceServers: [turn:a:3478, stun:b], iceTransportPolicy: relay, ... }"
    servers = re.search(r"iceServers:\s*\[([^\]]*)\]", text)
    policy = re.search(r"iceTransportPolicy:\s*(\w+)", text)
    urls = [u.strip() for u in servers.group(1).split(",") if u.strip()] if servers else []
    return urls, policy.group(1) if policy else "all", True


def _time_of(entry: dict[str, Any]) -> float | None:
    value = entry.get("timestamp", entry.get("time"))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            from datetime import datetime

            for fmt in ("%m/%d/%Y, %I:%M:%S %p", "%Y-%m-%dT%H:%M:%S.%fZ"):
                try:
                    return datetime.strptime(value, fmt).timestamp() * 1000
                except ValueError:
                    continue
    return None


_STATE_EVENTS = {
    "oniceconnectionstatechange": "iceconnectionstatechange",  # Chromium 156 ("on" + event)
    "onconnectionstatechange": "connectionstatechange",
    "onicegatheringstatechange": "icegatheringstatechange",
    "iceconnectionstatechange": "iceconnectionstatechange",
    "iceConnectionStateChange": "iceconnectionstatechange",
    "connectionstatechange": "connectionstatechange",
    "icegatheringstatechange": "icegatheringstatechange",
    "iceGatheringStateChange": "icegatheringstatechange",
}


def _event(builder: _Builder, kind: str, value: Any, at: float) -> None:
    if kind in _STATE_EVENTS:
        state = str(value).strip().strip('"')
        builder.states.append(StateRecord(round(at, 1), _STATE_EVENTS[kind], state))
    elif kind in ("onicecandidate", "icecandidate", "onIceCandidate"):
        candidate = _candidate(value)
        if candidate is not None:
            builder.candidates.append(candidate)
    elif kind in ("onicecandidateerror", "icecandidateerror"):
        error = _error(value)
        if error is not None:
            builder.errors.append(error)
    elif kind in ("close", "stop"):
        builder.closed = True
    elif (
        kind in ("setConfiguration", "create") and isinstance(value, str) and "iceServers" in value
    ):
        urls, policy, _ = _configuration(value)
        if urls:
            builder.ice_servers, builder.policy = urls, policy


def _candidate(value: Any) -> CandidateRecord | None:
    """An icecandidate event value: JSON (current) or "sdpMid: 0, sdpMLineIndex: 0,
    candidate: candidate:... " text (older)."""
    data: dict[str, Any] = {}
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            data = parsed
        else:
            found = re.search(r"candidate:\S+( \S+)+", value)
            data = {"candidate": found.group(0) if found else ""}
            url = re.search(r"url: (\S+)", value)
            if url:
                data["url"] = url.group(1)
    elif isinstance(value, dict):
        data = value
    line = str(data.get("candidate", ""))
    words = line.split()
    if len(words) < 8 or "typ" not in words:
        return None
    ctype = words[words.index("typ") + 1]
    relay_protocol = data.get("relayProtocol")
    url = data.get("url") or None
    if ctype == "relay" and not relay_protocol and isinstance(url, str):
        relay_protocol = _relay_protocol_of(url)
    if ctype == "relay" and not relay_protocol and words[3].isdigit():
        # The type preference in the priority's top byte: TLS 0, TCP 1, UDP 2 (3 since
        # Chromium 146; api/candidate.cc).
        relay_protocol = {0: "tls", 1: "tcp", 2: "udp", 3: "udp"}.get(int(words[3]) >> 24)
    try:
        port: int | None = int(words[5])
    except ValueError:
        port = None
    return CandidateRecord(
        ctype,
        words[2].lower(),
        relay_protocol or None,
        words[4],
        port,
        url if isinstance(url, str) else None,
    )


def _relay_protocol_of(url: str) -> str | None:
    if url.startswith("turns:"):
        return "tls"
    if "transport=tcp" in url:
        return "tcp"
    if url.startswith("turn:"):
        return "udp"
    return None


def _error(value: Any) -> ErrorRecord | None:
    data: dict[str, Any] = {}
    if isinstance(value, dict):
        data = value
    elif isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            data = parsed
        else:  # older: "url: ...\naddress: ...\nport: ...\nerror_text: ...\nerror_code: 701"
            for line in value.splitlines():
                key, sep, rest = line.partition(":")
                if sep:
                    data[key.strip()] = rest.strip()
    code = data.get("errorCode", data.get("error_code"))
    try:
        number = int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    port = data.get("port")
    try:
        port_number: int | None = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        port_number = None
    return ErrorRecord(
        url=str(data.get("url", "")),
        code=number,
        text=str(data.get("errorText", data.get("error_text", ""))),
        address=str(data.get("address")) if data.get("address") else None,
        port=port_number,
    )


def _last(values: Any) -> Any:
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except ValueError:
            return values
    if isinstance(values, list):
        return values[-1] if values else None
    return values


def _from_stats(stats: dict[str, Any]) -> tuple[list[CandidateRecord], SelectedPair | None]:
    """Candidates and the selected pair from the stats map ("<id>-<attr>" keys)."""
    by_id: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for key, entry in stats.items():
        if not isinstance(entry, dict):
            continue
        stat_id, _, attr = str(key).rpartition("-")
        if not stat_id:
            continue
        by_id.setdefault(stat_id, {})[attr] = _last(entry.get("values"))
        if "statsType" in entry:
            kinds[stat_id] = str(entry["statsType"])
    for stat_id, attrs in by_id.items():  # older dumps have no statsType: infer it
        if stat_id in kinds:
            continue
        if "selectedCandidatePairId" in attrs or stat_id.startswith("RTCTransport"):
            kinds[stat_id] = "transport"
        elif "localCandidateId" in attrs and "remoteCandidateId" in attrs:
            kinds[stat_id] = "candidate-pair"
        elif "candidateType" in attrs:
            is_remote = attrs.get("isRemote") in (True, "true")
            kinds[stat_id] = "remote-candidate" if is_remote else "local-candidate"
    candidates: list[CandidateRecord] = []
    for stat_id, attrs in by_id.items():
        if kinds.get(stat_id) not in ("local-candidate", "localcandidate"):
            continue
        candidates.append(_stats_candidate(attrs))
    selected_id = None
    for stat_id, attrs in by_id.items():
        if kinds.get(stat_id) == "transport" and attrs.get("selectedCandidatePairId"):
            selected_id = str(attrs["selectedCandidatePairId"])
    if selected_id is None:
        for stat_id, attrs in by_id.items():
            if kinds.get(stat_id) == "candidate-pair" and (
                attrs.get("selected") in (True, "true")
                or (attrs.get("nominated") in (True, "true") and attrs.get("state") == "succeeded")
            ):
                selected_id = stat_id
    selected = None
    pair = by_id.get(selected_id or "")
    if pair:
        local = by_id.get(str(pair.get("localCandidateId", "")), {})
        remote = by_id.get(str(pair.get("remoteCandidateId", "")), {})
        rtt = pair.get("currentRoundTripTime") or pair.get("totalRoundTripTime")
        try:
            rtt_ms = round(float(rtt) * 1000, 1) if rtt is not None else None
        except (TypeError, ValueError):
            rtt_ms = None
        local_record = _stats_candidate(local) if local else None
        selected = SelectedPair(
            local_type=str(local.get("candidateType", "unknown")),
            remote_type=str(remote.get("candidateType", "unknown")),
            relay_protocol=local_record.relay_protocol if local_record else None,
            url=local_record.url if local_record else None,
            rtt_ms=rtt_ms,
        )
    return candidates, selected


def _stats_candidate(attrs: dict[str, Any]) -> CandidateRecord:
    ctype = str(attrs.get("candidateType", "unknown"))
    url = attrs.get("url") or None
    relay = attrs.get("relayProtocol") or None
    if ctype == "relay" and not relay and isinstance(url, str):
        relay = _relay_protocol_of(url)
    port = attrs.get("port")
    return CandidateRecord(
        ctype,
        str(attrs.get("protocol", "udp")),
        str(relay) if relay else None,
        str(attrs.get("address") or attrs.get("ip") or "") or None,
        int(port) if isinstance(port, int | float) else None,
        str(url) if url else None,
    )
