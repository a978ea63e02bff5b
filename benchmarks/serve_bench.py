"""turncheck serve under concurrent scrapes, beside what ops run today (a cron'd
turnutils_uclient), against the same local coturn.

Prints: probes/s the exporter sustains with C concurrent scrapers for D seconds (each probe:
Binding + Allocate + a 10-packet relay echo over UDP), the p50/p95 probe duration seen by the
scrapers, the exporter's RSS and open file descriptors after 1,000 probes (from its own
/metrics), and beside them the wall time of one `turnutils_uclient -y -n 10` run (the same
question answered by coturn's client) and the probes/s that gives sequentially.

Run: ``python -m benchmarks.serve_bench [--concurrency 8] [--seconds 10] [--total 1000]``
from the repo root. Loopback only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import trustme

from tests.servers.coturn import running_coturn
from tests.servers.ports import free_port_block


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--total", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    with running_coturn(work / "coturn", ca=trustme.CA(), relay_range=400) as coturn:
        config = work / "turncheck.yml"
        config.write_text(
            "modules:\n  bench:\n    username: alice\n    credential_env: BENCH_PW\n"
            f"limits:\n  max_concurrent: {args.concurrency}\n"
        )
        port = free_port_block(1)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turncheck",
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stderr=subprocess.DEVNULL,
            env={**os.environ, "BENCH_PW": "s3cret"},
        )
        query = urllib.parse.urlencode(
            {"module": "bench", "target": f"turn:127.0.0.1:{coturn.port}?transport=udp"}
        )
        url = f"http://127.0.0.1:{port}/probe?{query}"
        for _ in range(100):  # bounded: 10 s to start
            try:
                urllib.request.urlopen(url, timeout=10).read()
                break
            except OSError:
                time.sleep(0.1)

        def scrape(_: int) -> tuple[float, bool]:
            started = time.monotonic()
            body = urllib.request.urlopen(url, timeout=30).read().decode()
            return time.monotonic() - started, "probe_success 1" in body

        try:
            durations: list[float] = []
            failures = 0
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                while time.monotonic() - started < args.seconds:
                    for took, ok in pool.map(scrape, range(args.concurrency)):
                        durations.append(took)
                        failures += not ok
                elapsed = time.monotonic() - started
                done = len(durations)
                while done < args.total:
                    batch = min(args.concurrency, args.total - done)
                    for _, ok in pool.map(scrape, range(batch)):
                        failures += not ok
                    done += batch
            rss = metric(port, "process_resident_memory_bytes")
            fds = metric(port, "process_open_fds")
        finally:
            server.terminate()
            server.wait(timeout=30)
        uclient = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run(
                [
                    "turnutils_uclient",
                    "-y",
                    "-n",
                    "10",
                    "-u",
                    "alice",
                    "-w",
                    "s3cret",
                    "-p",
                    str(coturn.port),
                    "127.0.0.1",
                ],
                capture_output=True,
                timeout=60,
            )
            uclient.append(time.monotonic() - t0)
    ordered = sorted(durations)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(f"turncheck serve, {args.concurrency} concurrent scrapers, {elapsed:.1f} s, same coturn:")
    print(f"  probes/s sustained        {len(durations) / elapsed:8.1f}")
    print(
        f"  probe duration p50 / p95  {statistics.median(durations) * 1000:8.1f} / "
        f"{p95 * 1000:.1f} ms"
    )
    print(
        f"  after {args.total} probes      RSS {rss / 1e6:.1f} MB, {fds:.0f} open fds, "
        f"{failures} probes not successful"
    )
    u = statistics.median(uclient)
    print(f"turnutils_uclient -y -n 10, one run (median of 3): {u:.2f} s = {1 / u:.2f} probes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
