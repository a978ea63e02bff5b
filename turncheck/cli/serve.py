"""turncheck serve: the Prometheus exporter (see turncheck/serve)."""

from __future__ import annotations

from typing import Annotated

import typer

from turncheck.cli import app
from turncheck.errors import InputError


@app.command()
def serve(
    config: Annotated[
        str,
        typer.Option(
            "--config", "-c", help="The YAML config (modules, test pages).", metavar="FILE"
        ),
    ],
    listen: Annotated[
        str,
        typer.Option("--listen", help="Address to serve HTTP on.", metavar="HOST:PORT"),
    ] = "127.0.0.1:9731",
    drain: Annotated[
        float,
        typer.Option(
            "--drain", help="Seconds shutdown lets probes in flight finish.", metavar="SECONDS"
        ),
    ] = 10.0,
    admin_listen: Annotated[
        str | None,
        typer.Option(
            "--admin-listen",
            help="A second address where the status page lists test results (/results).",
            metavar="HOST:PORT",
        ),
    ] = None,
    check_config: Annotated[
        bool, typer.Option("--check-config", help="Validate the config and exit.")
    ] = False,
) -> None:
    """Prometheus exporter (GET /probe?module=NAME&target=ICE-URL) and test pages (/test/NAME)."""
    from turncheck import signals
    from turncheck.serve.config import load_config

    loaded = load_config(config)
    host, port = _listen(listen)
    admin = _listen(admin_listen) if admin_listen is not None else None
    if admin is not None and admin[1] == port:
        raise InputError(f"--admin-listen {admin_listen}: use another port than --listen")
    if check_config:
        print(f"{config}: {len(loaded.modules)} modules: {', '.join(sorted(loaded.modules))}")
        if loaded.tests:
            print(f"{config}: {len(loaded.tests)} test pages: {', '.join(sorted(loaded.tests))}")
        raise typer.Exit(0)
    from turncheck.serve.app import serve as run_server

    try:
        signals.run(run_server(loaded, host, port, drain, admin))
    except OSError as exc:
        raise InputError(f"--listen {listen}: cannot listen there ({exc.strerror})") from None


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {text}: give HOST:PORT")
    return host, int(port)
