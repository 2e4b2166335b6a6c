"""Checks from outside the containers that each lifecycle step left the node in the right state."""

import json
import os

import pytest

STEP = os.environ.get("ESD_MOLECULE_STEP", "activate")
BASE = "/opt/esd/hello-agent"
STATE = "/var/lib/esd/software/hello-agent.json"

# step -> (active, backups, committed, releases on disk)
EXPECTED = {
    "install": (None, [], None, ["1.0.0"]),
    "activate": ("1.0.0", [], None, ["1.0.0"]),
    "update": ("1.1.0", ["1.0.0"], None, ["1.0.0", "1.1.0"]),
    "broken": ("1.1.0", ["1.0.0"], None, ["1.0.0", "1.1.0"]),
    "rollback": ("1.0.0", [], None, ["1.0.0"]),
    "commit": ("1.1.0", [], "1.1.0", ["1.1.0"]),
    "remove": (None, [], None, None),
}


def state(host):
    return json.loads(host.file(STATE).content_string)


def test_state_file_records_the_step(host):
    active, backups, committed, releases = EXPECTED[STEP]
    recorded = state(host)
    assert recorded["active"] == active
    assert recorded["backups"] == backups
    assert recorded["committed"] == committed
    assert sorted(recorded["versions"]) == (releases or [])


def test_releases_on_disk(host):
    releases = EXPECTED[STEP][3]
    if releases is None:
        assert not host.file(BASE).exists
        return
    assert sorted(host.file(BASE + "/releases").listdir()) == releases
    for version in releases:
        manifest = json.loads(host.file("%s/releases/%s/.esd/manifest.json" % (BASE, version)).content_string)
        assert manifest["version"] == version
        assert host.file("%s/releases/%s/bin/hello-agent" % (BASE, version)).mode == 0o755


def test_current_link_and_running_agent(host):
    active = EXPECTED[STEP][0]
    link = host.file(BASE + "/current")
    if active is None:
        assert not link.exists
        return
    assert link.is_symlink and link.linked_to == "%s/releases/%s" % (BASE, active)
    assert host.check_output(BASE + "/current/bin/hello-agent") == "hello-agent %s" % active
    assert host.check_output(BASE + "/current/bin/hello-agent --health") == "ok"


def test_history_of_the_broken_release(host):
    if STEP != "broken":
        pytest.skip("only the broken step records a reverted activation")
    history = state(host)["history"]
    reverted = [h for h in history if h["version"] == "1.2.0"]
    assert [(h["action"], h["result"]) for h in reverted[-2:]] == [("activate", "reverted"), ("remove", "reverted")]
    assert reverted[-2]["phase"] == "health_check"


def test_activation_log_written_by_the_hooks(host):
    log = host.file("/var/log/hello-agent/activations.log")
    if STEP == "install":
        assert not log.exists
        return
    lines = log.content_string.splitlines()
    assert lines[0] == "activated 1.0.0 (previous: none)"
    if STEP == "remove":
        assert lines[-1] == "removed 1.1.0"
