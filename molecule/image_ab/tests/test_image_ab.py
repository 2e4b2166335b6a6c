"""Checks from outside the node that each A/B step left it in the right state (the host is the virtualisation host)."""

import json
import os

import testinfra

STEP = os.environ.get("ESD_MOLECULE_STEP", "install")
NODE = "esd-ab-node1"

# step -> (running slot, its version, stopped slot kept for rollback (slot, version) or None, committed)
EXPECTED = {
    "install": ("a", "1.0.0", None, False),
    "update": ("b", "1.1.0", ("a", "1.0.0"), False),
    "rollback": ("a", "1.0.0", None, False),
    "broken": ("a", "1.0.0", ("b", "1.1.0"), False),
    "commit": ("b", "1.1.0", None, True),
    "remove": (None, None, None, False),
}


def containers(host):
    """{container name: state} of the node's slot containers, from podman's JSON (running, exited, created)."""
    out = host.check_output("podman ps -a --filter label=org.esd-osp.node=%s --format json" % NODE)
    return dict((c["Names"][0], c["State"]) for c in json.loads(out or "[]"))


def node_state(host):
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "nodes", NODE + ".json")
    if not host.file(path).exists:
        return None
    return json.loads(host.file(path).content_string)


def test_slots(host):
    running, version, kept, committed = EXPECTED[STEP]
    found = containers(host)
    if running is None:
        assert found == {}
        return
    expected = {"%s-%s" % (NODE, running): "running"}
    if kept:
        expected["%s-%s" % (NODE, kept[0])] = "exited"
    assert found == expected


def test_state_file(host):
    running, version, kept, committed = EXPECTED[STEP]
    state = node_state(host)
    if running is None:
        assert state is None
        return
    assert state["active"] == running
    assert state["slots"][running]["version"] == version
    if kept:
        assert state["slots"][kept[0]]["version"] == kept[1]
    assert (state["committed"] == running) is committed
    if STEP == "update":
        assert state["previous"] == "a"
    if STEP == "broken":
        assert state["history"][-1]["result"] == "failed" and state["history"][-1]["reverted"]


def test_running_slot_is_the_image(host):
    running, version, kept, committed = EXPECTED[STEP]
    if running is None:
        return
    node = testinfra.get_host("podman://%s-%s" % (NODE, running))
    manifest = json.loads(node.check_output("cat /etc/esd/image.json"))
    assert manifest["version"] == version
    assert node.check_output("hostname") == NODE
    # one data volume, both slots: the mark of the first step is still there
    assert node.file("/srv/data/mark").content_string.strip() == "install"
    if version == "1.1.0":
        assert node.package("tree").is_installed
        assert manifest["parent"]["version"] == "1.0.0"


def test_data_volume_kept_until_purged(host):
    # removing the node without purge_data keeps its data (cleanup.yml purges it)
    volumes = host.check_output("podman volume ls --format '{{.Name}}'").split()
    assert "%s-data" % NODE in volumes
