#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image
short_description: Build an OS image on a build host - root filesystem, finalisation, reproducible archive, SBOM
version_added: 0.1.0
description:
  - Builds a Debian OS image in two steps around its customisation by Ansible roles (role M(esd.osp.build_image)
    drives the whole pipeline).
  - O(state=rootfs) makes the root filesystem O(rootfs) from the build spec O(spec). A new image is made with
    C(debootstrap) (suite, mirror, variant and packages from the spec); an image update (O(base) given) unpacks the
    parent image and patches it with apt (C(update.upgrade), C(update.packages), C(update.remove_packages)). The
    tree is left in build mode, ready for roles run through C(community.general.chroot) - C(/proc) mounted, a
    C(policy-rc.d) that keeps package scripts from starting services, the build host's C(resolv.conf).
  - O(state=present) leaves build mode, finalises the tree (package caches, apt lists, logs, machine-id, SSH host
    keys, resolv.conf, hostname), embeds the manifest (C(/etc/esd/image.json)), the CycloneDX SBOM and the test plan
    (C(/usr/share/esd/image/)), and packs a reproducible archive into O(dest) with the manifest, SBOM, SBOM diff
    (updates) and a sha256sum file beside it. The same tree always gives the same archive bytes.
  - O(state=absent) removes the root filesystem work tree (unmounting first) and, when O(dest) is given, the artifact
    files of O(family) O(version).
  - With O(cache_dir), downloaded C(.deb) files and whole debootstrap results are cached; a cached base is reused
    only while the mirror's Release file is unchanged.
author:
  - esd.osp developers (@esd-osp)
options:
  state:
    description: What to do; see the description.
    type: str
    choices: [rootfs, present, absent]
    default: present
  spec:
    description:
      - The image build spec, a YAML file or a directory holding C(image.yml) (and optionally C(vars.yml) and
        C(tests/)). Required for O(state=rootfs) and O(state=present). The format is in the collection README.
    type: path
  family:
    description: Image family, e.g. C(debian12-server). Defaults to the spec's C(family).
    type: str
  version:
    description: Image version. Defaults to the spec's C(version); required when the spec has none.
    type: str
  rootfs:
    description: The root filesystem work tree. Its parent directory also receives a build state file and a build log.
    type: path
    required: true
  dest:
    description: Directory the artifact files are written to. Required for O(state=present).
    type: path
  base:
    description: The parent image archive (C(.rootfs.tar.gz)) for an image update. Its manifest is recorded as the parent.
    type: path
  base_sha256:
    description: Expected sha256 of O(base); the build fails when it differs.
    type: str
  mirror:
    description: Debian mirror URL, overriding the spec's. Empty means the spec's, else the build host's own mirror.
    type: str
    default: ''
  cache_dir:
    description:
      - Local cache of C(.deb) files (C(debs/), also used by C(debootstrap --cache-dir)) and of debootstrap results
        (C(bases/)). Empty disables caching.
    type: path
    default: ''
  builder:
    description: Identity of whoever builds the image, recorded in the manifest. Defaults to E(ESD_USER), else the user.
    type: str
  source_date_epoch:
    description:
      - Fixed timestamp for the archive (mtimes are clamped to it) and the SBOM. Defaults to E(SOURCE_DATE_EPOCH),
        else the newest C(Date) of the Release files the image was built from.
    type: int
  keep_rootfs:
    description: Keep the root filesystem work tree after packing (it is removed by default).
    type: bool
    default: false
  force:
    description: Replace an existing archive of the same family and version whose content differs.
    type: bool
    default: false
  compression_level:
    description: gzip compression level of the archive (1 fastest, 9 smallest).
    type: int
    default: 6
  timeout:
    description: Seconds any single build command (debootstrap, apt-get, tar) may run.
    type: int
    default: 3600
requirements:
  - root on the build host, C(debootstrap), C(tar), C(chroot) and C(mount)
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
  - Image archives are unpacked (image updates, C(podman import)) as trusted content, with their owners, device-less;
    verify their sha256 (O(base_sha256)) when they come from elsewhere.
seealso:
  - module: esd.osp.image_info
  - module: esd.osp.image_node
  - module: esd.osp.media
"""

EXAMPLES = r"""
- name: Make the root filesystem of debian12-server 1.0.0
  esd.osp.image:
    spec: /srv/esd/images/debian12-server
    version: 1.0.0
    rootfs: /var/tmp/esd-image-build/debian12-server-1.0.0/rootfs
    cache_dir: /var/cache/esd/images
    state: rootfs

- name: Finalise and pack it
  esd.osp.image:
    spec: /srv/esd/images/debian12-server
    version: 1.0.0
    rootfs: /var/tmp/esd-image-build/debian12-server-1.0.0/rootfs
    dest: /var/lib/esd/images
    state: present
  register: image

- name: Image update 1.1.0 from 1.0.0 (packages from the spec's update section)
  esd.osp.image:
    spec: /srv/esd/images/debian12-server
    version: 1.1.0
    base: /var/lib/esd/images/debian12-server-1.0.0.rootfs.tar.gz
    base_sha256: "{{ image.sha256 }}"
    rootfs: /var/tmp/esd-image-build/debian12-server-1.1.0/rootfs
    state: rootfs
"""

RETURN = r"""
changed:
  description: Whether the root filesystem or the archive was (or would be) made.
  returned: always
  type: bool
  sample: true
actions:
  description: What the call did, in order.
  returned: always
  type: list
  elements: str
  sample: ["debootstrap --variant=minbase bookworm from http://deb.debian.org/debian", "mount /proc"]
rootfs:
  description: The root filesystem work tree.
  returned: always
  type: str
  sample: /var/tmp/esd-image-build/debian12-server-1.0.0/rootfs
family:
  description: Image family.
  returned: success
  type: str
  sample: debian12-server
version:
  description: Image version.
  returned: success
  type: str
  sample: 1.0.0
method:
  description: How the root filesystem was made, C(debootstrap) or C(derived) (from O(base)).
  returned: when state is rootfs
  type: str
  sample: debootstrap
cache:
  description: What the cache provided, C(base) (a cached debootstrap result), C(debs), C(base-image) or C(none).
  returned: when state is rootfs
  type: str
  sample: base
source_date_epoch:
  description: The image's source date (archive mtimes are clamped to it).
  returned: when state is rootfs
  type: int
  sample: 1783764997
path:
  description: Path of the root filesystem archive.
  returned: when state is present
  type: str
  sample: /var/lib/esd/images/debian12-server-1.0.0.rootfs.tar.gz
sha256:
  description: SHA-256 of the archive.
  returned: when state is present and not in check mode
  type: str
  sample: 2c6d0b1e59f1a4b6b0d6f3f8a3c1f5e0a7b9d2c4e6f8a0b2c4d6e8f0a2b4c6d8
size:
  description: Size of the archive in bytes.
  returned: when state is present and not in check mode
  type: int
  sample: 83886080
rootfs_size:
  description: Size of the root filesystem (regular files, hard links counted once) in bytes.
  returned: when state is present and not in check mode
  type: int
  sample: 262144000
files:
  description: Number of regular files in the root filesystem.
  returned: when state is present and not in check mode
  type: int
  sample: 9875
packages:
  description: Number of installed Debian packages.
  returned: when state is present and not in check mode
  type: int
  sample: 182
manifest:
  description: The image manifest (the embedded one plus the archive's digest and size).
  returned: when state is present and not in check mode
  type: dict
  sample: {"format": "esd.osp/image/v1", "family": "debian12-server", "version": "1.0.0", "parent": null}
manifest_path:
  description: The manifest file beside the archive.
  returned: when state is present and not in check mode
  type: str
  sample: /var/lib/esd/images/debian12-server-1.0.0.manifest.json
sbom:
  description: The CycloneDX SBOM file beside the archive.
  returned: when state is present and not in check mode
  type: str
  sample: /var/lib/esd/images/debian12-server-1.0.0.sbom.cdx.json
sbom_diff:
  description: For image updates, the packages added, removed and changed against the parent image.
  returned: when state is present and not in check mode
  type: dict
  sample: {"from": "1.0.0", "to": "1.1.0", "added": [{"name": "tree", "version": "2.1.0-1"}], "removed": [],
           "changed": [{"name": "libc6", "from": "2.36-9+deb12u10", "to": "2.36-9+deb12u13"}], "unchanged": 180}
sbom_diff_path:
  description: The SBOM diff file beside the archive (image updates only).
  returned: when state is present and not in check mode
  type: str
  sample: /var/lib/esd/images/debian12-server-1.1.0.sbom-diff.json
checksums:
  description: The sha256sum file listing the artifact files.
  returned: when state is present and not in check mode
  type: str
  sample: /var/lib/esd/images/debian12-server-1.0.0.sha256
removed:
  description: Artifact files removed by O(state=absent).
  returned: when state is absent
  type: list
  elements: str
  sample: ["/var/lib/esd/images/debian12-server-1.0.0.rootfs.tar.gz"]
"""

import getpass
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_load

from ansible_collections.esd.osp.plugins.module_utils import _image
from ansible_collections.esd.osp.plugins.module_utils._sbom import SbomError


class ImageBuild(object):
    """Runs one state of an image build for the module."""

    def __init__(self, module):
        self.module = module
        self.params = module.params

    def spec(self):
        if not self.params["spec"]:
            raise _image.ImageError("spec is required for state=%s" % self.params["state"])
        return _image.load_spec(self.params["spec"], yaml_load)

    def identity(self, spec):
        family = self.params["family"] or (spec or {}).get("family")
        version = self.params["version"] or (spec or {}).get("version")
        if not family or not version:
            raise _image.ImageError("family and version are required (from the options or the spec)")
        if not _image.NAME_RE.match(family) or not _image.VERSION_RE.match(str(version)):
            raise _image.ImageError("%r %r is not a valid image family and version" % (family, version))
        return family, str(version)

    def run(self):
        state = self.params["state"]
        rootfs = self.params["rootfs"]
        if state == "absent":
            family, version = self.params["family"], self.params["version"]
            removed = []
            if self.params["dest"]:
                if not (family and version):
                    raise _image.ImageError("family and version are required to remove artifact files from dest")
                removed = _image.remove_artifact(self.params["dest"], family, str(version), self.module.check_mode)
            leftovers = [p for p in (rootfs, _image.state_path(rootfs), rootfs.rstrip("/") + ".log",
                                     rootfs.rstrip("/") + ".partial") if os.path.lexists(p)]
            actions = []
            if not self.module.check_mode:
                for path in leftovers:
                    actions += _image.remove_rootfs(path)
            return {"changed": bool(removed or leftovers), "actions": actions or ["remove %s" % p for p in leftovers],
                    "removed": removed, "rootfs": rootfs}
        spec = self.spec()
        family, version = self.identity(spec)
        if state == "rootfs":
            result = _image.prepare_rootfs(
                spec, rootfs, family, version, mirror=self.params["mirror"], base=self.params["base"],
                base_sha256=self.params["base_sha256"], cache_dir=self.params["cache_dir"],
                source_date_epoch=self.params["source_date_epoch"], timeout=self.params["timeout"],
                check_mode=self.module.check_mode)
            build_state = result.pop("state") or {}
            result.update({"rootfs": rootfs, "family": family, "version": version,
                           "source_date_epoch": build_state.get("source_date_epoch")})
            return result
        if not self.params["dest"]:
            raise _image.ImageError("dest is required for state=present")
        builder = self.params["builder"] or os.environ.get("ESD_USER") or getpass.getuser()
        result = _image.pack_image(spec, rootfs, self.params["dest"], family, version, builder,
                                   force=self.params["force"], keep_rootfs=self.params["keep_rootfs"],
                                   compresslevel=self.params["compression_level"], check_mode=self.module.check_mode)
        result.update({"rootfs": rootfs, "family": family, "version": version})
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["rootfs", "present", "absent"], default="present"),
            spec=dict(type="path"),
            family=dict(type="str"),
            version=dict(type="str"),
            rootfs=dict(type="path", required=True),
            dest=dict(type="path"),
            base=dict(type="path"),
            base_sha256=dict(type="str"),
            mirror=dict(type="str", default=""),
            cache_dir=dict(type="path", default=""),
            builder=dict(type="str"),
            source_date_epoch=dict(type="int"),
            keep_rootfs=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            compression_level=dict(type="int", default=6),
            timeout=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    label = "%s %s" % (module.params["family"] or module.params["spec"] or "image", module.params["version"] or "")
    try:
        result = ImageBuild(module).run()
    except (_image.ImageError, SbomError) as exc:
        module.fail_json(msg="Failed to build the image %s (state=%s): %s" % (label.strip(), module.params["state"], exc),
                         rootfs=module.params["rootfs"])
    except OSError as exc:
        module.fail_json(msg="Failed to build the image %s (state=%s): %s" % (label.strip(), module.params["state"], exc),
                         rootfs=module.params["rootfs"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
