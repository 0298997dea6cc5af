"""A worker leaves out procrastinate's two per-job INFO lines, and only those (joblogs.py)."""

from __future__ import annotations

import logging

import pytest

from kiosk.jobs import joblogs


@pytest.fixture(autouse=True)
def _filter_removed_afterwards():
    yield
    for name in ("procrastinate.worker", "procrastinate.worker.w"):
        logging.getLogger(name).removeFilter(joblogs._filter)


@pytest.mark.parametrize(
    ("action", "kept"),
    [
        ("start_job", False),
        ("job_success", False),
        ("job_error_retry", True),
        ("job_error", True),
        ("job_aborted", True),
        ("start_worker", True),
        ("stop_worker", True),
        (None, True),
    ],
)
def test_only_the_start_and_success_lines_are_left_out(action, kept, caplog):
    joblogs.quiet_job_logs("w")
    extra = {} if action is None else {"action": action}
    with caplog.at_level(logging.INFO):
        logging.getLogger("procrastinate.worker.w").info("a line", extra=extra)
        logging.getLogger("procrastinate.worker").info("another", extra=extra)
    assert len(caplog.records) == (2 if kept else 0)
