#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_node_info
short_description: Report the nodes provisioned from OS images on a virtualisation host and their A/B slots
version_added: 0.1.0
description:
  - Reads the node state files of M(esd.osp.image_node) on a virtualisation host and checks them against podman
    (which slot's container runs). Never changes anything.
author:
  - esd.osp developers (@esd-osp)
options:
  name:
    description: Only report these nodes (all nodes when empty).
    type: list
    elements: str
    default: []
  state_dir:
    description: Where node state files live on the virtualisation host.
    type: path
    default: /var/lib/esd/nodes
  podman_path:
    description: The podman executable.
    type: str
    default: podman
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
  - module: esd.osp.image_node
"""

EXAMPLES = r"""
- name: Which image does each node run?
  esd.osp.image_node_info:
  register: nodes

- name: Show them
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.active.family }} {{ item.active.version }} ({{ item.status }})"
  loop: "{{ nodes.nodes | selectattr('active') | list }}"
"""

RETURN = r"""
nodes:
  description: One entry per node.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web01
      status: uncommitted
      running: true
      active: {"slot": "b", "family": "debian12-server", "version": "1.1.0", "sha256": "2c6d...", "container": "web01-b"}
      previous: {"slot": "a", "family": "debian12-server", "version": "1.0.0", "sha256": "9f2c...", "container": "web01-a"}
      committed: false
      slots: {"a": {"slot": "a"}, "b": {"slot": "b"}}
      data_volume: web01-data
      problems: []
images:
  description: The images the nodes use, as C(<family>:<version>) mapped to the node names that run or keep them.
  returned: always
  type: dict
  sample: {"debian12-server:1.1.0": ["web01"], "debian12-server:1.0.0": ["web01"]}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils._image_node import NodeError, NodeManager, Podman, list_nodes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="list", elements="str", default=[]),
            state_dir=dict(type="path", default="/var/lib/esd/nodes"),
            podman_path=dict(type="str", default="podman"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    names = p["name"] or list_nodes(p["state_dir"])
    if not any(os.path.exists(os.path.join(p["state_dir"], "%s.json" % name)) for name in names):
        # no node on this host: nothing to ask podman (which need not even be installed)
        module.exit_json(changed=False, nodes=[dict(NodeManager.describe(NodeManager(n, p["state_dir"]).empty_state()),
                                                    running=False, problems=[]) for n in names], images={})
    podman = Podman(module.get_bin_path(p["podman_path"], required=True) if "/" not in p["podman_path"] else p["podman_path"])
    nodes, images = [], {}
    try:
        for name in names:
            manager = NodeManager(name, p["state_dir"], podman)
            view = manager.describe(manager.load())
            problems = []
            running = False
            for slot, info in sorted(view["slots"].items()):
                if not info:
                    continue
                images.setdefault("%s:%s" % (info["family"], info["version"]), []).append(name)
                container = podman.container(info["container"])
                if container is None:
                    problems.append("slot %s: its container %s is missing" % (slot, info["container"]))
                elif view["active"] and slot == view["active"]["slot"]:
                    running = container["running"]
                    if not running:
                        problems.append("slot %s is the active slot but %s is not running" % (slot, info["container"]))
                elif container["running"]:
                    problems.append("slot %s is not the active slot but %s is running" % (slot, info["container"]))
            view.update(running=running, problems=problems)
            nodes.append(view)
    except NodeError as exc:
        module.fail_json(msg="Failed to read the nodes in %s: %s" % (p["state_dir"], exc.msg))
    module.exit_json(changed=False, nodes=nodes, images=dict((k, sorted(set(v))) for k, v in sorted(images.items())))


if __name__ == "__main__":
    main()
