"""The short versions of the failure drills (bench/drills/, docs/drills.md), run as by hand.

Each drill is a script that brings up its own kiosk on loopback (a private embedded PostgreSQL in a
temporary folder, uvicorn, the simulator, supervised workers, an SMTP server and a hook receiver),
puts it under load, breaks something, and exits 1 when anything was lost or duplicated. These run
them with small counts; the long runs and their figures are in docs/drills.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PROJECT_DIR

pytest.importorskip("pgserver", reason="the drills run their own embedded PostgreSQL (pgserver)")

# Minutes together: `./scripts/test -m "not drill"` leaves them out, `-m drill` runs only them.
pytestmark = pytest.mark.drill

DRILLS = PROJECT_DIR / "bench" / "drills"
# Workers beat every second and the sweep takes a worker silent for 6 s as dead (production: 10 s
# and 30 s): a killed worker's jobs are back in seconds, a live worker's late beat keeps a margin.
QUICK_SWEEP = ("--heartbeat", "1", "--stalled-after", "6")


def drill(name: str, tmp_path: Path, *args: str, timeout: float = 240) -> dict:
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(DRILLS / f"{name}.py"), "--json", str(report_path), *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{name} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )
    report = json.loads(report_path.read_text())
    assert (
        report["ok"] and not report["lost"] and not report["duplicated"] and not report["problems"]
    )
    return report["figures"]


def test_kill_9_a_worker_while_its_jobs_wait_for_mercado_pago(tmp_path):
    args = ("--orders", "24", "--rate", "8", "--during", "mp-read")
    figures = drill("kill_worker", tmp_path, *args, *QUICK_SWEEP)
    assert figures["orders attempted / approved"] == "24 / 24"
    assert figures["orders paid"] == 24 and figures["receipts received"] == 24
    assert figures["notify_paids received"] == 24
    # The victim's jobs were running: the sweep put them back, the supervisor restarted it.
    assert figures["stalled jobs put back by the sweep"] >= 1
    assert figures["worker restarts (supervisor)"] >= 1


def test_kill_9_a_worker_while_it_sends_a_hook_then_a_receipt(tmp_path):
    figures = drill(
        "kill_worker",
        tmp_path,
        *("--orders", "30", "--rate", "8", "--during", "send", "--kills", "2"),
        *QUICK_SWEEP,
    )
    assert figures["orders attempted / approved"] == "30 / 30" and figures["orders paid"] == 30
    assert figures["deliveries by state"] == {"notify_paid:sent": 30, "receipt:sent": 30}
    # Each victim was killed after the receiver counted a copy and before it answered: that
    # delivery was sent again with its key, so at least one copy each (the drill checked the keys).
    assert figures["receipts received"] > 30 and figures["notify_paids received"] > 30
    assert (
        figures["stalled jobs put back by the sweep"] >= 2
        and figures["worker restarts (supervisor)"] >= 2
    )


def test_restart_postgresql_under_load(tmp_path):
    figures = drill(
        "restart_postgres", tmp_path, "--orders", "24", "--rate", "6", "--down", "10", *QUICK_SWEEP
    )
    assert figures["orders attempted / approved"] == "24 / 24"
    # At least once: a receipt sent while the database went away may be sent again (same key).
    assert figures["orders paid"] == 24 and figures["receipts received"] >= 24
    (outage,) = figures["outages"]
    assert outage["probe answers while down"].get("503", 0) >= 1
    assert outage["workers running again"]


def test_sigterm_every_worker_then_start_new_ones(tmp_path):
    figures = drill("sigterm_workers", tmp_path, "--orders", "24", "--rate", "8")
    assert figures["orders paid"] == 24 and figures["notify_paids received"] == 24
    (round_,) = figures["rounds"]
    assert round_["exit codes"] == ["0", "0"] and round_["jobs left doing"] == 0


def test_duplicate_notifications_at_once(tmp_path):
    figures = drill("duplicate_notifications", tmp_path, "--notifications", "50", "--copies", "20")
    assert figures["answers"] == {"200 received": 50, "200 duplicate": 950}
    assert figures["inbox rows / with a job"] == "50 / 50"
    assert figures["payments.process_notification jobs"] == 50
    assert figures["orders paid"] == 50 and figures["receipts received"] == 50


def test_money_under_random_mercado_pago_faults(tmp_path):
    """The short money drill: random faults, cancels and expiries racing payments, a worker
    killed while its jobs wait on Mercado Pago; the invariant holds against the simulator."""
    figures = drill(
        "money",
        tmp_path,
        "--orders",
        "24",
        "--order-ttl",
        "34",
        "--customers",
        "8",
        "--fault-rate",
        "0.1",
        *QUICK_SWEEP,
    )
    took, refunded = (
        int(n) for n in figures["Mercado Pago orders / took money / refunded"].split(" / ")[1:]
    )
    assert figures["kiosk orders by status"].get("paid", 0) == took - refunded
    assert sum(figures["Mercado Pago faults (chaos)"].values()) >= 1
    assert len(figures["kills"]) == 1 and figures["worker restarts (supervisor)"] >= 1
