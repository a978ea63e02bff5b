"""The console entry point: import the CLI under a guard, so Ctrl-C during start-up (the
imports take most of it) ends with one line and exit 130, never a traceback.

This module imports nothing beyond what the interpreter has already loaded: the
moment spent importing it is the only start-up it cannot guard."""

from __future__ import annotations

import sys

INTERRUPTED = 130


def run() -> int:
    try:
        from turncheck.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("turncheck: error: interrupted\n")
        return _leave_interrupted()
    code = main()
    import signal

    # The run is over (output written, allocations deleted): a Ctrl-C during interpreter
    # teardown must not turn a finished run into a signal death.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code in (INTERRUPTED, 128 + signal.SIGTERM, 128 + signal.SIGHUP):
        return _leave_interrupted(code)
    return code


def _leave_interrupted(code: int = INTERRUPTED) -> int:
    """Exit 130 after an interrupt we handled (never returns). CPython remembers a
    KeyboardInterrupt that passed through exec()'d code (dataclasses build their methods
    that way while modules import) and re-raises SIGINT at exit: a handled Ctrl-C would
    end as a signal death."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to save
            continue
    os._exit(code)
