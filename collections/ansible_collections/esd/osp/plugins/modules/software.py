#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: software
short_description: Install, activate, commit, roll back or remove an esd.osp package transactionally
version_added: 0.1.0
description:
  - Manages one package on one host in the install, activate, commit / rollback discipline of change-controlled
    software distribution. Versions unpack into C(<install_dir>/releases/<version>); the C(current) link is swapped
    atomically on activation; the previously active version stays as a backup until the update is committed.
  - One call does everything one transition needs (fetch, checksum verification, safe unpacking, hooks, atomic
    activation and health check), so a host costs one round-trip per step.
  - A failing health check (or C(post_activate) hook) reverts the host to its previous version and the task fails
    with the phase and the hook's output. When the version a rollback returned to fails its health check, the
    host stays rolled back; the task fails with RV(phase=rollback_health_check), RV(reverted=false) and
    C(changed=true).
  - When the version a rollback returns to fails its C(pre_activate) hook, nothing changes; when it fails its
    C(post_activate) hook, the C(current) link is switched back to the update (whose C(post_activate) runs
    again) and the state is left as it was. Either way the task fails with the hook's name as RV(phase), its
    output, C(changed=false) and the update still active, so the rollback can be retried.
  - "Hook failures name the package, the version and the hook, for example
    C(Failed to activate payroll-agent 2.4.1: post_activate hook exited 4 (see stderr\\); reverted to 2.4.0).
    Each hook runs in a session of its own; one that outlives its timeout is killed together with every process
    it started."
  - Archives are checked before anything is written; absolute paths, C(..), links leaving the tree, hard links and
    device files are refused.
  - A state file C(<root>/var/lib/esd/software/<name>.json) records the install directory, the installed versions,
    the active one, its backups, the committed one and a history of transitions with timestamps.
  - A package owns C(releases/<version>) of its installed versions and the C(current) link in its install
    directory, and nothing else there; two packages cannot share one install directory.
author:
  - esd.osp developers (@esd-osp)
options:
  name:
    description: Package name.
    type: str
    required: true
  version:
    description:
      - Package version. Required for O(state=present) and O(state=active).
      - For O(state=committed) and O(state=rolled_back) it defaults to the active version; for O(state=absent)
        leaving it out uninstalls the whole package.
    type: str
  state:
    description:
      - V(present) installs (stages) the version without activating it.
      - V(active) installs it if needed and makes it the active version; the previous active version becomes the backup.
      - V(committed) makes the active update permanent and removes its backups (activating O(version) first if given).
        Versions staged with V(present) and not activated since are kept.
      - V(rolled_back) returns to the state before the last uncommitted update (the activation of the active version)
        by re-activating the newest backup and removing the rolled-back version (a version that was only staged is
        simply removed). When that update re-activated the committed version (for example 1.0 committed, 1.1
        activated, 1.0 activated again), the rollback re-activates the backup (1.1) and keeps the committed version
        installed as its backup. Rolling back a committed update (no backup left) is refused, and so is naming the
        backup itself as O(version) (that would delete the version a rollback returns to).
      - Without O(version), V(rolled_back) rolls back the last update once; when the last change of the active
        version was a rollback to it, a second run changes nothing and says so in RV(msg). To roll back
        further, name the active version.
      - V(absent) uninstalls the package (running its C(pre_remove) hook; if that fails nothing is removed), or
        removes one inactive O(version). An uninstall removes what the package owns (C(releases/<version>), the
        C(current) link) and then its install directory only if that left it empty; other files there stay. The
        state file stays, with the history, and shows the package as absent.
    type: str
    choices: [present, active, committed, rolled_back, absent]
    default: active
  src:
    description:
      - Where the artifact is, when the version is not installed yet.
      - A path on the managed host, a C(file://) URL, or an C(http://)/C(https://) URL (for example a depot server).
    type: str
  sha256:
    description:
      - Expected SHA-256 of the artifact. Required when O(src) is a URL (checked in check mode too); verified before
        anything is unpacked.
    type: str
  root:
    description:
      - Install under this prefix, like C(dpkg --root) (image building, and the local demo fleet). Empty means C(/).
    type: path
    default: ''
  install_dir:
    description:
      - Where releases live, inside O(root). Defaults to the package's own C(install_dir) (C(/opt/esd/<name>)).
      - Must be absolute and normalised, without C(..), and a directory of the package's own, not C(/) or a
        system directory such as C(/usr), C(/usr/local), C(/etc), C(/var) or C(/opt) (C(/opt/hello-agent) is fine).
        The same rules apply to the C(install_dir) in an artifact's manifest. Installing into an install directory
        where another package has versions installed is refused (RV(phase=conflict)).
    type: path
  keep:
    description: How many previous versions to keep as backups (for O(state=rolled_back)) until committed.
    type: int
    default: 1
  health_check_timeout:
    description:
      - Seconds the package's C(health_check) hook may run before it counts as failed; it is then killed with every
        process it started.
    type: int
    default: 60
  hook_timeout:
    description: Seconds any other hook may run (then it is killed with every process it started, and fails).
    type: int
    default: 300
  download_timeout:
    description: Seconds to wait for a URL to answer.
    type: int
    default: 60
  inventory:
    description:
      - Also return RV(inventory), the host's whole software inventory under O(root) (every package, as
        M(esd.osp.software_info) reports it) as found before the call and as left after it, on success and on
        failure. The C(esd) runner's before/after audit of a production stage reads it instead of running
        M(esd.osp.software_info) twice more on every host.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Hooks run with the environment variables E(ESD_PACKAGE), E(ESD_VERSION), E(ESD_PHASE), E(ESD_ROOT),
    E(ESD_INSTALL_DIR), E(ESD_RELEASE_DIR) and E(ESD_PREVIOUS_VERSION), in the release directory.
seealso:
  - module: esd.osp.package
  - module: esd.osp.software_info
"""

EXAMPLES = r"""
- name: Update the payroll agent from the depot (the previous version stays as backup)
  esd.osp.software:
    name: payroll-agent
    version: 2.4.1
    src: "http://depot-01.example.com/blobs/sha256/{{ payroll_sha256 }}"
    sha256: "{{ payroll_sha256 }}"
    state: active

- name: Commit the update once the go/no-go decision is made
  esd.osp.software:
    name: payroll-agent
    state: committed

- name: Roll back hosts where the update misbehaves
  esd.osp.software:
    name: payroll-agent
    version: 2.4.1
    state: rolled_back
"""

RETURN = r"""
name:
  description: The package name.
  returned: success
  type: str
  sample: payroll-agent
version:
  description: The requested O(version) (null when none was given).
  returned: success
  type: str
  sample: 2.4.1
state:
  description: The requested O(state).
  returned: success
  type: str
  sample: active
active:
  description: The active version after the call (null when none).
  returned: success
  type: str
  sample: 2.4.1
backup:
  description: The version a rollback would return to (null when none).
  returned: success
  type: str
  sample: 2.4.0
backups:
  description: All kept backups, newest first.
  returned: success
  type: list
  elements: str
  sample: ["2.4.0"]
committed:
  description: The last committed version.
  returned: success
  type: str
  sample: 2.4.0
installed:
  description: All installed versions.
  returned: success
  type: list
  elements: str
  sample: ["2.4.0", "2.4.1"]
install_dir:
  description: The real install directory (with O(root)).
  returned: success
  type: str
  sample: /opt/esd/payroll-agent
actions:
  description: What the call did (or would do in check mode), in order.
  returned: success
  type: list
  elements: str
  sample: ["install 2.4.1", "activate 2.4.1 (backup 2.4.0)"]
msg:
  description:
    - Why nothing was done when the request was already fulfilled (a second O(state=rolled_back)).
    - On failure, what failed, on which package and version, and why.
  returned: when there was nothing to roll back, and on failure
  type: str
  sample: "Nothing to roll back: payroll-agent was rolled back from 2.4.1 to 2.4.0 on 2026-12-12T22:14:03Z, and 2.4.0 is still active"
phase:
  description:
    - The step that failed, for triage.
    - C(arguments), C(fetch), C(verify), C(unpack), C(requires) (a prerequisite is not active), C(conflict)
      (another package has versions in the install directory) and C(state) (the package's state file is
      unreadable or records an unusable install directory) leave the host unchanged.
    - C(pre_install), C(post_install), C(pre_activate), C(post_activate) and C(health_check) are hook failures; what
      the call changed was reverted. In a rollback, C(pre_activate) changed nothing and C(post_activate) switched
      back to the update.
    - C(pre_remove) means the uninstall's hook failed and nothing was removed.
    - C(revert) means the auto-revert itself failed (C(changed=true)); the state names the version C(current) points
      at, and the message says which.
    - C(rollback_health_check) means a rollback happened but the version it returned to failed its health check;
      the host stays rolled back (RV(reverted=false), C(changed=true)).
    - C(rollback), C(commit) and C(remove) mean the request was refused and nothing changed.
    - C(io) is an unexpected I/O error (a full disk, a read-only file system); C(changed) says whether the host was
      changed before it.
  returned: failure
  type: str
  sample: health_check
reverted:
  description:
    - Whether the host was returned to its state before the call after a failure. False when the host is left
      changed (C(revert), C(rollback_health_check), C(io) with C(changed=true)) and when nothing needed reverting.
  returned: failure
  type: bool
  sample: true
rc:
  description: Exit code of the failing hook; null when no hook failed, or when it timed out (and was killed).
  returned: failure
  type: int
  sample: 3
stdout:
  description: Output of the failing hook (empty when no hook failed).
  returned: failure
  type: str
  sample: "checking port 8080"
stderr:
  description: Error output of the failing hook (empty when no hook failed).
  returned: failure
  type: str
  sample: "connection refused"
inventory:
  description:
    - The host's software inventory before and after the call, each a list of packages in the form of
      M(esd.osp.software_info)'s C(packages); C(error) instead when the state directory could not be read.
  returned: when O(inventory=true)
  type: dict
  sample: {"before": [{"name": "payroll-agent", "active": "2.4.0", "committed": "2.4.0", "status": "committed"}],
           "after": [{"name": "payroll-agent", "active": "2.4.1", "committed": "2.4.0", "status": "uncommitted"}]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.esd.osp.plugins.module_utils._artifact import ArtifactError
from ansible_collections.esd.osp.plugins.module_utils._transaction import (
    STATES,
    SoftwareError,
    SoftwareManager,
    describe,
    fetch_artifact,
    join_root,
    list_states,
)


def read_inventory(root):
    """Every package's software_info view under root, or None with the reason."""
    try:
        return [describe(state) for state in list_states(root)], None
    except (SoftwareError, OSError, ValueError) as exc:
        return None, getattr(exc, "msg", None) or str(exc)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str"),
            state=dict(type="str", default="active", choices=list(STATES)),
            src=dict(type="str"),
            sha256=dict(type="str"),
            root=dict(type="path", default=""),
            install_dir=dict(type="path"),
            keep=dict(type="int", default=1),
            health_check_timeout=dict(type="int", default=60),
            hook_timeout=dict(type="int", default=300),
            download_timeout=dict(type="int", default=60),
            inventory=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("version",)), ("state", "active", ("version",))],
        supports_check_mode=True,
    )
    params = module.params
    if params["keep"] < 0:
        module.fail_json(msg="keep must be 0 or more, got %d" % params["keep"], phase="arguments", changed=False,
                         reverted=False, rc=None, stdout="", stderr="")
    root = params["root"] or ""
    download_dir = join_root(root, "/var/cache/esd/downloads")

    def fetch(src, sha256):
        return fetch_artifact(src, sha256, download_dir, open_url=open_url, timeout=params["download_timeout"])

    inventory = {}
    if params["inventory"]:
        inventory["before"], problem = read_inventory(root)
        if problem:
            inventory["error"] = "before: %s" % problem

    def finish(report, **result):
        if params["inventory"]:
            inventory["after"], problem = read_inventory(root)
            if problem:
                inventory["error"] = "; ".join(filter(None, [inventory.get("error"), "after: %s" % problem]))
            result["inventory"] = inventory
        report(**result)

    def fail(msg, phase, changed=False, reverted=False, rc=None, stdout="", stderr=""):
        finish(module.fail_json, msg=msg, phase=phase, changed=changed, reverted=reverted, rc=rc, stdout=stdout,
               stderr=stderr)

    manager = None
    try:
        manager = SoftwareManager(
            params["name"], params["state"], version=params["version"], src=params["src"], sha256=params["sha256"],
            root=root, install_dir=params["install_dir"], keep=params["keep"],
            health_check_timeout=params["health_check_timeout"], hook_timeout=params["hook_timeout"],
            check_mode=module.check_mode, fetch=fetch)
        result = manager.run()
    except ArtifactError as exc:
        fail("Invalid arguments for %s: %s" % (params["name"], exc), "arguments")
    except SoftwareError as exc:
        fail(exc.msg, exc.phase, changed=exc.changed, reverted=exc.reverted, rc=exc.rc, stdout=exc.stdout,
             stderr=exc.stderr)
    except OSError as exc:
        # an I/O error can strike after the host was changed (a release unpacked, the link swapped, the state
        # written): say so, or triage would take the host for untouched
        changed = manager is not None and manager.host_changed()
        fail("Failed to manage %s under %s: %s%s" % (params["name"], root or "/", exc,
                                                     " (the host was changed before the error)" if changed else ""),
             "io", changed=changed)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    finish(module.exit_json, **result)


if __name__ == "__main__":
    main()
