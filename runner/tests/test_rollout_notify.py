"""Notification settings from the change order and the site config; SMTP credentials stay secret."""

from __future__ import annotations

import smtplib

import pytest

from esd import notify, siteconfig
from esd.changeorder import Notifications
from esd.errors import UsageError


class FakeSMTP:
    sent = []
    logins = []

    def __init__(self, host, port, timeout=None):
        self.host, self.port = host, port

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

    def starttls(self):
        pass

    def login(self, user, password):
        if password != "right":
            raise smtplib.SMTPAuthenticationError(535, b"authentication failed for password %s" % password.encode())
        FakeSMTP.logins.append((user, password))

    def send_message(self, message):
        FakeSMTP.sent.append(message)


def test_site_settings_merge_under_the_change_order(tmp_path):
    site_file = tmp_path / "site.yml"
    site_file.write_text("notifications:\n  email: [board@example.com]\n  webhook: https://chat.example.com/h\n"
                         "  webhook_token_env: TOKEN\n  smtp: {host: smtp.example.com, port: 587, username: esd,"
                         " password_env: SMTP_PW, starttls: true}\n")
    site = siteconfig.load(str(site_file))
    co = Notifications(events=("completed",), email=("ops@example.com",), webhook="https://hooks.example.com/esd",
                       smtp={"host": "mail.internal", "port": 25, "sender": "esd@example.com"})
    settings = notify.effective(co, site)
    assert settings.email == ("ops@example.com", "board@example.com")
    assert [hook["url"] for hook in settings.webhooks] == ["https://hooks.example.com/esd", "https://chat.example.com/h"]
    assert settings.smtp == {"host": "mail.internal", "port": 25, "sender": "esd@example.com", "username": "esd",
                             "password_env": "SMTP_PW", "starttls": True}
    assert settings.events == ("completed",) and settings.configured
    assert siteconfig.secret_names(site) == ["SMTP_PW", "TOKEN"]


def test_smtp_logs_in_with_the_secret_from_the_environment_and_never_shows_it(monkeypatch):
    monkeypatch.setattr(notify.smtplib, "SMTP", FakeSMTP)
    settings = notify.Settings(email=("ops@example.com",), smtp={"host": "127.0.0.1", "port": 2525,
                                                                  "username": "esd", "password_env": "SMTP_PW"})
    monkeypatch.setenv("SMTP_PW", "right")
    assert notify.send(settings, "CO-1", "completed", "done", "body") == [
        {"channel": "email", "ok": True, "detail": "sent to ops@example.com"}]
    assert FakeSMTP.logins[-1] == ("esd", "right")
    monkeypatch.setenv("SMTP_PW", "wrong-pw-123")
    delivery = notify.send(settings, "CO-1", "completed", "done", "body")[0]
    assert not delivery["ok"] and "wrong-pw-123" not in delivery["detail"] and "***" in delivery["detail"]
    monkeypatch.delenv("SMTP_PW")
    assert notify.send(settings, "CO-1", "completed", "done", "body")[0]["detail"] == (
        "SMTP 127.0.0.1:2525: no password in $SMTP_PW for user esd")


def test_urls_are_shown_without_credentials_or_query():
    assert notify.redact_url("https://user:pw@hooks.example.com:8443/x/y?token=abc#f") == (
        "https://hooks.example.com:8443/x/y")


def test_a_site_config_with_a_password_in_it_is_refused(tmp_path):
    site_file = tmp_path / "site.yml"
    site_file.write_text("notifications:\n  smtp: {host: h, password: hunter2}\n")
    with pytest.raises(UsageError, match="put the password in an environment variable and name it with "
                                         "password_env"):
        siteconfig.load(str(site_file))
