"""The apps bench workers run: bare procrastinate against kiosk's real task path, same tasks.

    procrastinate --app=bench.apps.bare_app worker ...   # procrastinate.App, nothing added
    procrastinate --app=bench.apps.kiosk_app worker ...  # tasks.app: KioskApp, outcome middleware,
                                                         # time limit, ShutdownRetry, its
                                                         # worker defaults

Both register the same two async tasks:
- `bench.noop(n)` returns n: the cost of a job is the queue's own.
- `bench.stamp(seq)` appends `seq started fetched` to the file BENCH_STAMPS as its first act:
  `time.time()` now, and when procrastinate's fetch of the job returned (`context.start_timestamp`),
  on the machine's clock, for the commit-to-start latency.

BENCH_NO_OUTCOMES=1 leaves the outcome middleware out of kiosk_app (its share of the cost).
Imported only by worker processes (it needs DATABASE_URL).
"""

from __future__ import annotations

import os
import time

from procrastinate import App, JobContext, PsycopgConnector

from tasks import app as kiosk_app

bare_app = App(connector=PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))

_stamps: int | None = None


def _stamp(seq: int, started: float, fetched: float) -> None:
    global _stamps
    if _stamps is None:
        _stamps = os.open(os.environ["BENCH_STAMPS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_stamps, f"{seq} {started:.6f} {fetched:.6f}\n".encode())


for _app in (bare_app, kiosk_app):

    @_app.task(name="bench.noop")
    async def noop(n: int) -> int:
        return n

    @_app.task(name="bench.stamp", pass_context=True)
    async def stamp(context: JobContext, seq: int) -> None:
        _stamp(seq, time.time(), context.start_timestamp)


if os.environ.get("BENCH_NO_OUTCOMES"):
    kiosk_app.worker_defaults = {
        k: v for k, v in kiosk_app.worker_defaults.items() if k != "worker_middleware"
    }
