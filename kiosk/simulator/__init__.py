"""A local Mercado Pago Point simulator for development and tests (`kiosk simulator`)."""
