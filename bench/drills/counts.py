"""Settling and counting for the failure drills (docs/drills.md): what was lost, what was done
twice.

Counts come from the database, the simulator and the two receivers, never from what the kiosk
says about itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.drills.harness import WEBHOOK_SECRET, Load, Stack
from tests.support.stack import notify


def unfinished(stack: Stack) -> dict[str, int]:
    """What is still moving: jobs waiting or running, inbox rows and deliveries not final."""
    row = stack.db("""
        SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')
                  AND task_name NOT LIKE 'schedules.%%') AS jobs,
               (SELECT count(*) FROM webhook_inbox WHERE state = 'received') AS inbox,
               (SELECT count(*) FROM order_deliveries
                WHERE state IN ('pending', 'sending', 'unknown')) AS deliveries
    """)[0]
    return {k: v for k, v in row.items() if v}


def settle(stack: Stack, load: Load, timeout: float) -> bool:
    """Wait until every approved sale is paid and nothing is left moving; False after `timeout`."""
    deadline = time.monotonic() + timeout
    approved = {s.order_id for s in load.approved()}
    while time.monotonic() < deadline:
        try:
            paid = {str(r["id"]) for r in stack.db("SELECT id FROM orders WHERE status = 'paid'")}
            if approved <= paid and not unfinished(stack):
                return True
        except psycopg.OperationalError:
            pass
        time.sleep(0.5)
    return False


def settle_all(stack: Stack, load: Load, timeout: float) -> tuple[bool, int]:
    """Settle; send again what the simulator gave up on and settle once more if anything was.
    Whether it settled, and how many notifications were sent again."""
    settled = settle(stack, load, timeout)
    redelivered = redeliver_unacknowledged(stack)
    if redelivered:
        settled = settle(stack, load, timeout)
    return settled, redelivered


def load_figures(stack: Stack, load: Load, elapsed: float, redelivered: int) -> dict[str, object]:
    """The figures every drill under the customers' load reports."""
    return {
        "orders attempted / approved": f"{len(load.sales)} / {len(load.approved())}",
        "elapsed": f"{elapsed:.1f} s",
        "stalled jobs put back by the sweep": len(stack.sweeper.retried),
        "notifications re-sent after the simulator gave up": redelivered,
        "refused calls (retried by the customers)": dict(load.refused),
    }


def conclude(
    report: Report,
    stack: Stack,
    load: Load,
    settled: bool,
    timeout: float,
    *,
    unapproved_created_is_lost: bool = False,
) -> None:
    """Fail the report for a sale not approved, a stack that did not settle, or what `audit` finds.
    `unapproved_created_is_lost`: a sale whose order exists but whose charge never went through
    counts as lost, not as a mere problem."""
    for sale in load.sales:
        if not sale.approved:
            kind = "lost" if unapproved_created_is_lost and sale.order_id else "problems"
            report.fail(kind, f"sale {sale.n}: {sale.note}")
    if not settled:
        report.fail("problems", f"not settled after {timeout}s: {unfinished(stack)}")
    audit(stack, report, {s.order_id: s.provider_order_id for s in load.approved()})


def redeliver_unacknowledged(stack: Stack) -> int:
    """Send again the notifications the simulator gave up on (three quick tries), as Mercado Pago
    does later (every 15 minutes at first): an answer other than 200 is never an acknowledgement."""
    sent = 0
    with httpx.Client(timeout=30) as client:
        for hook in stack.sim.get("/_sim/webhooks"):
            if 200 not in hook["answers"] and 201 not in hook["answers"]:
                response = notify(
                    stack.api.url,
                    hook["order_id"],
                    hook["notification_id"],
                    hook["action"],
                    secret=WEBHOOK_SECRET,
                    client=client,
                )
                hook["answers"].append(response.status_code)
                sent += 1
    return sent


@dataclasses.dataclass
class Report:
    drill: str
    ok: bool = True
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    lost: list[str] = dataclasses.field(default_factory=list)
    duplicated: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def fail(self, kind: str, message: str) -> None:
        getattr(self, kind).append(message)
        self.ok = False

    def print(self) -> None:
        print(f"\n== drill {self.drill}: {'PASS' if self.ok else 'FAIL'}")
        width = max((len(k) for k in self.figures), default=0)
        for key, value in self.figures.items():
            print(f"  {key:<{width}}  {value}")
        for title, items in (
            ("LOST", self.lost),
            ("DUPLICATED", self.duplicated),
            ("PROBLEMS", self.problems),
            ("notes", self.notes),
        ):
            if items:
                print(f"  {title} ({len(items)}):")
                for item in items[:30]:
                    print(f"    - {item}")
                if len(items) > 30:
                    print(f"    ... and {len(items) - 30} more")

    def write(self, path: Path | None) -> None:
        if path:
            path.write_text(json.dumps(dataclasses.asdict(self), indent=2, default=str))


def audit(stack: Stack, report: Report, expected_paid: dict[str, str]) -> None:
    """Count everything from the database, the simulator and the two receivers.

    `expected_paid`: kiosk order id -> Mercado Pago order id of every charge a card approved.
    Lost: an approved charge whose order is not paid, an acknowledged notification not in the
    inbox, a paid order without its receipt or its hook. Duplicated: anything twice.
    """
    orders = {
        str(r["id"]): r
        for r in stack.db("SELECT id, status, customer_email, paid_intent_id FROM orders")
    }
    statuses = Counter(r["status"] for r in orders.values())
    report.figures["orders by status"] = dict(sorted(statuses.items()))
    paid = {oid for oid, r in orders.items() if r["status"] == "paid"}

    # Money taken at Mercado Pago <-> kiosk orders paid.
    intents = {
        r["provider_order_id"]: r
        for r in stack.db(
            "SELECT id, order_id::text, provider_order_id, status FROM payment_intents "
            "WHERE provider_order_id IS NOT NULL"
        )
    }
    charged: Counter[str] = Counter()
    for sim_order in stack.sim.get("/_sim/orders"):
        if sim_order["status"] != "processed":
            continue
        intent = intents.get(sim_order["id"])
        if intent is None:
            report.fail(
                "lost",
                f"Mercado Pago order {sim_order['id']} was paid but no payment intent "
                "knows it (money taken, order not paid)",
            )
            continue
        charged[intent["order_id"]] += 1
    report.figures["charges approved at Mercado Pago"] = sum(charged.values())
    for order_id, count in charged.items():
        if count > 1:
            report.fail("duplicated", f"order {order_id} was charged {count} times")
    for order_id, provider_order_id in expected_paid.items():
        status = orders.get(order_id, {}).get("status")
        if status != "paid":
            report.fail(
                "lost",
                f"order {order_id} ({provider_order_id}) approved at Mercado Pago but {status}",
            )
    for order_id in paid - set(expected_paid):
        report.fail("problems", f"order {order_id} is paid but no card approved it in this drill")
    report.figures["orders paid"] = len(paid)

    # Receipts and hooks, counted by the receivers; the delivery ledger says why one is missing.
    # At least once: a copy is no failure, as long as every copy of a delivery carried its one
    # key (Message-ID, Idempotency-Key) and, for the hook, the same body; and the ledger counted it
    # (a copy only comes from an attempt made after one that may have delivered: `resends`).
    deliveries = {
        (str(r["order_id"]), r["kind"]): r
        for r in stack.db(
            "SELECT order_id, kind, state, attempts, resends, maybe_delivered, last_error "
            "FROM order_deliveries"
        )
    }
    report.figures["deliveries by state"] = dict(
        sorted(Counter(f"{k[1]}:{r['state']}" for k, r in deliveries.items()).items())
    )
    duplicates: dict[str, str] = {}
    for kind, receiver in (("receipt", stack.smtp), ("notify_paid", stack.hook)):
        with receiver.lock:
            counts = dict(receiver.per_order)
            keys = {k: set(v) for k, v in receiver.keys.items()}
            bodies = {k: set(v) for k, v in receiver.bodies.items()}
        report.figures[f"{kind}s received"] = sum(counts.values())
        copies = {order_id: got - 1 for order_id, got in counts.items() if got > 1}
        for order_id in paid:
            got = counts.get(order_id, 0)
            ledger = deliveries.get((order_id, kind))
            state = ledger["state"] if ledger else "not planned"
            if got == 0:
                why = f"delivery {state}" + (
                    f": {ledger['last_error']}" if ledger and ledger["last_error"] else ""
                )
                report.fail("lost", f"{kind} of order {order_id} never arrived ({why})")
                continue
            if state != "sent":
                report.fail(
                    "problems", f"{kind} of order {order_id} arrived but its delivery is {state}"
                )
            expected = f"order-paid-{order_id}" if kind == "notify_paid" else None
            if len(keys[order_id]) != 1 or (expected and keys[order_id] != {expected}):
                report.fail(
                    "problems",
                    f"{kind} of order {order_id}: its {got} copies carried the keys "
                    f"{sorted(keys[order_id])}, not one",
                )
            if len(bodies[order_id]) != 1:
                report.fail("problems", f"{kind} of order {order_id}: its {got} copies differ")
            if ledger and got - 1 > ledger["resends"]:
                report.fail(
                    "problems",
                    f"{kind} of order {order_id} arrived {got} times but its delivery "
                    f"counts {ledger['resends']} resends",
                )
        for order_id in set(counts) - paid:
            report.fail("problems", f"{kind} for order {order_id}, which is not paid")
        duplicates[kind] = (
            f"{sum(copies.values())} extra copies of {len(copies)} deliveries, "
            "each copy with its delivery's one key"
        )
    report.figures["duplicates (at least once, same key)"] = duplicates
    if stack.hook.bad_signature:
        report.fail(
            "problems", f"{stack.hook.bad_signature} notify hook calls with a bad signature"
        )
    resent = [r for r in deliveries.values() if r["maybe_delivered"]]
    if resent:
        report.notes.append(
            f"{len(resent)} deliveries had an attempt whose outcome was unknown (its worker was "
            f"killed while sending, or lost the database) and were sent again with the same key: "
            f"{sum(r['resends'] for r in resent)} resends in the ledger; the receivers' duplicates "
            "above are those that had arrived"
        )

    # The inbox against what the simulator saw acknowledged.
    inbox = stack.db("SELECT notification_id, state FROM webhook_inbox")
    report.figures["inbox by state"] = dict(sorted(Counter(r["state"] for r in inbox).items()))
    stored = {r["notification_id"] for r in inbox}
    webhooks = stack.sim.get("/_sim/webhooks")
    acked = [w for w in webhooks if 200 in w["answers"] or 201 in w["answers"]]
    report.figures["notifications sent / acknowledged"] = f"{len(webhooks)} / {len(acked)}"
    for w in acked:
        if str(w["notification_id"]) not in stored:
            report.fail(
                "lost",
                f"notification {w['notification_id']} was acknowledged but is not in the inbox",
            )
    for r in stack.db("""
            SELECT i.id, i.notification_id, i.action, i.resource_id, i.job_id, i.received_at,
                   j.status AS job_status, o.status AS order_status
            FROM webhook_inbox i
            LEFT JOIN procrastinate_jobs j ON j.id = i.job_id
            LEFT JOIN payment_intents p ON p.provider_order_id = i.resource_id
            LEFT JOIN orders o ON o.id = p.order_id
            WHERE i.state = 'received'"""):
        report.fail(
            "problems",
            f"inbox row {r['id']} ({r['action']} of {r['resource_id']}, received "
            f"{r['received_at']:%H:%M:%S.%f}) is still 'received': job {r['job_id']} "
            f"{r['job_status']}, order {r['order_status']}",
        )

    # Jobs: none left behind.
    jobs = stack.db(
        "SELECT task_name, status::text, count(*) AS n FROM procrastinate_jobs "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    report.figures["jobs"] = {f"{r['task_name']}:{r['status']}": r["n"] for r in jobs}
    for r in jobs:
        if r["status"] in ("todo", "doing") and not r["task_name"].startswith("schedules."):
            report.fail("problems", f"{r['n']} {r['task_name']} jobs still {r['status']}")
        if r["status"] in ("failed", "aborted", "cancelled"):
            report.fail("problems", f"{r['n']} {r['task_name']} jobs {r['status']}")


def finish(report: Report, stack: Stack | None, args: argparse.Namespace) -> int:
    report.print()
    report.write(args.json)
    if stack is not None:
        stack.keep_logs = args.keep_logs or not report.ok
    return 0 if report.ok else 1
