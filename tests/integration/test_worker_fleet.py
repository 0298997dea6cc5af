"""A fleet of real `procrastinate worker` processes: periodic ticks, kill -9, SIGTERM."""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from tests.support import wait_for
from tests.support.jobs import TABLES, AppWorker, Sql, defer


@pytest.fixture
def sql(database_url):
    sql = Sql(database_url)
    sql.conn.execute(TABLES)
    yield sql
    sql.close()


@pytest.fixture
def workers():
    started: list[AppWorker] = []
    yield started
    for worker in started:
        worker.popen.kill() if worker.alive() else None
        worker.stop(timeout=5)


def start(workers, *args, **kwargs) -> AppWorker:
    worker = AppWorker(*args, **kwargs)
    workers.append(worker)
    return worker


def started_by(sql: Sql, key: str, attempt: int = 1) -> dict | None:
    return sql.one("SELECT * FROM test_job_starts WHERE key = %s AND attempt = %s", key, attempt)


async def test_three_workers_defer_one_job_per_tick(database_url, log_dir, sql, workers):
    for n in range(3):
        start(
            workers,
            database_url,
            log_dir,
            app="tests.support.worker_periodic_app.app",
            name=f"w{n}",
        )
    wait_for(
        lambda: sql.value("SELECT count(*) FROM procrastinate_workers") == 3,
        timeout=60,
        what="three workers registered",
    )
    since = sql.value("SELECT extract(epoch FROM now())::bigint")
    # Every worker's deferrer tries every tick; five ticks with all three running.
    wait_for(
        lambda: (
            sql.value("SELECT count(DISTINCT tick) FROM test_ticks WHERE tick > %s", since) >= 5
        ),
        timeout=90,
        interval=0.2,
        what="five ticks",
    )
    for worker in workers:
        assert worker.stop() == 0, worker.output()

    ticks = [row["tick"] for row in sql.all("SELECT tick FROM test_ticks ORDER BY tick")]
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    jobs = sql.all(
        "SELECT (args->>'timestamp')::bigint AS tick FROM procrastinate_jobs "
        "WHERE task_name = 'tests.tick'"
    )
    assert sorted(job["tick"] for job in jobs) == ticks, "one job per tick, each run once"
    # No tick skipped between the first and the last.
    assert all(b - a == 1 for a, b in itertools.pairwise(ticks)), ticks


async def test_kill_9_mid_job_another_worker_finishes_it_once(
    pool, database_url, log_dir, sql, workers
):
    doomed = start(workers, database_url, log_dir, name="doomed")
    job_id = await defer("tests.effect", key="k9", first_sleep=600)
    first = wait_for(lambda: started_by(sql, "k9"), timeout=60, what="the first attempt")
    assert first["pid"] == doomed.pid
    survivor = start(
        workers, database_url, log_dir, app="tests.support.sweep_app.app", name="survivor"
    )
    wait_for(
        lambda: sql.value("SELECT count(*) FROM procrastinate_workers") == 2,
        timeout=60,
        what="the survivor registered",
    )

    doomed.popen.kill()  # SIGKILL: no clean-up of any kind
    doomed.popen.wait()
    killed_at = time.monotonic()
    # The real sweep (`jobs.retry_stalled_jobs`, deferred by the periodic deferrer: every minute
    # in production, every 2 s on the survivor's test app) must notice the silent worker.
    wait_for(
        lambda: sql.job(job_id)["status"] == "succeeded",
        timeout=120,
        interval=0.5,
        what="the survivor finishing the job",
    )
    took = time.monotonic() - killed_at
    assert took < 30, f"recovered after {took:.0f}s"  # 3 s of silence + a sweep each 2 s

    effects = sql.all("SELECT * FROM test_job_effects WHERE key = 'k9'")
    assert len(effects) == 1 and effects[0]["pid"] == survivor.pid and effects[0]["attempt"] == 2
    outcomes = sql.outcomes(job_id)
    assert [(o["attempt"], o["status"]) for o in outcomes] == [(1, "worker_lost"), (2, "succeeded")]
    assert "stopped sending heartbeats" in outcomes[0]["error_message"]
    assert sql.job(job_id)["attempts"] == 2


async def test_sigterm_lets_a_short_job_finish(pool, database_url, log_dir, sql, workers):
    worker = start(workers, database_url, log_dir, KIOSK_WORKER_SHUTDOWN_TIMEOUT="15")
    job_id = await defer("tests.effect", key="short", first_sleep=2)
    wait_for(lambda: started_by(sql, "short"), timeout=60, what="the job to start")
    worker.signal(signal.SIGTERM)
    worker.popen.wait(30)
    assert worker.popen.returncode == 0, worker.output()

    assert sql.job(job_id)["status"] == "succeeded"
    assert sql.value("SELECT count(*) FROM test_job_effects WHERE key = 'short'") == 1
    assert [o["status"] for o in sql.outcomes(job_id)] == ["succeeded"]


async def test_sigterm_aborts_long_jobs_which_are_retried_later(
    pool, database_url, log_dir, sql, workers
):
    # The graceful timeout as a procrastinate flag: it overrides KIOSK_WORKER_SHUTDOWN_TIMEOUT.
    worker = start(
        workers,
        database_url,
        log_dir,
        "--shutdown-graceful-timeout=1",
        "--concurrency=2",
        KIOSK_WORKER_SHUTDOWN_TIMEOUT="600",
    )
    jobs = {  # an async job is cancelled; a sync one sees should_abort() and raises JobAborted
        "long": await defer("tests.effect", key="long", first_sleep=600),
        "long-sync": await defer("tests.sync_effect", key="long-sync", first_sleep=600),
    }
    for key in jobs:
        wait_for(lambda key=key: started_by(sql, key), timeout=60, what=f"{key} to start")
    worker.signal(signal.SIGTERM)
    worker.popen.wait(30)
    assert worker.popen.returncode == 0, worker.output()

    for key, job_id in jobs.items():
        job = sql.job(job_id)
        assert (job["status"], job["attempts"]) == ("todo", 1), f"{key}: back in the queue"
        assert sql.value("SELECT count(*) FROM test_job_effects WHERE key = %s", key) == 0
        assert [o["status"] for o in sql.outcomes(job_id)] == ["interrupted"]

    start(workers, database_url, log_dir, name="next")
    for key, job_id in jobs.items():
        wait_for(
            lambda job_id=job_id: sql.job(job_id)["status"] == "succeeded",
            timeout=60,
            what=f"{key} retried",
        )
        assert sql.value("SELECT count(*) FROM test_job_effects WHERE key = %s", key) == 1
        assert [(o["attempt"], o["status"]) for o in sql.outcomes(job_id)] == [
            (1, "interrupted"),
            (2, "succeeded"),
        ]
