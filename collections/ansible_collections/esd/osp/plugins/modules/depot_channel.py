#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: depot_channel
short_description: Mirror a signed repository channel onto a depot, or delete packages from a depot
version_added: 0.1.0
description:
  - Runs on a depot host and pulls one channel (normally C(production)) from its upstream, the repository or another
    depot, over C(http(s)://), C(file://) or a local directory.
  - The channel index is verified against O(public_keys) before any digest in it is trusted (pure-Python Ed25519 when
    the C(cryptography) library is absent, so depots need nothing beyond Python). A tampered or unsigned index, or an
    index older than the one already published here (a rollback), is refused.
  - Every blob is hashed while it is written and refused when its size or sha256 differs from the signed index.
    Blobs already present and valid are skipped, and a partial download is resumed (HTTP range requests), so an
    interrupted sync picks up where it stopped. A present blob that no longer matches its sha256 is fetched again.
  - The index is published only when every blob it carries is in place and verified, so a sync never publishes an
    entry whose blob it has not fetched; blobs no longer listed are pruned afterwards.
  - O(state=absent) is the catalogue's C(delete_package) on depots, removing packages' blobs from this depot and
    keeping them out of later syncs until readmitted with O(readmit). The published index stays the repository's
    signed bytes, so it still lists them; C(depot.json) lists them under C(excluded), and the
    P(esd.osp.channel_index#lookup) lookup refuses them with "<name> <version> was deleted from depot ...".
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The depot directory (what the web server serves), inside O(root).
    type: path
    default: /srv/esd/depot
  root:
    description: Prefix for O(path), like C(dpkg --root) (the local demo fleet gives every host its own root). Empty means C(/).
    type: path
    default: ''
  channel:
    description: The channel to mirror.
    type: str
    default: production
  state:
    description:
      - V(present) syncs the channel from O(src).
      - V(absent) deletes O(packages) from this depot and excludes them from later syncs.
    type: str
    choices: [present, absent]
    default: present
  src:
    description:
      - The upstream base, as seen from the depot host, that holds C(channels/<channel>.json) and C(blobs/sha256/<hex>),
        as an C(http://), C(https://) or C(file://) URL, or a directory. Required for O(state=present).
    type: str
  public_keys:
    description: Trusted Ed25519 public keys (C(ed25519:<base64>)); the index must be signed by one of them. Required for O(state=present).
    type: list
    elements: str
    default: []
  packages:
    description: For O(state=absent), the packages to delete from this depot, as C(name) (every version) or C(name=version).
    type: list
    elements: str
    default: []
  readmit:
    description: For O(state=present), packages (C(name) or C(name=version)) deleted from this depot earlier that this sync brings back.
    type: list
    elements: str
    default: []
  bandwidth_limit:
    description: Average download rate limit for the whole sync, in KiB/s; C(0) means no limit.
    type: int
    default: 0
  verify_present:
    description:
      - Re-hash blobs that are already present (finds and repairs damaged ones). When false, a present blob of the right
        size is trusted.
    type: bool
    default: true
  prune:
    description: Delete blobs that the channel no longer lists (retired or deleted packages).
    type: bool
    default: true
  force:
    description: Accept an index with a lower serial than the one published here (a deliberate rollback of the channel).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the upstream to answer a request.
    type: int
    default: 60
  validate_certs:
    description: Validate TLS certificates of an C(https://) upstream.
    type: bool
    default: true
  actor:
    description: Who runs the sync, recorded in C(depot.json). Defaults to E(ESD_USER), else the login user.
    type: str
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
  - Only one sync runs on a depot at a time; C(<path>/.lock) holds the pid of the running one.
  - The state file C(<path>/depot.json) records the published serial, the upstream, the signing key id and the
    packages deleted from this depot.
seealso:
  - module: esd.osp.repository
  - module: esd.osp.repository_info
"""

EXAMPLES = r"""
- name: Mirror production from the repository host, at most 20 MiB/s
  esd.osp.depot_channel:
    path: /srv/esd/depot
    src: http://repo-01.example.com/esd
    public_keys: "{{ repository_public_keys }}"
    bandwidth_limit: 20480

- name: Delete an old package from this depot (the repository keeps it)
  esd.osp.depot_channel:
    path: /srv/esd/depot
    packages: [payroll-agent=2.3.0]
    state: absent
"""

RETURN = r"""
actions:
  description: What the call did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["fetch payroll-agent 2.4.1 (blob 9f2c..., 20480 bytes)", "publish production index serial 7 (signed by 3b6f0c9a1d2e4f50)"]
path:
  description: The real depot directory (with O(root)).
  returned: always
  type: str
  sample: /srv/esd/depot
serial:
  description: The serial of the index now published.
  returned: when state is present
  type: int
  sample: 7
key_id:
  description: The key that signed that index.
  returned: when state is present
  type: str
  sample: 3b6f0c9a1d2e4f50
index_sha256:
  description: The sha256 of that index.
  returned: when state is present
  type: str
  sample: 0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d
entries:
  description: How many entries the index lists.
  returned: when state is present
  type: int
  sample: 12
blobs_total:
  description: How many distinct blobs this depot carries for the index (excluded packages left out).
  returned: when state is present
  type: int
  sample: 12
blobs_present:
  description: Blobs that were already present and valid (skipped).
  returned: when state is present
  type: int
  sample: 10
blobs_fetched:
  description: Blobs fetched because they were missing (including resumed partial downloads).
  returned: when state is present
  type: int
  sample: 1
blobs_repaired:
  description: Blobs fetched again because the present copy did not match its sha256.
  returned: when state is present
  type: int
  sample: 1
blobs_pruned:
  description: Blobs deleted because the index no longer lists them.
  returned: when state is present
  type: int
  sample: 0
bytes_total:
  description: Total size of the blobs this depot carries.
  returned: when state is present
  type: int
  sample: 268435456
bytes_fetched:
  description: Bytes downloaded by this call.
  returned: when state is present
  type: int
  sample: 33554432
bytes_resumed:
  description: Bytes of partial downloads kept from an interrupted sync (not downloaded again).
  returned: when state is present
  type: int
  sample: 16777216
excluded:
  description: Packages deleted from this depot (kept out of syncs), with who and when.
  returned: always
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.3.0, sha256: 5d41..., by: alice, at: "2026-03-02T10:00:00Z"}]
deleted:
  description: For O(state=absent), the index entries that were deleted from this depot.
  returned: when state is absent
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.3.0, sha256: 5d41...}]
not_found:
  description: For O(state=absent), package references that matched nothing in the published index.
  returned: when state is absent
  type: list
  elements: str
  sample: []
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils import _depot, _repository, _signing


def join_root(root, path):
    if not root or root == "/":
        return path
    return os.path.join(root, path.lstrip("/"))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/srv/esd/depot"),
            root=dict(type="path", default=""),
            channel=dict(type="str", default="production"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            src=dict(type="str"),
            public_keys=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            readmit=dict(type="list", elements="str", default=[]),
            bandwidth_limit=dict(type="int", default=0),
            verify_present=dict(type="bool", default=True),
            prune=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
            validate_certs=dict(type="bool", default=True),
            actor=dict(type="str"),
        ),
        required_if=[("state", "present", ("src", "public_keys")), ("state", "absent", ("packages",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["bandwidth_limit"] < 0:
        module.fail_json(msg="bandwidth_limit must be 0 (no limit) or a positive number of KiB/s, got %d" % p["bandwidth_limit"])
    path = join_root(p["root"], p["path"])
    depot = _depot.Depot(path, channel=p["channel"], actor=p["actor"])
    try:
        before = depot.state()
        if p["state"] == "present":
            source = _depot.Source(p["src"], timeout=p["timeout"], validate_certs=p["validate_certs"])
            result = depot.sync(source, p["public_keys"], bandwidth_limit=p["bandwidth_limit"],
                                verify_present=p["verify_present"], prune=p["prune"], force=p["force"],
                                readmit=p["readmit"], check=module.check_mode)
            after_serial = result["serial"]
        else:
            result = depot.delete(p["packages"], check=module.check_mode)
            after_serial = before.get("serial", 0)
            for ref in result["not_found"]:
                module.warn("%s is not in the %s index published on depot %s; nothing to delete" % (ref, p["channel"], path))
    except (_depot.DepotError, _repository.RepositoryError, _signing.SigningError) as exc:
        module.fail_json(msg="Failed to %s depot %s: %s" % (
            "sync the %s channel to" % p["channel"] if p["state"] == "present" else "delete %s from" % ", ".join(p["packages"]),
            path, exc), path=path)
    except OSError as exc:
        module.fail_json(msg="Failed to manage depot %s: %s" % (path, exc), path=path, exception=traceback.format_exc())
    result.pop("channel", None)
    result.pop("source", None)
    result["path"] = path
    if module._diff:
        result["diff"] = {
            "before": "serial: %s\nexcluded: %s\n" % (before.get("serial", 0), ", ".join(
                "%s=%s" % (x["name"], x["version"]) for x in before.get("excluded", [])) or "-"),
            "after": "serial: %s\nexcluded: %s\n%s" % (after_serial, ", ".join(
                "%s=%s" % (x["name"], x["version"]) for x in result["excluded"]) or "-",
                "".join("%s\n" % a for a in result["actions"])),
            "before_header": "%s/depot.json" % path,
            "after_header": "%s/depot.json" % path,
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
