"""`kiosk dev`: the whole kiosk on one machine, with nothing installed but Python.

Starts the embedded PostgreSQL when DATABASE_URL is not set, migrates, then runs the API (uvicorn)
and one `procrastinate worker` as child processes with prefixed logs, plus the Mercado Pago
simulator when MP_API_BASE_URL is not set (MP_API_BASE_URL then points at it). Once the API is
ready, a dev device bound to the simulator's terminals is created (or the one of the last run
kept while its token still works), its token printed and kept in `<state dir>/dev-device-token`.
Ctrl-C or SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period) and then the
database.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from kiosk import embedded
from kiosk.secretbox import generate_key

GRACE_SECONDS = 15
# The card terminals of the README walkthrough: the simulator takes a charge on any terminal id;
# the dev device may charge on these.
DEV_TERMINALS = ("KIOSK_TERMINAL_1", "KIOSK_TERMINAL_2")
DEV_DEVICE_NAME = "kiosk dev"


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # Own session: Ctrl-C reaches the supervisor only, which stops children in order.
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        if self.process.stdout is None:  # never with stdout=PIPE
            raise RuntimeError(f"{self.name}: started without a pipe for its output")
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, output: IO[str]) -> None:
        for line in output:
            sys.stdout.write(f"{self.name:>9} | {line}")
            sys.stdout.flush()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def _log(message: str) -> None:
    print(f"{'kiosk-dev':>9} | {message}", flush=True)


def _dev_defaults(env: dict[str, str], state_dir: Path) -> None:
    """Local-only values for the secrets, so a fresh checkout runs; never used when set."""
    token_file = state_dir / "dev-admin-token"
    if not env.get("KIOSK_ADMIN_TOKEN"):
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24))
            token_file.chmod(0o600)
        env["KIOSK_ADMIN_TOKEN"] = token_file.read_text().strip()
        _log(f"admin token (dev only, kept in {token_file}): {env['KIOSK_ADMIN_TOKEN']}")
    env.setdefault("MP_ACCESS_TOKEN", "dev-access-token")
    env.setdefault("MP_WEBHOOK_SECRET", "dev-webhook-secret")
    # A local key for the schedules' secrets, kept beside the database it encrypts.
    key_file = state_dir / "dev-secret-key"
    if not env.get("KIOSK_SECRET_KEY"):
        if not key_file.exists():
            with os.fdopen(
                os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w"
            ) as out:
                out.write(generate_key())
        env["KIOSK_SECRET_KEY"] = key_file.read_text().strip()
        _log(f"secret key (dev only) in {key_file}")


def dev_device(base: str, admin_token: str, state_dir: Path) -> str:
    """The dev device's token: the one in `dev-device-token` while the API still accepts it, else
    a new device (the previous dev device, whose token is lost, is revoked first)."""
    token_file = state_dir / "dev-device-token"
    if token_file.exists():
        token = token_file.read_text().strip()
        # An unknown order id: 404 with a valid token, 401 without one.
        probe = httpx.get(
            f"{base}/orders/00000000-0000-0000-0000-000000000000",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
        if probe.status_code == 404:
            return token
    admin = {"Authorization": f"Bearer {admin_token}", "X-Kiosk-Actor": "kiosk-dev"}
    with httpx.Client(base_url=base, timeout=10, headers=admin) as http:
        cursor = None
        while True:  # every page: the dev device may be older than the newest ones
            page = http.get("/admin/devices", params={"cursor": cursor} if cursor else None)
            page = page.raise_for_status().json()
            for device in page["devices"]:
                if device["name"] == DEV_DEVICE_NAME and device["revoked_at"] is None:
                    http.delete(f"/admin/devices/{device['id']}").raise_for_status()
            if (cursor := page["next_cursor"]) is None:
                break
        created = http.post(
            "/admin/devices", json={"name": DEV_DEVICE_NAME, "terminal_ids": list(DEV_TERMINALS)}
        )
        created.raise_for_status()
    token = str(created.json()["token"])
    token_file.write_text(token)
    token_file.chmod(0o600)
    return token


def children(host: str, port: int, simulator_port: int | None = None) -> list[Child]:
    python = sys.executable
    procs = [
        Child(
            "api", [python, "-m", "uvicorn", "kiosk.app:app", "--host", host, "--port", str(port)]
        ),
        Child("worker", [python, "-m", "procrastinate", "--app=tasks.app", "worker"]),
    ]
    if simulator_port is not None:
        webhook_url = f"http://{host}:{port}/webhooks/mercadopago"
        procs.append(
            Child(
                "simulator",
                [
                    python,
                    "-m",
                    "kiosk.cli",
                    "simulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(simulator_port),
                    "--webhook-url",
                    webhook_url,
                ],
            )
        )
    return procs


def _wait_ready(url: str, procs: list[Child], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process and c.process.poll() is not None for c in procs):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    state_dir: Path = embedded.DEFAULT_DIR,
    simulator_port: int = 8090,
) -> int:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    _dev_defaults(env, state_dir)
    simulator: int | None = None
    if not env.get("MP_API_BASE_URL"):
        simulator = simulator_port
        env["MP_API_BASE_URL"] = f"http://127.0.0.1:{simulator_port}"

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if env.get("DATABASE_URL"):
        _log("using the PostgreSQL server in DATABASE_URL")
        return _serve(env, host, port, stopping, simulator, state_dir)
    _log(f"starting the embedded PostgreSQL in {state_dir / 'pgdata'}")
    with embedded.embedded_server(state_dir / "pgdata") as server_url:
        env["DATABASE_URL"] = embedded.create_database(server_url, "kiosk")
        _log(f"database   {env['DATABASE_URL']}")
        code = _serve(env, host, port, stopping, simulator, state_dir)
        _log("stopping the embedded PostgreSQL")
    return code


def _serve(
    env: dict[str, str],
    host: str,
    port: int,
    stopping: threading.Event,
    simulator: int | None,
    state_dir: Path,
) -> int:
    _log("migrating: alembic upgrade head")
    migrate = subprocess.run([sys.executable, "-m", "kiosk.cli", "migrate"], env=env)
    if migrate.returncode != 0:
        return migrate.returncode

    procs = children(host, port, simulator)
    for child in procs:
        child.start(env)
    base = f"http://{host}:{port}"
    if _wait_ready(f"{base}/readyz", procs):
        _log(f"API        {base}   (health {base}/readyz, API docs {base}/docs)")
        _log(f"dashboard  {base}/admin/   (sign in with the admin token)")
        try:
            token = dev_device(base, env["KIOSK_ADMIN_TOKEN"], state_dir)
        except httpx.HTTPError as exc:
            _log(f"could not create the dev device: {exc}")
        else:
            _log(f"device token (dev only, kept in {state_dir / 'dev-device-token'}): {token}")
            _log(
                f"           the orders API takes it; device {DEV_DEVICE_NAME!r} charges on "
                f"{', '.join(DEV_TERMINALS)}"
            )
        if simulator is not None:
            _log(
                f"simulator  http://127.0.0.1:{simulator}   (Mercado Pago; tap a card: "
                f"kiosk tap <terminal_id> --approve, or open the page)"
            )
        _log("press Ctrl-C to stop")
    code = 0
    while not stopping.is_set():
        dead = [(c.name, c.process.poll()) for c in procs if c.process]
        exited = [(name, returncode) for name, returncode in dead if returncode is not None]
        if exited:
            _log(f"{exited[0][0]} exited with code {exited[0][1]}; stopping")
            code = 1
            break
        stopping.wait(0.5)

    _log("stopping children")
    for child in reversed(procs):
        child.stop()
    deadline = time.monotonic() + GRACE_SECONDS
    for child in procs:
        if child.process is None:  # never started
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log(f"{child.name} did not stop in {GRACE_SECONDS}s; killing it")
            child.process.kill()
            child.process.wait()
    return code
