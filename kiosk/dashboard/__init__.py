"""The admin dashboard: server-rendered pages over the admin domain code (docs/dashboard.md)."""
