#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: signing_key
short_description: Create, rotate and revoke the Ed25519 keys that sign esd.osp channel indexes
version_added: 0.1.0
description:
  - Manages a keyring directory (C(keyring.json) plus one C(<key id>.pem) private key per usable key, mode 0600).
    The active key signs channel indexes (see M(esd.osp.repository) O(esd.osp.repository#module:signing_key)).
    A change holds a lock on C(keyring.json.lock) while it reads and rewrites C(keyring.json), so concurrent
    rotations or revocations wait for each other and none loses a key.
  - V(present) creates the keyring with a first key when it does not exist, and otherwise changes nothing.
  - V(rotated) generates a new active key; the previous one becomes C(retired), still trusted for verification so
    indexes signed before the rotation keep verifying until they are re-signed (M(esd.osp.repository)
    O(esd.osp.repository#module:state=signed)). A rotation always changes the keyring.
  - O(revoke) removes trust in keys (their private key files are deleted); revoke the retired key once every depot
    has synced an index signed by the new one.
  - Needs the Python library C(cryptography) on the managed host (the controller or the repository host).
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The keyring directory.
    type: path
    required: true
  state:
    description: V(present) or V(rotated), see the description.
    type: str
    choices: [present, rotated]
    default: present
  revoke:
    description: Key ids to revoke. The active key can only be revoked together with O(state=rotated).
    type: list
    elements: str
    default: []
  passphrase:
    description: Encrypt new private keys with this passphrase.
    type: str
  actor:
    description: Who does this, recorded in the keyring. Defaults to E(ESD_USER), else the login user.
    type: str
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
- name: Make sure the repository has a signing key
  esd.osp.signing_key:
    path: /etc/esd/keys
  register: keys

- name: Rotate the key and stop trusting the one before the previous rotation
  esd.osp.signing_key:
    path: /etc/esd/keys
    state: rotated
    revoke: [3b6f0c9a1d2e4f50]
"""

RETURN = r"""
actions:
  description: What the call did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["generate a new active key; retire 3b6f0c9a1d2e4f50"]
active_key_id:
  description: The id of the active (signing) key after the call.
  returned: always
  type: str
  sample: 9a0b1c2d3e4f5061
public_keys:
  description: The trusted public keys (active first, then retired ones), to give to depots and verifiers.
  returned: always
  type: list
  elements: str
  sample: ["ed25519:Vm0xMGQxTXdOVWhWYTJoUVZsWndjRlZ0TVZOaFJsWnpWbXQwVjFadA=="]
keys:
  description: Every key of the keyring with id, status (active, retired, revoked), created_at and created_by.
  returned: always
  type: list
  elements: dict
  sample: [{id: 9a0b1c2d3e4f5061, status: active, created_at: "2026-03-02T10:00:00Z", created_by: alice}]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.esd.osp.plugins.module_utils import _repository, _signing


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "rotated"]),
            revoke=dict(type="list", elements="str", default=[]),
            passphrase=dict(type="str", no_log=True),
            actor=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not _signing.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=_signing.CRYPTOGRAPHY_IMPORT_ERROR)
    keyring = _signing.Keyring(p["path"])
    try:
        if module.check_mode:
            actions = keyring.plan(p["state"], p["revoke"])
        else:
            actions = keyring.apply(p["state"], p["revoke"], p["actor"] or _repository.default_actor(), p["passphrase"])
        data = keyring.load() if keyring.exists() else {"active": None, "keys": []}
        public_keys = keyring.public_keys() if keyring.exists() else []
    except (_signing.SigningError, OSError) as exc:
        module.fail_json(msg="Failed to manage keyring %s: %s" % (p["path"], exc))
    keys = [dict((k, key.get(k)) for k in ("id", "status", "created_at", "created_by", "retired_at", "revoked_at"))
            for key in data["keys"]]
    module.exit_json(changed=bool(actions), actions=actions, active_key_id=data.get("active"),
                     public_keys=public_keys, keys=keys)


if __name__ == "__main__":
    main()
