"""Problem records for endpoints a distribution left failing, kept in pluggable backends.

After the triage every endpoint that failed gets a problem record (``open``); every backout attempt
updates them, and a record is ``closed`` when a redistribution succeeded. Records of endpoints that
were rolled back, or still fail, stay open: they are handed to the teams that fix the cause
(the seeds' "problem record closed or transferred").

Backends (``publish(action, record)`` with action open, update or close):

    file      JSON lines in the ledger: <ledger>/<id>/problems.jsonl (always on; the runner's own record)
    webhook   an HTTP POST of {"action", "record"} as JSON to a URL (a ticketing system's intake);
              spec.problems.webhook in the change order, or site config ``problems: [{type: webhook,
              url, token_env}]`` (the token is sent as a bearer token and never logged)

Other backends are classes named in the site config (``type: package.module:Class``) or registered
with :func:`register`; they get the backend's settings as keyword arguments.
"""

from __future__ import annotations

import abc
import importlib
import json
import os
import urllib.error
import urllib.request

from esd import ledger as ledger_mod
from esd.ledger import timestamp
from esd.notify import redact_url

TIMEOUT = 10
FILE_NAME = "problems.jsonl"


class ProblemBackend(abc.ABC):
    """Where problem records go. ``publish`` returns a delivery record {backend, ok, detail}."""

    name = "backend"

    @abc.abstractmethod
    def publish(self, action, record):
        raise NotImplementedError


class FileBackend(ProblemBackend):
    """Appends {action, at, record} lines to problems.jsonl in the change order's ledger directory."""

    name = "file"

    def __init__(self, path):
        self.path = path

    def publish(self, action, record):
        line = json.dumps({"action": action, "at": timestamp(), "record": record}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return {"backend": self.name, "ok": True, "detail": self.path}


class WebhookBackend(ProblemBackend):
    """POSTs {action, record} as JSON; a bearer token comes from the environment variable ``token_env``."""

    name = "webhook"

    def __init__(self, url, token_env=None):
        self.url = url
        self.token_env = token_env

    def publish(self, action, record):
        headers = {"Content-Type": "application/json", "User-Agent": "esd"}
        token = os.environ.get(self.token_env) if self.token_env else None
        if token:
            headers["Authorization"] = "Bearer %s" % token
        request = urllib.request.Request(self.url, data=json.dumps({"action": action, "record": record}).encode(),
                                         headers=headers, method="POST")
        shown = redact_url(self.url)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return {"backend": self.name, "ok": 200 <= response.status < 300,
                        "detail": "HTTP %d from %s" % (response.status, shown)}
        except urllib.error.HTTPError as exc:
            return {"backend": self.name, "ok": False, "detail": "HTTP %d from %s" % (exc.code, shown)}
        except (urllib.error.URLError, OSError) as exc:
            return {"backend": self.name, "ok": False,
                    "detail": "cannot reach %s: %s" % (shown, getattr(exc, "reason", exc))}


BACKENDS = {"file": FileBackend, "webhook": WebhookBackend}


def register(name, backend_class):
    """Make a backend class available as ``type: <name>`` in the site config."""
    BACKENDS[name] = backend_class


def _backend_class(kind):
    if kind in BACKENDS:
        return BACKENDS[kind]
    if ":" in kind:
        module, _, attribute = kind.partition(":")
        return getattr(importlib.import_module(module), attribute)
    raise ValueError("unknown problem-record backend %r (known: %s, or package.module:Class)"
                     % (kind, ", ".join(sorted(BACKENDS))))


def backends(entry, co, site=None):
    """The file backend, the change order's webhook and the site config's backends."""
    found = [FileBackend(os.path.join(entry.path, FILE_NAME))]
    if co.spec.problems.get("webhook"):
        found.append(WebhookBackend(co.spec.problems["webhook"]))
    for settings in (site or {}).get("problems") or []:
        settings = dict(settings)
        kind = settings.pop("type", "file")
        if kind == "file":
            continue
        found.append(_backend_class(kind)(**settings))
    return found


def read(entry):
    """{record id: latest record} from the ledger's problems.jsonl."""
    records = {}
    path = os.path.join(entry.path, FILE_NAME)
    if not os.path.isfile(path):
        return records
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                records[item["record"]["id"]] = item["record"]
    return records


def record_id(change_order_id, host):
    return "PRB-%s-%s" % (change_order_id, host)


def _wanted(endpoint):
    """(open?, resolution) for an endpoint now."""
    from esd.triage import final_status

    status = final_status(endpoint)
    if endpoint.get("halt_rollback") and endpoint.get("rolled_back"):
        return False, None          # it succeeded; the whole change was backed out
    if status == "success":
        return False, "redistributed successfully" if endpoint.get("redistributed") else "succeeded"
    if status == "not_reached":
        return False, None
    if status == "rolled_back":
        return True, "rolled back to the previous version; the cause must be fixed before it gets the change"
    return True, None


def sync(entry, co, endpoints, backend_list, software=None):
    """Open, update and close records so they match the endpoints; returns {opened, updated, closed, open,
    deliveries}."""
    existing = read(entry)
    result = {"opened": [], "updated": [], "closed": [], "deliveries": []}
    now = timestamp()
    for host, endpoint in sorted(endpoints.items()):
        ident = record_id(co.id, host)
        current = existing.get(ident)
        wanted_open, resolution = _wanted(endpoint)
        fields = {"class": endpoint["class"], "reason": endpoint["reason"], "stage": endpoint.get("stage"),
                  "wave": endpoint.get("wave"), "phase": endpoint.get("phase"), "rc": endpoint.get("rc"),
                  "task": endpoint.get("task"), "attempts": endpoint.get("attempts", 0),
                  "notes": list(endpoint.get("notes") or [])}
        if wanted_open:
            record = dict(current or {"id": ident, "change_order": co.id, "host": host, "software": software,
                                      "opened_at": now})
            if current and current["status"] == "open" and all(current.get(k) == v for k, v in fields.items()) \
                    and current.get("resolution") == resolution:
                continue
            action = "update" if current and current["status"] == "open" else "open"
            record.update(fields, status="open", updated_at=now, resolution=resolution, closed_at=None)
        elif current and current["status"] == "open":
            action = "close"
            record = dict(current)
            record.update(fields, status="closed", updated_at=now, closed_at=now,
                          resolution=resolution or "no longer failing")
        else:
            continue
        for backend in backend_list:
            try:
                delivery = backend.publish(action, record)
            except Exception as exc:  # a broken backend must not stop the change order
                delivery = {"backend": getattr(backend, "name", type(backend).__name__), "ok": False,
                            "detail": "%s: %s" % (type(exc).__name__, exc)}
            delivery.update(action=action, record=ident)
            if not (delivery["ok"] and backend.name == "file"):
                result["deliveries"].append(delivery)
        result[{"open": "opened", "update": "updated", "close": "closed"}[action]].append(ident)
    result["open"] = sorted(ident for ident, record in read(entry).items() if record["status"] == "open")
    return result


def write_summary(entry):
    """The current records, also as <ledger>/<id>/problems.json (one object, for reports)."""
    records = read(entry)
    ledger_mod.atomic_write(os.path.join(entry.path, "problems.json"),
                            json.dumps(sorted(records.values(), key=lambda r: r["id"]), indent=1) + "\n")
    return records
