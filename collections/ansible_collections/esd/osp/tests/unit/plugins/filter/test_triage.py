# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.esd.osp.plugins.filter.triage import FilterModule, classify_run


def triage(*args, **kwargs):
    return FilterModule().filters()["triage"](*args, **kwargs)


def record(host, outcome, task="Software | apply", run="r1", start="2026-01-01T00:00:00Z", **extra):
    return dict({"host": host, "outcome": outcome, "task": task, "run": run, "start": start, "stage": "install_wave_1",
                 "wave": "1"}, **extra)


SOFTWARE = "Software | apply | Bring hello-agent to active"


@pytest.mark.parametrize("failure, klass, reason", [
    ({"outcome": "unreachable", "message": "ssh: connect to host port 9: Connection refused"}, "redistribute",
     "unreachable: ssh: connect to host port 9: Connection refused"),
    ({"outcome": "failed", "phase": "fetch", "message": "Failed to fetch http://depot/x: HTTP Error 404"},
     "redistribute", "download failed (phase fetch): Failed to fetch http://depot/x: HTTP Error 404"),
    ({"outcome": "failed", "phase": "verify", "message": "Checksum mismatch"}, "redistribute",
     "checksum verification failed (phase verify): Checksum mismatch"),
    ({"outcome": "failed", "phase": "unpack", "message": "No space left"}, "redistribute",
     "unpacking failed before anything changed (phase unpack): No space left"),
    ({"outcome": "failed", "phase": "health_check", "rc": 3, "reverted": True, "message": "health check exited 3",
      "stderr": "agent down"}, "rollback",
     "health check failed (phase health_check, rc 3) and was reverted: health check exited 3 (stderr: agent down)"),
    ({"outcome": "failed", "phase": "post_install", "rc": 1, "message": "hook failed"}, "rollback",
     "post_install hook failed (phase post_install, rc 1): hook failed"),
    ({"outcome": "failed", "phase": "revert", "message": "revert failed"}, "rollback",
     "the automatic revert failed (phase revert): revert failed"),
    ({"outcome": "failed", "phase": "rollback_health_check", "rc": 3, "reverted": False, "changed": True,
      "message": "Rolled back demo 1.1.0 to 1.0.0, but then 1.0.0 failed its health check (health check exited 3)"},
     "manual", "rolled back, but the previous version failed its health check (phase rollback_health_check, rc 3): "
     "Rolled back demo 1.1.0 to 1.0.0, but then 1.0.0 failed its health check (health check exited 3)"),
    ({"outcome": "failed", "phase": "requires", "message": "libfoo missing"}, "manual",
     "a prerequisite is missing (phase requires): libfoo missing"),
    ({"outcome": "failed", "phase": "conflict", "message": "Cannot install b 1 into /srv/x"}, "manual",
     "the install directory belongs to another package (phase conflict): Cannot install b 1 into /srv/x"),
    ({"outcome": "failed", "phase": "state", "message": "State file x of b is unreadable"}, "manual",
     "the package's state file is unusable (phase state): State file x of b is unreadable"),
    ({"outcome": "failed", "phase": "pre_remove", "rc": 4, "message": "Failed to uninstall b 1"}, "manual",
     "pre_remove hook failed, nothing was removed (phase pre_remove, rc 4): Failed to uninstall b 1"),
    ({"outcome": "failed", "phase": "io", "message": "Is a directory"}, "manual",
     "I/O error on the endpoint (phase io): Is a directory"),
    ({"outcome": "failed", "message": "The task exceeded the timeout of 30s"}, "redistribute",
     "timed out before anything changed (task Software | apply): The task exceeded the timeout of 30s"),
    ({"outcome": "failed", "message": "MODULE FAILURE"}, "manual", "task Software | apply failed: MODULE FAILURE"),
])
def test_every_failure_phase_has_its_class_and_reason(failure, klass, reason):
    result = triage([record("h1", "ok", task="Gather"), dict(record("h1", "failed"), **failure)])
    assert result["counts"][klass] == 1
    assert result[klass][0]["reason"] == reason


def test_changed_then_failed_is_a_rollback_and_unreachable_after_a_change_is_manual():
    changed = record("h1", "changed", task=SOFTWARE)
    assert classify_run([changed, record("h1", "failed", task="Restart", message="boom")])[:2] == (
        "rollback", "changed, then task Restart failed: boom")
    assert classify_run([changed, record("h1", "unreachable", message="gone")])[0] == "manual"


def test_ignored_failures_do_not_count_and_hidden_output_stays_hidden():
    records = [record("h1", "failed", ignored=True, message="ignored"), record("h1", "changed", task=SOFTWARE)]
    assert triage(records)["success"][0]["reason"] == "changed"


def test_the_last_run_of_an_endpoint_decides():
    first = record("h1", "failed", phase="fetch", message="404", run="a", start="2026-01-01T00:00:00Z")
    retry = record("h1", "changed", run="b", start="2026-01-01T01:00:00Z")
    assert triage([retry, first])["counts"]["success"] == 1
    assert triage([first])["counts"]["redistribute"] == 1


def test_health_check_stages_and_irreversible_changes():
    check = dict(record("h1", "failed", task="Go/no-go | health", message="not ok"), stage="install_beta_check")
    assert triage([check], health_check_stages=["install_beta_check"])["rollback"][0]["reason"] == (
        "health check failed after the deployment (task Go/no-go | health): not ok")
    broken = record("h1", "failed", phase="health_check", rc=2, message="bad")
    manual = triage([broken], reversible=False)["manual"][0]
    assert manual["reason"].endswith("this change has no automatic rollback (follow the backout plan)")


def test_json_lines_text_and_hosts_that_never_ran():
    text = "\n".join(json.dumps(r) for r in (record("h1", "changed"), record("h2", "ok")))
    result = triage([text], expected=["h1", "h2", "h3"])
    assert [e["host"] for e in result["success"]] == ["h1", "h2"]
    assert result["redistribute"] == [{"host": "h3", "class": "redistribute",
                                       "reason": "no record: the distribution never reached it", "stage": None,
                                       "wave": None, "task": None, "phase": None, "rc": None, "outcome": None,
                                       "run": None, "end": None}]
    with pytest.raises(AnsibleFilterError, match="line 1 is not a JSON record"):
        triage("not json")
