"""turncheck's relay check beside turnutils_uclient's, same coturn, same work.

Issue "Prove the relay carries media": one allocation pair, 10 packets of 100 bytes relayed
between the two allocations (ChannelData, 20 ms apart), over UDP and over TCP, timed to a
verdict; plus the relay delay and the packet counts each tool reports.

Run: ``python -m benchmarks.relay_bench [--runs N]`` from the repo root.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.probe_bench import NO_SAMPLE, RTT_RE, TIMEOUT, Row, fmt, run

COUNT = 10  # relayed packets per run (turncheck: echoed; uclient: per client of the pair)
SIZE = 100  # bytes per packet (uclient -l, turncheck --size; both default to 100)
TRANSPORTS = ("udp", "tcp")
SPEEDUP_GOAL = 10.0  # turncheck at least this many times faster to a verdict
RTT_GOAL_MS = 1.0  # relay RTT averages at most this far apart
# uclient: client-to-client (-y) between two allocations of its own, one pair (-m 1), no RTCP
# allocations (-c: without it -m 1 is rounded up to 2 pairs), COUNT messages of SIZE bytes.
UCLIENT = ["turnutils_uclient", "-y", "-m", "1", "-c", "-n", str(COUNT), "-l", str(SIZE)]
UCLIENT += ["-u", "alice", "-w", "s3cret"]
TOTALS_RE = re.compile(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
TRANSMIT_RE = re.compile(r"Total transmit time is (\d+)")


@dataclass
class Relay:
    """One tool's relay figures from its successful runs (ms; packet counts per run)."""

    avg: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    counts: list[tuple[int, int]] = field(default_factory=list)  # (sent, received)
    transmit_s: list[int] = field(default_factory=list)  # uclient's whole-second send phase

    def add(self, sent: int, received: int, rtt: tuple[float, float, float]) -> None:
        self.counts.append((sent, received))
        self.avg.append(rtt[0])
        self.min.append(rtt[1])
        self.max.append(rtt[2])


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"


def counts(values: list[tuple[int, int]]) -> str:
    return ",".join(f"{s}/{r}" for s, r in sorted(set(values))) or "-"


def parse_turncheck(out: str) -> tuple[int, int, tuple[float, float, float]] | str:
    """(sent, received, (avg, min, max) ms) from turncheck's JSON, or why it is not a pass."""
    try:
        doc = json.loads(out)
        turn = [c for c in doc["checks"] if c.get("kind") == "turn"]
        rt = turn[0]["relay_test"] if turn else None
        if not doc.get("ok") or not rt:
            bad = [f"{c.get('kind')}: {c.get('error')}" for c in doc["checks"] if not c.get("ok")]
            return f"ok={doc.get('ok')}, relay_test={'present' if rt else 'missing'}, {bad}"
        sent, received, rtt = int(rt["sent"]), int(rt["received"]), rt["rtt_ms"]
        figures = (float(rtt["avg"]), float(rtt["min"]), float(rtt["max"]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return f"bad JSON: {exc!r}"
    if sent != COUNT or received != sent:
        return f"relay_test sent {sent}, received {received} (want {COUNT}/{COUNT})"
    return sent, received, figures


def parse_uclient(out: str) -> tuple[int, int, tuple[float, float, float], int | None] | str:
    """(sent, received, (avg, min, max) ms, transmit s) from uclient's summary, or why not."""
    totals = TOTALS_RE.findall(out)  # per-second progress lines, then the final totals
    rtts = RTT_RE.findall(out)
    if not totals or not rtts:
        return "no tot_send_msgs/tot_recv_msgs or round-trip line in its output"
    sent, received = (int(n) for n in totals[-1])
    avg, lo, hi = rtts[-1]
    if sent != 2 * COUNT or received != sent:
        return f"tot_send_msgs={sent}, tot_recv_msgs={received} (want {2 * COUNT}/{2 * COUNT})"
    if int(lo) == NO_SAMPLE:
        return "no round-trip sample (min = 4294967295)"
    transmit = TRANSMIT_RE.findall(out)
    return (
        sent,
        received,
        (float(avg), float(lo), float(hi)),
        int(transmit[-1]) if transmit else None,
    )


def record(into: Relay, tool: str, out: str) -> str:
    """Add one run's relay figures to *into*; "" if it passed, else why not."""
    if tool == "turncheck":
        got = parse_turncheck(out)
        if isinstance(got, str):
            return got
        into.add(*got)
        return ""
    ugot = parse_uclient(out)
    if isinstance(ugot, str):
        return ugot
    sent, received, rtt, transmit = ugot
    into.add(sent, received, rtt)
    if transmit is not None:
        into.transmit_s.append(transmit)
    return ""


def print_table(table: list[tuple[str, ...]], left: int) -> None:
    """probe_bench's layout: the first *left* columns left-aligned, the rest right-aligned."""
    widths = [max(len(line[k]) for line in table) for k in range(len(table[0]))]
    for n, line in enumerate(table):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if k < left else c.rjust(w) for k, (c, w) in pairs]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool (default 5)")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 100))

    import trustme

    from tests.servers.coturn import running_coturn

    exe = Path(sys.executable).parent / "turncheck"
    turncheck = str(exe) if exe.exists() else "turncheck"
    rows: dict[tuple[str, str], Row] = {}
    relay: dict[tuple[str, str], Relay] = {}
    failed = 0
    with (
        tempfile.TemporaryDirectory(prefix="relay_bench_") as tmp,
        running_coturn(Path(tmp) / "coturn", ca=trustme.CA()) as srv,
    ):
        p = str(srv.port)
        cmds: dict[tuple[str, str], list[str]] = {}
        for tr in TRANSPORTS:
            tc = [turncheck, "probe", f"turn:127.0.0.1:{p}?transport={tr}"]
            tc += ["-u", "alice", "-p", "s3cret", "--count", str(COUNT), "--size", str(SIZE)]
            cmds["turncheck", tr] = [*tc, "--json"]
            t_flag = ["-t"] if tr == "tcp" else []
            cmds["uclient", tr] = [*UCLIENT, *t_flag, "-p", p, "127.0.0.1"]
            rows["turncheck", tr] = Row(
                "turncheck probe", f"{tr}: Binding, 2 Allocates, {COUNT} echoed"
            )
            rows["uclient", tr] = Row(
                f"turnutils_uclient -y{' -t' if t_flag else ''}",
                f"{tr}: 2 Allocates, {COUNT} each way",
            )
            relay["turncheck", tr] = Relay()
            relay["uclient", tr] = Relay()
        print(f"coturn {srv.host} port {p} (udp+tcp); {runs} runs each; {COUNT} x {SIZE} B\n")
        for i in range(1, runs + 1):
            for key, cmd in cmds.items():
                row = rows[key]
                elapsed, out = run(row, cmd, i)
                if elapsed is None:
                    failed += 1
                    continue
                why = record(relay[key], key[0], out)
                if why:
                    print(f"FAIL {row.tool} {key[1]} run {i}: {why}")
                    failed += 1
                    continue
                row.times.append(elapsed)
                row.outputs.append(out)

    head: tuple[str, ...] = ("tool", "what", "median s", "min", "max", "runs ok", "sent/recv")
    head += ("RTT avg ms", "RTT min", "RTT max")
    table: list[tuple[str, ...]] = [head]
    for key, row in rows.items():
        r = relay[key]
        table.append(
            (
                row.tool,
                row.what,
                *fmt(row.times),
                f"{len(row.times)}/{row.runs}",
                counts(r.counts),
                med(r.avg),
                med(r.min),
                med(r.max),
            )
        )
    print_table(table, 2)
    print(
        "\nRTT: median over runs of each run's avg/min/max.  turncheck: A -> relay A -> relay B"
        " -> B, echoed back (a true round trip, sub-ms clock).\nuclient: its 'Average round trip"
        " delay' line, measured on a whole-millisecond clock (receive ms minus the ms stamped in"
        " the packet);\nwith -y that is one way, client 1 -> relay 1 -> relay 2 -> client 2, so"
        " it is roughly half a turncheck RTT.\nsent/recv: turncheck relay_test sent/received"
        f" (echoed packets); uclient tot_send_msgs/tot_recv_msgs (both clients, {COUNT} each)."
    )
    transmit = {tr: relay["uclient", tr].transmit_s for tr in TRANSPORTS}
    if any(transmit.values()):
        each = ", ".join(f"{tr} {statistics.median(t):g} s" for tr, t in transmit.items() if t)
        print(
            f"uclient 'Total transmit time' (whole s, median): {each} -- it starts sending"
            " 1 s + random 0-5 s after connecting (coturn uclient.c), then 1 packet / 20 ms."
        )
    print()

    speed: dict[str, str] = {}
    close: dict[str, str] = {}
    fast_met, rtt_met = True, True
    for tr in TRANSPORTS:
        tc_t, uc_t = rows["turncheck", tr].times, rows["uclient", tr].times
        tc_r, uc_r = relay["turncheck", tr].avg, relay["uclient", tr].avg
        if not (tc_t and uc_t and tc_r and uc_r):
            print(f"{tr}: turncheck or turnutils_uclient had no successful run: no comparison")
            speed[tr] = close[tr] = "no data"
            fast_met = rtt_met = False
            continue
        x, y = statistics.median(tc_t), statistics.median(uc_t)
        a, b = statistics.median(tc_r), statistics.median(uc_r)
        ratio, diff = y / x, abs(a - b)
        fast_met &= ratio >= SPEEDUP_GOAL
        rtt_met &= diff <= RTT_GOAL_MS
        speed[tr], close[tr] = f"{ratio:.1f}x", f"{diff:.2f} ms"
        print(
            f"{tr}: turncheck {x:.2f} s vs turnutils_uclient {y:.2f} s ({ratio:.1f}x faster); "
            f"relay RTT avg turncheck {a:.2f} ms vs uclient {b:.2f} ms (whole-ms clock), "
            f"difference {diff:.2f} ms"
        )
    print(
        f"goal: turncheck at least {SPEEDUP_GOAL:.0f}x faster to a verdict than uclient: "
        f"{'met' if fast_met else 'not met'} ({', '.join(f'{k} {v}' for k, v in speed.items())})"
    )
    print(
        f"goal: relay RTT avg within {RTT_GOAL_MS:.0f} ms of uclient's: "
        f"{'met' if rtt_met else 'not met'} ({', '.join(f'{k} {v}' for k, v in close.items())})"
    )
    if failed:
        print(f"{failed} run(s) failed (excluded from the figures); timeout {TIMEOUT:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
