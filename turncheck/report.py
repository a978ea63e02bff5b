"""The run's aggregate, Report, and its JSON form (the schema lives here).

JSON schema 1 (docs/probe.md "JSON output"):

    {"schema": 1, "ok": bool, "verdict": str,
     "checks": [{"url", "server", "transport", "kind", "ok", "rtt_ms",
                 "candidates": [{"type", "address", "port", "protocol", ...}],
                 "error": null | {"code", "reason", "hint"}, "via", "details"}],
     "nat": {"symmetric": bool | null, "basis": str}}

Credentials never enter these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turncheck.browser import BrowserView, relay_variant
from turncheck.require import Requirement
from turncheck.results import CheckResult, NatVerdict

SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[CheckResult, ...]
    nat: NatVerdict
    verdict: str
    notes: tuple[str, ...] = ()
    relay_only: bool = False  # iceTransportPolicy "relay": only relay checks count
    advice: tuple[str, ...] = ()  # about the configuration itself (config.advice)
    requirements: tuple[Requirement, ...] = ()  # --require/--max-rtt/--max-loss results
    browser: BrowserView | None = None  # Chromium's (the JSON's "browser", kept as it was)
    every_check: bool = False  # --transport: the user chose the checks; all must pass
    firefox: BrowserView | None = None
    engines: tuple[str, ...] = ("chromium", "firefox")  # --browser: whose calls must work

    @property
    def views(self) -> dict[str, BrowserView]:
        """The browser models' answers for the engines asked about (--browser)."""
        every = {"chromium": self.browser, "firefox": self.firefox}
        return {e: v for e in self.engines if (v := every.get(e)) is not None}

    @property
    def ok(self) -> bool:
        """The exit rule (docs/probe.md "Exit codes"): requirements when given; with --transport
        every check; else the browser's answer (would a call with this configuration work?),
        and the checks the user asked for beyond it (--relay-family, --tcp-relay) of the
        configuration's own URLs."""
        if self.requirements:
            return all(r.ok for r in self.requirements)
        if self.every_check or not self.views:
            return bool(self.checks) and all(c.ok for c in self.checks)
        asked = [c for c in self.checks if not c.extra and relay_variant(c) is not None]
        return all(calls_work(view) for view in self.views.values()) and all(c.ok for c in asked)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
            "nat": self.nat.to_json(),
            "notes": list(self.notes),
            "advice": list(self.advice),
            "requirements": [r.to_json() for r in self.requirements],
            "relay_only": self.relay_only,
            "browser": None if self.browser is None else self.browser.to_json(),
            "browsers": {engine: view.to_json() for engine, view in self.views.items()},
        }


def calls_work(view: BrowserView) -> bool:
    """A browser gets what a call needs: a relay candidate that carries media (when the
    relay check ran) for a configuration with TURN or a relay policy; else a srflx."""
    if not view.ok or view.rejected is not None:
        return False
    return view.relays_media is not False
