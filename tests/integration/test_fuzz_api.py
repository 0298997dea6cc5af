"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis) against a real uvicorn.

Every operation gets valid and invalid inputs (schemathesis' positive and negative modes), admin
operations with the valid token so the fuzzing reaches past authentication. Nothing may answer
5xx, and a refused (4xx) request may change no row of any table. A short budget keeps the run in
the default suite; FUZZ_EXAMPLES raises it (`FUZZ_EXAMPLES=300 ./scripts/test
tests/integration/test_fuzz_api.py`).
"""

from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.support.hostile import AUTH, changed, fingerprint

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# 5xx answers that are the documented meaning of an operation, not a failure.
DOCUMENTED = {("/health/workers", 503)}  # no worker runs in this test


@pytest.fixture
def seeded(hostile_api, database_url):
    """Something for the fuzzer to hit: a product, an order, a schedule, an export, jobs."""
    with httpx.Client(base_url=hostile_api.url, timeout=30, headers=AUTH) as http:
        http.put(
            "/admin/products/coffee", json={"name": "Coffee", "price_cents": 250, "stock": 50}
        ).raise_for_status()
        http.post("/orders", json={"items": [{"sku": "coffee", "quantity": 1}]}).raise_for_status()
        http.post(
            "/admin/schedules",
            json={"name": "ping", "cron": "0 0 * * *", "url": "http://127.0.0.1:9/"},
        ).raise_for_status()
        http.post(
            "/admin/exports", json={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
        ).raise_for_status()
    return hostile_api


@pytest.mark.timeout(max(300, EXAMPLES * 32 * 0.5))  # 32 operations, generous per example
def test_no_server_error_and_no_row_from_a_refused_request(seeded, database_url):
    # Strategies per operation (schemathesis' Python API): its pytest loader for a live server
    # (`from_fixture`) does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{seeded.url}/openapi.json", wait_for_schema=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    calls: Counter[str] = Counter()
    for operation in operations:
        # The admin API and the order endpoints (which also take a device token) want a token.
        admin = operation.path.startswith(("/admin", "/orders"))
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def fuzz(case):
            before = fingerprint(database_url)
            # B023: fuzz() runs right below, in this iteration, with this admin and operation.
            headers = AUTH if admin else None  # noqa: B023
            response = case.call(base_url=seeded.url, headers=headers, timeout=60)
            calls[f"{response.status_code // 100}xx"] += 1
            documented = (operation.path, response.status_code) in DOCUMENTED  # noqa: B023
            assert response.status_code < 500 or documented, (
                f"{case.method} {case.formatted_path} -> {response.status_code} "
                f"{response.text[:500]}\n{case.as_curl_command()}"
            )
            if 400 <= response.status_code < 500:
                diff = changed(before, fingerprint(database_url))
                assert not diff, (
                    f"{case.method} {case.formatted_path} -> {response.status_code} changed {diff}"
                )

        fuzz()
    print(f"fuzzed {len(operations)} operations: {dict(calls)}")


def test_every_admin_operation_wants_the_token(hostile_api, database_url):
    """Without the token (or with a wrong one) every admin operation is 401 and changes nothing."""
    spec = httpx.get(f"{hostile_api.url}/openapi.json").json()
    before = fingerprint(database_url)
    checked = 0
    with httpx.Client(base_url=hostile_api.url, timeout=30) as http:
        for path, operations in spec["paths"].items():
            if not path.startswith("/admin"):
                continue
            url = path.replace("{sku}", "coffee").replace("{name}", "schedules.dispatch")
            for key in ("job_id", "schedule_id", "device_id"):
                url = url.replace(f"{{{key}}}", "1")
            url = url.replace("{export_id}", "00000000-0000-0000-0000-000000000000")
            for method in operations:
                for headers in (
                    {},
                    {"Authorization": "Bearer wrong-token-0123456789"},
                    {"Authorization": "Basic " + AUTH["Authorization"].split()[1]},
                ):
                    response = http.request(method.upper(), url, headers=headers, json={})
                    assert response.status_code == 401, (method, url, headers, response.text)
                    checked += 1
    assert checked >= 3 * 20
    assert not changed(before, fingerprint(database_url))
