"""Webhooks: Mercado Pago's signed notifications, verified without the database, kept in an inbox."""
