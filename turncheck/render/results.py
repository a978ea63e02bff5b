"""`turncheck results`: the list of stored test-page results, and one result's matrix.

    reference  when (UTC)        test  browser      result         why
    K7F-29Q    2026-12-02 06:40  lab   Firefox 153  calls connect  UDP blocked

One result: the per-URL, per-transport matrix (what the user's browser got beside what
serve's own check got at the same moment), NAT and IPv6, the verdict, the hints, and what
a pass does not prove.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from turncheck.render import Column, fit, plain_text, print_lines, table_lines, wrap
from turncheck.usertest import CAVEAT, Judgement

LIST_COLUMNS = (
    Column("id", "reference", 10),
    Column("when", "when (UTC)", 6),
    Column("profile", "test", 4),
    Column("browser", "browser", 5),
    Column("result", "result", 9),
    Column("cause", "why", 7),
)
_WORDS = {True: "ok", False: "FAIL", None: "-"}


def _when(at: float, seconds: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""), time.gmtime(at))


def list_lines(listed: Sequence[Any], width: int) -> list[Text]:
    if not listed:
        return [Text("no results yet")]
    rows = [
        {
            "id": Text(r.id, style="bold"),
            "when": Text(_when(r.created)),
            "profile": Text(r.profile),
            "browser": Text(r.browser),
            "result": Text("calls connect" if r.ok else "CALLS FAIL", "green" if r.ok else "red"),
            "cause": Text(r.cause),
        }
        for r in listed
    ]
    return table_lines(fit(LIST_COLUMNS, rows, width), rows)


def result_lines(record: dict[str, Any], width: int) -> list[Text]:
    judgement = Judgement.from_json(record["judgement"])
    rid = record["id"]
    head = Text(f"Reference {rid}", style="bold")
    head.append(
        f"  test {record['profile']} · {judgement.browser} · {_when(record['created'], True)} UTC"
    )
    out = [head]
    result = "calls connect" if judgement.ok else "CALLS FAIL"
    out += wrap("result: ", result, width, "green" if judgement.ok else "red", 8)
    out.append(Text())
    out += _matrix(judgement, width)
    out.append(Text())
    out += wrap("symmetric NAT: ", _nat(judgement), width, "", 4)
    out += wrap("IPv6: ", judgement.ipv6, width, "", 4)
    out += wrap("verdict: ", judgement.verdict, width, "", 4)
    # When calls connect the verdict says what to know; else the failures' hints lead on.
    hints = [] if judgement.ok else list(dict.fromkeys(r.hint for r in judgement.rows if r.hint))
    for i, hint in enumerate(hints, 1):
        out += wrap(f"hint {i}: ", hint, width, "", 4)
    out += wrap("serve's check: ", record["server_side"]["verdict"], width, "dim", 4)
    out += wrap("note: ", CAVEAT, width, "dim", 4)
    return out


def _matrix(judgement: Judgement, width: int) -> list[Text]:
    """Per URL: the URL and how the browser reaches it on one line (never split), then what
    the user's browser got beside what serve's check got (on two lines when narrow)."""
    out: list[Text] = []
    for r in judgement.rows:
        head = Text(r.url, style="bold")
        head.append(f"  {r.transport.upper()}")
        out.append(head)
        user = Text("  user's browser: ")
        user.append(f"{_WORDS[r.user_ok]} {r.user}", _style(r.user_ok))
        server = Text("serve's check: ")
        server.append(f"{_WORDS[r.server_ok]} {r.server}", _style(r.server_ok))
        if user.cell_len + 3 + server.cell_len <= width:
            out.append(user + Text(" · ") + server)
        else:
            out += wrap("  user's browser: ", f"{_WORDS[r.user_ok]} {r.user}", width, "", 4)
            out += wrap("  serve's check:  ", f"{_WORDS[r.server_ok]} {r.server}", width, "", 4)
    return out


def _style(ok: bool | None) -> str:
    return {True: "green", False: "red", None: "dim"}[ok]


def _nat(judgement: Judgement) -> str:
    word = {True: "yes", False: "no", None: "unknown"}[judgement.symmetric]
    return f"{word} ({judgement.nat})"


def render(lines: list[Text], console: Console) -> None:
    print_lines(console, lines)


def render_text(lines: list[Text]) -> str:
    return plain_text(lambda console: print_lines(console, lines))
