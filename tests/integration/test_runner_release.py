"""A software_release change order end to end through the `esd` CLI on the 24-host demo fleet:
build -> test -> gates decided by distinct people (separation of duties refused) -> repository (build, test,
production channels; the production entry rests on the test record) -> distribute to the depot -> beta ->
go/no-go -> waves (every host installs from the depot, pinned to the signed index) -> client acceptance ->
commit. Host state is read back from the hosts, not from the ledger."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import PRODUCTION, active, backup, committed, fleet, seeded_fleet  # noqa: E402,F401

pytestmark = pytest.mark.integration
CO = "IT-RELEASE-1"


def test_software_release_end_to_end(seeded_fleet):
    fleet = seeded_fleet
    path = fleet.release(CO, rollout={"beta": "beta", "wave_size": 11})
    assert fleet.esd("validate", path).returncode == 0

    waiting = fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=3)
    assert (waiting["status"], waiting["step"]) == ("waiting", "test_signoff")
    state = fleet.state(CO)
    artifact = state["steps"]["build"]["outputs"]["artifact"]
    assert (artifact["name"], artifact["version"], artifact["builder"]) == ("hello-agent", "1.1.0", "bob")
    assert os.path.isfile(artifact["path"]) and artifact["path"].startswith(os.path.join(fleet.ledger, CO))
    assert state["steps"]["test"]["outputs"]["test"]["backout_rehearsed"] is True
    # The test hosts are as before the test: the backout (a rollback to 1.0.0) was rehearsed.
    assert {host: (active(r), committed(r)) for host, r in fleet.software("test_site").items()} == {
        "test-01": ("1.0.0", "1.0.0"), "test-02": ("1.0.0", "1.0.0")}

    refused = fleet.esd("approve", CO, "--gate", "test_signoff", "--as", "bob")
    assert refused.returncode == 2
    assert "separation of duties: bob built the artifact of change order %s and may not approve its " \
           "test_signoff gate" % CO in refused.stderr
    assert fleet.esd("approve", CO, "--gate", "test_signoff", "--as", "carol", "--comment", "passed").returncode == 0

    assert fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=3)["step"] == "change_board"
    refused = fleet.esd("approve", CO, "--gate", "change_board", "--as", "alice")
    assert refused.returncode == 2 and "alice requested change order" in refused.stderr
    assert fleet.esd("approve", CO, "--gate", "change_board", "--as", "dave").returncode == 0

    waiting = fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=3)
    assert waiting["step"] == "client_acceptance"
    # The repository: 1.1.0 went build -> test -> production; the production entry rests on the test record.
    with open(os.path.join(fleet.root, "repository", "channels", "production.json"), encoding="utf-8") as handle:
        production = json.load(handle)
    entry = next(e for e in production["entries"] if (e["name"], e["version"]) == ("hello-agent", "1.1.0"))
    assert entry["sha256"] == artifact["sha256"]
    assert (entry["from_channel"], entry["evidence"], entry["promoted_by"]) == ("test", CO, "erin")
    assert (entry["test_record"]["id"], entry["test_record"]["result"]) == ("%s-test" % CO, "passed")
    promotion = fleet.state(CO)["steps"]["promote"]["outputs"]["promotion"]
    assert (promotion["channel"], promotion["sha256"]) == ("production", artifact["sha256"])
    # The depot holds the blob (checked by its digest) and publishes the same signed index.
    depot = os.path.join(fleet.root, "hosts", "depot-01", "srv", "esd", "depot")
    with open(os.path.join(depot, "blobs", "sha256", artifact["sha256"]), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == artifact["sha256"]
    with open(os.path.join(depot, "channels", "production.json"), encoding="utf-8") as handle:
        assert json.load(handle)["serial"] == production["serial"]
    assert int(fleet.state(CO)["steps"]["distribute"]["outputs"]["distribution"]["depot-01"]["blobs_fetched"]) == 1
    # Every production host installed exactly that digest, from the depot's URL.
    for host in PRODUCTION:
        with open(os.path.join(fleet.root, "hosts", host, "var", "lib", "esd", "software", "hello-agent.json"),
                  encoding="utf-8") as handle:
            assert json.load(handle)["versions"]["1.1.0"]["sha256"] == entry["sha256"], host
    depot_blob = "file://%s/blobs/sha256/%s" % (os.path.normpath(depot), entry["sha256"])
    sources = {}
    for event_file in glob.glob(os.path.join(fleet.ledger, CO, "stages", "install_*", "attempt-1", "artifacts",
                                             "attempt-1", "job_events", "*.json")):
        with open(event_file, encoding="utf-8") as handle:
            event = json.load(handle)
        data = event.get("event_data") or {}
        args = ((data.get("res") or {}).get("invocation") or {}).get("module_args") or {}
        if event.get("event") == "runner_on_ok" and data.get("task_action") == "esd.osp.software":
            sources[data["host"]] = (args.get("src"), args.get("sha256"))
    assert sources == {host: (depot_blob, entry["sha256"]) for host in PRODUCTION}
    hosts = fleet.software()
    assert sorted(hosts) == PRODUCTION
    # Updated everywhere, not yet permanent: 1.0.0 is the backup until the commit.
    assert {host: (active(r), backup(r), committed(r)) for host, r in hosts.items()} == {
        host: ("1.1.0", "1.0.0", "1.0.0") for host in PRODUCTION}

    assert fleet.esd("approve", CO, "--gate", "client_acceptance", "--as", "alice").returncode == 0
    done = fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=0)
    assert done["status"] == "succeeded"
    assert {host: (active(r), backup(r), committed(r)) for host, r in fleet.software().items()} == {
        host: ("1.1.0", None, "1.1.0") for host in PRODUCTION}

    assert fleet.stage_starts(CO) == ["build", "test", "promote_test", "promote", "distribute", "install_beta",
                                      "install_wave_1", "install_wave_2", "commit"]
    status = fleet.esd_json("status", CO)
    assert status["status"] == "succeeded"
    assert status["audit"]["verified"] is True
    assert [(s["id"], s.get("decided_by")) for s in status["steps"] if s["kind"] == "gate"] == [
        ("test_signoff", "carol"), ("change_board", "dave"), ("go_no_go", "esd"), ("client_acceptance", "alice")]
    assert {s["id"]: s["hosts_ok"] for s in status["steps"] if s["kind"] == "stage"} == {
        "build": 1, "test": 2, "promote_test": 1, "promote": 1, "distribute": 1, "install_beta": 3,
        "install_wave_1": 11, "install_wave_2": 10, "backout": 0, "commit": 24}
    assert all(endpoint["committed"] == "1.1.0" for endpoint in status["endpoints"].values())
    assert len(status["endpoints"]) == 24

    # Each stage attempt kept its own ansible-runner private data dir and artifacts.
    stage_dir = os.path.join(fleet.ledger, CO, "stages", "install_beta", "attempt-1")
    assert os.path.isfile(os.path.join(stage_dir, "artifacts", "attempt-1", "status"))
    assert open(os.path.join(stage_dir, "limit")).read().split() == ["prod-001", "prod-002", "prod-003"]

    assert fleet.esd("log", CO, "--verify").returncode == 0
    listing = fleet.esd_json("list")
    assert [(row["id"], row["status"]) for row in listing["change_orders"]] == [(CO, "succeeded")]
    # Running a finished change order again changes nothing.
    assert fleet.esd_json("run", CO, "--quiet", user="erin")["status"] == "succeeded"
    assert len(fleet.stage_starts(CO)) == 9
