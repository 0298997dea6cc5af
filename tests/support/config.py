"""The test session's fixed settings: tokens and secrets that every tier and child process share."""

ADMIN_TOKEN = "test-admin-token-0123456789"
WEBHOOK_SECRET = "test-webhook-secret"
ACCESS_TOKEN = "test-access-token"
# Encrypts schedule secrets in tests (KIOSK_SECRET_KEY); child processes inherit it.
SECRET_KEY = "uVZ9m0sDqfX1cH7o2kq8QvJr4Yb6tNw3LpE5aGdIhMc="
# The notify hook's signing secret and the receipts' sender in the payments stack.
HOOK_SECRET = "test-notify-secret-0123456789"
MAIL_FROM = "kiosk@example.com"
# A terminal of the Mercado Pago simulator.
TERMINAL = "NEWLAND_N950__N950NCB801293324"
