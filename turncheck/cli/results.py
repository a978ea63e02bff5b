"""turncheck results: what the test pages' users measured (see turncheck/serve/testpage.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import ExitStatus, Output, out_console, output_format_of, output_of
from turncheck.errors import InputError

if TYPE_CHECKING:
    from turncheck.serve.store import Store

FORMATS = ("table", "json")


@app.command()
def results(
    reference: Annotated[
        str | None,
        typer.Argument(help="A result's reference (K7F-29Q); none: list recent results."),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="serve's YAML config: its results path.", metavar="FILE"
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="The results file itself (SQLite).", metavar="FILE"),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--test", help="Only this test page's results.", metavar="NAME")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="How many results to list.", metavar="N")
    ] = 20,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
) -> None:
    """Read the test pages' results: list them, or one by its reference, with the verdict."""
    from turncheck.serve.store import Store, normal_id

    if (config is None) == (db is None):
        raise InputError("give --config FILE (serve's config) or --db FILE (the results file)")
    if not 1 <= limit <= 10000:
        raise InputError(f"--limit {limit}: give 1 to 10000")
    path = db
    if config is not None:
        from turncheck.serve.config import load_config

        loaded = load_config(config)
        if loaded.results is None:
            raise InputError(f"{config}: no 'results' section: this serve keeps no test results")
        path = loaded.results.path
    assert path is not None
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), False, False)
    store = Store(path, read_only=True)
    width = out_console().width if out.to_terminal_table else 80
    try:
        if reference is None:
            _list(store, out, limit, profile, width)
            raise typer.Exit(ExitStatus.OK)
        rid = normal_id(reference)
        if rid is None:
            raise InputError(f"'{reference}' is not a reference (they look like K7F-29Q)")
        record = store.get(rid)
    finally:
        store.close()
    if record is None:
        raise InputError(f"no result {rid} in {path} (results are kept for a while only)")
    _one(record, out, width)
    ok = bool(record["judgement"]["ok"])
    raise typer.Exit(ExitStatus.OK if ok else ExitStatus.CHECK_FAILED)


def _list(store: Store, out: Output, limit: int, profile: str | None, width: int) -> None:
    from turncheck.render.json import dumps
    from turncheck.render.results import list_lines, render, render_text

    listed = store.recent(limit, profile)
    lines = list_lines(listed, width)
    out.deliver(
        f"{len(listed)} results",
        lambda: (
            dumps({"schema": 1, "results": [r.to_json() for r in listed]})
            if out.fmt == "json"
            else render_text(list_lines(listed, 200))
        ),
        lambda console: render(lines, console),
    )


def _one(record: dict[str, Any], out: Output, width: int) -> None:
    from turncheck.render.json import dumps
    from turncheck.render.results import render, render_text, result_lines
    from turncheck.usertest import Judgement

    judgement = Judgement.from_json(record["judgement"])
    document = {"schema": 1, **record, "summary": judgement.summary(str(record["id"]))}
    out.deliver(
        judgement.verdict,
        lambda: dumps(document) if out.fmt == "json" else render_text(result_lines(record, 80)),
        lambda console: render(result_lines(record, width), console),
    )
