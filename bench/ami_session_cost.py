"""What an open AMI session costs Asterisk per call: the bare path of bench/admission.py at a
fixed rate, with no AMI session, with one logged in with events off, and with one receiving
events (whitelisted to DialEnd and Hangup, as the daemon's used to be). Rounds interleave the
three so that whatever else happens on the machine hits them alike.

    flock /tmp/centrex-heavy.lock .venv/bin/python bench/ami_session_cost.py --rate 100

Run as root, like bench/admission.py (same stack, same clean-up). Prints Asterisk's CPU ms per
call for each round and the mean per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import admission  # this directory's benchmark: its stack and its steps

from centrex.asterisk.ami import AmiClient

VARIANTS = {
    "no AMI session": None,
    "session, events off": (),
    "session, 2 events": ("DialEnd", "Hangup"),
}


def hold_session(bench: admission.Bench, events: tuple[str, ...], stop: threading.Event) -> None:
    async def main() -> None:
        ami = AmiClient.from_settings(bench.settings, events=events)
        ami.start()
        await ami.wait_connected(10)
        await asyncio.to_thread(stop.wait)
        ami.close()

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="calls per second (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=15.0)
    args = parser.parse_args()
    bench = admission.Bench(admission.FULL, keep=False, rtp_range=admission.BENCH_RTP_RANGE)
    per_call: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        bench.setup()
        bench.smoke()
        for round_no in range(args.rounds):
            for name, events in VARIANTS.items():
                stop = threading.Event()
                holder = None
                if events is not None:
                    holder = threading.Thread(target=hold_session, args=(bench, events, stop))
                    holder.start()
                    time.sleep(2)
                step = bench.run_step("bare", args.rate, args.step_s)
                stop.set()
                if holder is not None:
                    holder.join()
                ms = step.cpu_ms_per_call().get("asterisk", float("nan"))
                per_call[name].append(ms)
                print(f"round {round_no + 1} {name:>20}: {ms:.2f} ms of Asterisk CPU per call "
                      f"({step.failed_ratio:.1%} failed)", flush=True)  # fmt: skip
    finally:
        bench.cleanup()
    for name, values in per_call.items():
        print(f"{name:>20}: mean {statistics.mean(values):.2f} ms per call at {args.rate} cps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
