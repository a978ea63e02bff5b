"""turncheck's load on Locust (issue 23): real Locust processes against a real coturn on loopback.

A master with --expect-workers 2 and two workers, headless: the master's request and failure
counts equal the sums of what each worker fired (its own log), the merged exact packet counters
equal the workers' and coturn's own (its per-session peer usage), every allocation is deleted
(coturn's log), and the CSV files and the HTML report carry the figures in µs. The same after
SIGTERM and Ctrl-C to the master and to the process group; a SIGKILLed worker's allocations
expire within their short lifetime; a coturn with a low max-bps shows loss as failures.

Locust is never imported here: it patches the process with gevent at import.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.servers.fixtures import lab_unavailable
from tests.servers.ports import free_port_block, release_ports
from turncheck.locust import LOCUSTFILE

ENV = {
    **os.environ,
    "TURNCHECK_USERNAME": "alice",
    "TURNCHECK_CREDENTIAL": "s3cret",
    "PYTHONUNBUFFERED": "1",
}
ENV.pop("TURNCHECK_SECRET", None)
WORKER_TOTALS = re.compile(r"turncheck totals of this worker: (\{.*\})$", re.M)
MASTER_TOTALS = re.compile(r"turncheck totals: (\{.*\})$", re.M)
BY_WORKER = re.compile(r"turncheck totals reported by worker (\S+): (\{.*\})$", re.M)
PEER_USAGE = re.compile(r"session (\d+): peer usage: .*?rp=(\d+), rb=\d+, sp=(\d+)")
TIMED_OUT = re.compile(r"session (\d+): closed \(2nd stage\).*reason: allocation timeout")
STOP_BOUND = 40.0  # seconds for a stopped run to end, at most


@pytest.fixture(scope="module")
def locust_bin() -> str:
    return find_locust()


def find_locust() -> str:
    """The venv's locust; skip (fail under TURNCHECK_REQUIRE_LAB=1) without it."""
    if importlib.util.find_spec("locust") is None:
        lab_unavailable(
            "python package 'locust' is not installed (pip install 'turncheck[locust]')"
        )
    path = Path(sys.executable).with_name("locust")
    if not path.is_file():
        lab_unavailable(f"{path} is missing (pip install 'turncheck[locust]')")
    return str(path)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Swarm:
    """A master and its workers, every one stopped by its PID at the end."""

    master: Proc
    workers: list[Proc]
    prefix: Path
    html: Path
    procs: list[Proc] = field(default_factory=list)

    def wait_for(self, pattern: str, bound: float = 20.0) -> None:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if re.search(pattern, self.master.text()):
                return
            if self.master.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the master's log:\n{self.master.text()[-3000:]}")

    def wait_all(self, bound: float = STOP_BOUND) -> None:
        deadline = time.monotonic() + bound
        for proc in self.procs:
            left = max(0.1, deadline - time.monotonic())
            try:
                proc.popen.wait(timeout=left)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{proc.name} did not end:\n{proc.text()[-3000:]}") from None

    def worker_totals(self, proc: Proc) -> dict:
        found = WORKER_TOTALS.findall(proc.text())
        assert found, f"{proc.name} logged no totals:\n{proc.text()[-3000:]}"
        return json.loads(found[-1])

    def master_totals(self) -> dict:
        found = MASTER_TOTALS.findall(self.master.text())
        assert found, f"the master logged no totals:\n{self.master.text()[-3000:]}"
        return json.loads(found[-1])

    def stats_rows(self) -> dict[str, dict[str, str]]:
        with open(f"{self.prefix}_stats.csv", newline="") as f:
            return {row["Name"]: row for row in csv.DictReader(f)}


@contextlib.contextmanager
def swarm(
    locust: str,
    tmp_path: Path,
    server: Coturn,
    *,
    workers: int = 2,
    users: int = 4,
    pairs: int = 2,
    run_time: str | None = None,
    extra: tuple[str, ...] = (),
    one_group: bool = False,
) -> Iterator[Swarm]:
    port = free_port_block(2)
    prefix, html = tmp_path / "run", tmp_path / "report.html"
    common = [locust, "-f", str(LOCUSTFILE), "--loglevel", "INFO"]
    master_argv = [
        *common,
        "--master",
        "--headless",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        "20",
        "-u",
        str(users),
        "-r",
        str(users),
        "--csv",
        str(prefix),
        "--html",
        str(html),
        "--exit-code-on-error",
        "0",
        "--turn-url",
        f"turn:127.0.0.1:{server.port}?transport=udp",
        "--turn-pairs",
        str(pairs),
        *(("--run-time", run_time) if run_time else ()),
        *extra,
    ]
    procs: list[Proc] = []
    group: int | None = None

    def start(name: str, argv: list[str]) -> Proc:
        nonlocal group
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            kwargs: dict = {}
            if one_group:
                # A group of their own (in this session: a group of another session is EPERM).
                kwargs = {"process_group": 0 if group is None else group}
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=tmp_path,
                **kwargs,
            )
        if one_group and group is None:
            group = popen.pid
        proc = Proc(name, popen, log)
        procs.append(proc)
        return proc

    try:
        master = start("master", master_argv)
        worker_procs = [
            start(
                f"worker{i}",
                [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            )
            for i in range(workers)
        ]
        yield Swarm(master, worker_procs, prefix, html, procs)
    finally:
        for proc in procs:  # by PID, bounded
            if proc.popen.poll() is None:
                proc.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)
        release_ports(port, 2)


def peer_packets(server: Coturn, sessions: int) -> tuple[int, int]:
    """(packets coturn's relays received from peers, sent to peers): the last usage of each
    session, which coturn logs when it frees the allocation (a second after its delete)."""
    last: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        last = {}
        for session, rp, sp in PEER_USAGE.findall(server.log_text()):
            last[session] = (int(rp), int(sp))
        if len(last) >= sessions:
            break
        time.sleep(0.1)
    return sum(v[0] for v in last.values()), sum(v[1] for v in last.values())


def check_figures(run: Swarm, server: Coturn, allocations: int, lossless: bool = True) -> dict:
    """The assertions every stop shares; returns the merged figures."""
    merged = run.master_totals()
    workers = [run.worker_totals(w) for w in run.workers]
    counters = merged["counters"]
    for key in counters:
        assert counters[key] == sum(w["counters"][key] for w in workers), key
    assert counters["sent"] > 0
    assert counters["sent"] == counters["echoed"] + counters["lost"]
    assert counters["pairs_up"] == allocations // 2 and counters["pairs_failed"] == 0
    assert counters["deleted"] == allocations and counters["delete_failed"] == 0
    if lossless:
        assert counters["lost"] == 0
    # Locust's own counts on the master: what the workers fired, summed.
    rows = run.stats_rows()
    fired: dict[str, list[int]] = {}
    for w in workers:
        for name, (requests, failures) in w["fired"].items():
            fired.setdefault(name, [0, 0])
            fired[name][0] += requests
            fired[name][1] += failures
    for name, (requests, failures) in fired.items():
        assert int(rows[name]["Request Count"]) == requests, (name, rows[name])
        assert int(rows[name]["Failure Count"]) == failures, (name, rows[name])
    assert int(rows["Aggregated"]["Request Count"]) == sum(r for r, _ in fired.values())
    assert fired["Allocate (µs)"][0] == allocations
    # Every allocation deleted, by coturn's own log.
    made, deleted = server.allocation_sessions(settle=3.0)
    assert len(made) == allocations and made <= deleted
    if merged["stride"] == 1:  # every packet was fired: Locust's echo row is exact too
        assert fired["echo RTT (µs)"] == [counters["echoed"] + counters["lost"], counters["lost"]]
    if lossless:  # coturn relayed each packet once and each echo once
        received, sent = peer_packets(server, allocations)
        assert received == sent == counters["sent"] + counters["echoed"]
    # The CSV files and the HTML report carry the figures, in µs.
    turn_csv = Path(f"{run.prefix}_turn.csv").read_text()
    assert f"packets sent,{counters['sent']},packets" in turn_csv
    assert f"packets echoed,{counters['echoed']},packets" in turn_csv
    assert "echo RTT p50" in turn_csv and ",µs" in turn_csv
    assert "echo RTT (µs)" in rows
    report = run.html.read_text()
    assert "(ms)" not in report and "(µs)" in report
    assert "turncheck-exact" in report and f">{counters['sent']}<" in report
    return merged


@pytest.fixture
def server(coturn_factory) -> Coturn:
    return coturn_factory(tls=False, relay_range=60)


def test_distributed_run_merges_exact_figures(locust_bin: str, server: Coturn, tmp_path) -> None:
    with swarm(locust_bin, tmp_path, server, run_time="6s") as run:
        run.wait_all()
        assert run.master.popen.returncode == 0, run.master.text()[-3000:]
        merged = check_figures(run, server, allocations=16)
    # Every echo in the exact histogram; the µs rows are not rounded to 0.
    echo = merged["distributions"]["echo"]
    assert echo["samples"] == merged["counters"]["echoed"]
    assert 0 < echo["p50"] <= echo["p90"] <= echo["p99"] <= echo["max"]
    rows = run.stats_rows()
    assert int(rows["echo RTT (µs)"]["50%"]) > 0
    for phase in ("Allocate (µs)", "ChannelBind (µs)"):
        assert int(rows[phase]["Request Count"]) > 0 and int(rows[phase]["50%"]) > 0


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        (signal.SIGTERM, False),
        (signal.SIGINT, False),
        (signal.SIGTERM, True),
        (signal.SIGINT, True),
    ],
    ids=["SIGTERM-master", "SIGINT-master", "SIGTERM-group", "SIGINT-group"],
)
def test_a_stop_signal_keeps_every_figure_and_deletes_every_allocation(
    locust_bin: str, server: Coturn, tmp_path, sig: int, to_group: bool
) -> None:
    with swarm(locust_bin, tmp_path, server, one_group=to_group) as run:
        run.wait_for(r"All users spawned")
        time.sleep(2.0)  # relaying
        if to_group:
            os.killpg(run.master.popen.pid, sig)
        else:
            run.master.popen.send_signal(sig)
        run.wait_all()
        check_figures(run, server, allocations=16)


def test_a_sigkilled_workers_allocations_expire_within_the_lifetime(
    locust_bin: str, coturn_factory, tmp_path
) -> None:
    """coturn 4.6.1 raises a LIFETIME below 600 s to 600 s, on Refresh too: its
    max-allocate-lifetime is what makes a dead worker's allocations go soon, and turncheck asks
    for 600 at once when a Refresh grants more than it asked, which the maximum caps."""
    lifetime = 8
    server = coturn_factory(tls=False, relay_range=60, extra=[f"max-allocate-lifetime={lifetime}"])
    extra = ("--turn-lifetime", str(lifetime))
    with swarm(locust_bin, tmp_path, server, extra=extra) as run:
        run.wait_for(r"All users spawned")
        time.sleep(lifetime / 2 + 1)  # past the first refresh
        doomed, leaver = run.workers
        doomed.popen.kill()
        killed_at = time.monotonic()
        leaver.popen.send_signal(signal.SIGTERM)  # a worker leaving mid-run
        leaver.popen.wait(timeout=STOP_BOUND)
        # The killed worker's allocations: no delete, a timeout within the lifetime (coturn's
        # timers run on whole seconds).
        # (coturn closes a deleted allocation by the same timer, a second later.)
        deadline = killed_at + lifetime + 4
        made: set[str] = set()
        expired: set[str] = set()
        deleted: set[str] = set()
        while time.monotonic() < deadline:
            made, deleted = server.allocation_sessions(settle=0)
            expired = set(TIMED_OUT.findall(server.log_text())) - deleted
            if len(expired) == 8:  # the killed worker's 2 users × 2 pairs × 2
                break
            time.sleep(0.25)
        assert len(expired) == 8, server.log_tail(60)
        assert time.monotonic() - killed_at <= lifetime + 4
        assert made <= deleted | expired
        # The worker that left: its final report reached the master, its allocations deleted.
        own = run.worker_totals(leaver)
        left = own["counters"]
        assert left["deleted"] == 8 and left["sent"] == left["echoed"] + left["lost"] > 0
        run.master.popen.send_signal(signal.SIGTERM)
        run.master.popen.wait(timeout=STOP_BOUND)
        assert len(deleted) == 8
        reported = dict(BY_WORKER.findall(run.master.text()))
        assert json.loads(reported[own["worker"]])["counters"] == left


def test_loss_is_failures_and_the_merged_loss_is_the_workers(
    locust_bin: str, coturn_factory, tmp_path
) -> None:
    # 160-byte packets at 50/s are about 8 kB/s each way per allocation: half of it passes.
    # Each worker relays 100 packets/s and fires 40 events/s at most: 1 packet in 2 or 3 is fired.
    server = coturn_factory(tls=False, relay_range=60, extra=["max-bps=4000"])
    extra = ("--turn-events-per-second", "40")
    with swarm(locust_bin, tmp_path, server, run_time="5s", users=2, pairs=2, extra=extra) as run:
        run.wait_all()
        merged = check_figures(run, server, allocations=8, lossless=False)
    counters = merged["counters"]
    assert counters["lost"] > 0.1 * counters["sent"]
    assert merged["stride"] >= 2
    rows = run.stats_rows()
    echo = rows["echo RTT (µs)"]
    assert 0 < int(echo["Failure Count"]) < counters["lost"]
    assert int(echo["Request Count"]) < counters["sent"] / 2
    loss = counters["lost"] / counters["sent"]  # sampled alike, echoes and losses
    assert int(echo["Failure Count"]) / int(echo["Request Count"]) == pytest.approx(loss, abs=0.08)


def test_standalone_web_ui_shows_the_exact_tab_in_microseconds(
    locust_bin: str, server: Coturn, tmp_path
) -> None:
    web = free_port_block(1)
    argv = [
        locust_bin,
        "-f",
        str(LOCUSTFILE),
        "--autostart",
        "--autoquit",
        "0",
        "--run-time",
        "4s",
        "-u",
        "1",
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(web),
        "--turn-url",
        f"turn:127.0.0.1:{server.port}",
    ]
    log = tmp_path / "standalone.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{web}"
        doc: dict = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"{base}/stats/requests", timeout=2) as answer:
                    doc = json.load(answer)
                rows = {r["figure"]: r for r in doc["extended_stats"][0]["data"]}
                if int(rows["packets echoed"]["value"]) > 0:
                    break
            time.sleep(0.3)
        assert doc.get("extended_stats"), log.read_text()[-3000:]
        assert rows["packets sent"]["unit"] == "packets"
        with urllib.request.urlopen(base + "/", timeout=2) as answer:
            page = answer.read().decode()
        assert "TURN exact" in page
        scripts = re.findall(r'src="([^"]+\.js)"', page)
        assert scripts
        bundle = "".join(
            urllib.request.urlopen(base + "/" + s.lstrip("./"), timeout=5).read().decode()
            for s in scripts
        )
        assert "(µs)" in bundle and "(ms)" not in bundle
        with urllib.request.urlopen(base + "/turncheck/csv", timeout=5) as answer:
            assert "packets sent," in answer.read().decode()
        with urllib.request.urlopen(base + "/stats/report", timeout=10) as answer:
            report = answer.read().decode()
        assert "turncheck-exact" in report and "(µs)" in report and "(ms)" not in report
        proc.wait(timeout=STOP_BOUND)
        assert proc.returncode == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        release_ports(web, 1)
    made, deleted = server.allocation_sessions(settle=3.0)
    assert len(made) == 2 and made <= deleted


def test_locust_alone_is_what_imports_gevent() -> None:
    """The CLI never imports gevent or Locust; `python -m turncheck.locust` prints the path."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, turncheck.cli, turncheck.load, turncheck.locust; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'locust')))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "[]", done.stderr
    path = subprocess.run(
        [sys.executable, "-m", "turncheck.locust"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert Path(path) == LOCUSTFILE and LOCUSTFILE.is_file()


PURE = """
from turncheck.locust.locustfile import Engine, Figures, bucket, percentiles, relabel
from turncheck.load import Counters, Sample

assert [bucket(x) for x in (0.4, 263.4, 999.6, 1234.5, 45678.0)] == [0, 263, 1000, 1230, 45700]
assert percentiles({100: 50, 200: 49, 900: 1}) == {"p50": 100, "p90": 200, "p99": 200, "max": 900}
assert percentiles({}) is None
assert relabel("Average (ms) | 95%ile (ms)") == "Average (µs) | 95%ile (µs)"
a = Figures(Counters(sent=3, echoed=2, lost=1), {"echo": {100: 2}}, {"echo RTT (µs)": (3, 1)}, 1)
b = Figures.from_json(a.to_json())
both = Figures.total([a, b])
assert both.counters == Counters(sent=6, echoed=4, lost=2) and both.processes == 2
assert both.histograms["echo"] == {100: 4} and both.fired["echo RTT (µs)"] == (6, 2)
assert "packets sent,6,packets" in both.csv_text()
# 5000 packets a second against a cap of 1000: the second second fires 1 in 5.
engine = Engine()
engine.cap = 1000
import time
fired = 0
start = time.monotonic()
while time.monotonic() - start < 2.2:
    for _ in range(50):
        engine.on_sample(Sample("echo", 0.0003))
        engine.on_sample(Sample("loss"))
    time.sleep(0.02)
assert engine.stride >= 2, engine.stride
kinds = [k for k, _, _ in engine.queue]
assert 0.35 < kinds.count("loss") / len(kinds) < 0.65  # losses sampled like echoes
assert sum(engine.histograms["echo"].values()) > len(kinds)  # every echo in the histogram
print("ok")
"""


def test_exact_figures_sampling_and_units_without_a_run(locust_bin: str) -> None:
    """The pure parts, in a process of their own (importing Locust patches it with gevent)."""
    done = subprocess.run(
        [sys.executable, "-c", PURE], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.stdout.strip() == "ok", done.stderr[-3000:]
