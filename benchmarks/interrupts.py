"""Stop signals at start-up, many times in a row: the figure behind "never flakes".

Each round sends SIGINT, SIGTERM and SIGHUP, each to its own fresh `turncheck probe`, at a
random moment of start-up or run (0 to 0.3 s after the entry module's handlers are in
place), with a random inherited disposition from tests/test_signals.py's cases (SIGINT
ignored as in a script's background job, SIGHUP ignored as under nohup, or none). Every one
must end with exactly one line and 128 + the signal that ends it. Only loopback is used: the
probe's server is a UDP socket of this script's that never answers.

    python benchmarks/interrupts.py --rounds 200 --budget 900
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_signals import CASES, WORDS, expected, interrupt_once, silent_udp_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds at most")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    began = time.monotonic()
    runs = 0
    latencies: list[float] = []
    with silent_udp_server() as port:
        probe = ["probe", f"turn:127.0.0.1:{port}", "--timeout", "5"]
        for number in range(1, args.rounds + 1):
            if time.monotonic() - began > args.budget:
                print(f"budget of {args.budget:g} s spent after {number - 1} rounds")
                break
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                ignored = rng.choice([ign for s, ign in CASES if s == sig])
                delay = rng.uniform(0.0, 0.3)
                code, err, took = interrupt_once(probe, sig, delay, ignored)
                ends = expected(sig, ignored)
                runs += 1
                want = (128 + ends, f"turncheck: error: {WORDS[ends]}\n")
                if (code, err) != want:
                    print(
                        f"round {number}: {signal.Signals(sig).name} at {delay:.3f} s, "
                        f"inherited ignored {[signal.Signals(i).name for i in ignored]}: "
                        f"exit {code}, stderr {err!r}"
                    )
                    return 1
                if sig not in ignored or sig == signal.SIGTERM:
                    latencies.append(took)
            if number % 20 == 0:
                print(f"{number} rounds, {runs} interrupts, all clean", flush=True)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    print(
        f"{runs} interrupts in a row, every one one line and the right exit code "
        f"({time.monotonic() - began:.0f} s); signal to exit p50 {p50 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
