"""The apps bench workers run: bare procrastinate against kiosk's real task path, same tasks.

    procrastinate --app=bench.apps.bare_app worker ...    # procrastinate.App, nothing added
    procrastinate --app=bench.apps.kiosk_app worker ...   # tasks.app: KioskApp, outcome middleware,
                                                          # time limit, ShutdownRetry, worker defaults

Both register the same two async tasks:
- `bench.noop(n)` returns n: the cost of a job is the queue's own.
- `bench.stamp(seq)` appends `seq time.time()` to the file BENCH_STAMPS as its first act: the
  moment the job started, on the machine's clock, for the commit-to-start latency.

BENCH_NO_OUTCOMES=1 leaves the outcome middleware out of kiosk_app (its share of the cost).
Imported only by worker processes (it needs DATABASE_URL).
"""

from __future__ import annotations

import os
import time

from procrastinate import App, PsycopgConnector

from tasks import app as kiosk_app

bare_app = App(connector=PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))

_stamps: int | None = None


def _stamp(seq: int, at: float) -> None:
    global _stamps
    if _stamps is None:
        _stamps = os.open(os.environ["BENCH_STAMPS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_stamps, f"{seq} {at:.6f}\n".encode())


for _app in (bare_app, kiosk_app):

    @_app.task(name="bench.noop")
    async def noop(n: int) -> int:
        return n

    @_app.task(name="bench.stamp")
    async def stamp(seq: int) -> None:
        _stamp(seq, time.time())


if os.environ.get("BENCH_NO_OUTCOMES"):
    kiosk_app.worker_defaults = {k: v for k, v in kiosk_app.worker_defaults.items()
                                 if k != "worker_middleware"}
