"""The `kiosk` command: `kiosk dev`, `kiosk migrate`, `kiosk worker-health`."""

from __future__ import annotations

import argparse
import sys
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

    return devserver.run(host=args.host, port=args.port, state_dir=args.state_dir)


def _worker_health(args: argparse.Namespace) -> int:
    from kiosk.heartbeat import check

    return check.run(host=args.host)


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
    dev.set_defaults(func=_dev)

    migrate = sub.add_parser("migrate", help="alembic upgrade head (the only migration step)")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")
    migrate.set_defaults(func=_migrate)

    health = sub.add_parser(
        "worker-health",
        help="container health check: exit 0 when a worker of this host is alive (docs/deploy.md)",
    )
    health.add_argument("--host", help="check the workers of this host name (default: this machine's)")
    health.set_defaults(func=_worker_health)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
