"""A missing or invalid setting stops start-up with one clear line naming the variable."""

import pytest

from tests.support.startup import VALID, start_api


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"KIOSK_ADMIN_TOKEN": None}, "KIOSK_ADMIN_TOKEN is not set"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must be a postgresql:// URL"),
        ({"KIOSK_ADMIN_TOKEN": "short"}, "KIOSK_ADMIN_TOKEN must be at least 16 characters"),
        ({"MP_API_BASE_URL": "ftp://x"}, "MP_API_BASE_URL must be an http"),
        ({"KIOSK_DB_POOL_MAX_SIZE": "0"}, "KIOSK_DB_POOL_MAX_SIZE Input should be greater"),
        ({"KIOSK_SECRET_KEY": "not-a-fernet-key"}, "KIOSK_SECRET_KEY key 1 is not a Fernet key"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(change, expected):
    env = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    result = start_api(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
