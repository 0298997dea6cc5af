"""Task names: one constant per task, owned by its domain module, used by the decorator and every
defer; deferring a misspelt kiosk task fails loudly instead of queueing a job no worker runs."""

from __future__ import annotations

import pytest

from kiosk import exports, queue
from kiosk.notifications import deliveries
from kiosk.orders import cleanup, expiry
from kiosk.payments import intents, refunds
from kiosk.schedules import dispatcher
from kiosk.webhooks import inbox

CONSTANTS = [
    inbox.PROCESS_TASK,
    intents.RESOLVE_TASK,
    refunds.REFUND_TASK,
    cleanup.CHECK_TASK,
    expiry.EXPIRE_TASK,
    deliveries.RECEIPT_TASK,
    deliveries.NOTIFY_PAID_TASK,
    dispatcher.EXECUTE_TASK,
    exports.TASK,
]


def test_every_task_constant_names_a_registered_task() -> None:
    queue.app.perform_import_paths()
    assert [name for name in CONSTANTS if name not in queue.app.tasks] == []


@pytest.mark.parametrize(
    "name", ["payments.proces_notification", "orders.send_reciept", "exports.orders"]
)
def test_a_misspelt_kiosk_task_is_refused_by_name(name: str) -> None:
    with pytest.raises(queue.UnknownTask, match=name.replace(".", r"\.")):
        queue.check_task_name(name)


async def test_defer_refuses_a_misspelt_task_before_touching_the_database() -> None:
    # No connection is needed to be refused: the name is checked first.
    with pytest.raises(queue.UnknownTask, match=r"payments\.resolve_intents"):
        await queue.defer(None, "payments.resolve_intents", intent_id="x")  # type: ignore[arg-type]
    with pytest.raises(queue.UnknownTask, match=r"orders\.expired"):
        queue.job_fields("orders.expired")  # what SQL that inserts jobs itself takes


def test_a_registered_task_and_a_name_outside_the_kiosk_namespaces_pass() -> None:
    queue.check_task_name(inbox.PROCESS_TASK)
    # Namespaces no kiosk task uses (the tests' and benchmarks' probe jobs) are not the kiosk's
    # to police: their jobs are run by the probe workers that register them.
    queue.check_task_name("tests.probe")
