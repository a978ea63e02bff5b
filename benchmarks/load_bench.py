"""turncheck load beside turnutils_uclient under the same load, same local coturn.

Issue 7: for N allocation pairs (--sizes, default 10, 50, 200) both tools set up N pairs and
relay the same number of 160-byte packets at 50 packets/s per allocation; per run: wall time,
allocation pairs per second of setup, relayed packets per second of relaying, CPU seconds and
peak memory of the tool's process (wait4 rusage), and turncheck / uclient ratios.  turncheck
runs twice per N, with --loop asyncio and --loop uvloop.

The same work for both (coturn 4.6.1 uclient.c read, and checked against coturn's log):

* ``turnutils_uclient -y -c -v -L 127.0.0.X -m 2N -n M -l 160``: with -y, -m counts
  allocations (clients), two per pair, so -m 2N is N pairs (-m only rounds up: to even with -c,
  to a multiple of 4 without).  -c: no RTCP allocations, so every allocation is a plain one like
  turncheck's (without -c the count is the same, but half of them are RTCP pairs bound by
  EVEN-PORT reservations).  Each of the 2N clients sends M messages to its partner, one per
  20 ms (-z default): 2N x M packets, each crossing the relay once (client -> its allocation ->
  the other allocation -> the other client).  Per pair uclient also makes a probe allocation
  that it never deletes (it lives 777 s); -L gives each uclient run a local address of its own so
  no later socket (turncheck's, or the next run's) lands on one of those 5-tuples (437).
  -v: its setup steps, one line each, time-stamped here as they arrive.
* ``turncheck load --clients N --rate 50 --duration M/50 --size 160``: N pairs; A sends
  50 x M/50 = M packets to B through the relay, B echoes each back: 2N x M crossings.  So
  turncheck's clients x rate x duration is half uclient's tot_send_msgs (N x M against 2N x M):
  same crossings, and every allocation of either tool sends 50 packets/s for M/50 s.

Definitions, the same for both tools:

* alloc pairs/s: pairs ready to relay / setup seconds, setup = from the first allocation work
  to the last pair ready.  uclient: first -v line to the last one before "Total connect time"
  (that line comes 2N x 100 ms later: an idle libevent burst per client), less 1 s per
  "trying allocate again 437" (its sleep(1) after hitting one of its own probes' 5-tuples).
  turncheck: run_load() entry to _relay() entry, stamped on stderr by a wrapper that runs
  turncheck's own CLI entry point.  Process start-up is in wall time only.
* relayed pkt/s: packets that crossed the relay / seconds of relaying.  uclient: tot_recv_msgs
  over [1 s after "Total connect time" (its first packet is due 1 s + random 0-5 s later), its
  last packet received]; turncheck: 2 x echoes received over sending_time_s.
* CPU s, max RSS: ru_utime + ru_stime and ru_maxrss of the tool's process (os.wait4).

Run: ``python -m benchmarks.load_bench [--runs N] [--sizes 10,50,200]`` from the repo root.
Loopback only.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchmarks.relay_bench import TOTALS_RE, print_table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT = 180.0  # seconds per subprocess
PAUSE = 2.0  # between runs: coturn frees deleted allocations on a 1 s timer
RATE = 50.0  # packets/s per sending allocation: uclient's default -z 20 ms
SIZE = 160
MESSAGES = 500  # uclient -n; turncheck --duration MESSAGES / RATE
UCLIENT_FIRST_SEND = 1.0  # uclient.c: packet 1 due 1 s + random()%5000 ms after connecting
MAX_RELAY_RANGE = 1000  # tests/servers/ports.py hands out at most 1000 ports
UCLIENT_LOCAL = 20  # uclient run k binds 127.0.0.(20 + k): no 5-tuple of an earlier run's leak
RETRY_RE = re.compile(r"trying allocate again 437")
LOOPS = ("asyncio", "uvloop")
UCLIENT = ["turnutils_uclient", "-y", "-c", "-v", "-l", str(SIZE), "-u", "alice", "-w", "s3cret"]
CONNECT_LINE = "Total connect time is"
PROGRESS_RE = re.compile(r"msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
STAMP_RE = re.compile(r"^load_bench (setup|relay) ([\d.]+)$", re.M)
# turncheck's CLI with run_load() and _relay() entries stamped (CLOCK_MONOTONIC) on stderr.
TURNCHECK_CHILD = """
import sys, time
import turncheck.load as L

def wrap(fn, what):
    async def stamped(*args, **kwargs):
        sys.stderr.write(f"load_bench {what} {time.monotonic():.6f}\\n")
        sys.stderr.flush()
        return await fn(*args, **kwargs)
    return stamped

for name, what in (("run_load", "setup"), ("_relay", "relay")):
    if hasattr(L, name):  # renamed: no stamps, the bench falls back to the JSON
        setattr(L, name, wrap(getattr(L, name), what))
from turncheck.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Child:
    """One finished subprocess: exit code (None: killed at the timeout) and its rusage."""

    rc: int | None
    start: float  # time.monotonic() at spawn
    wall: float
    cpu: float
    maxrss_kb: int
    out: list[tuple[float, str]]  # stdout lines, each with its arrival time (monotonic)
    err: str

    @property
    def text(self) -> str:
        return "".join(line for _, line in self.out)


def _pump(stream: TextIO, into: list[tuple[float, str]]) -> None:
    for line in stream:
        into.append((time.monotonic(), line))


def run_child(cmd: list[str], timeout: float) -> Child:
    """Run *cmd*, time-stamping its stdout lines; wait4 for its own CPU and peak memory."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    out: list[tuple[float, str]] = []
    err: list[tuple[float, str]] = []
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True),
    ]
    for t in pumps:
        t.start()
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            killed = True
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    for t in pumps:
        t.join(timeout=5)
    proc.stdout.close()
    proc.stderr.close()
    return Child(
        rc=None if killed else proc.returncode,
        start=start,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        out=out,
        err="".join(line for _, line in err),
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (coturn), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measure:
    """One successful run's figures."""

    pairs: int
    relayed: int  # packets that crossed the relay
    loss_pct: float
    wall: float
    setup: float
    relay_s: float
    cpu: float
    rss_mb: float
    server_cpu: float = float("nan")
    peak_pps: float | None = None  # best 1-s window (uclient's progress lines)
    note: str = ""

    @property
    def alloc_rate(self) -> float:
        return self.pairs / self.setup if self.setup > 0 else float("nan")

    @property
    def pps(self) -> float:
        return self.relayed / self.relay_s if self.relay_s > 0 else float("nan")

    @property
    def cpu_us_per_pkt(self) -> float:
        return 1e6 * self.cpu / self.relayed if self.relayed else float("nan")


def parse_uclient(child: Child, pairs: int, messages: int) -> Measure | str:
    """uclient's figures from its time-stamped output, or why the run does not count."""
    lines = [(t - child.start, line) for t, line in child.out]
    if child.rc != 0:
        tail = [line.strip() for _, line in lines[-3:]] + child.err.strip().splitlines()[-2:]
        return " | ".join(tail) or "no output"
    connect = next((k for k, (_, line) in enumerate(lines) if CONNECT_LINE in line), None)
    if connect is None or connect < 2:
        return f"no setup lines before '{CONNECT_LINE}' in its output (-v)"
    setup = lines[connect - 1][0] - lines[0][0]
    # A 437 (its new socket got the local port of one of its own undeleted probe allocations)
    # costs uclient sleep(1) and a new socket: left out of its setup time, in its favour.
    retries = len(RETRY_RE.findall(child.text))
    note = ""
    if retries:
        note = f"{retries} x 437 retry (1 s sleep each, taken out of setup {setup:.2f} s)"
        setup = max(setup - retries, 1e-6)
    t_connect = lines[connect][0]
    progress = [(t, *map(int, m.groups())) for t, s in lines if (m := PROGRESS_RE.search(s))]
    final = [(t, s) for t, s in lines if "tot_send_msgs=" in s and "msz=" not in s]
    if not final:
        return "no final tot_send_msgs/tot_recv_msgs line"
    t_final, final_line = final[-1]
    m = TOTALS_RE.search(final_line)
    assert m is not None
    sent, received = int(m.group(1)), int(m.group(2))
    want = 2 * pairs * messages
    if sent != want:
        note = ", ".join(filter(None, [note, f"sent {sent}, want {want}"]))
    t_end = t_final
    if received < sent:  # each client then waits STOPPING_TIME (10 s) before it stops
        t_end = next((t for t, s, _ in progress if s >= sent), t_final)
    peak = None
    for (t0, _, r0), (t1, _, r1) in itertools.pairwise(progress):
        if t1 - t0 > 0.5:
            peak = max(peak or 0.0, (r1 - r0) / (t1 - t0))
    return Measure(
        pairs=pairs,
        relayed=received,
        loss_pct=100 * (sent - received) / sent if sent else 100.0,
        wall=child.wall,
        setup=setup,
        relay_s=t_end - (t_connect + UCLIENT_FIRST_SEND),
        cpu=child.cpu,
        rss_mb=child.maxrss_kb / 1024,
        peak_pps=peak,
        note=note,
    )


def parse_turncheck(child: Child, pairs: int) -> Measure | str:
    """turncheck's figures from its JSON and the wrapper's stamps, or why the run does not count."""
    try:
        doc: dict[str, Any] = json.loads(child.text)
        up = int(doc["allocations"]["pairs_succeeded"])
        relay = doc["relay"]
        sent, received = int(relay["sent"]), int(relay["received"])
        sending, wall_in = float(doc["sending_time_s"]), float(doc["wall_time_s"])
    except (ValueError, KeyError, TypeError) as exc:
        tail = " | ".join(child.err.strip().splitlines()[-3:])
        return f"bad JSON ({exc!r}); stderr: {tail}"
    if up == 0:
        return f"no pair set up: {doc.get('verdict')}"
    stamps = dict(STAMP_RE.findall(child.err))
    note = "" if up == pairs else f"{up}/{pairs} pairs up"
    if "setup" in stamps and "relay" in stamps:
        setup = float(stamps["relay"]) - float(stamps["setup"])
    else:  # upper bound: everything but sending, so the rate is a lower bound
        setup = wall_in - sending
        note = ", ".join(filter(None, [note, "setup <= wall_time_s - sending_time_s"]))
    if not doc.get("ok"):
        note = ", ".join(filter(None, [note, str(doc.get("verdict"))]))
    return Measure(
        pairs=up,
        relayed=2 * received,
        loss_pct=100 * (sent - received) / sent if sent else 100.0,
        wall=child.wall,
        setup=setup,
        relay_s=sending,
        cpu=child.cpu,
        rss_mb=child.maxrss_kb / 1024,
        note=note,
    )


@dataclass
class Row:
    tool: str
    runs: int = 0
    ok: list[Measure] = field(default_factory=list)


def med(row: Row, get: Callable[[Measure], float | None]) -> float | None:
    values = [v for m in row.ok if (v := get(m)) is not None and v == v]
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def at_least(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and a >= b


def pct(a: float | None, b: float) -> str:
    return "-" if a is None or not b else f"{100 * a / b:.1f} %"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


COLUMNS: list[tuple[str, Callable[[Measure], float | None], int, bool]] = [
    # header, figure, decimals, in the ratio rows
    ("pairs", lambda m: m.pairs, 0, False),
    ("relayed", lambda m: m.relayed, 0, False),
    ("loss %", lambda m: m.loss_pct, 2, False),
    ("wall s", lambda m: m.wall, 2, True),
    ("setup s", lambda m: m.setup, 3, False),
    ("pairs/s", lambda m: m.alloc_rate, 0, True),
    ("relay s", lambda m: m.relay_s, 2, False),
    ("pkt/s", lambda m: m.pps, 0, True),
    ("peak 1s pkt/s", lambda m: m.peak_pps, 0, False),
    ("CPU s", lambda m: m.cpu, 2, True),
    ("CPU us/pkt", lambda m: m.cpu_us_per_pkt, 1, True),
    ("max RSS MB", lambda m: m.rss_mb, 1, True),
    ("coturn CPU s", lambda m: m.server_cpu, 2, False),
]


def table_rows(n: int, rows: list[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        cells = [num(med(row, get), d) for _, get, d, _ in COLUMNS]
        out.append((str(n), row.tool, *cells, f"{len(row.ok)}/{row.runs}"))
    base = rows[0]
    for row in rows[1:]:
        cells = [
            ratio(med(row, get), med(base, get)) if in_ratio else ""
            for _, get, _, in_ratio in COLUMNS
        ]
        out.append((str(n), f"  {row.tool.split()[-1]} / uclient", *cells, ""))
    return out


def plan_relay_ports(sizes: list[int], runs: int) -> tuple[tuple[str, ...], int]:
    """Relay IPs and ports per IP for the whole bench on one coturn.

    uclient -c -y puts EVEN-PORT in about half its Allocates, at random; coturn then takes an
    even port and (seen in its log here) leaves the odd one next to it unused, so count 2 ports
    per uclient allocation.  Its probe allocation (one per pair)
    is never deleted and lives 777 s: those pile up over the bench.  coturn takes relay IPs in
    turn, each with its own port range; 127.0.0.2 and up, so no client socket (turncheck binds
    127.0.0.1, uclient 127.0.0.20+) can sit on a relay port.
    """
    leaked = need = 0
    for n in sizes:
        for _ in range(runs):
            need = max(need, 2 * leaked + 2 * (n + 2 * n))  # uclient: probe + 2 per pair
            leaked += n
    ips = max(1, min(8, math.ceil(need * 1.1 / (MAX_RELAY_RANGE - 100))))
    per_ip = min(MAX_RELAY_RANGE, math.ceil(need * 1.1 / ips) + 100)
    return tuple(f"127.0.0.{2 + k}" for k in range(ips)), per_ip


def bench(
    port: int, server_pid: int, sizes: list[int], runs: int, messages: int
) -> tuple[dict[int, list[Row]], int]:
    """Every run, in order N by N: uclient, turncheck asyncio, turncheck uvloop."""
    p, duration = str(port), messages / RATE
    results: dict[int, list[Row]] = {}
    failed = uclient_runs = 0
    first = True
    for n in sizes:
        uc = Row("turnutils_uclient")
        tcs = {loop: Row(f"turncheck {loop}") for loop in LOOPS}
        results[n] = [uc, *tcs.values()]
        url = f"turn:127.0.0.1:{p}?transport=udp"
        tc_cmd = [sys.executable, "-c", TURNCHECK_CHILD, "load", url, "-u", "alice"]
        tc_cmd += ["-p", "s3cret", "--clients", str(n), "--rate", f"{RATE:g}"]
        tc_cmd += ["--duration", f"{duration:g}", "--size", str(SIZE), "--json"]
        uc_cmd = [*UCLIENT, "-m", str(2 * n), "-n", str(messages), "-p", p]  # + -L, server
        jobs: list[tuple[Row, list[str], Callable[[Child], Measure | str]]] = [
            (uc, uc_cmd, functools.partial(parse_uclient, pairs=n, messages=messages))
        ]
        for loop, row in tcs.items():
            parse_tc = functools.partial(parse_turncheck, pairs=n)
            jobs.append((row, [*tc_cmd, "--loop", loop], parse_tc))
        for i in range(1, runs + 1):
            for row, cmd, parse in jobs:
                if not first:
                    time.sleep(PAUSE)
                first = False
                row.runs += 1
                if row is uc:  # a local address of its own: its leaked probes stay apart
                    local = f"127.0.0.{UCLIENT_LOCAL + uclient_runs % 200}"
                    cmd = [*cmd, "-L", local, "127.0.0.1"]
                    uclient_runs += 1
                before = cpu_seconds(server_pid)
                child = run_child(cmd, TIMEOUT)
                server_cpu = cpu_seconds(server_pid) - before
                if child.rc is None:
                    print(f"FAIL N={n} {row.tool} run {i}: timeout after {TIMEOUT:.0f} s")
                    failed += 1
                    continue
                got = parse(child)
                if isinstance(got, str):
                    print(f"FAIL N={n} {row.tool} run {i}: exit {child.rc}: {got}")
                    failed += 1
                    continue
                got.server_cpu = server_cpu
                row.ok.append(got)
                if got.note:
                    print(f"note N={n} {row.tool} run {i}: {got.note}")
                if row is uc:
                    print(
                        f"N={n} uclient run {i}: wall {got.wall:.1f} s: setup {got.setup:.2f} s,"
                        f" then {2 * n} x 100 ms idle, then its clients start over 1-6 s"
                    )
    return results, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per tool and N (default 1)")
    parser.add_argument("--sizes", default="10,50,200", help="pair counts N (default 10,50,200)")
    parser.add_argument(
        "--messages", type=int, default=MESSAGES, help=f"uclient -n (default {MESSAGES})"
    )
    args = parser.parse_args()
    runs = max(1, min(args.runs, 20))
    try:
        sizes = list(dict.fromkeys(int(s) for s in args.sizes.split(",") if s.strip()))
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated pair counts")
    if not sizes or not all(1 <= n <= 2000 for n in sizes):
        parser.error("--sizes: give pair counts from 1 to 2000")
    messages = max(1, min(args.messages, 100_000))

    from tests.servers.coturn import running_coturn

    relay_ips, relay_range = plan_relay_ports(sizes, runs)
    with (
        tempfile.TemporaryDirectory(prefix="load_bench_") as tmp,
        running_coturn(
            Path(tmp) / "coturn",
            tls=False,
            relay_range=relay_range,
            relay_ips=relay_ips,
            extra=["total-quota=0", "user-quota=0"],
        ) as srv,
    ):
        print(
            f"coturn {srv.host} port {srv.port} (udp), relays on {', '.join(relay_ips)}:"
            f" {relay_range} ports each; {runs} run(s)"
            f" per tool and N; {SIZE} B packets, {RATE:g} packets/s per sending allocation\n"
            f"uclient:   {' '.join(UCLIENT)} -m 2N -n {messages} -L 127.0.0.X -p {srv.port}"
            f" 127.0.0.1 (a fresh local X per run)\n"
            f"turncheck: turncheck load turn:127.0.0.1:{srv.port}?transport=udp -u alice"
            f" -p s3cret --clients N --rate {RATE:g} --duration {messages / RATE:g} --size {SIZE}"
            f" --loop asyncio|uvloop --json\n"
            f"both: N pairs, {2 * messages} relay crossings per pair"
            f" (uclient 2 x {messages} one way; turncheck {messages} echoed back)\n"
        )
        results, failed = bench(srv.port, srv.process.pid, sizes, runs, messages)

    head = ("N", "tool", *(h for h, *_ in COLUMNS), "runs ok")
    table: list[tuple[str, ...]] = [head]
    for n, rows in results.items():
        table += table_rows(n, rows)
    print()
    print_table(table, 2)
    print(
        f"\nmedians over runs.  relayed: packets that crossed the relay (uclient tot_recv_msgs;"
        f" turncheck 2 x echoes received).\npairs/s: pairs ready / setup s (first allocation"
        f" request to last pair ready).  Per pair, uclient: 3 Allocates (one a probe it never"
        f" deletes), 3 Refreshes,\n2 ChannelBinds, one after the other, 1.7 ms of usleep;"
        f" turncheck: 2 Allocates, 2 ChannelBinds, 64 pairs at a time."
        f"\npkt/s: relayed / relay s (uclient: from"
        f" {UCLIENT_FIRST_SEND:g} s after connecting, its clients starting over a random 0-5 s,"
        f" to its last packet;\nturncheck: sending_time_s, every pair at once).  peak 1s pkt/s:"
        f" uclient's best interval between its once-a-second progress lines.\nCPU s, max RSS:"
        f" the tool's own process (wait4 rusage); uclient's CPU includes its 1 ms timer over the"
        f" idle connect bursts and the stagger.\ncoturn CPU s: the server during that run."
        f"  Ratios: turncheck / uclient (pairs/s and pkt/s: higher is better for turncheck)."
    )

    top = max(results)
    uc_row, *tc_rows = results[top]
    uc_rate, uc_pps = med(uc_row, lambda m: m.alloc_rate), med(uc_row, lambda m: m.pps)
    uc_peak = med(uc_row, lambda m: m.peak_pps)
    met = True
    parts = []
    for row in tc_rows:
        rate, pps = med(row, lambda m: m.alloc_rate), med(row, lambda m: m.pps)
        met = met and at_least(rate, uc_rate) and at_least(pps, uc_pps)
        parts.append(f"{row.tool}: {num(pps)} pkt/s, {num(rate)} pairs/s")
    parts.append(f"uclient: {num(uc_pps)} pkt/s (peak 1-s {num(uc_peak)}), {num(uc_rate)} pairs/s")
    offered = 2 * top * RATE
    steady = ", ".join(
        f"{row.tool.split()[-1]} {pct(med(row, lambda m: m.pps), offered)}" for row in tc_rows
    )
    print(
        f"\noffered load: 2N x {RATE:g} = {', '.join(f'{2 * n * RATE:,.0f}' for n in results)}"
        f" relayed pkt/s for N = {', '.join(map(str, results))}; a tool that keeps up relays"
        f" exactly that.\nuclient's pkt/s is a mean over clients that start over 5 s; at"
        f" N={top} its peak 1-s is {pct(uc_peak, offered)} of the offered {offered:,.0f},"
        f" turncheck's mean {steady}."
    )
    print(
        f"goal: turncheck at least matches uclient's relayed packets/s and allocation rate"
        f" at N={top}: {'met' if met else 'not met'} ({'; '.join(parts)})"
    )
    if failed:
        print(f"{failed} run(s) failed (excluded from the figures); timeout {TIMEOUT:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
