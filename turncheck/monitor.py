"""--repeat N --interval S: rounds of the same probe, then statistics per check.

Rounds start every S seconds (start to start; a slow round is followed at once).
Ctrl-C ends the run early: the round in flight is cancelled (its allocations are
deleted by their own cleanup) and the summary covers the rounds that finished.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from turncheck.report import Report
from turncheck.results import CheckResult

Key = tuple[str, str, str, str]  # url, transport, kind, server


def _key(check: CheckResult) -> Key:
    return (check.url, check.transport, check.kind, check.server or "")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a value that was measured)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class CheckStats:
    key: Key
    rounds: int = 0
    passed: int = 0
    rtts: list[float] = field(default_factory=list)  # ms
    relay_sent: int = 0
    relay_received: int = 0

    def add(self, check: CheckResult) -> None:
        self.rounds += 1
        self.passed += check.ok
        if check.ok and check.rtt_ms is not None:
            self.rtts.append(check.rtt_ms)
        stats = check.relay.stats if check.relay is not None else None
        if stats is not None:
            self.relay_sent += stats.sent
            self.relay_received += stats.received
        elif check.relay is not None:
            # A failed relay check lost everything it would have sent.
            self.relay_sent += 1

    @property
    def success_rate(self) -> float:
        return self.passed / self.rounds if self.rounds else 0.0

    @property
    def relay_loss_pct(self) -> float | None:
        if not self.relay_sent:
            return None
        return 100 * (self.relay_sent - self.relay_received) / self.relay_sent

    def rtt_summary(self) -> dict[str, float] | None:
        if not self.rtts:
            return None
        return {
            "min": round(min(self.rtts), 3),
            "avg": round(sum(self.rtts) / len(self.rtts), 3),
            "p95": round(percentile(self.rtts, 95), 3),
            "max": round(max(self.rtts), 3),
        }

    def to_json(self) -> dict[str, Any]:
        url, transport, kind, server = self.key
        loss = self.relay_loss_pct
        return {
            "url": url,
            "transport": transport,
            "kind": kind,
            "server": server or None,
            "rounds": self.rounds,
            "passed": self.passed,
            "success_rate": round(self.success_rate, 4),
            "rtt_ms": self.rtt_summary(),
            "relay_loss_pct": None if loss is None else round(loss, 2),
        }


@dataclass(frozen=True, slots=True)
class Round:
    number: int
    started: float  # unix time
    report: Report


@dataclass(frozen=True, slots=True)
class Summary:
    planned: int
    rounds: tuple[Round, ...]
    interrupted: bool

    @property
    def ok(self) -> bool:
        return bool(self.rounds) and not self.interrupted and all(r.report.ok for r in self.rounds)

    def stats(self) -> list[CheckStats]:
        table: dict[Key, CheckStats] = {}
        for rnd in self.rounds:
            for check in rnd.report.checks:
                table.setdefault(_key(check), CheckStats(_key(check))).add(check)
        return list(table.values())

    @property
    def verdict(self) -> str:
        good = sum(r.report.ok for r in self.rounds)
        text = f"{good} of {len(self.rounds)} rounds passed"
        if self.interrupted:
            text += f" (interrupted after {len(self.rounds)} of {self.planned})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "ok": self.ok,
            "verdict": self.verdict,
            "interrupted": self.interrupted,
            "rounds": [
                {
                    "round": r.number,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.started)),
                    **r.report.to_json(),
                }
                for r in self.rounds
            ],
            "summary": {
                "rounds": len(self.rounds),
                "passed": sum(r.report.ok for r in self.rounds),
                "checks": [s.to_json() for s in self.stats()],
            },
        }


async def run_rounds(
    count: int,
    interval: float,
    one_round: Callable[[], Coroutine[Any, Any, Report]],
    on_round: Callable[[Round], None] | None = None,
) -> Summary:
    """count rounds, interval seconds apart; Ctrl-C (cancellation) ends with what finished."""
    loop = asyncio.get_running_loop()
    rounds: list[Round] = []
    start = loop.time()
    try:
        for number in range(1, count + 1):
            # Rounds start on a fixed schedule: pacing, not waiting for an outcome.
            delay = start + (number - 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.time()
            report = await one_round()
            rnd = Round(number, started, report)
            rounds.append(rnd)
            if on_round is not None:
                on_round(rnd)
    except asyncio.CancelledError:
        return Summary(count, tuple(rounds), interrupted=True)
    return Summary(count, tuple(rounds), interrupted=False)
