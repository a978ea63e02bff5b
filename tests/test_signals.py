"""Stop signals at any moment: SIGINT, SIGTERM and SIGHUP are one line and 128 + N, whatever
the process inherited, from the first import to interpreter shutdown; a load started the
way scripts and nohup start it stops on SIGTERM with every allocation deleted.

benchmarks/interrupts.py runs the same start-up cases hundreds of times in a row."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.servers.coturn import Coturn

ENV = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
WORDS = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hung up (SIGHUP)",
}

# The child says "up" once the console entry module is imported (its handlers installed),
# then runs it. Before that line is CPython's own start-up and the import of the entry
# module: nothing of turncheck's runs there to guard it (SECURITY.md).
_ENTRY = (
    "import sys; import turncheck.entry as entry; "
    "sys.stderr.write('up\\n'); sys.stderr.flush(); sys.exit(entry.run())"
)

# Seconds after "up": the CLI's imports (about the first 0.1-0.2 s), option parsing, the
# plan, and the run itself, waiting on a server that never answers.
POINTS = (0.0, 0.01, 0.03, 0.06, 0.12, 0.3)


@contextlib.contextmanager
def silent_udp_server() -> Iterator[int]:
    """A UDP port on loopback where a socket listens and never answers: a run waits."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _ignoring(ignored: tuple[int, ...]):
    def preexec() -> None:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)

    return preexec


def interrupt_once(
    args: list[str], sig: int, delay: float, ignored: tuple[int, ...] = ()
) -> tuple[int, str, float]:
    """Start turncheck with *ignored* signals inherited as SIG_IGN, send *sig* *delay*
    seconds after its handlers are in place; (exit code, stderr after "up", seconds from
    the signal to the exit). A signal the process kept ignored is followed by SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=_ignoring(ignored),
    )
    assert proc.stderr is not None
    try:
        assert proc.stderr.readline() == "up\n"
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(sig)
        if sig in ignored:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.3)
            if proc.poll() is None:  # still running, as it should: now the supervisor's stop
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, time.monotonic() - sent


CASES = [
    (signal.SIGINT, ()),
    (signal.SIGTERM, ()),
    (signal.SIGHUP, ()),
    (signal.SIGINT, (signal.SIGINT,)),  # a script's background job (`cmd &`)
    (signal.SIGTERM, (signal.SIGINT,)),
    (signal.SIGHUP, (signal.SIGINT, signal.SIGHUP)),  # nohup in a script
    (signal.SIGTERM, (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)),  # SIGTERM always counts
]


def expected(sig: int, ignored: tuple[int, ...]) -> int:
    """The signal that ends the run: an inherited SIG_IGN of SIGINT or SIGHUP is kept."""
    if sig in ignored and sig != signal.SIGTERM:
        return signal.SIGTERM
    return sig


@pytest.mark.parametrize(
    ("sig", "ignored"),
    CASES,
    ids=[
        f"{signal.Signals(s).name}-ignoring-{'+'.join(signal.Signals(i).name for i in ign) or 'none'}"
        for s, ign in CASES
    ],
)
def test_stop_signal_at_any_moment_of_start_up_and_run(sig: int, ignored: tuple[int, ...]) -> None:
    ends_with = expected(sig, ignored)
    with silent_udp_server() as port:
        args = ["probe", f"turn:127.0.0.1:{port}", "--timeout", "5"]
        for delay in POINTS:
            code, err, _ = interrupt_once(args, sig, delay, ignored)
            assert (code, err) == (128 + ends_with, f"turncheck: error: {WORDS[ends_with]}\n"), (
                f"{signal.Signals(sig).name} {delay} s after start-up: exit {code}, {err!r}"
            )


def test_stop_signal_while_a_short_run_ends_is_one_line_or_nothing() -> None:
    # A run against a closed port ends on its own within a few tenths: signals landing in
    # its last steps and in interpreter shutdown either stop it (one line) or change nothing.
    args = ["probe", "stun:127.0.0.1:1", "--json"]
    outcomes = set()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        for delay in (0.1, 0.2, 0.3, 0.4, 0.6, 0.9):
            code, err, _ = interrupt_once(args, sig, delay)
            if code == 1:  # finished first: its own output, and no word of the signal
                assert err == "", err
            else:
                assert (code, err) == (128 + sig, f"turncheck: error: {WORDS[sig]}\n")
            outcomes.add(code)
    assert 1 in outcomes, "no signal landed after the run: the window is not covered"


def test_nohup_load_in_a_script_stops_on_sigterm_and_deletes_everything(
    coturn_factory, tmp_path
) -> None:
    """`nohup turncheck load … & kill $!` in a script: SIGINT and SIGHUP are inherited as
    ignored; SIGTERM still stops it at once, and coturn saw every allocation deleted."""
    server: Coturn = coturn_factory(tls=False, relay_range=60)
    out, err = tmp_path / "out.json", tmp_path / "err.txt"
    script = (
        f"nohup {sys.executable} -m turncheck load turn:127.0.0.1:{server.port} "
        f"--clients 10 --duration 30 --json >{out} 2>{err} & pid=$!\n"
        # wait (bounded) until all 20 allocations exist, then stop it as a supervisor does
        "for i in $(seq 100); do sleep 0.05; done\n"
        "grep SigIgn /proc/$pid/status\n"
        "t0=$EPOCHREALTIME; kill $pid; wait $pid; code=$?; t1=$EPOCHREALTIME\n"
        'echo "exit $code $t0 $t1"\n'
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=ENV, timeout=40
    )
    lines = done.stdout.split("\n")
    ignored_mask = int(lines[0].split()[1], 16)
    assert ignored_mask & (1 << (signal.SIGINT - 1)), lines[0]  # the script's background job
    assert ignored_mask & (1 << (signal.SIGHUP - 1)), lines[0]  # nohup
    words = lines[1].split()
    assert words[:2] == ["exit", "143"], done.stdout + err.read_text()
    took = float(words[3]) - float(words[2])
    print(f"SIGTERM to exit: {took:.3f} s")
    assert took < 3.0, f"{took} s: SIGTERM did not stop the run at once"
    assert err.read_text().endswith("turncheck: error: terminated (SIGTERM)\n")
    assert '"interrupted": true' in out.read_text()
    made, deleted = server.allocation_sessions()
    assert len(made) == 20, server.log_tail()
    assert made <= deleted, f"allocations left behind: {sorted(made - deleted)}"


def test_two_100_pair_loads_back_to_back_fail_no_pair(coturn_factory) -> None:
    """The second run's kernel hands out local ports the first just used; coturn may still
    hold the deleted allocation of that 5-tuple and answer 437: load retries it from a fresh
    port, as probe does (one allocation path, checks.allocated)."""
    server: Coturn = coturn_factory(tls=False, relay_range=500)
    url = f"turn:127.0.0.1:{server.port}"

    for run in (1, 2):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "turncheck",
                "load",
                url,
                "--clients",
                "100",
                "--duration",
                "1",
                "--rate",
                "20",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        doc = json.loads(done.stdout)
        alloc = doc["allocations"]
        assert alloc["pairs_failed"] == 0 and alloc["failures"] == {}, (run, alloc)
        assert alloc["pairs_succeeded"] == 100 and alloc["deleted"] == 200, (run, alloc)
        assert done.returncode == 0, done.stderr
