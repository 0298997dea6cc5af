"""kiosk: a self-service kiosk backend whose job queue lives in its own PostgreSQL database."""
