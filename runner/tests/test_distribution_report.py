"""The distribution report from a ledger state: JSON data, Markdown and a self-contained HTML page."""

from __future__ import annotations

import json

import jsonschema

from esd import distribution_report
from esd.reports import schema


def rollout_state():
    plan = [
        {"id": "install_beta", "kind": "stage", "title": "Install (beta group)", "rollout_role": "beta",
         "limit_hosts": ["h1"], "failure_budget_percent": 100},
        {"id": "go_no_go", "kind": "gate", "title": "Go/no-go"},
        {"id": "install_wave_1", "kind": "stage", "title": "Install (wave 1 of 2)", "rollout_role": "wave",
         "wave": 1, "limit_hosts": ["h2", "h3"], "failure_budget_percent": 50},
        {"id": "install_wave_2", "kind": "stage", "title": "Install (wave 2 of 2)", "rollout_role": "wave",
         "wave": 2, "limit_hosts": ["h4"], "failure_budget_percent": 50},
        {"id": "backout", "kind": "stage", "title": "Backout", "rollout_role": "backout"},
    ]
    steps = {
        "install_beta": {"status": "succeeded", "hosts": {"ok": ["h1"], "failed": [], "changed": ["h1"]},
                         "attempts": 1, "started_at": "2026-01-01T10:00:00+00:00",
                         "finished_at": "2026-01-01T10:00:05+00:00", "duration": 5.0},
        "go_no_go": {"status": "approved", "decided_by": "esd", "decided_at": "2026-01-01T10:00:06+00:00",
                     "comment": "automatic: 1 of 1 beta host(s) succeeded (100% >= 100%)"},
        "install_wave_1": {"status": "succeeded", "hosts": {"ok": ["h2"], "failed": ["h3"], "changed": ["h2"]},
                           "attempts": 1, "started_at": "2026-01-01T10:00:07+00:00",
                           "finished_at": "2026-01-01T10:00:17+00:00", "duration": 10.0},
        "install_wave_2": {"status": "halted", "attempts": 0, "reason": "not started: <halted>"},
        "backout": {"status": "succeeded", "attempts": 1},
    }
    endpoints = {
        "h1": {"class": "success", "reason": "changed", "stage": "install_beta", "wave": None, "attempts": 0,
               "rolled_back": False, "notes": []},
        "h2": {"class": "success", "reason": "changed", "stage": "install_wave_1", "wave": 1, "attempts": 0,
               "rolled_back": False, "notes": []},
        "h3": {"class": "rollback", "reason": "health check failed (phase health_check, rc 3): <bad> & co",
               "stage": "install_wave_1", "wave": 1, "phase": "health_check", "rc": 3, "attempts": 1,
               "rolled_back": True, "notes": ["rolled back to 1.0.0 by backout attempt 1"]},
        "h4": {"class": "not_reached", "reason": "not reached: halted", "stage": "install_wave_2", "wave": 2,
               "attempts": 0, "rolled_back": False, "notes": []},
    }
    verdict = {"result": "complete_with_exceptions", "halted": None, "total": 4,
               "counts": {"success": 2, "rolled_back": 1, "failed": 0, "manual": 0, "not_reached": 1},
               "exceptions": [{"host": "h3", "status": "rolled_back", "class": "rollback",
                               "reason": "rolled back: health check failed (phase health_check, rc 3): <bad> & co"},
                              {"host": "h4", "status": "not_reached", "class": "not_reached",
                               "reason": "not reached: halted"}]}
    return {"change_order": {"id": "CO-1", "title": "Install <agent>", "type": "install"}, "status": "succeeded",
            "plan": {"steps": plan}, "steps": steps,
            "rollout": {"endpoints": endpoints, "verdict": verdict, "initial": {"success": 2, "rollback": 1},
                        "backout_attempts": [{"attempt": 1, "rollback": ["h3"], "redistribute": [],
                                              "rolled_back": ["h3"], "redistributed": [], "at": "2026-01-01T10:01"}]}}


def test_the_report_has_waves_triage_exceptions_and_timings():
    report = distribution_report.build(rollout_state())
    jsonschema.validate(json.loads(json.dumps(report, default=str)), schema.DISTRIBUTION)
    assert [(s["id"], s["ok"], s["failed"], s["success_percent"]) for s in report["stages"]] == [
        ("install_beta", 1, 0, 100.0), ("install_wave_1", 1, 1, 50.0), ("install_wave_2", 0, 0, None)]
    assert report["elapsed_seconds"] == 17.0
    assert report["triage"]["final"]["counts"] == {"success": 2, "redistribute": 0, "rollback": 1, "manual": 0,
                                                   "not_reached": 1}
    assert report["go_no_go"]["decision"] == "go"
    markdown = distribution_report.render_markdown(report)
    assert "**Verdict:** complete with 2 exception(s): 2 of 4 endpoint(s) have the change" in markdown
    assert "| h3 | rolled back | rolled back: health check failed (phase health_check, rc 3): <bad> & co |" in markdown
    assert "| install_wave_1 | wave 1 | 2 | 1 | 1 | 50.0% | 50% | succeeded | 10.0 |" in markdown


def test_the_html_page_is_self_contained_and_escapes_what_it_shows():
    page = distribution_report.render_html(distribution_report.build(rollout_state()))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "src=" not in page and "@import" not in page and "url(" not in page
    assert "&lt;bad&gt; &amp; co" in page and "<bad>" not in page
    assert "Install &lt;agent&gt;" in page
    assert page.count('<rect class="bar"') == 2            # beta and wave 1 ran; wave 2 shows "not run"
    assert "not run" in page
    for table in ("waves", "triage", "exceptions", "backout", "endpoints"):
        assert '<table id="%s">' % table in page
