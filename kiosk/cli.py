"""The `kiosk` command: `kiosk dev`, `kiosk migrate`, `kiosk worker-health`, `kiosk simulator`,
`kiosk tap`, `kiosk secret-key`, `kiosk rotate-secrets`, `kiosk queues`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.queues.service import QueueView
    from kiosk.queues.store import QueueControl


def _migrate(args: argparse.Namespace) -> int:
    from kiosk import migrations
    from kiosk.settings import load_or_exit

    load_or_exit()
    if args.downgrade:
        migrations.downgrade(revision=args.downgrade)
    else:
        migrations.upgrade(revision=args.revision)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from kiosk import devserver

    return devserver.run(
        host=args.host, port=args.port, state_dir=args.state_dir, simulator_port=args.simulator_port
    )


def _simulator(args: argparse.Namespace) -> int:
    from kiosk.simulator import server

    secret = os.environ.get("MP_WEBHOOK_SECRET")
    if not secret:
        print("kiosk: invalid configuration: MP_WEBHOOK_SECRET is not set", file=sys.stderr)
        return 2
    webhook_url = args.webhook_url or None
    server.run(args.host, args.port, webhook_url, secret, os.environ.get("MP_ACCESS_TOKEN") or None)
    return 0


def _tap(args: argparse.Namespace) -> int:
    import httpx

    action = "decline" if args.decline else "cancel" if args.cancel else "approve"
    url = f"{args.simulator_url.rstrip('/')}/_sim/terminals/{args.terminal_id}/{action}"
    try:
        response = httpx.post(url, timeout=10)
    except httpx.HTTPError as exc:
        print(
            f"kiosk tap: cannot reach the simulator at {args.simulator_url}: {exc}", file=sys.stderr
        )
        return 1
    if response.status_code != 200:
        print(f"kiosk tap: {response.json().get('message', response.text)}", file=sys.stderr)
        return 1
    order = response.json()
    print(
        f"terminal {args.terminal_id}: Mercado Pago order {order['id']} "
        f"({order['transactions']['payments'][0]['amount']}) is {order['status']}"
    )
    return 0


def _worker_health(args: argparse.Namespace) -> int:
    from kiosk.heartbeat import check

    return check.run(host=args.host)


def _secret_key(args: argparse.Namespace) -> int:
    from kiosk.secretbox import generate_key

    print(generate_key())
    return 0


def _rotate_secrets(args: argparse.Namespace) -> int:
    import asyncio

    from kiosk import db, secretbox
    from kiosk.schedules import service
    from kiosk.settings import load_or_exit

    load_or_exit()
    keys = secretbox.keyring()
    if not keys.available:
        print("kiosk rotate-secrets: KIOSK_SECRET_KEY is not set", file=sys.stderr)
        return 2

    async def rotate() -> tuple[int, int]:
        pool = db.create_pool(role="app", min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            return await service.rotate_secrets(keys)
        finally:
            await db.close_pool()

    try:
        rotated, total = asyncio.run(rotate())
    except secretbox.SecretUnreadable as exc:
        print(f"kiosk rotate-secrets: {exc.detail}", file=sys.stderr)
        return 1
    print(
        f"re-encrypted the secrets of {rotated} schedules with the first key "
        f"({total} hold secrets); older keys may now be removed from KIOSK_SECRET_KEY"
    )
    return 0


def _cli_actor() -> str:
    """`cli:<user>`: who ran the command, for the audit log and `paused_by`."""
    import getpass

    from kiosk.audit import actor_name

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    return f"cli:{actor_name(user, default='unknown')}"


def _limit_value(text: str) -> str:
    """`--max-per-second` / `--max-running`: a number, or `none` to clear that limit."""
    return text.strip().lower()


def _queues(args: argparse.Namespace) -> int:
    """`kiosk queues ...`: the same service functions (checks, audit) as the API and dashboard."""
    import asyncio

    import psycopg
    import psycopg_pool

    from kiosk import db
    from kiosk.audit import Operator
    from kiosk.errors import DomainError
    from kiosk.queues import service, store
    from kiosk.settings import load_or_exit

    load_or_exit()
    by = Operator(_cli_actor())
    if args.action == "limits" and not (
        args.clear or args.max_per_second is not None or args.max_running is not None
    ):
        print(
            "kiosk queues limits: give --max-per-second, --max-running or --clear",
            file=sys.stderr,
        )
        return 2

    def number(text: str | None, kind: type[int] | type[float]) -> float | int | None:
        if text in (None, "none"):
            return None
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{text!r} is not {what} (or `none` for no limit)") from None

    async def run() -> str:
        pool = db.create_pool(role="app", min_size=1, max_size=1)
        await pool.open(wait=True, timeout=10)
        try:
            async with db.transaction() as conn:
                if args.action == "list":
                    return _queue_table(await service.list_queues(conn))
                if args.action == "pause":
                    control = await service.pause(conn, args.name, args.reason, by)
                elif args.action == "resume":
                    control = await service.resume(conn, args.name, by)
                else:
                    current = await store.get_control(conn, service.check_name(args.name))
                    rate: object = current.max_per_second
                    running: object = current.max_running
                    if args.clear:
                        rate = running = None
                    if args.max_per_second is not None:
                        rate = number(args.max_per_second, float)
                    if args.max_running is not None:
                        running = number(args.max_running, int)
                    control = await service.set_limits(conn, args.name, rate, running, by)
            return _queue_line(control)
        finally:
            await db.close_pool()

    try:
        print(asyncio.run(run()))
    except (DomainError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, DomainError) else str(exc)
        print(f"kiosk queues {args.action}: {detail}", file=sys.stderr)
        return 2
    except psycopg.errors.UndefinedTable:
        print(
            f"kiosk queues {args.action}: the schema is not migrated: run `kiosk migrate`",
            file=sys.stderr,
        )
        return 1
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        print(
            f"kiosk queues {args.action}: cannot reach the database ({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    return 0


def _limit_text(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}"


def _queue_line(control: QueueControl) -> str:
    state = "paused" if control.paused else "running"
    line = (
        f"{control.name}: {state}, max_per_second {_limit_text(control.max_per_second)}, "
        f"max_running {_limit_text(control.max_running)}"
    )
    if control.paused:
        line += f" (paused by {control.paused_by}"
        line += f": {control.paused_reason})" if control.paused_reason else ")"
    return line


def _queue_table(queues: list[QueueView]) -> str:
    header = ("QUEUE", "STATE", "MAX/S", "MAX RUNNING", "TODO", "DOING", "OLDEST WAIT", "REASON")
    rows = [header]
    for q in queues:
        age = q.oldest_runnable_age_seconds
        rows.append(
            (
                q.name,
                "paused" if q.paused else "running",
                _limit_text(q.max_per_second),
                _limit_text(q.max_running),
                str(q.counts.get("todo", 0)),
                str(q.counts.get("doing", 0)),
                "-" if age is None else f"{age:.0f}s",
                (f"{q.paused_reason or ''} (by {q.paused_by})" if q.paused else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        (
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        ).rstrip()
        for row in rows
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run database (embedded unless DATABASE_URL), API and worker")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".kiosk"),
        help="where the embedded database and dev secrets live (default: ./.kiosk, git-ignored)",
    )
    dev.add_argument(
        "--simulator-port",
        type=int,
        default=8090,
        help="port of the Mercado Pago simulator, started when MP_API_BASE_URL is not set",
    )
    dev.set_defaults(func=_dev)

    migrate = sub.add_parser("migrate", help="alembic upgrade head (the only migration step)")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")
    migrate.set_defaults(func=_migrate)

    health = sub.add_parser(
        "worker-health",
        help="container health check: exit 0 when a worker of this host is alive (docs/deploy.md)",
    )
    health.add_argument(
        "--host", help="check the workers of this host name (default: this machine's)"
    )
    health.set_defaults(func=_worker_health)

    sim = sub.add_parser(
        "simulator", help="run the Mercado Pago Point simulator (docs/payments.md)"
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/mercadopago",
        help="where signed notifications go (MP_WEBHOOK_SECRET signs them); empty for none",
    )
    sim.set_defaults(func=_simulator)

    tap = sub.add_parser(
        "tap", help="tap a card on a simulated terminal: pay the charge waiting there"
    )
    tap.add_argument("terminal_id")
    choice = tap.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_true", help="the card pays (default)")
    choice.add_argument("--decline", action="store_true", help="the card is declined")
    choice.add_argument(
        "--cancel", action="store_true", help="the customer cancels on the terminal"
    )
    tap.add_argument(
        "--simulator-url",
        default=os.environ.get("KIOSK_SIMULATOR_URL", "http://127.0.0.1:8090"),
        help="default: $KIOSK_SIMULATOR_URL or http://127.0.0.1:8090",
    )
    tap.set_defaults(func=_tap)

    key = sub.add_parser("secret-key", help="print a new key for KIOSK_SECRET_KEY (docs/deploy.md)")
    key.set_defaults(func=_secret_key)
    rotate = sub.add_parser(
        "rotate-secrets",
        help="re-encrypt stored secrets with the first key of KIOSK_SECRET_KEY (docs/deploy.md)",
    )
    rotate.set_defaults(func=_rotate_secrets)

    queues = sub.add_parser(
        "queues",
        help="list, pause, resume or limit job queues on every worker (docs/workers.md)",
        description="Queue controls, written straight to the database (DATABASE_URL) and audited "
        "as cli:<user>. Workers obey them within a second (docs/workers.md, Queue controls).",
    )
    queue_actions = queues.add_subparsers(dest="action", required=True)
    queue_actions.add_parser("list", help="every queue: state, limits, waiting and running jobs")
    pause = queue_actions.add_parser(
        "pause", help="no new job of the queue starts on any worker; running jobs finish"
    )
    pause.add_argument("name", help="queue name (may have no job yet)")
    pause.add_argument("--reason", help="why, shown to other operators (at most 200 characters)")
    resume = queue_actions.add_parser("resume", help="jobs of the queue start again")
    resume.add_argument("name")
    limits = queue_actions.add_parser(
        "limits",
        help="set the queue's rate limit and concurrency cap (across all workers)",
        description="Options left out keep their current value; `none` clears one limit, "
        "--clear both. Your limits then stay until an operator changes them: a default "
        "from KIOSK_QUEUE_LIMITS no longer applies to this queue.",
    )
    limits.add_argument("name")
    limits.add_argument(
        "--max-per-second",
        type=_limit_value,
        metavar="X",
        help="jobs started per second, above 0 and at most 10000, or none",
    )
    limits.add_argument(
        "--max-running",
        type=_limit_value,
        metavar="N",
        help="jobs running at once, 1 to 10000, or none",
    )
    limits.add_argument("--clear", action="store_true", help="remove both limits")
    queues.set_defaults(func=_queues)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
