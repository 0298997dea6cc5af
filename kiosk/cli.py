"""The `kiosk` command: `kiosk dev`, `kiosk migrate`, `kiosk worker-health`, `kiosk simulator`,
`kiosk tap`, `kiosk secret-key`, `kiosk rotate-secrets`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
