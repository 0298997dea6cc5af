"""Payment, webhook and notification settings are checked at start-up, naming the variable."""

import pytest

from tests.support.startup import VALID, start_api


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"KIOSK_PAYMENT_EXPIRATION": "PT10S"},
            "KIOSK_PAYMENT_EXPIRATION must be between PT30S and PT3H",
        ),
        (
            {"KIOSK_PAYMENT_EXPIRATION": "PT4H"},
            "KIOSK_PAYMENT_EXPIRATION must be between PT30S and PT3H",
        ),
        (
            {"KIOSK_PAYMENT_EXPIRATION": "5 minutes"},
            "KIOSK_PAYMENT_EXPIRATION '5 minutes' is not an ISO-8601",
        ),
        (
            {"KIOSK_NOTIFY_URL": "http://hooks.example.com/x"},
            "KIOSK_NOTIFY_SECRET must be at least 16",
        ),
        (
            {"KIOSK_NOTIFY_URL": "ftp://hooks.example.com/x", "KIOSK_NOTIFY_SECRET": "s" * 16},
            "KIOSK_NOTIFY_URL only http",
        ),
        (
            {"KIOSK_SMTP_HOST": "smtp.example.com"},
            "KIOSK_SMTP_FROM must be set when KIOSK_SMTP_HOST",
        ),
        ({"KIOSK_SMTP_FROM": "kiosk"}, "KIOSK_SMTP_FROM must be an email address"),
        ({"KIOSK_ORDER_TTL": "0"}, "KIOSK_ORDER_TTL Input should be greater"),
        ({"KIOSK_PAYMENT_MAX_ATTEMPTS": "0"}, "KIOSK_PAYMENT_MAX_ATTEMPTS Input should be greater"),
        ({"KIOSK_WEBHOOK_MAX_BYTES": "10"}, "KIOSK_WEBHOOK_MAX_BYTES Input should be greater"),
        ({"KIOSK_MP_TIMEOUT_SECONDS": "0"}, "KIOSK_MP_TIMEOUT_SECONDS Input should be greater"),
    ],
)
def test_bad_payment_setting_is_one_line_naming_the_variable(change, expected):
    result = start_api({**VALID, **change})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
