"""The console entry point: import the CLI under a guard, so Ctrl-C during start-up (the
imports take most of it) ends with one line and exit 130, never a traceback."""

from __future__ import annotations

import signal
import sys


def run() -> int:
    try:
        from turncheck.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("turncheck: error: interrupted\n")
        return 130
    code = main()
    # The run is over (output written, allocations deleted): a Ctrl-C during interpreter
    # teardown must not turn a finished run into a signal death.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code
