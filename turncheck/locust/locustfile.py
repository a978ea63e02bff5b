"""turncheck's load as a Locust user: `locust -f "$(python -m turncheck.locust)" …`.

Each Locust user holds --turn-pairs allocation pairs relaying echoed packets: turncheck.load's
run_load, reached through its public hook alone (LoadHook, Sample, Counters). The runs of one
process share one asyncio loop in a native thread. Locust patches the process with gevent, so
that thread, its epoll selector and its getaddrinfo are gevent's saved originals; the loop never
calls Locust: it queues samples, and a greenlet fires events.request from them.

What a user reads, and in which unit (docs/locust.md):
- request rows of type TURN, in microseconds and named so: connect, TLS handshake, Allocate,
  ChannelBind, echo RTT, jitter per pair. Locust keeps response times below 100 as whole units
  and rounds larger ones to 2 significant digits, so a 0.26 ms echo would read 0 in ms and
  reads 260 in µs. Locust's web UI and HTML report title their columns "(ms)": every row here
  being in µs, this locustfile relabels them "(µs)" (console and CSV titles name no unit).
- a lost packet is a failure of the echo row. Echoes and losses are fired as samples of the
  packets (1 in k, at most --turn-events-per-second per process), so the failure ratio is the
  loss ratio and Locust's own timing stays clean (the issue's spike: 4,900 events/s pushed the
  RTT p99 from 1.1 to 4.8 ms).
- exact totals (sent, echoed, lost, late, pairs, allocations deleted) and exact percentiles of
  every echo and set-up phase, merged on the master from each worker's report
  (report_to_master / worker_report): the web UI's "TURN exact" tab, PREFIX_turn.csv beside
  Locust's CSV files, a section of the HTML report, and the log at the end.

Every stop is clean: before Locust's own quit, the master asks the workers to stop their loads
and waits for their final reports (test_stopping, quitting); a worker that stops on its own
sends its final report before Locust tells the master it quit; SIGINT is turned into SIGTERM
(Ctrl-C then takes the path of a supervisor's stop); each run deletes its allocations; and
allocations ask for a short LIFETIME, refreshed, so a SIGKILLed worker's expire soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import html
import importlib
import io
import json
import logging
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import User, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from turncheck.api import ProbeOptions, settings_for
from turncheck.browser import parse_ice_url
from turncheck.config import Credentials, read_secret, rest_credentials
from turncheck.errors import InputError, TurncheckError
from turncheck.explain import explain
from turncheck.load import (
    MIN_SIZE,
    SETUP_PHASES,
    Counters,
    LoadHook,
    LoadResult,
    LoadSettings,
    Sample,
    check_limits,
    run_load,
)
from turncheck.plan import Target, build_targets, command_line_entries, parse_transports
from turncheck.urls import Transport

# gevent ships no type information: its two modules used here are typed as Any.
gevent: Any = importlib.import_module("gevent")
monkey: Any = importlib.import_module("gevent.monkey")
log = logging.getLogger("turncheck.locust")

REQUEST_TYPE = "TURN"
UNIT = "µs"
ROWS = {
    "connect": f"connect ({UNIT})",
    "tls": f"TLS handshake ({UNIT})",
    "allocate": f"Allocate ({UNIT})",
    "channel_bind": f"ChannelBind ({UNIT})",
    "echo": f"echo RTT ({UNIT})",
    "loss": f"echo RTT ({UNIT})",  # a lost packet: a failure of the echo row
    "jitter": f"jitter per pair ({UNIT})",
}
EXACT = ("echo", *SETUP_PHASES, "jitter")  # the distributions kept exactly (every sample)
PUMP_EVERY = 0.1  # seconds between the greenlet's rounds of firing queued samples
STOP_MESSAGE = "turncheck_stop"  # master → workers: stop the loads, send the final report
FINISH_BOUND = 30.0  # seconds a stop waits for loads to end and reports to come, at most
REST_TTL = 86400  # seconds of minted TURN REST credentials


# -- options: Locust's own command line, forwarded by the master to every worker --------------


def _arguments(parser: Any, **_: Any) -> None:
    # parser.add_argument itself (not an argument group): Locust shows only those on the web
    # UI's start form. Credentials come from the environment or a file only, never argv.
    group = parser
    group.add_argument("--turn-url", default="", help="turn: or turns: URL to load")
    group.add_argument(
        "--turn-transport", default="", help="udp, tcp or tls for a bare URL (default udp)"
    )
    group.add_argument("--turn-pairs", type=int, default=1, help="allocation pairs per user")
    group.add_argument("--turn-rate", type=float, default=50.0, help="packets/s per pair")
    group.add_argument("--turn-size", type=int, default=160, help="bytes per packet")
    group.add_argument(
        "--turn-lifetime",
        type=int,
        default=60,
        help="allocation LIFETIME asked for, s (refreshed every third of it)",
    )
    group.add_argument(
        "--turn-loss-after", type=float, default=2.0, help="s without echo: a packet is lost"
    )
    group.add_argument(
        "--turn-events-per-second",
        type=int,
        default=1000,
        help="echo and loss events fired per process, at most (exact totals kept apart)",
    )
    group.add_argument("--turn-timeout", type=float, default=5.0, help="set-up timeout, s")
    group.add_argument("--turn-ca-file", default="", help="PEM CA file for turns:")
    group.add_argument(
        "--turn-username",
        default="",
        help="TURN username (default TURNCHECK_USERNAME); the password: TURNCHECK_CREDENTIAL "
        "or --turn-credential-file",
    )
    group.add_argument("--turn-credential-file", default="", help="file holding the TURN password")
    group.add_argument(
        "--turn-secret-file",
        default="",
        help="coturn static-auth-secret file (or TURNCHECK_SECRET): mint REST credentials",
    )
    group.add_argument("--turn-rest-user", default="", help="user part of minted REST names")


@dataclass(frozen=True, slots=True)
class Options:
    """The --turn-* options of a test, checked."""

    url: str
    transport: str
    pairs: int
    rate: float
    size: int
    lifetime: int
    loss_after: float
    events_per_second: int
    timeout: float
    ca_file: str
    username: str
    credential_file: str
    secret_file: str
    rest_user: str

    @classmethod
    def of(cls, parsed: Any) -> Options:
        """From Locust's parsed options; InputError names the option at fault."""
        opts = cls(
            url=str(getattr(parsed, "turn_url", "") or "").strip(),
            transport=str(getattr(parsed, "turn_transport", "") or "").strip(),
            pairs=int(getattr(parsed, "turn_pairs", 1)),
            rate=float(getattr(parsed, "turn_rate", 50.0)),
            size=int(getattr(parsed, "turn_size", 160)),
            lifetime=int(getattr(parsed, "turn_lifetime", 60)),
            loss_after=float(getattr(parsed, "turn_loss_after", 2.0)),
            events_per_second=int(getattr(parsed, "turn_events_per_second", 1000)),
            timeout=float(getattr(parsed, "turn_timeout", 5.0)),
            ca_file=str(getattr(parsed, "turn_ca_file", "") or ""),
            username=str(getattr(parsed, "turn_username", "") or ""),
            credential_file=str(getattr(parsed, "turn_credential_file", "") or ""),
            secret_file=str(getattr(parsed, "turn_secret_file", "") or ""),
            rest_user=str(getattr(parsed, "turn_rest_user", "") or ""),
        )
        if not opts.url:
            raise InputError("--turn-url: give the turn: or turns: URL to load")
        if not parse_ice_url(opts.url).is_turn:
            raise InputError(f"--turn-url {opts.url}: a turn: or turns: URL is needed")
        if not 1 <= opts.pairs <= 20000:
            raise InputError(f"--turn-pairs {opts.pairs}: give 1 to 20000 pairs per user")
        if not 0 < opts.loss_after <= 60:
            raise InputError(f"--turn-loss-after {opts.loss_after:g}: give 0 to 60 seconds")
        if not 1 <= opts.events_per_second <= 100000:
            raise InputError(f"--turn-events-per-second {opts.events_per_second}: give 1 to 100000")
        if not 0 < opts.timeout <= 600:
            raise InputError(f"--turn-timeout {opts.timeout:g}: give 0 to 600 seconds")
        if not 3 <= opts.lifetime <= 3600:
            raise InputError(f"--turn-lifetime {opts.lifetime}: give 3 to 3600 seconds")
        if not 0 < opts.rate <= 1000:
            raise InputError(f"--turn-rate {opts.rate:g}: give 0 to 1000 packets per second")
        if not MIN_SIZE <= opts.size <= 1400:
            raise InputError(f"--turn-size {opts.size}: give {MIN_SIZE} to 1400 bytes")
        return opts

    def load(self, pairs: int | None = None) -> LoadSettings:
        """One user's run: until stopped, its RTTs kept by this edge, not by the run."""
        return LoadSettings(
            clients=self.pairs if pairs is None else pairs,
            duration=None,
            rate=self.rate,
            size=self.size,
            lifetime=self.lifetime,
            loss_after=self.loss_after,
            keep_rtts=False,
        )

    def target(self, credentials: Credentials, source: str) -> Target:
        (entry,) = command_line_entries([self.url], credentials, source)
        override = parse_transports(self.transport) if self.transport else None
        if override is not None and len(override) != 1:
            raise InputError("--turn-transport: a load test uses one control transport")
        return build_targets([entry], override or (Transport.UDP,))[0]

    def credentials(self) -> tuple[Credentials, str]:
        """From this process's environment or files, never from the command line."""
        secret = read_secret(
            self.secret_file or None, os.environ.get("TURNCHECK_SECRET"), "--turn-secret-file"
        )
        if secret is not None:
            minted = rest_credentials(secret, self.rest_user or None, REST_TTL)
            return minted, "TURN REST API credentials from the shared secret"
        username = self.username or os.environ.get("TURNCHECK_USERNAME", "")
        password = read_secret(
            self.credential_file or None,
            os.environ.get("TURNCHECK_CREDENTIAL"),
            "--turn-credential-file",
            "TURNCHECK_CREDENTIAL",
        )
        source = "--turn-credential-file" if self.credential_file else "TURNCHECK_CREDENTIAL"
        if not username or not password:
            raise InputError(
                "TURN credentials: set TURNCHECK_USERNAME (or --turn-username) and "
                "TURNCHECK_CREDENTIAL (or --turn-credential-file), or TURNCHECK_SECRET (or "
                "--turn-secret-file), in the environment of every process that runs users"
            )
        return Credentials(username, password), source


# -- exact distributions ----------------------------------------------------------------------


def bucket(us: float) -> int:
    """µs to 3 significant digits (1 µs below 1 ms): a key of an exact, mergeable histogram."""
    if us < 1000:
        return max(0, round(us))
    digits = int(math.log10(us)) - 2
    return int(round(us, -digits))


def percentiles(
    counts: dict[int, int], points: tuple[float, ...] = (50, 90, 99)
) -> dict[str, int] | None:
    """Percentiles (nearest rank) and the largest bucket of a histogram; None when empty."""
    total = sum(counts.values())
    if not total:
        return None
    keys = sorted(counts)
    out: dict[str, int] = {}
    for p in points:
        rank = max(1, math.ceil(p / 100 * total))
        seen = 0
        for key in keys:
            seen += counts[key]
            if seen >= rank:
                out[f"p{p:g}"] = key
                break
    out["max"] = keys[-1]
    return out


def merge_counts(into: dict[int, int], more: dict[Any, Any]) -> None:
    for key, count in more.items():
        k = int(key)
        into[k] = into.get(k, 0) + int(count)


@dataclass(frozen=True, slots=True)
class Figures:
    """What one process counted, or the sum of every worker's: exact."""

    counters: Counters
    histograms: dict[str, dict[int, int]]  # kind → µs bucket → count
    fired: dict[str, tuple[int, int]]  # request row → (requests, failures) fired as events
    stride: int  # 1 in this many packets was fired as an event (the largest in use)
    processes: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": self.counters.to_json(),
            "histograms": {
                kind: {str(k): v for k, v in counts.items()}
                for kind, counts in self.histograms.items()
            },
            "fired": {name: list(pair) for name, pair in self.fired.items()},
            "stride": self.stride,
            "processes": self.processes,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Figures:
        histograms: dict[str, dict[int, int]] = {}
        for kind, counts in dict(doc.get("histograms", {})).items():
            merge_counts(histograms.setdefault(kind, {}), counts)
        fired = {str(k): (int(v[0]), int(v[1])) for k, v in dict(doc.get("fired", {})).items()}
        return cls(
            Counters.from_json(dict(doc.get("counters", {}))),
            histograms,
            fired,
            int(doc.get("stride", 1)),
            int(doc.get("processes", 1)),
        )

    @classmethod
    def total(cls, parts: list[Figures]) -> Figures:
        counters = Counters()
        histograms: dict[str, dict[int, int]] = {}
        fired: dict[str, tuple[int, int]] = {}
        for part in parts:
            counters = counters + part.counters
            for kind, counts in part.histograms.items():
                merge_counts(histograms.setdefault(kind, {}), counts)
            for name, (requests, failures) in part.fired.items():
                before = fired.get(name, (0, 0))
                fired[name] = (before[0] + requests, before[1] + failures)
        stride = max((p.stride for p in parts), default=1)
        return cls(counters, histograms, fired, stride, sum(p.processes for p in parts))

    def rows(self) -> list[dict[str, str]]:
        """(figure, value, unit) rows: the web UI tab, the CSV file and the HTML section."""
        c = self.counters
        out = [
            ("packets sent", c.sent, "packets"),
            ("packets echoed", c.echoed, "packets"),
            ("packets lost", c.lost, "packets"),
            ("loss", f"{c.loss_pct:.3f}", "%"),
            ("echoes after the loss deadline (counted lost)", c.late, "packets"),
            ("duplicate echoes", c.duplicates, "packets"),
            ("packets in flight", c.in_flight, "packets"),
            ("send errors", c.send_errors, "packets"),
            ("pairs up", c.pairs_up, "pairs"),
            ("pairs failed to set up", c.pairs_failed, "pairs"),
            ("pairs on Send indications (ChannelBind failed)", c.pairs_unbound, "pairs"),
            ("allocations deleted", c.deleted, "allocations"),
            ("allocations not deleted", c.delete_failed, "allocations"),
        ]
        for kind in EXACT:
            stats = percentiles(self.histograms.get(kind, {}))
            if stats is None:
                continue
            name = ROWS[kind].rsplit(" (", 1)[0]
            n = sum(self.histograms[kind].values())
            out.append((f"{name}: samples", n, "samples"))
            out.extend((f"{name} {k}", v, UNIT) for k, v in stats.items())
        for name, (requests, failures) in sorted(self.fired.items()):
            out.append((f"events fired, {name}", f"{requests} / {failures}", "requests / failures"))
        out.append(("echo events fired", f"1 in {self.stride}", "packets"))
        out.append(("processes reporting", self.processes, "processes"))
        return [{"figure": f, "value": str(v), "unit": u} for f, v, u in out]

    def csv_text(self) -> str:
        data = io.StringIO()
        writer = csv.writer(data)
        writer.writerow(["Figure", "Value", "Unit"])
        for row in self.rows():
            writer.writerow([row["figure"], row["value"], row["unit"]])
        return data.getvalue()

    def html_section(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(r['figure'])}</td><td style='text-align:right'>"
            f"{html.escape(r['value'])}</td><td>{html.escape(r['unit'])}</td></tr>"
            for r in self.rows()
        )
        return (
            "<section id='turncheck-exact' style='font-family:Roboto,Helvetica,Arial,"
            "sans-serif;max-width:1200px;margin:2em auto;padding:0 24px'>"
            "<h2>TURN exact figures (turncheck)</h2><p>Every packet, every worker: exact "
            "counters; percentiles to 3 significant digits. The request rows above are in "
            f"{UNIT}.</p><table border='1' cellpadding='4' style='border-collapse:collapse'>"
            f"<tr><th>Figure</th><th>Value</th><th>Unit</th></tr>{cells}</table></section>"
        )

    def brief(self) -> dict[str, Any]:
        """For the log: the counters, the events fired, each distribution's percentiles."""
        doc = self.to_json()
        del doc["histograms"]
        doc["distributions"] = {
            kind: {"samples": sum(counts.values()), **(percentiles(counts) or {})}
            for kind, counts in self.histograms.items()
            if counts
        }
        return doc

    def summary(self) -> str:
        c = self.counters
        echo = percentiles(self.histograms.get("echo", {})) or {}
        rtt = " ".join(f"{k} {v}" for k, v in echo.items()) or "-"
        return (
            f"sent {c.sent}, echoed {c.echoed}, lost {c.lost} ({c.loss_pct:.3f} %), late "
            f"{c.late}, pairs up {c.pairs_up}, failed {c.pairs_failed}, allocations deleted "
            f"{c.deleted}, not deleted {c.delete_failed}; echo RTT {UNIT}: {rtt}"
        )


def relabel(text: str) -> str:
    """Locust's web UI and HTML report title response times "(ms)"; every row here is µs."""
    return text.replace("(ms)", f"({UNIT})")


def with_section(report: str, figures: Figures) -> str:
    """An HTML report with the exact figures and the µs titles."""
    report = relabel(report)
    section = figures.html_section()
    end = report.rfind("</body>")  # the document's own: its inlined script has one too
    if end < 0:
        return report + section
    return report[:end] + section + report[end:]


# -- the native loop --------------------------------------------------------------------------

_getaddrinfo = monkey.get_original("socket", "getaddrinfo")


class NativeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop for a native thread of a gevent-patched process."""

    def __init__(self) -> None:
        super().__init__(monkey.get_original("selectors", "EpollSelector")())

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        # The default executor's threads would be greenlets of a hub that never runs here:
        # resolve on this thread (a URL's name, once per user).
        return _getaddrinfo(*args, **kwargs)


class Job:
    """A coroutine on the loop; done, result and error are read by greenlets."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Engine:
    """This process's loop thread, its queue of samples, and the greenlet that fires them."""

    def __init__(self) -> None:
        self.loop: NativeLoop | None = None
        self._ready: list[NativeLoop] | None = None  # the thread's loop, once it runs
        self._thread_done = False
        self.queue: deque[tuple[str, float | None, str | None]] = deque()
        self.runs: list[tuple[LoadHook, Job]] = []
        self.ended = Counters()  # runs that ended in this test
        self.histograms: dict[str, dict[int, int]] = {kind: {} for kind in EXACT}
        self.fired: dict[str, list[int]] = {}
        self.size = 0  # bytes per packet, the echo rows' response length
        self.cap = 1000  # echo and loss events per second, at most
        self.stride = 1  # 1 in stride packets is fired
        self._window_end = 0.0
        self._outcomes = 0
        self._last_outcomes = 0
        self._fired_now = 0
        self.pump: gevent.Greenlet | None = None
        self.environment: Environment | None = None
        self.stopping = False  # this test's loads are being stopped: no new ones
        self.finished = False  # this test's loads ended and the final report went

    # -- loop thread --

    def start(self) -> NativeLoop:
        """The loop, its thread started by the first user (the others wait for it)."""
        if self.loop is not None:
            return self.loop
        if self._ready is None:
            start_new_thread = monkey.get_original("_thread", "start_new_thread")
            self._ready = []
            self._thread_done = False
            start_new_thread(self._run, (self._ready,))
        ready = self._ready
        deadline = time.monotonic() + 10
        while not ready and time.monotonic() < deadline:
            gevent.sleep(0.005)
        if not ready:
            raise RuntimeError("turncheck: the event loop thread did not start")
        self.loop = ready[0]
        return self.loop

    def _run(self, ready: list[NativeLoop]) -> None:
        loop = NativeLoop()
        ready.append(loop)
        try:
            loop.run_forever()
            # Whatever is left (a stop that timed out) is cancelled: its allocations deleted.
            left = asyncio.all_tasks(loop)
            for t in left:
                t.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        finally:
            loop.close()
            self._thread_done = True

    def submit(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Job:
        loop = self.start()
        job = Job()

        def begin() -> None:
            t = loop.create_task(make())

            def ended(t: asyncio.Task[Any]) -> None:
                if t.cancelled():
                    job.error = asyncio.CancelledError()
                elif t.exception() is not None:
                    job.error = t.exception()
                else:
                    job.result = t.result()
                job.done = True

            t.add_done_callback(ended)

        loop.call_soon_threadsafe(begin)
        return job

    def close(self, bound: float = 10.0) -> None:
        loop, self.loop, self._ready = self.loop, None, None
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        deadline = time.monotonic() + bound
        while not self._thread_done and time.monotonic() < deadline:
            gevent.sleep(0.01)

    # -- samples: called on the loop thread --

    def on_sample(self, sample: Sample) -> None:
        kind = sample.kind
        if kind == "echo" or kind == "loss":
            if sample.seconds is not None:
                counts = self.histograms["echo"]
                key = bucket(sample.seconds * 1e6)
                counts[key] = counts.get(key, 0) + 1
            if self._keep():
                us = None if sample.seconds is None else sample.seconds * 1e6
                self.queue.append((kind, us, None))
            return
        us = None if sample.seconds is None else sample.seconds * 1e6
        if us is not None:
            counts = self.histograms[kind]
            key = bucket(us)
            counts[key] = counts.get(key, 0) + 1
        self.queue.append((kind, us, sample.failure))

    def _keep(self) -> bool:
        """1 in stride packets, stride from the last second's packets, and at most cap/s: echoes
        and losses alike, so the failure ratio of the fired events is the loss ratio."""
        now = time.monotonic()
        if now >= self._window_end:
            elapsed = now - (self._window_end - 1.0)
            rate = self._last_outcomes / elapsed if 0 < elapsed < 5 else self._last_outcomes
            self.stride = max(1, math.ceil(rate / self.cap))
            self._window_end = now + 1.0
            self._last_outcomes = 0
            self._fired_now = 0
        self._outcomes += 1
        self._last_outcomes += 1
        if self._outcomes % self.stride or self._fired_now >= self.cap:
            return False
        self._fired_now += 1
        return True

    # -- events: greenlets only --

    def ensure_pump(self, environment: Environment) -> None:
        self.environment = environment
        if self.pump is None or self.pump.dead:
            self.pump = gevent.spawn(self._pump)

    def _pump(self) -> None:
        while True:
            self.fire_queued()
            gevent.sleep(PUMP_EVERY)

    def fire_queued(self) -> None:
        environment = self.environment
        if environment is None:
            return
        queue = self.queue
        fire: Any = environment.events.request.fire
        while queue:
            kind, us, failure = queue.popleft()
            name = ROWS[kind]
            exception: str | None = None
            if kind == "loss":
                exception = "lost: no echo"
            elif failure is not None:
                exception = failure
            count = self.fired.setdefault(name, [0, 0])
            count[0] += 1
            count[1] += exception is not None
            length = self.size if kind in ("echo", "loss") else 0
            fire(
                request_type=REQUEST_TYPE,
                name=name,
                response_time=us,
                response_length=length,
                exception=exception,
                context={},
            )

    # -- this process's figures --

    def figures(self) -> Figures:
        counters = self.ended
        for hook, _ in list(self.runs):  # running, or ended and not yet collected
            counters = counters + hook.counters()
        return Figures(
            counters,
            {kind: counts.copy() for kind, counts in self.histograms.items()},
            {name: (c[0], c[1]) for name, c in self.fired.items()},
            self.stride,
        )

    def reset(self) -> None:
        """A new test: nothing counted yet (runs of an earlier test have ended)."""
        self.runs = [(h, j) for h, j in self.runs if not j.done]
        self.ended = Counters()
        self.histograms = {kind: {} for kind in EXACT}
        self.fired = {}
        self.finished = False
        self.stopping = False

    def collect(self, job: Job, hook: LoadHook) -> None:
        """A run has ended: its final counters join the test's totals."""
        if (hook, job) in self.runs:
            self.runs.remove((hook, job))
            result = job.result
            self.ended = self.ended + (
                result.counters if isinstance(result, LoadResult) else hook.counters()
            )

    def stop_all(self, bound: float = FINISH_BOUND) -> None:
        """Stop every run gracefully and wait for them (bounded), firing their last samples."""
        self.stopping = True
        for hook, _ in self.runs:
            hook.stop()
        deadline = time.monotonic() + bound
        while any(not job.done for _, job in self.runs) and time.monotonic() < deadline:
            self.fire_queued()
            gevent.sleep(0.02)
        for hook, job in list(self.runs):
            if job.done:
                self.collect(job, hook)
        self.fire_queued()


ENGINE = Engine()


def _wait(job: Job, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while not job.done and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return job.done


# -- the user ---------------------------------------------------------------------------------


class TurnUser(User):
    """--turn-pairs allocation pairs relaying echoed packets, from on_start to on_stop."""

    wait_time = constant(1)
    _run: tuple[LoadHook, Job] | None = None

    def on_start(self) -> None:
        environment = self.environment
        if ENGINE.stopping:  # spawned while this test's loads stop: figures are final
            raise StopUser()
        try:
            opts = Options.of(environment.parsed_options)
            credentials, source = opts.credentials()
            target = opts.target(credentials, source)
            pairs_here = opts.pairs * (len(ENGINE.runs) + 1)
            try:
                check_limits(opts.load(pairs_here), target.transport.value)
            except InputError as exc:
                raise InputError(f"{pairs_here} pairs in this process: {exc}") from None
            settings, resolver = settings_for(
                ProbeOptions(
                    entries=(),
                    relay=None,
                    timeout=opts.timeout,
                    ca_file=opts.ca_file or None,
                ),
                {target.transport},
            )
        except TurncheckError as exc:
            log.error("turncheck: %s", exc)
            environment.process_exit_code = 2
            raise StopUser() from None
        ENGINE.size = opts.size
        ENGINE.cap = opts.events_per_second
        ENGINE.ensure_pump(environment)
        hook = LoadHook(ENGINE.on_sample)
        load = opts.load()

        async def run() -> LoadResult:
            from turncheck.errors import DnsFailure

            try:
                endpoints = await resolver.endpoints(target)
            except DnsFailure as exc:
                ENGINE.queue.append(("connect", None, explain(exc).reason))
                raise
            return await run_load(endpoints[0], load, settings, hook=hook)

        self._run = (hook, ENGINE.submit(run))
        ENGINE.runs.append(self._run)

    @task
    def hold(self) -> None:
        """The load runs on the loop thread; the user holds it until Locust stops the user."""
        if self._run is not None and self._run[1].done:  # it failed: say so once
            hook, job = self._run
            self._run = None
            ENGINE.collect(job, hook)
            if job.error is not None and not isinstance(job.error, asyncio.CancelledError):
                log.error("turncheck: a user's load ended: %s", job.error)

    def on_stop(self) -> None:
        if self._run is None:
            return
        hook, job = self._run
        hook.stop()
        _wait(job, FINISH_BOUND)
        ENGINE.collect(job, hook)


# -- distribution: exact figures to the master, every stop clean ------------------------------


class Coordinator:
    """The figures of each worker on the master (their latest absolute report, final or not),
    and the stop protocol of every process."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.reports: dict[str, Figures] = {}
        self.final: set[str] = set()
        self.collected = False

    def merged(self, environment: Environment) -> Figures:
        if isinstance(environment.runner, MasterRunner):
            return Figures.total(list(self.reports.values()))
        return ENGINE.figures()


COORDINATOR = Coordinator()


def _send_final(environment: Environment) -> None:
    """A worker's last report, through Locust's own stats message: its request statistics
    and the exact figures, before Locust tells the master that this worker quits."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return
    data: dict[str, Any] = {}
    report: Any = environment.events.report_to_master
    report.fire(client_id=runner.client_id, data=data)
    with contextlib.suppress(Exception):  # the master is gone: nothing to report to
        runner.send_message("stats", data)


def _finish(environment: Environment) -> None:
    """Worker or standalone: stop the loads (allocations deleted), fire their last samples,
    send the final report. Idempotent within a test."""
    if ENGINE.finished:
        return
    ENGINE.stop_all()
    ENGINE.finished = True
    _send_final(environment)


def _collect(environment: Environment) -> None:
    """Master: ask every worker to finish, and wait (bounded) for each one's final report or
    for it to leave. Idempotent within a test."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner) or COORDINATOR.collected:
        return
    COORDINATOR.collected = True
    with contextlib.suppress(Exception):
        runner.send_message(STOP_MESSAGE, None)
    deadline = time.monotonic() + FINISH_BOUND
    while time.monotonic() < deadline:
        waiting = [
            node.id
            for node in runner.clients.all
            if node.id not in COORDINATOR.final and node.state != "missing"
        ]
        if not waiting:
            break
        gevent.sleep(0.05)


def _on_init(environment: Environment, **_: Any) -> None:
    COORDINATOR.environment = environment
    runner = environment.runner
    if runner is None:
        return
    parsed = environment.parsed_options
    headless = parsed is not None and (parsed.headless or parsed.autostart)
    if not isinstance(runner, WorkerRunner) and headless:
        try:  # the master (or a standalone run) checks the options before any worker starts
            Options.of(parsed)
        except TurncheckError as exc:
            log.error("turncheck: %s", exc)
            raise SystemExit(2) from None
    if isinstance(runner, WorkerRunner):

        def on_stop_message(environment: Environment, msg: Any, **_: Any) -> None:
            _finish(environment)

        runner.register_message(STOP_MESSAGE, on_stop_message, concurrent=True)
    # Added after Locust's own quitting listeners, and quitting fires in reverse: these run
    # first, while the runner still talks to the workers (or the master).
    quitting: Any = environment.events.quitting
    quitting.add_listener(_on_quitting)
    _sigint_is_sigterm()
    if environment.web_ui is not None:
        _extend_web_ui(environment)


def _sigint_is_sigterm() -> None:
    """Ctrl-C takes the path of SIGTERM: Locust's SIGINT path writes the HTML report before the
    last reports arrive (the issue's spike); a second Ctrl-C is Python's own again."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGTERM)

    with contextlib.suppress(ValueError, OSError):  # not the main thread
        signal.signal(signal.SIGINT, handler)


def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _collect(environment)
    else:
        _finish(environment)


def _on_test_start(environment: Environment, **_: Any) -> None:
    ENGINE.reset()
    COORDINATOR.reports.clear()
    COORDINATOR.final.clear()
    COORDINATOR.collected = False


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    _on_quitting(environment)


def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _write_outputs(environment)


def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["turncheck"] = {"figures": ENGINE.figures().to_json(), "final": ENGINE.finished}


def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    doc = data.get("turncheck")
    if not isinstance(doc, dict):
        return
    COORDINATOR.reports[client_id] = Figures.from_json(dict(doc.get("figures", {})))
    if doc.get("final"):
        COORDINATOR.final.add(client_id)


def _on_quit(exit_code: int, **_: Any) -> None:
    environment = COORDINATOR.environment
    if environment is not None:
        if isinstance(environment.runner, WorkerRunner):
            doc = {"worker": environment.runner.client_id, **ENGINE.figures().brief()}
            log.info("turncheck totals of this worker: %s", json.dumps(doc))
        else:
            _write_outputs(environment, final=True)
    ENGINE.close()


# -- outputs: CSV file, HTML report, web UI tab, log ------------------------------------------


def _write_outputs(environment: Environment, final: bool = False) -> None:
    """The merged figures: PREFIX_turn.csv and the log; at the end (*final*, after Locust's
    runner quit, every report in), Locust's own CSV rows and the HTML report too, whichever
    way the run ended (Locust's SIGTERM path writes no HTML report of its own)."""
    figures = COORDINATOR.merged(environment)
    parsed = environment.parsed_options
    prefix = getattr(parsed, "csv_prefix", None) if parsed is not None else None
    if prefix:
        Path(f"{prefix}_turn.csv").write_text(figures.csv_text(), encoding="utf-8")
    if final and prefix:
        from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

        stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
        writers = (("stats", stats_csv.requests_csv), ("failures", stats_csv.failures_csv))
        for suffix, write in writers:
            with open(f"{prefix}_{suffix}.csv", "w", newline="", encoding="utf-8") as f:
                write(csv.writer(f))
    html_file = getattr(parsed, "html_file", None) if parsed is not None else None
    if final and html_file:
        from locust import html as locust_html

        report_of: Any = locust_html.get_html_report
        locust_html.process_html_filename(parsed)
        report = report_of(environment, show_download_link=False)
        path = Path(getattr(parsed, "html_file", html_file))
        path.write_text(with_section(report, figures), encoding="utf-8")
    if final:
        for worker, part in sorted(COORDINATOR.reports.items()):
            log.info("turncheck totals reported by worker %s: %s", worker, json.dumps(part.brief()))
    log.info("turncheck totals (%d processes): %s", figures.processes, figures.summary())
    log.info("turncheck totals: %s", json.dumps(figures.brief()))


def _extend_web_ui(environment: Environment) -> None:
    from flask import Response, request

    web_ui = environment.web_ui
    assert web_ui is not None
    app: Any = web_ui.app
    web_ui.template_args["extended_tabs"] = [{"title": "TURN exact", "key": "turncheck"}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": "turncheck",
            "structure": [
                {"key": "figure", "title": "Figure"},
                {"key": "value", "title": "Value"},
                {"key": "unit", "title": "Unit"},
            ],
        }
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./turncheck/csv", "title": "TURN exact figures (turncheck) CSV"}
    ]

    def exact_csv() -> Response:
        body = COORDINATOR.merged(environment).csv_text()
        response = Response(body, mimetype="text/csv")
        response.headers["Content-disposition"] = "attachment;filename=turn_exact.csv"
        return response

    app.add_url_rule("/turncheck/csv", "turncheck_csv", exact_csv)

    def extend(response: Response) -> Response:
        path = request.path
        if path.endswith("/stats/requests") and response.is_json:
            doc = response.get_json()
            if isinstance(doc, dict):
                rows = COORDINATOR.merged(environment).rows()
                doc["extended_stats"] = [{"key": "turncheck", "data": rows}]
                response.set_data(json.dumps(doc))
        elif path.endswith(".js") or path.endswith("/stats/report"):
            response.direct_passthrough = False
            text = response.get_data(as_text=True)
            if path.endswith("/stats/report"):
                text = with_section(text, COORDINATOR.merged(environment))
            else:
                text = relabel(text)
            response.set_data(text)
        return response

    app.after_request(extend)


def _register(events: Any) -> None:
    """Locust's event hooks (untyped): every listener of this locustfile."""
    events.init_command_line_parser.add_listener(_arguments)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stopping.add_listener(_on_test_stopping)
    events.test_stop.add_listener(_on_test_stop)
    events.report_to_master.add_listener(_on_report_to_master)
    events.worker_report.add_listener(_on_worker_report)
    events.quit.add_listener(_on_quit)


_register(events)

__all__ = ["Engine", "Figures", "Options", "TurnUser", "bucket", "percentiles", "relabel"]
