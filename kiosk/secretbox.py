"""Encryption of secrets the kiosk stores: the header values, bodies and query strings of schedules.

`KIOSK_SECRET_KEY` holds one or more Fernet keys, comma-separated (`kiosk secret-key` makes one).
The first key encrypts; every key listed decrypts, so a key rotates without downtime: put the new
key first, restart, run `kiosk rotate-secrets` (re-encrypts every stored secret with the first
key), then drop the old key (docs/deploy.md). Fernet is authenticated encryption (AES-128-CBC and
HMAC-SHA256, from `cryptography`): a token changed in the database does not decrypt, it is refused.

Secrets are sealed as one JSON object per row; nothing here ever logs or echoes a plaintext.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from kiosk.errors import DomainError
from kiosk.settings import get_settings
from kiosk.validators import parse_keys

__all__ = [
    "Keyring",
    "SecretKeyMissing",
    "SecretUnreadable",
    "generate_key",
    "keyring",
    "parse_keys",
    "warn_if_missing",
]


class SecretKeyMissing(DomainError):
    """KIOSK_SECRET_KEY is not set, and a secret has to be stored or read."""

    status = 503

    def __init__(self, what: str = "secrets") -> None:
        super().__init__(
            f"KIOSK_SECRET_KEY is not set: this kiosk cannot store or read {what} "
            "(docs/deploy.md#secret-key)"
        )


class SecretUnreadable(DomainError):
    """A stored token does not decrypt with any key of KIOSK_SECRET_KEY (wrong key, or altered)."""

    status = 500

    def __init__(self) -> None:
        super().__init__(
            "stored secrets do not decrypt with any key in KIOSK_SECRET_KEY: the key they were "
            "encrypted with is missing from it, or the row was altered"
        )


def generate_key() -> str:
    return Fernet.generate_key().decode()


class Keyring:
    """The keys of KIOSK_SECRET_KEY: the first encrypts, all decrypt."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = list(keys)
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    def __repr__(self) -> str:
        return f"Keyring({len(self._keys)} keys)"

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _require(self, what: str) -> MultiFernet:
        if self._fernet is None:
            raise SecretKeyMissing(what)
        return self._fernet

    def seal(self, data: dict[str, Any], what: str = "secrets") -> str:
        plaintext = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        return self._require(what).encrypt(plaintext).decode()

    def open(self, token: str, what: str = "secrets") -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._require(what).decrypt(token.encode()))
        except InvalidToken:
            raise SecretUnreadable() from None
        return data  # `seal` stores JSON objects only

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the first key (a token of another key decrypts first)."""
        try:
            return self._require("secrets").rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable() from None

    def primary_encrypted(self, token: str) -> bool:
        """Whether the first key decrypts the token (rotation is done for it)."""
        if not self._keys:
            return False
        try:
            Fernet(self._keys[0]).decrypt(token.encode())
        except InvalidToken:
            return False
        return True


def keyring() -> Keyring:
    """The keyring of this process's settings."""
    return Keyring(get_settings().secret_keys)


def warn_if_missing(logger: logging.Logger) -> None:
    """The one start-up line of a process without a key (it starts anyway: docs/deploy.md)."""
    if not keyring().available:
        logger.warning(
            "KIOSK_SECRET_KEY is not set: schedules holding secret header values, bodies or query "
            "strings cannot be saved (503) and their runs fail; see docs/deploy.md#secret-key"
        )
