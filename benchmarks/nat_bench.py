"""turncheck nat's verdicts beside turnutils_natdiscovery's, on the real Linux NATs of the lab.

Issue 4, "Done when": every lab NAT gets the right verdict in 5 runs out of 5,
turnutils_natdiscovery agrees with turncheck, and ``turncheck nat`` against a lab server
finishes in under 2 s.  For each NAT mode the netns lab (tests/lab/netns.py) is built, coturn
(RFC 5780: two IPs, no TLS) started in its server namespace, and both tools are run from the
client namespace, behind the NAT, --runs times each (alternating).

Run: ``python -m benchmarks.nat_bench [--runs N]`` from the repo root, as root.  Traffic stays
inside the lab's network namespaces (documentation addresses only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.probe_bench import TIMEOUT, Row, fmt
from benchmarks.relay_bench import print_table
from tests.lab.netns import Lab, LabError, nat_lab
from tests.servers.coturn import running_coturn

EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"
SHORT = {EI: "EI", AD: "AD", APD: "APD"}
Verdict = tuple[str | None, str | None, str | None]  # mapping, filtering, classic
# mode -> (mapping, filtering, classic) expected from turncheck nat --json
EXPECTED: dict[str, Verdict] = {
    "none": (EI, EI, "open internet"),
    "masquerade": (EI, APD, "port-restricted cone"),
    "symmetric": (APD, APD, "symmetric"),
    "block-udp": (None, None, "UDP blocked"),
}
NO_UDP = "block-udp"  # the mode where no STUN answer comes back at all
NO_UDP_TIMEOUT = "1"  # turncheck --timeout there, as in tests/lab/test_nat_lab.py
SPEED_GOAL_S = 2.0
NATD_MAPPING_RE = re.compile(r"NAT with (.+?) Mapping!")
NATD_FILTERING_RE = re.compile(r"NAT with (.+?) Filtering!")
NATD_TIMEOUT = "STUN receive timeout"
TOOLS = ("turnserver", "turnutils_natdiscovery", "ip", "iptables", "sysctl")


@dataclass
class ModeResult:
    """One NAT mode's figures over all runs."""

    tc: Row
    natd: Row
    correct: int = 0
    agree: int = 0
    failed: int = 0
    natd_verdicts: list[tuple[str | None, str | None]] = field(default_factory=list)


def hyphenate(name: str) -> str:
    """natdiscovery's "Address and Port Dependent" -> "address-and-port-dependent"."""
    return "-".join(name.lower().split())


def short(value: str | None) -> str:
    return "null" if value is None else SHORT.get(value, value)


def show(verdict: tuple[str | None, ...]) -> str:
    return " / ".join(short(v) for v in verdict)


def show_natd(verdict: tuple[str | None, str | None]) -> str:
    return "no verdict" if verdict == (None, None) else show(verdict)


def timed(
    row: Row, lab: Lab, argv: list[str], i: int
) -> tuple[float, subprocess.CompletedProcess[str]] | None:
    """Run *argv* in the lab's client namespace once (``ip netns exec``); its wall time and
    result, or None (printed) on a timeout.  Unlike probe_bench.run a non-zero exit is
    returned, not failed: ``turncheck nat`` exits 1 when UDP is blocked, by design."""
    row.runs += 1
    start = time.perf_counter()
    try:
        proc = lab.run(lab.client_ns, argv, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"FAIL {row.tool} {row.what} run {i}: timeout after {TIMEOUT:.0f} s")
        return None
    return time.perf_counter() - start, proc


def tail(proc: subprocess.CompletedProcess[str]) -> str:
    return " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])


def parse_turncheck(proc: subprocess.CompletedProcess[str], mode: str) -> Verdict | str:
    """(mapping, filtering, classic) from turncheck nat --json, or why the run failed."""
    want_code = 1 if mode == NO_UDP else 0  # 1: no server answered
    if "Traceback" in proc.stderr:
        return f"traceback: {tail(proc)}"
    if proc.returncode != want_code:
        return f"exit code {proc.returncode} (want {want_code}): {tail(proc)}"
    try:
        doc = json.loads(proc.stdout)
        return (doc["mapping"], doc["filtering"], doc["classic"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad JSON: {exc!r}"


def parse_natd(proc: subprocess.CompletedProcess[str]) -> tuple[str | None, str | None] | str:
    """(mapping, filtering) from turnutils_natdiscovery's "NAT with ...!" lines (None where it
    printed none), or why the run failed."""
    if proc.returncode != 0:
        return f"exit code {proc.returncode}: {tail(proc)}"
    m, f = NATD_MAPPING_RE.search(proc.stdout), NATD_FILTERING_RE.search(proc.stdout)
    verdict = (hyphenate(m.group(1)) if m else None, hyphenate(f.group(1)) if f else None)
    if verdict == (None, None) and NATD_TIMEOUT not in proc.stdout:
        return f"neither a verdict nor '{NATD_TIMEOUT}' in its output: {tail(proc)}"
    return verdict


def bench_mode(mode: str, runs: int, tmp: Path) -> ModeResult:
    expected = EXPECTED[mode]
    res = ModeResult(Row("turncheck nat", mode), Row("turnutils_natdiscovery -m -f", mode))
    with (
        nat_lab(mode) as lab,
        running_coturn(
            tmp / f"coturn-{lab.tag}",
            hosts=lab.server_ips,
            relay_ips=(lab.server_ips[0],),
            netns=lab.server_ns,
            tls=False,
        ) as srv,
    ):
        host, port = lab.server_ips[0], str(srv.port)
        tc_cmd = [sys.executable, "-m", "turncheck", "nat", f"stun:{host}:{port}", "--json"]
        if mode == NO_UDP:
            tc_cmd += ["--timeout", NO_UDP_TIMEOUT]
        natd_cmd = ["turnutils_natdiscovery", "-m", "-f", "-p", port, host]
        print(
            f"mode {mode}: lab {lab.tag}, coturn {host}:{port} + {lab.server_ips[1]} "
            f"(ready in {srv.startup_seconds:.2f} s), client {lab.client_ip}"
        )
        for i in range(1, runs + 1):
            ours: Verdict | None = None
            done = timed(res.tc, lab, tc_cmd, i)
            if done is None:
                res.failed += 1
            elif isinstance(got := parse_turncheck(done[1], mode), str):
                print(f"FAIL {res.tc.tool} {mode} run {i}: {got}")
                res.failed += 1
            else:
                ours = got
                res.tc.times.append(done[0])
                if got == expected:
                    res.correct += 1
                else:
                    print(f"WRONG {res.tc.tool} {mode} run {i}: {show(got)}")

            done = timed(res.natd, lab, natd_cmd, i)
            if done is None:
                res.failed += 1
                continue
            theirs = parse_natd(done[1])
            if isinstance(theirs, str):
                print(f"FAIL {res.natd.tool} {mode} run {i}: {theirs}")
                res.failed += 1
                continue
            res.natd.times.append(done[0])
            res.natd_verdicts.append(theirs)
            # block-udp: agreement means both found no UDP answer (all None)
            if ours is not None and ours[:2] == theirs:
                res.agree += 1
            elif ours is not None:
                print(
                    f"DISAGREE {mode} run {i}: turncheck {show(ours[:2])}, "
                    f"natdiscovery {show_natd(theirs)}"
                )
    return res


def span(times: list[float]) -> str:
    med, lo, hi = fmt(times)
    return "-" if med == "-" else f"{med} ({lo}-{hi})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and mode (default 5)")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 100))

    if os.geteuid() != 0:
        print(
            f"nat_bench needs root to build the network-namespace lab (running as uid "
            f"{os.geteuid()}); run it with sudo",
            file=sys.stderr,
        )
        return 1
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"nat_bench needs {', '.join(missing)} on PATH", file=sys.stderr)
        return 1

    print(
        f"{runs} runs per mode; turncheck nat --json ({NO_UDP}: --timeout {NO_UDP_TIMEOUT}), "
        f"turnutils_natdiscovery -m -f; both in the client namespace, timeout {TIMEOUT:.0f} s\n"
    )
    results: dict[str, ModeResult] = {}
    setup_failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nat_bench_") as tmp:
        for mode in EXPECTED:
            try:
                results[mode] = bench_mode(mode, runs, Path(tmp))
            except (LabError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"FAIL mode {mode}: lab or coturn did not come up: {exc}")
                setup_failed.append(mode)
    print()

    head: tuple[str, ...] = ("mode", "expected (mapping/filtering/classic)", "turncheck correct")
    head += ("turncheck median s (min-max)", "natdiscovery mapping/filtering", "agrees")
    head += ("natdiscovery median s",)
    table: list[tuple[str, ...]] = [head]
    for mode, res in results.items():
        natd = ", ".join(sorted({show_natd(v) for v in res.natd_verdicts})) or "-"
        table.append(
            (
                mode,
                show(EXPECTED[mode]),
                f"{res.correct}/{runs}",
                span(res.tc.times),
                natd,
                f"{res.agree}/{runs}",
                fmt(res.natd.times)[0],
            )
        )
    print_table(table, 2)
    print(
        f"\n{SHORT[EI]} = {EI}, {SHORT[AD]} = {AD}, {SHORT[APD]} = {APD}, null = no answer; "
        "natdiscovery 'no verdict': it printed only 'STUN receive timeout..'.\n"
        "Times: wall time of `ip netns exec <client ns> ...`, interpreter start included.\n"
    )

    complete = not setup_failed and len(results) == len(EXPECTED)
    correct_met = complete and all(r.correct == runs for r in results.values())
    agree_met = complete and all(r.agree == runs for r in results.values())
    medians = {m: statistics.median(r.tc.times) for m, r in results.items() if r.tc.times}
    speed_met = complete and len(medians) == len(EXPECTED)
    speed_met = speed_met and max(medians.values()) < SPEED_GOAL_S
    slowest = max(medians.items(), key=lambda kv: kv[1]) if medians else None
    print(f"goal {runs}/{runs} correct per mode: {'met' if correct_met else 'not met'}")
    print(f"goal natdiscovery agrees: {'met' if agree_met else 'not met'}")
    where = f"slowest median {slowest[1]:.3f} s, {slowest[0]}" if slowest else "no data"
    print(f"goal turncheck nat < {SPEED_GOAL_S:g} s: {'met' if speed_met else 'not met'} ({where})")
    failed = sum(r.failed for r in results.values()) + len(setup_failed)
    if failed:
        print(f"{failed} run(s) or mode(s) failed (excluded from the figures)")
    return 0 if correct_met and agree_met and speed_met and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
