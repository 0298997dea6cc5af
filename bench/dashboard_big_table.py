"""How fast the dashboard and the admin JSON API answer with a million jobs (a script, not a test).

    .venv/bin/python bench/dashboard_big_table.py                 # 1M jobs, embedded PostgreSQL
    .venv/bin/python bench/dashboard_big_table.py --rows 100000   # quicker
    .venv/bin/python bench/dashboard_big_table.py --compare 0005  # also without the 0006 indexes

Creates a scratch database (on KIOSK_BENCH_DATABASE_URL's server, else the embedded one in
.kiosk/bench-pgdata), migrates it, starts a real uvicorn on 127.0.0.1 and times every main page and
JSON endpoint (median of --repeat requests after one warm-up) on the empty tables; then fills
procrastinate_jobs with --rows finished jobs spread over 7 days plus failed, waiting, retrying and
running ones, each with its events (INSERT ... SELECT generate_series, triggers off), and times
them again. Everything stays on loopback; the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.bigtable import fill  # noqa: E402
from kiosk import embedded, migrations  # noqa: E402
from tests.support import Api, child_env  # noqa: E402

TOKEN = "bench-admin-token-0123456789"


def endpoints(url: str) -> list[tuple[str, str, dict]]:
    """(label, path, headers-kind) for every page and JSON endpoint measured."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(id), min(id) FROM procrastinate_jobs").fetchone()
        top, bottom = (row[0] or 1), (row[1] or 1)
        failed = (
            conn.execute(
                "SELECT max(id) FROM procrastinate_jobs WHERE status = 'failed'"
            ).fetchone()[0]
            or 1
        )
        day_ago = conn.execute(
            "SELECT to_char(now() - interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        ).fetchone()[0]
        six_days = conn.execute(
            "SELECT to_char(now() - interval '6 days', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        ).fetchone()[0]
    mid = (top + bottom) // 2
    return [
        ("page  overview (1 h)", "/admin/", "html"),
        ("page  overview (24 h)", "/admin/?window=1440", "html"),
        ("page  jobs, newest", "/admin/ui/jobs", "html"),
        ("page  jobs, middle page", f"/admin/ui/jobs?before={mid}", "html"),
        ("page  jobs, status=failed", "/admin/ui/jobs?status=failed", "html"),
        ("page  jobs, queue=mail", "/admin/ui/jobs?queue=mail", "html"),
        (
            "page  jobs, queue+status=succeeded",
            "/admin/ui/jobs?queue=mail&status=succeeded",
            "html",
        ),
        ("page  jobs, task", "/admin/ui/jobs?task=mail.receipt", "html"),
        ("page  jobs, last day", f"/admin/ui/jobs?deferred_after={day_ago}", "html"),
        (
            "page  jobs, 6 days ago to 1 day ago",
            f"/admin/ui/jobs?deferred_after={six_days}&deferred_before={day_ago}",
            "html",
        ),
        ("page  jobs, text (common)", "/admin/ui/jobs?q=example.com", "html"),
        (
            "page  jobs, text (rare) + task",
            "/admin/ui/jobs?q=customer77%40&task=mail.digest",
            "html",
        ),
        ("page  jobs, text (rare)", "/admin/ui/jobs?q=customer77%40", "html"),
        ("page  job detail", f"/admin/ui/jobs/{failed}", "html"),
        ("page  failed", "/admin/ui/failed", "html"),
        ("page  failed, task", "/admin/ui/failed?task=mail.receipt", "html"),
        ("page  workers", "/admin/ui/workers", "html"),
        ("page  periodic", "/admin/ui/periodic", "html"),
        ("page  schedules", "/admin/ui/schedules", "html"),
        ("page  audit", "/admin/ui/audit", "html"),
        ("json  GET /admin/queues", "/admin/queues", "json"),
        ("json  GET /admin/jobs", "/admin/jobs", "json"),
        ("json  GET /admin/jobs?status=failed", "/admin/jobs?status=failed", "json"),
        (
            "json  GET /admin/jobs?deferred_after=1d",
            f"/admin/jobs?deferred_after={day_ago}",
            "json",
        ),
        ("json  GET /admin/jobs/{id}", f"/admin/jobs/{failed}", "json"),
        ("json  GET /admin/workers", "/admin/workers", "json"),
        ("json  GET /admin/audit", "/admin/audit", "json"),
        # docs/sql.md, straight to the database: the failures an engineer looks at first.
        (
            "sql   kiosk_failed_jobs, latest 20",
            "SELECT * FROM kiosk_failed_jobs ORDER BY failed_at DESC NULLS LAST LIMIT 20",
            "sql",
        ),
    ]


def measure(api_url: str, targets: list[tuple[str, str, str]], repeat: int) -> dict[str, float]:
    database = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    html = httpx.Client(base_url=api_url, timeout=120)
    assert html.post("/admin/login", data={"token": TOKEN, "operator": "bench"}).status_code in (
        200,
        303,
    )
    json = httpx.Client(base_url=api_url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"})
    figures = {}
    for label, path, kind in targets:
        client = html if kind == "html" else json
        times = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            if kind == "sql":
                database.execute(path).fetchall()
                times.append((time.perf_counter() - started) * 1000)
                continue
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            missing_ok = response.status_code == 404 and (
                "detail" in label or "{id}" in label
            )  # empty table
            if response.status_code != 200 and not missing_ok:
                raise SystemExit(
                    f"{label}: {path} answered {response.status_code}: {response.text[:300]}"
                )
        figures[label] = statistics.median(times[1:])
        print(f"  {label:<40} {figures[label]:8.1f} ms", flush=True)
    html.close()
    json.close()
    database.close()
    return figures


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM and SIGINT (even in the background) stop it cleanly: API down, database dropped.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="finished jobs (default 1,000,000)"
    )
    parser.add_argument("--repeat", type=int, default=7, help="requests per endpoint, median taken")
    parser.add_argument(
        "--compare",
        metavar="REVISION",
        help="also measure the full table with the schema at REVISION (e.g. 0005)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and leave the API running"
    )
    args = parser.parse_args()

    server = os.environ.get("KIOSK_BENCH_DATABASE_URL")
    ctx = embedded.embedded_server(PROJECT_DIR / ".kiosk" / "bench-pgdata") if not server else None
    server_url = server or ctx.__enter__()
    name = f"kiosk_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = embedded.create_database(server_url, name, replace=True)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "KIOSK_ADMIN_TOKEN": TOKEN,
            "MP_ACCESS_TOKEN": "bench",
            "MP_WEBHOOK_SECRET": "bench",
        }
    )
    logs = PROJECT_DIR / ".kiosk" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    api = None
    try:
        migrations.upgrade(url)
        head = migrations.head_revision()
        api = Api(child_env(url, KIOSK_LOG_LEVEL="WARNING"), logs)
        print(f"API {api.url}, database {name}, schema {head}")

        print("empty tables:")
        columns = {"empty": measure(api.url, endpoints(url), args.repeat)}
        print(f"filling: {args.rows:,} finished jobs and their events ...", flush=True)
        seconds = fill(url, args.rows, outcomes=True)
        with psycopg.connect(url) as conn:
            jobs, events = conn.execute(
                "SELECT (SELECT count(*) FROM procrastinate_jobs), "
                "(SELECT count(*) FROM procrastinate_events)"
            ).fetchone()
            size = conn.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()[0]
        print(f"filled in {seconds:.0f} s: {jobs:,} jobs, {events:,} events, database {size}")
        targets = endpoints(url)
        if args.compare:
            migrations.downgrade(url, args.compare)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE procrastinate_jobs, procrastinate_events")
            print(f"{jobs:,} jobs, schema {args.compare}:")
            columns[f"at {args.compare}"] = measure(api.url, targets, args.repeat)
            migrations.upgrade(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE procrastinate_jobs, procrastinate_events")
        print(f"{jobs:,} jobs, schema {head}:")
        columns[f"at {head}"] = measure(api.url, targets, args.repeat)

        print(
            f"\nmedian of {args.repeat} requests, milliseconds ({jobs:,} jobs, {events:,} events)"
        )
        print(f"| {'endpoint':<40} | " + " | ".join(f"{c:>9}" for c in columns) + " |")
        print(f"|{'-' * 42}|" + "|".join("-" * 11 for _ in columns) + "|")
        for label, _, _ in targets:
            print(
                f"| {label:<40} | "
                + " | ".join(f"{col[label]:9.1f}" for col in columns.values())
                + " |"
            )
        if args.keep:
            print(f"kept: {api.url} (token {TOKEN}), DATABASE_URL={url}; Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if api is not None:
            api.stop()
        embedded.drop_database(server_url, name)
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
