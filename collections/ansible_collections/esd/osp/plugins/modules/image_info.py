#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_info
short_description: Read, validate and compare esd.osp OS image artifacts
version_added: 0.1.0
description:
  - Reports an image artifact built by M(esd.osp.image) - its sha256, size, manifest (family, version, OS, build
    metadata, parent, hardening results, SBOM digest) and the files beside it. Never changes anything.
  - With O(validate=true) the whole archive is read and checked - the digest against O(sha256), the identity against
    O(family)/O(version), the embedded manifest against the one beside the archive, the embedded SBOM against the
    manifest's digest and package count, the build-time hardening results and the sha256sum file.
  - With O(compare_to) (another image archive, or a CycloneDX SBOM file) the SBOM diff between the two is returned.
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The image archive (C(<family>-<version>.rootfs.tar.gz)).
    type: path
    required: true
  sha256:
    description: Expected sha256 of the archive.
    type: str
  family:
    description: Expected image family (checked with O(validate=true)).
    type: str
  version:
    description: Expected image version (checked with O(validate=true)).
    type: str
  validate:
    description: Validate the artifact fully (reads the whole archive); problems go to RV(problems).
    type: bool
    default: false
  compare_to:
    description: An older image archive or SBOM file to diff the packages against.
    type: path
  fail_on_problems:
    description: Fail when validation finds problems (otherwise they are only reported).
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
  - module: esd.osp.image
"""

EXAMPLES = r"""
- name: Validate the image handed over by the building site
  esd.osp.image_info:
    path: /srv/esd/incoming/debian12-server-1.1.0.rootfs.tar.gz
    sha256: "{{ image_sha256 }}"
    family: debian12-server
    version: 1.1.0
    validate: true
    fail_on_problems: true

- name: What changed since the previous image
  esd.osp.image_info:
    path: /var/lib/esd/images/debian12-server-1.1.0.rootfs.tar.gz
    compare_to: /var/lib/esd/images/debian12-server-1.0.0.rootfs.tar.gz
  register: update
"""

RETURN = r"""
exists:
  description: Whether the archive exists.
  returned: always
  type: bool
  sample: true
path:
  description: The archive.
  returned: always
  type: str
  sample: /var/lib/esd/images/debian12-server-1.1.0.rootfs.tar.gz
sha256:
  description: SHA-256 of the archive.
  returned: when the archive exists
  type: str
  sample: 2c6d0b1e59f1a4b6b0d6f3f8a3c1f5e0a7b9d2c4e6f8a0b2c4d6e8f0a2b4c6d8
size:
  description: Size of the archive in bytes.
  returned: when the archive exists
  type: int
  sample: 83886080
family:
  description: Image family from the manifest.
  returned: when the archive exists
  type: str
  sample: debian12-server
version:
  description: Image version from the manifest.
  returned: when the archive exists
  type: str
  sample: 1.1.0
manifest:
  description: The image manifest.
  returned: when the archive exists
  type: dict
  sample: {"format": "esd.osp/image/v1", "family": "debian12-server", "version": "1.1.0",
           "parent": {"family": "debian12-server", "version": "1.0.0", "sha256": "9f2c..."}}
manifest_path:
  description: The manifest file beside the archive, if any.
  returned: when the archive exists
  type: str
  sample: /var/lib/esd/images/debian12-server-1.1.0.manifest.json
sbom:
  description: The SBOM file beside the archive, if any.
  returned: when the archive exists
  type: str
  sample: /var/lib/esd/images/debian12-server-1.1.0.sbom.cdx.json
sbom_diff:
  description: The SBOM diff recorded at build time against the parent image (image updates), else null.
  returned: when the archive exists
  type: dict
  sample: {"from": "1.0.0", "to": "1.1.0", "added": [], "removed": [], "changed": [], "unchanged": 182}
rootfs_size:
  description: Size of the root filesystem in bytes, from the manifest.
  returned: when the archive exists
  type: int
  sample: 262144000
packages:
  description: Number of installed Debian packages, from the manifest.
  returned: when the archive exists
  type: int
  sample: 182
comparison:
  description: The SBOM diff against O(compare_to).
  returned: when compare_to is given
  type: dict
  sample: {"from": "1.0.0", "to": "1.1.0", "added": [{"name": "tree", "version": "2.1.0-1"}], "removed": [],
           "changed": [], "unchanged": 182}
valid:
  description: Whether validation found no problem.
  returned: when validate is true
  type: bool
  sample: true
problems:
  description: What validation found wrong.
  returned: when validate is true
  type: list
  elements: str
  sample: ["sha256 is 1111..., expected 2c6d..."]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils import _image, _sbom


def load_sbom(path):
    """An SBOM from an image archive (beside it or embedded) or from a CycloneDX JSON file."""
    if path.endswith(".json"):
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    dummy, sbom = _image.read_image_metadata(path)
    if sbom is None:
        raise _image.ImageError("%s has no SBOM" % path)
    return sbom


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            sha256=dict(type="str"),
            family=dict(type="str"),
            version=dict(type="str"),
            validate=dict(type="bool", default=False),
            compare_to=dict(type="path"),
            fail_on_problems=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    if not os.path.isfile(path):
        if params["validate"] and params["fail_on_problems"]:
            module.fail_json(msg="Failed to validate the image %s: it does not exist" % path, exists=False, path=path)
        module.exit_json(changed=False, exists=False, path=path)
    try:
        if params["validate"]:
            info, problems = _image.validate_artifact(path, params["sha256"], params["family"], params["version"])
        else:
            info, problems = _image.describe_artifact(path, params["sha256"]), []
        result = dict(info, changed=False, exists=True, family=info["manifest"].get("family"),
                      version=info["manifest"].get("version"))
        if params["validate"]:
            result.update(valid=not problems, problems=problems)
        if params["compare_to"]:
            dummy, sbom = _image.read_image_metadata(path)
            result["comparison"] = _sbom.diff(load_sbom(params["compare_to"]), sbom or {})
    except (_image.ImageError, _sbom.SbomError, OSError, ValueError) as exc:
        module.fail_json(msg="Failed to read the image %s: %s" % (path, exc), exists=True, path=path)
    if problems and params["fail_on_problems"]:
        module.fail_json(msg="Image %s is not valid: %s" % (path, "; ".join(problems)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
