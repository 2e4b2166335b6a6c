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
  - Archives are checked before anything is written; absolute paths, C(..), links leaving the tree, hard links and
    device files are refused.
  - A state file C(<root>/var/lib/esd/software/<name>.json) records the installed versions, the active one, its
    backups, the committed one and a history of transitions with timestamps.
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
      - V(rolled_back) returns to the backup of an uncommitted update and removes the rolled-back version
        (a version that was only staged is simply removed). Rolling back a committed update is refused, and so is
        naming the backup itself as O(version) (that would delete the version a rollback returns to).
      - Without O(version), V(rolled_back) rolls back the last update once; when the last change of the active
        version was a rollback to it, a second run changes nothing and says so in RV(msg). To roll back
        further, name the active version.
      - V(absent) uninstalls the package (running its C(pre_remove) hook), or removes one inactive O(version).
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
    description: Where releases live, inside O(root). Defaults to the package's own C(install_dir) (C(/opt/esd/<name>)).
    type: path
  keep:
    description: How many previous versions to keep as backups (for O(state=rolled_back)) until committed.
    type: int
    default: 1
  health_check_timeout:
    description: Seconds the package's C(health_check) hook may run before it counts as failed.
    type: int
    default: 60
  hook_timeout:
    description: Seconds any other hook may run.
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
active:
  description: The active version after the call (null when none).
  returned: always
  type: str
  sample: 2.4.1
backup:
  description: The version a rollback would return to (null when none).
  returned: always
  type: str
  sample: 2.4.0
backups:
  description: All kept backups, newest first.
  returned: always
  type: list
  elements: str
  sample: ["2.4.0"]
committed:
  description: The last committed version.
  returned: always
  type: str
  sample: 2.4.0
installed:
  description: All installed versions.
  returned: always
  type: list
  elements: str
  sample: ["2.4.0", "2.4.1"]
install_dir:
  description: The real install directory (with O(root)).
  returned: always
  type: str
  sample: /opt/esd/payroll-agent
actions:
  description: What the call did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["install 2.4.1", "activate 2.4.1 (backup 2.4.0)"]
msg:
  description: Why nothing was done when the request was already fulfilled (a second O(state=rolled_back)).
  returned: when there was nothing to roll back
  type: str
  sample: "Nothing to roll back: payroll-agent was rolled back from 2.4.1 to 2.4.0 on 2026-12-12T22:14:03Z, and 2.4.0 is still active"
phase:
  description:
    - The step that failed, for triage; C(fetch), C(verify), C(arguments) and C(unpack) failures leave the host
      unchanged, hook and C(health_check) failures are reverted, C(revert) means the auto-revert itself failed.
    - C(rollback_health_check) means a rollback happened but the version it returned to failed its health check;
      the host stays rolled back (RV(reverted=false), C(changed=true)).
    - C(rollback), C(commit) and C(remove) mean the request was refused and nothing changed.
  returned: failure
  type: str
  sample: health_check
reverted:
  description:
    - Whether the host was returned to its state before the call after a failure. False when the host is left
      changed (C(revert), C(rollback_health_check)) and when nothing needed reverting.
  returned: failure
  type: bool
  sample: true
rc:
  description: Exit code of the failing hook.
  returned: when a hook failed
  type: int
  sample: 3
stdout:
  description: Output of the failing hook.
  returned: when a hook failed
  type: str
  sample: "checking port 8080"
stderr:
  description: Error output of the failing hook.
  returned: when a hook failed
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
        module.fail_json(msg="keep must be 0 or more, got %d" % params["keep"], phase="arguments")
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

    try:
        manager = SoftwareManager(
            params["name"], params["state"], version=params["version"], src=params["src"], sha256=params["sha256"],
            root=root, install_dir=params["install_dir"], keep=params["keep"],
            health_check_timeout=params["health_check_timeout"], hook_timeout=params["hook_timeout"],
            check_mode=module.check_mode, fetch=fetch)
        result = manager.run()
    except ArtifactError as exc:
        finish(module.fail_json, msg="Invalid arguments for %s: %s" % (params["name"], exc), phase="arguments",
               changed=False)
    except SoftwareError as exc:
        finish(module.fail_json, msg=exc.msg, phase=exc.phase, rc=exc.rc, stdout=exc.stdout, stderr=exc.stderr,
               reverted=exc.reverted, changed=exc.changed)
    except OSError as exc:
        finish(module.fail_json, msg="Failed to manage %s under %s: %s" % (params["name"], root or "/", exc),
               phase="io", changed=False)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    finish(module.exit_json, **result)


if __name__ == "__main__":
    main()
