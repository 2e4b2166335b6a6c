#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_node
short_description: Provision a node from an OS image and update it in place with two slots (A/B)
version_added: 0.1.0
description:
  - Manages one node on a virtualisation host (run the task on that host, e.g. with C(delegate_to)). With the built-in
    podman backend the node is a pair of containers, one per slot (C(<name>-a), C(<name>-b)), made from the image
    archive of M(esd.osp.image), and a data volume (C(<name>-data)) both slots mount at O(data_path). One slot runs.
  - V(active) provisions the node from the image (slot a) or, when it runs another image, writes the new image to the
    inactive slot, stops the active slot, starts the new one and health-checks it; a failing health check switches
    back (the task fails with RV(reverted=true)). The old slot stays, stopped, as the rollback target until V(committed).
  - The image is imported into podman once per host and version (C(localhost/esd-image/<family>:<version>), labelled
    with its sha256) after its sha256 is verified; O(src) may be a path or an C(http(s)://) URL (a depot).
  - The node's state is kept in C(<state_dir>/<name>.json) on the virtualisation host.
author:
  - esd.osp developers (@esd-osp)
options:
  name:
    description: The node's name (container names and the hostname derive from it).
    type: str
    required: true
  state:
    description:
      - V(present) writes the image to the inactive slot without switching (staging).
      - V(active) makes the image the running one (install, or A/B update keeping the old slot for rollback).
      - V(committed) frees the old slot; the update can no longer be rolled back. With O(version), refuses when the
        node runs another version.
      - V(rolled_back) starts the old slot again and frees the active one. With O(version), nothing happens when that
        version is not the active one (already rolled back). Refused when there is nothing to roll back to.
      - V(absent) removes both slots and the node's state (and the data volume with O(purge_data)).
    type: str
    choices: [present, active, committed, rolled_back, absent]
    default: active
  family:
    description: Image family. Required for V(present) and V(active).
    type: str
  version:
    description: Image version. Required for V(present) and V(active).
    type: str
  sha256:
    description: SHA-256 of the image archive; verified before import. Required for V(present) and V(active).
    type: str
  src:
    description: The image archive, a path on the virtualisation host or an C(http(s)://) URL; needed when podman does not hold the image yet.
    type: str
  state_dir:
    description: Where node state files live on the virtualisation host.
    type: path
    default: /var/lib/esd/nodes
  cache_dir:
    description: Where downloaded archives are kept. Defaults to C(<state_dir>/cache).
    type: path
  data_path:
    description: Where the data volume is mounted in both slots.
    type: str
    default: /srv/data
  network:
    description: podman network of the slots (for example V(host), V(none) or a network name); empty means podman's default.
    type: str
    default: ''
  command:
    description: The slots' command. Defaults to running the image's first-boot script, then C(sleep infinity).
    type: list
    elements: str
  health_command:
    description:
      - Run in a slot after it starts; exit 0 means healthy. Defaults to checking the image manifest is there and the
        first-boot script finished.
    type: list
    elements: str
  health_retries:
    description: How many times (one second apart) the health check is tried before the slot counts as failed.
    type: int
    default: 10
  volumes:
    description: Further C(podman --volume) specifications for both slots.
    type: list
    elements: str
    default: []
  env:
    description: Environment variables of both slots.
    type: dict
    default: {}
  stop_timeout:
    description: Seconds a slot gets to stop before it is killed.
    type: int
    default: 10
  purge_data:
    description: With V(absent), also remove the data volume.
    type: bool
    default: false
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
    support: full
  platform:
    platforms: posix
notes:
  - podman runs with the environment of the task, so E(CONTAINERS_CONF) and E(CONTAINER_HOST) apply.
seealso:
  - module: esd.osp.image
  - module: esd.osp.image_node_info
"""

EXAMPLES = r"""
- name: Provision the node from the image (or update it in place, A/B)
  esd.osp.image_node:
    name: "{{ inventory_hostname }}"
    family: debian12-server
    version: 1.1.0
    sha256: "{{ image_sha256 }}"
    src: "http://depot-01.example.com/blobs/sha256/{{ image_sha256 }}"
    state: active
  delegate_to: "{{ image_node_host }}"

- name: Commit the update once the go/no-go decision is made
  esd.osp.image_node:
    name: "{{ inventory_hostname }}"
    state: committed
  delegate_to: "{{ image_node_host }}"

- name: Roll the node back to its previous image
  esd.osp.image_node:
    name: "{{ inventory_hostname }}"
    family: debian12-server
    version: 1.1.0
    state: rolled_back
  delegate_to: "{{ image_node_host }}"
"""

RETURN = r"""
actions:
  description: What the call did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["write debian12-server 1.1.0 to slot b (web01-b)", "stop web01-a", "start web01-b", "health-check web01-b"]
active:
  description: The running slot and its image after the call (null when none).
  returned: always
  type: dict
  sample: {"slot": "b", "family": "debian12-server", "version": "1.1.0", "sha256": "2c6d...", "container": "web01-b"}
previous:
  description: The rollback target (the old slot) after the call, null when none.
  returned: always
  type: dict
  sample: {"slot": "a", "family": "debian12-server", "version": "1.0.0", "sha256": "9f2c...", "container": "web01-a"}
committed:
  description: Whether the active image is committed.
  returned: always
  type: bool
  sample: false
status:
  description: C(absent), C(staged) (written but never started), C(uncommitted) or C(committed).
  returned: always
  type: str
  sample: uncommitted
slots:
  description: Both slots (null when empty).
  returned: always
  type: dict
  sample: {"a": {"slot": "a", "version": "1.0.0"}, "b": null}
container:
  description: The container of the active slot (null when none).
  returned: always
  type: str
  sample: web01-b
data_volume:
  description: The node's data volume.
  returned: always
  type: str
  sample: web01-data
reverted:
  description: On a failed health check, whether the node was switched back to its previous slot.
  returned: failure
  type: bool
  sample: true
phase:
  description: On failure, the step that failed (podman, image, download, verify, health_check, commit, rollback, state).
  returned: failure
  type: str
  sample: health_check
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils._image_node import NodeError, NodeManager, Podman


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "active", "committed", "rolled_back", "absent"], default="active"),
            family=dict(type="str"),
            version=dict(type="str"),
            sha256=dict(type="str"),
            src=dict(type="str"),
            state_dir=dict(type="path", default="/var/lib/esd/nodes"),
            cache_dir=dict(type="path"),
            data_path=dict(type="str", default="/srv/data"),
            network=dict(type="str", default=""),
            command=dict(type="list", elements="str"),
            health_command=dict(type="list", elements="str"),
            health_retries=dict(type="int", default=10),
            volumes=dict(type="list", elements="str", default=[]),
            env=dict(type="dict", default={}),
            stop_timeout=dict(type="int", default=10),
            purge_data=dict(type="bool", default=False),
            podman_path=dict(type="str", default="podman"),
        ),
        required_if=[("state", "present", ("family", "version", "sha256")),
                     ("state", "active", ("family", "version", "sha256"))],
        supports_check_mode=True,
    )
    p = module.params
    podman_path = module.get_bin_path(p["podman_path"], required=True) if "/" not in p["podman_path"] else p["podman_path"]
    label = "%s %s" % (p["family"] or "", p["version"] or "")
    try:
        manager = NodeManager(p["name"], p["state_dir"], Podman(podman_path), data_path=p["data_path"],
                              network=p["network"], command=p["command"], health_command=p["health_command"],
                              health_retries=p["health_retries"], volumes=p["volumes"], env=p["env"],
                              stop_timeout=p["stop_timeout"], purge_data=p["purge_data"])
        result = manager.apply(p["state"], p["family"], p["version"], p["sha256"], p["src"], p["cache_dir"],
                               check=module.check_mode)
    except NodeError as exc:
        verb = {"present": "stage", "active": "activate", "committed": "commit", "rolled_back": "roll back",
                "absent": "remove"}[p["state"]]
        module.fail_json(msg="Failed to %s%s on node %s: %s" % (verb, (" " + label.strip()) if label.strip() else "",
                                                                p["name"], exc.msg),
                         phase=exc.phase, reverted=exc.reverted, output=exc.output)
    after = result["after"]
    output = dict(changed=result["changed"], actions=result["actions"], active=after["active"],
                  previous=after["previous"], committed=after["committed"], status=after["status"],
                  slots=after["slots"], data_volume=after["data_volume"],
                  container=(after["active"] or {}).get("container"))
    if module._diff:
        output["diff"] = {"before": result["before"], "after": after}
    module.exit_json(**output)


if __name__ == "__main__":
    main()
