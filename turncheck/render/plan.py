"""--dry-run: the plan as a table or JSON, secrets masked, nothing sent."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from turncheck.plan import Target


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


def render(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    console: Console,
    advice: tuple[str, ...] = (),
) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=None)
    for name in ("URL", "transport", "port", "checks", "role", "DNS", "credentials"):
        table.add_column(name, overflow="fold")
    for t in targets:
        table.add_row(
            Text(str(t.url)),
            t.transport.value,
            str(t.port),
            " + ".join("Binding" if k == "stun" else "Allocate" for k in t.kinds),
            t.role,
            Text(_dns(t, dns_server)),
            Text(_credentials(t)),
        )
    console.print(table)
    console.print(Text(f"dry run: {len(targets)} target(s), nothing sent", style="bold"))
    for line in advice:
        console.print(Text(f"advice: {line}", style="cyan"))
