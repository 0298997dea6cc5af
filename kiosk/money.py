"""Money formatting: integer cents as text. A leaf module (it imports nothing of kiosk)."""

from __future__ import annotations


def amount(cents: int) -> str:
    """Integer cents as a decimal string with two places (`1234` -> `12.34`), as Mercado Pago
    takes amounts and as receipts print them."""
    return f"{cents // 100}.{cents % 100:02d}"
