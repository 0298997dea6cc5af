"""Value checks shared by the settings and the domain: a leaf module (it imports nothing of kiosk).

`kiosk.settings` validates its values with these, so it never imports a domain module (which
imports the settings back); the domain modules that own a concept re-export what they use
(`kiosk.payments.mercadopago.parse_duration`, `kiosk.orders.store.is_email`, ...).
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet

# A deliverable-looking address with nothing that could break an email header.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
EMAIL = re.compile(rf"^[^@\s<>\"',;]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")

# Mercado Pago ids end up in URL paths: only these characters are ever sent.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The expiration Mercado Pago accepts for a charge on a terminal, in seconds.
MIN_EXPIRATION, MAX_EXPIRATION = 30, 3 * 3600
_DURATION = re.compile(r"^PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$", re.IGNORECASE)


def is_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL.fullmatch(value) is not None


def parse_duration(value: str) -> int:
    """Seconds in an ISO-8601 time duration such as `PT5M` or `PT1H30M`."""
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an ISO-8601 duration such as PT5M")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{seconds}S" if seconds or text == "PT" else "")


def parse_keys(value: str) -> list[str]:
    """The keys of a KIOSK_SECRET_KEY value, each checked; ValueError names a bad one's position."""
    keys = [item.strip() for item in value.split(",") if item.strip()]
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the value: it is (meant to be) a key.
            raise ValueError(
                f"key {position} is not a Fernet key (32 bytes in url-safe base64, 44 characters; "
                "make one with `kiosk secret-key`)"
            ) from None
    return keys
