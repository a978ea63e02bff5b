"""What happened to the call, in words for support staff, from a webrtc-internals record.

The browser's icecandidateerror codes and texts (turncheck.browser) are translated into
turncheck's reasons and hints; the verdict says how the call connected (or why it did not)
and what that means for calls between other networks.
"""

from __future__ import annotations

from typing import Any

from turncheck.dumps.reader import ErrorRecord, PeerConnectionRecord

_LOCAL_KIND = {
    "host": "over host candidates on the same LAN",
    "srflx": "directly through the NATs (srflx candidates)",
    "prflx": "directly (peer-reflexive candidates)",
}


def translate(error: ErrorRecord) -> tuple[str, str]:
    """(reason, hint) for one icecandidateerror."""
    from turncheck.explain import candidate_error

    return candidate_error(error.url, error.code, error.text)


def verdict(record: PeerConnectionRecord) -> str:
    relays = sorted({c.relay_protocol or "?" for c in record.candidates if c.type == "relay"})
    turn_urls = [u for u in record.ice_servers if u.startswith(("turn:", "turns:"))]
    first = _first_turn_error(record)
    cause = ""
    if first is not None:
        reason, _ = translate(first)
        said = f"{first.url}: " if first.code == 701 else f"{first.url} answered {first.code}: "
        cause = f"; {said}{reason}"
    if record.connected:
        selected = record.selected
        if selected is not None and "relay" in (selected.local_type, selected.remote_type):
            how = f"relay over {selected.relay_protocol}" if selected.relay_protocol else "relay"
            via = f" via {selected.url}" if selected.url else ""
            rtt = f", RTT {selected.rtt_ms:g} ms" if selected.rtt_ms is not None else ""
            return f"connected through TURN ({how}{via}{rtt})"
        kind = _LOCAL_KIND.get(selected.local_type, "directly") if selected else "directly"
        text = f"connected {kind}"
        if not turn_urls:
            return text + "; no TURN server is configured: calls that need a relay will fail"
        if not relays:
            return (
                text + "; the configured TURN server produced no relay candidate, so calls "
                "between different networks will fail" + cause
            )
        return text + f"; TURN relays were gathered too (over {', '.join(relays)})"
    policy = " (iceTransportPolicy relay)" if record.ice_transport_policy == "relay" else ""
    if not relays and turn_urls and not record.errors and record.format == "rtcstats":
        cause = (
            f"; {', '.join(turn_urls)} gave no relay candidate, and rtcstats dumps do not "
            "record icecandidateerror events: turncheck diagnose --probe checks the servers"
        )
    elif not relays and turn_urls and not record.errors:
        cause = (
            f"; {', '.join(turn_urls)} gave neither a candidate nor an error: over UDP Chromium "
            "reports a timeout only after about 40 s (the server is down, or UDP is blocked)"
        )
    if not relays and (turn_urls or policy):
        return f"failed: no relay candidate{policy}{cause}"
    if not record.candidates:
        return "failed: no candidate was gathered" + cause
    return (
        f"failed: candidates were gathered ({_summary(record)}), but no pair connected: the "
        "peers could not reach each other"
    )


def _first_turn_error(record: PeerConnectionRecord) -> ErrorRecord | None:
    turn = [e for e in record.errors if e.url.startswith(("turn:", "turns:"))]
    chosen = turn or list(record.errors)
    return chosen[0] if chosen else None


def _summary(record: PeerConnectionRecord) -> str:
    counts: dict[str, int] = {}
    for c in record.candidates:
        key = c.type if c.type != "relay" else f"relay {c.relay_protocol or '?'}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def to_json(record: PeerConnectionRecord) -> dict[str, Any]:
    errors = []
    for error in record.errors:
        reason, hint = translate(error)
        errors.append(
            {
                "url": error.url,
                "code": error.code,
                "text": error.text,
                "reason": reason,
                "hint": hint,
            }
        )
    return {
        "id": record.id,
        "url": record.url,
        "format": record.format,
        "ice_servers": list(record.ice_servers),
        "ice_transport_policy": record.ice_transport_policy,
        "candidates": [c.to_json() for c in record.candidates],
        "errors": errors,
        "states": [{"at_ms": s.at_ms, "kind": s.kind, "state": s.state} for s in record.states],
        "selected_pair": None if record.selected is None else record.selected.to_json(),
        "connected": record.connected,
        "verdict": verdict(record),
    }
