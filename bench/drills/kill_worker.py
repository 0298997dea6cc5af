"""Drill: `kill -9` a worker while orders are being paid; nothing may be lost or done twice.

    .venv/bin/python bench/drills/kill_worker.py                                  # 40 orders, 1 kill
    .venv/bin/python bench/drills/kill_worker.py --orders 500 --duration 120 --kills 5

Customers create orders, charge them on the simulator's terminals and tap approving cards; the
signed webhooks go to uvicorn, the workers read Mercado Pago, mark the orders paid, send the
receipt (aiosmtpd) and the notify hook (a local receiver). Meanwhile a worker with jobs running is
killed with SIGKILL; the supervisor starts it again (as Compose and Railway do) and the stalled-job
sweep puts the dead worker's jobs back once its heartbeat is `--stalled-after` seconds old.

`--during any` kills at whatever moment the schedule says. `--during mp-read` first makes the
simulator answer every read late and kills once notification jobs wait on it and no receipt or
hook is in flight (deterministic: the short test uses it). Exit status 1 when anything was lost or
duplicated.
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


def jobs_running(stack: Stack) -> dict[str, int]:
    rows = stack.db("SELECT task_name, count(*) AS n FROM procrastinate_jobs WHERE status = 'doing' "
                    "GROUP BY 1")
    return {r["task_name"]: r["n"] for r in rows}


def hold_mp_reads(stack: Stack, workers: int, seconds: float) -> bool:
    """Make Mercado Pago answer every read `seconds` late, and wait until every worker has a
    notification job waiting on it and runs nothing else. Receipt and hook jobs of orders paid
    just before may still wait for a free slot: they are not running, so the kill cannot cut
    them. True once so, False after `seconds`."""
    stack.sim.control("/_sim/faults", {"delay_next": 1000, "delay_seconds": seconds, "method": "GET"})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = stack.db("""
            SELECT count(DISTINCT worker_id) FILTER (WHERE task_name = 'payments.process_notification'
                                                      AND status = 'doing') AS holding,
                   count(*) FILTER (WHERE status = 'doing'
                                    AND task_name <> 'payments.process_notification') AS others
            FROM procrastinate_jobs WHERE status IN ('todo', 'doing')""")[0]
        if row["holding"] >= workers and not row["others"]:
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=40, duration=60)
    parser.add_argument("--kills", type=int, default=1, help="workers killed, spread over the load")
    parser.add_argument("--during", choices=["any", "mp-read"], default="any",
                        help="kill at any moment, or while the victim's jobs wait for Mercado Pago")
    args = parser.parse_args()
    rng = harness.seeded(args)
    report = Report("kill-worker")
    report.figures["seed"] = args.seed
    with Stack(args, "kill") as stack:
        began = time.monotonic()
        load = Load(stack.api.url, stack.sim, orders=args.orders, duration=args.duration,
                    customers=args.customers, rate=args.rate)
        kills = []
        for i in range(args.kills):
            share = (i + 1) / (args.kills + 1)
            harness.wait(lambda: load.reached(share), args.duration + 60, "the kill's turn")
            held = args.during == "mp-read" and hold_mp_reads(stack, args.workers, 4)
            running = harness.wait(stack.supervisor.running, 60, "a running worker")
            victim = rng.choice(running)
            doing = jobs_running(stack)
            pid = stack.supervisor.signal(victim, signal.SIGKILL)
            kills.append(f"t={time.monotonic() - began:.1f}s {victim.name} pid {pid}, "
                         f"{len(load.sales)} orders in, jobs running everywhere: {doing or 'none'}"
                         + (" (held on Mercado Pago reads)" if held else ""))
            log(f"kill -9 {kills[-1]}")
            if args.during == "mp-read":
                stack.sim.control("/_sim/faults", {})  # reads answer at once again
                if not held:
                    report.fail("problems", "the kill could not wait for jobs held on Mercado Pago reads")
        load.join(args.duration + 120)
        load.stop()
        settled, redelivered = counts.settle_all(stack, load, args.settle_timeout)
        report.figures.update(counts.load_figures(stack, load, time.monotonic() - began, redelivered))
        report.figures.update({"kills": kills, "worker restarts (supervisor)": stack.supervisor.restarts()})
        counts.conclude(report, stack, load, settled, args.settle_timeout)
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
