"""The receipt email of a paid order, sent over SMTP (KIOSK_SMTP_*), at least once.

smtplib runs in a thread; the conversation is split into its steps so that a failure can be
classified: anything before the end of DATA is answered by the server or never reached it, so
nothing was delivered (retry); losing the connection during DATA leaves the outcome unknown (maybe
delivered: sent again all the same, and counted as a resend). The Message-ID is derived from the
order, so it is the same on every attempt and mail systems and people can tell a copy.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

from kiosk import tls
from kiosk.money import amount
from kiosk.notifications import deliveries
from kiosk.notifications.event import PaidOrder
from kiosk.settings import Settings, get_settings


def build(order: PaidOrder, settings: Settings) -> EmailMessage:
    if not order.customer_email:
        raise ValueError(f"order {order.id} has no email address to send a receipt to")
    domain = settings.smtp_from.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = order.customer_email
    message["Subject"] = f"Your kiosk receipt, order {str(order.id)[:8]}"
    message["Message-ID"] = f"<receipt.{order.id}@{domain}>"
    message["Date"] = format_datetime(order.paid_at) if order.paid_at else formatdate(usegmt=True)
    lines = ["Thank you for your order.", "", f"Order {order.id}", ""]
    for item in order.items:
        line_total = amount(item.unit_price_cents * item.quantity)
        lines.append(f"  {item.quantity} x {item.name:<30} {line_total:>10}")
    lines += ["", f"  {'Total':<34} {amount(order.total_cents):>10}", ""]
    if order.paid_at:
        lines.append(f"Paid on {order.paid_at:%Y-%m-%d %H:%M} UTC.")
    message.set_content("\n".join(lines) + "\n")
    return message


async def send(order: PaidOrder) -> str:
    """Send the receipt of a paid order, unless it already went (or was given up)."""
    settings = get_settings()
    if not order.customer_email:
        return "no email address"

    async def deliver(attempt: deliveries.Attempt) -> None:
        if not settings.smtp_host:
            raise deliveries.DeliveryRetry("KIOSK_SMTP_HOST is not set")
        await asyncio.to_thread(_smtp_send, settings, build(order, settings))

    return await deliveries.deliver(order.id, deliveries.RECEIPT, deliver)


def _smtp_send(settings: Settings, message: EmailMessage) -> None:
    timeout = settings.delivery_timeout_seconds
    try:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise deliveries.DeliveryRetry(f"cannot connect to {settings.smtp_host}: {exc}") from None
    try:
        try:
            smtp.ehlo()
            if settings.smtp_starttls:
                smtp.starttls(context=tls.smtp())
                smtp.ehlo()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            code, reply = smtp.mail(settings.smtp_from)
            if code != 250:
                raise _refused("MAIL FROM", code, reply)
            code, reply = smtp.rcpt(str(message["To"]))
            if code not in (250, 251):
                raise _refused("RCPT TO", code, reply)
        except (OSError, smtplib.SMTPException) as exc:
            raise deliveries.DeliveryRetry(f"SMTP before DATA: {exc}") from None
        try:
            code, reply = smtp.data(message.as_bytes())
        except smtplib.SMTPDataError as exc:
            # The server answered "no" to DATA: not delivered.
            raise _refused("DATA", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise deliveries.DeliveryUncertain(f"SMTP connection lost during DATA: {exc}") from None
        if code != 250:
            # The server answered "no" to the message itself: not delivered.
            raise _refused("message", code, reply)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _refused(step: str, code: int, reply: bytes | str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    error = f"SMTP {step} refused: {code} {text}"
    # 4xx: try later; 5xx: refused for good.
    return deliveries.DeliveryFailed(error) if code >= 500 else deliveries.DeliveryRetry(error)
