"""Probe tasks: job names the tests defer to exercise the queue itself, registered like any task.

`kiosk.queue.defer` refuses every name no task has (`UnknownTask`), so the names the tests use
for rows of the admin pages, queueing locks, transactional enqueue and the SQL views are tasks
here. Each does nothing: these jobs are listed, retried, cancelled or counted, seldom run. The
test workers (`tests.support.worker_app`) import this module, and so does the test process
(`tests.support.registry` puts `worker_app` on the kiosk's import paths). A new probe name goes in
`PROBES`.
"""

from __future__ import annotations

from typing import Any

from tasks import app

__all__ = ["PROBES", "app"]

PROBES = (
    "tests.probe",
    "docs.demo",
    "docs.flaky",
    "metrics.demo",
    "demo.task",
    "demo.a",
    "demo.b",
    "demo.bulk",
    "demo.csrf",
    "demo.detail",
    "demo.job",
    "demo.keep",
    "demo.many",
    "demo.other",
    "demo.outcomes",
    "demo.page",
    "demo.qlock",
    "demo.rules",
    "demo.series",
    "demo.w",
)


def _register(name: str) -> None:
    async def probe(**kwargs: Any) -> None:
        """Nothing: a probe job is there to be listed, locked or counted."""

    probe.__name__ = probe.__qualname__ = name.replace(".", "_")
    app.task(name=name)(probe)


for _name in PROBES:
    _register(_name)
