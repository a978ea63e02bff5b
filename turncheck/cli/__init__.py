"""typer commands: parse options, build the plan, run, pick a renderer, exit code.

No protocol logic lives here. One module per command (probe, nat, load, creds); the
options they share are declared once in options.py. Exit codes: 0 calls work / every
check or requirement passed, 1 not, 2 bad input (one line on stderr), 3 an internal error
(a bug), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors click privately; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

from turncheck import __version__, signals
from turncheck.cli.common import ExitStatus
from turncheck.errors import InputError

__all__ = ["ExitStatus", "app", "main"]

app = typer.Typer(
    name="turncheck",
    help="TURN/STUN connectivity tester: what a browser gets from your ICE servers, and why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"turncheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """TURN/STUN connectivity tester."""


# The commands register themselves on `app`.
from turncheck.cli import audit as _audit  # noqa: E402,F401
from turncheck.cli import creds as _creds  # noqa: E402,F401
from turncheck.cli import diagnose as _diagnose  # noqa: E402,F401
from turncheck.cli import load as _load  # noqa: E402,F401
from turncheck.cli import nat as _nat  # noqa: E402,F401
from turncheck.cli import probe as _probe  # noqa: E402,F401
from turncheck.cli import results as _results  # noqa: E402,F401
from turncheck.cli import serve as _serve  # noqa: E402,F401


def _interrupted() -> int:
    """The one line and exit code of a run a stop signal ended (signals.py); Ctrl-C when
    the interrupt came as KeyboardInterrupt (main() called in a process of someone else's)."""
    signum = signals.first() or signal.SIGINT
    _error_line(signals.describe(signum))
    return 128 + signum


def _wants_nagios(args: list[str]) -> bool:
    joined = " ".join(args)
    return "--format nagios" in joined or "--format=nagios" in joined


def _error_line(message: str) -> None:
    sys.stderr.write(f"turncheck: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: never a traceback, exit codes per ExitStatus."""
    from turncheck.cli.common import _pending

    args = sys.argv[1:] if argv is None else argv
    signals.reset()
    _pending.clear()
    nagios = _wants_nagios(args)
    try:
        result = app(args=args, prog_name="turncheck", standalone_mode=False)
    except InputError as exc:
        if nagios:  # the Nagios plugin rules: bad input is UNKNOWN (3), said on stdout
            from turncheck.render.nagios import unknown

            sys.stdout.write(unknown(str(exc)))
            return 3
        _error_line(str(exc))
        return ExitStatus.INPUT_ERROR
    except click_exc.NoArgsIsHelpError:
        # typer's no_args_is_help has printed the help already, as git does; exit 2.
        return ExitStatus.INPUT_ERROR
    except click_exc.UsageError as exc:
        where = f"{exc.ctx.command_path}" if exc.ctx else "turncheck"
        # click's "(Possible options: ...)" may offer hidden, deprecated spellings: drop it.
        message = re.sub(r"\s*\(Possible options?: [^)]*\)", "", exc.format_message())
        if nagios:
            from turncheck.render.nagios import unknown

            sys.stdout.write(unknown(message))
            return 3
        _error_line(f"{message[:1].lower()}{message[1:]} (see {where} --help)")
        return ExitStatus.INPUT_ERROR
    except click_exc.ClickException as exc:
        _error_line(exc.format_message())
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort, signals.Stopped):
        return _interrupted()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.CHECK_FAILED
    except Exception as exc:
        _error_line(f"internal error ({type(exc).__name__}: {exc}); please report this bug")
        return ExitStatus.INTERNAL_ERROR
    code = int(result) if isinstance(result, int) else ExitStatus.OK
    if code == ExitStatus.INTERRUPTED or signals.first() is not None:
        return _interrupted()  # a partial result was rendered; the exit code says it was cut
    return code
