"""Drill: SIGTERM every worker while orders are being paid, then start new ones; nothing is lost.

    .venv/bin/python bench/drills/sigterm_workers.py                                # 1 round
    .venv/bin/python bench/drills/sigterm_workers.py --orders 500 --duration 120 --rounds 3

What a deploy does: every worker gets SIGTERM at once (workers run with the production flag
`--shutdown-graceful-timeout=25`), finishes the jobs it holds, unregisters and exits 0. For
`--gap` seconds no worker runs and jobs wait in the queue, as customers keep paying; then new
workers start and drain it. Nothing may be left `doing` (a graceful stop strands no job, so the
stalled-job sweep must find nothing), no exit code other than 0, nothing lost or done twice.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills import counts, harness  # noqa: E402
from bench.drills.counts import Report  # noqa: E402
from bench.drills.harness import Load, Stack, log  # noqa: E402
from tests.support.processes import until, wait_for  # noqa: E402

GRACE = 25 + 15  # the graceful timeout, plus the time to start and unregister


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=40, duration=60)
    parser.add_argument("--rounds", type=int, default=1, help="times every worker is stopped")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds without any worker")
    args = parser.parse_args()
    harness.seeded(args)
    report = Report("sigterm-workers")
    with Stack(args, "term") as stack:
        supervisor = stack.supervisor
        began = time.monotonic()
        load = Load(
            stack.api.url,
            stack.sim,
            orders=args.orders,
            duration=args.duration,
            customers=args.customers,
            rate=args.rate,
        )
        rounds = []
        for i in range(args.rounds):
            share = (i + 1) / (args.rounds + 1)
            wait_for(
                lambda share=share: load.reached(share),
                timeout=args.duration + 60,
                interval=0.1,
                what="the round's turn",
            )
            wait_for(supervisor.ready, timeout=60, interval=0.1, what="every worker running")
            running = stack.db(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing'"
            )[0]["n"]
            exits_before = [len(s.exits) for s in supervisor.slots]
            supervisor.pause()
            signalled = time.monotonic()
            for slot in supervisor.slots:
                supervisor.signal(slot, signal.SIGTERM)
            stopped = until(supervisor.stopped, GRACE)
            took = time.monotonic() - signalled
            codes = [
                harness.signal_name(code)
                for slot, n in zip(supervisor.slots, exits_before, strict=True)
                for _, code in slot.exits[n:]
            ]
            stranded = stack.db(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing'"
            )[0]["n"]
            waiting = stack.db(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'"
            )[0]["n"]
            time.sleep(args.gap)
            queued = stack.db("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'")[
                0
            ]["n"]
            supervisor.resume()
            rounds.append(
                {
                    "at": f"{signalled - began:.1f}s",
                    "jobs running at SIGTERM": running,
                    "all exited after": f"{took:.2f}s",
                    "exit codes": codes,
                    "jobs left doing": stranded,
                    "jobs waiting after the stop / the gap": f"{waiting} / {queued}",
                    "orders in": len(load.sales),
                }
            )
            log(f"round {i + 1}: {rounds[-1]}")
            if not stopped:
                report.fail(
                    "problems", f"round {i + 1}: workers still running {GRACE}s after SIGTERM"
                )
            if len(codes) != args.workers or any(code != "0" for code in codes):
                report.fail("problems", f"round {i + 1}: exit codes {codes}")
            if stranded:
                report.fail(
                    "problems", f"round {i + 1}: {stranded} jobs left 'doing' by a graceful stop"
                )
        load.join(args.duration + 120)
        load.stop()
        settled, redelivered = counts.settle_all(stack, load, args.settle_timeout)
        report.figures.update(
            counts.load_figures(stack, load, time.monotonic() - began, redelivered)
        )
        report.figures["rounds"] = rounds
        if stack.sweeper.retried:
            report.fail("problems", f"the sweep had to put back jobs {stack.sweeper.retried}")
        counts.conclude(report, stack, load, settled, args.settle_timeout)
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
