#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: software_info
short_description: Report the esd.osp packages installed on a host
version_added: 0.1.0
description:
  - Reads the state files of M(esd.osp.software) and reports, per package, the installed versions, the active one,
    its backups, the committed one and the last transition. Changes nothing.
  - This is the software inventory audited before and after a change.
author:
  - esd.osp developers (@esd-osp)
options:
  name:
    description: Only report these packages.
    type: list
    elements: str
    default: []
  root:
    description: Install prefix the packages were installed under (see M(esd.osp.software)). Empty means C(/).
    type: path
    default: ''
  history:
    description: Include the full transition history of each package.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: esd.osp.software
"""

EXAMPLES = r"""
- name: Audit the installed software
  esd.osp.software_info:
  register: inventory

- name: Show what is active
  ansible.builtin.debug:
    msg: "{{ inventory.packages | items2dict(key_name='name', value_name='active') }}"
"""

RETURN = r"""
packages:
  description: One entry per package known on the host (uninstalled packages stay listed with RV(packages[].installed) empty).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Package name.
      type: str
      returned: always
      sample: payroll-agent
    active:
      description: Active version, or null.
      type: str
      returned: always
      sample: 2.4.1
    backups:
      description: Versions kept for rollback, newest first.
      type: list
      elements: str
      returned: always
      sample: ["2.4.0"]
    committed:
      description: Last committed version, or null.
      type: str
      returned: always
      sample: 2.4.0
    installed:
      description: Installed versions.
      type: list
      elements: str
      returned: always
      sample: ["2.4.0", "2.4.1"]
    status:
      description: C(committed) (active and committed), C(uncommitted) (active with a pending update), C(staged) (installed, none active) or C(absent).
      type: str
      returned: always
      sample: uncommitted
    digests:
      description: Artifact sha256 per installed version.
      type: dict
      returned: always
      sample: {"2.4.1": "5f2b0c7e4f4c3b1d8e8f0b1a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f"}
    last_change:
      description: The last recorded transition.
      type: dict
      returned: always
      sample: {"time": "2026-11-21T10:00:00Z", "action": "activate", "version": "2.4.1", "result": "ok"}
    history:
      description: All recorded transitions.
      type: list
      elements: dict
      returned: when O(history=true)
      sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils._transaction import SoftwareError, describe, list_states


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="list", elements="str", default=[]),
            root=dict(type="path", default=""),
            history=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    wanted = set(module.params["name"])
    try:
        states = list_states(module.params["root"] or "")
    except SoftwareError as exc:
        module.fail_json(msg=exc.msg)
    packages = [describe(state, module.params["history"]) for state in states if not wanted or state["name"] in wanted]
    module.exit_json(changed=False, packages=packages)


if __name__ == "__main__":
    main()
