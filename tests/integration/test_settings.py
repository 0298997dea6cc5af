"""A missing or invalid setting stops start-up with one clear line naming the variable."""

import subprocess
import sys

import pytest

from tests.support import PROJECT_DIR

VALID = {
    "DATABASE_URL": "postgresql://127.0.0.1:1/none",
    "KIOSK_ADMIN_TOKEN": "x" * 20,
    "MP_ACCESS_TOKEN": "token",
    "MP_WEBHOOK_SECRET": "secret",
    "PATH": "/usr/bin:/bin",
}


def start_api(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import kiosk.app"],
        env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
    )


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


def test_secrets_do_not_appear_in_repr():
    from kiosk.settings import Settings

    settings = Settings(**{  # type: ignore[arg-type]
        "DATABASE_URL": "postgresql://h/d", "admin_token": "a" * 20,
        "MP_ACCESS_TOKEN": "APP_USR-very-secret", "MP_WEBHOOK_SECRET": "hook-secret",
    })
    text = repr(settings) + str(settings.model_dump())
    assert "APP_USR-very-secret" not in text and "hook-secret" not in text and "a" * 20 not in text
