"""The executor: performs one attempt of a run's HTTP request and records what happened.

The one place where scheduled requests leave the kiosk, so its rules are stated here:

- The SSRF guard runs on every attempt and every redirect hop, not only when the schedule was
  stored: DNS and `KIOSK_OUTBOUND_ALLOW_HOSTS` may have changed. The client's transport
  (`kiosk.netguard.PinnedTransport`) resolves each hop's host once, checks the addresses and
  connects to a checked one, so a name that answers differently the second time (DNS rebinding)
  gains nothing. A refused target ends the run as `refused`, without retry.
- Timeout: the schedule's `timeout_seconds` bounds the whole attempt (connect, send, the
  response), not each step.
- At most `KIOSK_SCHEDULES_RESPONSE_MAX_BYTES` of the response are read; an excerpt is stored.
- Redirects: up to MAX_REDIRECTS to the same origin (scheme, host and port) are followed; a
  redirect elsewhere is not followed and ends the run as `failed`.
- Retries: a network error, a timeout or a 5xx answer is retried with exponential backoff
  (`KIOSK_SCHEDULES_RETRY_BACKOFF_SECONDS`, doubled per attempt, at most MAX_BACKOFF) until the
  schedule's `max_attempts`; the job raises RetryLater and procrastinate re-runs the same job.
  Any other answer is final: 2xx is `success`, the rest `failed`.
- Secrets (secret header values, the body, the query string) are decrypted here, for the
  request only. They are never logged, the URL is logged without its query string (httpx's own
  "HTTP Request" log line included: a filter on the `httpx` logger drops the query), and any of
  them found in the error or in the answer's excerpt (a target that echoes its request) is masked
  before the attempt is stored.
- Idempotent: a run that already ended is not requested again (a replayed job is a no-op). Every
  request carries `X-Kiosk-Run: <run id>`, the same on every attempt, so the target can
  de-duplicate retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload
from urllib.parse import parse_qsl, urlsplit

import httpx

from kiosk import db, logs, netguard, secretbox, tls
from kiosk.schedules import store
from kiosk.schedules.spec import MASK
from kiosk.settings import get_settings

logger = logging.getLogger("kiosk.schedules")

MAX_REDIRECTS = 3
MAX_BACKOFF = 600.0
EXCERPT_CHARS = 1000
MIN_SCRUBBED = 4  # shorter secret values are not searched for in stored text: they would mask noise
USER_AGENT = "kiosk-schedules/0.1"
RETRYABLE = frozenset({"error", "timeout", "server_error"})


class RetryLater(Exception):
    """The attempt failed in a way worth retrying; the job is re-run after `delay` seconds."""

    def __init__(self, run_id: int, attempt: int, delay: float):
        super().__init__(f"run {run_id}: attempt {attempt} failed, retrying in {delay:g}s")
        self.delay = delay


class RunFailed(Exception):
    """The run ended without success; the job fails too, so job views list it."""


@dataclass(frozen=True)
class Attempt:
    """What one attempt produced. `kind` is an outcome, or `server_error` for a 5xx."""

    kind: str
    http_status: int | None = None
    duration_ms: int | None = None
    excerpt: str | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        return "failed" if self.kind == "server_error" else self.kind


def loggable_url(url: str) -> str:
    """The URL without query string or fragment: those may carry secrets."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _DropQuery(logging.Filter):
    """httpx logs every request's full URL at INFO; keep the query string (maybe a secret) out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            isinstance(record.args, tuple)
            and len(record.args) > 1
            and isinstance(record.args[1], httpx.URL)
        ):
            record.args = (record.args[0], loggable_url(str(record.args[1])), *record.args[2:])
        return True


logging.getLogger("httpx").addFilter(_DropQuery())


def backoff(attempt: int, base: float) -> float:
    """Delay before the attempt after `attempt` (1-based): base, 2*base, 4*base, ..."""
    return min(base * 2.0 ** (attempt - 1), MAX_BACKOFF)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data.extend(chunk)
        if len(data) > cap:
            return bytes(data[:cap]), True
    return bytes(data), False


@overload
def scrub(text: str, secrets: list[str]) -> str: ...
@overload
def scrub(text: None, secrets: list[str]) -> None: ...
def scrub(text: str | None, secrets: list[str]) -> str | None:
    """The text with every secret value replaced by the mask."""
    if text is None:
        return None
    for value in secrets:
        text = text.replace(value, MASK)
    return text


def _excerpt(data: bytes, truncated: bool, cap: int, secrets: list[str]) -> str:
    # Masked before the cut, so no secret is left half-visible at the end.
    text = scrub(data.decode("utf-8", errors="replace"), secrets)
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "…"
    elif truncated:
        text += "…"
    if truncated:
        text += f" [response larger than {cap} bytes; not read further]"
    return text


@dataclass(frozen=True)
class Outgoing:
    """The real request of an attempt, secrets decrypted: never logged, never stored."""

    method: str
    url: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    body: str | None = field(repr=False)

    def secret_values(self, secret_headers: set[str]) -> list[str]:
        """What must not reach a stored error or excerpt, longest first."""
        values = [v for n, v in self.headers.items() if n.lower() in secret_headers]
        values += [v for _, v in parse_qsl(urlsplit(self.url).query, keep_blank_values=True)]
        if self.body is not None:
            values.append(self.body)
        return sorted({v for v in values if len(v) >= MIN_SCRUBBED}, key=len, reverse=True)


async def _send(
    run: store.ClaimedRun,
    outgoing: Outgoing,
    secrets: list[str],
    cap: int,
    allowed: frozenset[str],
    resolver: netguard.Resolver | None,
) -> Attempt:
    headers = httpx.Headers(outgoing.headers)
    headers.setdefault("User-Agent", USER_AGENT)
    headers["X-Kiosk-Run"] = str(run.run_id)
    timeout = httpx.Timeout(run.timeout_seconds)
    async with netguard.pinned_client(
        allowed, timeout=timeout, verify=tls.http(trust_env=False), resolver=resolver
    ) as client:
        request = client.build_request(
            outgoing.method,
            outgoing.url,
            headers=headers,
            content=outgoing.body.encode() if outgoing.body is not None else None,
        )
        origin = _origin(request.url)
        for _ in range(MAX_REDIRECTS + 1):
            response = await client.send(request, stream=True)
            try:
                if not (response.is_redirect and response.next_request is not None):
                    data, truncated = await _read_capped(response, cap)
                    kind = (
                        "success"
                        if response.is_success
                        else "server_error"
                        if response.status_code >= 500
                        else "failed"
                    )
                    return Attempt(
                        kind, response.status_code, excerpt=_excerpt(data, truncated, cap, secrets)
                    )
                next_request = response.next_request
            finally:
                await response.aclose()
            if _origin(next_request.url) != origin:
                return Attempt(
                    "failed",
                    response.status_code,
                    error=f"redirect to another origin not followed: {next_request.url.host}",
                )
            request = next_request
        return Attempt("failed", response.status_code, error=f"more than {MAX_REDIRECTS} redirects")


async def perform(
    run: store.ClaimedRun,
    *,
    allowed: frozenset[str],
    cap: int,
    keys: secretbox.Keyring,
    resolver: netguard.Resolver | None = None,
) -> Attempt:
    """One attempt: decrypt, then the guarded and pinned request, within the schedule's timeout.

    `resolver` replaces the system's DNS (tests); whatever it answers is what gets checked and
    connected to.
    """
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        url, headers, body = run.request(keys)
    except (secretbox.SecretKeyMissing, secretbox.SecretUnreadable) as exc:
        return Attempt("failed", duration_ms=elapsed(), error=exc.detail)
    outgoing = Outgoing(run.method, url, headers, body)
    secrets = outgoing.secret_values(
        {name.lower() for name in headers} - {name.lower() for name in run.headers}
    )
    attempt = await _attempt(run, outgoing, secrets, allowed, cap, resolver, elapsed)
    return Attempt(
        attempt.kind,
        attempt.http_status,
        attempt.duration_ms,
        attempt.excerpt,
        scrub(attempt.error, secrets),
    )


async def _attempt(
    run: store.ClaimedRun,
    outgoing: Outgoing,
    secrets: list[str],
    allowed: frozenset[str],
    cap: int,
    resolver: netguard.Resolver | None,
    elapsed: Callable[[], int],
) -> Attempt:
    try:
        async with asyncio.timeout(run.timeout_seconds):
            attempt = await _send(run, outgoing, secrets, cap, allowed, resolver)
    except netguard.Unresolvable as exc:  # DNS trouble is a network error: retry
        return Attempt("error", duration_ms=elapsed(), error=str(exc))
    except netguard.UnsafeURL as exc:
        return Attempt("refused", duration_ms=elapsed(), error=f"target refused: {exc}")
    except TimeoutError:
        error = f"no complete answer within {run.timeout_seconds:g}s"
        return Attempt("timeout", duration_ms=elapsed(), error=error)
    except httpx.TimeoutException as exc:
        return Attempt("timeout", duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}")
    except httpx.InvalidURL as exc:  # retrying cannot help
        return Attempt("failed", duration_ms=elapsed(), error=f"InvalidURL: {exc}")
    except (
        httpx.HTTPError,
        OSError,
        ValueError,
    ) as exc:  # ValueError: e.g. a bad redirect Location
        return Attempt("error", duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}")
    return Attempt(attempt.kind, attempt.http_status, elapsed(), attempt.excerpt, attempt.error)


async def execute(run_id: int) -> str | None:
    """Run one attempt of a run and record it; the run's final outcome, or None when not run.

    Raises RetryLater when another attempt is due, RunFailed when the run ended without success.
    """
    settings = get_settings()
    async with db.transaction() as conn:
        run = await store.claim_run(conn, run_id)
    if run is None:
        logger.info(
            "run %s: nothing to do (finished, deleted, or its schedule is inactive)", run_id
        )
        return None
    logs.bind(schedule_id=run.schedule_id)  # the rest of this job's lines name the schedule

    attempt = await perform(
        run,
        allowed=settings.outbound_allowed,
        cap=settings.schedules_response_max_bytes,
        keys=secretbox.keyring(),
    )
    retry = attempt.kind in RETRYABLE and run.attempts < run.max_attempts
    outcome = "retrying" if retry else attempt.outcome
    async with db.transaction() as conn:
        recorded = await store.record_attempt(
            conn,
            run.run_id,
            outcome=outcome,
            final=not retry,
            http_status=attempt.http_status,
            duration_ms=attempt.duration_ms,
            response_excerpt=attempt.excerpt,
            error=attempt.error,
        )
    logger.info(
        "schedule %s run %s attempt %d/%d: %s %s -> %s (%s ms)",
        run.schedule_id,
        run.run_id,
        run.attempts,
        run.max_attempts,
        run.method,
        loggable_url(run.url),
        attempt.http_status or attempt.kind,
        attempt.duration_ms,
    )
    if not recorded:
        logger.info("run %s: deleted while running (its schedule was deleted)", run_id)
        return None
    if retry:
        raise RetryLater(
            run.run_id,
            run.attempts,
            backoff(run.attempts, settings.schedules_retry_backoff_seconds),
        )
    if outcome != "success":
        raise RunFailed(
            f"run {run.run_id} of schedule {run.schedule_id}: {outcome} "
            f"({attempt.http_status or attempt.error})"
        )
    return outcome


def retry_at(exception: BaseException) -> dt.datetime | None:
    """When procrastinate should re-run the job: only for RetryLater."""
    if isinstance(exception, RetryLater):
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=exception.delay)
    return None
