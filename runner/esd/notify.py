"""Stakeholder notifications of a change order: webhooks (JSON POST) and/or e-mail over SMTP.

A notification that cannot be delivered is recorded in the audit log with the reason; it never
stops the change order (the seeds' notification plan informs, it does not gate).

Where the settings come from: the change order (``spec.notifications``: events, recipients, a
webhook, an SMTP server) and the site config (``esd.siteconfig``: default recipients and webhooks,
the SMTP server with its credentials). Secrets live only in the site config's environment
variables (``password_env``, ``token_env``): they are read when a message is sent and never
written to the ledger, the audit log or the output; URLs are shown without their query string or
user information.
"""

from __future__ import annotations

import dataclasses
import json
import os
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

TIMEOUT = 10


@dataclasses.dataclass(frozen=True)
class Settings:
    """The notification settings in force: the change order's merged over the site's."""

    events: tuple = ()
    email: tuple = ()
    webhooks: tuple = ()          # ({url, token_env}, ...)
    smtp: dict = dataclasses.field(default_factory=dict)   # host, port, sender, username, password_env, starttls

    @property
    def webhook(self):
        return self.webhooks[0]["url"] if self.webhooks else None

    @property
    def configured(self):
        return bool(self.webhooks or (self.email and self.smtp.get("host")))


def effective(change_order_settings, site=None):
    """Merge the change order's ``spec.notifications`` over the site config's ``notifications``."""
    site_settings = (site or {}).get("notifications") or {}
    events = tuple(change_order_settings.events) or tuple(site_settings.get("events") or ())
    email = tuple(dict.fromkeys(tuple(change_order_settings.email) + tuple(site_settings.get("email") or ())))
    webhooks = []
    if change_order_settings.webhook:
        webhooks.append({"url": change_order_settings.webhook, "token_env": None})
    for url in ([site_settings["webhook"]] if site_settings.get("webhook") else []):
        if url not in [hook["url"] for hook in webhooks]:
            webhooks.append({"url": url, "token_env": site_settings.get("webhook_token_env")})
    smtp = dict(site_settings.get("smtp") or {})
    # The change order may name the server; credentials only ever come from the site config.
    for key in ("host", "port", "sender"):
        if (change_order_settings.smtp or {}).get(key):
            smtp[key] = change_order_settings.smtp[key]
    return Settings(events=events, email=email, webhooks=tuple(webhooks), smtp=smtp)


def wanted(notifications, event):
    """True when the change order asks for ``event`` (no ``events`` list means every event)."""
    return not notifications.events or event in notifications.events


def redact_url(url):
    """``url`` without user information and query string, for logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = "%s:%d" % (host, parts.port)
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def send(notifications, change_order_id, event, subject, body, data=None):
    """Deliver to every configured channel; return a list of {channel, ok, detail} records."""
    if not isinstance(notifications, Settings):
        notifications = effective(notifications)
    deliveries = []
    payload = {"change_order": change_order_id, "event": event, "subject": subject, "body": body,
               "data": data or {}}
    for hook in notifications.webhooks:
        deliveries.append(_webhook(hook, payload))
    if notifications.email and notifications.smtp.get("host"):
        deliveries.append(_email(notifications, subject, body))
    return deliveries


def _webhook(hook, payload):
    url = hook["url"]
    headers = {"Content-Type": "application/json", "User-Agent": "esd"}
    token = os.environ.get(hook["token_env"]) if hook.get("token_env") else None
    if token:
        headers["Authorization"] = "Bearer %s" % token
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode("utf-8"), headers=headers,
                                     method="POST")
    shown = redact_url(url)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return {"channel": "webhook", "ok": 200 <= response.status < 300, "detail": "HTTP %d" % response.status}
    except urllib.error.HTTPError as exc:
        return {"channel": "webhook", "ok": False, "detail": "HTTP %d from %s" % (exc.code, shown)}
    except (urllib.error.URLError, OSError) as exc:
        return {"channel": "webhook", "ok": False,
                "detail": "cannot reach %s: %s" % (shown, getattr(exc, "reason", exc))}


def _email(notifications, subject, body):
    smtp = notifications.smtp
    message = EmailMessage()
    message["From"] = smtp.get("sender") or "esd@localhost"
    message["To"] = ", ".join(notifications.email)
    message["Subject"] = subject
    message.set_content(body)
    host, port = smtp["host"], smtp.get("port") or 25
    password = os.environ.get(smtp["password_env"]) if smtp.get("password_env") else None
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
            if smtp.get("starttls"):
                client.starttls()
            if smtp.get("username"):
                if password is None:
                    return {"channel": "email", "ok": False,
                            "detail": "SMTP %s:%s: no password in $%s for user %s" % (
                                host, port, smtp.get("password_env") or "(password_env not set)", smtp["username"])}
                client.login(smtp["username"], password)
            client.send_message(message)
        return {"channel": "email", "ok": True, "detail": "sent to %s" % ", ".join(notifications.email)}
    except (smtplib.SMTPException, OSError) as exc:
        detail = str(exc)
        if password:
            detail = detail.replace(password, "***")
        return {"channel": "email", "ok": False, "detail": "SMTP %s:%s: %s" % (host, port, detail)}
