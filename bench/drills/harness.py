"""Shared machinery of the failure drills (docs/drills.md): the kiosk on loopback, load, counts.

A drill owns everything it runs: a private embedded PostgreSQL in a temporary folder (never a
server someone else uses), uvicorn, the Mercado Pago simulator, `procrastinate worker` processes
under a supervisor that restarts them the way production does (Compose `restart: unless-stopped`,
Railway `ALWAYS`), a real SMTP server (aiosmtpd) and a notify-hook receiver; customers paying
orders; the stalled-job sweep. bench/drills/counts.py settles and counts. The servers, receivers,
polling and the sweep come from the test support package (tests/support/), as the tests use them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from tests.support.processes import Api, Worker, free_port  # noqa: E402
from tests.support.receivers import HookCounter, SmtpCounter  # noqa: E402
from tests.support.stack import SimulatorProcess  # noqa: E402
from tests.support.sweep import Sweeper  # noqa: E402

ADMIN_TOKEN = "drill-admin-token-0123456789"
# The order endpoints take a device token or the admin token; the drills use the admin token.
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEBHOOK_SECRET = "drill-webhook-secret"
ACCESS_TOKEN = "drill-access-token"
HOOK_SECRET = "drill-notify-secret-0123456789"
MAIL_FROM = "kiosk@example.com"
SKU = "drill-coffee"
PRICE_CENTS = 250
# Workers run with the production flags (docker-compose.yml, railway.worker.json).
WORKER_FLAGS = ("--shutdown-graceful-timeout=25",)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- PostgreSQL ------------------------------------------------------------------------------------


class PrivatePostgres:
    """An embedded PostgreSQL (pgserver) in its own temporary folder, stopped and started with its
    own pg_ctl. It listens on a Unix socket in that folder only: no TCP port, nothing shared."""

    def __init__(self, base: Path):
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver

        self.pgdata = base / "pgdata"
        self.server = pgserver.get_server(self.pgdata, cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.url = self.server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (clients are disconnected) or `immediate` (a crash)."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"
        )

    def create_database(self, name: str) -> str:
        from kiosk import embedded

        return embedded.create_database(self.url, name, replace=True)

    def close(self) -> None:
        self.server.cleanup()


def migrate(database_url: str) -> None:
    from kiosk import migrations

    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - alembic's INFO lines
        migrations.upgrade(database_url)


def query(database_url: str, sql: str, params: Any = None) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


# -- workers under a supervisor -------------------------------------------------------------------


@dataclasses.dataclass
class Slot:
    name: str
    process: Worker | None = None
    wanted: bool = True
    starts: int = 0
    exits: list[tuple[float, int | None]] = dataclasses.field(default_factory=list)


class Supervisor:
    """Keeps `count` worker processes running: one that exits is started again after
    `restart_delay` seconds, as Docker Compose and Railway do with the workers' restart policy."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        count: int,
        concurrency: int,
        restart_delay: float = 1.0,
    ):
        self.env, self.log_dir, self.concurrency = env, log_dir, concurrency
        self.restart_delay = restart_delay
        self.slots = [Slot(f"worker{i}") for i in range(count)]
        self.events: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        for slot in self.slots:
            self._start(slot)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _start(self, slot: Slot) -> None:
        slot.starts += 1
        slot.process = Worker(
            self.env,
            self.log_dir,
            "--concurrency",
            str(self.concurrency),
            "--fetch-job-polling-interval",
            "0.5",
            *WORKER_FLAGS,
            name=f"{slot.name}-{slot.starts}",
        )

    def _watch(self) -> None:
        exited_at: dict[str, float] = {}
        while not self._stop.wait(0.1):
            with self.lock:
                for slot in self.slots:
                    proc = slot.process
                    if proc is not None and not proc.alive():
                        code = proc.popen.returncode
                        slot.exits.append((time.monotonic(), code))
                        self.events.append(f"{slot.name} (pid {proc.pid}) exited with code {code}")
                        proc.stop()
                        slot.process = None
                        exited_at[slot.name] = time.monotonic()
                    if (
                        slot.process is None
                        and slot.wanted
                        and time.monotonic() - exited_at.get(slot.name, 0) >= self.restart_delay
                    ):
                        self._start(slot)
                        self.events.append(f"{slot.name} started again (start #{slot.starts})")

    def signal(self, slot: Slot, signum: int) -> int | None:
        with self.lock:
            if slot.process is None:
                return None
            slot.process.signal(signum)
            return slot.process.pid

    def pause(self) -> None:
        """Leave stopped workers stopped (a deploy that stops them all first)."""
        with self.lock:
            for slot in self.slots:
                slot.wanted = False

    def resume(self) -> None:
        with self.lock:
            for slot in self.slots:
                slot.wanted = True

    def running(self) -> list[Slot]:
        with self.lock:
            return [s for s in self.slots if s.process is not None and s.process.alive()]

    def stopped(self) -> bool:
        """Every worker has exited and its exit is recorded (the supervisor is paused)."""
        with self.lock:
            return all(s.process is None for s in self.slots)

    def ready(self) -> bool:
        """Every slot runs a worker that has started its loop (and so handles SIGTERM)."""
        with self.lock:
            return all(
                s.process is not None
                and s.process.alive()
                and "Starting worker on" in s.process.output()
                for s in self.slots
            )

    def restarts(self) -> int:
        return sum(max(s.starts - 1, 0) for s in self.slots)

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("worker*.log"))

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.stop(timeout=30)


# -- load: customers paying orders ----------------------------------------------------------------


@dataclasses.dataclass
class Sale:
    n: int
    terminal: str
    order_id: str | None = None
    provider_order_id: str | None = None
    approved: bool = False
    note: str = ""


class Load:
    """`customers` threads, each in a loop: create an order, charge it on its own terminal, tap an
    approving card at the simulator. A refused call (503, no connection) is retried, as a kiosk
    front end would, until `give_up` seconds have passed for that step."""

    def __init__(
        self,
        api_url: str,
        sim: SimulatorProcess,
        *,
        orders: int,
        duration: float,
        customers: int = 4,
        give_up: float = 120.0,
        rate: float | None = None,
    ):
        self.api_url, self.sim = api_url, sim
        self.orders, self.duration, self.give_up = orders, duration, give_up
        self.interval = customers / rate if rate else 0.0
        self.sales: list[Sale] = []
        self.refused: Counter[str] = Counter()  # "POST /orders 503" ...
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0
        self.threads = [
            threading.Thread(target=self._customer, daemon=True) for _ in range(customers)
        ]
        for thread in self.threads:
            thread.start()

    def _take(self) -> Sale | None:
        with self.lock:
            if (
                self._stop.is_set()
                or self._next >= self.orders
                or time.monotonic() - self.started > self.duration
            ):
                return None
            self._next += 1
            sale = Sale(self._next, f"DRILL_{self._next}_{uuid.uuid4().hex[:6]}")
            self.sales.append(sale)
            return sale

    def _call(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        body: dict | None,
        ok: set[int],
        what: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        deadline = time.monotonic() + self.give_up
        while time.monotonic() < deadline:
            try:
                response = client.request(method, url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                with self.lock:
                    self.refused[f"{what} {type(exc).__name__}"] += 1
            else:
                if response.status_code in ok:
                    return response
                with self.lock:
                    self.refused[f"{what} {response.status_code}"] += 1
                if response.status_code < 500:
                    return response
            time.sleep(0.5)
        return None

    def _customer(self) -> None:
        # The admin token: the order endpoints take a kiosk device's token or the admin's.
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            while (sale := self._take()) is not None:
                began = time.monotonic()
                self._sell(client, sale)
                if self.interval:
                    time.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    def _sell(self, client: httpx.Client, sale: Sale) -> None:
        order = self._call(
            client,
            "POST",
            f"{self.api_url}/orders",
            {
                "items": [{"sku": SKU, "quantity": 1}],
                "customer_email": f"customer{sale.n}@example.com",
            },
            {201},
            "POST /orders",
            ADMIN_AUTH,
        )
        if order is None or order.status_code != 201:
            sale.note = f"order not created ({order.status_code if order else 'gave up'})"
            return
        sale.order_id = order.json()["id"]
        intent = self._call(
            client,
            "POST",
            f"{self.api_url}/orders/{sale.order_id}/payment-intents",
            {"terminal_id": sale.terminal},
            {201, 202},
            "POST payment-intents",
            ADMIN_AUTH,
        )
        if intent is not None and intent.status_code == 201:
            sale.provider_order_id = intent.json()["provider_order_id"]
        elif intent is not None and (
            intent.status_code == 202 or "open payment intent" in intent.text
        ):
            # As a kiosk does: the answer was lost (202 `unresolved`), or an earlier try created the
            # charge before its answer was lost (409 naming the open intent): follow the order.
            sale.provider_order_id = self._live_charge(client, sale)
        if sale.provider_order_id is None:
            sale.note = f"charge not started ({intent.text if intent else 'gave up'})"
            return
        tap = self._call(
            client,
            "POST",
            f"{self.sim.url}/_sim/terminals/{sale.terminal}/approve",
            {},
            {200},
            "tap",
        )
        if tap is not None and tap.status_code == 200 and tap.json()["status"] == "processed":
            sale.approved = True
        else:
            sale.note = f"tap failed ({tap.text if tap else 'gave up'})"

    def _live_charge(self, client: httpx.Client, sale: Sale, timeout: float = 60) -> str | None:
        """The Mercado Pago order of the sale's open charge on its terminal, as soon as the kiosk
        knows which one it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            order = self._call(
                client,
                "GET",
                f"{self.api_url}/orders/{sale.order_id}",
                None,
                {200},
                "GET /orders",
                ADMIN_AUTH,
            )
            charges = (
                order.json().get("payment_intents") or []
                if order is not None and order.status_code == 200
                else []
            )
            for charge in charges:
                if (
                    charge["terminal_id"] == sale.terminal
                    and charge["provider_order_id"]
                    and charge["status"] in ("created", "at_terminal")
                ):
                    return charge["provider_order_id"]
            time.sleep(0.5)
        return None

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def reached(self, share: float) -> bool:
        """Finished, or `share` of its orders or of its duration is behind it: a drill's cue."""
        return (
            self.done()
            or len(self.sales) >= self.orders * share
            or time.monotonic() - self.started >= self.duration * share
        )

    def approved(self) -> list[Sale]:
        return [s for s in self.sales if s.approved]


# -- the stack -------------------------------------------------------------------------------------


class Stack:
    """Everything a drill runs, started in order and stopped in reverse."""

    def __init__(
        self, args: argparse.Namespace, name: str, extra_env: dict[str, str] | None = None
    ):
        self.args = args
        self.extra_env = extra_env or {}  # settings of this drill, over the defaults below
        self.work = Path(tempfile.mkdtemp(prefix=f"kiosk-drill-{name}-"))
        self.log_dir = self.work / "logs"
        self.log_dir.mkdir()
        self._close: list[Callable[[], None]] = []
        try:
            self._open(name)
        except BaseException:
            self.close(keep_logs=True)
            raise

    def _open(self, name: str) -> None:
        args = self.args
        self.pg = PrivatePostgres(self.work)
        self._close.append(self.pg.close)
        self.database_url = self.pg.create_database(f"drill_{name}")
        self.smtp = SmtpCounter()
        self._close.append(self.smtp.close)
        self.hook = HookCounter(HOOK_SECRET)
        self._close.append(self.hook.close)
        self.sim_port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KIOSK_", "MP_"))
        }
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "PYTHONUNBUFFERED": "1",
                "KIOSK_ADMIN_TOKEN": ADMIN_TOKEN,
                "MP_ACCESS_TOKEN": ACCESS_TOKEN,
                "MP_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "MP_API_BASE_URL": f"http://127.0.0.1:{self.sim_port}",
                "KIOSK_MP_TIMEOUT_SECONDS": "5",
                "KIOSK_PAYMENT_MAX_ATTEMPTS": "8",
                "KIOSK_SMTP_HOST": "127.0.0.1",
                "KIOSK_SMTP_PORT": str(self.smtp.port),
                "KIOSK_SMTP_STARTTLS": "false",
                "KIOSK_SMTP_FROM": MAIL_FROM,
                "KIOSK_NOTIFY_URL": self.hook.url,
                "KIOSK_NOTIFY_SECRET": HOOK_SECRET,
                "KIOSK_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
                "KIOSK_DELIVERY_TIMEOUT_SECONDS": "10",
                "KIOSK_LOG_LEVEL": "WARNING",
                "KIOSK_WORKER_HEARTBEAT_INTERVAL": f"{args.heartbeat:g}",
            }
        )
        env.update(self.extra_env)
        self.env = env
        os.environ.update(
            {k: v for k, v in env.items() if k.startswith(("KIOSK_", "MP_", "DATABASE_URL"))}
        )
        from kiosk.settings import get_settings

        get_settings.cache_clear()
        migrate(self.database_url)
        self.api = Api(env, self.log_dir, workers=args.api_processes)
        self._close.append(self.api.stop)
        self.sim = SimulatorProcess(
            env, self.log_dir, self.sim_port, f"{self.api.url}/webhooks/mercadopago"
        )
        self._close.append(self.sim.stop)
        response = httpx.put(
            f"{self.api.url}/admin/products/{SKU}",
            timeout=30,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"name": "Drill coffee", "price_cents": PRICE_CENTS, "stock": 1_000_000},
        )
        response.raise_for_status()
        self.supervisor = Supervisor(env, self.log_dir, args.workers, args.concurrency)
        self._close.append(self.supervisor.close)
        # A sweep every 2 s, or more often when a dead worker is noticed sooner (short runs).
        self.sweeper = Sweeper(args.stalled_after, every=min(2.0, args.stalled_after / 4))
        self._close.append(self.sweeper.close)

    def close(self, keep_logs: bool = False) -> None:
        for close in reversed(self._close):
            with contextlib.suppress(Exception):
                close()
        self._close.clear()
        if keep_logs:
            log(f"logs kept in {self.log_dir}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(keep_logs=getattr(self, "keep_logs", False) or exc[0] is not None)

    def db(self, sql: str, params: Any = None) -> list[dict]:
        return query(self.database_url, sql, params)


# -- command line ----------------------------------------------------------------------------------


def parser(
    description: str, *, orders: int, duration: float, workers: int = 2
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--orders", type=int, default=orders, help="paid orders to attempt (at most)")
    p.add_argument("--duration", type=float, default=duration, help="seconds of load (at most)")
    p.add_argument("--customers", type=int, default=4, help="concurrent customers")
    p.add_argument(
        "--rate", type=float, default=None, help="orders per second (default: as fast as it goes)"
    )
    p.add_argument("--workers", type=int, default=workers, help="worker processes")
    p.add_argument("--concurrency", type=int, default=3, help="jobs per worker process")
    p.add_argument("--api-processes", type=int, default=1, help="uvicorn --workers")
    p.add_argument(
        "--heartbeat",
        type=float,
        default=10.0,
        help="seconds between a worker's heartbeats (KIOSK_WORKER_HEARTBEAT_INTERVAL)",
    )
    p.add_argument(
        "--stalled-after",
        type=float,
        default=20.0,
        help="seconds without a heartbeat before a worker's jobs are retried "
        "(at least twice --heartbeat, so that a late beat is not taken for a dead worker)",
    )
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for everything to finish after the load",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (victims, timings)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    return p


def seeded(args: argparse.Namespace) -> random.Random:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    args.seed = seed
    return random.Random(seed)


def tail(path: Path, lines: int = 5) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return str(code)
