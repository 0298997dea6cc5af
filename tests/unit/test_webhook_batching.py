"""The webhook inbox's parser refuses what PostgreSQL would refuse, before the batch (group
commit against PostgreSQL: tests/integration/test_webhook_batching.py).
"""

import pytest

from kiosk.webhooks import inbox


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": 1, "type": "order", "x": "\\u0000"}',
        b'{"id": 1, "type": "order", "x": "\\ud800"}',
        b'{"id": 1, "type": "order", "\\u0000": 1}',
        '{"id": 1, "type": "order", "x": "é"}'.encode("utf-16"),
        b"[" * 100_000,
    ],
)
def test_bodies_postgresql_would_refuse_are_malformed(raw):
    with pytest.raises(inbox.Malformed):
        inbox.parse(raw, "ORD0X", "order", "r")


def test_escaped_text_postgresql_stores_is_accepted():
    parsed = inbox.parse(
        b'{"id": 1, "type": "order", "x": "\\ud83d\\ude00 \\\\u0000"}', "ORD0X", "order", "r"
    )
    assert parsed.payload["x"] == "\U0001f600 \\u0000"
