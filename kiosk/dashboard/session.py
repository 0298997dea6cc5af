"""The dashboard's browser session: a server-side row, a signed cookie naming it, a CSRF token.

Signing in stores a row in `dashboard_sessions` and sets a cookie holding a random session id
(32 bytes) and an HMAC-SHA256 of it under a key derived from KIOSK_ADMIN_TOKEN. The table holds
only the id's SHA-256, the operator name, the expiry and a fingerprint of the admin token. A page
checks the cookie's HMAC first (no database work for a forged or stale cookie), then finds the row
by primary key. Signing out deletes the row, "sign out everywhere" deletes every row, and a new
admin token ends every session at once: the old cookies' HMAC no longer checks out, and the rows
made with the old token never match (they are deleted at the next sign-in). The CSRF token is an
HMAC of the session id under the same key: new with every sign-in, unknown without the key.

Why no itsdangerous (issue 13 weighed it): what is signed here is a random id, never data to
trust, and expiry and revocation live in the table, so its payload serialisation and timestamps
have nothing to do. What remains is the part a library would add nothing to: HMAC-SHA256 from the
standard library with a purpose label in the message (`session`, `csrf`, `flash`: one signature is
never valid for another use), a key derived for this purpose from the admin token (`signing_key`),
and `hmac.compare_digest` for every check. itsdangerous would do the same with SHA-1 by default
and its own key derivation, one more dependency for about fifteen lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

import psycopg

from kiosk import db
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.dashboard")
COOKIE = "kiosk_admin_session"
FLASH_COOKIE = "kiosk_admin_flash"
COOKIE_PATH = "/admin"
_VERSION = b"v2"  # v1 cookies (the whole session, signed) are no longer accepted


@dataclass(frozen=True)
class Session:
    id: str  # the secret in the cookie; only its hash is stored
    actor: str
    expires: int  # unix seconds


def signing_key(admin_token: str) -> bytes:
    """A key for this purpose only: the token itself never signs or leaves the server."""
    return hmac.new(
        admin_token.encode(), b"kiosk.dashboard.session." + _VERSION, hashlib.sha256
    ).digest()


def token_fingerprint(admin_token: str) -> bytes:
    """Which admin token a session was made with, stored beside it; not the token, not the key."""
    return hmac.new(
        admin_token.encode(), b"kiosk.dashboard.token-fingerprint", hashlib.sha256
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, purpose: bytes, payload: bytes) -> str:
    return _b64(hmac.new(key, purpose + b"\x00" + payload, hashlib.sha256).digest())


def _id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def new_cookie(key: bytes) -> tuple[str, str]:
    """A fresh session id and the cookie value naming it."""
    session_id = secrets.token_urlsafe(32)
    return session_id, f"{session_id}.{_sign(key, b'session', session_id.encode())}"


def cookie_id(key: bytes, cookie: str | None) -> str | None:
    """The session id in a cookie value whose HMAC checks out, else None (no database work)."""
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    session_id, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(
        signature.encode(), _sign(key, b"session", session_id.encode()).encode()
    ):
        return None
    return session_id


async def start(
    conn: psycopg.AsyncConnection,
    key: bytes,
    fingerprint: bytes,
    actor: str,
    lifetime_seconds: float,
    remote_addr: str | None,
) -> tuple[Session, str]:
    """Store a new session (and drop the expired ones and those of another token); its cookie."""
    session_id, cookie = new_cookie(key)
    session = Session(session_id, actor, int(time.time() + lifetime_seconds))
    await conn.execute(QUERIES["delete_dead_sessions"], {"fingerprint": fingerprint})
    await conn.execute(
        QUERIES["insert_session"],
        {
            "id_hash": _id_hash(session_id),
            "actor": actor,
            "fingerprint": fingerprint,
            "expires": session.expires,
            "remote_addr": remote_addr,
        },
    )
    return session, cookie


async def find(
    conn: psycopg.AsyncConnection, fingerprint: bytes, session_id: str
) -> Session | None:
    """The live session of an id (from `cookie_id`), or None: signed out, expired, or made with
    another admin token."""
    row = await db.fetch_one(
        conn, QUERIES["find_session"], {"id_hash": _id_hash(session_id), "fingerprint": fingerprint}
    )
    return Session(session_id, row["actor"], row["expires"]) if row else None


async def end(conn: psycopg.AsyncConnection, session: Session) -> None:
    await conn.execute(QUERIES["delete_session"], {"id_hash": _id_hash(session.id)})


async def end_all(conn: psycopg.AsyncConnection) -> int:
    """Sign out everywhere; the number of sessions ended."""
    cursor = await conn.execute(QUERIES["delete_all_sessions"])
    return cursor.rowcount


def csrf_token(key: bytes, session: Session) -> str:
    return _sign(key, b"csrf", session.id.encode())


def csrf_ok(key: bytes, session: Session, presented: str | None) -> bool:
    """Constant-time comparison of a form's token with the session's."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), csrf_token(key, session).encode())


def sign_flash(key: bytes, message: str) -> str:
    """A one-shot message for the next page, signed so nobody can plant text in the dashboard."""
    payload = message.encode()[:500]
    return f"{_b64(payload)}.{_sign(key, b'flash', payload)}"


def read_flash(key: bytes, cookie: str | None) -> str | None:
    if not cookie or "." not in cookie:
        return None
    body, signature = cookie.rsplit(".", 1)
    try:
        payload = _unb64(body)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature.encode(), _sign(key, b"flash", payload).encode()):
        return None
    return payload.decode(errors="replace")


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cookie_secure(scheme: str, client_host: str | None, force: bool) -> bool:
    """Secure unless the request is plain http on loopback (`kiosk dev`), or always when forced.

    Behind a TLS-terminating proxy, uvicorn's proxy headers make the scheme https.
    """
    return force or not (scheme == "http" and is_loopback(client_host))


def safe_next(target: str | None, default: str = "/admin/") -> str:
    """A redirect target that stays inside the dashboard: a local path under /admin/ only."""
    if (
        not target
        or not target.startswith("/admin/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
        or len(target) > 2000
    ):
        return default
    return target
