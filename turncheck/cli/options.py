"""The options every command shares, declared once, each in its help panel.

The same name, default and meaning on every command that takes it (docs/probe.md,
"Options every command shares").
Old spellings that CI scripts may still use stay as hidden aliases with a deprecation
note (common.deprecated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SERVERS = "Servers"
CREDENTIALS = "Credentials"
NETWORK = "Network and DNS"
TLS = "TLS"
OUTPUT = "Output"
RELAY = "Relay check"
GATES = "CI gates"
MONITORING = "Monitoring"
LOAD = "Load"
NAT = "NAT tests"

UrlsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="ICE server URLs (stun:, stuns:, turn:, turns:).",
        show_default=False,
        metavar="[URL]...",
    ),
]
IceServersOpt = Annotated[
    str | None,
    typer.Option(
        "--ice-servers",
        help="iceServers JSON (or a JavaScript object literal) from FILE, or - for stdin: "
        '{"iceServers": [...]} or a bare list.',
        metavar="FILE|-",
        rich_help_panel=SERVERS,
    ),
]
UsernameOpt = Annotated[
    str | None,
    typer.Option(
        "--username",
        "-u",
        metavar="NAME",
        envvar="TURNCHECK_USERNAME",
        help="TURN username (or TURNCHECK_USERNAME).",
        rich_help_panel=CREDENTIALS,
    ),
]
CredentialOpt = Annotated[
    str | None,
    typer.Option(
        "--credential",
        "-p",
        metavar="PASSWORD",
        envvar="TURNCHECK_CREDENTIAL",
        help="TURN password (prefer TURNCHECK_CREDENTIAL: the command line is public).",
        show_default=False,
        show_envvar=False,
        rich_help_panel=CREDENTIALS,
    ),
]
SecretFileOpt = Annotated[
    str | None,
    typer.Option(
        "--secret-file",
        help="coturn static-auth-secret file (or TURNCHECK_SECRET): mint TURN REST credentials.",
        metavar="FILE",
        rich_help_panel=CREDENTIALS,
    ),
]
RestUserOpt = Annotated[
    str | None,
    typer.Option(
        "--rest-user",
        metavar="NAME",
        help="The user part of minted REST usernames (<expiry>:<rest-user>).",
        rich_help_panel=CREDENTIALS,
    ),
]
OldUserOpt = Annotated[str | None, typer.Option("--user", hidden=True)]
TtlOpt = Annotated[
    int,
    typer.Option(
        "--ttl",
        help="Lifetime in seconds of minted REST credentials.",
        metavar="SECONDS",
        rich_help_panel=CREDENTIALS,
    ),
]
SecretOpt = Annotated[str | None, typer.Option("--secret", hidden=True)]
TransportOpt = Annotated[
    str | None,
    typer.Option(
        "--transport",
        help="Comma list of udp,tcp,tls for URLs that do not name their transport (then every "
        "check gates the exit code).",
        metavar="udp,tcp,tls",
        rich_help_panel=SERVERS,
    ),
]
DnsServerOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-server",
        help="Send every DNS query to this server.",
        metavar="IP[:PORT]",
        rich_help_panel=NETWORK,
    ),
]
Ipv4Opt = Annotated[
    bool, typer.Option("-4", "--ipv4", help="IPv4 addresses only.", rich_help_panel=NETWORK)
]
Ipv6Opt = Annotated[
    bool, typer.Option("-6", "--ipv6", help="IPv6 addresses only.", rich_help_panel=NETWORK)
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        help="Seconds per check (UDP retransmits within it).",
        metavar="SECONDS",
        rich_help_panel=NETWORK,
    ),
]
TIMEOUT_DEFAULT = 5.0
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        help="Extra CA certificate(s) (PEM) for TLS.",
        metavar="FILE",
        rich_help_panel=TLS,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Do not verify TLS certificates (said in the output).",
        rich_help_panel=TLS,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="One JSON document (= --format json).", rich_help_panel=OUTPUT),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the output to FILE (atomically; - is stdout); the verdict line goes to stderr.",
        metavar="FILE|-",
        rich_help_panel=OUTPUT,
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        help="Only the verdict line (machine formats are never changed).",
        rich_help_panel=OUTPUT,
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "-v", "--verbose", help="Trace every STUN/TURN message (stderr).", rich_help_panel=OUTPUT
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the plan; send no packet and no DNS query.", rich_help_panel=OUTPUT
    ),
]


def format_opt(choices: tuple[str, ...]) -> object:
    """--format with its choices shown in the help: [table|json|...]."""
    return typer.Option(
        "--format",
        help="Output format.",
        metavar="[" + "|".join(choices) + "]",
        rich_help_panel=OUTPUT,
    )


FETCH = "Fetching iceServers"
IceServersUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--ice-servers-url",
        help="Fetch iceServers from the app's credentials endpoint (Twilio, Cloudflare, "
        "Metered, Xirsys, Matrix, TURN REST, an RTCConfiguration).",
        metavar="URL",
        rich_help_panel=FETCH,
    ),
]
FetchMethodOpt = Annotated[
    str,
    typer.Option(
        "--fetch-method",
        help="HTTP method (Cloudflare: POST, Xirsys: PUT).",
        metavar="[GET|POST|PUT]",
        rich_help_panel=FETCH,
    ),
]
FetchBodyOpt = Annotated[
    str | None,
    typer.Option(
        "--fetch-body",
        help="JSON body to send, or @FILE.",
        metavar="JSON|@FILE",
        rich_help_panel=FETCH,
    ),
]
FetchBearerOpt = Annotated[
    str | None,
    typer.Option(
        "--fetch-bearer-file",
        help="File holding a bearer token (or TURNCHECK_FETCH_BEARER).",
        metavar="FILE",
        rich_help_panel=FETCH,
    ),
]
FetchBasicOpt = Annotated[
    str | None,
    typer.Option(
        "--fetch-basic-file",
        help="File holding user:password (or TURNCHECK_FETCH_BASIC).",
        metavar="FILE",
        rich_help_panel=FETCH,
    ),
]
FetchHeaderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fetch-header",
        help="An extra header whose value is in an environment variable (repeatable).",
        metavar="NAME=ENVVAR",
        rich_help_panel=FETCH,
    ),
]

RelayFamilyOpt = Annotated[
    str | None,
    typer.Option(
        "--relay-family",
        help="Also allocate in this family, beside the browser's Allocate, and relay through "
        "it: ipv4, ipv6, or dual (both, RFC 8656).",
        metavar="[ipv4|ipv6|dual]",
        rich_help_panel=RELAY,
    ),
]
TcpRelayOpt = Annotated[
    bool,
    typer.Option(
        "--tcp-relay",
        help="Over TCP/TLS also relay TCP (RFC 6062) to --peer, a TCP echo server.",
        rich_help_panel=RELAY,
    ),
]
