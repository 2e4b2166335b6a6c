# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes provisioned from OS images on a virtualisation host, updated in place with two slots (A/B).

A node is a "logical partition" of the seeds: with the built-in podman backend, each of its two slots is a
container made from an image (``<node>-a``, ``<node>-b``) and its data lives on a volume both slots mount
(``<node>-data``), the way a machine has two root partitions and one data partition. Exactly one slot runs.

    install   the image is written to slot a and started (first provisioning)
    update    the new image is written to the inactive slot, the active slot is stopped, the new one started and
              health-checked; a failed health check switches back (auto-revert). The old slot stays, stopped, as
              the rollback target until the update is committed.
    commit    the old slot is freed.
    rollback  the old slot is started again and the rolled-back slot freed.
    remove    both slots (and, when asked, the data volume) go.

The node's state is one JSON file per node on the virtualisation host (``<state_dir>/<node>.json``), written
atomically; the slots' containers carry labels naming node, slot and image, so the state can be checked against
what podman really has.

Standard library only: this runs on virtualisation hosts.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible.module_utils.urls import open_url

from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

STATE_FORMAT = "esd.osp/image-node/v1"
SLOTS = ("a", "b")
STATES = ("present", "active", "committed", "rolled_back", "absent")
NODE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
LABEL_PREFIX = "org.esd-osp"
IMAGE_REPOSITORY = "localhost/esd-image"
# PID 1 of a container gets no default signal handlers: trap TERM so that stopping a slot takes no time.
DEFAULT_COMMAND = ["/bin/sh", "-c", "if [ -x /usr/lib/esd/firstboot ]; then /usr/lib/esd/firstboot; fi; "
                                    "trap 'exit 0' TERM INT; sleep infinity & wait"]
DEFAULT_HEALTH = ["/bin/sh", "-c",
                  "test -s /etc/esd/image.json && { [ ! -x /usr/lib/esd/firstboot ] || test -e /var/lib/esd/firstboot.done; }"]
CHUNK = 1024 * 1024


class NodeError(Exception):
    """A node operation failed; `reverted` says whether the node was switched back to its previous slot."""

    def __init__(self, msg, phase="node", reverted=False, output=""):
        super(NodeError, self).__init__(msg)
        self.msg = msg
        self.phase = phase
        self.reverted = reverted
        self.output = output

    def __str__(self):
        return self.msg


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def image_ref(family, version):
    return "%s/%s:%s" % (IMAGE_REPOSITORY, family, version)


def container_name(node, slot):
    return "%s-%s" % (node, slot)


def other(slot):
    return "b" if slot == "a" else "a"


class Podman(object):
    """The podman command line, the way the node manager needs it."""

    def __init__(self, binary="podman", timeout=600):
        self.binary = binary
        self.timeout = timeout

    def run(self, args, what, check=True, timeout=None):
        cmd = [self.binary] + list(args)
        try:
            proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise NodeError("%s timed out (%s)" % (what, " ".join(cmd)), "podman")
        except OSError as exc:
            raise NodeError("%s: cannot run %s: %s" % (what, self.binary, exc), "podman")
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise NodeError("%s failed (podman exited %d): %s" % (what, proc.returncode, err.strip() or out.strip()),
                            "podman", output=out + err)
        return proc.returncode, out, err

    def image_label(self, ref, label):
        rc, out, dummy = self.run(["image", "inspect", "--format", "{{ index .Labels \"%s\" }}" % label, ref],
                                  "inspecting image %s" % ref, check=False)
        if rc != 0:
            return None
        return out.strip()

    def container(self, name):
        """{state, running, image, labels} of a container, or None."""
        rc, out, dummy = self.run(["container", "inspect", name], "inspecting container %s" % name, check=False)
        if rc != 0:
            return None
        try:
            data = json.loads(out)[0]
        except (ValueError, IndexError):
            return None
        state = data.get("State") or {}
        return {"name": name, "running": bool(state.get("Running")), "status": state.get("Status"),
                "image": data.get("ImageName") or (data.get("Config") or {}).get("Image"),
                "labels": (data.get("Config") or {}).get("Labels") or {}}

    def volume_exists(self, name):
        return self.run(["volume", "exists", name], "checking volume %s" % name, check=False)[0] == 0


class NodeManager(object):
    """Plans and applies the A/B transitions of one node."""

    def __init__(self, name, state_dir, podman=None, data_path="/srv/data", network="", command=None,
                 health_command=None, health_retries=10, volumes=None, env=None, stop_timeout=10, purge_data=False):
        if not NODE_RE.match(name or ""):
            raise NodeError("node name %r is not usable as a container name (letters, digits, . _ -)" % (name,))
        self.name = name
        self.state_dir = state_dir
        self.podman = podman or Podman()
        self.data_path = data_path
        self.network = network
        self.command = list(command or DEFAULT_COMMAND)
        self.health_command = list(health_command or DEFAULT_HEALTH)
        self.health_retries = max(1, int(health_retries))
        self.volumes = list(volumes or [])
        self.env = dict(env or {})
        self.stop_timeout = stop_timeout
        self.purge_data = purge_data

    # --- state -------------------------------------------------------------------------------

    @property
    def state_path(self):
        return os.path.join(self.state_dir, "%s.json" % self.name)

    def empty_state(self):
        return {"format": STATE_FORMAT, "name": self.name, "backend": "podman", "slots": {"a": None, "b": None},
                "active": None, "previous": None, "committed": None, "data_volume": "%s-data" % self.name,
                "history": []}

    def load(self):
        if not os.path.exists(self.state_path):
            return self.empty_state()
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError) as exc:
            raise NodeError("the state file %s of node %s is unreadable: %s" % (self.state_path, self.name, exc), "state")
        if state.get("format") != STATE_FORMAT:
            raise NodeError("the state file %s of node %s has an unknown format" % (self.state_path, self.name), "state")
        return state

    def save(self, state):
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o755)
        write_json_atomic(self.state_path, state)

    def lock(self):
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o755)
        handle = open(os.path.join(self.state_dir, ".%s.lock" % self.name), "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    @staticmethod
    def describe(state):
        """The view users compare: active/previous images and whether the active one is committed."""
        def slot_view(slot):
            if slot is None or not state["slots"].get(slot):
                return None
            info = state["slots"][slot]
            return {"slot": slot, "family": info["family"], "version": info["version"], "sha256": info["sha256"],
                    "container": info["container"]}
        active = slot_view(state.get("active"))
        return {
            "name": state["name"],
            "active": active,
            "previous": slot_view(state.get("previous")),
            "committed": bool(active) and state.get("committed") == state.get("active"),
            "status": "absent" if not active and not any(state["slots"].values()) else
                      "staged" if not active else
                      "committed" if state.get("committed") == state.get("active") else "uncommitted",
            "slots": dict((s, slot_view(s)) for s in SLOTS),
            "data_volume": state.get("data_volume"),
        }

    def record(self, state, action, **details):
        entry = {"time": utcnow(), "action": action}
        entry.update(details)
        state["history"] = (state.get("history") or [])[-49:] + [entry]

    # --- image and containers ------------------------------------------------------------------

    def ensure_image(self, family, version, sha256, src, cache_dir, check):
        """Make sure podman holds the image family:version with this sha256; returns (ref, actions)."""
        ref = image_ref(family, version)
        label = self.podman.image_label(ref, "%s.image.sha256" % LABEL_PREFIX)
        if label == sha256:
            return ref, []
        if label:
            raise NodeError("podman on this host already holds %s with sha256 %s, not %s: an image version never has "
                            "two contents (delete the old one with delete_image first)" % (ref, label, sha256), "image")
        if not src:
            raise NodeError("image %s %s is not on this host and no src was given" % (family, version), "image")
        actions = ["import %s from %s" % (ref, src)]
        if check:
            return ref, actions
        path = self.fetch(src, sha256, cache_dir)
        changes = ["LABEL %s.image.family=%s" % (LABEL_PREFIX, family),
                   "LABEL %s.image.version=%s" % (LABEL_PREFIX, version),
                   "LABEL %s.image.sha256=%s" % (LABEL_PREFIX, sha256)]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        self.podman.run(args + [path, ref], "importing the image %s" % src, timeout=3600)
        return ref, actions

    def fetch(self, src, sha256, cache_dir):
        """A local path of the verified archive (downloaded into cache_dir when src is a URL)."""
        if re.match(r"^https?://", src):
            directory = cache_dir or os.path.join(self.state_dir, "cache")
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            path = os.path.join(directory, "%s.rootfs.tar.gz" % sha256)
            if not (os.path.isfile(path) and sha256_file(path) == sha256):
                fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
                try:
                    with os.fdopen(fd, "wb") as out:
                        response = open_url(src, timeout=60)
                        shutil.copyfileobj(response, out, CHUNK)
                    os.rename(tmp, path)
                except Exception as exc:  # open_url raises urllib, http.client and socket errors
                    raise NodeError("cannot download %s: %s" % (src, exc), "download")
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        else:
            path = src[len("file://"):] if src.startswith("file://") else src
            if not os.path.isfile(path):
                raise NodeError("the image %s does not exist" % path, "download")
        digest = sha256_file(path)
        if digest != sha256:
            raise NodeError("Checksum mismatch for %s: sha256 %s, expected %s" % (src, digest, sha256), "verify")
        return path

    def create_container(self, slot, ref, family, version, sha256):
        name = container_name(self.name, slot)
        args = ["create", "--name", name, "--hostname", self.name, "--pull=never",
                "--label", "%s.node=%s" % (LABEL_PREFIX, self.name), "--label", "%s.slot=%s" % (LABEL_PREFIX, slot),
                "--label", "%s.image=%s:%s" % (LABEL_PREFIX, family, version),
                "--label", "%s.image.sha256=%s" % (LABEL_PREFIX, sha256),
                "--volume", "%s-data:%s" % (self.name, self.data_path)]
        if self.network:
            args += ["--network", self.network]
        for volume in self.volumes:
            args += ["--volume", volume]
        for key, value in sorted(self.env.items()):
            args += ["--env", "%s=%s" % (key, value)]
        self.podman.run(args + [ref] + self.command, "creating container %s from %s" % (name, ref))
        return name

    def remove_container(self, name):
        if self.podman.container(name) is not None:
            self.podman.run(["rm", "--force", "--time", str(self.stop_timeout), name], "removing container %s" % name)

    def healthy(self, name):
        last = ""
        for attempt in range(self.health_retries):
            rc, out, err = self.podman.run(["exec", name] + self.health_command, "health check of %s" % name, check=False)
            if rc == 0:
                return True, out
            info = self.podman.container(name)
            last = "exit %d: %s" % (rc, (err or out).strip())
            if info is not None and not info["running"]:
                return False, "the container stopped (%s); %s" % (info["status"], last)
            time.sleep(1)
        return False, last

    def switch(self, state, from_slot, to_slot, check):
        """Stop from_slot, start to_slot, health-check it; switch back on failure."""
        new = state["slots"][to_slot]["container"]
        old = state["slots"][from_slot]["container"] if from_slot and state["slots"].get(from_slot) else None
        actions = (["stop %s" % old] if old else []) + ["start %s" % new, "health-check %s" % new]
        if check:
            return actions
        if old and (self.podman.container(old) or {}).get("running"):
            self.podman.run(["stop", "--time", str(self.stop_timeout), old], "stopping %s" % old)
        self.podman.run(["start", new], "starting %s" % new)
        ok, detail = self.healthy(new)
        if not ok:
            self.podman.run(["stop", "--time", str(self.stop_timeout), new], "stopping %s" % new, check=False)
            reverted = False
            if old:
                self.podman.run(["start", old], "restarting %s" % old)
                reverted = True
            raise NodeError("health check of %s failed: %s%s" % (
                new, detail, "; switched back to %s" % old if reverted else ""), "health_check", reverted=reverted,
                output=detail)
        return actions

    # --- transitions ---------------------------------------------------------------------------

    def apply(self, want, family=None, version=None, sha256=None, src=None, cache_dir=None, check=False):
        if want not in STATES:
            raise NodeError("unknown state %r" % want)
        handle = None if check else self.lock()
        try:
            state = self.load()
            before = self.describe(state)
            actions = getattr(self, "_" + want)(state, family, version, sha256, src, cache_dir, check)
            if actions and not check and want != "absent":
                self.save(state)
            after = self.describe(state) if want != "absent" or check else self.describe(self.empty_state())
            return {"changed": bool(actions), "actions": actions, "before": before, "after": after}
        finally:
            if handle is not None:
                handle.close()

    def _slot_of(self, state, family, version, sha256):
        for slot in SLOTS:
            info = state["slots"].get(slot)
            if info and info["family"] == family and info["version"] == version:
                if sha256 and info["sha256"] != sha256:
                    raise NodeError("node %s slot %s holds %s %s with sha256 %s, not %s" % (
                        self.name, slot, family, version, info["sha256"], sha256), "verify")
                return slot
        return None

    def _require_image(self, family, version, sha256):
        if not (family and version and sha256):
            raise NodeError("family, version and sha256 are required to put an image on node %s" % self.name)

    def _write_slot(self, state, slot, family, version, sha256, src, cache_dir, check):
        """Write the image into slot (replacing what was there); returns actions."""
        ref, actions = self.ensure_image(family, version, sha256, src, cache_dir, check)
        old = state["slots"].get(slot)
        name = container_name(self.name, slot)
        if old or (not check and self.podman.container(name) is not None):
            actions.append("free slot %s (%s)" % (slot, "%s %s" % (old["family"], old["version"]) if old else "stray container"))
        actions.append("write %s %s to slot %s (%s)" % (family, version, slot, name))
        if not self.podman.volume_exists("%s-data" % self.name):
            actions.append("create data volume %s-data" % self.name)
            if not check:
                self.podman.run(["volume", "create", "--label", "%s.node=%s" % (LABEL_PREFIX, self.name),
                                 "%s-data" % self.name], "creating the data volume of %s" % self.name)
        if check:
            return actions
        self.remove_container(name)
        self.create_container(slot, ref, family, version, sha256)
        state["slots"][slot] = {"family": family, "version": version, "sha256": sha256, "image": ref,
                                "container": name, "written_at": utcnow()}
        if state.get("previous") == slot:
            state["previous"] = None
        if state.get("committed") == slot:
            state["committed"] = None
        self.record(state, "write", slot=slot, family=family, version=version, sha256=sha256)
        return actions

    def _present(self, state, family, version, sha256, src, cache_dir, check):
        self._require_image(family, version, sha256)
        if self._slot_of(state, family, version, sha256):
            return []
        target = other(state["active"]) if state.get("active") else "a"
        return self._write_slot(state, target, family, version, sha256, src, cache_dir, check)

    def _active(self, state, family, version, sha256, src, cache_dir, check):
        self._require_image(family, version, sha256)
        slot = self._slot_of(state, family, version, sha256)
        actions = []
        if slot is not None and slot == state.get("active"):
            info = self.podman.container(state["slots"][slot]["container"])
            if info is None:
                raise NodeError("node %s: the container %s of its active slot %s is gone; remove the node and provision "
                                "it again" % (self.name, state["slots"][slot]["container"], slot), "state")
            if info["running"]:
                return []
            actions.append("start %s" % info["name"])
            if not check:
                self.podman.run(["start", info["name"]], "starting %s" % info["name"])
                ok, detail = self.healthy(info["name"])
                if not ok:
                    raise NodeError("health check of %s failed: %s" % (info["name"], detail), "health_check")
                self.record(state, "start", slot=slot)
            return actions
        current = state.get("active")
        if slot is None:
            slot = other(current) if current else "a"
            actions += self._write_slot(state, slot, family, version, sha256, src, cache_dir, check)
        if check:
            return actions + ["start %s" % container_name(self.name, slot)]
        try:
            actions += self.switch(state, current, slot, check)
        except NodeError as exc:
            self.record(state, "activate", slot=slot, family=family, version=version, result="failed",
                        reverted=exc.reverted, reason=exc.msg)
            self.save(state)
            raise
        state["previous"] = current
        state["active"] = slot
        self.record(state, "activate", slot=slot, family=family, version=version, previous=current, result="ok")
        return actions

    def _committed(self, state, family, version, sha256, src, cache_dir, check):
        active = state.get("active")
        if not active:
            raise NodeError("node %s has no active image to commit" % self.name, "commit")
        info = state["slots"][active]
        if version and (info["version"] != version or (family and info["family"] != family)):
            raise NodeError("node %s runs %s %s, not %s %s: refusing to commit" % (
                self.name, info["family"], info["version"], family or info["family"], version), "commit")
        actions = []
        previous = state.get("previous")
        if previous and state["slots"].get(previous):
            old = state["slots"][previous]
            actions.append("free slot %s (%s %s, the rollback target)" % (previous, old["family"], old["version"]))
            if not check:
                self.remove_container(old["container"])
                state["slots"][previous] = None
        if state.get("committed") != active:
            actions.append("commit %s %s in slot %s" % (info["family"], info["version"], active))
        if actions and not check:
            state["previous"] = None
            state["committed"] = active
            self.record(state, "commit", slot=active, family=info["family"], version=info["version"])
        return actions

    def _rolled_back(self, state, family, version, sha256, src, cache_dir, check):
        active = state.get("active")
        if version and (not active or state["slots"][active]["version"] != version
                        or (family and state["slots"][active]["family"] != family)):
            return []  # that version is not the active one: rolled back already, or never activated
        previous = state.get("previous")
        if not active or not previous or not state["slots"].get(previous):
            committed = "it is committed" if active and state.get("committed") == active else "there is no previous image"
            raise NodeError("cannot roll back node %s: %s" % (self.name, committed), "rollback")
        leaving = state["slots"][active]
        actions = self.switch(state, active, previous, check)
        actions.append("free slot %s (%s %s)" % (active, leaving["family"], leaving["version"]))
        if check:
            return actions
        self.remove_container(leaving["container"])
        state["slots"][active] = None
        state["active"], state["previous"] = previous, None
        self.record(state, "rollback", slot=previous, family=state["slots"][previous]["family"],
                    version=state["slots"][previous]["version"], rolled_back=leaving["version"])
        return actions

    def _absent(self, state, family, version, sha256, src, cache_dir, check):
        actions = []
        for slot in SLOTS:
            name = container_name(self.name, slot)
            known = state["slots"].get(slot)
            if known or (self.podman.container(name) is not None):
                actions.append("remove %s" % name)
                if not check:
                    self.remove_container(name)
        if self.purge_data and self.podman.volume_exists("%s-data" % self.name):
            actions.append("remove data volume %s-data" % self.name)
            if not check:
                self.podman.run(["volume", "rm", "--force", "%s-data" % self.name], "removing the data volume")
        if os.path.exists(self.state_path):
            actions.append("remove the node state %s" % self.state_path)
            if not check:
                os.unlink(self.state_path)
        return actions


def list_nodes(state_dir):
    if not os.path.isdir(state_dir):
        return []
    return sorted(name[:-5] for name in os.listdir(state_dir) if name.endswith(".json") and not name.startswith("."))
