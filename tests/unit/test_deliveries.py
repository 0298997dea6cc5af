"""The delivery ledger's backoff (receipts and hooks end to end: integration/test_deliveries.py)."""

import datetime

from kiosk.notifications import deliveries


def test_the_backoff_doubles_up_to_its_cap_and_the_ledger_sets_the_job_retry():
    from procrastinate.jobs import Job

    from kiosk.settings import Settings
    from tasks.retry import LedgerBackoff

    settings = Settings(
        database_url="postgresql://x",
        admin_token="a" * 16,
        mp_access_token="t",
        mp_webhook_secret="s",
        delivery_retry_backoff_seconds=2,
        delivery_retry_max_delay_seconds=60,
    )
    assert [deliveries.backoff(n, settings) for n in (1, 2, 3, 5, 6, 7, 500)] == [
        2,
        4,
        8,
        32,
        60,
        60,
        60,
    ]
    job = Job(
        id=1,
        queue="default",
        lock=None,
        queueing_lock=None,
        task_name="orders.notify_paid",
        attempts=40,
        task_kwargs={},
    )
    strategy = LedgerBackoff(deliveries.DeliveryRetry)
    before = datetime.datetime.now(datetime.UTC)
    decision = strategy.get_retry_decision(
        exception=deliveries.DeliveryUncertain("x", retry_in=12.2), job=job
    )
    # however many runs the job took so far
    assert 13 <= (decision.retry_at - before).total_seconds() < 14
    assert strategy.get_retry_decision(exception=deliveries.DeliveryFailed("x"), job=job) is None
    assert strategy.get_retry_decision(exception=ValueError("a bug"), job=job) is None
