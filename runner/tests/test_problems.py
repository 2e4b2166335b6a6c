"""Problem records: opened after the triage, updated by the backout, closed when a retry succeeds."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from esd import ledger as ledger_mod
from esd import problems
from esd.siteconfig import load as load_site

from esd_fixtures import minimal_document, write_document


class Recorder(problems.ProblemBackend):
    name = "recorder"
    seen = []

    def __init__(self, queue="default"):
        self.queue = queue

    def publish(self, action, record):
        Recorder.seen.append((self.queue, action, record["host"], record["status"]))
        return {"backend": self.name, "ok": True, "detail": self.queue}


def endpoint(klass, reason="why", **extra):
    return dict({"class": klass, "reason": reason, "stage": "install_wave_1", "wave": 1, "phase": None, "rc": None,
                 "task": "Software | apply", "attempts": 0, "notes": [], "rolled_back": False, "redistributed": False,
                 "changed": klass == "rollback"}, **extra)


@pytest.fixture
def setup(tmp_path, workspace):
    from esd import changeorder

    co = changeorder.load(write_document(workspace, minimal_document("install")))
    entry = ledger_mod.Ledger(str(tmp_path / "ledger")).entry(co.id)
    entry.create(b"x", {"audit_head": None})
    return co, entry


def test_records_open_update_and_close_with_the_endpoints(setup):
    co, entry = setup
    backends = problems.backends(entry, co)
    endpoints = {"h1": endpoint("redistribute", "unreachable: refused"), "h2": endpoint("rollback", "health"),
                 "h3": endpoint("success", "changed")}
    result = problems.sync(entry, co, endpoints, backends, {"name": "hello-agent", "version": "1.1.0"})
    assert (result["opened"], result["closed"], result["open"]) == (
        ["PRB-CO-install-h1", "PRB-CO-install-h2"], [], ["PRB-CO-install-h1", "PRB-CO-install-h2"])
    # Nothing changed: nothing is published again.
    assert problems.sync(entry, co, endpoints, backends)["updated"] == []
    endpoints["h1"] = endpoint("success", "redistributed", redistributed=True)
    endpoints["h2"] = endpoint("rollback", "health", rolled_back=True, notes=["rolled back to 1.0.0"])
    result = problems.sync(entry, co, endpoints, backends)
    assert (result["closed"], result["updated"], result["open"]) == (
        ["PRB-CO-install-h1"], ["PRB-CO-install-h2"], ["PRB-CO-install-h2"])
    records = problems.read(entry)
    assert records["PRB-CO-install-h1"]["resolution"] == "redistributed successfully"
    assert records["PRB-CO-install-h1"]["closed_at"]
    assert records["PRB-CO-install-h2"]["resolution"].startswith("rolled back to the previous version")
    assert records["PRB-CO-install-h2"]["software"] == {"name": "hello-agent", "version": "1.1.0"}
    with open(entry.path + "/problems.jsonl", encoding="utf-8") as handle:
        actions = [json.loads(line)["action"] for line in handle]
    assert actions == ["open", "open", "close", "update"]


def test_the_webhook_backend_posts_with_a_bearer_token_and_custom_backends_plug_in(setup, tmp_path, monkeypatch):
    co, entry = setup
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers.get("Authorization"),
                             json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site_file = tmp_path / "site.yml"
    site_file.write_text(
        "problems:\n  - {type: webhook, url: 'http://127.0.0.1:%d/p?key=abc', token_env: ITSM_TOKEN}\n"
        "  - {type: 'test_problems:Recorder', queue: ops}\n" % server.server_address[1])
    monkeypatch.setenv("ITSM_TOKEN", "t0ken")
    try:
        backends = problems.backends(entry, co, load_site(str(site_file)))
        recorder = type(backends[2])        # imported by its dotted name, as a site would name it
        recorder.seen = []
        assert [b.name for b in backends] == ["file", "webhook", "recorder"]
        result = problems.sync(entry, co, {"h1": endpoint("manual", "I/O error")}, backends)
        assert received[0][0] == "Bearer t0ken"
        assert (received[0][1]["action"], received[0][1]["record"]["host"]) == ("open", "h1")
        assert recorder.seen == [("ops", "open", "h1", "open")]
        assert [d for d in result["deliveries"] if d["backend"] == "webhook"][0]["detail"] == (
            "HTTP 201 from http://127.0.0.1:%d/p" % server.server_address[1])       # no query string, no token
    finally:
        server.shutdown()


def test_a_broken_backend_does_not_stop_the_change_order(setup):
    co, entry = setup

    class Broken(problems.ProblemBackend):
        name = "broken"

        def publish(self, action, record):
            raise RuntimeError("ticket system down")

    result = problems.sync(entry, co, {"h1": endpoint("manual")}, [problems.FileBackend(entry.path + "/problems.jsonl"),
                                                                   Broken()])
    assert result["opened"] == ["PRB-CO-install-h1"]
    assert result["deliveries"] == [{"backend": "broken", "ok": False, "detail": "RuntimeError: ticket system down",
                                     "action": "open", "record": "PRB-CO-install-h1"}]
