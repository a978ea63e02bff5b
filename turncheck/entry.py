"""The console entry point. Importing it installs turncheck's stop-signal handlers
(signals.py), so SIGINT, SIGTERM and SIGHUP are one line and 128 + the number from here
on; then run() imports the CLI and runs it.

This module and signals.py import nothing the interpreter has not already loaded but
`signal`: the moment spent importing them is the only start-up turncheck cannot guard
(SECURITY.md)."""

from __future__ import annotations

from turncheck import signals

signals.install()


def run() -> int:
    from turncheck.cli import main

    code = main()
    signals.settle()  # the exit code is decided: interpreter shutdown ignores stop signals
    return code
