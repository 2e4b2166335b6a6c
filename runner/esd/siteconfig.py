"""The site config: settings that belong to the site running ``esd``, not to a change order.

``ESD_SITE_CONFIG`` names the file; else ``$ESD_HOME/site.yml`` is used when it exists. Change orders
live in git and are reviewed by many; the SMTP server's credentials and webhook tokens do not belong
in them, so they are only ever named here, as environment variables::

    notifications:                      # merged under every change order's spec.notifications
      email: [change-board@example.com] # added to the change order's recipients
      webhook: https://chat.example.com/hooks/esd
      webhook_token_env: ESD_WEBHOOK_TOKEN          # sent as "Authorization: Bearer <token>"
      smtp: {host: smtp.example.com, port: 587, sender: esd@example.com, starttls: true,
             username: esd, password_env: ESD_SMTP_PASSWORD}
    problems:                           # problem-record backends besides the ledger's file
      - {type: webhook, url: https://itsm.example.com/api/problems, token_env: ESD_ITSM_TOKEN}
      - {type: mycompany.esd_backends:ServiceNow, instance: acme}
"""

from __future__ import annotations

import os

import yaml

from esd.errors import UsageError

NOTIFICATION_KEYS = ("events", "email", "webhook", "webhook_token_env", "smtp")
SMTP_KEYS = ("host", "port", "sender", "username", "password_env", "starttls")
TOP_KEYS = ("notifications", "problems")


def path():
    explicit = os.environ.get("ESD_SITE_CONFIG")
    if explicit:
        return explicit
    home = os.environ.get("ESD_HOME")
    if home and os.path.isfile(os.path.join(home, "site.yml")):
        return os.path.join(home, "site.yml")
    return None


def load(source=None):
    """The site config as a dict ({} when there is none); UsageError when it is unreadable or malformed."""
    source = source or path()
    if not source:
        return {}
    try:
        with open(source, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError("site config %s cannot be read: %s" % (source, exc)) from None
    problems = []
    if not isinstance(data, dict):
        raise UsageError("site config %s: expected a mapping with %s" % (source, ", ".join(TOP_KEYS)))
    problems += ["unknown key %s (known: %s)" % (key, ", ".join(TOP_KEYS)) for key in data if key not in TOP_KEYS]
    notifications = data.get("notifications") or {}
    if not isinstance(notifications, dict):
        problems.append("notifications: expected a mapping")
    else:
        problems += ["notifications.%s: unknown key (known: %s)" % (key, ", ".join(NOTIFICATION_KEYS))
                     for key in notifications if key not in NOTIFICATION_KEYS]
        smtp = notifications.get("smtp") or {}
        if not isinstance(smtp, dict):
            problems.append("notifications.smtp: expected a mapping")
        else:
            problems += ["notifications.smtp.%s: unknown key (known: %s)" % (key, ", ".join(SMTP_KEYS))
                         for key in smtp if key not in SMTP_KEYS]
            if "password" in smtp:
                problems.append("notifications.smtp.password: put the password in an environment variable and name "
                                "it with password_env")
    backends = data.get("problems") or []
    if not isinstance(backends, list) or not all(isinstance(item, dict) and item.get("type") for item in backends):
        problems.append("problems: expected a list of backends, each with a type (file, webhook, "
                        "package.module:Class)")
    if problems:
        raise UsageError("site config %s: %s" % (source, "; ".join(problems)))
    return data


def secret_names(site):
    """The environment variables the site config names as holding secrets (passwords, tokens)."""
    names = set()
    notifications = (site or {}).get("notifications") or {}
    for value in (notifications.get("webhook_token_env"), (notifications.get("smtp") or {}).get("password_env")):
        if value:
            names.add(value)
    for backend in (site or {}).get("problems") or []:
        for key, value in backend.items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
    return sorted(names)
