"""Production stages take the package from the host's depot, pinned to the signed production index: a tampered
index on the depot makes the install refuse with a clear error before any host changes; once the depot publishes
the signed index again, the same install takes the package from the depot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import DEMO_INVENTORY, REPO, active, committed, fleet, seeded_fleet  # noqa: E402,F401

pytestmark = pytest.mark.integration
CO = "IT-TAMPER-1"
BETA = ["prod-001", "prod-002", "prod-003"]


def _playbook(fleet, name, *extra):
    proc = subprocess.run(["ansible-playbook", "-i", DEMO_INVENTORY, os.path.join(REPO, "playbooks", name), *extra],
                          env=fleet.env, capture_output=True, text=True, cwd=REPO, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (name, proc.stdout[-3000:], proc.stderr[-3000:])


def _release_to_the_depot(fleet):
    """hello-agent 1.1.0 built, entered into the repository, promoted to production on a test record, distributed."""
    artifact, digest = _build(fleet)
    _playbook(fleet, "promote.yml", "-e", json.dumps({"promote_name": "hello-agent", "promote_version": "1.1.0",
                                                       "promote_src": artifact, "promote_channel": "test"}))
    _playbook(fleet, "promote.yml", "-e", json.dumps({
        "promote_name": "hello-agent", "promote_version": "1.1.0", "promote_evidence": "IT-TEST-1",
        "promote_test_record": {"id": "IT-TEST-1", "name": "hello-agent", "version": "1.1.0", "sha256": digest,
                                "result": "passed"}}))
    _playbook(fleet, "distribute.yml")
    return artifact, digest


def _build(fleet):
    dest = os.path.join(fleet.root, "artifacts")
    _playbook(fleet, "build_package.yml", "-e", json.dumps({
        "build_package_src": os.path.join(REPO, "examples", "packages", "hello-agent-1.1"),
        "build_package_dest": dest, "build_package_scan": False, "build_package_builder": "bob"}))
    artifact = os.path.join(dest, "hello-agent-1.1.0.esdpkg")
    import hashlib
    with open(artifact, "rb") as handle:
        return artifact, hashlib.sha256(handle.read()).hexdigest()


def _repository_entry(fleet, channel, name="hello-agent", version="1.1.0"):
    entries = (_repository_channels(fleet, name).get(channel) or {}).get("entries") or []
    return next((e for e in entries if e["version"] == version), None)


def test_add_to_production_rests_on_the_test_change_order_named_in_the_backout(seeded_fleet):
    """add_to_production through the runner: the change board is refused until the change order named in
    spec.backout.rehearsed_in has tested this digest with a rehearsed backout; then the package is entered into
    the repository and promoted to production on that test record."""
    fleet = seeded_fleet
    artifact, digest = _build(fleet)
    software = {"name": "hello-agent", "version": "1.1.0", "artifact": artifact, "sha256": digest}
    path = fleet.write({
        "apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
        "metadata": {"id": "IT-ADD-1", "title": "integration: add hello-agent 1.1.0 to production",
                     "requester": "alice", "requested_completion": "2030-01-01"},
        "spec": {"type": "add_to_production", "software": software, "targets": {"inventory": DEMO_INVENTORY},
                 "backout": {"plan": "retire 1.1.0", "rehearsed_in": "IT-TEST-ADD"}}}, "IT-ADD-1.yml")
    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    refused = fleet.esd("approve", "IT-ADD-1", "--gate", "change_board", user="dave")
    assert refused.returncode != 0
    assert "spec.backout.rehearsed_in: change order IT-TEST-ADD is not in the ledger" in refused.stderr
    assert _repository_entry(fleet, "production") is None

    fleet.esd_json("run", fleet.write({
        "apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
        "metadata": {"id": "IT-TEST-ADD", "title": "integration: test hello-agent 1.1.0", "requester": "alice",
                     "requested_completion": "2030-01-01"},
        "spec": {"type": "test_package", "software": dict(software, builder="bob"),
                 "targets": {"inventory": DEMO_INVENTORY}}}, "IT-TEST-ADD.yml"), "--quiet", user="carol", expect_rc=3)
    fleet.esd_json("approve", "IT-ADD-1", "--gate", "change_board", user="dave")
    fleet.esd_json("run", "IT-ADD-1", "--quiet", user="erin")
    state = fleet.state("IT-ADD-1")
    assert state["status"] == "succeeded", state.get("reason")
    entry = _repository_entry(fleet, "production")
    assert entry["sha256"] == digest and entry["from_channel"] == "test"
    assert entry["evidence"] == "IT-TEST-ADD" and entry["promoted_by"] == "erin"
    assert (entry["test_record"]["id"], entry["test_record"]["result"]) == ("IT-TEST-ADD-test", "passed")


def test_a_tampered_depot_index_refuses_the_install_and_changes_no_host(seeded_fleet):
    fleet = seeded_fleet
    artifact, digest = _release_to_the_depot(fleet)
    # The test site rehearsed the backout of this artifact (production approval needs it).
    fleet.esd_json("run", fleet.write({
        "apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
        "metadata": {"id": "IT-TEST-1", "title": "integration: test hello-agent 1.1.0", "requester": "alice",
                     "requested_completion": "2030-01-01"},
        "spec": {"type": "test_package",
                 "software": {"name": "hello-agent", "version": "1.1.0", "artifact": artifact, "sha256": digest,
                              "builder": "bob"},
                 "targets": {"inventory": DEMO_INVENTORY}}}, "IT-TEST-1.yml"), "--quiet", user="carol", expect_rc=3)
    depot = os.path.join(fleet.root, "hosts", "depot-01", "srv", "esd", "depot")
    assert os.path.isfile(os.path.join(depot, "blobs", "sha256", digest))
    index_path = os.path.join(depot, "channels", "production.json")
    with open(index_path, encoding="utf-8") as handle:
        original = handle.read()
    index = json.loads(original)
    # Someone points the depot's index at another blob (keeping the signature): the index no longer verifies.
    entry = next(e for e in index["entries"] if (e["name"], e["version"]) == ("hello-agent", "1.1.0"))
    entry["size"] += 1
    with open(index_path, "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1, sort_keys=True)

    def install(change_order_id):
        # No spec.software.artifact: each host takes the package from its depot, pinned to the signed index.
        document = {"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                    "metadata": {"id": change_order_id, "title": "integration: install from the depot",
                                 "requester": "alice", "requested_completion": "2030-01-01"},
                    "spec": {"type": "install",
                             "software": {"name": "hello-agent", "version": "1.1.0", "sha256": digest},
                             "targets": {"inventory": DEMO_INVENTORY, "hosts": "beta"},
                             "backout": {"plan": "re-activate 1.0.0", "rehearsed_in": "IT-TEST-1"}}}
        path = fleet.write(document, "%s.yml" % change_order_id)
        fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
        fleet.esd_json("approve", change_order_id, "--gate", "change_board", user="dave")
        result = fleet.esd("run", change_order_id, "--quiet", "--json", user="erin")
        return result.returncode, fleet.state(change_order_id)

    rc, state = install(CO)
    assert rc != 0 and state["status"] != "succeeded"
    stage = state["steps"]["install"]
    assert stage["status"] == "failed"
    assert sorted(stage["failures"]) == BETA
    for host in BETA:
        message = stage["failures"][host]["message"]
        assert message.startswith("hello-agent 1.1.0: no software_src was given and the signed production index of "
                                  "file://"), message
        assert "refusing to trust" in message and "was modified after it was signed" in message, message
        assert message.endswith("; nothing was changed"), message
    # No host changed: the baseline is active and committed everywhere, nothing of 1.1.0 was unpacked.
    hosts = fleet.software("production")
    assert {host: (active(r), committed(r)) for host, r in hosts.items()} == {
        host: ("1.0.0", "1.0.0") for host in hosts}
    for host in BETA:
        assert not os.path.exists(os.path.join(fleet.root, "hosts", host, "opt", "esd", "hello-agent", "releases",
                                               "1.1.0"))

    # The depot publishes the signed index again: the same install takes the package from the depot, pinned.
    with open(index_path, "w", encoding="utf-8") as handle:
        handle.write(original)
    rc, state = install(CO + "-AGAIN")
    assert (rc, state["status"]) == (0, "succeeded")
    assert {host: active(r) for host, r in fleet.software("beta").items()} == {host: "1.1.0" for host in BETA}
    for host in BETA:
        with open(os.path.join(fleet.root, "hosts", host, "var", "lib", "esd", "software", "hello-agent.json"),
                  encoding="utf-8") as handle:
            assert json.load(handle)["versions"]["1.1.0"]["sha256"] == digest


def _approved_run(fleet, change_order_id, type_id, software, hosts=None):
    spec = {"type": type_id, "software": software,
            "targets": dict({"inventory": DEMO_INVENTORY}, **({"hosts": hosts} if hosts else {})),
            "backout": {"plan": "promote and distribute the package again"}}
    path = fleet.write({"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                        "metadata": {"id": change_order_id, "title": "integration: %s" % type_id, "requester": "alice",
                                     "requested_completion": "2030-01-01"}, "spec": spec}, "%s.yml" % change_order_id)
    fleet.esd_json("run", path, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", change_order_id, "--gate", "change_board", user="dave")
    fleet.esd_json("run", change_order_id, "--quiet", user="erin")
    return fleet.state(change_order_id)


def _repository_channels(fleet, name="hello-agent"):
    """{channel: {entries: [...]}} of the repository, read with esd.osp.repository_info."""
    proc = subprocess.run(["ansible", "repository", "-i", DEMO_INVENTORY, "-m", "esd.osp.repository_info", "-a",
                           "path=%s name=%s" % (os.path.join(fleet.root, "repository"), name), "-o"],
                          env=fleet.env, capture_output=True, text=True, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1]).get("channels") or {}     # none before the first promotion


def _repository_versions(fleet, name="hello-agent"):
    """{channel: [versions]} from the repository's channels."""
    return {channel: [entry["version"] for entry in data["entries"]]
            for channel, data in _repository_channels(fleet, name).items()}


def test_delete_package_and_retire_through_the_runner(seeded_fleet):
    fleet = seeded_fleet
    _, digest = _release_to_the_depot(fleet)
    depot_blob = os.path.join(fleet.root, "hosts", "depot-01", "srv", "esd", "depot", "blobs", "sha256", digest)
    cached = os.path.join(fleet.root, "hosts", "prod-001", "var", "cache", "esd", "downloads", digest + ".esdpkg")
    # prod-001 keeps a download of 1.1.0 in esd.osp.software's cache, as an http(s) depot download leaves it.
    os.makedirs(os.path.dirname(cached))
    import shutil
    shutil.copyfile(depot_blob, cached)

    # delete_package: the depot's blob and the node's cached copy go; nothing is uninstalled, the repository
    # keeps the package.
    state = _approved_run(fleet, "IT-DELETE-1", "delete_package", {"name": "hello-agent", "version": "1.1.0"},
                          hosts="depot-01,prod-001")
    assert state["status"] == "succeeded", state.get("reason")
    # (repo-01: the repository play, which drops channel entries only when delete_package_channels names some)
    assert sorted(state["steps"]["delete_package"]["hosts"]["ok"]) == ["depot-01", "prod-001", "repo-01"]
    assert not os.path.exists(depot_blob) and not os.path.exists(cached)
    assert {host: active(r) for host, r in fleet.software("prod-001").items()} == {"prod-001": "1.0.0"}
    assert "1.1.0" in _repository_versions(fleet)["production"]

    # retire: 1.1.0 leaves every channel of the repository and the depot's signed index.
    state = _approved_run(fleet, "IT-RETIRE-1", "retire", {"name": "hello-agent", "version": "1.1.0"})
    assert state["status"] == "succeeded", state.get("reason")
    assert state["steps"]["retire"]["outputs"]["retirement"]["action"] == "retire"
    assert all("1.1.0" not in versions for versions in _repository_versions(fleet).values())
    with open(os.path.join(fleet.root, "hosts", "depot-01", "srv", "esd", "depot", "channels", "production.json"),
              encoding="utf-8") as handle:
        listed = {(e["name"], e["version"]) for e in json.load(handle)["entries"]}
    assert ("hello-agent", "1.1.0") not in listed
