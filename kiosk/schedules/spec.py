"""What an operator may schedule: the request, its cron and its limits, validated before storing.

Every rule lives here so the API refuses a bad schedule with one readable reason (422) and nothing
is stored, and the executor can trust what it reads back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kiosk import cron as cron_module
from kiosk import netguard
from kiosk.errors import Invalid

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_NAME = 200
MAX_URL = 2048
MAX_BODY_BYTES = 64 * 1024
MAX_HEADERS = 50
MAX_HEADER_VALUE = 8 * 1024
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 120.0
MAX_ATTEMPTS = 10

# Connection-level headers belong to each hop, not to a stored request; Host and Content-Length
# are computed by the client from the URL and the body.
FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Header values are secrets (encrypted at rest, masked in every answer) unless the header is on
# this short list of harmless ones, or the operator marked it plain when sending its value.
PLAIN_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-type",
        "user-agent",
    }
)
# Never plain, whatever the operator marks: their names say they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})
SECRET_PATTERN = re.compile(
    r"token|secret|key|passw|auth|credential|session|signature|bearer", re.IGNORECASE
)
MASK = "********"

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
_VALUE = re.compile(r"^[\x20-\x7e\t]*$")  # visible ASCII, space and tab: no CR, LF or NUL


class InvalidSchedule(Invalid):
    """A schedule the kiosk refuses to store (422); the detail is the reason the operator sees."""


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str
    url: str
    timezone: str = "UTC"
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 3
    active: bool = True
    # Names of headers (lower-case) whose values are not secret although not in PLAIN_HEADERS.
    plain_headers: tuple[str, ...] = ()

    def evolve(self, **changes: Any) -> ScheduleSpec:
        return replace(self, **changes)


def always_secret(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or bool(SECRET_PATTERN.search(name))


def is_secret_header(name: str, plain: tuple[str, ...] | frozenset[str] = ()) -> bool:
    lower = name.lower()
    return always_secret(name) or (lower not in PLAIN_HEADERS and lower not in plain)


def split_headers(spec: ScheduleSpec) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) headers of a spec."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in spec.headers.items():
        (secret if is_secret_header(name, spec.plain_headers) else plain)[name] = value
    return plain, secret


def mask_headers(
    headers: dict[str, str], plain: tuple[str, ...] | frozenset[str] = ()
) -> dict[str, str]:
    """Headers as shown to operators: secret values replaced by the mask."""
    return {
        name: MASK if is_secret_header(name, plain) else value for name, value in headers.items()
    }


def unmask_headers(new: dict[str, str], stored: dict[str, str]) -> dict[str, str]:
    """Let an operator send back the masked value to keep a stored secret unchanged.

    A read-modify-write of a schedule (GET, edit, PATCH) must not replace a secret by its mask.
    """
    stored_by_name = {name.lower(): value for name, value in stored.items()}
    kept = {}
    for name, value in new.items():
        if value == MASK and name.lower() in stored_by_name:
            value = stored_by_name[name.lower()]
        kept[name] = value
    return kept


def mask_url(url: str) -> str:
    """The URL as shown anywhere: every query value masked (names kept), no fragment.

    Query strings carry API keys (`?api_key=...`) as often as headers do.
    """
    parts = urlsplit(url)
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if parts.query:
        pairs = []
        for pair in parts.query.split("&"):
            name, sep, value = pair.partition("=")
            pairs.append(f"{name}={MASK}" if sep and value else pair)
        shown += "?" + "&".join(pairs)
    return shown


def origin(url: str) -> tuple[str, str, int]:
    """Scheme, host and port: where a request (and its secrets) goes."""
    return netguard.split_url(url)


def has_secrets(spec: ScheduleSpec) -> bool:
    """Whether storing the spec needs KIOSK_SECRET_KEY."""
    return bool(split_headers(spec)[1]) or spec.body is not None or mask_url(spec.url) != spec.url


def check_headers(headers: dict[str, str]) -> None:
    if len(headers) > MAX_HEADERS:
        raise InvalidSchedule(f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise InvalidSchedule(f"header name {name!r} is not a valid HTTP field name")
        lower = name.lower()
        if lower in seen:
            raise InvalidSchedule(f"header {name!r} is given twice")
        seen.add(lower)
        if lower in FORBIDDEN_HEADERS:
            raise InvalidSchedule(f"header {name!r} is set per connection and cannot be scheduled")
        if not isinstance(value, str) or not _VALUE.match(value):
            # Never echo the value: it may be a secret.
            raise InvalidSchedule(
                f"header {name!r} has an invalid value: printable ASCII only, no line breaks"
            )
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidSchedule(f"header {name!r} is longer than {MAX_HEADER_VALUE} characters")
        if value == MASK:
            raise InvalidSchedule(
                f"header {name!r} is the mask of a stored secret; send the real value"
            )


def check_static(spec: ScheduleSpec) -> ScheduleSpec:
    """Every rule that needs no network; returns it normalised (trimmed name, upper method)."""
    name = spec.name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidSchedule(f"name must be 1 to {MAX_NAME} characters")
    try:
        parsed = cron_module.parse(spec.cron, spec.timezone)
    except cron_module.InvalidCron as exc:
        raise InvalidSchedule(str(exc)) from None
    method = spec.method.upper()
    if method not in METHODS:
        raise InvalidSchedule(f"method {spec.method!r} is not one of {', '.join(METHODS)}")
    if len(spec.url) > MAX_URL:
        raise InvalidSchedule(f"url is longer than {MAX_URL} characters")
    try:
        netguard.split_url(spec.url)
    except netguard.UnsafeURL as exc:
        raise InvalidSchedule(f"url refused: {exc}") from None
    if MASK in spec.url:
        raise InvalidSchedule(
            "url holds a masked query value; send the whole URL with its real values"
        )
    check_headers(spec.headers)
    sent = {header.lower() for header in spec.headers}
    plain = tuple(sorted({header.lower() for header in spec.plain_headers}))
    for header in plain:
        if header not in sent:
            raise InvalidSchedule(f"plain_headers names {header!r}, which is not among the headers")
        if always_secret(header):
            raise InvalidSchedule(
                f"header {header!r} always holds a secret and cannot be marked plain"
            )
    if spec.body is not None and len(spec.body.encode()) > MAX_BODY_BYTES:
        raise InvalidSchedule(f"body is larger than {MAX_BODY_BYTES} bytes")
    if spec.body == MASK:
        raise InvalidSchedule("body is the mask of a stored body; send the real body")
    if not MIN_TIMEOUT <= spec.timeout_seconds <= MAX_TIMEOUT:
        raise InvalidSchedule(f"timeout_seconds must be between {MIN_TIMEOUT} and {MAX_TIMEOUT:g}")
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS:
        raise InvalidSchedule(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
    return spec.evolve(name=name, cron=parsed.expression, method=method, plain_headers=plain)


async def validate(spec: ScheduleSpec, allowed: frozenset[str]) -> ScheduleSpec:
    """All the rules, SSRF guard included (it resolves the host): the spec, or InvalidSchedule."""
    spec = check_static(spec)
    try:
        await netguard.check_url(spec.url, allowed)
    except netguard.UnsafeURL as exc:
        raise InvalidSchedule(f"url refused: {exc}") from None
    return spec
