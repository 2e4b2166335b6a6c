# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The A/B node transitions against a fake podman (the real one runs in molecule/image_ab)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _image_node
from ansible_collections.esd.osp.plugins.module_utils._image_node import NodeError, NodeManager


class FakePodman(object):
    """Images, containers and volumes in memory; `unhealthy` images fail their health check."""

    def __init__(self):
        self.images = {}
        self.containers = {}
        self.volumes = set()
        self.unhealthy = set()
        self.calls = []

    def run(self, args, what, check=True, timeout=None):
        self.calls.append(list(args))
        verb = args[0]
        if verb == "import":
            labels = {}
            for i, arg in enumerate(args):
                if arg == "--change":
                    key, value = args[i + 1].split(" ", 1)[1].split("=", 1)
                    labels[key] = value
            self.images[args[-1]] = labels
            return 0, "", ""
        if verb == "create":
            name = args[args.index("--name") + 1]
            image = next(a for a in args if a.startswith(_image_node.IMAGE_REPOSITORY))
            self.containers[name] = {"running": False, "image": image}
            return 0, name, ""
        if verb == "rm":
            self.containers.pop(args[-1], None)
            return 0, "", ""
        if verb == "start":
            self.containers[args[-1]]["running"] = True
            return 0, "", ""
        if verb == "stop":
            self.containers[args[-1]]["running"] = False
            return 0, "", ""
        if verb == "exec":
            image = self.containers[args[1]]["image"]
            return (1, "", "unhealthy") if image in self.unhealthy else (0, "ok", "")
        if verb == "volume":
            if args[1] == "exists":
                return (0 if args[2] in self.volumes else 1), "", ""
            if args[1] == "create":
                self.volumes.add(args[-1])
            if args[1] == "rm":
                self.volumes.discard(args[-1])
            return 0, "", ""
        raise AssertionError("unexpected podman call %s" % args)

    def image_label(self, ref, label):
        return self.images.get(ref, {}).get(label)

    def container(self, name):
        info = self.containers.get(name)
        if info is None:
            return None
        return {"name": name, "running": info["running"], "status": "running" if info["running"] else "exited",
                "image": info["image"], "labels": {}}

    def volume_exists(self, name):
        return name in self.volumes


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setattr(_image_node.time, "sleep", lambda seconds: None)
    images = {}
    for version in ("1.0.0", "1.1.0"):
        path = tmp_path / ("demo-%s.rootfs.tar.gz" % version)
        path.write_bytes(("image %s" % version).encode())
        images[version] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    podman = FakePodman()
    manager = NodeManager("web01", str(tmp_path / "nodes"), podman, health_retries=2)
    return manager, podman, images


def activate(manager, images, version, check=False):
    return manager.apply("active", "demo", version, images[version]["sha256"], images[version]["path"], check=check)


def running(podman):
    return sorted(name for name, info in podman.containers.items() if info["running"])


def test_install_writes_slot_a_and_starts_it(site):
    manager, podman, images = site
    predicted = activate(manager, images, "1.0.0", check=True)
    assert predicted["changed"] and podman.containers == {} and not os.path.exists(manager.state_path)
    result = activate(manager, images, "1.0.0")
    assert result["changed"]
    assert result["after"]["active"]["slot"] == "a" and result["after"]["status"] == "uncommitted"
    assert running(podman) == ["web01-a"] and podman.volumes == {"web01-data"}
    assert podman.images["localhost/esd-image/demo:1.0.0"]["org.esd-osp.image.sha256"] == images["1.0.0"]["sha256"]
    assert activate(manager, images, "1.0.0") == {"changed": False, "actions": [], "before": result["after"],
                                                  "after": result["after"]}


def test_update_switches_slots_and_keeps_the_old_one(site):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    result = activate(manager, images, "1.1.0")
    assert result["actions"][-3:] == ["stop web01-a", "start web01-b", "health-check web01-b"]
    after = result["after"]
    assert after["active"]["version"] == "1.1.0" and after["previous"]["version"] == "1.0.0"
    assert running(podman) == ["web01-b"] and "web01-a" in podman.containers
    state = json.load(open(manager.state_path))
    assert [h["action"] for h in state["history"]] == ["write", "activate", "write", "activate"]


def test_failed_health_check_switches_back(site):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    podman.unhealthy.add("localhost/esd-image/demo:1.1.0")
    with pytest.raises(NodeError) as caught:
        activate(manager, images, "1.1.0")
    assert caught.value.phase == "health_check" and caught.value.reverted
    assert "switched back to web01-a" in caught.value.msg
    assert running(podman) == ["web01-a"]
    state = json.load(open(manager.state_path))
    assert state["active"] == "a" and state["slots"]["b"]["version"] == "1.1.0"
    assert state["history"][-1]["result"] == "failed"
    # once the image is healthy, the written slot is reused
    podman.unhealthy.clear()
    result = activate(manager, images, "1.1.0")
    assert not any(action.startswith("write") for action in result["actions"])
    assert running(podman) == ["web01-b"]


def test_rollback_returns_to_the_old_slot_and_frees_the_new_one(site):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    activate(manager, images, "1.1.0")
    predicted = manager.apply("rolled_back", "demo", "1.1.0", check=True)
    assert predicted["changed"] and running(podman) == ["web01-b"]
    result = manager.apply("rolled_back", "demo", "1.1.0")
    assert result["after"]["active"]["version"] == "1.0.0" and result["after"]["previous"] is None
    assert running(podman) == ["web01-a"] and "web01-b" not in podman.containers
    assert manager.apply("rolled_back", "demo", "1.1.0")["changed"] is False


def test_commit_frees_the_old_slot_and_then_rollback_is_refused(site):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    activate(manager, images, "1.1.0")
    with pytest.raises(NodeError, match="runs demo 1.1.0, not demo 1.0.0: refusing to commit"):
        manager.apply("committed", "demo", "1.0.0")
    result = manager.apply("committed", "demo", "1.1.0")
    assert result["after"]["committed"] is True and result["after"]["status"] == "committed"
    assert sorted(podman.containers) == ["web01-b"]
    assert manager.apply("committed", "demo", "1.1.0")["changed"] is False
    with pytest.raises(NodeError, match="cannot roll back node web01: it is committed"):
        manager.apply("rolled_back")


def test_remove_keeps_data_unless_purged(site):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    activate(manager, images, "1.1.0")
    result = manager.apply("absent")
    assert result["changed"] and podman.containers == {} and podman.volumes == {"web01-data"}
    assert not os.path.exists(manager.state_path) and result["after"]["status"] == "absent"
    assert manager.apply("absent")["changed"] is False
    manager.purge_data = True
    assert manager.apply("absent")["actions"] == ["remove data volume web01-data"]


def test_an_image_version_is_never_imported_with_other_content(site, tmp_path):
    manager, podman, images = site
    activate(manager, images, "1.0.0")
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"different")
    digest = hashlib.sha256(b"different").hexdigest()
    with pytest.raises(NodeError, match="already holds localhost/esd-image/demo:1.0.0 with sha256"):
        NodeManager("web02", manager.state_dir, podman).apply("active", "demo", "1.0.0", digest, str(other))


def test_downloads_are_verified(site):
    manager, podman, images = site
    with pytest.raises(NodeError, match="Checksum mismatch for .*demo-1.0.0.rootfs.tar.gz"):
        manager.apply("active", "demo", "1.0.0", "0" * 64, images["1.0.0"]["path"])
    assert podman.images == {} and podman.containers == {}


def test_bad_node_names_and_missing_image_details(site):
    manager, podman, images = site
    with pytest.raises(NodeError, match="not usable as a container name"):
        NodeManager("bad name", manager.state_dir, podman)
    with pytest.raises(NodeError, match="family, version and sha256 are required"):
        manager.apply("active", "demo", "1.0.0")
    with pytest.raises(NodeError, match="has no active image to commit"):
        manager.apply("committed")
