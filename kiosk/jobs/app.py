"""`KioskApp`: procrastinate's App with kiosk's worker settings and task options.

- Every task gets `ShutdownRetry` around its retry policy (a job cut short by a worker shutdown
  goes back to `todo`) and, when async, a time limit: `@app.task(..., timeout=30)`, else
  KIOSK_JOB_TIMEOUT; `timeout=0` for none.
- `run_worker_async` (what `procrastinate worker` calls) fills the worker options from the
  KIOSK_WORKER_* settings; command-line flags (and procrastinate's own PROCRASTINATE_WORKER_*
  variables, which are flag defaults) still win. Settings are read when a worker starts, never at
  import: `tasks.app` imports without a database or any variable set.
- The job manager is a `KioskJobManager` (batched fetch, queue controls) and the worker a
  `KioskWorker` (gives its unstarted jobs back when it stops); KIOSK_WORKER_BATCHING=false fetches
  one job per round trip.
- procrastinate's two INFO lines per job (start, success) are left out unless
  KIOSK_WORKER_JOB_LOGS is true (kiosk/jobs/joblogs.py); failures, retries and the worker's own
  lines stay.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from procrastinate import App, JobContext, jobs, middleware, retry, worker
from procrastinate.tasks import Task

from kiosk.jobs import joblogs, timeouts
from kiosk.jobs.manager import KioskJobManager
from kiosk.jobs.retry import ShutdownRetry
from kiosk.jobs.worker import KioskWorker
from kiosk.settings import Settings, load_or_exit

P = ParamSpec("P")
R = TypeVar("R")


def worker_options(settings: Settings) -> dict[str, Any]:
    """procrastinate worker options from the KIOSK_WORKER_* settings (docs/workers.md)."""
    return {
        "concurrency": settings.worker_concurrency,
        "queues": settings.worker_queue_list or None,
        "shutdown_graceful_timeout": settings.worker_shutdown_timeout,
        "update_heartbeat_interval": settings.worker_heartbeat_interval,
        # Workers silent this long are deleted when a worker starts; their jobs are then swept.
        "stalled_worker_timeout": settings.worker_stalled_after,
    }


def check_worker_options(options: dict[str, Any], pool_max_size: int) -> str | None:
    """The same limits for values that came from flags; a message when one is out of range."""
    concurrency = options.get("concurrency")
    if concurrency is not None and not 1 <= concurrency <= pool_max_size:
        return (
            f"worker concurrency must be between 1 and the pool size KIOSK_DB_POOL_MAX_SIZE "
            f"({pool_max_size}), got {concurrency}"
        )
    timeout = options.get("shutdown_graceful_timeout")
    if timeout is not None and not 0 <= timeout <= 3600:
        return (
            f"worker shutdown graceful timeout must be between 0 and 3600 seconds, got {timeout:g}"
        )
    return None


class KioskApp(App):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Batched fetch and group-committed finishes (kiosk/jobs/fetcher.py, finisher.py); the
        # command stays `procrastinate worker`.
        self.job_manager = KioskJobManager(self.connector)
        self.worker_batching = True  # KIOSK_WORKER_BATCHING, read when a worker starts

    # The overloads are App.task's (procrastinate/blueprints.py) plus `timeout=`, so a task keeps
    # its function's parameters and result for mypy (`Task.defer` and calls are checked).
    @overload
    def task(
        self,
        *,
        _func: None = None,
        name: str | None = None,
        aliases: list[str] | None = None,
        retry: retry.RetryValue = False,
        pass_context: Literal[False] = False,
        queue: str = jobs.DEFAULT_QUEUE,
        priority: int = jobs.DEFAULT_PRIORITY,
        lock: str | None = None,
        queueing_lock: str | None = None,
        task_middleware: list[middleware.TaskMiddleware] | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R, P]]: ...

    @overload
    def task(
        self,
        *,
        _func: None = None,
        name: str | None = None,
        aliases: list[str] | None = None,
        retry: retry.RetryValue = False,
        pass_context: Literal[True],
        queue: str = jobs.DEFAULT_QUEUE,
        priority: int = jobs.DEFAULT_PRIORITY,
        lock: str | None = None,
        queueing_lock: str | None = None,
        task_middleware: list[middleware.TaskMiddleware] | None = None,
        timeout: float | None = None,
    ) -> Callable[
        [Callable[Concatenate[JobContext, P], R]], Task[Concatenate[JobContext, P], R, P]
    ]: ...

    @overload
    def task(self, _func: Callable[P, R]) -> Task[P, R, P]: ...

    def task(
        self,
        _func: Callable[..., Any] | None = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """`App.task` plus `timeout=` (seconds, async tasks only; None = KIOSK_JOB_TIMEOUT)."""

        def register(func: Callable[..., Any]) -> Task[..., Any, ...]:
            if inspect.iscoroutinefunction(func):
                func = timeouts.limit(func, timeout)
            elif timeout:
                raise TypeError(
                    f"timeout= needs an async task; {func.__qualname__} is sync and its thread "
                    "cannot be interrupted"
                )
            policy = retry.get_retry_strategy(options.get("retry", False))
            task_options = {**options, "retry": ShutdownRetry(policy)}
            return super(KioskApp, self).task(func, **task_options)

        return register if _func is None else register(_func)

    async def run_worker_async(self, **kwargs: Any) -> None:
        settings = load_or_exit()
        self.worker_batching = settings.worker_batching
        options = {**worker_options(settings), **kwargs}
        problem = check_worker_options(options, settings.db_pool_max_size)
        if problem:
            print(f"kiosk: invalid worker option: {problem}", file=sys.stderr)
            raise SystemExit(2)
        if not settings.worker_job_logs:
            joblogs.quiet_job_logs(options.get("name", worker.WORKER_NAME))
        await super().run_worker_async(**options)

    def _worker(self, **kwargs: Any) -> worker.Worker:
        # procrastinate's App.run_worker_async builds its worker here (a private method:
        # tests/unit/test_worker_seam.py fails if procrastinate stops calling it).
        return KioskWorker(
            app=self, batching=self.worker_batching, **{**self.worker_defaults, **kwargs}
        )
