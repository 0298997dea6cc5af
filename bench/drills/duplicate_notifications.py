"""Drill: 100 copies of each of 50 notifications, all at once; each order is paid once.

    .venv/bin/python bench/drills/duplicate_notifications.py                        # 50 x 100
    .venv/bin/python bench/drills/duplicate_notifications.py --notifications 200 --copies 100

Charges for `--notifications` orders are approved at the simulator with its webhooks off; then the
drill sends every order's `order.processed` notification `--copies` times (same notification id,
each copy freshly signed with its own request id, as a retrying Mercado Pago would), shuffled,
`--senders` at a time, to two uvicorn processes. Expected: every answer 200, exactly one inbox row
and one job per notification, each order paid once, one receipt and one hook per order.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from bench.drills import counts, harness  # noqa: E402
from bench.drills.counts import Report  # noqa: E402
from bench.drills.harness import Load, Stack, log  # noqa: E402


async def blast(
    api_url: str, copies: list[tuple[str, int]], senders: int
) -> tuple[Counter, Counter, list[float]]:
    """POST every (provider order id, notification id) copy; answers by status and body, requests
    sent again because no answer came, latencies."""
    from kiosk.webhooks import signature

    answers: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in copies:
        queue.put_nowait(item)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            provider_order_id, notification_id = queue.get_nowait()
            request_id = str(uuid.uuid4())
            body = {
                "id": notification_id,
                "type": "order",
                "action": "order.processed",
                "api_version": "v1",
                "date_created": "2026-11-25T12:01:07Z",
                "live_mode": False,
                "data": {"id": provider_order_id, "status": "processed"},
            }
            headers = {
                "x-signature": signature.header(
                    harness.WEBHOOK_SECRET, provider_order_id, request_id
                ),
                "x-request-id": request_id,
            }
            began = time.monotonic()
            for attempt in range(3):
                try:
                    response = await client.post(
                        f"{api_url}/webhooks/mercadopago",
                        json=body,
                        headers=headers,
                        params={"data.id": provider_order_id, "type": "order"},
                    )
                except httpx.TransportError as exc:
                    # No answer at all (a keep-alive connection closed under the request): a sender
                    # tries again, as Mercado Pago does; counted, not an answer.
                    dropped[type(exc).__name__] += 1
                    if attempt == 2:
                        answers[type(exc).__name__] += 1
                    continue
                status = response.json().get("status") if response.status_code == 200 else None
                answers[
                    f"{response.status_code} {status}" if status else str(response.status_code)
                ] += 1
                break
            latencies.append(time.monotonic() - began)

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return answers, dropped, latencies


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=50, duration=120)
    parser.set_defaults(api_processes=2)
    parser.add_argument(
        "--notifications", type=int, default=50, help="distinct notifications (one per order)"
    )
    parser.add_argument("--copies", type=int, default=100, help="copies of each notification")
    parser.add_argument("--senders", type=int, default=64, help="requests in flight at once")
    args = parser.parse_args()
    rng = harness.seeded(args)
    report = Report("duplicate-notifications")
    with Stack(args, "dup") as stack:
        stack.sim.webhooks(False)
        load = Load(
            stack.api.url,
            stack.sim,
            orders=args.notifications,
            duration=args.duration,
            customers=args.customers,
        )
        load.join(args.duration + 60)
        approved = load.approved()
        log(
            f"{len(approved)} charges approved with webhooks off; sending "
            f"{len(approved) * args.copies} notifications"
        )
        ids = {s.provider_order_id: secrets.randbelow(9 * 10**11) + 10**11 for s in approved}
        copies = [item for item in ids.items() for _ in range(args.copies)]
        rng.shuffle(copies)
        began = time.monotonic()
        answers, dropped, latencies = asyncio.run(blast(stack.api.url, copies, args.senders))
        took = time.monotonic() - began
        settled = counts.settle(stack, load, args.settle_timeout)
        latencies.sort()

        inbox = stack.db(
            "SELECT notification_id, count(*) AS n, count(job_id) AS jobs FROM webhook_inbox "
            "GROUP BY 1"
        )
        jobs = stack.db(
            "SELECT args->>'provider_order_id' AS p, count(*) AS n FROM procrastinate_jobs "
            "WHERE task_name = 'payments.process_notification' GROUP BY 1"
        )
        report.figures.update(
            {
                "notifications x copies": f"{len(ids)} x {args.copies} = {len(copies)}",
                "answers": dict(answers),
                "sent again after a connection dropped": dict(dropped),
                "sent in": f"{took:.1f} s ({len(copies) / took:.0f}/s, "
                f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms)",
                "inbox rows / with a job": (
                    f"{sum(r['n'] for r in inbox)} / {sum(r['jobs'] for r in inbox)}"
                ),
                "payments.process_notification jobs": sum(r["n"] for r in jobs),
            }
        )
        if set(answers) - {"200 received", "200 duplicate"}:
            report.fail("problems", f"answers other than 200: {dict(answers)}")
        if answers["200 received"] != len(ids):
            report.fail(
                "duplicated" if answers["200 received"] > len(ids) else "lost",
                f"{answers['200 received']} copies accepted as new for {len(ids)} notifications",
            )
        stored = {r["notification_id"]: r for r in inbox}
        for notification_id in ids.values():
            row = stored.get(str(notification_id))
            if row is None:
                report.fail("lost", f"notification {notification_id} is not in the inbox")
            elif row["jobs"] != 1:
                report.fail("problems", f"notification {notification_id} has {row['jobs']} jobs")
        for r in jobs:
            if r["n"] != 1:
                report.fail("duplicated", f"{r['n']} jobs for Mercado Pago order {r['p']}")
        counts.conclude(report, stack, load, settled, args.settle_timeout)
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
