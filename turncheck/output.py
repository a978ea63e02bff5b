"""Writing results to files: atomically, so a scraper or CI step never reads half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from turncheck.errors import InputError


def write_atomically(path: str, text: str) -> None:
    """Write text to path via a temporary file in the same directory and rename(2)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"--output {path}: cannot write it ({exc.strerror})") from None
