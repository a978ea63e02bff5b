"""Requirements that gate the exit code: --require, --max-rtt, --max-loss.

With requirements the run passes when every requirement holds, whatever else
failed (a CI gate asks "does TLS relay work?", not "did every probe pass?").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from turncheck.errors import InputError
from turncheck.results import CheckResult

KINDS = ("relay", "srflx", "udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class Requirement:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Requirements:
    """What the user asked for; evaluate() turns it into Requirement results."""

    kinds: tuple[str, ...] = ()
    max_rtt_ms: float | None = None
    max_loss_pct: float | None = None

    def __bool__(self) -> bool:
        return bool(self.kinds) or self.max_rtt_ms is not None or self.max_loss_pct is not None


def parse_requirements(
    kinds: Sequence[str], max_rtt: float | None, max_loss: float | None
) -> Requirements:
    out: list[str] = []
    for kind in kinds:
        for word in (w.strip().lower() for w in kind.split(",")):
            if word not in KINDS:
                raise InputError(f"--require {word}: choose from {', '.join(KINDS)}")
            if word not in out:
                out.append(word)
    if max_rtt is not None and not 0 < max_rtt <= 60000:
        raise InputError(f"--max-rtt {max_rtt:g}: give milliseconds above 0")
    if max_loss is not None and not 0 <= max_loss <= 100:
        raise InputError(f"--max-loss {max_loss:g}: give a percentage from 0 to 100")
    return Requirements(tuple(out), max_rtt, max_loss)


def _where(check: CheckResult) -> str:
    return f"{check.url} {check.transport} {'Allocate' if check.kind == 'turn' else 'Binding'}"


def evaluate(req: Requirements, checks: Sequence[CheckResult]) -> tuple[Requirement, ...]:
    results: list[Requirement] = []
    for kind in req.kinds:
        results.append(_kind(kind, checks))
    if req.max_rtt_ms is not None:
        results.append(_max_rtt(req.max_rtt_ms, checks))
    if req.max_loss_pct is not None:
        results.append(_max_loss(req.max_loss_pct, checks))
    return tuple(results)


def _kind(kind: str, checks: Sequence[CheckResult]) -> Requirement:
    if kind == "relay":
        relays = [c for c in checks if c.relay is not None and c.relay.ok]
        if relays:
            return Requirement("relay", True, f"media relayed by {_where(relays[0])}")
        allocated = [c for c in checks if c.candidate("relay") is not None and c.relay is None]
        if allocated:  # --no-relay: a relay candidate is the most that was asked for
            return Requirement("relay", True, f"relay candidate from {_where(allocated[0])}")
        tried = [c for c in checks if c.kind == "turn"]
        why = (
            "no TURN URL was probed"
            if not tried
            else f"none of {len(tried)} TURN checks relayed media"
            + (f" (first reason: {tried[0].error.reason})" if tried[0].error else "")
        )
        return Requirement("relay", False, why)
    if kind == "srflx":
        found = [c for c in checks if c.ok and c.candidate("srflx") is not None]
        if found:
            srflx = found[0].candidate("srflx")
            assert srflx is not None
            return Requirement("srflx", True, f"{srflx.hostport} from {_where(found[0])}")
        return Requirement("srflx", False, "no check returned a server-reflexive address")
    over = [c for c in checks if c.transport == kind]
    passed = [c for c in over if c.ok]
    if passed:
        return Requirement(kind, True, f"{len(passed)} of {len(over)} {kind.upper()} checks passed")
    if not over:
        return Requirement(kind, False, f"no {kind.upper()} check was run (see --transport)")
    first = over[0].error.reason if over[0].error else "failed"
    return Requirement(kind, False, f"all {len(over)} {kind.upper()} checks failed: {first}")


def _max_rtt(limit: float, checks: Sequence[CheckResult]) -> Requirement:
    name = f"max-rtt {limit:g} ms"
    samples: list[tuple[float, str]] = []
    for check in checks:
        if check.ok and check.rtt_ms is not None:
            samples.append((check.rtt_ms, _where(check)))
        stats = check.relay.stats if check.relay is not None else None
        if stats is not None and stats.rtt_avg is not None:
            samples.append((stats.rtt_avg * 1000, f"{_where(check)} relay echo (avg)"))
    if not samples:
        return Requirement(name, False, "no round trip was measured")
    worst, where = max(samples)
    if worst > limit:
        return Requirement(name, False, f"{worst:.1f} ms on {where} exceeds {limit:g} ms")
    return Requirement(name, True, f"worst {worst:.1f} ms ({where})")


def _max_loss(limit: float, checks: Sequence[CheckResult]) -> Requirement:
    name = f"max-loss {limit:g} %"
    losses = [
        (c.relay.stats.loss_pct, _where(c))
        for c in checks
        if c.relay is not None and c.relay.stats is not None
    ]
    if not losses:
        return Requirement(name, False, "no relay check measured loss")
    worst, where = max(losses)
    if worst > limit:
        return Requirement(name, False, f"{worst:.1f} % relay loss on {where} exceeds {limit:g} %")
    return Requirement(name, True, f"worst {worst:.1f} % ({where})")
