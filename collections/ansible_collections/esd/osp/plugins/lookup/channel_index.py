# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: channel_index
author:
  - esd.osp developers (@esd-osp)
version_added: 0.1.0
short_description: Read a channel index of an esd.osp repository or depot, after verifying its signature
description:
  - Runs on the controller. Reads C(channels/<channel>.json) and its C(.sig) from a repository or depot (a directory
    or an C(http(s)://)/C(file://) URL) and verifies the Ed25519 signature against the trusted keys before returning
    anything, so the sha256 pins a play hands to M(esd.osp.software) come from a verified index.
  - A tampered, unsigned or untrusted index fails the lookup with a message naming the file and what did not match.
  - Returns one dictionary per term (channel) with C(channel), C(serial), C(key_id), C(index_sha256),
    C(trusted_keys), C(excluded) and C(entries) (only those of O(name) when given); with O(name) and O(version) it
    returns that entry instead. Naming an entry the channel does not have fails the lookup. Every entry carries
    C(sha256), C(size) and C(path) (C(blobs/sha256/<hex>)).
  - On a depot, a package deleted with C(delete_package) (M(esd.osp.depot_channel) O(esd.osp.depot_channel#module:state=absent))
    is still listed by the signed index, but its blob is gone; the depot's C(depot.json) lists it under C(excluded).
    Naming such a package fails the lookup with "<name> <version> was deleted from depot <depot> (delete_package)";
    C(entries) leaves deleted packages out and C(excluded) lists them.
options:
  _terms:
    description: Channel names.
    type: list
    elements: str
    required: true
  repository:
    description: The repository (or depot) base, as a directory on the controller or an C(http(s)://)/C(file://) URL.
    type: str
    required: true
  keyring:
    description:
      - A keyring directory on the controller (its non-revoked public keys are trusted), or a file with one
        C(ed25519:<base64>) public key per line. Empty means none.
    type: str
    default: ""
  public_keys:
    description: Trusted public keys (C(ed25519:<base64>)), added to those of O(keyring).
    type: list
    elements: str
    default: []
  name:
    description: Return only the entry of this name (with O(version)).
    type: str
  version:
    description: The version of O(name) to return.
    type: str
  validate_certs:
    description: Validate TLS certificates of an C(https://) repository.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Pin the production artifact from the verified index
  ansible.builtin.set_fact:
    payroll: "{{ lookup('esd.osp.channel_index', 'production', repository='/srv/esd/repository',
                 keyring='/etc/esd/keys', name='payroll-agent', version='2.4.1') }}"

- name: Install it from the host's depot, pinned to the signed sha256
  esd.osp.software:
    name: payroll-agent
    version: 2.4.1
    src: "{{ depot_url }}/{{ payroll.path }}"
    sha256: "{{ payroll.sha256 }}"
"""

RETURN = r"""
_raw:
  description: One verified index (or entry) per channel.
  type: list
  elements: dict
"""

import hashlib
import json
import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

from ansible_collections.esd.osp.plugins.module_utils import _depot, _signing


def deleted_here(source, channel):
    """{(name, version): record} of the packages deleted from this depot (depot.json ``excluded``).

    depot.json is the depot's own record, not signed: it can only take entries away from what the
    signed index lists, never add or change one. A repository (or an older depot) has none.
    """
    data = source.read("depot.json", missing_ok=True)
    if data is None:
        return {}
    try:
        state = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise AnsibleError("depot state %s is not valid JSON: %s" % (source.url("depot.json"), exc))
    if not isinstance(state, dict) or state.get("channel", channel) != channel:
        return {}
    return dict(((x.get("name"), x.get("version")), x) for x in state.get("excluded") or [] if isinstance(x, dict))


def deleted_message(name, version, listed, excluded, depot, channel):
    """Why entries the signed index lists cannot be taken from this depot, and what to do."""
    record = excluded[(listed[0]["name"], listed[0]["version"])]
    who = "".join(" %s %s" % (word, record[key]) for word, key in (("by", "by"), ("at", "at")) if record.get(key))
    return ("%s %s was deleted from depot %s (delete_package%s); the signed %s index still lists it, but the depot no "
            "longer holds its blob: take it from another depot, or bring it back with a sync that readmits it "
            "(esd.osp.depot_channel readmit, role variable depot_readmit: [%s])" % (
                name, version or ", ".join(e["version"] for e in listed), depot, who and "," + who,
                channel, "%s=%s" % (name, version) if version else name))


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        repository = self.get_option("repository")
        keys = list(self.get_option("public_keys") or [])
        try:
            if self.get_option("keyring"):
                keys += _signing.load_public_keys(os.path.expanduser(self.get_option("keyring")))
            if not keys:
                raise AnsibleError("esd.osp.channel_index needs trusted keys: give keyring or public_keys")
            source = _depot.Source(repository, validate_certs=self.get_option("validate_certs"))
            results = []
            for channel in terms:
                data, dummy, index, key = _depot.fetch_index(source, channel, keys)
                name, version = self.get_option("name"), self.get_option("version")
                excluded = deleted_here(source, channel)
                listed = [e for e in index["entries"]
                          if (not name or e["name"] == name) and (not version or e["version"] == version)]
                if name and not listed:
                    raise AnsibleError("%s%s is not in the %s channel of %s (serial %s)" % (
                        name, " %s" % version if version else "", channel, repository, index.get("serial")))
                entries = [e for e in listed if (e["name"], e["version"]) not in excluded]
                if name and not entries:
                    raise AnsibleError(deleted_message(name, version, listed, excluded, repository, channel))
                if name and version:
                    results.append(entries[0])
                    continue
                results.append({"channel": channel, "serial": index.get("serial"), "key_id": key,
                                "index_sha256": hashlib.sha256(data).hexdigest(), "trusted_keys": keys,
                                "updated_at": index.get("updated_at"), "entries": entries,
                                "excluded": sorted(excluded.values(), key=lambda x: (x["name"], x["version"]))})
            return results
        except (_depot.DepotError, _signing.SigningError) as exc:
            raise AnsibleError("esd.osp.channel_index: %s" % to_native(exc))
