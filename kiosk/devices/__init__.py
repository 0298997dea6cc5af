"""Kiosk devices: bearer tokens for the order endpoints, each device bound to its card terminals."""
