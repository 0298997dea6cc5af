"""Drill: `kill -9` a worker while orders are being paid; nothing may be lost or done twice.

    .venv/bin/python bench/drills/kill_worker.py                              # 40 orders, 1 kill
    .venv/bin/python bench/drills/kill_worker.py --orders 500 --duration 120 --kills 5

Customers create orders, charge them on the simulator's terminals and tap approving cards; the
signed webhooks go to uvicorn, the workers read Mercado Pago, mark the orders paid, send the
receipt (aiosmtpd) and the notify hook (a local receiver). Meanwhile a worker with jobs running is
killed with SIGKILL; the supervisor starts it again (as Compose and Railway do) and the stalled-job
sweep puts the dead worker's jobs back once its heartbeat is `--stalled-after` seconds old.

`--during any` kills at whatever moment the schedule says. `--during mp-read` first makes the
simulator answer every read late and kills once notification jobs wait on it and no receipt or
hook is in flight (deterministic: a short test uses it). `--during hook-send` / `receipt-send`
make the receiver hold its answers and kill once every worker has a hook (or a receipt) that the
receiver already counted but not yet answered: the victim's delivery must be sent again, with
the same key; `--during send` alternates the two. Receipts and hooks are delivered at least once:
a copy is reported (each must carry its delivery's one key), never counted as a failure. Exit
status 1 when anything was lost or paid twice, or a copy carried another key.
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
from tests.support.processes import wait_for  # noqa: E402


def jobs_running(stack: Stack) -> dict[str, int]:
    rows = stack.db(
        "SELECT task_name, count(*) AS n FROM procrastinate_jobs WHERE status = 'doing' GROUP BY 1"
    )
    return {r["task_name"]: r["n"] for r in rows}


def hold_mp_reads(stack: Stack, workers: int, seconds: float) -> bool:
    """Make Mercado Pago answer every read `seconds` late, and wait until every worker has a
    notification job waiting on it and runs nothing else. Receipt and hook jobs of orders paid
    just before may still wait for a free slot: they are not running, so the kill cannot cut
    them. True once so, False after `seconds`."""
    stack.sim.faults(delay_next=1000, delay_seconds=seconds, method="GET")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = stack.db("""
            SELECT count(DISTINCT worker_id)
                       FILTER (WHERE task_name = 'payments.process_notification'
                                 AND status = 'doing') AS holding,
                   count(*) FILTER (WHERE status = 'doing'
                                    AND task_name <> 'payments.process_notification') AS others
            FROM procrastinate_jobs WHERE status IN ('todo', 'doing')""")[0]
        if row["holding"] >= workers and not row["others"]:
            return True
        time.sleep(0.05)
    return False


SENDS = {
    "hook-send": ("orders.notify_paid", "hook"),
    "receipt-send": ("orders.send_receipt", "smtp"),
}
HOLD_SECONDS = 6.0  # under the drill's KIOSK_DELIVERY_TIMEOUT_SECONDS (10): the sender waits for it
FRESH_SECONDS = 3.0  # a held call this young is still held when the kill lands


def hold_sends(stack: Stack, mode: str, workers: int, timeout: float) -> str | None:
    """Make the receiver of `mode` hold every answer HOLD_SECONDS after counting the copy, and
    wait until every worker runs a job of that kind whose call the receiver holds (arrived less
    than FRESH_SECONDS ago), so that whichever worker is killed, a copy it sent has arrived and
    its answer has not. The held orders, or None after `timeout`."""
    task, name = SENDS[mode]
    receiver = getattr(stack, name)
    receiver.delay = HOLD_SECONDS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = receiver.holding(time.monotonic() - FRESH_SECONDS)
        rows = stack.db(
            "SELECT worker_id, args->>'order_id' AS order_id FROM procrastinate_jobs "
            "WHERE status = 'doing' AND task_name = %s",
            (task,),
        )
        holding = {r["worker_id"] for r in rows if r["order_id"] in held}
        if len(holding) >= workers:
            return ", ".join(sorted(r["order_id"][:8] for r in rows if r["order_id"] in held))
        time.sleep(0.05)
    return None


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=40, duration=60)
    parser.add_argument("--kills", type=int, default=1, help="workers killed, spread over the load")
    parser.add_argument(
        "--during",
        choices=["any", "mp-read", "hook-send", "receipt-send", "send"],
        default="any",
        help="kill at any moment; while the victim's jobs wait for Mercado Pago; or while "
        "it sends a hook, a receipt, or (send) each in turn",
    )
    args = parser.parse_args()
    rng = harness.seeded(args)
    report = Report("kill-worker")
    report.figures["seed"] = args.seed
    with Stack(args, "kill") as stack:
        began = time.monotonic()
        load = Load(
            stack.api.url,
            stack.sim,
            orders=args.orders,
            duration=args.duration,
            customers=args.customers,
            rate=args.rate,
        )
        kills = []
        for i in range(args.kills):
            share = (i + 1) / (args.kills + 1)
            wait_for(
                lambda share=share: load.reached(share),
                timeout=args.duration + 60,
                interval=0.1,
                what="the kill's turn",
            )
            mode = args.during if args.during != "send" else ("hook-send", "receipt-send")[i % 2]
            held = mode == "mp-read" and hold_mp_reads(stack, args.workers, 4)
            sending = mode in SENDS and hold_sends(stack, mode, args.workers, 30)
            running = wait_for(
                stack.supervisor.running, timeout=60, interval=0.1, what="a running worker"
            )
            victim = rng.choice(running)
            doing = jobs_running(stack)
            pid = stack.supervisor.signal(victim, signal.SIGKILL)
            kills.append(
                f"t={time.monotonic() - began:.1f}s {victim.name} pid {pid}, "
                f"{len(load.sales)} orders in, jobs running everywhere: {doing or 'none'}"
                + (" (held on Mercado Pago reads)" if held else "")
                + (f" ({mode}: answers held for orders {sending})" if sending else "")
            )
            log(f"kill -9 {kills[-1]}")
            if mode == "mp-read":
                stack.sim.faults()  # reads answer at once again
                if not held:
                    report.fail(
                        "problems", "the kill could not wait for jobs held on Mercado Pago reads"
                    )
            if mode in SENDS:
                getattr(stack, SENDS[mode][1]).delay = 0.0  # answers at once again
                if not sending:
                    report.fail(
                        "problems", f"the kill could not wait for every worker to be in a {mode}"
                    )
        load.join(args.duration + 120)
        load.stop()
        settled, redelivered = counts.settle_all(stack, load, args.settle_timeout)
        report.figures.update(
            counts.load_figures(stack, load, time.monotonic() - began, redelivered)
        )
        report.figures.update(
            {"kills": kills, "worker restarts (supervisor)": stack.supervisor.restarts()}
        )
        counts.conclude(report, stack, load, settled, args.settle_timeout)
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
