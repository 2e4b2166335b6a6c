# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transactional software lifecycle on one host: install, activate, commit, roll back, remove.

Layout under ``<root><install_dir>`` (install_dir defaults to the package's own, e.g. /opt/esd/NAME)::

    releases/<version>/        unpacked payload; .esd/manifest.json and .esd/hooks/* beside it
    current -> releases/<v>    the active version, swapped atomically (symlink + rename)

and one state file per package, ``<root>/var/lib/esd/software/<name>.json``, recording the install_dir,
the installed versions, the active one, its backups (previous active versions kept for rollback, newest
first), the committed version and a history of transitions.

A package owns ``releases/<version>`` of its recorded versions, the ``current`` link and its state file;
nothing else in its install_dir. An uninstall removes what it owns (the state file stays, as the package's
history) and the install_dir only when that leaves it empty; two packages cannot share one install_dir.

Standard library + ansible.module_utils only: this runs on targets.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import posixpath
import re
import signal
import subprocess
import tempfile

from ansible_collections.esd.osp.plugins.module_utils import _artifact, _fileio

STATE_DIR = "/var/lib/esd/software"
STATES = ("present", "active", "committed", "rolled_back", "absent")
STATE_FORMAT = "esd.osp/software-state/v1"


class SoftwareError(Exception):
    """A lifecycle step failed. `phase` names the step; the host is left as described by `reverted`.

    `changed` is True when the host is not as it was before the call (for example rolled back, but then
    unhealthy), so that the failure is not mistaken for one that left the host alone.
    """

    def __init__(self, msg, phase, rc=None, stdout="", stderr="", reverted=False, changed=False):
        super(SoftwareError, self).__init__(msg)
        self.msg = msg
        self.phase = phase
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.reverted = reverted
        self.changed = changed

    def __str__(self):
        return self.msg


def join_root(root, path):
    """`path` inside `root`; `..` components never lead out of `root` (they stop at it, like at /)."""
    if not root:
        return path
    inside = posixpath.normpath("/" + path).lstrip("/")
    return os.path.join(root, inside) if inside else root


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path, data):
    """Write JSON to path durably: readers see the old or the new state, never half of one."""
    _fileio.write_atomic(path, _artifact.canonical_json(data), 0o644)


def empty_state(name):
    return {"format": STATE_FORMAT, "name": name, "install_dir": None, "versions": {}, "active": None,
            "backups": [], "committed": None, "history": []}


def load_state(root, name):
    path = join_root(root, os.path.join(STATE_DIR, name + ".json"))
    if not os.path.exists(path):
        return empty_state(name)
    try:
        with open(path, "rb") as handle:
            state = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise SoftwareError("State file %s of %s is unreadable: %s" % (path, name, exc), "state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise SoftwareError("State file %s of %s has an unknown format" % (path, name), "state")
    return state


def list_states(root):
    directory = join_root(root, STATE_DIR)
    if not os.path.isdir(directory):
        return []
    names = sorted(entry[:-5] for entry in os.listdir(directory) if entry.endswith(".json") and not entry.startswith("."))
    return [load_state(root, name) for name in names]


def install_dir_owner(root, name, install_dir):
    """The state of another package that has versions installed in `install_dir` under root, if any.

    State files that cannot be read are skipped here: they are reported when their own package is managed.
    """
    directory = join_root(root, STATE_DIR)
    if not os.path.isdir(directory):
        return None
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".json") or entry.startswith(".") or entry[:-5] == name:
            continue
        try:
            other = load_state(root, entry[:-5])
        except SoftwareError:
            continue
        if other.get("install_dir") == install_dir and (other.get("versions") or other.get("active")):
            return other
    return None


def summarise(state):
    """The part of a state that users compare before and after (no history)."""
    return {
        "active": state["active"],
        "backups": list(state["backups"]),
        "committed": state["committed"],
        "installed": sorted(state["versions"]),
    }


def describe(state, history=False):
    """The software_info view of one package's state."""
    summary = summarise(state)
    if summary["active"] and summary["committed"] == summary["active"]:
        status = "committed"
    elif summary["active"]:
        status = "uncommitted"
    elif summary["installed"]:
        status = "staged"
    else:
        status = "absent"
    summary.update({
        "name": state["name"],
        "status": status,
        "install_dir": state.get("install_dir"),
        "digests": dict((v, (info or {}).get("sha256")) for v, info in sorted(state["versions"].items())),
        "last_change": state["history"][-1] if state["history"] else None,
    })
    if history:
        summary["history"] = list(state["history"])
    return summary


_VERSION_PART = re.compile(r"(\d+|[A-Za-z]+)")


def version_key(version):
    """Order versions like package managers do for the common cases: 1.10 > 1.9, 1.0 > 1.0~rc1."""
    main, tilde, pre = version.partition("~")
    key = [(0, int(part)) if part.isdigit() else (1, part) for part in _VERSION_PART.findall(main)]
    return (key, 0 if tilde else 1, pre)


_REQUIREMENT = re.compile(r"^\s*([a-z0-9][a-z0-9._+-]*)\s*(?:(==|>=|<=|>|<)\s*(\S+))?\s*$")


def check_requirement(root, requirement):
    match = _REQUIREMENT.match(requirement)
    if not match:
        return "cannot parse requirement %r (use 'name' or 'name >= version')" % requirement
    name, operator, wanted = match.groups()
    active = load_state(root, name)["active"]
    if active is None:
        return "%s is not installed" % name
    if operator:
        have, want = version_key(active), version_key(wanted)
        ok = {"==": have == want, ">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want}[operator]
        if not ok:
            return "%s %s is active but %s %s %s is required" % (name, active, name, operator, wanted)
    return None


class HookRunner(object):
    """Runs a release's hooks with a timeout and the ESD_* environment; raises SoftwareError on failure.

    The error's message says what the hook did ("post_activate hook exited 4 (see stderr)"); the caller puts
    the package, version and step in front of it. Each hook runs in a session of its own, so that a hook
    that times out is stopped together with every process it started.
    """

    # After the hook's process group is killed, how long to wait for its pipes to close (a process that left
    # the group, with setsid, may still hold them).
    DRAIN_SECONDS = 5

    def __init__(self, name, root, install_dir_real, hook_timeout, health_check_timeout):
        self.name = name
        self.root = root
        self.install_dir_real = install_dir_real
        self.hook_timeout = hook_timeout
        self.health_check_timeout = health_check_timeout

    def run(self, hook, version, release_dir, previous=None):
        path = os.path.join(release_dir, ".esd", "hooks", hook)
        if not os.path.exists(path):
            return None
        timeout = self.health_check_timeout if hook == "health_check" else self.hook_timeout
        env = dict(os.environ)
        env.update({
            "ESD_PACKAGE": self.name, "ESD_VERSION": version, "ESD_PHASE": hook,
            "ESD_ROOT": self.root or "/", "ESD_INSTALL_DIR": self.install_dir_real,
            "ESD_RELEASE_DIR": release_dir, "ESD_PREVIOUS_VERSION": previous or "",
        })
        what = "health check" if hook == "health_check" else "%s hook" % hook
        try:
            proc = subprocess.Popen([path], cwd=release_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise SoftwareError("%s could not be started: %s" % (what, exc), hook)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = self._stop(proc)
            raise _hook_error("%s timed out after %ss and was stopped with the processes it started" % (
                what, timeout), hook, None, stdout, stderr)
        except BaseException:
            self._stop(proc)
            raise
        if proc.returncode != 0:
            raise _hook_error("%s exited %d" % (what, proc.returncode), hook, proc.returncode, stdout, stderr)
        return proc

    def _stop(self, proc):
        """Kill the hook's whole process group and collect what it wrote."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass  # the group is gone already
        try:
            return proc.communicate(timeout=self.DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
            proc.wait()
            return b"", b""


def _hook_error(reason, hook, rc, stdout, stderr):
    stdout, stderr = _text(stdout), _text(stderr)
    error = SoftwareError("%s%s" % (reason, " (see stderr)" if stderr.strip() else ""), hook, rc=rc,
                          stdout=stdout, stderr=stderr)
    error.reason = reason
    return error


def _text(data):
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


class SoftwareManager(object):
    """Brings one package on one host (under `root`) to the wanted state.

    Each public transition first mutates an in-memory copy of the state, and performs I/O only when
    not in check mode, so check mode predicts `changed` and the diff exactly as a real run would.
    """

    def __init__(self, name, state, version=None, src=None, sha256=None, root="", install_dir=None, keep=1,
                 health_check_timeout=60, hook_timeout=300, check_mode=False, fetch=None):
        self.name = _artifact.validate_name(name)
        self.version = _artifact.validate_version(version) if version else None
        self.wanted = state
        self.src = src
        self.sha256 = sha256.lower() if sha256 else None
        self.root = root or ""
        self.requested_install_dir = _artifact.validate_install_dir(install_dir, self.name) if install_dir else None
        self.keep = keep
        self.health_check_timeout = health_check_timeout
        self.hook_timeout = hook_timeout
        self.check_mode = check_mode
        self.fetch = fetch
        self.actions = []
        self.msg = None
        self.state = None
        self.before = None
        self._artifact_path = None
        self._manifest = None
        self._host_before = None

    # --- paths ---------------------------------------------------------------------------------
    @property
    def install_dir(self):
        return (self.requested_install_dir or self.state.get("install_dir")
                or (self._manifest or {}).get("install_dir") or "/opt/esd/%s" % self.name)

    @property
    def base(self):
        return join_root(self.root, self.install_dir)

    @property
    def releases_dir(self):
        return os.path.join(self.base, "releases")

    def release_dir(self, version):
        return os.path.join(self.releases_dir, version)

    @property
    def current_link(self):
        return os.path.join(self.base, "current")

    @property
    def state_path(self):
        return join_root(self.root, os.path.join(STATE_DIR, self.name + ".json"))

    # --- entry point ---------------------------------------------------------------------------
    def run(self):
        if self.wanted in ("present", "active") and not self.version:
            raise SoftwareError("version is required for state=%s" % self.wanted, "arguments")
        if self.check_mode:
            return self._run_locked()
        lock_dir = os.path.dirname(self.state_path)
        os.makedirs(lock_dir, 0o755, exist_ok=True)
        with open(os.path.join(lock_dir, "." + self.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            return self._run_locked()

    def _run_locked(self):
        self.state = load_state(self.root, self.name)
        if self.state.get("install_dir"):
            try:
                _artifact.validate_install_dir(self.state["install_dir"], self.name)
            except _artifact.ArtifactError as exc:
                raise SoftwareError("State file %s of %s is not usable: %s" % (self.state_path, self.name, exc), "state")
        self.before = summarise(self.state)
        if not self.check_mode:
            self._host_before = self._host_snapshot()
        getattr(self, "_ensure_" + self.wanted)()
        return self.result()

    def _host_snapshot(self):
        """What this package has on the host: its state file, the current link and the releases."""
        try:
            with open(self.state_path, "rb") as handle:
                state = handle.read()
        except FileNotFoundError:
            state = None
        current = os.readlink(self.current_link) if os.path.islink(self.current_link) else None
        releases = sorted(os.listdir(self.releases_dir)) if os.path.isdir(self.releases_dir) else None
        return state, current, releases

    def host_changed(self):
        """Whether the host differs from how this call found it (for reporting an unexpected error truthfully)."""
        if self._host_before is None:
            return False
        try:
            return self._host_snapshot() != self._host_before
        except OSError:
            return True  # cannot tell: do not claim that nothing changed

    def result(self):
        after = summarise(self.state)
        result = {
            "changed": bool(self.actions),
            "actions": list(self.actions),
            "name": self.name,
            "version": self.version,
            "state": self.wanted,
            "active": after["active"],
            "backup": after["backups"][0] if after["backups"] else None,
            "backups": after["backups"],
            "committed": after["committed"],
            "installed": after["installed"],
            "install_dir": self.base,
            "diff": {"before": self.before, "after": after},
        }
        if self.msg:
            result["msg"] = self.msg
        return result

    # --- transitions ---------------------------------------------------------------------------
    def _ensure_present(self):
        self._install(self.version)

    def _ensure_active(self):
        newly_installed = self._install(self.version)
        if self.state["active"] != self.version:
            self._activate(self.version, newly_installed)

    def _ensure_committed(self):
        if self.version:
            self._ensure_active()
        active = self.state["active"]
        if active is None:
            raise SoftwareError("Cannot commit %s: no version of it is active on this host" % self.name, "commit")
        # only the backups go: a version staged (state=present) for a later activation is kept
        backups = [v for v in self.state["backups"] if v != active]
        if self.state["committed"] == active and not backups:
            return
        self._do("commit %s (remove %s)" % (active, ", ".join(backups) or "no backups"))
        for version in backups:
            if not self.check_mode:
                _artifact.remove_tree(self.release_dir(version))
            self.state["versions"].pop(version, None)
        self.state["backups"] = []
        self.state["committed"] = active
        self._record("commit", active)

    def _ensure_rolled_back(self):
        active = self.state["active"]
        if not self.version and active is not None:
            done = self._rolled_back_to(active)
            if done:
                # the request "roll back the last update" is already fulfilled: a second run must not roll back
                # the version it returned to (nor refuse it as committed or as the first version)
                self.msg = "Nothing to roll back: %s was rolled back from %s to %s%s, and %s is still active%s" % (
                    self.name, done.get("version"), active, " on %s" % done["time"] if done.get("time") else "",
                    active, " (to roll back %s too, name it: version=%s)" % (active, active)
                    if self.state["backups"] else "")
                return
        target = self.version or active
        if target is None or (target not in self.state["versions"] and target != active):
            return  # never installed here, or already rolled back: nothing to undo
        if target != active:
            if target in self.state["backups"]:
                raise SoftwareError(
                    "Cannot roll back %s %s: it is not an update but the backup that rolling back %s %s returns to. "
                    "To roll back the update, use state=rolled_back with version=%s (or without version); to delete "
                    "the backup, use state=absent with version=%s." % (
                        self.name, target, self.name, active, active, target), "rollback")
            # a staged (installed, never activated) version: rolling it back removes it
            self._do("remove staged %s" % target)
            if not self.check_mode:
                _artifact.remove_tree(self.release_dir(target))
            del self.state["versions"][target]
            self._record("rollback", target)
            return
        # A backup exists only if a version was activated since the last commit (commit removes the backups):
        # that activation is the uncommitted update to undo, even when it re-activated the committed version.
        if not self.state["backups"]:
            if self.state["committed"] == active:
                when = self._last("commit", active)
                raise SoftwareError(
                    "Cannot roll back %s %s: the update was committed%s, which removed its backup. To return to an "
                    "earlier version, install that version as a new update (state=active, version=<earlier>)."
                    % (self.name, active, " on %s" % when if when else ""), "rollback")
            raise SoftwareError(
                "Cannot roll back %s %s: it is the first version installed on this host, so there is no previous "
                "version to return to. Use state=absent to uninstall it." % (self.name, active), "rollback")
        previous = self.state["backups"][0]
        # Rolling back an update to the committed version returns to the state before it: the committed version
        # stays installed, as a backup again, instead of being removed like a rolled-back update.
        keep_active = self.state["committed"] == active
        self._do("activate %s (roll back %s%s)" % (previous, active, ", kept as a backup" if keep_active else ""))
        if not self.check_mode:
            release = self.release_dir(previous)
            try:
                self.hooks.run("pre_activate", previous, release, active)
            except SoftwareError as exc:
                exc.msg = "Failed to roll back %s %s to %s: %s; %s is still active" % (
                    self.name, active, previous, exc.msg, active)
                raise
            self._swap_current(previous)
            try:
                self.hooks.run("post_activate", previous, release, active)
            except SoftwareError as exc:
                self._revert_rollback(active, previous, exc)
                raise
        if keep_active:
            self.state["backups"] = self.state["backups"][1:] + [active]
        else:
            del self.state["versions"][active]
            self.state["backups"] = self.state["backups"][1:]
        self.state["active"] = previous
        # recorded before the rolled-back release is removed: a failure then leaves an unrecorded directory (which
        # a later install of that version replaces), never a state naming a version whose release is gone
        self._record("rollback", active, to=previous)
        if not self.check_mode:
            if not keep_active:
                _artifact.remove_tree(self.release_dir(active))
            try:
                self.hooks.run("health_check", previous, self.release_dir(previous), active)
            except SoftwareError as exc:
                # not reverted: the host did not return to where it started (it stays rolled back, unhealthy)
                exc.msg = "Rolled back %s %s to %s, but then %s failed its health check (%s%s): %s is active and " \
                    "unhealthy, and %s %s" % (
                        self.name, active, previous, previous, getattr(exc, "reason", exc.msg),
                        "; see stderr" if exc.stderr.strip() else "", previous, active,
                        "is kept as its backup" if keep_active else "is no longer installed")
                exc.phase = "rollback_health_check"
                exc.reverted = False
                exc.changed = True
                raise

    def _revert_rollback(self, active, previous, exc):
        """The version a rollback returned to failed its post_activate hook: switch back to `active`, so that the
        host and its state stay as they were (the rollback can be retried once the hook is fixed)."""
        try:
            self._swap_current(active)
            # let the update restart whatever the failed post_activate of the backup stopped
            self.hooks.run("post_activate", active, self.release_dir(active), previous)
        except (OSError, SoftwareError) as revert_exc:
            now = self._adopt_current_link()
            exc.msg = "Failed to roll back %s %s to %s: %s, and switching back to %s failed: %s; %s is active" % (
                self.name, active, previous, exc.msg, active, revert_exc, now or "no version")
            exc.phase = "revert"
            exc.changed = True
            self._record("rollback", active, to=previous, result="failed", phase="revert")
            return
        exc.msg = "Failed to roll back %s %s to %s: %s; switched back to %s, which is still active" % (
            self.name, active, previous, exc.msg, active)
        exc.reverted = True
        self._record("rollback", active, to=previous, result="reverted", phase=exc.phase)

    def _adopt_current_link(self):
        """After a failed revert, make the state name the version `current` really points at (the version it
        left becomes that one's first backup, as after an activation). Returns the active version."""
        target = os.readlink(self.current_link) if os.path.islink(self.current_link) else ""
        version = target[len("releases/"):] if target.startswith("releases/") else None
        left = self.state["active"]
        if version in self.state["versions"] and version != left:
            self.state["active"] = version
            self.state["backups"] = [v for v in [left] + self.state["backups"] if v and v != version]
        return self.state["active"]

    def _rolled_back_to(self, active):
        """The history entry of the rollback that made `active` the active version, if that is the last thing
        that changed which version is active (installing or removing other versions since does not count)."""
        for entry in reversed(self.state["history"]):
            action, result = entry.get("action"), entry.get("result")
            if action == "install" or (action == "remove" and entry.get("version") not in (active, None)):
                continue
            if action in ("activate", "rollback") and result == "reverted":
                continue  # a failed update or rollback that was undone: the rollback before it still stands
            if action == "rollback" and result == "ok" and entry.get("to") == active:
                return entry
            return None
        return None

    def _ensure_absent(self):
        active = self.state["active"]
        if self.version:
            if self.version not in self.state["versions"]:
                return
            if self.version == active:
                raise SoftwareError(
                    "Cannot remove %s %s: it is the active version. Roll it back or activate another version "
                    "first, or omit version to uninstall the package." % (self.name, self.version), "remove")
            self._do("remove %s" % self.version)
            if not self.check_mode:
                _artifact.remove_tree(self.release_dir(self.version))
            del self.state["versions"][self.version]
            if self.version in self.state["backups"]:
                self.state["backups"].remove(self.version)
            self._record("remove", self.version)
            return
        if not self.state["versions"] and active is None and not os.path.islink(self.current_link):
            return
        self._do("uninstall %s" % (", ".join(sorted(self.state["versions"])) or self.name))
        if not self.check_mode:
            if active:
                try:
                    self.hooks.run("pre_remove", active, self.release_dir(active))
                except SoftwareError as exc:
                    exc.msg = "Failed to uninstall %s %s: %s; nothing was removed" % (self.name, active, exc.msg)
                    raise
            self._remove_owned()
        self.state.update({"versions": {}, "active": None, "backups": [], "committed": None})
        self._record("remove", active)

    def _remove_owned(self):
        """Remove what the package owns in its install_dir, then the install_dir if that left it empty.

        Anything else there (another tool's files, data the package's service wrote) is kept: the install_dir
        may be shared with things that are not the package's, and an uninstall must not take them along.
        """
        if os.path.islink(self.current_link):
            os.unlink(self.current_link)
        if os.path.isdir(self.base):
            for entry in os.listdir(self.base):  # left by a swap that was interrupted
                path = os.path.join(self.base, entry)
                if entry.startswith("current.tmp-") and os.path.islink(path):
                    os.unlink(path)
        for version in sorted(self.state["versions"]):
            _artifact.remove_tree(self.release_dir(version))
        for directory in (self.releases_dir, self.base):
            try:
                os.rmdir(directory)
            except OSError:
                pass  # not empty (or not there): what is left is not the package's

    # --- building blocks -----------------------------------------------------------------------
    @property
    def hooks(self):
        return HookRunner(self.name, self.root, self.base, self.hook_timeout, self.health_check_timeout)

    def _install(self, version):
        """Make `version` present (unpacked, install hooks run). Returns True when it was installed now."""
        existing = self.state["versions"].get(version)
        if existing is not None:
            if self.sha256 and existing.get("sha256") and existing["sha256"] != self.sha256:
                raise SoftwareError(
                    "%s %s is installed from an artifact with sha256 %s, but %s was requested: one version cannot "
                    "have two contents. Build a new version instead." % (self.name, version, existing["sha256"], self.sha256),
                    "verify")
            return False
        if not self.src:
            raise SoftwareError("%s %s is not installed and no src was given to install it from" % (self.name, version), "fetch")
        # what a real run refuses before fetching, check mode refuses too (it never fetches)
        check_src(self.src, self.sha256)
        if self.check_mode:
            self._check_install_dir_free(version)
            self._do("install %s" % version)
            self.state["versions"][version] = {"sha256": self.sha256, "installed": None}
            return True
        self._do("install %s" % version)
        artifact, digest = self.fetch(self.src, self.sha256)
        try:
            manifest = _artifact.read_manifest(artifact)
        except _artifact.ArtifactError as exc:
            raise SoftwareError("Failed to install %s %s: %s" % (self.name, version, exc), "verify")
        if manifest["name"] != self.name or manifest["version"] != version:
            raise SoftwareError("Failed to install %s %s: the artifact at %s is %s %s" % (
                self.name, version, self.src, manifest["name"], manifest["version"]), "verify")
        self._manifest = manifest
        self._check_install_dir_free(version)
        for requirement in manifest.get("requires") or []:
            problem = check_requirement(self.root, requirement)
            if problem:
                raise SoftwareError("Failed to install %s %s: requirement %r not met: %s" % (
                    self.name, version, requirement, problem), "requires")
        release = self.release_dir(version)
        if os.path.lexists(release):
            # left by an interrupted run that never recorded it: unrecorded means untrusted
            _artifact.remove_tree(release)
        try:
            _artifact.extract_release(artifact, release, manifest)
        except _artifact.ArtifactError as exc:
            raise SoftwareError("Failed to unpack %s %s: %s" % (self.name, version, exc), "unpack")
        except OSError as exc:
            raise SoftwareError("Failed to unpack %s %s into %s: %s" % (self.name, version, release, exc), "unpack")
        try:
            self.hooks.run("pre_install", version, release, self.state["active"])
            self.hooks.run("post_install", version, release, self.state["active"])
        except SoftwareError as exc:
            _artifact.remove_tree(release)
            exc.msg = "Failed to install %s %s: %s; the unpacked release was removed" % (self.name, version, exc.msg)
            exc.reverted = True
            raise
        self.state["install_dir"] = self.install_dir
        self.state["versions"][version] = {"sha256": digest, "installed": utcnow(),
                                           "builder": (manifest.get("build") or {}).get("builder")}
        self._record("install", version)
        return True

    def _check_install_dir_free(self, version):
        """Refuse to install into an install_dir where another package has versions: its uninstall, or ours,
        would remove the other's releases and current link."""
        owner = install_dir_owner(self.root, self.name, self.install_dir)
        if owner is not None:
            raise SoftwareError(
                "Cannot install %s %s into %s: that install_dir belongs to %s (installed: %s). Give %s an install_dir "
                "of its own." % (self.name, version, self.install_dir, owner["name"],
                                 ", ".join(sorted(owner.get("versions") or {})) or "none", self.name), "conflict")

    def _activate(self, version, newly_installed):
        previous = self.state["active"]
        self._do("activate %s%s" % (version, " (backup %s)" % previous if previous else ""))
        if not self.check_mode:
            release = self.release_dir(version)
            try:
                self.hooks.run("pre_activate", version, release, previous)
            except SoftwareError as exc:
                self._undo_install(version, newly_installed)
                exc.msg = "Failed to activate %s %s: %s; %s is still active" % (
                    self.name, version, exc.msg, previous or "no version")
                exc.reverted = True
                raise
            self._swap_current(version)
            try:
                self.hooks.run("post_activate", version, release, previous)
                self.hooks.run("health_check", version, release, previous)
            except SoftwareError as exc:
                self._revert_activation(version, previous, newly_installed, exc)
                raise
        if previous:
            backups = [previous] + [v for v in self.state["backups"] if v not in (previous, version)]
        else:
            backups = [v for v in self.state["backups"] if v != version]
        self.state["active"] = version
        self.state["backups"] = backups[:self.keep]
        for dropped in backups[self.keep:]:
            if not self.check_mode:
                _artifact.remove_tree(self.release_dir(dropped))
            self.state["versions"].pop(dropped, None)
        self._record("activate", version, previous=previous)

    def _revert_activation(self, version, previous, newly_installed, exc):
        try:
            if previous:
                self._swap_current(previous)
                # let the restored version restart whatever the failed one replaced
                self.hooks.run("post_activate", previous, self.release_dir(previous), version)
            elif os.path.lexists(self.current_link):
                os.unlink(self.current_link)
        except (OSError, SoftwareError) as revert_exc:
            now = self._adopt_current_link()
            exc.msg = "Failed to activate %s %s: %s, and the auto-revert to %s failed: %s; %s is active" % (
                self.name, version, exc.msg, previous or "no version", revert_exc, now or "no version")
            exc.phase = "revert"
            exc.changed = True
            self._record("activate", version, previous=previous, result="failed", phase="revert")
            return
        exc.msg = "Failed to activate %s %s: %s; reverted to %s" % (
            self.name, version, exc.msg, previous or "no active version")
        exc.reverted = True
        self._record("activate", version, previous=previous, result="reverted", phase=exc.phase)
        self._undo_install(version, newly_installed)

    def _undo_install(self, version, newly_installed):
        if newly_installed:
            _artifact.remove_tree(self.release_dir(version))
            self.state["versions"].pop(version, None)
            self._record("remove", version, result="reverted")

    def _swap_current(self, version):
        os.makedirs(self.base, 0o755, exist_ok=True)
        tmp = "%s.tmp-%d" % (self.current_link, os.getpid())
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("releases", version), tmp)
        os.replace(tmp, self.current_link)

    def _do(self, action):
        self.actions.append(action)

    def _last(self, action, version):
        for entry in reversed(self.state["history"]):
            if entry.get("action") == action and entry.get("version") == version:
                return entry.get("time")
        return None

    def _record(self, action, version, result="ok", **extra):
        """Append a transition to the history and persist the state (each step is durable on its own)."""
        if self.check_mode:
            return
        entry = {"time": utcnow(), "action": action, "version": version, "result": result}
        entry.update(dict((k, v) for k, v in extra.items() if v is not None))
        self.state["history"].append(entry)
        self._save()

    def _save(self):
        if self.check_mode:
            return
        self.state["install_dir"] = self.install_dir
        os.makedirs(os.path.dirname(self.state_path), 0o755, exist_ok=True)
        write_json_atomic(self.state_path, self.state)


def _scheme(src):
    return src.split("://", 1)[0].lower() if "://" in src else ""


def check_src(src, sha256):
    """Refuse what fetch_artifact would refuse without downloading anything: an unsupported scheme, a URL
    without a sha256 pin, a local artifact that is not there. Read-only, so check mode runs it too."""
    scheme = _scheme(src)
    if scheme and not sha256:
        raise SoftwareError("sha256 is required when src is a URL (%s)" % src, "arguments")
    if scheme not in ("", "file", "http", "https"):
        raise SoftwareError("Unsupported src scheme %r in %s (use a path, file://, http:// or https://)" % (scheme, src), "arguments")
    if scheme in ("", "file") and not os.path.isfile(src[len("file://"):] if scheme == "file" else src):
        raise SoftwareError("Failed to fetch %s: no such file on this host" % src, "fetch")


def fetch_artifact(src, sha256, download_dir, open_url=None, timeout=60):
    """Return (local path, sha256) of the artifact at `src`, verified against `sha256` when given.

    `src` is a path on this host, a file:// URL or an http(s):// URL (downloaded into download_dir
    while being hashed; a mismatch deletes the download). URLs require a sha256 pin.
    """
    check_src(src, sha256)
    scheme = _scheme(src)
    if scheme in ("", "file"):
        path = src[len("file://"):] if scheme == "file" else src
        digest = _artifact.sha256_file(path)
        if sha256 and digest != sha256:
            raise SoftwareError("Checksum mismatch for %s: expected sha256 %s, got %s" % (src, sha256, digest), "verify")
        return path, digest
    if open_url is None:
        from ansible.module_utils.urls import open_url
    os.makedirs(download_dir, 0o755, exist_ok=True)
    final = os.path.join(download_dir, sha256 + _artifact.ARTIFACT_SUFFIX)
    if os.path.isfile(final) and _artifact.sha256_file(final) == sha256:
        return final, sha256
    fd, part = tempfile.mkstemp(prefix=".download-", dir=download_dir)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                response = open_url(src, timeout=timeout)
                for chunk in iter(lambda: response.read(_artifact.CHUNK), b""):
                    digest.update(chunk)
                    handle.write(chunk)
            except Exception as exc:  # urllib raises many kinds; all mean "could not fetch"
                raise SoftwareError("Failed to fetch %s: %s" % (src, exc), "fetch")
        if digest.hexdigest() != sha256:
            raise SoftwareError("Checksum mismatch for %s: expected sha256 %s, got %s" % (
                src, sha256, digest.hexdigest()), "verify")
        os.rename(part, final)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return final, sha256
