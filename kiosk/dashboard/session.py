"""The dashboard's browser session: a signed cookie and the CSRF token derived from it.

Stateless on purpose: nothing is stored server-side. The cookie holds expiry, a random nonce and
the operator name, signed with HMAC-SHA256 under a key derived from KIOSK_ADMIN_TOKEN, so rotating
the token invalidates every session at once. The CSRF token is an HMAC of the session's nonce
under the same key: it changes with each sign-in and cannot be computed without the key.
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

COOKIE = "kiosk_admin_session"
FLASH_COOKIE = "kiosk_admin_flash"
COOKIE_PATH = "/admin"
_VERSION = b"v1"


@dataclass(frozen=True)
class Session:
    actor: str
    expires: int  # unix seconds
    nonce: str


def signing_key(admin_token: str) -> bytes:
    """A key for this purpose only: the token itself never signs or leaves the server."""
    return hmac.new(admin_token.encode(), b"kiosk.dashboard.session." + _VERSION, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, purpose: bytes, payload: bytes) -> str:
    return _b64(hmac.new(key, purpose + b"\x00" + payload, hashlib.sha256).digest())


def issue(key: bytes, actor: str, lifetime_seconds: float, now: float | None = None) -> tuple[Session, str]:
    """A new session and its cookie value."""
    session = Session(actor, int((now or time.time()) + lifetime_seconds), secrets.token_urlsafe(16))
    payload = f"{session.expires}:{session.nonce}:{session.actor}".encode()
    return session, f"{_b64(payload)}.{_sign(key, b'session', payload)}"


def read(key: bytes, cookie: str | None, now: float | None = None) -> Session | None:
    """The session in a cookie value, or None when it is missing, forged, malformed or expired."""
    if not cookie or "." not in cookie or len(cookie) > 1024:
        return None
    body, signature = cookie.rsplit(".", 1)
    try:
        payload = _unb64(body)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature.encode(), _sign(key, b"session", payload).encode()):
        return None
    try:
        expires, nonce, actor = payload.decode().split(":", 2)
        session = Session(actor, int(expires), nonce)
    except ValueError:
        return None
    return session if session.expires > (now or time.time()) else None


def csrf_token(key: bytes, session: Session) -> str:
    return _sign(key, b"csrf", session.nonce.encode())


def csrf_ok(key: bytes, session: Session, presented: str | None) -> bool:
    """Constant-time comparison of a form's token with the session's."""
    return bool(presented) and hmac.compare_digest(presented.encode(), csrf_token(key, session).encode())


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
    """A redirect target that stays inside the dashboard: a local path under /admin/, nothing else."""
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
