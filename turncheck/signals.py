"""How turncheck stops: SIGINT (Ctrl-C), SIGTERM and SIGHUP end a run the same way at every
moment, from the first import to interpreter shutdown.

- Outside a run (start-up imports, argument parsing, rendering) nothing needs cleaning up:
  the handler writes one line and leaves at once with 128 + the signal's number. It never
  raises: an exception raised by a signal handler can land inside a weakref callback or a
  __del__, where CPython prints "Exception ignored … KeyboardInterrupt" and swallows it.
- During a run (`run()`), the handler cancels the run's task: every `async with` deletes
  its allocations, a partial summary is rendered, and the CLI exits 128 + the number.
  A second signal during that clean-up (bounded by the delete timeouts) says so; a third
  leaves at once, and what was not deleted yet expires on the server.
- An inherited SIG_IGN of SIGINT or SIGHUP is kept: that is how a shell's background job
  and nohup ask not to be stopped by the terminal. SIGTERM is always handled, whatever was
  inherited: it is how supervisors (systemd, Kubernetes, CI runners, `kill`) stop a process.
- Once the exit code is decided (`settle()`), all three are ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

TYPE_CHECKING = False  # typing itself costs 2 ms of unguarded start-up: not imported
if TYPE_CHECKING:  # imported at start-up before the handlers exist: nothing heavy here
    from collections.abc import Callable, Coroutine
    from typing import Any, TypeVar

    T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WORDS = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hung up (SIGHUP)",
}

_received: list[int] = []  # the signals of this run, first first
_cancel: Callable[[], None] | None = None  # cancels the running run's task
_kept_ignored: set[int] | None = None  # signals inherited as SIG_IGN that stay ignored


class Stopped(BaseException):
    """A run ended by a signal whose task did not return a partial result.

    A BaseException, like KeyboardInterrupt: no `except Exception` on the way up turns a
    stop into an error."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as the module docstring says (main thread only)."""
    global _kept_ignored
    if _kept_ignored is None:  # what the process inherited, read once before we change it
        _kept_ignored = {
            sig for sig in (signal.SIGINT, signal.SIGHUP) if signal.getsignal(sig) == signal.SIG_IGN
        }
    for sig in STOP_SIGNALS:
        if sig in _kept_ignored:
            continue
        try:
            signal.signal(sig, _handler)
        except (ValueError, OSError):  # not the main thread: an embedding caller's business
            return


def settle() -> None:
    """The exit code is decided: a late signal changes nothing (interpreter shutdown)."""
    for sig in STOP_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            return


def reset() -> None:
    """Forget the signals of a previous run (main() called again in one process)."""
    _received.clear()


def first() -> int | None:
    """The first stop signal received in this run, if any."""
    return _received[0] if _received else None


def describe(signum: int) -> str:
    """The words of the one line a stop prints: interrupted, terminated (SIGTERM), …"""
    return _WORDS.get(signal.Signals(signum), signal.Signals(signum).name)


def run(coro: Coroutine[Any, Any, T], loop_factory: Callable[[], Any] | None = None) -> T:
    """asyncio.run, where a stop signal cancels the task (allocations are deleted by its
    own clean-up). Returns what the task returned, partial results included; raises
    Stopped when the cancellation ended it."""
    import asyncio

    async def main() -> T:
        global _cancel
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None

        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        _cancel = cancel
        try:
            return await coro
        finally:
            _cancel = None

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except asyncio.CancelledError:
        signum = first()
        if signum is None:
            raise
        raise Stopped(signum) from None


def leave(signum: int) -> None:
    """One line on stderr, then exit 128 + signum at once (never returns)."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    _write(f"turncheck: error: {describe(signum)}\n")
    os._exit(128 + signum)


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    if _cancel is None:
        leave(signum)
    elif len(_received) == 1:
        _cancel()
    elif len(_received) == 2:
        _write(
            "turncheck: deleting allocations before leaving (a few seconds at most); "
            "signal again to leave now\n"
        )
    else:
        _write("turncheck: allocations not yet deleted expire on the server by themselves\n")
        leave(_received[0])


def _write(text: str) -> None:
    """Straight to file descriptor 2: sys.stderr may be in the middle of a write."""
    with contextlib.suppress(OSError):  # stderr closed: the exit code still tells
        os.write(2, text.encode())
