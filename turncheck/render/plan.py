"""--dry-run: the plan as a table or JSON, secrets masked, nothing sent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from turncheck.plan import Target
from turncheck.render import Column, fit, plain_text, print_lines, table_lines, wrap


def _dns(target: Target, dns_server: tuple[str, int] | None) -> str:
    if target.url.host_is_ip:
        return "none (IP literal)"
    where = f"via {dns_server[0]}:{dns_server[1]}" if dns_server else "via the system resolver"
    if target.srv_name:
        return f"SRV {target.srv_name}, only the servers it names ({where})"
    name = target.url.host + ("." if target.absolute and not target.url.host.endswith(".") else "")
    return f"A/AAAA {name} ({where})"


def _credentials(target: Target) -> str:
    creds = target.entry.credentials
    if creds is None:
        return "none"
    return f"{creds.masked} from {target.entry.credential_source}"


def plan_json(
    targets: list[Target], dns_server: tuple[str, int] | None, advice: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "advice": list(advice),
        "schema": 1,
        "plan": [
            {
                "url": str(t.url),
                "transport": t.transport.value,
                "port": t.port,
                "checks": list(t.kinds),
                "role": t.role,
                "dns": _dns(t, dns_server),
                "credentials": _credentials(t),
            }
            for t in targets
        ],
    }


COLUMNS = (
    Column("url", "URL", 9),
    Column("transport", "transport", 9),
    Column("port", "port", 8),
    Column("checks", "checks", 7),
    Column("role", "role", 8),
    Column("dns", "DNS", 4),
    Column("credentials", "credentials", 5),
)


def lines(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    width: int,
    advice: tuple[str, ...] = (),
) -> list[Text]:
    rows = [
        {
            "url": Text(str(t.url)),
            "transport": Text(t.transport.value),
            "port": Text(str(t.port)),
            "checks": Text(" + ".join("Binding" if k == "stun" else "Allocate" for k in t.kinds)),
            "role": Text(t.role),
            "dns": Text(_dns(t, dns_server)),
            "credentials": Text(_credentials(t)),
        }
        for t in targets
    ]
    out = table_lines(fit(COLUMNS, rows, width), rows)
    out += wrap("", f"dry run: {len(targets)} target(s), nothing sent", width, "bold")
    for line in advice:
        out += wrap("advice: ", line, width, "cyan")
    return out


def render(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    console: Console,
    advice: tuple[str, ...] = (),
) -> None:
    print_lines(console, lines(targets, dns_server, console.width, advice))


def render_text(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    advice: tuple[str, ...] = (),
    width: int = 200,
) -> str:
    return plain_text(lambda console: render(targets, dns_server, console, advice), width)
