"""The test support package, shared by tests/ and bench/ (drills, benchmarks).

- `processes`: child processes (uvicorn, workers), free ports, `wait_for` polling.
- `config`: the test session's tokens and secrets.
- `database`: pytest plugin, the session database and its clean-up (integration tier).
- `stack`: pytest plugin, the Mercado Pago simulator, SMTP and hook sinks, the API and workers.
- `hostile`: pytest plugin, the hostile-input API and table fingerprints.
- `receivers`: the drills' SMTP and hook counters (per order, with delivery keys).
- `sweep`: the stalled-job sweep run in a thread (drills).
- `dashboard`, `deploy`, `jobs`, `monitoring`, `schedules`: helpers of one area each.
- `worker_app`, `worker_periodic_app`, `fetch_app`, `sweep_app`, `dashboard_tasks`: test-only
  procrastinate apps.
- `probe_tasks`: the no-op tasks whose names the tests defer (`kiosk.queue.defer` refuses any
  name no task has); `registry`: pytest plugin that registers the test tasks in the test process.

The basics are importable from the package itself: `from tests.support import Api, wait_for`.
"""

from tests.support.processes import (
    PROJECT_DIR,
    Api,
    Process,
    Worker,
    child_env,
    free_port,
    until,
    wait_for,
)

__all__ = ["PROJECT_DIR", "Api", "Process", "Worker", "child_env", "free_port", "until", "wait_for"]
