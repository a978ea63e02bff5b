"""Read an rtcstats dump: the line-oriented file rtcstats-server writes for each session of
the rtcstats client (Jitsi Meet's jitsi/rtcstats, and fippo/rtcstats before it).

One JSON value a line, ``\\n``-separated:

- every entry is ``[method, connection, value, time]`` (jitsi/rtcstats 9.x adds a
  sequence number after the time): the client's trace() of an RTCPeerConnection call or
  event (``create`` with the RTCConfiguration less its credentials, ``onicecandidate``,
  ``oniceconnectionstatechange``, ``onconnectionstatechange``, ``close``, ...), with
  the connection's id (``PC_0``) or null for the page's own (getUserMedia, identity);
  time is milliseconds since the epoch;
- ``getstats`` values are delta-compressed getStats() results (rtcstats.js
  deltaCompression): {stats id: report} where a report seen before carries only what
  changed, and the newest report timestamp is hoisted to a top-level ``timestamp``;
  Chrome's legacy stats (googCandidatePair, localcandidate, ...) where the client used
  them;
- the first line says who sent it: ``["connectionInfo", null, {path, origin, url,
  userAgent, clientProtocol, statsFormat, clientType}, time]`` (rtcstats-server since
  2021; the object was JSON text until 2023), or before that a bare metadata object
  ``{path, origin, url, userAgent, time, fileFormat: 2}``.

rtcstats deletes each ICE server's ``credential`` but keeps its ``username``; host and
srflx addresses are usually obfuscated (``x.x.x.x``). Jitsi's client does not trace
icecandidateerror; an ``onicecandidateerror`` entry is read when a client does.

rtcstats.com's newer ``RTCStatsDump`` files (numbered methods, relative times,
compressed stats names) are a different format, named and refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from turncheck.errors import InputError

_ARRAY_LINE = re.compile(r"[ \t\r]*\[")
_NEW_FORMAT = "RTCStatsDump\n"
_PC_NUMBER = re.compile(r"PC_(\d{1,9})")
# The stats reports whose last values are kept: only these types matter to the verdict.
_KEPT_TYPES = frozenset(
    (
        "transport",
        "candidate-pair",
        "local-candidate",
        "remote-candidate",
        # Chrome's legacy getStats (rtcstats.js mangleChromeStats)
        "googComponent",
        "googCandidatePair",
        "localcandidate",
        "remotecandidate",
    )
)
_LEGACY_TYPES = {
    "googComponent": "transport",
    "googCandidatePair": "candidate-pair",
    "localcandidate": "local-candidate",
    "remotecandidate": "remote-candidate",
}
_LEGACY_CANDIDATE_TYPES = {
    "local": "host",
    "host": "host",
    "stun": "srflx",
    "serverreflexive": "srflx",
    "prflx": "prflx",
    "peerreflexive": "prflx",
    "relay": "relay",
    "relayed": "relay",
}
# The entries webrtc-internals' updateLog would show that the reader reads; the rest
# (SDP, tracks, data channels, getUserMedia) says nothing about ICE.
_LOGGED = frozenset(
    (
        "create",  # the connection's times count from here
        "setConfiguration",
        "onicecandidate",
        "onicecandidateerror",
        "oniceconnectionstatechange",
        "onconnectionstatechange",
        "onicegatheringstatechange",
        "close",
    )
)


def looks_like_rtcstats(text: str) -> bool:
    """Whether *text* is line-oriented rtcstats (not one JSON document): its first line
    is a JSON array, or a JSON object followed by a line that starts a JSON array."""
    if text.startswith(_NEW_FORMAT):
        return True
    end = text.find("\n")
    first = (text if end < 0 else text[:end]).strip()
    if first.startswith("["):
        return isinstance(_loads(first), list)
    if first.startswith("{") and first.endswith("}") and end >= 0:
        after = text[end + 1 : end + 1 + 64].lstrip("\r\n")
        if not (_ARRAY_LINE.match(after) or after.startswith('{"statsSessionId"')):
            return False
        return isinstance(_loads(first), dict)
    return False


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, the file's last line without a newline?), blank lines skipped."""
    number, start, size = 0, 0, len(text)
    while start < size:
        end = text.find("\n", start)
        last = end < 0
        if last:
            end = size
        number += 1
        line = text[start:end]
        start = end + 1
        if line.strip():
            yield number, line, last


def as_internals(text: str, name: str) -> dict[str, Any]:
    """An rtcstats dump as the webrtc-internals document it stands for ("PeerConnections"
    with rtcConfiguration, updateLog and the stats' last values; "UserAgent"), or
    InputError naming the line that is not what an rtcstats dump holds."""
    if text.startswith(_NEW_FORMAT):
        raise InputError(
            f"{name}: an RTCStatsDump (rtcstats.com's newer format): not read yet; turncheck "
            "reads rtcstats-server dumps (Jitsi) and webrtc-internals dumps"
        )
    connections: dict[str, dict[str, Any]] = {}
    reports: dict[str, dict[str, dict[str, Any]]] = {}
    meta: dict[str, Any] = {}
    for number, line, last in _lines(text):
        entry = _entry(line, number, last, name)
        if isinstance(entry, dict):
            if "statsSessionId" in entry and "type" in entry:
                raise InputError(
                    f"{name}: the rtcstats dump of a Jitsi server component (JVB, Jicofo, "
                    "Jigasi: requests, not a browser's entries): nothing in it to diagnose"
                )
            if number != 1:
                raise InputError(
                    f"{name}: line {number}: a JSON object where an rtcstats dump has an "
                    "entry [method, connection, value, time] (only the first line may be one)"
                )
            meta = entry
            continue
        method, connection = entry[0], entry[1]
        value = entry[2] if len(entry) > 2 else None
        if method == "connectionInfo":
            meta = {**meta, **_connection_info(value, number, name)}
            continue
        if connection is None:
            continue  # the page's own: getUserMedia, identity, publicIP
        key = str(connection)
        pc = connections.get(key)
        if pc is None:
            pc = connections[key] = {"url": "", "updateLog": [], "stats": {}}
            reports[key] = {}
        if method in ("getstats", "getStats"):
            _merge(reports[key], value)
            continue
        if method == "create" and isinstance(value, dict):
            pc["rtcConfiguration"] = json.dumps(value)
        if method not in _LOGGED:
            continue
        if method in ("create", "setConfiguration"):
            value = json.dumps(value)
        at = entry[3] if len(entry) > 3 and isinstance(entry[3], int | float) else None
        pc["updateLog"].append({"type": method, "value": value, "timestamp": at})
    if not connections:
        raise InputError(
            f"{name}: an rtcstats dump with no peer connections (no entry names one): the "
            "session ended before a call started"
        )
    url = _page_url(meta)
    for key, pc in connections.items():
        pc["url"] = url
        pc["stats"] = _internals_stats(reports[key])
        # A client that reconnected replays its buffer: entries may come out of order.
        pc["updateLog"].sort(key=lambda e: e["timestamp"] if e["timestamp"] is not None else 0)
    agent = meta.get("userAgent")
    return {
        "PeerConnections": dict(sorted(connections.items(), key=lambda kv: _creation(kv[0]))),
        "UserAgent": agent if isinstance(agent, str) else "",
    }


def _creation(key: str) -> tuple[int, str]:
    """rtcstats numbers its connections PC_0, PC_1, ... as they are created."""
    number = _PC_NUMBER.fullmatch(key)
    return (int(number.group(1)), key) if number else (1 << 62, key)


def _entry(line: str, number: int, last: bool, name: str) -> list[Any] | dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        what = (
            "truncated (the file stops mid-line)"
            if last and exc.pos >= len(line.rstrip()) - 1
            else f"invalid JSON (column {exc.colno})"
        )
        raise InputError(
            f"{name}: line {number}: {what}: an rtcstats dump has one JSON array a line"
        ) from None
    except (ValueError, RecursionError):
        raise InputError(f"{name}: line {number}: unusable JSON in an rtcstats dump") from None
    if isinstance(value, dict):
        return value
    if not isinstance(value, list) or len(value) < 2 or not isinstance(value[0], str):
        shown = type(value).__name__ if not isinstance(value, list) else f"{len(value)} items"
        raise InputError(
            f"{name}: line {number}: not an rtcstats entry [method, connection, value, time] "
            f"({shown})"
        )
    return value


def _connection_info(value: Any, number: int, name: str) -> dict[str, Any]:
    """rtcstats-server's header: an object, or (2021-2023) the object as JSON text."""
    if isinstance(value, str):
        value = _loads(value)
    if not isinstance(value, dict):
        raise InputError(f"{name}: line {number}: a connectionInfo entry without its details")
    kind = value.get("clientType")
    if isinstance(kind, str) and kind not in ("RTCSTATS_CLIENT", ""):
        raise InputError(
            f"{name}: an rtcstats dump of {kind} (a Jitsi server component), not of a "
            "browser: nothing in it to diagnose"
        )
    return value


def _page_url(meta: dict[str, Any]) -> str:
    """The page: rtcstats-server's "url" is origin + the WebSocket's path, whose query
    (statsSessionId, isReconnect) is trace-ws.js's own, not the page's."""
    url = meta.get("url")
    if not isinstance(url, str):
        origin, path = meta.get("origin"), meta.get("path")
        url = f"{origin}{path}" if isinstance(origin, str) and isinstance(path, str) else ""
    page, _, query = url.partition("?")
    return page if "statsSessionId=" in query else url


def _merge(reports: dict[str, dict[str, Any]], delta: Any) -> None:
    """Fold one delta-compressed getstats value into the last values of each report:
    webrtc-internals keeps each series' last value, and so does this."""
    if not isinstance(delta, dict):
        return
    for stat_id, report in delta.items():
        if not isinstance(report, dict):
            continue  # the hoisted "timestamp"
        kept = reports.get(stat_id)
        if kept is None:
            if report.get("type") in _KEPT_TYPES:
                reports[stat_id] = dict(report)
        else:
            kept.update(report)


def _internals_stats(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The last reports as webrtc-internals' stats map ("<id>-<attribute>" → series),
    Chrome's legacy reports as the standard ones they became."""
    shaped: dict[str, Any] = {}
    for stat_id, report in reports.items():
        kind = str(report.get("type"))
        values = _standard(report) if kind in _LEGACY_TYPES else report
        kind = _LEGACY_TYPES.get(kind, kind)
        for attribute, value in values.items():
            shaped[f"{stat_id}-{attribute}"] = {"statsType": kind, "values": [value]}
    return shaped


def _standard(report: dict[str, Any]) -> dict[str, Any]:
    """A legacy (goog) report's attributes under their standard names."""
    out = dict(report)
    if "candidateType" in report:
        ctype = _LEGACY_CANDIDATE_TYPES.get(str(report["candidateType"]), "unknown")
        out["candidateType"] = ctype
        out["address"] = report.get("ipAddress")
        out["protocol"] = report.get("transport", "udp")
        try:
            out["port"] = int(report.get("portNumber", ""))
        except (TypeError, ValueError):
            out["port"] = None
        if ctype == "relay":
            try:
                # The type preference in the priority's top byte: TLS 0, TCP 1, UDP 2.
                preference = int(report.get("priority", "")) >> 24
            except (TypeError, ValueError):
                preference = -1
            out["relayProtocol"] = {0: "tls", 1: "tcp", 2: "udp"}.get(preference)
    if report.get("type") == "googCandidatePair":
        out["selected"] = str(report.get("googActiveConnection")) == "true"
        try:
            out["currentRoundTripTime"] = float(report["googRtt"]) / 1000
        except (KeyError, TypeError, ValueError):
            out.pop("currentRoundTripTime", None)
    return out
