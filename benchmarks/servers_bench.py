"""turncheck load and probe over TLS against coturn, pion/turn and ejabberd, side by side.

Issue 13: `load` over TLS against pion took 41.2 s for 20 pairs with 1 s of relaying (3.1 s
against ejabberd): connections were closed one after another, each waiting up to 1 s for
a TLS close_notify that pion never sends. This prints, per server and from the same run,
the wall time of ``turncheck load turns:… --clients N --duration 1`` and of a TLS-only
``turncheck probe`` (median of --runs), and beside them ``turnutils_uclient -S -y`` doing a
TLS relay run against the same server when it succeeds there (coturn's own client: it sends
EVEN-PORT, which p1_stun refuses with 420).

Run: ``python -m benchmarks.servers_bench [--runs 3] [--clients 20]`` from the repo root, as
root (ejabberd). Loopback only; the servers are the test fixtures' (tests/servers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import trustme

from tests.servers.coturn import running_coturn
from tests.servers.ejabberd import running_ejabberd
from tests.servers.pion import build_pion, running_pion

ENV = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}


def timed(cmd: list[str], timeout: float = 120) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    return time.monotonic() - started, done.returncode, done.stdout


def turncheck(*args: str) -> list[str]:
    return [sys.executable, "-m", "turncheck", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    ca = trustme.CA()
    work = Path(tempfile.mkdtemp(prefix="servers-bench-"))
    ca_file = work / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    rows = []
    with ExitStack() as stack:
        coturn = stack.enter_context(running_coturn(work / "coturn", ca=ca, relay_range=200))
        pion = stack.enter_context(
            running_pion(work / "pion", "tls", binaries=build_pion(work / "build"), ca=ca)
        )
        ejabberd = stack.enter_context(running_ejabberd(work / "ejabberd", ca=ca, relay_range=200))
        servers = {
            "coturn 4.6.1": ("localhost", coturn.tls_port),
            "pion/turn v2.1.0": ("localhost", pion.port),
            "ejabberd 23.01 (p1_stun)": ("localhost", ejabberd.tls_port),
        }
        for name, (host, port) in servers.items():
            url = f"turns:{host}:{port}?transport=tcp"
            loads, probes, uclient = [], [], []
            verdict = ""
            for _ in range(args.runs):
                wall, code, out = timed(
                    turncheck(
                        "load",
                        url,
                        "--clients",
                        str(args.clients),
                        "--duration",
                        "1",
                        "--ca-file",
                        str(ca_file),
                        "--json",
                    )
                )
                doc = json.loads(out)
                verdict = doc["verdict"]
                loads.append(wall if code == 0 else float("nan"))
                wall, code, _ = timed(
                    turncheck("probe", url, "--ca-file", str(ca_file), "--count", "10", "--json")
                )
                probes.append(wall if code == 0 else float("nan"))
                wall, code, _ = timed(
                    [
                        "turnutils_uclient",
                        "-S",
                        "-y",
                        "-t",
                        "-n",
                        "50",
                        "-m",
                        str(2 * args.clients),
                        "-u",
                        "alice",
                        "-w",
                        "s3cret",
                        "-p",
                        str(port),
                        "127.0.0.1",
                    ],
                    timeout=60,
                )
                uclient.append(wall if code == 0 else float("nan"))
            rows.append(
                (
                    name,
                    statistics.median(loads),
                    statistics.median(probes),
                    statistics.median(uclient),
                    verdict,
                )
            )
    print(f"TLS, {args.clients} pairs x 1 s of relaying, median of {args.runs} runs, wall seconds")
    print(f"{'server':26} {'turncheck load':>15} {'probe (TLS)':>12} {'uclient -S -y':>14}")
    for name, load, probe, uclient, _ in rows:
        u = "failed" if uclient != uclient else f"{uclient:.2f}"
        print(f"{name:26} {load:15.2f} {probe:12.2f} {u:>14}")
    for name, *_, verdict in rows:
        print(f"  {name}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
