"""The production site for OS images on the demo fleet: promote, distribute, provision from the depot, update in
place, retire (refused while a node runs the image), roll back, remove - the playbooks the runner's OSP request
types call, one after the other, with real podman nodes.

Uses the debian12-server 1.0.0 and 1.1.0 images that test_image_build.py left in /var/tmp/esd-test-images
(built here when they are not there).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.images import shared_images  # noqa: E402

FAMILY = "debian12-server"
NODE = "prod-001"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Site:
    """The demo fleet under a temporary ESD_DEMO_ROOT, and ansible-playbook on it."""

    def __init__(self, repo_root, env, tmp_path):
        self.repo_root = str(repo_root)
        self.root = str(tmp_path / "fleet")
        self.nodes = str(tmp_path / "nodes")
        self.env = dict(env, ESD_DEMO_ROOT=self.root, ESD_USER="dave", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                        ANSIBLE_SHOW_CUSTOM_STATS="true")

    def run(self, playbook, limit=None, **extravars):
        extravars = dict({"image_node_state_dir": self.nodes, "image_node_network": "none"}, **extravars)
        cmd = ["ansible-playbook", os.path.join("playbooks", playbook), "-e", json.dumps(extravars)]
        if limit:
            cmd += ["-l", limit]
        result = subprocess.run(cmd, cwd=self.repo_root, env=self.env, capture_output=True, text=True, timeout=1800,
                                stdin=subprocess.DEVNULL)
        try:
            report = json.loads(result.stdout)
        except ValueError:
            return result.returncode, {}, result.stdout[-6000:] + result.stderr[-3000:]
        failures = ["%s: %s" % (task["task"]["name"], res.get("msg"))
                    for play in report.get("plays", []) for task in play.get("tasks", [])
                    for res in task.get("hosts", {}).values() if res.get("failed")]
        return result.returncode, report.get("global_custom_stats", {}), "\n".join(failures) + result.stderr[-3000:]

    def ok(self, playbook, limit=None, **extravars):
        rc, stats, out = self.run(playbook, limit, **extravars)
        assert rc == 0, "%s failed:\n%s" % (playbook, out)
        return stats

    def node(self):
        path = os.path.join(self.nodes, NODE + ".json")
        return json.load(open(path)) if os.path.exists(path) else None


@pytest.fixture(scope="module")
def images(repo_root, project_env, tmp_path_factory):
    """Copies of 1.0.0 and 1.1.0 with the passing test reports test_image.yml would have written beside them."""
    shared = shared_images(repo_root)
    work = tmp_path_factory.mktemp("handover")
    found = {}
    for version, base in (("1.0.0", None), ("1.1.0", "1.0.0")):
        archive = os.path.join(shared, "%s-%s.rootfs.tar.gz" % (FAMILY, version))
        if not os.path.isfile(archive):
            inventory = work / "hosts.json"
            inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3", path=os.environ["PATH"])}}}}))
            extravars = {"esd_hosts": "localhost", "image_source": "examples/images/debian12-server", "image_version": version,
                         "image_dest": shared, "build_image_unit_test": False}
            if base:
                extravars["image_base"] = os.path.join(shared, "%s-%s.rootfs.tar.gz" % (FAMILY, base))
            built = subprocess.run(["ansible-playbook", "-i", str(inventory), "playbooks/build_image.yml", "-e",
                                    json.dumps(extravars)], cwd=repo_root, env=project_env, capture_output=True,
                                   text=True, timeout=2400, stdin=subprocess.DEVNULL)
            assert built.returncode == 0, built.stdout[-6000:]
        copy = str(work / os.path.basename(archive))
        try:
            os.link(archive, copy)
        except OSError:
            shutil.copyfile(archive, copy)
        digest = sha256(copy)
        with open(os.path.join(str(work), "%s-%s.test-report.json" % (FAMILY, version)), "w") as handle:
            json.dump({"id": "TR-%s" % version, "kind": "image", "name": FAMILY, "version": version, "sha256": digest,
                       "result": "passed", "summary": {"total": 13, "failed": 0}}, handle)
        found[version] = {"path": copy, "sha256": digest}
    return found


def test_production_site_lifecycle_of_an_image(repo_root, project_env, tmp_path, images, podman_image):
    site = Site(repo_root, project_env, tmp_path)
    old, new = images["1.0.0"], images["1.1.0"]
    site.ok("keys.yml")

    promoted = site.ok("promote_image.yml", image_family=FAMILY, image_version="1.0.0", image_src=old["path"],
                       image_sha256=old["sha256"])["esd_promotion"]
    assert promoted["channel"] == "production" and promoted["kind"] == "image" and promoted["sha256"] == old["sha256"]
    assert promoted["evidence"] == "TR-1.0.0"
    distributed = site.ok("distribute_image.yml", image_family=FAMILY, image_version="1.0.0", image_sha256=old["sha256"])
    assert distributed["esd_image_distribution"]["depot-01"]["sha256"] == old["sha256"]

    # install_image: the node gets the image from its depot (no image_src), by digest
    provisioned = site.ok("provision.yml", limit=NODE, esd_hosts=NODE, image_family=FAMILY, image_version="1.0.0",
                          image_sha256=old["sha256"])["esd_provisioning"]
    assert provisioned[NODE]["version"] == "1.0.0" and provisioned[NODE]["slot"] == "a"

    # image update: promote and distribute 1.1.0, then update the node in place (1.0.0 kept in slot a)
    site.ok("promote_image.yml", image_family=FAMILY, image_version="1.1.0", image_src=new["path"], image_sha256=new["sha256"])
    site.ok("distribute_image.yml", image_family=FAMILY, image_version="1.1.0", image_sha256=new["sha256"])
    updated = site.ok("update_image.yml", limit=NODE, esd_hosts=NODE, image_family=FAMILY, image_version="1.1.0",
                      image_sha256=new["sha256"])["esd_provisioning"]
    assert updated[NODE] == {"version": "1.1.0", "slot": "b", "previous": "1.0.0", "status": "uncommitted", "changed": True}

    # retiring the image the node runs is refused; the other one can go (archived first)
    rc, stats, out = site.run("retire_image.yml", image_family=FAMILY, image_version="1.1.0", retire_image_nodes=NODE)
    assert rc != 0 and NODE in out and "force" in out
    retired = site.ok("retire_image.yml", image_family=FAMILY, image_version="1.0.0", retire_image_nodes=NODE,
                      retire_archive=True)["esd_retirement"]
    assert retired["action"] == "archive_retire" and retired["in_use"] == [] and retired["archive"]
    depot_blob = os.path.join(site.root, "hosts/depot-01/srv/esd/depot/blobs/sha256", old["sha256"])
    assert not os.path.exists(depot_blob)

    # the backout still works on the node: its old slot is local
    site.ok("rollback_image.yml", limit=NODE, esd_hosts=NODE, image_family=FAMILY, image_version="1.1.0")
    state = site.node()
    assert state["active"] == "a" and state["slots"]["a"]["version"] == "1.0.0" and state["slots"]["b"] is None

    site.ok("remove_image.yml", limit=NODE, esd_hosts=NODE, image_family=FAMILY, image_purge_data=True)
    assert site.node() is None
    leftovers = subprocess.run(["podman", "ps", "-a", "--filter", "label=org.esd-osp.node=%s" % NODE, "-q"],
                               env=project_env, capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    for version in ("1.0.0", "1.1.0"):
        subprocess.run(["podman", "rmi", "localhost/esd-image/%s:%s" % (FAMILY, version)], env=project_env,
                       capture_output=True)
