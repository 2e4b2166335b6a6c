#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: scan
short_description: Virus-scan a source tree or an artifact with ClamAV
version_added: 0.1.0
description:
  - Runs C(clamscan) recursively over O(path) (archives are scanned inside) and fails when anything is found,
    naming each infected file and the signature that matched.
  - Fails too when the scan cannot run (no clamscan, no signature database), so an unscanned source never
    passes for a clean one.
  - Changes nothing; the result is meant to be embedded in the package manifest as evidence (see M(esd.osp.package)).
  - The result names the engine by its program version only (C(ClamAV 1.4.6)) and the signature database by a
    sha256 over its signature files (C(database_sha256)), so evidence taken of the same tree with the same
    signatures is the same however the paths were spelled.
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: File, archive or directory to scan.
    type: path
    required: true
  database:
    description:
      - Signature database file or directory (C(clamscan --database)). Defaults to ClamAV's own (C(/var/lib/clamav)).
      - Sites without internet access point this at their mirrored or custom signatures.
    type: path
  clamscan:
    description: The clamscan executable.
    type: path
    default: clamscan
  timeout:
    description: Seconds the scan may take.
    type: int
    default: 3600
requirements:
  - ClamAV (Debian package C(clamav)) on the host that scans
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
  - module: esd.osp.package
"""

EXAMPLES = r"""
- name: Scan the sources before packaging
  esd.osp.scan:
    path: /srv/build/payroll-agent
    database: /srv/clamav
  register: scan

- name: Package with the scan as evidence
  esd.osp.package:
    src: /srv/build/payroll-agent
    dest: /srv/build/artifacts
    scan_result: "{{ scan.scan }}"
"""

RETURN = r"""
scan:
  description:
    - What was scanned, by which engine, against which database, and what was found.
    - C(engine) is the program version without the default database's version and date.
    - C(database_sha256) is a sha256 over the names and contents of the database's signature files (those of
      O(database), else of ClamAV's default C(/var/lib/clamav)); null when the scan could not run.
  returned: always
  type: dict
  sample: {"path": "/srv/build/payroll-agent", "engine": "ClamAV 1.4.6", "database": "/srv/clamav",
           "database_sha256": "0c1f5e8b2d4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e", "infected": [], "clean": true}
infected:
  description: Infected files with the matching signature.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/srv/build/payroll-agent/payload/eicar.txt", "signature": "Eicar-Test-Signature.UNOFFICIAL"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils._scan import ScanError, scan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            database=dict(type="path"),
            clamscan=dict(type="path", default="clamscan"),
            timeout=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = scan(params["path"], clamscan=params["clamscan"], database=params["database"], timeout=params["timeout"])
    except ScanError as exc:
        module.fail_json(msg=exc.msg, infected=exc.infected, rc=exc.rc,
                         scan={"path": params["path"], "database": params["database"], "database_sha256": None,
                               "infected": exc.infected, "clean": False})
    summary = {"path": result["path"], "engine": result["engine"], "database": result["database"],
               "database_sha256": result["database_sha256"], "infected": result["infected"], "clean": True}
    module.exit_json(changed=False, scan=summary, infected=result["infected"])


if __name__ == "__main__":
    main()
