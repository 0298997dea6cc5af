"""The unit tier: no database, no server, no process, so that it runs in seconds anywhere.

Asking for the session database here is an error, not a silent start of PostgreSQL: a test that
needs it belongs in tests/integration/.
"""

from collections.abc import Iterator

import pytest

from tests.support.config import ACCESS_TOKEN, ADMIN_TOKEN, WEBHOOK_SECRET


@pytest.fixture(scope="session")
def server_url() -> None:
    pytest.fail("a unit test asked for PostgreSQL: move it to tests/integration/", pytrace=False)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Valid settings in this process, with a database URL nothing connects to, for code that reads
    `get_settings()`; the cached settings are dropped before and after."""
    from kiosk.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/none")
    monkeypatch.setenv("KIOSK_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MP_ACCESS_TOKEN", ACCESS_TOKEN)
    monkeypatch.setenv("MP_WEBHOOK_SECRET", WEBHOOK_SECRET)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
