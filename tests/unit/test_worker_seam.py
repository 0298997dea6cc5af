"""The seams of procrastinate that the batched fetch relies on (kiosk/jobs/fetcher.py, worker.py).

`KioskApp._worker` overrides a private method of procrastinate's App; the fetcher relies on the
worker asking `job_manager.fetch_job` once per free slot and reporting every job through
`finish_job` / `retry_job`. If a procrastinate upgrade changes one of these, these fail loudly
instead of the worker silently running without its buffer release or its slot accounting.
"""

from __future__ import annotations

import inspect

from procrastinate import App, manager, worker

from kiosk.jobs.fetcher import BatchFetchManager
from kiosk.jobs.manager import KioskJobManager
from kiosk.jobs.worker import KioskWorker
from tasks import app


def test_run_worker_async_builds_its_worker_with_the_private_worker_method():
    assert "self._worker(**kwargs)" in inspect.getsource(App.run_worker_async)
    assert list(inspect.signature(App._worker).parameters) == ["self", "kwargs"]


def test_the_worker_fetches_per_free_slot_and_reports_through_the_manager():
    loop = inspect.getsource(worker.Worker._fetch_and_process_jobs)
    assert "self._job_semaphore.acquire()" in loop
    assert "self.app.job_manager.fetch_job(" in loop
    persist = inspect.getsource(worker.Worker._persist_job_status)
    assert "self.app.job_manager.retry_job(" in persist
    assert "self.app.job_manager.finish_job(" in persist
    shutdown = inspect.getsource(worker.Worker._shutdown)
    assert "self.app.job_manager.unregister_worker(" in shutdown


def test_overrides_keep_procrastinates_signatures():
    for name in ("fetch_job", "finish_job", "retry_job", "listen_for_jobs", "unregister_worker"):
        ours = inspect.signature(getattr(BatchFetchManager, name))
        theirs = inspect.signature(getattr(manager.JobManager, name))
        assert list(ours.parameters) == list(theirs.parameters), name


def test_kiosk_app_builds_a_kiosk_worker_with_a_kiosk_job_manager():
    manager = app.job_manager
    assert isinstance(manager, KioskJobManager)
    try:
        built = app._worker(concurrency=3, install_signal_handlers=False)
        assert isinstance(built, KioskWorker)
        assert built.concurrency == 3
        assert (manager.worker_concurrency, manager.worker_batching) == (3, True)
    finally:  # the app is shared by the session: back to one job per call, as outside a worker
        manager.configure_worker(concurrency=1, batching=False)
