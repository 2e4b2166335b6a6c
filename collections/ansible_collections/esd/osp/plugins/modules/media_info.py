#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: media_info
short_description: List and verify esd.osp distribution media (ISO 9660)
version_added: 0.1.0
description:
  - Lists the files on a medium built by M(esd.osp.media) with xorriso, checks the ISO's sha256, runs xorriso's MD5
    check of the session and every file, and checks every file against C(SHA256SUMS) and C(MEDIA.json) (reading
    them through a temporary copy that is removed again). Never changes anything.
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The ISO file.
    type: path
    required: true
  sha256:
    description: Expected sha256 of the ISO.
    type: str
  fail_on_problems:
    description: Fail when verification finds problems (otherwise they are only reported).
    type: bool
    default: false
requirements:
  - xorriso (Debian package xorriso)
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
  - module: esd.osp.media
"""

EXAMPLES = r"""
- name: Verify the medium handed over by the building site
  esd.osp.media_info:
    path: /srv/esd/incoming/payroll-2026q2-1.iso
    sha256: "{{ media_sha256 }}"
    fail_on_problems: true
  register: medium
"""

RETURN = r"""
exists:
  description: Whether the ISO exists.
  returned: always
  type: bool
  sample: true
sha256:
  description: SHA-256 of the ISO.
  returned: when the ISO exists
  type: str
  sample: ced06e6ca10be00481f686dfd332fb4e5cd1dab704d621779476ba7a9396d406
size:
  description: Size of the ISO in bytes.
  returned: when the ISO exists
  type: int
  sample: 1048576
files:
  description: The files on the medium (path and size).
  returned: when the ISO exists
  type: list
  elements: dict
  sample: [{"path": "MEDIA.json", "size": 1024}, {"path": "packages/payroll-agent-2.4.1.esdpkg", "size": 20480}]
manifest:
  description: The medium's C(MEDIA.json) (null when unreadable).
  returned: when the ISO exists
  type: dict
  sample: {"format": "esd.osp/media/v1", "name": "payroll-2026q2", "version": "1", "kind": "packages"}
md5_check:
  description: The result of xorriso's MD5 check, C(match) or C(mismatch).
  returned: when the ISO exists
  type: str
  sample: match
valid:
  description: Whether no problem was found.
  returned: when the ISO exists
  type: bool
  sample: true
problems:
  description: What is wrong with the medium.
  returned: when the ISO exists
  type: list
  elements: str
  sample: ["packages/payroll-agent-2.4.1.esdpkg does not match its sha256 in SHA256SUMS"]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils import _media


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            sha256=dict(type="str"),
            fail_on_problems=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.isfile(p["path"]):
        if p["fail_on_problems"]:
            module.fail_json(msg="Failed to verify the medium %s: it does not exist" % p["path"], exists=False)
        module.exit_json(changed=False, exists=False)
    binary = module.get_bin_path("xorriso", required=True)
    try:
        result = _media.verify_media(p["path"], p["sha256"], binary=binary)
    except (_media.MediaError, OSError) as exc:
        module.fail_json(msg="Failed to verify the medium %s: %s" % (p["path"], exc), exists=True)
    result.pop("extracted_to", None)
    result.pop("path", None)
    if result["problems"] and p["fail_on_problems"]:
        module.fail_json(msg="The medium %s is not valid: %s" % (p["path"], "; ".join(result["problems"])),
                         exists=True, **result)
    module.exit_json(changed=False, exists=True, **result)


if __name__ == "__main__":
    main()
