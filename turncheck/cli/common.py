"""What the commands share: credentials, output delivery, the run's settings, progress."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from turncheck.config import Credentials, read_secret, rest_credentials
from turncheck.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from turncheck.checks import CheckSettings
    from turncheck.icefetch import FetchSpec
    from turncheck.relay import RelaySettings
    from turncheck.resolve import Resolver
    from turncheck.transport import Tracer
    from turncheck.urls import Transport

T = TypeVar("T")


class ExitStatus(IntEnum):
    OK = 0
    CHECK_FAILED = 1
    INPUT_ERROR = 2
    INTERNAL_ERROR = 3
    INTERRUPTED = 130


def warn(message: str) -> None:
    sys.stderr.write(f"turncheck: warning: {message}\n")


def deprecated(old: str, new: str) -> None:
    """An old spelling still works; say once what replaces it."""
    warn(f"{old} is deprecated and will be removed: use {new}")


def out_console(width: int | None = None) -> Console:
    """stdout console: rich on a terminal; elsewhere plain text, COLUMNS wide (default 200)."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False, width=width)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        plain = int(columns) if columns.isdigit() and int(columns) >= 20 else 200
        console = Console(highlight=False, soft_wrap=False, width=width or plain, color_system=None)
    return console


# -- credentials ----------------------------------------------------------------------------


def credentials(
    ctx: typer.Context, username: str | None, credential: str | None, *, needed: bool
) -> tuple[Credentials | None, str]:
    """-u/-p (or their environment variables) → Credentials and where they came from.

    Half a pair from the environment is ignored when no TURN URL needs credentials: a
    TURNCHECK_CREDENTIAL left in a CI environment must not break a STUN probe.
    """
    from_env = {
        name: getattr(ctx.get_parameter_source(name), "name", "") == "ENVIRONMENT"
        for name in ("username", "credential")
    }
    if username is None and credential is None:
        return None, "none"
    if (username is None or credential is None) and not needed:
        given = [n for n, v in (("username", username), ("credential", credential)) if v]
        if all(from_env[n] for n in given):
            return None, "none"
    if not username:
        raise InputError("--credential given without --username (or TURNCHECK_USERNAME)")
    if credential is None:
        raise InputError("--username given without --credential (or TURNCHECK_CREDENTIAL)")
    source = (
        "TURNCHECK_USERNAME/TURNCHECK_CREDENTIAL"
        if all(from_env.values())
        else "--username/--credential"
        if not any(from_env.values())
        else "command line and environment"
    )
    if not from_env["credential"]:
        _pending.append(
            "--credential on the command line is visible to other users (ps); "
            "prefer TURNCHECK_CREDENTIAL"
        )
    return Credentials(username, credential), source


# Warnings about a run that starts: said once the input is valid, not before an input error.
_pending: list[str] = []


def flush_warnings() -> None:
    while _pending:
        warn(_pending.pop(0))


def refuse_argv_secret(secret: str | None) -> None:
    """A secret on the command line is readable by every user (ps): refuse it, name the way."""
    if secret is not None:
        raise InputError(
            "--secret is not accepted: a secret on the command line is visible to other users "
            "in the process list; use --secret-file PATH or the TURNCHECK_SECRET variable"
        )


def rest_user(rest_user_: str | None, old_user: str | None) -> str | None:
    if old_user is not None:
        deprecated("--user", "--rest-user (the user part of minted REST usernames)")
        if rest_user_ is not None and rest_user_ != old_user:
            raise InputError("--user and --rest-user disagree: give --rest-user only")
        return old_user
    return rest_user_


def minted_credentials(secret_file: str | None, user: str | None, ttl: int) -> Credentials | None:
    """TURN REST credentials from --secret-file or TURNCHECK_SECRET; None without a secret."""
    secret = read_secret(secret_file, os.environ.get("TURNCHECK_SECRET"))
    if secret is None:
        if user is not None:
            raise InputError(
                "--rest-user needs --secret-file or TURNCHECK_SECRET (REST credentials)"
            )
        return None
    if not 1 <= ttl <= 10 * 365 * 86400:
        raise InputError(f"--ttl {ttl}: give a lifetime in seconds, at least 1")
    return rest_credentials(secret, user, ttl)


REST_SOURCE = "TURN REST API credentials from the shared secret"


def pick_credentials(
    given: tuple[Credentials | None, str], minted: Credentials | None
) -> tuple[Credentials | None, str]:
    if minted is None:
        return given
    if given[0] is not None:
        raise InputError("--secret-file/TURNCHECK_SECRET and -u/-p exclude each other: pick one")
    return minted, REST_SOURCE


# -- checking options -----------------------------------------------------------------------


def check_timeout(timeout: float, option: str = "--timeout", limit: float = 600) -> None:
    if not 0 < timeout <= limit:
        raise InputError(f"{option} {timeout:g}: give seconds above 0 and at most {limit:g}")


def families(ipv4: bool, ipv6: bool) -> tuple[int, ...] | None:
    if ipv4 and ipv6:
        raise InputError("-4 and -6 exclude each other")
    return (socket.AF_INET,) if ipv4 else (socket.AF_INET6,) if ipv6 else None


def check_ca_file(ca_file: Path | None) -> None:
    if ca_file is not None and not ca_file.is_file():
        raise InputError(f"--ca-file '{ca_file}': no such file")


def output_format_of(name: str | None, json_out: bool, choices: tuple[str, ...]) -> str:
    """--format, with --json as its short form; InputError on a clash or an unknown name."""
    if name is None:
        return "json" if json_out else "table"
    fmt = name.strip().lower()
    if fmt not in choices:
        raise InputError(f"--format {name}: choose from {', '.join(choices)}")
    if json_out and fmt != "json":
        raise InputError(f"--json and --format {fmt} exclude each other")
    return fmt


def check_quiet_verbose(quiet: bool, verbose: bool) -> None:
    if quiet and verbose:
        raise InputError("-q and -v exclude each other")


def hint_json_as_url(urls: list[str]) -> None:
    """JSON pasted where a URL belongs: say how to pass it."""
    for text in urls:
        if text.lstrip().startswith(("{", "[")):
            raise InputError(
                f"'{text[:40]}…' looks like iceServers JSON, not an ICE server URL: pass it "
                "with --ice-servers - (stdin) or --ice-servers FILE"
            )


# -- output ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """Where and how a command's answer goes (docs/probe.md "Use in CI")."""

    fmt: str  # table | json | junit | prometheus | nagios
    path: str | None  # None: stdout ("-" is stdout too)
    quiet: bool = False
    verbose: bool = False

    @property
    def to_terminal_table(self) -> bool:
        return self.fmt == "table" and self.path is None

    def deliver(
        self, verdict: str, text: Callable[[], str], draw: Callable[[Console], None] | None
    ) -> None:
        """The answer: -q's verdict, a drawn table, or a document; with --output FILE the
        file gets it and stderr the verdict line."""
        if self.path is None:
            if self.fmt == "table" and self.quiet:
                sys.stdout.write(f"verdict: {verdict}\n")
            elif self.fmt == "table" and draw is not None:
                draw(out_console())
            else:
                emit(text(), None)
            return
        emit(text(), self.path)
        sys.stderr.write(f"verdict: {verdict}\n")


def output_of(output: str | None, fmt: str, quiet: bool, verbose: bool) -> Output:
    check_quiet_verbose(quiet, verbose)
    return Output(fmt, None if output in (None, "-") else output, quiet, verbose)


def emit(text: str, output: str | None) -> None:
    """stdout, or FILE written atomically (a temporary file renamed over it)."""
    body = text if text.endswith("\n") else text + "\n"
    if output is None:
        sys.stdout.write(body)
        return
    from turncheck.output import write_atomically

    write_atomically(output, body)


def run_with_progress(coro: Callable[[], Coroutine[Any, Any, T]], message: str, spinner: bool) -> T:
    """signals.run with a spinner on stderr, only when both ends are a terminal."""
    from turncheck import signals

    if not (spinner and sys.stderr.isatty() and sys.stdout.isatty()):
        return signals.run(coro())  # no rich import on this path: ~30 ms saved
    from rich.console import Console

    with Console(stderr=True).status(message, spinner="dots"):
        return signals.run(coro())


# -- a run's settings -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSetup:
    """What every round of a run shares: check settings and the resolver."""

    settings: CheckSettings
    resolver: Resolver


def prepare(
    transports: set[Transport],
    dns_server: tuple[str, int] | None,
    fams: tuple[int, ...] | None,
    timeout: float,
    ca_file: Path | None,
    insecure: bool,
    relay: RelaySettings | None,
    verbose: bool,
) -> RunSetup:
    """The settings of a run from the command line's options (api.settings_for)."""
    from turncheck.api import ProbeOptions, settings_for

    flush_warnings()
    options = ProbeOptions(
        entries=(),
        relay=relay,
        timeout=timeout,
        dns_server=dns_server,
        families=fams,
        ca_file=str(ca_file) if ca_file else None,
        insecure=insecure,
        tracer=stderr_tracer() if verbose else None,
    )
    settings, resolver = settings_for(options, transports)
    return RunSetup(settings, resolver)


def stderr_tracer() -> Tracer:
    """-v: one line per STUN/TURN message on stderr."""
    from turncheck.trace import Tracer as TraceWriter

    def to_stderr(line: str) -> None:
        sys.stderr.write(line + "\n")

    return TraceWriter(to_stderr)


def fetch_spec(
    url: str,
    method: str,
    body: str | None,
    bearer_file: str | None,
    basic_file: str | None,
    headers: list[str] | None,
    ca_file: Path | None,
    timeout: float,
) -> FetchSpec:
    """--ice-servers-url and its --fetch-* options → a FetchSpec (secrets by reference)."""
    from turncheck.icefetch import FetchSpec

    verb = method.strip().upper()
    if verb not in ("GET", "POST", "PUT"):
        raise InputError(f"--fetch-method {method}: choose GET, POST or PUT")
    if body is not None and body.startswith("@"):
        try:
            body = Path(body[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--fetch-body {body}: cannot read it ({exc.strerror})") from None
    pairs: list[tuple[str, str]] = []
    for header in headers or ():
        name, eq, env = header.partition("=")
        if not eq or not name.strip() or not env.strip():
            raise InputError(f"--fetch-header {header}: give NAME=ENVVAR")
        pairs.append((name.strip(), env.strip()))
    return FetchSpec(
        url=url,
        method=verb,
        body=body,
        bearer_file=bearer_file,
        bearer_env="TURNCHECK_FETCH_BEARER" if os.environ.get("TURNCHECK_FETCH_BEARER") else None,
        basic_file=basic_file,
        basic_env="TURNCHECK_FETCH_BASIC" if os.environ.get("TURNCHECK_FETCH_BASIC") else None,
        headers_env=tuple(pairs),
        ca_file=str(ca_file) if ca_file else None,
        timeout=min(timeout * 2, 30.0),
    )
