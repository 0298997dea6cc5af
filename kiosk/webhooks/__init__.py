"""Webhooks: Mercado Pago's signed notifications, checked without the database, kept in an inbox."""
