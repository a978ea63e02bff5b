"""turncheck's figures beside coturn's own tools' figures, same run, same local coturn.

Run: ``python -m benchmarks.probe_bench [--runs N]`` from the repo root.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT = 60.0
TRANSPORTS = ("udp", "tcp", "tls")
# uclient: one client (-m 1), no RTCP allocation (-c), no data (-n 0), peer on loopback
UCLIENT = ["turnutils_uclient", "-u", "alice", "-w", "s3cret", "-n", "0", "-m", "1", "-c"]
UCLIENT += ["-e", "127.0.0.1"]
RTT_RE = re.compile(r"Average round trip delay ([\d.]+) ms; min = (\d+) ms, max = (\d+) ms")
NO_SAMPLE = 4294967295  # uclient's "min" when it measured nothing


@dataclass
class Row:
    tool: str
    what: str
    times: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    runs: int = 0


def run(row: Row, cmd: list[str], i: int) -> tuple[float | None, str]:
    """Run *cmd* once; record and return its wall time, or None (printed) if it failed."""
    row.runs += 1
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"FAIL {row.tool} run {i}: timeout after {TIMEOUT:.0f} s")
        return None, ""
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        print(f"FAIL {row.tool} run {i}: exit code {proc.returncode}: {' | '.join(tail)}")
        return None, proc.stdout
    return elapsed, proc.stdout


def turncheck_ok(out: str) -> tuple[bool, str]:
    try:
        checks = json.loads(out)["checks"]
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"bad JSON: {exc}"
    bad = [f"{c.get('transport')}/{c.get('kind')}" for c in checks if not c.get("ok")]
    if len(checks) != 6 or bad:
        return False, f"{len(checks)} checks, failed: {bad}"
    return True, ""


def fmt(times: list[float]) -> tuple[str, str, str]:
    if not times:
        return "-", "-", "-"
    return (f"{statistics.median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}")


def uclient_rtt(outputs: list[str]) -> str:
    found = [m for out in outputs for m in RTT_RE.finditer(out)]
    if not found:
        return "no round-trip line in its output"
    if all(int(m.group(2)) == NO_SAMPLE for m in found):
        return f"no samples: '{found[-1].group(0)}'"
    avg = statistics.median(float(m.group(1)) for m in found)
    return f"median 'Average round trip delay' {avg:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool (default 5)")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 100))

    import trustme

    from tests.servers.coturn import running_coturn

    exe = Path(sys.executable).parent / "turncheck"
    turncheck = str(exe) if exe.exists() else "turncheck"
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="probe_bench_") as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        with running_coturn(Path(tmp) / "coturn", ca=ca) as srv:
            p, tp = str(srv.port), str(srv.tls_port)
            tc = Row("turncheck probe", "STUN Binding + TURN Allocate over udp, tcp, tls")
            tc_cmd = [turncheck, "probe", f"turn:127.0.0.1:{p}"]
            tc_cmd += [f"turns:localhost:{tp}?transport=tcp", "-u", "alice", "-p", "s3cret"]
            tc_cmd += ["--ca-file", str(ca_file), "--json"]
            tools: list[tuple[Row, list[str]]] = [
                (
                    Row("turnutils_stunclient", "STUN Binding, udp"),
                    ["turnutils_stunclient", "-p", p],
                ),
                (Row("turnutils_uclient", "TURN Allocate, udp"), [*UCLIENT, "-p", p]),
                (Row("turnutils_uclient -t", "TURN Allocate, tcp"), [*UCLIENT, "-t", "-p", p]),
                (
                    Row("turnutils_uclient -t -S", "TURN Allocate, tls"),
                    [*UCLIENT, "-t", "-S", "-p", tp],
                ),
            ]
            total = Row("coturn tools, total", "the 4 above in sequence")
            rtts: dict[str, list[float]] = {}
            print(f"coturn {srv.host} port {p} (udp+tcp), tls port {tp}; {runs} runs each\n")
            for i in range(1, runs + 1):
                elapsed, out = run(tc, tc_cmd, i)
                ok, why = turncheck_ok(out) if elapsed is not None else (False, "")
                if ok and elapsed is not None:
                    tc.times.append(elapsed)
                    for c in json.loads(out)["checks"]:
                        rtts.setdefault(f"{c['transport']}/{c['kind']}", []).append(c["rtt_ms"])
                elif why:
                    print(f"FAIL turncheck probe run {i}: {why}")
                seq: list[float] = []
                for row, cmd in tools:
                    t, out = run(row, [*cmd, "127.0.0.1"], i)
                    if t is not None:
                        row.times.append(t)
                        row.outputs.append(out)
                        seq.append(t)
                total.runs += 1
                if len(seq) == len(tools):
                    total.times.append(sum(seq))

    rows = [tc, *(r for r, _ in tools), total]
    head = ("tool", "what it checks", "median s", "min", "max", "runs ok")
    table = [head, *((r.tool, r.what, *fmt(r.times), f"{len(r.times)}/{r.runs}") for r in rows)]
    widths = [max(len(line[k]) for line in table) for k in range(len(head))]
    for n, line in enumerate(table):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in pairs]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    if tc.times and total.times:
        x, y = statistics.median(tc.times), statistics.median(total.times)
        print(
            f"turncheck: 6 checks in {x:.3f} s median; coturn tools: {y:.3f} s "
            f"for the same checks ({y / x:.1f}× faster)"
        )
    else:
        print("turncheck or coturn tools had no successful run: no comparison")
    print("\nRTT, turncheck (median rtt_ms over runs, STUN Binding / TURN Allocate):")
    for tr in TRANSPORTS:
        stun, turn = rtts.get(f"{tr}/stun"), rtts.get(f"{tr}/turn")
        s = f"{statistics.median(stun):.3f}" if stun else "-"
        a = f"{statistics.median(turn):.3f}" if turn else "-"
        print(f"  {tr}: {s} ms / {a} ms")
    print("RTT, turnutils_uclient (relayed data round trip, whole-ms clock; -n 0 sends none):")
    for row, _ in tools[1:]:
        print(f"  {row.what.split(', ')[1]}: {uclient_rtt(row.outputs)}")
    print("RTT, turnutils_stunclient: prints no round-trip time")
    ok = len(tc.times) == tc.runs and all(len(r.times) == r.runs for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
