#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: repository_info
short_description: Read the channels, catalogue and integrity of an esd.osp repository
version_added: 0.1.0
description:
  - Reports the channels of a repository (serial, entries, signing key) and the catalogue of name/version bindings,
    optionally filtered by channel, name and version. Never changes anything.
  - With O(public_keys) (or O(keyring)), every signed channel index (and the production index, which must be signed) is
    verified; without them no signature is checked and RV(signatures) says V(not checked). With O(verify_blobs),
    every listed blob is re-hashed. Problems are listed in RV(problems) and RV(valid) says whether there were none;
    the module does not fail on them unless O(fail_on_problems).
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The repository directory on the managed host.
    type: path
    required: true
  channel:
    description: Only report this channel.
    type: str
  name:
    description: Only report entries and catalogue records of this name.
    type: str
  version:
    description: Only report this version (with O(name)).
    type: str
  public_keys:
    description: Trusted public keys (C(ed25519:<base64>)) to verify the channel signatures with.
    type: list
    elements: str
    default: []
  keyring:
    description: A keyring directory on the managed host whose non-revoked public keys are trusted (added to O(public_keys)).
    type: path
  verify_blobs:
    description: Re-hash every blob a channel lists and report missing or corrupt ones (reads every byte).
    type: bool
    default: false
  fail_on_problems:
    description: Fail when a signature does not verify or a blob is missing or corrupt.
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
  - module: esd.osp.repository
"""

EXAMPLES = r"""
- name: What is in production, verified against the repository's keys
  esd.osp.repository_info:
    path: /srv/esd/repository
    channel: production
    keyring: /etc/esd/keys
    fail_on_problems: true
  register: production

- name: Full integrity check (signatures and every blob)
  esd.osp.repository_info:
    path: /srv/esd/repository
    keyring: /etc/esd/keys
    verify_blobs: true
  register: integrity
"""

RETURN = r"""
exists:
  description: Whether O(path) holds a repository.
  returned: always
  type: bool
  sample: true
config:
  description: The repository configuration (channels in promotion order, max_live_images, creation).
  returned: when the repository exists
  type: dict
  sample: {channels: [build, test, production], max_live_images: 2}
channels:
  description: Per channel, its serial, signing key, verification result and (filtered) entries.
  returned: when the repository exists
  type: dict
  sample:
    production:
      serial: 7
      signed_by: 3b6f0c9a1d2e4f50
      verified: true  # null when not checked (no keys given, or an unsigned channel that need not be signed)
      entries:
        - {name: payroll-agent, version: 2.4.1, kind: package, sha256: 9f2c..., size: 20480, promoted_by: alice}
catalogue:
  description:
    - The (filtered) name/version bindings, including retired ones (state C(retired)).
    - State C(retiring) marks records of a retirement that was interrupted; running it again finishes it.
  returned: when the repository exists
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.4.1, sha256: 9f2c..., size: 20480, state: active, added_by: bob}]
signatures:
  description:
    - V(verified) when keys were given and every signed channel index verified; V(failed) when one did not;
      V(not checked) when no keys were given, or no channel index is signed yet (RV(valid) then says nothing about
      the signatures).
    - An interrupted publication is found without keys, and listed in RV(problems) either way.
  returned: when the repository exists
  type: str
  sample: verified
problems:
  description: Signature and blob problems found (empty when there were none).
  returned: always
  type: list
  elements: str
  sample: ["blob 9f2c... of payroll-agent 2.4.1 (channel production) is corrupt: its content does not match its sha256"]
valid:
  description: True when no problem was found (signatures count only when they were checked, see RV(signatures)).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils import _repository, _signing


def gather(params):
    repo = _repository.Repository(params["path"])
    if not repo.exists():
        return {"exists": False, "problems": [], "valid": True}
    keys = list(params["public_keys"])
    if params["keyring"]:
        keys += _signing.Keyring(params["keyring"]).public_keys()
    report = repo.verify(public_keys=keys, blobs=params["verify_blobs"])
    wanted = [params["channel"]] if params["channel"] else repo.channels
    channels = {}
    for channel in wanted:
        index = repo.load_channel(channel)
        entries = [e for e in index["entries"]
                   if (not params["name"] or e["name"] == params["name"])
                   and (not params["version"] or e["version"] == params["version"])]
        channels[channel] = dict(report["channels"][channel], entries=entries,
                                 updated_at=index.get("updated_at"), updated_by=index.get("updated_by"))
    catalogue = [r for r in repo.records(params["name"])
                 if not params["version"] or r["version"] == params["version"]]
    checked = [info["verified"] for info in report["channels"].values() if info["verified"] is not None]
    signatures = "not checked" if not (keys and checked) else ("failed" if False in checked else "verified")
    return {"exists": True, "config": repo.config, "channels": channels, "catalogue": catalogue,
            "signatures": signatures, "problems": report["problems"], "valid": report["valid"]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            channel=dict(type="str"),
            name=dict(type="str"),
            version=dict(type="str"),
            public_keys=dict(type="list", elements="str", default=[]),
            keyring=dict(type="path"),
            verify_blobs=dict(type="bool", default=False),
            fail_on_problems=dict(type="bool", default=False),
        ),
        required_by={"version": "name"},
        supports_check_mode=True,
    )
    try:
        result = gather(module.params)
    except (_repository.RepositoryError, _signing.SigningError, OSError) as exc:
        module.fail_json(msg="Failed to read repository %s: %s" % (module.params["path"], exc))
    if module.params["fail_on_problems"] and result["problems"]:
        module.fail_json(msg="Repository %s has %d problem(s): %s" % (
            module.params["path"], len(result["problems"]), "; ".join(result["problems"])), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
