"""The one settings object.

Every setting comes from the environment (or a `.env` file in the working directory). Names fixed by
the product keep their names (`DATABASE_URL`, `MP_*`); everything else carries the `KIOSK_` prefix.
Secrets are `SecretStr` so that they never reach a log or a repr by accident.
"""

from __future__ import annotations

import functools
import sys

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """Raised with one readable line per invalid or missing variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KIOSK_", env_file=".env", extra="ignore", case_sensitive=False
    )

    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL"))
    admin_token: SecretStr
    mp_access_token: SecretStr = Field(
        validation_alias=AliasChoices("MP_ACCESS_TOKEN"), min_length=1
    )
    mp_webhook_secret: SecretStr = Field(
        validation_alias=AliasChoices("MP_WEBHOOK_SECRET"), min_length=1
    )
    mp_api_base_url: str = Field(
        default="https://api.mercadopago.com",
        validation_alias=AliasChoices("MP_API_BASE_URL"),
    )

    # Connection pool of one API process (each worker has its own, see docs/deploy.md).
    db_pool_min_size: int = Field(default=2, ge=1, le=100)
    db_pool_max_size: int = Field(default=10, ge=1, le=200)
    log_level: str = "INFO"
    # A worker whose heartbeat is older than this is reported stalled.
    worker_stale_seconds: float = Field(default=60, ge=5, le=3600)
    # Hosts, IPs or CIDRs that outbound requests may reach although internal (kiosk/netguard.py).
    outbound_allow_hosts: str = ""

    # dashboard (kiosk/dashboard, docs/dashboard.md): the admin pages' browser session.
    # Hours a dashboard sign-in lasts; rotating KIOSK_ADMIN_TOKEN ends every session at once.
    dashboard_session_hours: float = Field(default=12, gt=0, le=168)
    # Mark the session cookie Secure even on plain http to loopback (it always is elsewhere).
    dashboard_secure_cookie: bool = False

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("admin_token")
    @classmethod
    def _long_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("mp_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("outbound_allow_hosts")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        from kiosk.netguard import parse_allow_list

        parse_allow_list(value)
        return value

    @property
    def outbound_allowed(self) -> frozenset[str]:
        from kiosk.netguard import parse_allow_list

        return parse_allow_list(self.outbound_allow_hosts)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value


def _env_name(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"KIOSK_{field_name.upper()}"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        env = name if name.isupper() else _env_name(name)
        message = "is not set" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
        parts.append(f"{env} {message}")
    return "; ".join(parts)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load and validate the settings once per process."""
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {_describe(exc)}") from None


def load_or_exit() -> Settings:
    """For process entry points: one clear line on stderr and exit code 2, no traceback."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
