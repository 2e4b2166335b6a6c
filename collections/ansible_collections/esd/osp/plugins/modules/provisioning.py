#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: provisioning
short_description: Generate and validate the mechanism that installs an OS image automatically (PXE/iPXE, preseed, cloud-init)
version_added: 0.1.0
description:
  - Writes C(<dest>/<family>-<version>/) - an iPXE script (C(ipxe/)) and a PXE boot entry (C(pxelinux.cfg/default))
    that boot the Debian installer unattended, a Debian preseed (C(preseed/)) whose C(late_command) runs
    C(scripts/apply-image.sh) (download the image from the depot, check its sha256, unpack it over the new system,
    seed cloud-init), cloud-init NoCloud data (C(cloud-init/user-data), C(meta-data), and C(seed.iso) with volume
    C(CIDATA) for VMs), C(MANIFEST.json) and C(SHA256SUMS).
  - Validates every file before it is put in place - iPXE and PXE by their grammar, the preseed with
    C(debconf-set-selections --checkonly) plus the answers an unattended install needs, the script with C(sh -n),
    the user-data with C(cloud-init schema) when cloud-init is installed, else against cloud-init's JSON schema
    (O(cloud_init_schema), with the Python library jsonschema), else structurally. RV(validation) names the
    validator used for each file. An invalid mechanism is never written.
  - The files are served from O(http_base) (the directory O(dest) published by a web server, for example a depot).
author:
  - esd.osp developers (@esd-osp)
options:
  family:
    description: Image family.
    type: str
    required: true
  version:
    description: Image version.
    type: str
    required: true
  image_sha256:
    description: SHA-256 of the image archive; the installed machine checks the download against it.
    type: str
    required: true
  http_base:
    description: The URL under which O(dest) is served (iPXE, the installer and the late command fetch from it).
    type: str
    required: true
  image_url:
    description: Where machines download the image archive. Defaults to C(<http_base>/images/<family>-<version>.rootfs.tar.gz).
    type: str
  dest:
    description: Directory the mechanism is written to.
    type: path
    required: true
  hostname:
    description: Host name given to installed machines (DHCP can override it).
    type: str
    default: esd-node
  domain:
    description: DNS domain of installed machines.
    type: str
    default: localdomain
  admin_user:
    description: The administrator account cloud-init creates (no password; SSH keys only).
    type: str
    default: esd-admin
  admin_group:
    description: Group of the administrator (the image's standard_tools role gives it sudo).
    type: str
    default: esd-admins
  ssh_authorized_keys:
    description: Public SSH keys of the administrator.
    type: list
    elements: str
    default: []
  locale:
    description: Installer and system locale.
    type: str
    default: en_US.UTF-8
  keyboard:
    description: Keyboard layout.
    type: str
    default: us
  timezone:
    description: Time zone.
    type: str
    default: Etc/UTC
  mirror:
    description: Debian mirror of the installer.
    type: str
    default: http://deb.debian.org/debian
  suite:
    description: Debian suite the installer installs before the image is applied.
    type: str
    default: bookworm
  disk:
    description: The disk the installer partitions and the boot loader goes on.
    type: str
    default: /dev/sda
  netboot_url:
    description: Where iPXE fetches the installer's kernel and initrd.
    type: str
    default: http://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/netboot/debian-installer/amd64
  keep:
    description: Files of the installed system the image must not overwrite (tar --exclude patterns, without leading /).
    type: list
    elements: str
    default: [etc/fstab, etc/crypttab, etc/hostname, etc/hosts, etc/network/interfaces]
  phone_home_url:
    description: URL cloud-init reports the finished provisioning to (cloud-init phone_home); empty means none.
    type: str
    default: ''
  seed_iso:
    description: Also write C(cloud-init/seed.iso) (volume CIDATA) for VMs.
    type: bool
    default: true
  cloud_init_schema:
    description:
      - cloud-init's JSON schema (C(schema-cloud-config-v1.json) of the Debian cloud-init package) to validate the
        user-data with when the C(cloud-init) command is not installed. Defaults to the installed package's copy, if any.
    type: path
  source_date_epoch:
    description: Date of the seed ISO's files and volume (reproducible). Defaults to E(SOURCE_DATE_EPOCH), else 0.
    type: int
  force:
    description: Replace an existing, different mechanism for the same family and version.
    type: bool
    default: false
  state:
    description: V(present) writes and validates the mechanism, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - PyYAML; jsonschema for the schema validation without cloud-init; xorriso for the seed ISO
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
  - module: esd.osp.media
"""

EXAMPLES = r"""
- name: Provisioning mechanism for debian12-server 1.1.0, served by the depot
  esd.osp.provisioning:
    family: debian12-server
    version: 1.1.0
    image_sha256: "{{ image_sha256 }}"
    http_base: http://depot-01.example.com/provisioning
    image_url: "http://depot-01.example.com/blobs/sha256/{{ image_sha256 }}"
    dest: /srv/esd/depot/provisioning
    ssh_authorized_keys: ["ssh-ed25519 AAAAC3Nza... ops@example.com"]
  register: mechanism
"""

RETURN = r"""
path:
  description: The directory of the mechanism.
  returned: always
  type: str
  sample: /srv/esd/depot/provisioning/debian12-server-1.1.0
manifest:
  description: C(MANIFEST.json) of the mechanism (family, version, image sha256 and URL, files).
  returned: when state is present
  type: dict
  sample: {"format": "esd.osp/provisioning/v1", "family": "debian12-server", "version": "1.1.0", "files": []}
validation:
  description: For each validated file, the validator that checked it and its problems (empty when valid).
  returned: when state is present and not in check mode
  type: dict
  sample: {"cloud-init/user-data": {"validator": "cloud-init schema", "problems": []}}
checksums:
  description: The C(SHA256SUMS) file of the mechanism.
  returned: when state is present and not in check mode
  type: str
  sample: /srv/esd/depot/provisioning/debian12-server-1.1.0/SHA256SUMS
sha256:
  description: SHA-256 of C(SHA256SUMS), a digest of the whole mechanism.
  returned: when state is present and not in check mode
  type: str
  sample: 8d4f0c1e59f1a4b6b0d6f3f8a3c1f5e0a7b9d2c4e6f8a0b2c4d6e8f0a2b4c6d8
"""

import os
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML

from ansible_collections.esd.osp.plugins.module_utils import _provisioning

try:
    import yaml
except ImportError:
    yaml = None

try:
    import jsonschema
    JSONSCHEMA_IMPORT_ERROR = None
except ImportError:
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR = traceback.format_exc()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            family=dict(type="str", required=True),
            version=dict(type="str", required=True),
            image_sha256=dict(type="str", required=True),
            http_base=dict(type="str", required=True),
            image_url=dict(type="str"),
            dest=dict(type="path", required=True),
            hostname=dict(type="str", default="esd-node"),
            domain=dict(type="str", default="localdomain"),
            admin_user=dict(type="str", default="esd-admin"),
            admin_group=dict(type="str", default="esd-admins"),
            ssh_authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
            locale=dict(type="str", default="en_US.UTF-8"),
            keyboard=dict(type="str", default="us"),
            timezone=dict(type="str", default="Etc/UTC"),
            mirror=dict(type="str", default="http://deb.debian.org/debian"),
            suite=dict(type="str", default="bookworm"),
            disk=dict(type="str", default="/dev/sda"),
            netboot_url=dict(type="str", default=_provisioning.DEFAULT_NETBOOT),
            keep=dict(type="list", elements="str",
                      default=["etc/fstab", "etc/crypttab", "etc/hostname", "etc/hosts", "etc/network/interfaces"]),
            phone_home_url=dict(type="str", default=""),
            seed_iso=dict(type="bool", default=True),
            cloud_init_schema=dict(type="path"),
            source_date_epoch=dict(type="int"),
            force=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    stem = "%s-%s" % (p["family"], p["version"])
    target = os.path.join(p["dest"], stem)
    if p["state"] == "absent":
        exists = os.path.isdir(target)
        if exists and not module.check_mode:
            shutil.rmtree(target)
        module.exit_json(changed=exists, path=target)
    if not HAS_YAML or yaml is None:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    if p["cloud_init_schema"] and jsonschema is None:
        module.fail_json(msg=missing_required_lib("jsonschema (to validate with cloud_init_schema)"),
                         exception=JSONSCHEMA_IMPORT_ERROR)
    base = p["http_base"].rstrip("/") + "/" + stem
    settings = dict(p)
    settings.update(
        image_url=p["image_url"] or "%s/images/%s.rootfs.tar.gz" % (p["http_base"].rstrip("/"), stem),
        preseed_url="%s/preseed/%s.cfg" % (base, stem),
        apply_script_url="%s/scripts/apply-image.sh" % base,
        user_data_url="%s/cloud-init/user-data" % base,
        source_date_epoch=p["source_date_epoch"] or int(os.environ.get("SOURCE_DATE_EPOCH") or 0),
    )
    xorriso = module.get_bin_path("xorriso", required=p["seed_iso"]) or "xorriso"
    try:
        if not module.check_mode and not os.path.isdir(p["dest"]):
            os.makedirs(p["dest"], 0o755)
        result = _provisioning.generate(settings, p["dest"], yaml.safe_dump, yaml.safe_load, p["cloud_init_schema"],
                                        jsonschema, seed_iso=p["seed_iso"], force=p["force"],
                                        check_mode=module.check_mode, xorriso=xorriso)
    except (_provisioning.ProvisioningError, OSError) as exc:
        module.fail_json(msg="Failed to prepare the provisioning mechanism of %s: %s" % (stem, exc), path=target)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
