#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package
short_description: Build a reproducible esd.osp package artifact from a source directory
version_added: 0.1.0
description:
  - Reads C(package.yml) in O(src) (name, version, description, payload, install_dir, hooks, requires,
    updates) and writes C(<name>-<version>.esdpkg) into O(dest).
  - The artifact is a gzip-compressed tar archive with sorted members, fixed owners, normalised modes and
    a fixed modification time, whose first member C(MANIFEST.json) lists every file with its mode and
    sha256 plus build metadata (builder, source digest, build time). Building the same inputs twice gives
    byte-identical artifacts.
  - The build time comes from E(SOURCE_DATE_EPOCH) when set, else from the newest modification time in the
    source tree, so that it never depends on when the build ran.
  - An existing identical artifact is left alone; an existing different artifact for the same name and
    version is refused unless O(force=true).
  - The artifact is written with mode C(0644) through a temporary file in O(dest) that is renamed into place.
  - In check mode nothing is written, in O(dest) or anywhere else (O(dest) is not created either); the digest is
    computed in memory, so C(changed), RV(sha256) and a refusal of a second content are those a real run gives.
author:
  - esd.osp developers (@esd-osp)
options:
  src:
    description: Source directory holding C(package.yml), the payload directory and the hook scripts.
    type: path
    required: true
  dest:
    description: Directory the artifact is written to. Created when missing.
    type: path
    required: true
  builder:
    description:
      - Identity of whoever builds the package, recorded in the manifest (separation of duties uses it).
      - Defaults to E(ESD_USER), else the user running the module.
    type: str
  scan_result:
    description:
      - Result of M(esd.osp.scan) on the source, embedded in the manifest as evidence.
      - Only what does not depend on how paths were spelled is embedded - C(engine) (without a database version
        or date), C(clean), C(infected) (paths relative to the scanned tree) and C(database_sha256) - so the same
        tree gives the same artifact whether it was given as C($PWD/examples/x) or C(playbooks/../examples/x).
    type: dict
  force:
    description: Replace an existing artifact of the same name and version whose content differs.
    type: bool
    default: false
requirements:
  - PyYAML on the build host
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The archive format is described in the collection README (Artifacts).
seealso:
  - module: esd.osp.scan
  - module: esd.osp.software
"""

EXAMPLES = r"""
- name: Build the payroll agent package
  esd.osp.package:
    src: /srv/build/payroll-agent
    dest: /srv/build/artifacts
  register: build

- name: Show the digest
  ansible.builtin.debug:
    msg: "{{ build.name }} {{ build.version }} sha256:{{ build.sha256 }} ({{ build.size }} bytes)"
"""

RETURN = r"""
name:
  description: Package name from package.yml.
  returned: success
  type: str
  sample: payroll-agent
version:
  description: Package version from package.yml.
  returned: success
  type: str
  sample: 2.4.1
path:
  description: Path of the artifact.
  returned: success
  type: str
  sample: /srv/build/artifacts/payroll-agent-2.4.1.esdpkg
sha256:
  description: SHA-256 digest of the artifact.
  returned: success
  type: str
  sample: 5f2b0c7e4f4c3b1d8e8f0b1a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f
size:
  description: Size of the artifact in bytes.
  returned: success
  type: int
  sample: 20480
manifest:
  description: The manifest embedded in the artifact.
  returned: success
  type: dict
  sample: {"name": "payroll-agent", "version": "2.4.1", "files": [], "build": {"builder": "bob"}}
previous_sha256:
  description: Digest of the artifact that already existed at RV(path), if any.
  returned: when an artifact already existed
  type: str
  sample: 5f2b0c7e4f4c3b1d8e8f0b1a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f
"""

import getpass
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_load

from ansible_collections.esd.osp.plugins.module_utils._artifact import ArtifactError, build_package


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            dest=dict(type="path", required=True),
            builder=dict(type="str"),
            scan_result=dict(type="dict"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    params = module.params
    builder = params["builder"] or os.environ.get("ESD_USER") or getpass.getuser()
    try:
        result = build_package(params["src"], params["dest"], yaml_load, builder, force=params["force"],
                               scan=params["scan_result"], check_mode=module.check_mode)
    except ArtifactError as exc:
        module.fail_json(msg="Failed to build the package in %s: %s" % (params["src"], exc))
    except OSError as exc:
        module.fail_json(msg="Failed to build the package in %s: %s" % (params["src"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
