"""A simulated fleet for the report and metrics unit tests: it stands in for ``esd.stage.run_stage``.

Unlike ``esd_fixtures.FakeStages`` it keeps a state per host (the packages esd.osp.software would have
installed, the A/B image slots esd.osp.image_node would have written) and writes ansible-runner-shaped job
events into each attempt's private data dir, so the test report reads checks and the audit reads software
inventories and running images exactly as from real runs. Production stages return what the modules return
(esd.osp.software: active, backup, committed, installed...; esd.osp.image_node: ``active`` the running slot's
image as a dict, ``committed`` a bool) and the host outcomes keep what ``esd.stage.EventTracker`` keeps of it.
Time comes from a :class:`Clock` patched into ``esd.ledger.now``, so lead times and due dates are exact.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid

import yaml

from esd import ledger as ledger_mod
from esd.stage import SOFTWARE_KEYS, HostOutcome, StageResult

UTC = datetime.timezone.utc


class Clock:
    """A settable clock: ``esd.ledger.now`` and the engine's clock in the tests."""

    def __init__(self, start):
        self.moment = start

    def __call__(self):
        return self.moment

    def set(self, moment):
        self.moment = moment

    def advance(self, **delta):
        self.moment += datetime.timedelta(**delta)


def at(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


TEST_TASKS = ("Test package | install | Install and activate (the package's health check runs here)",
              "Test package | verify | Check the version is active",
              "Test package | backout | Rehearse the backout plan (roll back, or uninstall a first install)",
              "Test package | verify | Check the backout left the host as it was")
IMAGE_TEST_TASKS = ("Test image | verify | Check the image and its identity",
                    "Test image | provision | Provision the test node from the image",
                    "Test image | lifecycle | Backout rehearsal inside the node (install, update, roll back, update "
                    "again, commit)",
                    "Test image | test plan | Run the image's test plan against the node")
VALIDATE_TASKS = ("Validate image | validate | Check digest, identity, manifest, SBOM, hardening results and "
                  "checksums",)
# Production playbooks and the module each one changes endpoints with (one call per host).
SOFTWARE_PLAYBOOKS = ("deploy.yml", "activate.yml", "commit.yml", "rollback.yml", "backout.yml", "remove.yml")
IMAGE_PLAYBOOKS = ("provision.yml", "update_image.yml", "rollback_image.yml", "commit_image.yml")
BUILD_TASKS = ("Build package | scan | Scan the sources with ClamAV", "Build package | build | Build the artifact",
               "Build package | unit test | Install and activate (runs the health check)",
               "Build package | unit test | Uninstall", "Build package | after build | Run the site's post-build tasks")


class SimulatedFleet:
    """``run_stage`` on simulated hosts. ``failures[stage id]`` is a list (one entry per call of that stage in a
    change order) of {host: "failed" | "reverted" | "unreachable"}; hosts not named succeed."""

    def __init__(self):
        self.hosts = {}                 # host -> {package: {active, committed, backups, installed, last_change}}
        self.images = {}                # host -> {"slots": {"a": image or None, "b": ...}, "active": slot, "status"}
        self.failures = {}
        self.calls = []
        self.groups = {"production": ["prod-%03d" % n for n in range(1, 25)]}

    # --- host state ----------------------------------------------------------------------------------

    def install(self, hosts, name, version, committed=True):
        for host in hosts:
            self.hosts.setdefault(host, {})[name] = {"active": version, "committed": version if committed else None,
                                                      "backups": [], "installed": [version],
                                                      "last_change": {"action": "commit", "version": version,
                                                                      "result": "ok", "time": "2026-01-01T00:00:00Z"}}

    def package(self, host, name):
        return (self.hosts.get(host) or {}).get(name)

    def provision(self, hosts, family, version):
        """Nodes already running an image in slot a (committed), as esd.osp.image_node leaves them."""
        for host in hosts:
            self.images[host] = {"slots": {"a": {"family": family, "version": version, "sha256": "9" * 64},
                                           "b": None}, "active": "a", "status": "committed"}

    def image(self, host):
        """(family, version) of the image the node runs, or None."""
        node = self.images.get(host)
        active = node and node["active"] and node["slots"][node["active"]]
        return (active["family"], active["version"]) if active else None

    def _apply_image(self, host, playbook, extravars):
        node = self.images.setdefault(host, {"slots": {"a": None, "b": None}, "active": None, "status": "absent"})
        wanted = {"family": extravars.get("image_family"), "version": str(extravars.get("image_version")),
                  "sha256": extravars.get("image_sha256")}
        previous = "b" if node["active"] == "a" else "a"
        if playbook in ("provision.yml", "update_image.yml"):
            if node["active"] and self.image(host) == (wanted["family"], wanted["version"]):
                return
            if node["active"] is None:
                node["slots"]["a"], node["active"], node["status"] = wanted, "a", "committed"
                return
            node["slots"][previous], node["active"], node["status"] = wanted, previous, "uncommitted"
        elif playbook == "rollback_image.yml" and node["slots"].get(previous):
            node["slots"][node["active"]], node["active"], node["status"] = None, previous, "committed"
        elif playbook == "commit_image.yml" and node["active"]:
            node["slots"][previous], node["status"] = None, "committed"

    def _image_node_result(self, host):
        """What esd.osp.image_node returns for the node (its RETURN: active, previous, committed, status, ...)."""
        node = self.images.get(host) or {"slots": {"a": None, "b": None}, "active": None, "status": "absent"}

        def slot(name):
            image = node["slots"].get(name) if name else None
            return dict(image, slot=name, container="%s-%s" % (host, name)) if image else None

        active = slot(node["active"])
        previous = slot(("b" if node["active"] == "a" else "a") if node["active"] else None)
        return {"active": active, "previous": previous, "committed": node["status"] == "committed",
                "status": node["status"], "slots": {name: slot(name) for name in ("a", "b")},
                "container": active["container"] if active else None, "data_volume": "%s-data" % host}

    def _image_node_info(self, host):
        """One node of esd.osp.image_node_info's ``nodes``."""
        result = self._image_node_result(host)
        return {"name": host, "status": result["status"], "active": result["active"], "previous": result["previous"]}

    def _software_result(self, host, name):
        """What esd.osp.software returns about the package after the call (active, backup, committed, ...)."""
        package = self.package(host, name) or {}
        backups = list(package.get("backups") or [])
        return {"active": package.get("active"), "backup": backups[0] if backups else None, "backups": backups,
                "committed": package.get("committed"), "installed": list(package.get("installed") or [])}

    def _apply(self, host, playbook, extravars):
        name, version = extravars.get("software_name"), extravars.get("software_version")
        packages = self.hosts.setdefault(host, {})
        current = packages.get(name)
        now = ledger_mod.timestamp()
        if playbook in ("deploy.yml", "activate.yml"):
            if current is None:
                packages[name] = {"active": version, "committed": None, "backups": [], "installed": [version],
                                  "last_change": {"action": "activate", "version": version, "result": "ok",
                                                  "time": now}}
            elif current["active"] != version:
                current["backups"] = [current["active"]] if current["active"] else []
                current["active"] = version
                current["installed"] = sorted(set(current["installed"]) | {version})
                current["last_change"] = {"action": "activate", "version": version, "result": "ok", "time": now}
            if extravars.get("software_state") == "committed":
                self._commit(packages[name], now)
        elif playbook == "commit.yml" and current:
            self._commit(current, now)
        elif playbook in ("rollback.yml", "backout.yml") and current and current["backups"]:
            previous = current["backups"][0]
            current["installed"] = [v for v in current["installed"] if v != current["active"]]
            current["active"], current["backups"] = previous, []
            current["last_change"] = {"action": "rollback", "version": previous, "result": "ok", "time": now}

    @staticmethod
    def _commit(package, now):
        package["committed"] = package["active"]
        package["installed"] = [package["active"]]
        package["backups"] = []
        package["last_change"] = {"action": "commit", "version": package["active"], "result": "ok", "time": now}

    def _revert(self, host, extravars):
        current = self.package(host, extravars.get("software_name"))
        if current:
            current["last_change"] = {"action": "activate", "version": extravars.get("software_version"),
                                      "result": "reverted", "time": ledger_mod.timestamp()}

    def describe(self, host):
        return [{"name": name, "status": "committed" if p["active"] and p["active"] == p["committed"] else
                 ("uncommitted" if p["active"] else "absent"), **json.loads(json.dumps(p)),
                 "digests": {v: "f" * 64 for v in p["installed"]}}
                for name, p in sorted((self.hosts.get(host) or {}).items())]

    # --- run_stage ---------------------------------------------------------------------------------------

    def __call__(self, *, stage_id, playbook, inventory, private_data_dir, extravars, envvars, hosts=None,
                 limit_hosts=None, cancel_requested=None, on_progress=None, on_pid=None):
        started = ledger_mod.now().timestamp()
        name = os.path.basename(playbook)
        targets = list(limit_hosts if limit_hosts is not None else (
            hosts or self.groups.get(extravars.get("esd_hosts"), ["localhost"])))
        change_order = extravars.get("esd_change_order")
        self.calls.append({"stage": stage_id, "playbook": name, "hosts": targets, "extravars": dict(extravars),
                           "change_order": change_order})
        calls = sum(1 for call in self.calls if call["stage"] == stage_id and call["change_order"] == change_order)
        script = self.failures.get(stage_id) or []
        failing = script[calls - 1] if calls - 1 < len(script) else {}
        events = _Events(private_data_dir)
        outcomes = {}
        outputs = {}
        if name == "audit.yml":
            events.task("Audit | software | Read the installed packages", "esd.osp.software_info")
            for host in targets:
                events.result(host, "runner_on_ok", {"changed": False, "packages": self.describe(host)})
                outcomes[host] = HostOutcome(host, "ok")
            if extravars.get("audit_image", True):
                events.task("Audit | image | Read the image the node runs on its virtualisation host "
                            "(esd.osp.image_node nodes)", "esd.osp.image_node_info")
                for host in targets:
                    events.result(host, "runner_on_ok", {"changed": False, "nodes": [self._image_node_info(host)]})
        else:
            module = "esd.osp.image_node" if name in IMAGE_PLAYBOOKS else "esd.osp.software"
            # Production stages report the endpoint's state the way their module does, after the change.
            reports_state = name in SOFTWARE_PLAYBOOKS + IMAGE_PLAYBOOKS
            tasks = _tasks(name, extravars)
            failed_at = {}
            # Like esd.osp.software with inventory=true (software_inventory): the host's whole inventory as the
            # module found it and as it left it, on its ok and failed results.
            reports_inventory = bool(extravars.get("software_inventory")) and len(tasks) == 1
            befores = {host: self.describe(host) for host in targets} if reports_inventory else {}
            deferred = []
            for number, task in enumerate(tasks):
                events.task(task, module)
                for host in targets:
                    if host in failed_at:
                        continue
                    how = failing.get(host)
                    # Test hosts fail at the backout rehearsal; others at their first task.
                    fail_here = how and (number == (2 if name in ("test_package.yml", "test_image.yml") else 0))
                    if fail_here:
                        kind = "runner_on_unreachable" if how == "unreachable" else "runner_on_failed"
                        message = ("Failed to activate: health check exited 3; reverted to the previous version"
                                   if how == "reverted" else "%s failed on %s" % (task, host))
                        res = {"failed": True, "msg": message, "phase": "health_check" if how == "reverted" else "apply"}
                        if reports_inventory and kind == "runner_on_failed":
                            deferred.append((host, kind, res))
                        else:
                            events.result(host, kind, res)
                        failed_at[host] = (task, message, how)
                    elif "post-build" in task:
                        events.result(host, "runner_on_skipped", {"skip_reason": "Conditional result was False"})
                    elif reports_inventory or reports_state:
                        deferred.append((host, "runner_on_ok", {"changed": True}))
                    else:
                        events.result(host, "runner_on_ok", {"changed": True})
            for host in targets:
                if host in failed_at:
                    task, message, how = failed_at[host]
                    if how == "reverted":
                        self._revert(host, extravars)
                    outcomes[host] = HostOutcome(host, "unreachable" if how == "unreachable" else "failed", False,
                                                 task, message, "health_check" if how == "reverted" else "apply")
                else:
                    if name in IMAGE_PLAYBOOKS:
                        self._apply_image(host, name, extravars)
                    else:
                        self._apply(host, name, extravars)
                    outcomes[host] = HostOutcome(host, "ok", True)
            for host, kind, res in deferred:
                if kind == "runner_on_ok" and reports_state:
                    res = dict(res, **(self._image_node_result(host) if name in IMAGE_PLAYBOOKS else
                                       self._software_result(host, extravars.get("software_name"))))
                    # What esd.stage.EventTracker keeps of an ok result that has active and committed.
                    outcomes[host].software = {key: res[key] for key in SOFTWARE_KEYS if key in res}
                if reports_inventory:
                    res = dict(res, inventory={"before": befores[host], "after": self.describe(host)})
                events.result(host, kind, res)
            if name == "build_package.yml":
                with open(os.path.join(extravars["build_package_src"], "package.yml"), encoding="utf-8") as handle:
                    spec = yaml.safe_load(handle)
                outputs["esd_artifact"] = {"name": spec["name"], "version": spec["version"], "sha256": "d" * 64,
                                           "size": 1609, "path": "/nonexistent/hello-agent-1.1.0.esdpkg",
                                           "builder": extravars.get("build_package_builder"), "unit_test": "passed",
                                           "scan_engine": "ClamAV 1.4.6"}
            elif name == "build_image.yml":
                family, version = extravars.get("image_family"), extravars.get("image_version")
                # What esd.osp.image returns: the manifest whole (an update records its parent and SBOM diff).
                parent = {"family": family, "version": "1.0.0", "sha256": "f" * 64} if extravars.get("image_base") \
                    else None
                manifest = {"format": "esd.osp/image/v1", "family": family, "version": version,
                            "description": "Debian 12 standard server image",
                            "os": {"pretty_name": "Debian GNU/Linux 12 (bookworm)"},
                            "packages": {"count": 150}, "rootfs": {"files": 8110, "bytes": 193031223},
                            "build": {"builder": extravars.get("image_builder"), "source_date_epoch": 1795140670,
                                      "spec_sha256": "a" * 64},
                            "hardening": {"profile": "esd-baseline-1", "passed": 57, "failed": 0},
                            "parent": parent,
                            "sbom_diff": {"from": "1.0.0", "to": version, "added": [{"name": "tree",
                                                                                    "version": "2.1.0-1"}],
                                          "removed": [], "changed": [{"name": "openssl", "from": "3.0.20-1~deb12u2",
                                                                      "to": "3.0.22-1~deb12u2"}],
                                          "unchanged": 148} if parent else None}
                outputs["esd_image"] = {"family": family, "version": version, "sha256": "e" * 64, "size": 79697572,
                                        "path": "/nonexistent/image.rootfs.tar.gz", "unit_test": "passed",
                                        "builder": extravars.get("image_builder"), "manifest": manifest,
                                        "parent": parent}
            elif name in ("test_package.yml", "test_image.yml") and not failed_at:
                outputs["esd_test"] = {"passed": True, "backout_rehearsed": True}
        failed = any(o.status != "ok" for o in outcomes.values())
        return StageResult("failed" if failed else "successful", 2 if failed else 0, outcomes, outputs, started,
                           started + 1.0, 0.9, private_data_dir, None, 4242)


def _tasks(playbook, extravars):
    """The task names a playbook runs on each host (production playbooks: one module call)."""
    named = {"test_package.yml": TEST_TASKS, "test_image.yml": IMAGE_TEST_TASKS, "validate_image.yml": VALIDATE_TASKS}
    if playbook in named:
        return named[playbook]
    if playbook.startswith("build_"):
        return BUILD_TASKS
    if playbook in IMAGE_PLAYBOOKS:
        return ("Image node | apply | Bring the node to %s %s" % (extravars.get("image_family"),
                                                                extravars.get("image_version")),)
    return ("Software | apply | Bring %s to its state" % extravars.get("software_name"),)


class _Events:
    """Writes job_events/<counter>-<uuid>.json the way ansible-runner does."""

    def __init__(self, private_data_dir):
        ident = os.path.basename(private_data_dir.rstrip(os.sep))
        self.directory = os.path.join(private_data_dir, "artifacts", ident, "job_events")
        os.makedirs(self.directory, exist_ok=True)
        self.counter = 0
        self.task_uuid = None
        self.task_name = None
        self.action = None

    def _write(self, event, data):
        self.counter += 1
        ident = str(uuid.uuid4())
        with open(os.path.join(self.directory, "%d-%s.json" % (self.counter, ident)), "w", encoding="utf-8") as handle:
            json.dump({"counter": self.counter, "uuid": ident, "event": event, "event_data": data}, handle)

    def task(self, name, action):
        self.task_uuid, self.task_name, self.action = str(uuid.uuid4()), name, action
        self._write("playbook_on_task_start", {"task": name, "task_uuid": self.task_uuid, "task_action": action,
                                               "resolved_action": action})

    def result(self, host, event, res):
        self._write(event, {"host": host, "task": self.task_name, "task_uuid": self.task_uuid, "res": res,
                            "resolved_action": self.action, "duration": 0.25})
