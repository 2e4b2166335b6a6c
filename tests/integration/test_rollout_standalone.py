"""Without the runner: plain ansible-playbook with the distribution_log callback, then backout.yml triaging
the logs itself (what an AWX job template does); and with the runner, a wave that breaks its failure budget
halts the rollout and the change is backed out, with no host of the later waves touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_rollout_support import REPO, RolloutFleet, active, artifacts, depot  # noqa: E402,F401

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

pytestmark = pytest.mark.integration


def test_plain_ansible_playbook_logs_the_distribution_and_backout_yml_acts_on_it(tmp_path, artifacts,  # noqa: F811
                                                                                 depot):  # noqa: F811
    fleet = RolloutFleet(tmp_path, 6, depot)
    fleet.seed(artifacts["1.0.0"], pattern="production")
    fleet.fail_health_check("prod-002")
    fleet.depot_site("prod-004", "missing")
    logs = str(tmp_path / "logs")
    fleet.env.update(ANSIBLE_CALLBACKS_ENABLED="esd.osp.distribution_log", ESD_DISTRIBUTION_LOG_DIR=logs)
    release = artifacts["1.1.0"]
    software = {"software_name": "hello-agent", "software_version": "1.1.0", "software_sha256": release["sha256"],
                "software_src": "%s/{{ esd_site }}/%s" % (depot.base, release["name"])}
    deploy = subprocess.run([ANSIBLE_PLAYBOOK, "-i", fleet.inventory, os.path.join(REPO, "playbooks", "deploy.yml"),
                             "-e", json.dumps(dict(software, esd_stage="install", esd_wave="1"))],
                            env=fleet.env, capture_output=True, text=True, cwd=REPO)
    assert deploy.returncode == 2, deploy.stdout[-3000:]
    log = os.path.join(logs, "distribution_log.jsonl")
    with open(log, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    software_records = [r for r in records if r["action"] == "esd.osp.software"]
    assert {(r["host"], r["outcome"], r["phase"]) for r in software_records} == {
        ("prod-001", "changed", None), ("prod-002", "failed", "health_check"), ("prod-003", "changed", None),
        ("prod-004", "failed", "fetch"), ("prod-005", "changed", None), ("prod-006", "changed", None)}
    assert {(r["stage"], r["wave"]) for r in records} == {("install", "1")}

    # The depot of prod-004 is repaired; the backout triages the log and acts on it.
    fleet.set_host_vars("prod-004")
    backout = subprocess.run([ANSIBLE_PLAYBOOK, "-i", fleet.inventory, os.path.join(REPO, "playbooks", "backout.yml"),
                              "-e", json.dumps(dict(software, backout_distribution_logs=[log]))],
                             env=fleet.env, capture_output=True, text=True, cwd=REPO)
    assert backout.returncode == 0, backout.stdout[-3000:]
    assert "rollback:\n" in backout.stdout and "- prod-002" in backout.stdout
    hosts = fleet.software()
    assert {host: active(record) for host, record in hosts.items()} == {
        "prod-001": "1.1.0", "prod-002": "1.0.0", "prod-003": "1.1.0", "prod-004": "1.1.0", "prod-005": "1.1.0",
        "prod-006": "1.1.0"}
    assert hosts["prod-002"]["installed"] == ["1.0.0"]


def test_a_wave_that_breaks_its_budget_halts_and_the_change_is_backed_out(tmp_path, artifacts, depot):  # noqa: F811
    fleet = RolloutFleet(tmp_path, 12, depot)
    fleet.seed(artifacts["1.0.0"], pattern="production")
    release = artifacts["1.1.0"]
    # 1.1.0 is staged everywhere beforehand; the change order activates it (no rehearsal needed for activate).
    fleet.playbook("deploy.yml", {"esd_hosts": "production", "software_name": "hello-agent",
                                  "software_version": "1.1.0", "software_state": "present",
                                  "software_src": "%s/good/%s" % (depot.base, release["name"]),
                                  "software_sha256": release["sha256"]})
    path = fleet.change_order("IT-HALT-1", "activate", software={"name": "hello-agent", "version": "1.1.0"},
                              rollout={"beta_hosts": 2, "waves": [4, 4, 4], "failure_budget_percent": 0})
    waves = {step["id"]: step["limit_hosts"] for step in fleet.esd_json("plan", path)["steps"]
             if step.get("rollout_role") == "wave"}
    assert [len(hosts) for hosts in waves.values()] == [4, 4, 2]
    failing = waves["activate_wave_1"][1]
    fleet.fail_health_check(failing)
    before = fleet.software()
    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", "IT-HALT-1", "--gate", "change_board", user="dave")
    outcome = fleet.esd_json("run", "IT-HALT-1", "--quiet", user="erin", expect_rc=1)
    assert outcome["status"] == "rolled_back"
    state = fleet.state("IT-HALT-1")
    assert state["rollout"]["endpoints"][failing]["class"] == "rollback"
    assert state["steps"]["activate_wave_2"]["status"] == "halted"
    assert fleet.stage_starts("IT-HALT-1") == ["activate_beta", "activate_wave_1", "backout"]
    after = fleet.software()
    # Every endpoint is as before: the beta group and wave 1 were rolled back, waves 2 and 3 never touched.
    for host in fleet.hosts:
        assert active(after[host]) == "1.0.0", (host, after[host])
    untouched = waves["activate_wave_2"] + waves["activate_wave_3"]
    assert {host: after[host]["last_change"] for host in untouched} == {
        host: before[host]["last_change"] for host in untouched}
    verdict = state["rollout"]["verdict"]
    assert (verdict["result"], verdict["counts"]["not_reached"], verdict["exceptions"]) == ("rolled_back", 6, [])
    assert "rolled back: the rollout halted (1 of 4 host(s) failed" in outcome["message"]
