"""turncheck creds: mint TURN REST API credentials as an iceServers snippet."""

from __future__ import annotations

from typing import Annotated

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import minted_credentials, refuse_argv_secret, rest_user
from turncheck.errors import InputError


@app.command()
def creds(
    urls: Annotated[
        list[str], typer.Argument(help="turn:/turns:/stun: URLs for the iceServers entry.")
    ],
    secret_file: o.SecretFileOpt = None,
    rest_user_: o.RestUserOpt = None,
    ttl: o.TtlOpt = 600,
    old_user: o.OldUserOpt = None,
    secret: o.SecretOpt = None,
) -> None:
    """Mint time-limited TURN REST API credentials: an iceServers JSON snippet on stdout."""
    from turncheck.browser import parse_ice_url
    from turncheck.render.json import dumps

    refuse_argv_secret(secret)
    for text in urls:
        parse_ice_url(text)
    minted = minted_credentials(secret_file, rest_user(rest_user_, old_user), ttl)
    if minted is None:
        raise InputError("turncheck creds needs --secret-file PATH or TURNCHECK_SECRET")
    entry = {"urls": list(urls), "username": minted.username, "credential": minted.password}
    print(dumps({"iceServers": [entry]}))
