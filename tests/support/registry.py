"""pytest plugin: the test tasks join the kiosk's import paths in the test process.

`kiosk.queue.defer` accepts only registered task names, and registers the app's tasks by
importing its import paths (`tasks`, `periodic`) on first use. The tests defer the test workers'
tasks and the probe tasks from this process too, so their modules are added to those paths here:
imported on the first defer like the kiosk's own, never at collection (importing `tasks` reads the
settings, which the fixtures set up first).
"""

from __future__ import annotations

from kiosk import queue

TASK_MODULES = ("tests.support.worker_app", "tests.support.dashboard_tasks")


def pytest_configure() -> None:
    paths = list(queue.app.import_paths)
    queue.app.import_paths = paths + [path for path in TASK_MODULES if path not in paths]
