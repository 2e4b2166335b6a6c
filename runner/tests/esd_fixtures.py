"""Helpers for the runner's unit tests: change-order documents for every request type and a workspace.

(Not named conftest: tests/ has its own conftest.py and both directories end up on sys.path.)
"""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from esd import catalogue

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_INVENTORY = os.path.join(REPO, "inventories", "demo")

# A value for every field a request type can require (paths are relative to the change-order file).
FIELD_VALUES = {
    "software.name": "hello-agent",
    "software.version": "1.1.0",
    "software.source": "pkg",
    "software.artifact": "hello-agent-1.1.0.esdpkg",
    "software.sha256": "a" * 64,
    "software.builder": "bob",
    "software.updates": "1.0.0",
    "media.name": "hello-media",
    "media.packages": [{"name": "hello-agent", "version": "1.1.0"}],
    "media.artifact": "hello-media.iso",
    "media.sha256": "b" * 64,
    "media.builder": "bob",
    "image.family": "std-server",
    "image.version": "2026.1",
    "image.source": "image",
    "image.base": "2025.4",
    "image.artifact": "std-server-2026.1.tar.gz",
    "image.sha256": "c" * 64,
    "image.builder": "bob",
    "targets.hosts": "production",
    "backout.plan": "roll back with a rollback_update change order",
    "backout.rehearsed_in": "CO-TEST-1",
}


def make_workspace(tmp_path):
    """A directory holding a package source, built artifacts and an image spec."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "package.yml").write_text("name: hello-agent\nversion: '1.1.0'\n")
    (tmp_path / "image").mkdir()
    for name in ("hello-agent-1.1.0.esdpkg", "hello-media.iso", "std-server-2026.1.tar.gz", "LICENSE.txt"):
        (tmp_path / name).write_text("x")
    return tmp_path


def minimal_document(type_id, **overrides):
    """The smallest valid change order of ``type_id`` (as a dict)."""
    request_type = catalogue.get(type_id)
    spec = {"type": type_id, "targets": {"inventory": DEMO_INVENTORY}}
    for dotted in request_type.requires:
        section, key = dotted.split(".")
        spec.setdefault(section, {})[key] = copy.deepcopy(FIELD_VALUES[dotted])
    document = {
        "apiVersion": "esd.osp/v1",
        "kind": "ChangeOrder",
        "metadata": {"id": "CO-%s" % type_id.replace("_", "-"), "title": "Test %s" % type_id,
                     "requester": "alice", "requested_completion": "2026-12-31"},
        "spec": spec,
    }
    for dotted, value in overrides.items():
        node = document
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return document


DELETE = object()


def write_document(directory, document, name="co.yml"):
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    return path


class FakeStages:
    """Stands in for esd.stage.run_stage: no ansible, scripted outcomes per stage id.

    ``script[stage_id]`` is a callable(call) -> dict with optional keys ``failed`` (hosts), ``outputs``
    (set_stats data), ``status`` (runner status), ``error``; by default every host succeeds and build/test
    stages report what the real playbooks report.
    """

    def __init__(self, builder_from_actor=True):
        self.calls = []
        self.script = {}
        self.builder_from_actor = builder_from_actor

    def __call__(self, *, stage_id, playbook, inventory, private_data_dir, extravars, envvars, hosts=None,
                 limit_hosts=None, cancel_requested=None, on_progress=None, on_pid=None):
        import time

        from esd.stage import HostOutcome, StageResult

        call = {"stage": stage_id, "extravars": extravars, "limit_hosts": limit_hosts, "hosts": hosts,
                "cancel_requested": cancel_requested, "playbook": playbook}
        self.calls.append(call)
        started = time.time()
        if not os.path.isfile(playbook):
            return StageResult("not_built", None, {}, {}, started, time.time(), None, private_data_dir, None, None,
                               error="missing")
        behaviour = self.script.get(stage_id)
        result = behaviour(call) if behaviour else {}
        targets = limit_hosts if limit_hosts is not None else (hosts or ["localhost"])
        failed = set(result.get("failed", ()))
        outcomes = {}
        for host in targets:
            if host in failed:
                outcomes[host] = HostOutcome(host, "failed", False, "Software | apply", "health check exited 3",
                                             "health_check")
            else:
                outcomes[host] = HostOutcome(host, "ok", True,
                                             software={"active": extravars.get("software_version"),
                                                       "committed": None, "backup": None})
        outputs = result.get("outputs")
        if outputs is None:
            outputs = {}
            if "build_package_src" in extravars:
                outputs["esd_artifact"] = {"name": "hello-agent", "version": "1.1.0", "sha256": "d" * 64,
                                           "path": "/tmp/hello-agent-1.1.0.esdpkg",
                                           "builder": extravars.get("build_package_builder")}
            if stage_id == "test":
                outputs["esd_test"] = {"passed": True, "backout_rehearsed": True}
        status = result.get("status", "failed" if failed else "successful")
        return StageResult(status, 2 if failed else 0, outcomes, outputs, started, time.time() + 0.01, 0.005,
                           private_data_dir, private_data_dir, 4242, error=result.get("error"))

    def count(self, stage_id):
        return sum(1 for call in self.calls if call["stage"] == stage_id)
