"""Gates on real runs: a run stops at a pending gate with exit code 3 and continues after the approval;
a denied gate stops the change order for good (exit code 5) with production untouched."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import PRODUCTION, active, fleet, seeded_fleet  # noqa: E402,F401

pytestmark = pytest.mark.integration


def test_a_manual_go_no_go_stops_after_the_beta_group_and_continues_after_approval(seeded_fleet):
    fleet = seeded_fleet
    co = "IT-GATE-GO"
    path = fleet.release(co, rollout={"beta": "beta", "go_no_go": "manual"}, approvals={"approvers": {
        "change_board": ["dave"], "go_no_go": ["frank"]}})
    fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=3)
    fleet.esd_json("approve", co, "--gate", "test_signoff", user="carol")
    fleet.esd_json("run", co, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", co, "--gate", "change_board", user="dave")

    waiting = fleet.esd_json("run", co, "--quiet", user="erin", expect_rc=3)
    assert (waiting["status"], waiting["step"]) == ("waiting", "go_no_go")
    hosts = fleet.software()
    assert {h for h, r in hosts.items() if active(r) == "1.1.0"} == {"prod-001", "prod-002", "prod-003"}
    assert all(active(hosts[h]) == "1.0.0" for h in PRODUCTION[3:])

    # Only the named approver may decide; the status says what the run waits for.
    refused = fleet.esd("approve", co, "--gate", "go_no_go", "--as", "erin")
    assert refused.returncode == 2 and "its approvers are frank" in refused.stderr
    status = fleet.esd_json("status", co)
    assert status["status"] == "waiting" and status["current_step"] == "go_no_go"
    assert fleet.esd_json("approve", co, "--gate", "go_no_go", "--comment", "beta healthy", user="frank")[
        "message"] == "gate go_no_go of %s approved by frank; continue with `esd run %s`" % (co, co)

    assert fleet.esd_json("run", co, "--quiet", user="erin")["status"] == "succeeded"
    assert {h: active(r) for h, r in fleet.software().items()} == {h: "1.1.0" for h in PRODUCTION}
    assert fleet.stage_starts(co) == ["build", "test", "promote_test", "promote", "distribute", "install_beta",
                                      "install_wave_1", "commit"]


def test_a_denied_gate_stops_the_change_order(seeded_fleet):
    fleet = seeded_fleet
    co = "IT-GATE-DENY"
    path = fleet.release(co, approvals=None)
    assert fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=3)["step"] == "test_signoff"
    denied = fleet.esd_json("deny", co, "--gate", "test_signoff", "--comment", "test report incomplete",
                            user="carol", expect_rc=5)
    assert denied["status"] == "denied"
    assert denied["message"] == "gate test_signoff denied by carol: test report incomplete"
    again = fleet.esd_json("run", co, "--quiet", user="erin", expect_rc=5)
    assert again["status"] == "denied"
    assert fleet.stage_starts(co) == ["build", "test"]
    assert {h: active(r) for h, r in fleet.software().items()} == {h: "1.0.0" for h in PRODUCTION}
    status = fleet.esd_json("status", co)
    gate = next(step for step in status["steps"] if step["id"] == "test_signoff")
    assert (gate["status"], gate["decided_by"], gate["comment"]) == ("denied", "carol", "test report incomplete")
    assert fleet.esd("log", co, "--verify").returncode == 0
