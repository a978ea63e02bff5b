"""Renderers: a Report (or a plan) in, text out. The format is a choice at the edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def plain_text(draw: Callable[[Console], None], width: int = 200) -> str:
    """What draw() prints, as plain text without colour (for --output FILE)."""
    import io

    from rich.console import Console

    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    draw(console)
    return console.export_text()
