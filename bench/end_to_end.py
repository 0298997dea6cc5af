"""End to end: signed webhook -> paid order, with Mercado Pago (the simulator) answering in 50 ms.

    .venv/bin/python bench/end_to_end.py                                 # 2 workers x concurrency 4
    .venv/bin/python bench/end_to_end.py --workers 1,2,4 --concurrency 4
    .venv/bin/python bench/end_to_end.py --mp-delay 0.05 --rate 10 --latency-orders 100 \
        --burst-orders 400

Everything real, on 127.0.0.1: uvicorn (kiosk.app:app), `kiosk simulator` (its /v1 API answers
--mp-delay late, `POST /_sim/faults`), an SMTP sink and a notify-hook receiver (receipt and hook
jobs run for every paid order, as in production), and N `procrastinate --app=tasks.app worker`
processes. Before the workers start, every order is created through the API with its payment
intent (the simulator holds the charge), and the simulator is told the card was approved with its
own webhooks off: this script sends Mercado Pago's notifications itself, signed as Mercado Pago
signs them, so many can arrive at once as they would from many terminals.

Per worker count, two phases on fresh orders:
- latency: --latency-orders notifications at a steady --rate per second (workers mostly idle);
- burst: --burst-orders notifications sent by --senders concurrent clients as fast as they go.
An order counts as paid when the job that paid it returned (its `job_outcomes.ended_at`, just
after its transaction committed); latency runs from the webhook's 200 on this side to that moment
(same machine clock). Burst throughput: orders paid per second from the first webhook sent to the
last order paid; also when the last receipt and hook were delivered. Bounded: every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench import scratch  # noqa: E402
from kiosk.webhooks import signature  # noqa: E402
from tests.support import Api, free_port  # noqa: E402
from tests.support.stack import HookSink, SimulatorProcess, SmtpSink  # noqa: E402

ADMIN = {"Authorization": f"Bearer {scratch.SECRETS['KIOSK_ADMIN_TOKEN']}"}
SECRET = scratch.SECRETS["MP_WEBHOOK_SECRET"]


@dataclass
class Order:
    id: str
    provider_order_id: str
    acked: float = 0.0  # when the webhook's 200 came back
    sent: float = 0.0  # when the webhook was sent


async def prepare(api: str, sim: SimulatorProcess, count: int, first: int) -> list[Order]:
    """`count` orders, each charged on its own terminal, approved there (no webhook yet)."""
    made: list[Order] = []
    gate = asyncio.Semaphore(8)
    async with (
        httpx.AsyncClient(base_url=api, timeout=60, headers=ADMIN) as client,
        httpx.AsyncClient(base_url=sim.url, timeout=60) as simc,
    ):

        async def one(n: int) -> None:
            async with gate:
                r = await client.post(
                    "/orders",
                    json={
                        "items": [{"sku": "coffee", "quantity": 1}],
                        "customer_email": f"c{n}@example.com",
                    },
                )
                r.raise_for_status()
                order_id = r.json()["id"]
                r = await client.post(
                    f"/orders/{order_id}/payment-intents",
                    json={"terminal_id": f"BENCH_TERMINAL_{n}"},
                )
                r.raise_for_status()
                provider = r.json()["provider_order_id"]
                for status in ("at_terminal", "processed"):
                    (
                        await simc.post(f"/_sim/orders/{provider}/status", json={"status": status})
                    ).raise_for_status()
                made.append(Order(order_id, provider))

        await asyncio.gather(*(one(first + n) for n in range(count)))
    return made


async def send(client: httpx.AsyncClient, order: Order) -> None:
    """One `order.processed` notification, signed like Mercado Pago's."""
    request_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "id": int(uuid.uuid4().int % 10**12),
            "type": "order",
            "action": "order.processed",
            "api_version": "v1",
            "application_id": "2836150016842090",
            "date_created": "2026-11-25T12:01:07Z",
            "live_mode": False,
            "user_id": "1243567810",
            "data": {"id": order.provider_order_id, "status": "processed"},
        }
    ).encode()
    headers = {
        "x-signature": signature.header(SECRET, order.provider_order_id, request_id),
        "x-request-id": request_id,
        "content-type": "application/json",
    }
    order.sent = time.time()
    r = await client.post(
        "/webhooks/mercadopago",
        params={"data.id": order.provider_order_id, "type": "order"},
        content=body,
        headers=headers,
    )
    order.acked = time.time()
    if r.status_code != 200 or r.json().get("status") != "received":
        raise SystemExit(f"webhook for {order.provider_order_id}: {r.status_code} {r.text}")


async def at_rate(api: str, orders: list[Order], rate: float) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        start = time.monotonic()
        pending = []
        for n, order in enumerate(orders):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            pending.append(asyncio.create_task(send(client, order)))
        await asyncio.gather(*pending)


async def burst(api: str, orders: list[Order], senders: int) -> None:
    queue = list(reversed(orders))
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=api, timeout=30, limits=limits) as client:

        async def sender() -> None:
            while queue:
                await send(client, queue.pop())

        await asyncio.gather(*(sender() for _ in range(senders)))


def wait_paid(url: str, orders: list[Order], timeout: float) -> dict[str, tuple[float, float]]:
    """Wait until every order is paid and its receipt and hook are delivered; for each order, when
    the job that paid it started and returned (its outcome row)."""
    ids = [o.id for o in orders]
    with psycopg.connect(url, autocommit=True) as conn:

        def done() -> bool:
            paid = conn.execute(
                "SELECT count(*) FROM orders WHERE status = 'paid' AND id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
            if paid < len(ids):
                return False
            sent = conn.execute(
                "SELECT count(*) FROM order_deliveries WHERE state = 'sent' "
                "AND order_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchone()[0]
            return sent == 2 * len(ids)

        scratch.wait_for(done, timeout, f"{len(ids)} orders paid", interval=0.1)
        rows = conn.execute(
            "SELECT pi.provider_order_id, extract(epoch FROM max(jo.started_at))::float, "
            "       extract(epoch FROM max(jo.ended_at))::float "
            "FROM payment_intents pi "
            "JOIN orders o ON o.id = pi.order_id AND o.paid_intent_id = pi.id "
            "JOIN procrastinate_jobs j ON j.task_name = 'payments.process_notification' "
            "     AND j.args->>'provider_order_id' = pi.provider_order_id "
            "JOIN job_outcomes jo ON jo.job_id = j.id AND jo.status = 'succeeded' "
            "WHERE o.id = ANY(%s::uuid[]) GROUP BY 1",
            (ids,),
        ).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}


def durations(url: str, since: float) -> dict[str, float]:
    """Median duration (ms) of each task's attempts that ended after `since`."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT task_name, "
            "1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) "
            "FROM job_outcomes WHERE ended_at > to_timestamp(%s) GROUP BY 1 ORDER BY 1",
            (since,),
        ).fetchall()
    return dict(rows)


def deliveries_done(url: str, orders: list[Order]) -> float:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT extract(epoch FROM max(finished_at))::float FROM order_deliveries "
            "WHERE order_id = ANY(%s::uuid[])",
            ([o.id for o in orders],),
        ).fetchone()[0]


def main() -> int:
    scratch.stop_cleanly()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="2", help="worker process counts (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="jobs per worker process at once (default 4)"
    )
    parser.add_argument(
        "--mp-delay", type=float, default=0.05, help="seconds the simulator's API answers late"
    )
    parser.add_argument(
        "--rate", type=float, default=10, help="notifications per second, latency phase"
    )
    parser.add_argument("--latency-orders", type=int, default=100)
    parser.add_argument("--burst-orders", type=int, default=400)
    parser.add_argument(
        "--senders", type=int, default=16, help="concurrent webhook senders, burst phase"
    )
    parser.add_argument("--api-processes", type=int, default=1, help="uvicorn --workers")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(scratch.machine())
    smtp, hook = SmtpSink(), HookSink()
    smtp.controller.start()
    children: list = []
    try:
        with scratch.server() as server, scratch.database(server, "e2e") as url:
            print(scratch.server_version(url))
            sim_port = free_port()
            env = scratch.env(
                url,
                MP_API_BASE_URL=f"http://127.0.0.1:{sim_port}",
                KIOSK_OUTBOUND_ALLOW_HOSTS="127.0.0.1",
                KIOSK_SMTP_HOST="127.0.0.1",
                KIOSK_SMTP_PORT=str(smtp.port),
                KIOSK_SMTP_STARTTLS="false",
                KIOSK_SMTP_FROM="kiosk@example.com",
                KIOSK_NOTIFY_URL=hook.url,
                KIOSK_NOTIFY_SECRET="bench-notify-secret-0123456789",
                KIOSK_DB_POOL_MAX_SIZE=str(max(10, args.concurrency + 2)),
            )
            scratch.LOGS.mkdir(parents=True, exist_ok=True)
            api = Api(env, scratch.LOGS, workers=args.api_processes)
            children.append(api)
            sim = SimulatorProcess(env, scratch.LOGS, sim_port, f"{api.url}/webhooks/mercadopago")
            children.append(sim)
            sim.webhooks(False)
            httpx.put(
                f"{api.url}/admin/products/coffee",
                headers=ADMIN,
                timeout=30,
                json={"name": "Coffee", "price_cents": 250, "stock": 10**6},
            ).raise_for_status()
            per_run = args.latency_orders + args.burst_orders
            print(f"preparing {per_run * len(counts)} orders with their charges ...", flush=True)
            started = time.monotonic()
            orders = asyncio.run(prepare(api.url, sim, per_run * len(counts), 0))
            print(f"  {time.monotonic() - started:.0f} s", flush=True)
            sim.faults(delay_next=10**9, delay_seconds=args.mp_delay)
            results = []
            for i, processes in enumerate(counts):
                batch = orders[i * per_run : (i + 1) * per_run]
                results.append(
                    run(
                        url,
                        api.url,
                        env,
                        processes,
                        args,
                        batch[: args.latency_orders],
                        batch[args.latency_orders :],
                    )
                )
            received = len(smtp.messages), len(hook.calls)
    except KeyboardInterrupt:
        return 130
    finally:
        scratch.stop_all(list(children))
        smtp.controller.stop()
        hook.server.shutdown()

    print(
        f"\nMercado Pago answering in {1000 * args.mp_delay:.0f} ms; "
        f"{args.concurrency} jobs at once per worker; "
        f"{args.api_processes} API process(es); receipts {received[0]}, hooks {received[1]}"
    )
    print(
        "| workers | latency phase | p50 ms | p95 ms | max ms | burst | orders/s | p50 ms "
        "| p95 ms | "
        "follow-ups done | busy before / load |"
    )
    print("|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for line in results:
        print(line)
    return 0


def run(
    url: str,
    api: str,
    env: dict[str, str],
    processes: int,
    args: argparse.Namespace,
    steady: list[Order],
    rush: list[Order],
) -> str:
    since = scratch.db_now(url)
    workers = [
        scratch.worker(f"bench-e2e-{i}", "tasks.app", env, f"--concurrency={args.concurrency}")
        for i in range(processes)
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            scratch.wait_listening(conn, workers, since)
        time.sleep(1)
        quiet = scratch.wait_quiet(0.3, 30)
        load = scratch.load()
        began = time.time()
        asyncio.run(at_rate(api, steady, args.rate))
        paid = wait_paid(url, steady, 120)
        lat = [1000 * (paid[o.provider_order_id][1] - o.acked) for o in steady]
        to_start = [1000 * (paid[o.provider_order_id][0] - o.acked) for o in steady]
        took = durations(url, began)
        print(
            f"  {processes} workers, {len(steady)} at {args.rate:g}/s: "
            f"p50 {scratch.percentile(lat, 50):.0f} ms, "
            f"p95 {scratch.percentile(lat, 95):.0f} ms; 200 to job start p50 "
            f"{scratch.percentile(to_start, 50):.1f} ms; job durations p50 "
            + ", ".join(f"{task} {ms:.0f} ms" for task, ms in took.items())
            + f" (busy before {quiet:.2f})",
            flush=True,
        )

        asyncio.run(burst(api, rush, args.senders))
        paid_rush = wait_paid(url, rush, 300)
        first_sent = min(o.sent for o in rush)
        last_paid = max(ended for _, ended in paid_rush.values())
        rate = len(rush) / (last_paid - first_sent)
        rush_lat = [1000 * (paid_rush[o.provider_order_id][1] - o.acked) for o in rush]
        follow = deliveries_done(url, rush) - first_sent
        print(
            f"  {processes} workers, burst of {len(rush)}: {rate:.0f} orders/s, p50 "
            f"{scratch.percentile(rush_lat, 50):.0f} ms, "
            f"p95 {scratch.percentile(rush_lat, 95):.0f} ms; "
            f"follow-ups done after {follow:.1f} s",
            flush=True,
        )
    finally:
        scratch.stop_all(workers)
    return (
        f"| {processes} | {len(steady)} at {args.rate:g}/s | {scratch.percentile(lat, 50):.0f} | "
        f"{scratch.percentile(lat, 95):.0f} | {max(lat):.0f} | "
        f"{len(rush)} by {args.senders} senders | "
        f"{rate:.0f} | {scratch.percentile(rush_lat, 50):.0f} | "
        f"{scratch.percentile(rush_lat, 95):.0f} | "
        f"{follow:.1f} s | {quiet:.2f} / {load:.1f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
