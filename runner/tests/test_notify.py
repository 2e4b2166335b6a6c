"""Notifications: a webhook receives JSON for the events the change order asks for."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from esd import engine as engine_mod
from esd import ledger as ledger_mod
from esd.engine import Engine

from esd_fixtures import REPO, FakeStages, minimal_document, write_document


@pytest.fixture
def webhook():
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/hook" % server.server_address[1], received
    server.shutdown()


def test_the_webhook_gets_the_events_asked_for(workspace, tmp_path, monkeypatch, webhook):
    url, received = webhook
    monkeypatch.setattr(engine_mod, "run_stage", FakeStages())
    document = minimal_document("remove", **{"spec.notifications": {"webhook": url, "events": [
        "gate_pending", "deployment_scheduled", "completed"]}})
    engine = Engine(ledger_mod.Ledger(str(tmp_path / "ledger")), project_dir=REPO)
    engine.run(write_document(workspace, document), "erin")
    engine.decide("CO-remove", "change_board", "dave", True)
    assert engine.run("CO-remove", "erin").status == "succeeded"
    assert [(m["event"], m["change_order"]) for m in received] == [("gate_pending", "CO-remove"),
                                                                    ("deployment_scheduled", "CO-remove"),
                                                                    ("completed", "CO-remove")]
    assert "esd approve CO-remove --gate change_board" in received[0]["body"]
    audit = [r for r in engine.ledger.get("CO-remove").read_audit() if r["event"] == "notified"]
    assert [r["data"]["deliveries"] for r in audit] == [[{"channel": "webhook", "ok": True, "detail": "HTTP 204"}]] * 3


def test_an_unreachable_webhook_is_recorded_and_does_not_stop_the_change_order(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "run_stage", FakeStages())
    document = minimal_document("remove", **{"spec.notifications": {"webhook": "http://127.0.0.1:9/none"}})
    engine = Engine(ledger_mod.Ledger(str(tmp_path / "ledger")), project_dir=REPO)
    engine.run(write_document(workspace, document), "erin")
    engine.decide("CO-remove", "change_board", "dave", True)
    assert engine.run("CO-remove", "erin").status == "succeeded"
    deliveries = [r["data"]["deliveries"][0] for r in engine.ledger.get("CO-remove").read_audit()
                  if r["event"] == "notified"]
    assert deliveries and all(not d["ok"] and d["detail"].startswith("cannot reach http://127.0.0.1:9/none")
                              for d in deliveries)
