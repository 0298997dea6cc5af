"""`kiosk dev` with no DATABASE_URL: embedded database, API ready, worker registered, the Mercado
Pago simulator answering (no MP_API_BASE_URL), clean stop."""

import os
import re
import signal
import subprocess
import sys

import httpx
import psycopg
import pytest

from kiosk import secretbox
from tests.support import PROJECT_DIR, free_port, wait_for


def test_kiosk_dev_runs_everything_on_the_embedded_database(tmp_path):
    port, sim_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "KIOSK_ADMIN_TOKEN",
            "MP_ACCESS_TOKEN",
            "MP_WEBHOOK_SECRET",
            "MP_API_BASE_URL",
            "KIOSK_SECRET_KEY",
        }
        and not k.startswith("PG")
    }
    log = (tmp_path / "dev.log").open("w+")
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "dev",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--simulator-port",
            str(sim_port),
        ],
        env=env,
        cwd=PROJECT_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = lambda: (tmp_path / "dev.log").read_text()  # noqa: E731
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
            timeout=120,
            what="kiosk dev /readyz",
        )
        match = re.search(r"database\s+(postgresql://\S+)", output())
        assert match, output()
        url = match.group(1)
        # The embedded server listens on a Unix socket only: no TCP port to clash with.
        assert "host=/" in url
        with psycopg.connect(url) as conn:
            wait_for(
                lambda: (
                    conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] == 1
                ),
                timeout=60,
                what="a worker row",
            )
        wait_for(lambda: "press Ctrl-C to stop" in output(), timeout=30, what="the URLs banner")
        wait_for(
            lambda: (
                httpx.get(f"http://127.0.0.1:{sim_port}/_sim/orders", timeout=2).status_code == 200
            ),
            timeout=30,
            what="the Mercado Pago simulator",
        )
        assert f"simulator  http://127.0.0.1:{sim_port}" in output()
        # The dev device: its token printed and kept beside the admin token, bound to the
        # simulator's terminals of the README walkthrough.
        wait_for(lambda: "device token" in output(), timeout=30, what="the dev device token")
        token = (tmp_path / "state" / "dev-device-token").read_text().strip()
        assert (
            f"device token (dev only, kept in {tmp_path / 'state' / 'dev-device-token'}): {token}"
            in output()
        )
        admin = (tmp_path / "state" / "dev-admin-token").read_text().strip()
        devices = httpx.get(
            f"http://127.0.0.1:{port}/admin/devices",
            timeout=10,
            headers={"Authorization": f"Bearer {admin}"},
        ).json()["devices"]
        assert [(d["name"], d["terminal_ids"]) for d in devices] == [
            ("kiosk dev", ["KIOSK_TERMINAL_1", "KIOSK_TERMINAL_2"])
        ]
        probe = httpx.get(
            f"http://127.0.0.1:{port}/orders/00000000-0000-0000-0000-000000000000",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert probe.status_code == 404, probe.text
        # A local key for schedule secrets, readable by its owner only; the API found it.
        key_file = tmp_path / "state" / "dev-secret-key"
        assert (
            secretbox.parse_keys(key_file.read_text()) and key_file.stat().st_mode & 0o777 == 0o600
        )
        assert "KIOSK_SECRET_KEY is not set" not in output()
    finally:
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(60)
    assert code == 0, output()
    text = output()
    assert "Stopped worker" in text and "Finished server process" in text
    assert "stopping the embedded PostgreSQL" in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{sim_port}/_sim/orders", timeout=2)
    children = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert children.strip() == "", f"processes left behind: {children}"
