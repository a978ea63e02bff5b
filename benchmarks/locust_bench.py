"""turncheck load alone beside the same load on Locust (one worker; --processes 2), one coturn.

Issue 23: the same load run three ways on one machine, one after the other, against one coturn
on loopback (its own ports and temporary directory, stopped by its PID):

* ``turncheck load URL --clients P --rate R --duration D --size 160 --loop asyncio --json``
  (asyncio: the Locust entry point runs the load core on an asyncio loop of its own);
* Locust, a master and one worker (two processes, headless, ``--expect-workers 1``);
* Locust with ``--processes 2`` (a master and two forked workers);

each Locust run with ``-u 2 -r 2 --run-time D`` and ``--turn-pairs P/2 --turn-rate R``: two
users of P/2 pairs, so P pairs in all, as turncheck load's. Credentials from the environment.

Per run:

* echoed pkt/s: echoed packets / seconds of relaying.  turncheck load: its JSON's
  relay.received over sending_time_s.  Locust: the exact "packets echoed" of the locustfile's
  PREFIX_turn.csv (merged from the workers) over the master's log, from "Sending spawn jobs"
  to "--run-time limit reached" (its pairs' set-up, about 0.1 s here, counts as relaying).
* RTT p50/p99 µs: exact figures.  turncheck load: relay.rtt_ms (every echo, sorted).
  Locust: "echo RTT p50/p99" of PREFIX_turn.csv (every echo, 3 significant digits).
* CPU s per 1,000 echoed packets, two ways.  all in: the CPU of every process of the run
  (turncheck load; the master and its workers, forked ones included), start-up, set-up and
  stop included: the change in this process's children times (os.times), every one of them
  reaped here or by a reaped parent (this process is a child subreaper, so a worker its master
  did not wait for is reaped here too).  steady: the same processes over the middle of the
  relaying (its first 2 s and last 1 s left out), from /proc/PID/stat sampled every 0.25 s,
  over the packets echoed in that window (echoed pkt/s x window).  coturn's CPU apart, from
  /proc/PID/stat: over the whole run and over the window.
* Locust's overhead per packet: its steady (and all-in) CPU per packet / turncheck load's.
* What each run left unused: over the same window, the machine's idle share (/proc/stat,
  all cores), coturn's share of the machine (on 2 cores coturn is the ceiling) and the load
  generator's; "other" is everything else on the machine.

Run: ``python -m benchmarks.locust_bench [--pairs 200] [--rate 50] [--duration 20] [--json]``
from the repo root, with ``pip install -e '.[locust]'``.  Loopback only; every process is
stopped by its PID.  The figures want a quiet machine: on 2 cores another busy process
lands in "other" and in coturn's latency.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load_bench import STAMP_RE, TURNCHECK_CHILD, cpu_seconds  # noqa: E402
from benchmarks.relay_bench import print_table  # noqa: E402

SIZE = 160
USERS = 2  # Locust users per run: P/2 pairs each (one per worker with --processes 2)
PAUSE = 2.0  # between runs: coturn frees deleted allocations on a 1 s timer
SAMPLE_EVERY = 0.25  # seconds between /proc samples
DISCOVER_EVERY = 1.0  # seconds between scans of /proc for the run's new processes
LEAD, TAIL = 2.0, 1.0  # seconds of relaying left out of the steady window, first and last
SLACK = 90.0  # seconds a run may take beyond its duration (start-up, set-up, stop)
STOP_BOUND = 10.0  # seconds a stopped process gets before SIGKILL
MAX_RELAY_RANGE = 1000  # tests/servers/ports.py hands out at most 1000 ports
PR_SET_CHILD_SUBREAPER = 36
SPAWNING = "Sending spawn jobs"  # a master's first line of a test: users start
TIME_LIMIT = "--run-time limit reached"
ENV = {
    **os.environ,
    "TURNCHECK_USERNAME": "alice",
    "TURNCHECK_CREDENTIAL": "s3cret",
    "PYTHONUNBUFFERED": "1",
}
ENV.pop("TURNCHECK_SECRET", None)


# -- processes ----------------------------------------------------------------------------------


def _subreaper() -> bool:
    """Orphaned descendants (a forked worker its master did not wait for) become ours."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if len(fields) > 1:
            out[int(entry)] = int(fields[1])
    return out


def _machine_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of all cores, from /proc/stat (guest time is in user already)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    ticks = [int(v) for v in first[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


@dataclass
class Sample:
    t: float  # time.monotonic()
    run_cpu: float  # the run's processes: utime + stime (the last seen, for those gone)
    coturn_cpu: float
    idle: int  # jiffies, all cores
    total: int


class Sampler:
    """The run's processes (the roots and every descendant seen), coturn and the machine,
    every SAMPLE_EVERY seconds, in a thread."""

    def __init__(self, coturn_pid: int) -> None:
        self.coturn_pid = coturn_pid
        self.known: dict[int, float] = {}  # pid -> CPU seconds, last seen
        self.names: dict[int, str] = {}  # pid -> the name it was started by
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def add(self, pid: int) -> None:
        """A process of the run: its CPU, and its descendants' (found by their parent)."""
        self.known.setdefault(pid, 0.0)

    def _discover(self) -> None:
        parents = _parents()
        for pid, ppid in parents.items():
            if ppid in self.known and pid not in self.known:
                self.known[pid] = 0.0

    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self._discover()
                next_scan = now + DISCOVER_EVERY
            for pid in list(self.known):
                cpu = cpu_seconds(pid)
                if cpu == cpu:  # alive: not NaN
                    self.known[pid] = cpu
            idle, total = _machine_ticks()
            self.samples.append(
                Sample(now, sum(self.known.values()), cpu_seconds(self.coturn_pid), idle, total)
            )
            self._stop.wait(SAMPLE_EVERY)


@dataclass
class Spawned:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path  # everything it wrote
    lines: list[tuple[float, str]] = field(default_factory=list)  # the piped stream, stamped

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _pump(stream: IO[bytes], into: list[tuple[float, str]], log: IO[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        into.append((time.monotonic(), line))
        log.write(line)


@contextlib.contextmanager
def processes(sampler: Sampler, logs: Path, coturn_pid: int) -> Iterator[Callable[..., Spawned]]:
    """Start the run's processes; at the end every one is stopped by its PID (SIGTERM, then
    SIGKILL), waited for, and every orphan of theirs reaped here (bounded)."""
    started: list[Spawned] = []
    pumps: list[threading.Thread] = []
    files: list[IO[str]] = []

    def spawn(name: str, argv: list[str], *, piped: bool = True) -> Spawned:
        """*piped*: stdout and stderr read here, each line stamped as it comes (and logged);
        else straight to the log file."""
        log = (logs / f"{name}.log").open("w", encoding="utf-8")
        files.append(log)
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=logs,
        )
        sampler.add(popen.pid)
        spawned = Spawned(name, popen, logs / f"{name}.log")
        started.append(spawned)
        if piped:
            assert popen.stdout is not None
            pump = threading.Thread(
                target=_pump, args=(popen.stdout, spawned.lines, log), daemon=True
            )
            pump.start()
            pumps.append(pump)
        return spawned

    try:
        yield spawn
    finally:
        for s in started:
            _stop(s.popen)
        _reap_orphans(coturn_pid, set(sampler.known))
        for pump in pumps:
            pump.join(timeout=5)
        for f in files:
            f.close()
        for s in started:
            sampler.names[s.popen.pid] = s.name


def _stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout=STOP_BOUND)


def _reap_orphans(coturn_pid: int, known: set[int]) -> None:
    """A worker its master left becomes ours (subreaper): wait for it, bounded, by its PID.
    Only a process whose parent is this one or one of the run's is ever killed."""
    me = os.getpid()
    deadline = time.monotonic() + STOP_BOUND
    while True:
        parents = _parents()
        left = [p for p in known if p != coturn_pid and parents.get(p) in known | {me}]
        for pid in [p for p in left if parents[p] == me]:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    left.remove(pid)
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for pid in left:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            return
        time.sleep(0.05)


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    way: str
    ok: bool = False
    note: str = ""
    pairs_up: int = 0
    sent: int = 0
    echoed: int = 0
    lost: int = 0
    relay_s: float = math.nan
    rtt_p50_us: float = math.nan
    rtt_p99_us: float = math.nan
    stride: int = 1  # Locust: 1 in this many packets fired as an event
    wall_s: float = math.nan
    cpu_s: float = math.nan  # every process of the run, all in (rusage)
    coturn_cpu_s: float = math.nan  # coturn over the whole run
    window_s: float = math.nan
    window_cpu_s: float = math.nan
    window_coturn_cpu_s: float = math.nan
    idle_share: float = math.nan  # of the machine, in the window
    cores: int = 1
    processes: dict[str, float] = field(default_factory=dict)  # pid (role) -> CPU s, last seen

    @property
    def loss_pct(self) -> float:
        decided = self.echoed + self.lost
        return 100 * self.lost / decided if decided else math.nan

    @property
    def pps(self) -> float:
        return self.echoed / self.relay_s if self.relay_s > 0 else math.nan

    @property
    def window_packets(self) -> float:
        return self.pps * self.window_s

    def per_1k(self, cpu: float, packets: float) -> float:
        return 1000 * cpu / packets if packets > 0 else math.nan

    @property
    def cpu_per_1k(self) -> float:
        return self.per_1k(self.cpu_s, self.echoed)

    @property
    def steady_per_1k(self) -> float:
        return self.per_1k(self.window_cpu_s, self.window_packets)

    @property
    def coturn_per_1k(self) -> float:
        return self.per_1k(self.window_coturn_cpu_s, self.window_packets)

    @property
    def generator_share(self) -> float:
        return self.window_cpu_s / (self.cores * self.window_s) if self.window_s > 0 else math.nan

    @property
    def coturn_share(self) -> float:
        capacity = self.cores * self.window_s
        return self.window_coturn_cpu_s / capacity if self.window_s > 0 else math.nan

    @property
    def other_share(self) -> float:
        return 1 - self.idle_share - self.coturn_share - self.generator_share

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in (
            "loss_pct",
            "pps",
            "window_packets",
            "cpu_per_1k",
            "steady_per_1k",
            "coturn_per_1k",
            "generator_share",
            "coturn_share",
            "other_share",
        ):
            doc[name] = getattr(self, name)
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in doc.items()}


def _window(run: Run, sampler: Sampler, t0: float, t1: float) -> None:
    """The steady figures over [t0 + LEAD, t1 - TAIL], from the samples inside it."""
    w0, w1 = t0 + LEAD, t1 - TAIL
    inside = [s for s in sampler.samples if w0 <= s.t <= w1]
    if len(inside) < 2 or inside[-1].t - inside[0].t < 1.0:
        run.note = "; ".join(filter(None, [run.note, "relaying too short for a steady window"]))
        return
    a, b = inside[0], inside[-1]
    run.window_s = b.t - a.t
    run.window_cpu_s = b.run_cpu - a.run_cpu
    run.window_coturn_cpu_s = b.coturn_cpu - a.coturn_cpu
    run.idle_share = (b.idle - a.idle) / (b.total - a.total) if b.total > a.total else math.nan


def _first(lines: list[tuple[float, str]], text: str) -> float | None:
    return next((t for t, line in lines if text in line), None)


def _read_turn_csv(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["Figure"]: row["Value"] for row in csv.DictReader(f)}


def _wait(popen: subprocess.Popen[bytes], bound: float) -> bool:
    try:
        popen.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        return False
    return True


def _locust() -> tuple[str, str]:
    """(locust executable, the locustfile's path); SystemExit when Locust is missing."""
    exe = Path(sys.executable).with_name("locust")
    try:
        from turncheck.locust import LOCUSTFILE
    except ImportError:  # an older checkout
        raise SystemExit(
            "turncheck.locust is missing: this checkout has no Locust entry point"
        ) from None
    if not exe.is_file():
        raise SystemExit(f"{exe} is missing: pip install -e '.[locust]'")
    return str(exe), str(LOCUSTFILE)


@dataclass(frozen=True)
class Load:
    url: str
    pairs: int
    rate: float
    duration: int


class Way:
    """One way of running the load: start its processes, then read its figures."""

    name = ""

    def start(self, spawn: Callable[..., Spawned], load: Load, logs: Path) -> list[Spawned]:
        raise NotImplementedError

    def read(self, run: Run, spawned: list[Spawned], load: Load, logs: Path) -> tuple[float, float]:
        """Set the run's figures; return its relaying (t0, t1), time.monotonic()."""
        raise NotImplementedError


class TurncheckLoad(Way):
    name = "turncheck load"

    def start(self, spawn: Callable[..., Spawned], load: Load, logs: Path) -> list[Spawned]:
        argv = [sys.executable, "-c", TURNCHECK_CHILD, "load", load.url]
        argv += ["--clients", str(load.pairs), "--rate", f"{load.rate:g}"]
        argv += ["--duration", str(load.duration), "--size", str(SIZE), "--loop", "asyncio"]
        child = spawn("turncheck-load", [*argv, "--json"])
        _wait(child.popen, load.duration + SLACK)
        return [child]

    def read(self, run: Run, spawned: list[Spawned], load: Load, logs: Path) -> tuple[float, float]:
        (child,) = spawned
        text = child.text()
        try:
            doc = json.loads(text[text.index("{") : text.rindex("}") + 1])
            relay = doc["relay"]
            run.pairs_up = int(doc["allocations"]["pairs_succeeded"])
            run.sent, run.echoed = int(relay["sent"]), int(relay["received"])
            run.lost = int(relay.get("lost", run.sent - run.echoed))
            run.relay_s = float(doc["sending_time_s"])
            rtt = relay.get("rtt_ms") or {}
            run.rtt_p50_us = 1000 * float(rtt.get("p50", math.nan))
            run.rtt_p99_us = 1000 * float(rtt.get("p99", math.nan))
        except (ValueError, KeyError, TypeError) as exc:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise RuntimeError(f"no JSON from turncheck load ({exc!r}): {tail}") from None
        if child.popen.returncode not in (0, 1):
            raise RuntimeError(f"turncheck load exited {child.popen.returncode}")
        if not doc.get("ok"):
            run.note = str(doc.get("verdict"))
        stamps = dict(STAMP_RE.findall(text))
        if "relay" not in stamps:  # the wrapper found no _relay to stamp
            raise RuntimeError("turncheck load printed no relay stamp")
        t0 = float(stamps["relay"])  # CLOCK_MONOTONIC: time.monotonic() here
        return t0, t0 + run.relay_s


class LocustWay(Way):
    """Locust, headless: two users of P/2 pairs each; the exact figures from PREFIX_turn.csv."""

    def __init__(self, name: str, processes: int | None) -> None:
        self.name = name
        self.processes = processes  # None: a master and one worker, two commands

    def start(self, spawn: Callable[..., Spawned], load: Load, logs: Path) -> list[Spawned]:
        from tests.servers.ports import free_port_block, release_ports

        locust, locustfile = _locust()
        first = free_port_block(2)  # the master's port (and the next, as Locust once used)
        try:
            return self._start(spawn, load, logs, locust, locustfile, str(first))
        finally:
            release_ports(first, 2)

    def _start(
        self,
        spawn: Callable[..., Spawned],
        load: Load,
        logs: Path,
        locust: str,
        locustfile: str,
        port: str,
    ) -> list[Spawned]:
        common = [locust, "-f", locustfile, "--loglevel", "INFO"]
        master = [*common, "--headless", "-u", str(USERS), "-r", str(USERS)]
        master += ["--run-time", f"{load.duration}s", "--csv", str(logs / "run")]
        master += ["--exit-code-on-error", "0", "--master-bind-host", "127.0.0.1"]
        master += ["--master-bind-port", port, "--turn-url", load.url]
        master += ["--turn-pairs", str(load.pairs // USERS), "--turn-rate", f"{load.rate:g}"]
        master += ["--turn-size", str(SIZE)]
        if self.processes is None:
            master += ["--master", "--expect-workers", "1", "--expect-workers-max-wait", "30"]
            out = [spawn("locust-master", master)]
            worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
            out.append(spawn("locust-worker", worker, piped=False))
        else:  # the forked workers connect to --master-host/--master-port
            master += ["--processes", str(self.processes), "--master-host", "127.0.0.1"]
            master += ["--master-port", port]
            out = [spawn("locust", master)]
        deadline = time.monotonic() + load.duration + SLACK
        for s in out:
            _wait(s.popen, max(0.1, deadline - time.monotonic()))
        return out

    def read(self, run: Run, spawned: list[Spawned], load: Load, logs: Path) -> tuple[float, float]:
        master = spawned[0]
        codes = {s.name: s.popen.returncode for s in spawned}
        path = logs / "run_turn.csv"
        if not path.is_file():
            tail = " | ".join(master.text().strip().splitlines()[-3:])
            raise RuntimeError(f"no {path.name} (exit codes {codes}): {tail}")
        figures = _read_turn_csv(path)
        run.pairs_up = int(figures["pairs up"])
        run.sent, run.echoed = int(figures["packets sent"]), int(figures["packets echoed"])
        run.lost = int(figures["packets lost"])
        run.rtt_p50_us = float(figures.get("echo RTT p50", "nan"))
        run.rtt_p99_us = float(figures.get("echo RTT p99", "nan"))
        stride = re.match(r"1 in (\d+)", figures.get("echo events fired", ""))
        run.stride = int(stride.group(1)) if stride else 1
        if any(code != 0 for code in codes.values()):
            run.note = f"exit codes {codes}"
        t0, t1 = _first(master.lines, SPAWNING), _first(master.lines, TIME_LIMIT)
        if t0 is None or t1 is None:
            raise RuntimeError(f"no '{SPAWNING}' or '{TIME_LIMIT}' in the master's log")
        run.relay_s = t1 - t0
        return t0, t1


def measure(way: Way, load: Load, coturn_pid: int, tmp: Path, index: int) -> Run:
    """One run of *way*: its processes started, waited for (bounded) and stopped by PID."""
    run = Run(way.name, cores=os.cpu_count() or 1)
    logs = tmp / f"{index}-{re.sub(r'[^a-z0-9]+', '-', way.name.lower()).strip('-')}"
    logs.mkdir()
    coturn_before, cpu_before, started = cpu_seconds(coturn_pid), _children_cpu(), time.monotonic()
    with Sampler(coturn_pid) as sampler:
        with processes(sampler, logs, coturn_pid) as spawn:
            spawned = way.start(spawn, load, logs)
        run.wall_s = time.monotonic() - started
        run.cpu_s = _children_cpu() - cpu_before
        run.coturn_cpu_s = cpu_seconds(coturn_pid) - coturn_before
    run.processes = {
        f"{sampler.names.get(pid, 'forked')} {pid}": round(cpu, 3)
        for pid, cpu in sampler.known.items()
    }
    try:
        t0, t1 = way.read(run, spawned, load, logs)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        run.note = "; ".join(filter(None, [run.note, str(exc)]))
        return run
    run.ok = run.pairs_up == load.pairs and run.echoed > 0
    if run.pairs_up != load.pairs:
        run.note = "; ".join(filter(None, [run.note, f"{run.pairs_up}/{load.pairs} pairs up"]))
    _window(run, sampler, t0, t1)
    return run


# -- presentation -------------------------------------------------------------------------------


def num(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def pct(share: float) -> str:
    return "-" if share != share else f"{100 * share:.0f} %"


def ratio(a: float, b: float) -> str:
    return "-" if a != a or b != b or not b else f"{a / b:.2f}x"


FIRST = (
    "way",
    "pairs",
    "sent",
    "echoed",
    "loss %",
    "relay s",
    "echoed pkt/s",
    "RTT p50 µs",
    "RTT p99 µs",
    "events 1 in",
)
SECOND = (
    "way",
    "CPU s",
    "CPU s/1k all in",
    "CPU s/1k steady",
    "overhead steady",
    "overhead all in",
    "coturn CPU s/1k",
    "coturn",
    "generator",
    "idle",
    "other",
)


def tables(runs: list[Run]) -> None:
    base = runs[0]
    first: list[tuple[str, ...]] = [FIRST]
    for r in runs:
        first.append(
            (
                r.way,
                str(r.pairs_up),
                num(r.sent),
                num(r.echoed),
                num(r.loss_pct, 2),
                num(r.relay_s, 2),
                num(r.pps),
                num(r.rtt_p50_us),
                num(r.rtt_p99_us),
                "-" if r is base else str(r.stride),
            )
        )
    print_table(first, 1)
    print()
    second: list[tuple[str, ...]] = [SECOND]
    for r in runs:
        second.append(
            (
                r.way,
                num(r.cpu_s, 2),
                num(r.cpu_per_1k, 4),
                num(r.steady_per_1k, 4),
                "1.00x" if r is base else ratio(r.steady_per_1k, base.steady_per_1k),
                "1.00x" if r is base else ratio(r.cpu_per_1k, base.cpu_per_1k),
                num(r.coturn_per_1k, 4),
                pct(r.coturn_share),
                pct(r.generator_share),
                pct(r.idle_share),
                pct(r.other_share),
            )
        )
    print_table(second, 1)


def relay_plan(pairs: int) -> tuple[tuple[str, ...] | None, int]:
    """Relay IPs (None: coturn's default) and ports per IP for 2 x *pairs* allocations."""
    need = 2 * pairs + 100
    if need <= MAX_RELAY_RANGE:
        return None, need
    ips = math.ceil(need / (MAX_RELAY_RANGE - 100))
    return tuple(f"127.0.0.{2 + k}" for k in range(ips)), math.ceil(need / ips) + 50


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="allocation pairs (default 200)")
    parser.add_argument("--rate", type=float, default=50.0, help="packets/s per pair (50)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of relaying (20)")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    if not 2 <= args.pairs <= 2000 or args.pairs % USERS:
        parser.error(f"--pairs {args.pairs}: give an even number from 2 to 2000")
    if not 0 < args.rate <= 1000:
        parser.error(f"--rate {args.rate:g}: give 0 to 1000 packets/s per pair")
    if not 3 <= args.duration <= 600:
        parser.error(f"--duration {args.duration}: give 3 to 600 seconds")
    _locust()
    subreaper = _subreaper()
    say: Callable[[str], None] = (
        (lambda s: print(s, file=sys.stderr)) if args.json else (lambda s: print(s))
    )

    from tests.servers.coturn import running_coturn

    relay_ips, relay_range = relay_plan(args.pairs)
    ways: list[Way] = [
        TurncheckLoad(),
        LocustWay("Locust, 1 worker", None),
        LocustWay("Locust, --processes 2", 2),
    ]
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="locust_bench_") as tmp,
        running_coturn(
            Path(tmp) / "coturn",
            tls=False,
            relay_range=relay_range,
            relay_ips=relay_ips,
            extra=["total-quota=0", "user-quota=0"],
        ) as srv,
    ):
        url = f"turn:127.0.0.1:{srv.port}?transport=udp"
        load = Load(url, args.pairs, args.rate, args.duration)
        say(
            f"coturn 127.0.0.1:{srv.port} (udp), pid {srv.process.pid}; {os.cpu_count()} cores;"
            f" {args.pairs} pairs x {args.rate:g} packets/s x {SIZE} B for {args.duration} s,"
            f" three ways one after the other\n"
            f"turncheck load {url} --clients {args.pairs} --rate {args.rate:g} --duration"
            f" {args.duration} --size {SIZE} --loop asyncio --json\n"
            f"locust -f LOCUSTFILE --headless -u {USERS} -r {USERS} --run-time {args.duration}s"
            f" --csv PREFIX --turn-url {url} --turn-pairs {args.pairs // USERS} --turn-rate"
            f" {args.rate:g} --turn-size {SIZE}  [--master + 1 --worker | --processes 2]"
        )
        if not subreaper:
            say("note: not a child subreaper: a worker its master leaves is not counted")
        for index, way in enumerate(ways):
            if index:
                time.sleep(PAUSE)
            run = measure(way, load, srv.process.pid, Path(tmp), index)
            runs.append(run)
            state = "ok" if run.ok else "FAILED"
            say(f"{way.name}: {state}{': ' + run.note if run.note else ''}")

    base = runs[0]
    if args.json:
        doc = {
            "settings": {
                "pairs": args.pairs,
                "rate_pps": args.rate,
                "duration_s": args.duration,
                "size": SIZE,
                "users": USERS,
                "cores": os.cpu_count(),
            },
            "runs": [r.to_json() for r in runs],
            "overhead": {
                r.way: {
                    "steady": r.steady_per_1k / base.steady_per_1k
                    if base.steady_per_1k > 0 and r.steady_per_1k == r.steady_per_1k
                    else None,
                    "all_in": r.cpu_per_1k / base.cpu_per_1k
                    if base.cpu_per_1k > 0 and r.cpu_per_1k == r.cpu_per_1k
                    else None,
                }
                for r in runs[1:]
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        print()
        tables(runs)
        offered = args.pairs * args.rate
        print(
            f"\noffered: {args.pairs} pairs x {args.rate:g} = {offered:,.0f} echoed packets/s."
            f"  echoed pkt/s: echoed / relay s (turncheck: sending_time_s; Locust: master's log,"
            f"\n'{SPAWNING}' to '{TIME_LIMIT}').  RTT: exact (turncheck: every echo; Locust:"
            f" PREFIX_turn.csv, every echo to 3 significant digits).\nevents 1 in: Locust"
            f" fired 1 packet in k as a request event.  CPU s: every process of the run (rusage,"
            f" start-up to exit).\nCPU s/1k: CPU seconds per 1,000 echoed packets; all in: CPU s"
            f" / echoed; steady: over the relaying less its first {LEAD:g} s and last {TAIL:g} s"
            f"\n(/proc, every {SAMPLE_EVERY:g} s).  overhead: CPU per packet / turncheck load's."
            f"  coturn CPU s/1k: the server, steady.\ncoturn, generator, idle, other: shares of"
            f" the machine's {os.cpu_count()} cores over the steady window (/proc/stat);"
            f" generator: the run's processes."
        )
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
