"""The one settings object.

Every setting comes from the environment (or a `.env` file in the working directory). Names fixed by
the product keep their names (`DATABASE_URL`, `MP_*`); everything else carries the `KIOSK_` prefix.
Secrets are `SecretStr` so that they never reach a log or a repr by accident.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from kiosk.cron import DIALECT, InvalidCron, check_expression
from kiosk.validators import (
    MAX_EXPIRATION,
    MIN_EXPIRATION,
    is_email,
    parse_duration,
    parse_keys,
    parse_queue_limits,
)


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
    # text: "LEVEL logger: message" lines (kiosk dev); json: one JSON object per line with the
    # request's or job's context (the container image; kiosk/logs.py, docs/observability.md).
    log_format: Literal["json", "text"] = "text"

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    # Largest request body any route reads (413 above); the webhook and the dashboard's forms
    # have smaller limits of their own.
    max_body_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024)
    # Hosts, IPs or CIDRs that outbound requests may reach although internal (kiosk/netguard.py).
    outbound_allow_hosts: str = ""

    # Deploy: a worker counts as alive while its heartbeat is younger than this (procrastinate
    # beats every 10 s); used by GET /health/workers and `kiosk worker-health`.
    worker_stale_seconds: int = Field(default=30, ge=15, le=3600)

    # Schedules: operator-defined scheduled HTTP requests (kiosk/schedules, docs/schedules.md).
    # Seconds between dispatcher runs; it creates runs this far ahead plus a margin (1-60, divides
    # 60).
    schedules_dispatch_every: int = Field(default=60, ge=1, le=60)
    # Ticks missed while no dispatcher ran (an outage) that still run, newest first; older: skipped.
    schedules_catch_up_limit: int = Field(default=1, ge=0, le=1000)
    # Delay before the first retry of a failed request, doubled per attempt (capped at 10 minutes).
    schedules_retry_backoff_seconds: float = Field(default=5.0, gt=0, le=600)
    # Response bytes read per request; the rest is not downloaded (an excerpt is stored).
    schedules_response_max_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)

    @field_validator("schedules_dispatch_every")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    # secrets at rest (kiosk/secretbox.py, docs/deploy.md#secret-key): Fernet keys, comma-separated;
    # the first encrypts stored secrets (schedule header values, bodies, query strings); all
    # decrypt.
    secret_key: SecretStr = SecretStr("")

    @field_validator("secret_key")
    @classmethod
    def _secret_keys(cls, value: SecretStr) -> SecretStr:
        parse_keys(value.get_secret_value())
        return value

    @property
    def secret_keys(self) -> list[str]:
        return parse_keys(self.secret_key.get_secret_value())

    # end of secrets at rest

    # payments, webhooks and notifications (docs/payments.md)
    # Seconds an order keeps its stock reserved while it waits for payment (default 30 minutes).
    order_ttl: int = Field(default=1800, ge=10, le=7 * 24 * 3600)
    # How long Mercado Pago keeps a charge open on the terminal (ISO-8601, PT30S..PT3H).
    payment_expiration: str = "PT5M"
    mp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Runs of a payment-side job (first run included) before it is left failed.
    payment_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    webhook_max_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = Field(default="", validate_default=True)
    smtp_starttls: bool = True
    # Timeout of one receipt email or notify hook delivery.
    delivery_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_url: str = ""
    notify_secret: SecretStr = Field(default=SecretStr(""), validate_default=True)

    @field_validator("payment_expiration")
    @classmethod
    def _payment_expiration(cls, value: str) -> str:
        seconds = parse_duration(value)
        if not MIN_EXPIRATION <= seconds <= MAX_EXPIRATION:
            raise ValueError("must be between PT30S and PT3H")
        return value.upper()

    @field_validator("smtp_from")
    @classmethod
    def _smtp_from(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("smtp_host") and not value:
            raise ValueError("must be set when KIOSK_SMTP_HOST is set")
        if value and not is_email(value):
            raise ValueError("must be an email address")
        return value

    @field_validator("notify_url")
    @classmethod
    def _notify_url(cls, value: str) -> str:
        from kiosk.netguard import UnsafeURL, split_url

        if value:
            try:
                split_url(value)
            except UnsafeURL as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("notify_secret")
    @classmethod
    def _notify_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("notify_url") and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters when KIOSK_NOTIFY_URL is set")
        return value

    # end of payments, webhooks and notifications

    # deliveries (docs/payments.md, "Receipt and notify hook"): the receipt and the order-paid
    # hook are sent again until the receiver takes them, and given up (listed for an operator,
    # GET /admin/deliveries) once this many seconds have passed since the delivery was owed (or
    # manually resent), or after this many attempts, whichever comes first.
    delivery_max_age_seconds: int = Field(default=86400, ge=60, le=30 * 86400)
    delivery_max_attempts: int = Field(default=100, ge=1, le=10_000)
    # Delay before the second attempt, doubled for each further one, never above the maximum.
    delivery_retry_backoff_seconds: float = Field(default=2.0, gt=0, le=3600)
    delivery_retry_max_delay_seconds: float = Field(default=900.0, gt=0, le=86400)

    @field_validator("delivery_retry_max_delay_seconds")
    @classmethod
    def _max_delay_not_below_first(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("delivery_retry_backoff_seconds")
        if first is not None and value < first:
            raise ValueError(f"must be at least KIOSK_DELIVERY_RETRY_BACKOFF_SECONDS ({first:g})")
        return value

    # end of deliveries

    # metrics: Prometheus scrapes GET /metrics with this bearer token (the admin token when unset).
    metrics_token: SecretStr = SecretStr("")

    # drills (docs/drills.md): how the API behaves while the database is away.
    # Seconds a request or a job waits for a database connection (the database restarts, or every
    # connection is busy) before the request is answered 503 or the job fails (and is retried).
    db_pool_timeout: float = Field(default=5.0, gt=0, le=300)
    # end of drills

    # dashboard (kiosk/dashboard, docs/dashboard.md): the admin pages' browser session.
    # Hours a dashboard sign-in lasts; rotating KIOSK_ADMIN_TOKEN ends every session at once.
    dashboard_session_hours: float = Field(default=12, gt=0, le=168)
    # Mark the session cookie Secure even on plain http to loopback (it always is elsewhere).
    dashboard_secure_cookie: bool = False

    # Request heads (kiosk/http_limits.py): header names and values together past this many bytes
    # are answered 431, a request target (path and query) past it 414, before any route runs.
    max_header_bytes: int = Field(default=16 * 1024, ge=4 * 1024, le=1024 * 1024)

    # Workers and jobs (docs/workers.md). `procrastinate worker` flags override the worker_* ones.
    worker_concurrency: int = Field(default=1, ge=1, le=100)
    worker_queues: str = ""  # comma-separated; empty = every queue
    worker_shutdown_timeout: float = Field(default=20, ge=0, le=3600)
    worker_heartbeat_interval: float = Field(default=10, ge=0.5, le=300)
    worker_stalled_after: float = Field(default=30, ge=1, le=86400)
    # Fetch several jobs per round trip (and finish them in group commits); false: one at a time.
    worker_batching: bool = True
    # Log procrastinate's "Starting job" and "ended with status: Success" lines (two per job).
    worker_job_logs: bool = False
    job_timeout: float = Field(default=300, ge=0, le=86400)  # async tasks; 0 = no limit
    prune_succeeded_days: float = Field(default=7, gt=0, le=3650)
    prune_failed_days: float = Field(default=30, gt=0, le=3650)  # also cancelled and aborted
    prune_batch_size: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("worker_concurrency")
    @classmethod
    def _concurrency_fits_pool(cls, value: int, info: ValidationInfo) -> int:
        pool_max = info.data.get("db_pool_max_size")
        if pool_max is not None and value > pool_max:
            raise ValueError(f"must not exceed KIOSK_DB_POOL_MAX_SIZE ({pool_max})")
        return value

    @field_validator("worker_queues")
    @classmethod
    def _queue_names(cls, value: str) -> str:
        for name in (part.strip() for part in value.split(",")):
            if name and not (
                len(name) <= 128 and name.isascii() and all(c.isalnum() or c in "._-" for c in name)
            ):
                raise ValueError(
                    f"{name!r} is not a queue name (letters, digits, . _ -, at most 128)"
                )
        return value

    @field_validator("worker_stalled_after")
    @classmethod
    def _stalled_after_heartbeats(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("worker_heartbeat_interval")
        if heartbeat is not None and value < 2 * heartbeat:
            raise ValueError(
                f"must be at least twice KIOSK_WORKER_HEARTBEAT_INTERVAL ({heartbeat:g}s), "
                "or live workers would look stalled"
            )
        return value

    @property
    def worker_queue_list(self) -> list[str]:
        return [name for name in (part.strip() for part in self.worker_queues.split(",")) if name]

    # Queue controls (docs/workers.md, "Queue controls"): the limits queues get when the API starts:
    # `payments:max_per_second=20,max_running=5;exports:max_running=1`. A limit an operator set at
    # run time (API, dashboard, CLI) is never overwritten; one set from here follows this value.
    queue_limits: str = ""

    @field_validator("queue_limits")
    @classmethod
    def _queue_limits(cls, value: str) -> str:
        parse_queue_limits(value)
        return value

    @property
    def queue_limit_map(self) -> dict[str, tuple[float | None, int | None]]:
        """{queue: (max_per_second, max_running)} from KIOSK_QUEUE_LIMITS."""
        return parse_queue_limits(self.queue_limits)

    # expiry: the periodic clean-up of stale payment intents and expired orders (docs/payments.md).
    # The product's one cron dialect (kiosk/cron.py, procrastinate's: 5 fields, or 6 with the
    # seconds last); the defaults are the intended cadence, tests run them every few seconds.
    cleanup_payment_intents_cron: str = "*/2 * * * *"
    expire_orders_cron: str = "*/10 * * * *"

    @field_validator("cleanup_payment_intents_cron", "expire_orders_cron")
    @classmethod
    def _periodic_cron(cls, value: str) -> str:
        try:
            return check_expression(value)
        except InvalidCron as exc:
            raise ValueError(
                f"must be a cron expression, {DIALECT} (e.g. */2 * * * *): {exc}"
            ) from None

    # end of expiry

    # webhook ingestion: group commit of concurrent notifications (kiosk/webhooks/batcher.py,
    # docs/benchmarks.md). A batch is written when this many wait, or after this many
    # milliseconds while another batch of this process is being written.
    webhook_batch_max: int = Field(default=100, ge=1, le=1000)
    webhook_batch_wait_ms: float = Field(default=1.0, ge=0, le=50)
    # Batches of one process written at once (each holds a pooled connection).
    webhook_batch_concurrency: int = Field(default=1, ge=1, le=20)
    # end of webhook ingestion

    # devices (kiosk/devices, README "Kiosk devices"): bearer tokens on the order endpoints.
    # Unpaid orders (pending_payment, not yet past expires_at) one device may hold; one more: 429.
    device_max_open_orders: int = Field(default=5, ge=1, le=1000)
    # Failed authentications on the order endpoints from one client address within the window,
    # after which that address is answered 429 until its oldest failure leaves the window.
    # Counted in each API process's memory (a sliding window), not shared between processes.
    auth_failure_limit: int = Field(default=20, ge=1, le=100_000)
    auth_failure_window_seconds: float = Field(default=60, ge=1, le=86400)
    # end of devices
    # money: ambiguous charges and refunds (docs/payments.md). An unresolved charge (or a start
    # that never recorded Mercado Pago's answer) or a pending refund older than this is listed
    # for an operator (GET /admin/payments/attention, the dashboard's Attention page).
    payment_attention_after_seconds: int = Field(default=300, ge=30, le=86400)
    # end of money
    # retention (kiosk/retention.py, docs/workers.md#retention): days each growing table keeps its
    # finished rows, 0 = forever; the periodic `retention.prune_tables` deletes the older ones in
    # batches of KIOSK_PRUNE_BATCH_SIZE. Orders and payments are money records: never pruned.
    retain_webhook_inbox_days: float = Field(default=30, ge=0, le=3650)
    retain_schedule_runs_days: float = Field(default=7, ge=0, le=3650)
    retain_exports_days: float = Field(default=7, ge=0, le=3650)
    retain_audit_days: float = Field(default=365, ge=0, le=3650)
    # Outcomes older than this go whatever their job; those of a pruned job go with it.
    retain_job_outcomes_days: float = Field(default=30, ge=0, le=3650)
    # Largest CSV an export may write (it fails, saying so, past it), and most exports kept: a
    # new one replaces the oldest finished ones beyond it, or is refused while all are running.
    export_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, le=10 * 1024**3)
    export_keep: int = Field(default=20, ge=1, le=1000)
    # Statement timeout of the admin lists that may read a whole table (GET /admin/jobs?q=, the
    # dashboard's jobs and failed pages): past it, 503 / a message instead of a held connection.
    admin_search_timeout_seconds: float = Field(default=10, ge=0.001, le=300)

    @field_validator("retain_webhook_inbox_days")
    @classmethod
    def _inbox_outlives_replays(cls, value: float) -> float:
        # The inbox row is what makes a repeated delivery a no-op; keep it well past the
        # signature tolerance (at most an hour), after which a replay is refused anyway.
        if 0 < value < 1:
            raise ValueError("must be 0 (keep forever) or at least 1 day")
        return value

    # end of retention

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
        message = (
            "is not set" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
        )
        parts.append(f"{env} {message}")
    return "; ".join(parts)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load and validate the settings once per process."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {_describe(exc)}") from None


def value_or_default(field: str) -> Any:
    """A setting, or its declared default in a process without configuration.

    For values read at import time, such as periodic crons in `periodic.py`: a tool that imports
    `tasks.app` with no environment (`procrastinate --help`) must still get a working app.
    """
    try:
        return getattr(get_settings(), field)
    except SettingsError:
        return Settings.model_fields[field].default


def load_or_exit() -> Settings:
    """For process entry points: one clear line on stderr and exit code 2, no traceback."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
