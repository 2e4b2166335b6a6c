"""Stakeholder notifications of a change order: a webhook (JSON POST) and/or e-mail over SMTP.

A notification that cannot be delivered is recorded in the audit log with the reason; it never
stops the change order (the seeds' notification plan informs, it does not gate).
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

TIMEOUT = 10


def wanted(notifications, event):
    """True when the change order asks for ``event`` (no ``events`` list means every event)."""
    return not notifications.events or event in notifications.events


def send(notifications, change_order_id, event, subject, body, data=None):
    """Deliver to every configured channel; return a list of {channel, ok, detail} records."""
    deliveries = []
    payload = {"change_order": change_order_id, "event": event, "subject": subject, "body": body,
               "data": data or {}}
    if notifications.webhook:
        deliveries.append(_webhook(notifications.webhook, payload))
    if notifications.email and notifications.smtp:
        deliveries.append(_email(notifications, subject, body))
    return deliveries


def _webhook(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"),
                                     headers={"Content-Type": "application/json", "User-Agent": "esd"},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return {"channel": "webhook", "ok": 200 <= response.status < 300, "detail": "HTTP %d" % response.status}
    except urllib.error.HTTPError as exc:
        return {"channel": "webhook", "ok": False, "detail": "HTTP %d from %s" % (exc.code, url)}
    except (urllib.error.URLError, OSError) as exc:
        return {"channel": "webhook", "ok": False, "detail": "cannot reach %s: %s" % (url, getattr(exc, "reason", exc))}


def _email(notifications, subject, body):
    message = EmailMessage()
    message["From"] = notifications.smtp.get("sender") or "esd@localhost"
    message["To"] = ", ".join(notifications.email)
    message["Subject"] = subject
    message.set_content(body)
    host, port = notifications.smtp["host"], notifications.smtp.get("port") or 25
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
            client.send_message(message)
        return {"channel": "email", "ok": True, "detail": "sent to %s" % ", ".join(notifications.email)}
    except (smtplib.SMTPException, OSError) as exc:
        return {"channel": "email", "ok": False, "detail": "SMTP %s:%s: %s" % (host, port, exc)}
