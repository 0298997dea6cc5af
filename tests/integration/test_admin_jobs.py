"""Admin API over the job queue, against a real uvicorn and real procrastinate rows."""

import re

import httpx
import pytest
from procrastinate.jobs import Status

from kiosk import db, queue
from kiosk.admin import jobs
from tests.support import Api
from tests.support.config import ADMIN_TOKEN
from tests.support.dashboard import record_outcome

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Kiosk-Actor": "ana"}


@pytest.fixture
def api(env, log_dir):
    server = Api(env, log_dir)
    yield httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
    server.stop()


async def defer(task: str, queue_name: str = "default", **kwargs) -> int:
    async with db.transaction() as conn:
        return await queue.defer(conn, task, queue=queue_name, **kwargs)


async def run_one(status: Status) -> int:
    """Take the next job as a worker would and finish it with `status` (procrastinate's API)."""
    manager = queue.app.job_manager
    worker_id = await manager.register_worker()
    job = await manager.fetch_job(queues=None, worker_id=worker_id)
    assert job is not None
    if status is not Status.DOING:
        await manager.finish_job(job, status=status, delete_job=False)
    return job.id


def test_every_admin_route_needs_the_token(api):
    schema = api.get("/openapi.json").json()
    paths = {
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        if path.startswith("/admin")
        for method in ops
    }
    assert len(paths) >= 11
    assert all(
        ops[m.lower()].get("security") == [{"adminToken": []}]
        for path, ops in schema["paths"].items()
        if path.startswith("/admin")
        for m in ops
    )
    for method, path in paths:
        url = path.replace("{job_id}", "1").replace("{name}", "x")
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"}):
            response = api.request(method, url, headers=headers, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_every_admin_json_route_is_documented(database_url):
    """Each /admin JSON route: bearer scheme, explicit summary, its 401; actions name an actor."""
    from kiosk.app import app

    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    operations = [
        (method.upper(), path, op)
        for path, ops in schema["paths"].items()
        if path.startswith("/admin")
        for method, op in ops.items()
    ]
    assert len(operations) >= 23
    for method, path, op in operations:
        assert op.get("security") == [{"adminToken": []}], (method, path)
        assert "401" in op["responses"], (method, path)
        if method != "GET":
            assert "x-kiosk-actor" in [p["name"] for p in op.get("parameters", [])], (method, path)
    # Without one, FastAPI makes a summary up from the function name (which the operationId starts
    # with): every admin route writes its own.
    made_up = []
    for method, path, op in operations:
        function = op["operationId"].removesuffix(re.sub(r"\W", "_", path) + "_" + method.lower())
        if op.get("summary", "") in ("", function.replace("_", " ").title()):
            made_up.append((method, path))
    assert made_up == []


async def test_queues_counts_and_throughput(api, pool):
    for n in range(3):
        await defer("demo.a", "mail", n=n)
    await defer("demo.b", "payments")
    await run_one(Status.SUCCEEDED)  # oldest job first: demo.a n=0
    await run_one(Status.FAILED)

    queues = {q["name"]: q for q in api.get("/admin/queues").json()}
    assert queues["mail"]["counts"]["todo"] == 1
    assert queues["mail"]["counts"]["succeeded"] == 1 and queues["mail"]["counts"]["failed"] == 1
    assert queues["mail"]["succeeded_5m"] == 1 and queues["mail"]["failed_60m"] == 1
    assert queues["payments"]["counts"]["todo"] == 1
    assert queues["payments"]["oldest_runnable_age_seconds"] >= 0


async def test_jobs_filters_and_keyset_pagination(api, pool):
    ids = [await defer("demo.page", "default", order=f"o-{n}") for n in range(7)]
    await defer("demo.other", "default", order="needle-42")

    page = api.get("/admin/jobs", params={"task": "demo.page", "limit": 3}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:3]
    seen = [j["id"] for j in page["jobs"]]
    while page["next_cursor"]:
        page = api.get(
            "/admin/jobs", params={"task": "demo.page", "limit": 3, "before": page["next_cursor"]}
        ).json()
        seen += [j["id"] for j in page["jobs"]]
    assert seen == ids[::-1]

    found = api.get("/admin/jobs", params={"q": "needle-4"}).json()["jobs"]
    assert [j["task_name"] for j in found] == ["demo.other"]
    assert api.get("/admin/jobs", params={"q": "50%_off"}).json()["jobs"] == []
    assert api.get("/admin/jobs", params={"status": "failed"}).json()["jobs"] == []
    assert api.get("/admin/jobs", params={"status": "bogus"}).status_code == 422

    first = api.get(f"/admin/jobs/{ids[0]}").json()
    window = {"deferred_after": first["deferred_at"], "task": "demo.page"}
    assert len(api.get("/admin/jobs", params=window).json()["jobs"]) == 7
    assert (
        api.get("/admin/jobs", params={"deferred_after": "2999-01-01T00:00:00Z"}).json()["jobs"]
        == []
    )


async def test_job_detail_with_timeline_and_outcomes(api, pool):
    job_id = await defer("demo.detail", "default", lock="L1", queueing_lock="Q1", x=1)
    assert api.get(f"/admin/jobs/{job_id}").json()["outcomes"] == []
    await run_one(Status.FAILED)
    await record_outcome(
        job_id,
        1,
        "failed",
        task="demo.detail",
        error=ValueError("card declined"),
        traceback="Traceback (most recent call last):\nValueError: card declined",
    )
    await record_outcome(job_id, 2, "succeeded", task="demo.detail", result='{"rows": 3}')
    job = api.get(f"/admin/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["args"] == {"x": 1}
    assert job["lock"] == "L1" and job["queueing_lock"] == "Q1" and job["attempts"] == 1
    assert [e["type"] for e in job["events"]] == ["deferred", "started", "failed"]
    first, second = job["outcomes"]
    assert (first["attempt"], first["status"], first["error_type"], first["error_message"]) == (
        1,
        "failed",
        "ValueError",
        "card declined",
    )
    assert (
        first["traceback"].endswith("ValueError: card declined")
        and first["worker_name"] == "test-worker"
    )
    assert first["duration_seconds"] == 0.25 and first["started_at"] < first["ended_at"]
    assert (second["attempt"], second["status"], second["result"], second["error_type"]) == (
        2,
        "succeeded",
        {"rows": 3},
        None,
    )
    assert api.get("/admin/jobs/999999").status_code == 404


async def test_retry_and_cancel_follow_state_rules(api, pool):
    failed = await defer("demo.rules", "default", n=1)
    await run_one(Status.FAILED)
    succeeded = await defer("demo.rules", "default", n=2)
    await run_one(Status.SUCCEEDED)
    running = await defer("demo.rules", "default", n=3)
    await run_one(Status.DOING)
    waiting = await defer("demo.rules", "default", n=4)

    assert api.post(f"/admin/jobs/{failed}/retry").json() == {"id": failed, "result": "retried"}
    assert api.get(f"/admin/jobs/{failed}").json()["status"] == "todo"
    assert api.get(f"/admin/jobs/{failed}").json()["events"][-1]["type"] == "retried"
    conflict = api.post(f"/admin/jobs/{succeeded}/retry")
    assert conflict.status_code == 409 and "succeeded" in conflict.json()["detail"]

    assert api.post(f"/admin/jobs/{waiting}/cancel").json()["result"] == "cancelled"
    assert api.post(f"/admin/jobs/{running}/cancel").json()["result"] == "abort_requested"
    assert api.get(f"/admin/jobs/{running}").json()["abort_requested"] is True
    assert api.post(f"/admin/jobs/{succeeded}/cancel").status_code == 409
    assert api.post("/admin/jobs/999999/cancel").status_code == 404

    # A cancelled job can be retried too.
    assert api.post(f"/admin/jobs/{waiting}/retry").status_code == 200
    assert api.get(f"/admin/jobs/{waiting}").json()["status"] == "todo"

    actions = [
        (e["actor"], e["action"], e["target"]) for e in api.get("/admin/audit").json()["entries"]
    ]
    assert actions[0] == ("ana", "job.retry", f"job:{waiting}")
    assert ("ana", "job.cancel", f"job:{running}") in actions
    assert not any(
        target == f"job:{succeeded}" for _, _, target in actions
    )  # refused: not recorded


async def test_retry_refused_when_queueing_lock_is_taken(api, pool):
    first = await defer("demo.qlock", "default", queueing_lock="only-one")
    await run_one(Status.FAILED)
    await defer("demo.qlock", "default", queueing_lock="only-one")
    response = api.post(f"/admin/jobs/{first}/retry")
    assert response.status_code == 409 and "only-one" in response.json()["detail"]


async def test_bulk_retry_and_cancel(api, pool):
    for n in range(3):
        await defer("demo.bulk", "default", n=n)
        await run_one(Status.FAILED)
    for n in range(2):
        await defer("demo.bulk", "default", n=10 + n)
    assert api.post("/admin/jobs/retry", json={}).status_code == 422

    retried = api.post("/admin/jobs/retry", json={"task": "demo.bulk"}).json()
    assert retried["matched"] == 3 and len(retried["changed"]) == 3
    cancelled = api.post("/admin/jobs/cancel", json={"task": "demo.bulk", "status": "todo"}).json()
    assert cancelled["matched"] == 5 and len(cancelled["changed"]) == 5
    statuses = {
        j["status"] for j in api.get("/admin/jobs", params={"task": "demo.bulk"}).json()["jobs"]
    }
    assert statuses == {"cancelled"}
    entry = api.get("/admin/audit").json()["entries"][0]
    assert entry["action"] == "jobs.bulk_cancel" and entry["details"]["changed"] == 5


async def test_workers_live_and_stalled(api, pool):
    manager = queue.app.job_manager
    live = await manager.register_worker()
    stalled = await manager.register_worker()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = %s",
            (stalled,),
        )
    await defer("demo.w", "default")
    running = await manager.fetch_job(queues=None, worker_id=live)
    workers = {w["id"]: w for w in api.get("/admin/workers").json()["workers"]}
    assert workers[live]["stalled"] is False and workers[live]["running_job_ids"] == [running.id]
    assert workers[stalled]["stalled"] is True and workers[stalled]["heartbeat_age_seconds"] > 3000


def test_periodic_unknown_is_404(api):
    assert api.post("/admin/periodic/nope/run").status_code == 404
    assert isinstance(api.get("/admin/periodic").json(), list)


async def test_queue_counts_past_the_cap_are_estimated_and_flagged(api, pool):
    for n in range(4):
        await defer("demo.many", "bulk", n=n)
    await run_one(Status.SUCCEEDED)
    await run_one(Status.SUCCEEDED)

    async with db.transaction() as conn:
        exact = {q.name: q for q in await jobs.list_queues(conn)}["bulk"]
        capped = {
            q.name: q for q in await jobs.list_queues(conn, exact_up_to=1, exact_succeeded_up_to=1)
        }["bulk"]
    assert exact.counts["todo"] == 2 and exact.counts["succeeded"] == 2 and exact.estimated == []
    # Over its cap a count is the planner's estimate, never below what is known to be there.
    assert sorted(capped.estimated) == ["succeeded", "todo"]
    assert capped.counts["todo"] >= 2 and capped.counts["succeeded"] >= 2
    assert capped.counts["failed"] == 0

    listed = {q["name"]: q for q in api.get("/admin/queues").json()}["bulk"]
    assert listed["estimated"] == [] and listed["counts"]["todo"] == 2
