"""Every admin change leaves exactly one audit row, written in the change's own transaction; a
refused one (401/404/409/422) leaves none, and no secret reaches the details.

Catalog and schedules here; job actions, periodic runs and exports in their own test modules.
"""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from kiosk import db
from kiosk.audit import Operator
from kiosk.catalog import products
from kiosk.schedules import service
from kiosk.schedules.spec import ScheduleSpec
from tests.support import Api, child_env
from tests.support.schedules import ALLOW_LOOPBACK, AUTH

SECRET = "s3cr3t-header-value"
YEARLY = "0 0 1 1 *"  # never fires during a test


@pytest.fixture(scope="module")
def api(database_url, tmp_path_factory):
    server = Api(child_env(database_url, **ALLOW_LOOPBACK), tmp_path_factory.mktemp("audit-api"))
    with httpx.Client(
        base_url=server.url, headers={**AUTH, "X-Kiosk-Actor": "ana"}, timeout=30
    ) as client:
        yield client
    server.stop()


class Audit:
    """Follows the audit log from an empty table: each step adds one entry, or none."""

    def __init__(self, api: httpx.Client):
        self.api, self.seen = api, 0

    def entries(self) -> list[dict]:
        return self.api.get("/admin/audit").json()["entries"]

    def one(self, response: httpx.Response, status: int, action: str, target: str) -> dict:
        assert response.status_code == status, response.text
        entries = self.entries()
        assert len(entries) == self.seen + 1, entries[: len(entries) - self.seen]
        self.seen += 1
        entry = entries[0]
        assert (entry["actor"], entry["action"], entry["target"]) == ("ana", action, target)
        assert entry["remote_addr"] == "127.0.0.1"
        return entry["details"]

    def none(self, response: httpx.Response, status: int) -> None:
        assert response.status_code == status, response.text
        assert len(self.entries()) == self.seen


def test_product_changes_are_audited(api, database_url):
    audit = Audit(api)
    body = {"name": "Coffee", "price_cents": 250, "stock": 10}
    assert (
        audit.one(
            api.put("/admin/products/coffee", json=body), 201, "product.create", "product:coffee"
        )
        == body
    )
    replaced = audit.one(
        api.put("/admin/products/coffee", json={**body, "stock": 3}),
        200,
        "product.replace",
        "product:coffee",
    )
    assert replaced == {**body, "stock": 3}
    audit.none(api.put("/admin/products/coffee", json={**body, "price_cents": -1}), 422)
    audit.none(api.put("/admin/products/bad%20sku!", json=body), 422)
    audit.none(httpx.put(f"{api.base_url}/admin/products/tea", json=body), 401)


def test_schedule_changes_are_audited_without_secrets(api, database_url):
    audit = Audit(api)
    fields = {
        "name": "price-sync",
        "cron": YEARLY,
        "url": "http://127.0.0.1:9/sync?token=query-secret",
        "method": "POST",
        "headers": {"X-Api-Key": SECRET, "Accept": "text/plain"},
        "body": "payload",
    }
    created = api.post("/admin/schedules", json=fields)
    schedule_id = created.json()["id"]
    target = f"schedule:{schedule_id}"
    details = audit.one(created, 201, "schedule.create", target)
    assert details == {
        "name": "price-sync",
        "cron": YEARLY,
        "timezone": "UTC",
        "method": "POST",
        "url": "http://127.0.0.1:9/sync",
        "headers": ["Accept", "X-Api-Key"],
        "body": True,
        "timeout_seconds": 10.0,
        "max_attempts": 3,
        "active": True,
    }
    audit.none(api.post("/admin/schedules", json=fields), 409)  # the name is taken
    audit.none(
        api.post("/admin/schedules", json={**fields, "name": "other", "cron": "61 * * * *"}), 422
    )

    changed = api.patch(
        f"/admin/schedules/{schedule_id}",
        json={"cron": "0 0 2 1 *", "headers": {"X-Api-Key": "n3w-s3cr3t", "Accept": "*/*"}},
    )
    assert audit.one(changed, 200, "schedule.update", target) == {
        "changed": ["cron", "headers"],
        "cron": "0 0 2 1 *",
        "headers": ["Accept", "X-Api-Key"],
    }
    audit.none(api.patch(f"/admin/schedules/{schedule_id}", json={"url": "http://10.1.2.3/"}), 422)
    audit.none(api.patch("/admin/schedules/999999", json={"active": False}), 404)
    other = api.post("/admin/schedules", json={**fields, "name": "other"})
    audit.one(other, 201, "schedule.create", f"schedule:{other.json()['id']}")
    audit.none(api.patch(f"/admin/schedules/{schedule_id}", json={"name": "other"}), 409)

    run = api.post(f"/admin/schedules/{schedule_id}/run")
    details = audit.one(run, 202, "schedule.run", target)
    assert details == {
        "name": "price-sync",
        "run_id": run.json()["run"]["id"],
        "job_id": run.json()["run"]["job_id"],
    }
    audit.none(api.post("/admin/schedules/999999/run"), 404)

    details = audit.one(
        api.delete(f"/admin/schedules/{schedule_id}"), 204, "schedule.delete", target
    )
    assert details == {
        "name": "price-sync",
        "cron": "0 0 2 1 *",
        "url": "http://127.0.0.1:9/sync",
        "jobs_cancelled": 1,
    }  # the manual run's job had not started
    audit.none(api.delete(f"/admin/schedules/{schedule_id}"), 404)

    with psycopg.connect(database_url) as conn:
        stored = json.dumps(conn.execute("SELECT json_agg(a) FROM admin_audit a").fetchone()[0])
    for secret in (SECRET, "n3w-s3cr3t", "query-secret", "payload"):
        assert secret not in stored


async def test_a_change_and_its_audit_row_commit_together(pool):
    """An audit write that fails (no actor: NOT NULL) takes the change down with it."""
    nobody = Operator(None)  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.NotNullViolation):
        await products.put("tea", "Tea", 300, 5, nobody)
    spec = ScheduleSpec(
        name="atomic", cron=YEARLY, url="http://93.184.215.14/hook"
    )  # public: no DNS
    with pytest.raises(psycopg.errors.NotNullViolation):
        await service.create(spec, by=nobody)

    view = await service.create(spec, by=Operator("setup"))
    schedule_id = view.schedule.id
    with pytest.raises(psycopg.errors.NotNullViolation):
        await service.update(schedule_id, {"cron": "0 0 2 1 *"}, by=nobody)
    with pytest.raises(psycopg.errors.NotNullViolation):
        await service.run_now(schedule_id, by=nobody)
    with pytest.raises(psycopg.errors.NotNullViolation):
        await service.delete(schedule_id, by=nobody)

    async with db.transaction() as conn:
        state = await db.fetch_one(
            conn,
            """
            SELECT (SELECT count(*) FROM products) AS products,
                   (SELECT array_agg(cron) FROM schedules) AS crons,
                   (SELECT count(*) FROM schedule_runs WHERE trigger = 'manual') AS manual_runs,
                   (SELECT array_agg(action) FROM admin_audit) AS actions""",
        )
    assert state == {
        "products": 0,
        "crons": [YEARLY],
        "manual_runs": 0,
        "actions": ["schedule.create"],
    }
