"""Real failures: a failing stage stops the change order with the reason and the hosts; a playbook that
is not built yet says so; a second concurrent run is refused naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import DEMO_INVENTORY, REPO, fleet  # noqa: E402,F401

pytestmark = pytest.mark.integration


def _change_order(change_order_id, type_id, **spec):
    document = {"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                "metadata": {"id": change_order_id, "title": "integration: %s" % type_id, "requester": "alice",
                             "requested_completion": "2030-01-01"},
                "spec": {"type": type_id, "targets": {"inventory": DEMO_INVENTORY, "hosts": "production"},
                         "backout": {"plan": "nothing to back out"}}}
    document["spec"].update(spec)
    return document


def test_a_failing_stage_stops_with_the_reason_and_the_hosts(fleet):
    document = _change_order("IT-FAIL-1", "activate", software={"name": "hello-agent", "version": "9.9.9"},
                             targets={"inventory": DEMO_INVENTORY, "hosts": "beta"})
    path = fleet.write(document, "activate.yml")
    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", "IT-FAIL-1", "--gate", "change_board", user="dave")
    # The beta group holds every target, so the rollout is one wave ("activate"); all three fail, the wave
    # breaks its failure budget, the rollout halts and ends rolled back (nothing had changed).
    failed = fleet.esd_json("run", "IT-FAIL-1", "--quiet", user="erin", expect_rc=1)
    assert failed["status"] == "rolled_back"
    assert failed["hosts"] == ["prod-001", "prod-002", "prod-003"]
    assert failed["message"].startswith("change order IT-FAIL-1 rolled back: the rollout halted (3 of 3 host(s) "
                                        "failed: prod-001, prod-002, prod-003: ")
    assert failed["message"].endswith("before it changed any endpoint")
    assert "9.9.9" in failed["message"]
    status = fleet.esd_json("status", "IT-FAIL-1")
    assert status["status"] == "rolled_back"
    stage = next(step for step in status["steps"] if step["id"] == "activate")
    assert stage["hosts_failed"] == ["prod-001", "prod-002", "prod-003"]
    assert set(stage["failures"]) == {"prod-001", "prod-002", "prod-003"}
    # A rolled-back change order is final: running it again touches no host.
    fleet.esd_json("run", "IT-FAIL-1", "--quiet", user="erin", expect_rc=1)
    assert fleet.stage_starts("IT-FAIL-1") == ["activate"]


def test_a_stage_whose_playbook_is_not_built_says_so(fleet):
    document = _change_order("IT-IMAGE-1", "prepare_image",
                             image={"family": "std-server", "version": "2026.1", "source": DEMO_INVENTORY})
    path = fleet.write(document, "image.yml")
    # every playbook exists in this repository now: run against a copy of the project that lacks one
    project = os.path.join(os.path.dirname(path), "project-without-build-image")
    os.makedirs(os.path.join(project, "playbooks"))
    for name in os.listdir(REPO):
        if name != "playbooks":
            os.symlink(os.path.join(REPO, name), os.path.join(project, name))
    for name in os.listdir(os.path.join(REPO, "playbooks")):
        if name != "build_image.yml":
            os.symlink(os.path.join(REPO, "playbooks", name), os.path.join(project, "playbooks", name))
    fleet.env = dict(fleet.env, ESD_PROJECT_DIR=project)
    result = fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=1)
    assert result["message"] == ("change order IT-IMAGE-1 failed at stage build_image: playbook "
                                 "playbooks/build_image.yml is not built yet in this project: request type "
                                 "prepare_image is planned but its stage build_image cannot run")


def test_a_second_concurrent_run_is_refused_naming_the_holder(fleet):
    document = _change_order("IT-LOCK-1", "remove", software={"name": "hello-agent"})
    path = fleet.write(document, "remove.yml")
    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", "IT-LOCK-1", "--gate", "change_board", user="dave")
    env = dict(fleet.env, ESD_USER="erin", ANSIBLE_FORKS="2")
    first = subprocess.Popen(fleet.command("run", "IT-LOCK-1", "--quiet"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while fleet.state("IT-LOCK-1")["status"] != "running":
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        second = fleet.esd("run", "IT-LOCK-1", "--quiet", user="frank")
        assert second.returncode == 4
        assert "esd: change order IT-LOCK-1 is being run by another process (user erin, host " in second.stderr
        assert "pid %d" % first.pid in second.stderr
    finally:
        assert first.wait(timeout=600) == 0
    assert fleet.stage_starts("IT-LOCK-1") == ["remove_beta", "remove_wave_1"]
