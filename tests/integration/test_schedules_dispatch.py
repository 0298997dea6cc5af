"""The dispatcher and the schedule operations against the real database, without workers.

Jobs deferred here stay in `todo`: these tests check which runs and jobs exist, not what runs.
"""

import asyncio
import datetime as dt
import itertools

import pytest

from kiosk import db, secretbox
from kiosk.audit import Operator
from kiosk.schedules import dispatcher, service
from kiosk.schedules.spec import InvalidSchedule, ScheduleSpec

PUBLIC = "http://93.184.215.14/hook"  # a public literal address: validation needs no DNS
BY = Operator("test")


def spec(**changes) -> ScheduleSpec:
    return ScheduleSpec(name="every-second", cron="* * * * * *", url=PUBLIC).evolve(**changes)


async def rows(query: str, *params) -> list[dict]:
    async with db.transaction() as conn:
        return await db.fetch_all(conn, query, params)


async def cron_runs(schedule_id: int) -> list[dict]:
    return await rows(
        "SELECT * FROM schedule_runs WHERE schedule_id = %s AND trigger = 'cron' "
        "ORDER BY scheduled_for",
        schedule_id,
    )


async def waiting_jobs() -> list[dict]:
    return await rows(
        "SELECT id, scheduled_at, args FROM procrastinate_jobs "
        "WHERE task_name = 'schedules.execute_run' AND status = 'todo'"
    )


async def dispatch(schedule_id: int, **options) -> int:
    async with db.transaction() as conn:
        return await dispatcher.dispatch_schedule(conn, schedule_id, **options)


async def test_creating_dispatches_the_horizon_with_one_job_per_run(pool):
    view = await service.create(spec(), by=BY)
    runs = await cron_runs(view.schedule.id)
    horizon = dispatcher.horizon_seconds(60)
    assert horizon - 1 <= len(runs) <= horizon
    ticks = [r["scheduled_for"] for r in runs]
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert all(r["outcome"] == "pending" and r["job_id"] for r in runs)
    jobs = {j["id"]: j for j in await waiting_jobs()}
    assert set(jobs) == {r["job_id"] for r in runs}
    for r in runs:  # each job waits for its tick
        assert jobs[r["job_id"]]["scheduled_at"] == r["scheduled_for"]
        assert jobs[r["job_id"]]["args"] == {"run_id": r["id"]}
    assert len(view.next_runs) == 5


async def test_concurrent_dispatches_and_a_rewound_cursor_never_duplicate_a_tick(pool):
    view = await service.create(spec(), by=BY)
    schedule_id = view.schedule.id
    # Five dispatchers at once, then a "restart" that lost its cursor 30 s back.
    await asyncio.gather(*(dispatch(schedule_id, horizon=120) for _ in range(5)))
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE schedules SET dispatched_until = now() - interval '30 seconds' WHERE id = %s",
            (schedule_id,),
        )
    await dispatch(schedule_id, horizon=120, catch_up_limit=0)
    runs = await cron_runs(schedule_id)
    ticks = [r["scheduled_for"] for r in runs]
    assert len(ticks) == len(set(ticks))
    pending = [r for r in runs if r["outcome"] == "pending"]
    assert len(await waiting_jobs()) == len(pending)
    assert {r["job_id"] for r in pending} == {j["id"] for j in await waiting_jobs()}


async def test_missed_ticks_are_caught_up_to_the_limit_and_the_rest_skipped(pool):
    view = await service.create(spec(cron="* * * * * */10"), by=BY)
    schedule_id = view.schedule.id
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM schedule_runs")
        await conn.execute(
            "UPDATE schedules SET dispatched_until = now() - interval '100 seconds' WHERE id = %s",
            (schedule_id,),
        )
        now = await dispatcher.db_now(conn)
    await dispatch(schedule_id, horizon=30, catch_up_limit=3)
    runs = await cron_runs(schedule_id)
    past = [r for r in runs if r["scheduled_for"] <= now]
    skipped = [r for r in past if r["outcome"] == "skipped"]
    caught_up = [r for r in past if r["outcome"] == "pending"]
    assert len(past) == 10 and len(caught_up) == 3 and len(skipped) == 7
    assert max(r["scheduled_for"] for r in skipped) < min(r["scheduled_for"] for r in caught_up)
    assert all("catch-up limit is 3" in r["error"] and r["job_id"] is None for r in skipped)
    jobs = {j["id"]: j for j in await waiting_jobs()}
    for r in caught_up:  # due at once
        assert jobs[r["job_id"]]["scheduled_at"] is None
    future = [r for r in runs if r["scheduled_for"] > now]
    assert 2 <= len(future) <= 3 and all(jobs[r["job_id"]]["scheduled_at"] for r in future)


async def test_deactivating_drops_pending_runs_and_their_jobs(pool):
    view = await service.create(spec(), by=BY)
    schedule_id = view.schedule.id
    assert await waiting_jobs()
    paused = await service.update(schedule_id, {"active": False}, by=BY)
    assert paused.next_runs == [] and not paused.schedule.active
    assert await cron_runs(schedule_id) == [] and await waiting_jobs() == []
    assert await dispatcher.dispatch_due() == 0
    assert await cron_runs(schedule_id) == []

    resumed = await service.update(schedule_id, {"active": True}, by=BY)
    assert resumed.next_runs and await cron_runs(schedule_id)
    assert (
        min(r["scheduled_for"] for r in await cron_runs(schedule_id)) > resumed.schedule.updated_at
    )


async def test_changing_the_cron_replaces_the_runs_ahead(pool):
    view = await service.create(spec(), by=BY)
    updated = await service.update(view.schedule.id, {"cron": "* * * * * */15"}, by=BY)
    ticks = [r["scheduled_for"] for r in await cron_runs(view.schedule.id)]
    assert ticks and all(t.second % 15 == 0 for t in ticks)
    assert len(await waiting_jobs()) == len(ticks)
    assert [t.second % 15 for t in updated.next_runs] == [0] * 5


async def test_invalid_edit_changes_nothing(pool):
    view = await service.create(spec(headers={"Authorization": "Bearer s3cr3t"}), by=BY)
    with pytest.raises(InvalidSchedule, match="internal address"):
        await service.update(
            view.schedule.id,
            {
                "url": "http://10.0.0.1/",
                "cron": "0 * * * *",
                "headers": {"Authorization": "Bearer s3cr3t"},
            },
            by=BY,
        )
    with pytest.raises(InvalidSchedule, match="another origin"):  # the stored secret would go along
        await service.update(view.schedule.id, {"url": "http://93.184.215.15/hook"}, by=BY)
    again = await service.get(view.schedule.id)
    assert again.schedule == view.schedule
    # Sending the mask back keeps the stored secret.
    kept = await service.update(
        view.schedule.id, {"headers": {"Authorization": "********", "X-Extra": "1"}}, by=BY
    )
    assert kept.schedule.shown_headers == {"Authorization": "********", "X-Extra": "********"}
    assert kept.schedule.unseal(secretbox.keyring()).headers == {
        "Authorization": "Bearer s3cr3t",
        "X-Extra": "1",
    }


async def test_deleting_removes_the_schedule_its_runs_and_waiting_jobs(pool):
    view = await service.create(spec(), by=BY)
    run, _ = await service.run_now(view.schedule.id, by=BY)
    assert run.trigger == "manual" and run.job_id
    await service.delete(view.schedule.id, by=BY)
    assert await rows("SELECT id FROM schedule_runs") == []
    assert await waiting_jobs() == []
    with pytest.raises(service.ScheduleNotFound):
        await service.history(view.schedule.id)


async def test_history_is_newest_first_with_keyset_pages(pool):
    view = await service.create(spec(cron="0 0 1 1 *", active=False), by=BY)
    schedule_id = view.schedule.id
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome) "
            "SELECT %s, 'cron', now() - make_interval(mins => n), 'success' "
            "FROM generate_series(1, 7) n",
            (schedule_id,),
        )
        await conn.execute(  # upcoming ticks are not history
            "INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for) "
            "VALUES (%s, 'cron', now() + interval '1 hour')",
            (schedule_id,),
        )
    manual, _ = await service.run_now(schedule_id, by=BY)
    seen, cursor = [], None
    while True:
        page = await service.history(schedule_id, limit=3, cursor=cursor)
        seen += page.runs
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 8 and seen[0].id == manual.id
    keys = [(r.scheduled_for, r.id) for r in seen]
    assert keys == sorted(keys, reverse=True)
    with pytest.raises(InvalidSchedule, match="invalid cursor"):
        await service.history(schedule_id, cursor="garbage")


async def test_duplicate_name_is_a_conflict(pool):
    await service.create(spec(), by=BY)
    with pytest.raises(service.ScheduleConflict):
        await service.create(spec(), by=BY)
