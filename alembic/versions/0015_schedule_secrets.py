"""schedules: secrets at rest. Header values, bodies and query strings are encrypted.

A row keeps in clear only what may be shown: its plain headers (`headers`), the names of its
secret headers (`secret_headers`), its URL with the query values masked (`url`) and the size of
its body (`body_bytes`). Secret header values, the body and the real URL are sealed in `secrets`
with KIOSK_SECRET_KEY (Fernet, kiosk/secretbox.py); the `body` column goes.

The rows that exist are encrypted here, so this migration needs the key when some row holds a
secret: without KIOSK_SECRET_KEY it stops, changing nothing, and says so (set the key and run
`kiosk migrate` again). A database without such rows migrates without a key. The rules below are
frozen copies of kiosk/schedules/spec.py's at the time of writing: a migration must not change
meaning when the code does.

Downgrade decrypts back into clear columns, so it needs the key too when rows hold secrets.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import json
import os
from urllib.parse import urlsplit, urlunsplit

from kiosk.migrations import run_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MASK = "********"
PLAIN_HEADERS = {
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-type",
    "user-agent",
}


def _secret_header(name: str) -> bool:
    return name.lower() not in PLAIN_HEADERS


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if parts.query:
        pairs = []
        for pair in parts.query.split("&"):
            name, sep, value = pair.partition("=")
            pairs.append(f"{name}={MASK}" if sep and value else pair)
        shown += "?" + "&".join(pairs)
    return shown


def _keyring():
    from kiosk.secretbox import Keyring, parse_keys
    from kiosk.settings import SettingsError, get_settings

    try:
        value = get_settings().secret_key.get_secret_value()
    except SettingsError:  # alembic run by hand with only DATABASE_URL: the environment then
        value = os.environ.get("KIOSK_SECRET_KEY", "")
    return Keyring(parse_keys(value))


def _conn():
    from alembic import op

    return op.get_bind().connection.dbapi_connection


def upgrade() -> None:
    run_sql(
        """
        ALTER TABLE schedules
            ADD COLUMN secret_headers text[] NOT NULL DEFAULT '{}',
            ADD COLUMN body_bytes integer CHECK (body_bytes >= 0),
            -- Fernet token of {"headers": {...}, "body": ..., "url": ...}; NULL: nothing secret.
            ADD COLUMN secrets text;
        """
    )
    conn = _conn()
    rows = conn.execute(
        "SELECT id, url, headers, body FROM schedules ORDER BY id FOR UPDATE"
    ).fetchall()
    keys = None
    for schedule_id, url, headers, body in rows:
        plain = {n: v for n, v in headers.items() if not _secret_header(n)}
        secret = {n: v for n, v in headers.items() if _secret_header(n)}
        shown = _mask_url(url)
        sealed = None
        if secret or body is not None or shown != url:
            keys = keys or _keyring()
            if not keys.available:
                raise RuntimeError(
                    "KIOSK_SECRET_KEY is not set, and schedules hold header values, bodies or "
                    "query strings to encrypt: set it (`kiosk secret-key` makes one) and run "
                    "`kiosk migrate` again; nothing was changed"
                )
            sealed = keys.seal(
                {"headers": secret, "body": body, "url": url if shown != url else None}
            )
        conn.execute(
            "UPDATE schedules SET url = %s, headers = %s::jsonb, secret_headers = %s, "
            "body_bytes = %s, secrets = %s WHERE id = %s",
            (
                shown,
                json.dumps(plain),
                list(secret),
                len(body.encode()) if body is not None else None,
                sealed,
                schedule_id,
            ),
        )
    run_sql("ALTER TABLE schedules DROP COLUMN body;")


def downgrade() -> None:
    run_sql("ALTER TABLE schedules ADD COLUMN body text;")
    conn = _conn()
    rows = conn.execute(
        "SELECT id, url, headers, secrets FROM schedules WHERE secrets IS NOT NULL "
        "ORDER BY id FOR UPDATE"
    ).fetchall()
    keys = _keyring() if rows else None
    for schedule_id, url, headers, sealed in rows:
        if not keys.available:
            raise RuntimeError(
                "KIOSK_SECRET_KEY is not set: cannot decrypt the schedules' secrets to downgrade"
            )
        opened = keys.open(sealed)
        conn.execute(
            "UPDATE schedules SET url = %s, headers = %s::jsonb, body = %s WHERE id = %s",
            (
                opened.get("url") or url,
                json.dumps(headers | opened["headers"]),
                opened.get("body"),
                schedule_id,
            ),
        )
    run_sql(
        "ALTER TABLE schedules "
        "DROP COLUMN secrets, DROP COLUMN body_bytes, DROP COLUMN secret_headers;"
    )
