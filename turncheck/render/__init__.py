"""Renderers: a Report (or a plan) in, text out. The format is a choice at the edge.

The layout for people follows three rules, at any terminal width:

- one line per row: cells are never wrapped, so an address, URL or number a person
  copies is never split; columns drop by priority instead, until the row fits;
- prose (verdicts, findings, advice) wraps at spaces only, never inside a word;
- colour repeats what the words say and is never the only signal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

GAP = 2


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its title, how to align it, and how much it matters (drop low first)."""

    key: str
    title: str
    priority: int  # higher: kept longer as the terminal narrows
    right: bool = False


Row = dict[str, Text]


def widths(columns: Sequence[Column], rows: Sequence[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for col in columns:
        cells = [r[col.key].cell_len for r in rows if col.key in r]
        out[col.key] = max([len(col.title), *cells])
    return out


def total(columns: Sequence[Column], rows: Sequence[Row]) -> int:
    w = widths(columns, rows)
    return sum(w[c.key] for c in columns) + GAP * max(0, len(columns) - 1)


def fit(columns: Sequence[Column], rows: Sequence[Row], width: int) -> list[Column]:
    """The columns that fit in `width`, dropping the lowest priority first (never the
    columns of the highest priority: a too narrow terminal then wraps, cells stay whole)."""
    kept = [c for c in columns if any(r.get(c.key, Text()).plain for r in rows) or c.priority >= 9]
    while total(kept, rows) > width:
        droppable = [c for c in kept if c.priority < 9]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda c: c.priority))
    return kept


def table_lines(columns: Sequence[Column], rows: Sequence[Row], header: bool = True) -> list[Text]:
    """The rows as lines of aligned cells (no cell is ever wrapped or cut)."""
    w = widths(columns, rows)
    out: list[Text] = []
    if header:
        head = Text(style="bold")
        for i, col in enumerate(columns):
            title = col.title.rjust(w[col.key]) if col.right else col.title.ljust(w[col.key])
            head.append(title if i == len(columns) - 1 else title + " " * GAP)
        head.rstrip()
        out.append(head)
    for row in rows:
        line = Text()
        for i, col in enumerate(columns):
            cell = row.get(col.key, Text())
            pad = " " * (w[col.key] - cell.cell_len)
            if col.right:
                line.append(pad)
                line.append_text(cell)
            else:
                line.append_text(cell)
                if i < len(columns) - 1:
                    line.append(pad)
            if i < len(columns) - 1:
                line.append(" " * GAP)
        line.rstrip()
        out.append(line)
    return out


def wrap(prefix: str, text: str, width: int, style: str = "", indent: int = 0) -> list[Text]:
    """Prose wrapped at spaces only: no word, address or number is ever split."""
    lines = textwrap.wrap(
        prefix + text,
        width=max(20, width),
        break_long_words=False,
        break_on_hyphens=False,
        subsequent_indent=" " * indent,
    )
    out: list[Text] = []
    for i, line in enumerate(lines):
        t = Text()
        if i == 0 and prefix and line.startswith(prefix):
            t.append(prefix, style="bold")
            t.append(line[len(prefix) :], style=style)
        else:
            t.append(line, style=style)
        out.append(t)
    return out


def print_lines(console: Console, lines: Sequence[Text]) -> None:
    """Print lines as they are: the console neither wraps nor cuts them."""
    for line in lines:
        console.print(line, soft_wrap=True, crop=False, overflow="ignore")


def plain_text(draw: Callable[[Console], None], width: int = 200) -> str:
    """What draw() prints, as plain text without colour (for --output FILE)."""
    import io

    from rich.console import Console

    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    draw(console)
    return console.export_text()
