"""`kiosk queues ...` as an operator runs it: a subprocess on the test database, the same checks
and audit entries as the API (actor `cli:<user>`)."""

from __future__ import annotations

import getpass
import subprocess
import sys
from typing import Any

import psycopg

from tests.support import PROJECT_DIR, child_env

ACTOR = f"cli:{getpass.getuser()}"


def kiosk(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "queues", *args],
        env=child_env(database_url, **env),
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def control(database_url: str, name: str) -> tuple[Any, ...] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT paused, paused_reason, paused_by, max_per_second, max_running, limits_set_by "
            "FROM kiosk_queue_controls WHERE queue = %s",
            (name,),
        ).fetchone()


def test_pause_limits_resume_and_list(database_url: str) -> None:
    paused = kiosk(database_url, "pause", "payments", "--reason", "provider incident")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == (
        f"payments: paused, max_per_second -, max_running - (paused by {ACTOR}: provider incident)"
    )
    assert control(database_url, "payments") == (True, "provider incident", ACTOR, None, None, None)

    limited = kiosk(database_url, "limits", "payments", "--max-per-second", "2.5")
    assert limited.returncode == 0, limited.stderr
    assert control(database_url, "payments")[3:] == (2.5, None, ACTOR)
    # An option left out keeps its value; `none` clears one limit.
    kiosk(database_url, "limits", "payments", "--max-running", "4").check_returncode()
    assert control(database_url, "payments")[3:5] == (2.5, 4)
    kiosk(database_url, "limits", "payments", "--max-per-second", "none").check_returncode()
    assert control(database_url, "payments")[3:5] == (None, 4)

    listing = kiosk(database_url, "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:2] == ["QUEUE", "STATE"]
    by_queue = {line.split()[0]: line for line in lines[1:]}
    assert {"payments", "notifications", "schedules", "maintenance", "exports", "default"} <= set(
        by_queue
    )
    assert by_queue["payments"].split()[1:4] == ["paused", "-", "4"]
    assert "provider incident" in by_queue["payments"]
    assert by_queue["exports"].split()[1:4] == ["running", "-", "-"]

    resumed = kiosk(database_url, "resume", "payments")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("payments: running, max_per_second -, max_running 4")
    kiosk(database_url, "limits", "payments", "--clear").check_returncode()
    assert control(database_url, "payments") == (False, None, None, None, None, ACTOR)

    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT actor, action FROM admin_audit WHERE target = 'queue:payments' ORDER BY id"
        ).fetchall()
    assert audited == [(ACTOR, "queue.pause")] + [(ACTOR, "queue.limits")] * 3 + [
        (ACTOR, "queue.resume"),
        (ACTOR, "queue.limits"),
    ]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(database_url: str) -> None:
    for args, message in (
        (("pause", "bad queue"), "is not a queue name"),
        (("pause", "payments", "--reason", "x" * 201), "at most 200 characters"),
        (("limits", "payments", "--max-running", "0"), "between 1 and 10000"),
        (("limits", "payments", "--max-running", "2.5"), "is not a whole number"),
        (("limits", "payments", "--max-per-second", "fast"), "is not a number"),
        (("limits", "payments", "--max-per-second", "20000"), "at most 10000"),
        (("limits", "payments"), "give --max-per-second, --max-running or --clear"),
    ):
        result = kiosk(database_url, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, args
    assert control(database_url, "payments") is None
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM admin_audit").fetchone() == (0,)


def test_an_unreachable_database_is_one_line(database_url: str) -> None:
    result = kiosk("postgresql://kiosk@127.0.0.1:1/none", "list", KIOSK_DB_POOL_TIMEOUT="1")
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr and "Traceback" not in result.stderr
