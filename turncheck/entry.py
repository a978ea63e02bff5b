"""The console entry point: import the CLI under a guard, so Ctrl-C during start-up (the
imports take most of it) ends with one line and exit 130, never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

INTERRUPTED = 130


def run() -> int:
    try:
        from turncheck.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("turncheck: error: interrupted\n")
        _leave_interrupted()
    code = main()
    # The run is over (output written, allocations deleted): a Ctrl-C during interpreter
    # teardown must not turn a finished run into a signal death.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == INTERRUPTED:
        _leave_interrupted()
    return code


def _leave_interrupted() -> NoReturn:
    """Exit 130 after an interrupt we handled. CPython remembers a KeyboardInterrupt that
    passed through exec()'d code (dataclasses build their methods that way while modules
    import) and re-raises SIGINT at exit: a handled Ctrl-C would end as a signal death."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(INTERRUPTED)
