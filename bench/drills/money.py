"""Drill: money and goods agree under random Mercado Pago faults, racing cancels and expiries, and a
worker killed mid-job.

    .venv/bin/python bench/drills/money.py                                          # 500 orders
    .venv/bin/python bench/drills/money.py --orders 24 --order-ttl 34 --customers 8  # the short one

Customers order, charge on their own terminal and then, at random: pay; are declined and pay on a
second attempt; cancel before paying; cancel while tapping the card; walk away (the order
expires); tap the card just as the order expires; or let the terminal take the charge, cancel
and then pay or cancel on the terminal. Meanwhile the simulator's chaos answers 500 after doing
the work, answers after the kiosk's deadline, drops connections after doing the work, and delays
(so reorders) and duplicates notifications; a worker is killed with SIGKILL while its jobs wait on
Mercado Pago. Afterwards the chaos stops, everything settles, and the invariant is checked against
the simulator's own records (docs/payments.md#money-and-goods):

- every Mercado Pago order that took money ends on a `paid` kiosk order (its paying charge), or
  is refunded, exactly once;
- no order is paid twice; no paid order is refunded;
- stock = initial - units of paid orders; nothing left unresolved, pending or half-refunded.

Exit status 1 on any breach.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from bench.drills import counts, harness  # noqa: E402
from bench.drills.counts import Report  # noqa: E402
from bench.drills.harness import ADMIN_TOKEN, SKU, Stack, log  # noqa: E402
from bench.drills.kill_worker import hold_mp_reads  # noqa: E402
from tests.support.processes import wait_for  # noqa: E402

INITIAL_STOCK = 1_000_000  # what the harness puts on the shelf
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCENARIOS = {  # name: weight
    "pay": 40,
    "declined_then_pay": 10,
    "cancel_before_paying": 5,
    "cancel_while_tapping": 15,
    "walk_away": 10,
    "tap_at_expiry": 12,
    "cancel_at_terminal": 8,
}
# Periodic tasks and housekeeping that keep deferring while the stack runs: not "work left".
BACKGROUND_TASKS = (
    "payments.cleanup_payment_intents",
    "orders.expire_orders",
    "jobs.%",
    "schedules.%",
)


class Customers:
    """`customers` threads selling `orders` orders, each with a scenario drawn from SCENARIOS."""

    def __init__(
        self, stack: Stack, rng: random.Random, *, orders: int, customers: int, order_ttl: float
    ):
        self.stack, self.rng, self.orders, self.order_ttl = stack, rng, orders, order_ttl
        self.scenarios: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()  # "payment-intents 202" ...
        self.notes: list[str] = []
        self.timers: list[threading.Timer] = []
        self.lock = threading.Lock()
        self._next = 0
        self.threads = [
            threading.Thread(target=self._run, args=(random.Random(rng.random()),), daemon=True)
            for _ in range(customers)
        ]
        for thread in self.threads:
            thread.start()

    def _take(self) -> int | None:
        with self.lock:
            if self._next >= self.orders:
                return None
            self._next += 1
            return self._next

    def sold(self) -> int:
        with self.lock:
            return self._next

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        for timer in self.timers:
            timer.join(max(0.1, deadline - time.monotonic()))

    def _count(self, what: str, response: httpx.Response | None) -> None:
        with self.lock:
            self.answers[
                f"{what} {response.status_code if response is not None else 'no answer'}"
            ] += 1

    def _call(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        what: str,
        body: dict | None = None,
        retry_on: tuple[int, ...] = (500, 502, 503, 504),
        tries: int = 20,
    ) -> httpx.Response | None:
        """One call, retried on a refusal or no answer (a front end would)."""
        response = None
        for _ in range(tries):
            try:
                response = client.request(method, url, json=body)
            except httpx.HTTPError:
                response = None
            self._count(what, response)
            if response is not None and response.status_code not in retry_on:
                return response
            time.sleep(0.5)
        return response

    def _tap(
        self, client: httpx.Client, terminal: str, action: str, within: float = 30.0
    ) -> str | None:
        """Tap at the terminal once its charge is there (an unresolved create may make it later);
        the charge's status afterwards, or None when no charge came."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                response = client.post(f"{self.stack.sim.url}/_sim/terminals/{terminal}/{action}")
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return response.json()["status"]
            time.sleep(0.3)
        return None

    def _pay(self, client: httpx.Client, order_id: str, terminal: str) -> dict | None:
        api = self.stack.api.url
        for _ in range(5):
            response = self._call(
                client,
                "POST",
                f"{api}/orders/{order_id}/payment-intents",
                "payment-intents",
                {"terminal_id": terminal},
                retry_on=(500, 503, 504),
            )
            if response is not None and response.status_code in (201, 202):
                return response.json()
            if response is not None and response.status_code == 409:
                time.sleep(1)  # the previous attempt is still being resolved or ended
                continue
            time.sleep(0.5)  # 502: nothing was charged, try again
        return None

    def _run(self, rng: random.Random) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as client:
            while (n := self._take()) is not None:
                scenario = rng.choices(list(SCENARIOS), weights=list(SCENARIOS.values()))[0]
                with self.lock:
                    self.scenarios[scenario] += 1
                try:
                    self._sell(client, rng, n, scenario)
                except Exception as exc:  # noqa: BLE001 - one customer's bad luck is a note
                    with self.lock:
                        self.notes.append(f"sale {n} ({scenario}): {type(exc).__name__}: {exc}")

    def _sell(self, client: httpx.Client, rng: random.Random, n: int, scenario: str) -> None:
        api = self.stack.api.url
        terminal = f"MONEY_{n}_{uuid.uuid4().hex[:6]}"
        order = self._call(
            client,
            "POST",
            f"{api}/orders",
            "orders",
            {
                "items": [{"sku": SKU, "quantity": rng.randint(1, 3)}],
                "customer_email": f"customer{n}@example.com",
            },
        )
        if order is None or order.status_code != 201:
            with self.lock:
                self.notes.append(f"sale {n}: order not created")
            return
        order_id = order.json()["id"]

        def cancel() -> None:
            self._call(
                client,
                "POST",
                f"{api}/orders/{order_id}/cancel",
                "cancel",
                retry_on=(500, 503, 504),
            )

        if scenario == "cancel_before_paying":
            cancel()
            return
        if self._pay(client, order_id, terminal) is None:
            with self.lock:
                self.notes.append(f"sale {n}: charge never started")
            return
        if scenario == "pay":
            self._tap(client, terminal, "approve")
        elif scenario == "declined_then_pay":
            if self._tap(client, terminal, "decline") is not None:
                time.sleep(
                    rng.uniform(0.2, 1.5)
                )  # the kiosk learns the decline, then a new attempt
                if self._pay(client, order_id, terminal) is not None:
                    self._tap(client, terminal, "approve")
        elif scenario == "cancel_while_tapping":
            racer = threading.Thread(
                target=lambda: self._tap(client, terminal, "approve", within=10)
            )
            time.sleep(rng.uniform(0, 0.3))
            racer.start()
            time.sleep(rng.uniform(0, 0.3))
            cancel()
            racer.join()
        elif scenario == "walk_away":
            pass  # the order expires; the charge expires on the terminal
        elif scenario == "tap_at_expiry":
            # Tap just before or after the order's expiry is due (the expiry job races it).
            delay = self.order_ttl + rng.uniform(-3.0, 1.0)

            def tap() -> None:
                with httpx.Client(timeout=30) as own:
                    self._tap(own, terminal, "approve", within=2)

            timer = threading.Timer(max(0.0, delay), tap)
            timer.daemon = True
            timer.start()
            with self.lock:
                self.timers.append(timer)
        elif scenario == "cancel_at_terminal" and self._tap(client, terminal, "take") is not None:
            cancel()
            self._tap(client, terminal, rng.choice(["approve", "cancel"]), within=5)


# -- settling and checking -------------------------------------------------------------------------


def left(stack: Stack) -> dict[str, int]:
    """What still moves: orders waiting, charges open or unresolved, refunds pending, jobs."""
    background = " AND ".join(f"task_name NOT LIKE '{t}'" for t in BACKGROUND_TASKS)
    row = stack.db(f"""
        SELECT (SELECT count(*) FROM orders WHERE status = 'pending_payment') AS pending_orders,
               (SELECT count(*) FROM payment_intents
                 WHERE status IN ('created', 'at_terminal', 'unresolved')) AS open_charges,
               (SELECT count(*) FROM payment_intents
                 WHERE refund_status = 'pending') AS pending_refunds,
               (SELECT count(*) FROM webhook_inbox WHERE state = 'received') AS inbox,
               (SELECT count(*) FROM procrastinate_jobs
                 WHERE status IN ('todo', 'doing') AND {background}) AS jobs
    """)[0]
    return {k: v for k, v in row.items() if v}


def settle(stack: Stack, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not left(stack):
                return True
        except Exception:  # noqa: BLE001 - try again
            pass
        time.sleep(1)
    return False


def check_invariant(stack: Stack, report: Report) -> None:
    """The invariant, from the simulator's records against the kiosk's tables."""
    sim_orders = stack.sim.get("/_sim/orders")
    intents = {
        r["external_reference"]: r
        for r in stack.db(
            "SELECT id, order_id::text, external_reference, provider_order_id, status, "
            "refund_status FROM payment_intents"
        )
    }
    orders = {
        str(r["id"]): r
        for r in stack.db("SELECT id, status, paid_intent_id, stock_released_at FROM orders")
    }
    took = [o for o in sim_orders if o["took_money"]]
    paying: Counter[str] = Counter()
    refunded = 0
    for charge in took:
        intent = intents.get(charge["external_reference"])
        if intent is None:
            report.fail(
                "lost",
                f"Mercado Pago order {charge['id']} took money; no payment intent sent "
                f"its reference {charge['external_reference']}",
            )
            continue
        order = orders[intent["order_id"]]
        if charge["status"] == "refunded":
            refunded += 1
            if charge["refunds"] != 1:
                report.fail("duplicated", f"{charge['id']} refunded {charge['refunds']} times")
            if order["status"] == "paid" and order["paid_intent_id"] == intent["id"]:
                report.fail(
                    "problems", f"paid order {intent['order_id']} was refunded ({charge['id']})"
                )
            if intent["refund_status"] != "refunded":
                report.fail(
                    "problems",
                    f"{charge['id']} refunded at Mercado Pago, kiosk says refund "
                    f"{intent['refund_status']}",
                )
            continue
        # Processed and kept: it must be the charge that paid its order.
        if order["status"] != "paid" or order["paid_intent_id"] != intent["id"]:
            report.fail(
                "lost",
                f"Mercado Pago order {charge['id']} took money; kiosk order "
                f"{intent['order_id']} is {order['status']} (paid by {order['paid_intent_id']})",
            )
        paying[intent["order_id"]] += 1
    for order_id, n in paying.items():
        if n > 1:
            report.fail("duplicated", f"order {order_id} was paid {n} times")
    intent_ids = {i["id"] for i in intents.values()}
    for order_id, order in orders.items():
        if order["status"] == "paid" and paying[order_id] != 1:
            report.fail(
                "problems",
                f"order {order_id} is paid but {paying[order_id]} charges kept its money",
            )
        if order["status"] == "paid" and order["paid_intent_id"] not in intent_ids:
            report.fail("problems", f"order {order_id} is paid by an unknown intent")
        if order["status"] == "refunded":
            report.fail("problems", f"order {order_id} is refunded (no paid order is refunded)")
    for intent in intents.values():
        if (
            intent["status"] == "processed"
            and intent["refund_status"] is None
            and orders[intent["order_id"]]["paid_intent_id"] != intent["id"]
        ):
            report.fail(
                "problems",
                f"intent {intent['id']} is processed but neither pays its order nor is refunded",
            )
        if intent["refund_status"] in ("pending", "failed"):
            report.fail("problems", f"intent {intent['id']}: refund {intent['refund_status']}")
    sold = stack.db("""SELECT coalesce(sum(i.quantity), 0) AS n FROM order_items i
                       JOIN orders o ON o.id = i.order_id WHERE o.status = 'paid'""")[0]["n"]
    stock = stack.db("SELECT stock FROM products WHERE sku = %s", (SKU,))[0]["stock"]
    if stock != INITIAL_STOCK - sold:
        report.fail("problems", f"stock {stock} != initial {INITIAL_STOCK} - sold {sold}")
    released_paid = [
        o for o, r in orders.items() if r["status"] == "paid" and r["stock_released_at"]
    ]
    if released_paid:
        report.fail("problems", f"{len(released_paid)} paid orders had their stock released")
    report.figures.update(
        {
            "Mercado Pago orders / took money / refunded": (
                f"{len(sim_orders)} / {len(took)} / {refunded}"
            ),
            "kiosk orders by status": dict(
                sorted(Counter(o["status"] for o in orders.values()).items())
            ),
            "payment intents by status": dict(
                sorted(Counter(i["status"] for i in intents.values()).items())
            ),
            "units sold / stock left": f"{sold} / {stock}",
        }
    )


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=500, duration=900, workers=2)
    parser.set_defaults(customers=12)
    parser.add_argument(
        "--order-ttl", type=int, default=60, help="KIOSK_ORDER_TTL of the drill's orders"
    )
    parser.add_argument("--mp-timeout", type=float, default=2.0, help="KIOSK_MP_TIMEOUT_SECONDS")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.06,
        help="chance of each of: 500 after the work, late answer, dropped connection",
    )
    parser.add_argument(
        "--kills", type=int, default=1, help="workers killed while their jobs wait on MP"
    )
    args = parser.parse_args()
    rng = harness.seeded(args)
    report = Report("money")
    report.figures["seed"] = args.seed
    extra = {
        "KIOSK_ORDER_TTL": str(args.order_ttl),
        "KIOSK_PAYMENT_EXPIRATION": "PT5M",
        "KIOSK_MP_TIMEOUT_SECONDS": f"{args.mp_timeout:g}",
        "KIOSK_EXPIRE_ORDERS_CRON": "* * * * * */3",
        "KIOSK_CLEANUP_PAYMENT_INTENTS_CRON": "* * * * * */5",
    }
    with Stack(args, "money", extra_env=extra) as stack:
        chaos = {
            "seed": args.seed,
            "fail_after": args.fault_rate,
            "late": args.fault_rate,
            "late_seconds": args.mp_timeout + 1,
            "drop": args.fault_rate,
            "webhook_delay": 2.0,
            "webhook_duplicate": 0.2,
        }
        stack.sim.chaos(**chaos)
        began = time.monotonic()
        customers = Customers(
            stack, rng, orders=args.orders, customers=args.customers, order_ttl=args.order_ttl
        )
        kills = []
        for i in range(args.kills):
            share = (i + 1) / (args.kills + 1)
            wait_for(
                lambda share=share: customers.done() or customers.sold() >= args.orders * share,
                timeout=args.duration,
                interval=0.1,
                what="the kill's turn",
            )
            held = hold_mp_reads(stack, args.workers, 4)
            running = wait_for(
                stack.supervisor.running, timeout=60, interval=0.1, what="a running worker"
            )
            victim = rng.choice(running)
            doing = stack.db("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing'")[
                0
            ]["n"]
            pid = stack.supervisor.signal(victim, signal.SIGKILL)
            stack.sim.faults()
            kills.append(
                f"t={time.monotonic() - began:.1f}s {victim.name} pid {pid}, {doing} jobs running"
                + (", every worker held on a Mercado Pago read" if held else "")
            )
            log(f"kill -9 {kills[-1]}")
        customers.join(args.duration)
        load_elapsed = time.monotonic() - began
        chaos_counts = stack.sim.get("/_sim/chaos")["counts"]
        stack.sim.chaos()  # Mercado Pago behaves again: everything can settle
        log(f"load done in {load_elapsed:.0f}s; settling")
        settled = settle(stack, args.settle_timeout + args.order_ttl)
        if not settled and counts.redeliver_unacknowledged(stack):
            settled = settle(stack, args.settle_timeout)
        if not settled:
            report.fail("problems", f"not settled: {left(stack)}")
        check_invariant(stack, report)
        failed_jobs = stack.db(
            "SELECT task_name, count(*) AS n FROM procrastinate_jobs "
            "WHERE status = 'failed' GROUP BY 1"
        )
        report.figures.update(
            {
                "orders by scenario": dict(sorted(customers.scenarios.items())),
                "answers": dict(sorted(customers.answers.items())),
                "Mercado Pago faults (chaos)": chaos_counts,
                "kills": kills,
                "stalled jobs put back by the sweep": len(stack.sweeper.retried),
                "worker restarts (supervisor)": stack.supervisor.restarts(),
                "failed jobs (retried later by the clean-up)": {
                    r["task_name"]: r["n"] for r in failed_jobs
                },
                "audit: refunds": stack.db(
                    "SELECT count(*) AS n FROM admin_audit WHERE action = 'payment.refund'"
                )[0]["n"],
                "load / total elapsed": f"{load_elapsed:.0f} s / {time.monotonic() - began:.0f} s",
            }
        )
        report.notes.extend(customers.notes[:50])
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
