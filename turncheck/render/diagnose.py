"""`turncheck diagnose` output: per peer connection, what the browser saw and the verdict."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from turncheck.dumps.reader import PeerConnectionRecord
from turncheck.dumps.verdict import translate, verdict
from turncheck.render import plain_text, print_lines, wrap

KEY = 14


def _fact(name: str, value: str, width: int) -> list[Text]:
    return wrap(name.ljust(KEY), value, width, "", KEY)


def _timeline(record: PeerConnectionRecord) -> str:
    steps = [
        f"{s.state} +{s.at_ms:.0f}ms"
        for s in record.states
        if s.kind in ("iceconnectionstatechange", "connectionstatechange")
    ]
    return " → ".join(dict.fromkeys(steps)) or "new: ICE never started checking"


def _candidates(record: PeerConnectionRecord) -> str:
    counts: dict[str, set[str]] = {}
    for c in record.candidates:
        key = c.type if c.type != "relay" else f"relay/{c.relay_protocol or '?'}"
        counts.setdefault(key, set())
        if c.url:
            counts[key].add(c.url)
    parts = []
    for key in sorted(
        counts,
        key=lambda k: ("host", "srflx", "prflx").index(k) if k in ("host", "srflx", "prflx") else 3,
    ):
        urls = counts[key]
        parts.append(key + (f" ({', '.join(sorted(urls))})" if urls else ""))
    return ", ".join(parts) or "none"


def lines(records: Sequence[PeerConnectionRecord], width: int) -> list[Text]:
    out: list[Text] = []
    for record in records:
        head = Text(f"peer connection {record.id}", style="bold")
        if record.url:
            head.append(f"  {record.url}")
        out.append(head)
        out += _fact("ICE servers", ", ".join(record.ice_servers) or "none", width)
        out += _fact("policy", record.ice_transport_policy, width)
        out += _fact("candidates", _candidates(record), width)
        out += _fact("states", _timeline(record), width)
        if record.selected is not None:
            s = record.selected
            pair = f"{s.local_type} ↔ {s.remote_type}"
            if s.relay_protocol:
                pair += f", relay over {s.relay_protocol}"
            if s.url:
                pair += f" via {s.url}"
            if s.rtt_ms is not None:
                pair += f", RTT {s.rtt_ms:g} ms"
            out += _fact("selected pair", pair, width)
        seen: set[tuple[str, int, str]] = set()
        n = 0
        for error in record.errors:
            key = (error.url, error.code, error.text)
            if key in seen:
                continue
            seen.add(key)
            n += 1
            reason, hint = translate(error)
            out += wrap(
                f"{n}  ", f"{error.url}: {error.code} {error.text} — {reason}", width, "", 3
            )
            out += wrap("   hint: ", hint, width, "", 9)
        style = "bold green" if record.connected else "bold red"
        out += wrap("verdict: ", verdict(record), width, style)
    return out


def render(records: Sequence[PeerConnectionRecord], console: Console) -> None:
    print_lines(console, lines(records, console.width))


def render_text(records: Sequence[PeerConnectionRecord], width: int = 200) -> str:
    return plain_text(lambda console: render(records, console), width)
