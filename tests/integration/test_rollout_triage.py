"""A production rollout on a 100-host demo fleet where chosen endpoints fail in every way.

beta (5%, spread) -> automatic go/no-go -> waves [10%, 50%, 100%] with failure budgets [15%, 12%, 12%] ->
triage -> backout review (a person) -> backout (rollback + redistribution, 2 attempts) -> verdict.
Failing on purpose (see test_rollout_support): 3 health-check failures (rollback), 2 unreachable,
2 missing from the depot, 2 corrupt downloads (redistribute) and 1 I/O error (manual). Between the
triage and the backout one unreachable host comes back and one depot is repaired: exactly those two
are redistributed, every other failure stays an exception with an open problem record. The HTML
distribution report is rendered by headless Chromium and checked.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_rollout_support import RolloutFleet, active, artifacts, depot  # noqa: E402,F401

pytestmark = pytest.mark.integration

FLEET = 100
CO = "IT-ROLLOUT-100"


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, artifacts, depot):  # noqa: F811
    fleet = RolloutFleet(tmp_path_factory.mktemp("rollout"), FLEET, depot)
    fleet.seed(artifacts["1.0.0"])
    release = artifacts["1.1.0"]
    software = {"name": "hello-agent", "version": "1.1.0", "sha256": release["sha256"],
                # Each host downloads from its site's depot: the depot path comes from the inventory.
                "artifact": "%s/{{esd_site}}/%s" % (depot.base, release["name"])}
    test = fleet.change_order("IT-TEST-1", "test_package", software=dict(software, builder="bob"))
    fleet.esd_json("run", test, "--quiet", user="carol", expect_rc=3)        # tested, waits for its sign-off

    path = fleet.change_order(
        CO, "install", software=software,
        rollout={"beta_hosts": "5%", "go_no_go": "automatic", "min_success_percent": 100,
                 "waves": ["10%", "50%", "100%"], "failure_budget_percent": [15, 12, 12]},
        approvals={"required": ["backout_review"]},
        backout={"plan": "roll back the endpoints that failed after changing; redistribute to the others",
                 "strategy": "rollback_update", "rehearsed_in": "IT-TEST-1", "redistribute_attempts": 2,
                 "retry_delay_seconds": 0})
    plan = fleet.esd_json("plan", path)
    waves = {step["id"]: step["limit_hosts"] for step in plan["steps"] if step.get("rollout_role") in ("beta", "wave")}
    beta, wave1, wave2, wave3 = (waves[key] for key in ("install_beta", "install_wave_1", "install_wave_2",
                                                        "install_wave_3"))
    chosen = {
        "health": [wave1[3], wave2[10], wave3[5]],
        "unreachable": [wave2[2], wave2[4]],
        "missing": [wave2[6], wave3[1]],
        "corrupt": [wave2[8], wave3[3]],
        "io": [wave3[7]],
    }
    for host in chosen["health"]:
        fleet.fail_health_check(host)
    for host in chosen["unreachable"]:
        fleet.unreachable(host)
    for host in chosen["missing"]:
        fleet.depot_site(host, "missing")
    for host in chosen["corrupt"]:
        fleet.depot_site(host, "corrupt")
    for host in chosen["io"]:
        fleet.break_state_lock(host)

    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", CO, "--gate", "change_board", user="dave")
    waiting = fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=3)
    initial = {klass: fleet.limit_file(CO, "initial", klass) for klass in
               ("success", "redistribute", "rollback", "manual", "not_reached")}
    # Between triage and backout: one host is reachable again and one site's depot is repaired.
    fixed = {"unreachable": chosen["unreachable"][0], "missing": chosen["missing"][0]}
    fleet.set_host_vars(fixed["unreachable"])
    fleet.set_host_vars(fixed["missing"])
    fleet.esd_json("approve", CO, "--gate", "backout_review", "--comment", "triage reviewed", user="frank")
    finished = fleet.esd_json("run", CO, "--quiet", user="erin")
    return {"fleet": fleet, "plan": plan, "beta": beta, "waves": (wave1, wave2, wave3), "chosen": chosen,
            "waiting": waiting, "initial": initial, "fixed": fixed, "finished": finished}


def test_the_plan_has_a_spread_beta_group_and_serial_like_waves(rollout):
    assert rollout["beta"] == ["prod-%03d" % n for n in (1, 21, 41, 61, 81)]    # 5% of 100, spread evenly
    assert [len(wave) for wave in rollout["waves"]] == [9, 47, 39]              # 10%, 50%, the rest of 95


def test_the_triage_classifies_exactly_the_failing_endpoints(rollout):
    chosen, initial = rollout["chosen"], rollout["initial"]
    assert rollout["waiting"]["step"] == "backout_review"
    assert initial["rollback"] == sorted(chosen["health"])
    assert initial["redistribute"] == sorted(chosen["unreachable"] + chosen["missing"] + chosen["corrupt"])
    assert initial["manual"] == chosen["io"]
    assert initial["not_reached"] == []
    assert len(initial["success"]) == FLEET - 10
    with open(os.path.join(rollout["fleet"].ledger, CO, "triage", "initial", "triage.json"), encoding="utf-8") as fh:
        endpoints = json.load(fh)["endpoints"]
    reasons = {host: endpoints[host]["reason"] for host in endpoints}
    assert all(reasons[h].startswith("health check failed (phase health_check, rc 3) and was reverted: ")
               for h in chosen["health"])
    assert all(reasons[h].startswith("unreachable: ") for h in chosen["unreachable"])
    assert all(reasons[h].startswith("download failed (phase fetch): Failed to fetch http://127.0.0.1:")
               and "404" in reasons[h] for h in chosen["missing"])
    assert all(reasons[h].startswith("checksum verification failed (phase verify): Checksum mismatch for ")
               for h in chosen["corrupt"])
    assert reasons[chosen["io"][0]].startswith("I/O error on the endpoint (phase io): ")


def test_the_backout_rolls_back_redistributes_and_the_verdict_names_every_exception(rollout):
    fleet, chosen, fixed = rollout["fleet"], rollout["chosen"], rollout["fixed"]
    assert rollout["finished"]["status"] == "succeeded"
    state = fleet.state(CO)
    verdict = state["rollout"]["verdict"]
    still_failing = sorted(set(chosen["unreachable"] + chosen["missing"] + chosen["corrupt"])
                           - set(fixed.values()))
    assert verdict["result"] == "complete_with_exceptions"
    assert {e["host"]: e["status"] for e in verdict["exceptions"]} == {
        **{host: "rolled_back" for host in chosen["health"]},
        **{host: "failed" for host in still_failing},
        chosen["io"][0]: "manual"}
    assert verdict["counts"]["success"] == FLEET - 8
    # Two backout attempts: everything at first, then only what still failed to redistribute.
    attempts = state["rollout"]["backout_attempts"]
    assert [(a["rollback"], a["redistribute"]) for a in attempts] == [
        (sorted(chosen["health"]), sorted(chosen["unreachable"] + chosen["missing"] + chosen["corrupt"])),
        ([], still_failing)]
    assert fleet.stage_starts(CO) == ["install_beta", "install_wave_1", "install_wave_2", "install_wave_3",
                                      "backout", "backout"]
    assert fleet.limit_file(CO, "final", "rolled_back") == sorted(chosen["health"])
    assert fleet.limit_file(CO, "final", "failed") == still_failing

    # What the hosts say (read from them, not from the ledger).
    hosts = fleet.software()
    for host in chosen["health"]:
        assert active(hosts[host]) == "1.0.0" and hosts[host]["installed"] == ["1.0.0"], hosts[host]
    for host in fixed.values():
        assert active(hosts[host]) == "1.1.0"
    for host in chosen["missing"] + chosen["corrupt"]:
        if host not in fixed.values():
            assert active(hosts[host]) == "1.0.0"
    others = set(fleet.hosts) - set(sum(chosen.values(), []))
    assert {host: active(hosts[host]) for host in others} == {host: "1.1.0" for host in others}


def test_problem_records_are_opened_for_failures_and_closed_when_a_retry_succeeds(rollout):
    fleet, chosen, fixed = rollout["fleet"], rollout["chosen"], rollout["fixed"]
    records = fleet.problems(CO)
    failing = sum(chosen.values(), [])
    assert sorted(records) == sorted("PRB-%s-%s" % (CO, host) for host in failing)
    closed = sorted(record["host"] for record in records.values() if record["status"] == "closed")
    assert closed == sorted(fixed.values())
    assert all(records["PRB-%s-%s" % (CO, host)]["resolution"] == "redistributed successfully" for host in closed)
    rolled_back = records["PRB-%s-%s" % (CO, chosen["health"][0])]
    assert rolled_back["status"] == "open" and rolled_back["resolution"].startswith("rolled back")
    assert fleet.esd("log", CO, "--verify").returncode == 0


def test_the_distribution_report_lists_waves_triage_and_exceptions(rollout):
    fleet, chosen = rollout["fleet"], rollout["chosen"]
    directory = os.path.join(fleet.ledger, CO, "report")
    with open(os.path.join(directory, "distribution.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert [(s["id"], s["hosts"], s["ok"]) for s in report["stages"] if s["role"] in ("beta", "wave")] == [
        ("install_beta", 5, 5), ("install_wave_1", 9, 8), ("install_wave_2", 47, 42), ("install_wave_3", 39, 35)]
    assert report["triage"]["initial"]["counts"] == {"success": 90, "redistribute": 6, "rollback": 3, "manual": 1,
                                                     "not_reached": 0}
    assert [(a["rolled_back"], len(a["redistributed"])) for a in report["backout_attempts"]] == [
        (sorted(chosen["health"]), 2), ([], 0)]
    with open(os.path.join(directory, "distribution.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "**Verdict:** complete with 8 exception(s): 92 of 100 endpoint(s) have the change" in markdown
    for host in chosen["health"]:
        assert "| %s | rolled back | rolled back: health check failed" % host in markdown
    with open(os.path.join(directory, "distribution.html"), encoding="utf-8") as handle:
        page = handle.read()
    assert "<script" not in page and "http://" not in page.split("<body>")[0]     # self-contained


def test_the_html_report_renders_in_headless_chromium(rollout, tmp_path):
    from helpers.browser import require_browser

    browser = require_browser()
    page_path = os.path.join(rollout["fleet"].ledger, CO, "report", "distribution.html")
    screenshot = str(tmp_path / "distribution.png")
    page = browser.render(page_path, screenshot)
    assert page.screenshot_looks_rendered()
    for table in ("waves", "triage", "exceptions", "backout", "endpoints", "problems"):
        assert '<table id="%s">' % table in page.dom
    assert page.dom.count('<rect class="bar"') == 4                 # beta and three waves
    assert 'id="success-chart"' in page.dom
    assert page.text_contains("Distribution report", CO)
    keep = os.environ.get("ESD_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(screenshot, keep)
