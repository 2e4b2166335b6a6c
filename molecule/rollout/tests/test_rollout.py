"""Checks from outside the containers what the rollout left on each node (ESD_ROLLOUT_VERIFY=after, the
default) or the baseline before it (ESD_ROLLOUT_VERIFY=baseline). One command per node: testinfra's ansible
backend starts a process per command, which is what a scenario of six nodes pays for."""

import json
import os

STAGE = os.environ.get("ESD_ROLLOUT_VERIFY", "after")
PROBE = """python3 -c '
import json, os, subprocess
base = "/opt/esd/hello-agent"
print(json.dumps({"state": json.load(open("/var/lib/esd/software/hello-agent.json")),
                  "link": os.readlink(base + "/current"), "releases": sorted(os.listdir(base + "/releases")),
                  "answer": subprocess.check_output([base + "/current/bin/hello-agent"], text=True).strip()}))'"""


def expected(name):
    """(active, backups, committed, releases on disk) for this node."""
    if STAGE == "baseline" or name == "esd-rollout-node3":
        # node3's 1.1.0 failed its health check after unpacking: reverted by the module, confirmed by the backout.
        return "1.0.0", [], "1.0.0", ["1.0.0"]
    return "1.1.0", ["1.0.0"], "1.0.0", ["1.0.0", "1.1.0"]


def test_the_node_runs_the_expected_version(host):
    name = host.backend.get_hostname()
    active, backups, committed, releases = expected(name)
    probe = json.loads(host.check_output(PROBE))
    state = probe["state"]
    assert (state["active"], state["backups"], state["committed"]) == (active, backups, committed)
    assert sorted(state["versions"]) == releases
    assert (probe["link"], probe["releases"], probe["answer"]) == ("releases/%s" % active, releases,
                                                                   "hello-agent %s" % active)
    if STAGE == "after" and name == "esd-rollout-node3":
        activations = [e for e in state["history"] if e.get("action") == "activate" and e.get("version") == "1.1.0"]
        assert activations and (activations[-1]["result"], activations[-1]["phase"]) == ("reverted", "health_check")
