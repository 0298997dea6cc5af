"""Task names: one constant per task, owned by its domain module, used by the decorator and every
defer; deferring any name no task has fails loudly instead of queueing a job no worker runs."""

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
    "name",
    [
        "payments.proces_notification",
        "orders.send_reciept",
        "exports.orders",
        # Outside the kiosk's namespaces too: no name is exempt.
        "tests.probes",
        "demo.unregistered",
        "no_namespace",
    ],
)
def test_an_unregistered_name_is_refused(name: str) -> None:
    with pytest.raises(queue.UnknownTask, match=name.replace(".", r"\.")):
        queue.check_task_name(name)


async def test_defer_refuses_a_misspelt_task_before_touching_the_database() -> None:
    # No connection is needed to be refused: the name is checked first.
    with pytest.raises(queue.UnknownTask, match=r"payments\.resolve_intents"):
        await queue.defer(None, "payments.resolve_intents", intent_id="x")  # type: ignore[arg-type]
    with pytest.raises(queue.UnknownTask, match=r"orders\.expired"):
        queue.job_fields("orders.expired")  # what SQL that inserts jobs itself takes


def test_registered_tasks_pass_the_probe_tasks_included() -> None:
    from tests.support import probe_tasks  # imports tasks/: inside the test, as the registry does

    queue.check_task_name(inbox.PROCESS_TASK)
    # The tests' probe and worker tasks are registered in this process (tests/support/registry.py).
    for name in [*probe_tasks.PROBES, "tests.effect", "dashboard_test.flaky"]:
        queue.check_task_name(name)
