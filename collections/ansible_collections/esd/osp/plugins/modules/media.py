#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: media
short_description: Build distribution media (ISO 9660) holding packages or an OS image, or unpack and verify one
version_added: 0.1.0
description:
  - O(state=present) writes C(<dest>/<name>-<version>.iso) with xorriso (Rock Ridge, Joliet, MD5 checksums of the
    session and every file). The medium holds C(MEDIA.json) (every file with its size, sha256 and identity),
    C(SHA256SUMS), C(README.txt) and either C(packages/) (esd.osp package artifacts, O(kind=packages)) or C(image/)
    (an image archive with its manifest and SBOM, and optionally C(provisioning/), O(kind=image)). The ISO is
    reproducible - all dates come from the source date - and a sha256sum file is written beside it.
  - O(state=extracted) verifies the medium O(src) (its sha256, xorriso's MD5 check, every file against
    C(SHA256SUMS) and C(MEDIA.json)) and unpacks it into O(dest), so that packages can be installed from it.
  - O(state=absent) removes the ISO and its sha256sum file from O(dest).
author:
  - esd.osp developers (@esd-osp)
options:
  state:
    description: What to do; see the description.
    type: str
    choices: [present, extracted, absent]
    default: present
  name:
    description: Name of the medium. Required for O(state=present) and O(state=absent).
    type: str
  version:
    description: Version of the medium.
    type: str
    default: "1"
  kind:
    description: What the medium holds.
    type: str
    choices: [packages, image]
    default: packages
  packages:
    description: esd.osp package artifacts to put on a O(kind=packages) medium.
    type: list
    elements: path
    default: []
  image:
    description: The image archive (C(.rootfs.tar.gz)) for a O(kind=image) medium; its manifest and SBOM files beside it come along.
    type: path
  image_sha256:
    description: Expected sha256 of O(image).
    type: str
  provisioning:
    description: A directory (the provisioning mechanism of M(esd.osp.provisioning)) to put under C(provisioning/).
    type: path
  dest:
    description: For O(state=present) and O(state=absent), the directory of the ISO; for O(state=extracted), where it is unpacked.
    type: path
    required: true
  src:
    description: The medium to unpack (O(state=extracted)).
    type: path
  sha256:
    description: Expected sha256 of O(src).
    type: str
  builder:
    description: Who builds the medium, recorded in C(MEDIA.json). Defaults to E(ESD_USER), else the user.
    type: str
  source_date_epoch:
    description:
      - The date of every file and of the volume. Defaults to E(SOURCE_DATE_EPOCH), else the newest build time of the
        packages or the image's source date.
    type: int
  force:
    description: Replace an existing ISO of the same name and version whose content differs.
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
  - module: esd.osp.media_info
  - module: esd.osp.image
  - module: esd.osp.provisioning
"""

EXAMPLES = r"""
- name: Distribution media with the payroll packages
  esd.osp.media:
    name: payroll-2026q2
    version: "1"
    packages:
      - /srv/esd/build/payroll-agent-2.4.1.esdpkg
      - /srv/esd/build/payroll-db-1.3.0.esdpkg
    dest: /srv/esd/media

- name: Image media for sites without network installs
  esd.osp.media:
    name: debian12-server
    version: 1.1.0
    kind: image
    image: /var/lib/esd/images/debian12-server-1.1.0.rootfs.tar.gz
    provisioning: /var/lib/esd/provisioning/debian12-server-1.1.0
    dest: /srv/esd/media

- name: Unpack and verify a medium on a test host
  esd.osp.media:
    src: /var/tmp/payroll-2026q2-1.iso
    sha256: "{{ media_sha256 }}"
    dest: /var/tmp/payroll-media
    state: extracted
"""

RETURN = r"""
path:
  description: The ISO file.
  returned: when state is present or extracted
  type: str
  sample: /srv/esd/media/payroll-2026q2-1.iso
sha256:
  description: SHA-256 of the ISO.
  returned: when state is present or extracted, and not in check mode
  type: str
  sample: ced06e6ca10be00481f686dfd332fb4e5cd1dab704d621779476ba7a9396d406
size:
  description: Size of the ISO in bytes.
  returned: when state is present or extracted, and not in check mode
  type: int
  sample: 1048576
volume_id:
  description: The ISO volume id.
  returned: when state is present
  type: str
  sample: PAYROLL_2026Q2_1
checksums:
  description: The sha256sum file beside the ISO.
  returned: when state is present and not in check mode
  type: str
  sample: /srv/esd/media/payroll-2026q2-1.iso.sha256
manifest:
  description: The medium's C(MEDIA.json).
  returned: when state is present or extracted
  type: dict
  sample: {"format": "esd.osp/media/v1", "name": "payroll-2026q2", "kind": "packages", "files": []}
files:
  description: The files on the medium (path and size), as xorriso lists them.
  returned: when state is extracted
  type: list
  elements: dict
  sample: [{"path": "packages/payroll-agent-2.4.1.esdpkg", "size": 20480}]
md5_check:
  description: The result of xorriso's MD5 check (C(match) or C(mismatch)).
  returned: when state is extracted
  type: str
  sample: match
extracted_to:
  description: Where the medium was unpacked.
  returned: when state is extracted
  type: str
  sample: /var/tmp/payroll-media
removed:
  description: Files removed by O(state=absent).
  returned: when state is absent
  type: list
  elements: str
  sample: ["/srv/esd/media/payroll-2026q2-1.iso"]
"""

import getpass
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esd.osp.plugins.module_utils import _artifact, _image, _media


def package_files(paths):
    files, newest = [], 0
    for path in paths:
        try:
            manifest = _artifact.read_manifest(path)
        except _artifact.ArtifactError as exc:
            raise _media.MediaError(str(exc))
        newest = max(newest, int((manifest.get("build") or {}).get("time") or 0))
        files.append({"src": path, "path": "packages/" + os.path.basename(path), "kind": "package",
                      "name": manifest["name"], "version": manifest["version"]})
    return files, newest, {}


def image_files(image, expected_sha256, provisioning):
    info = _image.describe_artifact(image, expected_sha256)
    manifest = info["manifest"]
    files = [{"src": image, "path": "image/" + os.path.basename(image), "kind": "image",
              "name": manifest["family"], "version": manifest["version"]}]
    for key in ("manifest_path", "sbom", "sbom_diff_path"):
        if info.get(key):
            files.append({"src": info[key], "path": "image/" + os.path.basename(info[key]), "kind": "image-metadata"})
    if provisioning:
        if not os.path.isdir(provisioning):
            raise _media.MediaError("the provisioning directory %s does not exist" % provisioning)
        for current, dirs, names in os.walk(provisioning):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(current, name)
                files.append({"src": full, "path": "provisioning/" + os.path.relpath(full, provisioning),
                              "kind": "provisioning"})
    extra = {"image": {"family": manifest["family"], "version": manifest["version"], "sha256": info["sha256"],
                       "archive": "image/" + os.path.basename(image), "os": manifest.get("os"),
                       "parent": manifest.get("parent")}}
    return files, int((manifest.get("build") or {}).get("source_date_epoch") or 0), extra


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "extracted", "absent"], default="present"),
            name=dict(type="str"),
            version=dict(type="str", default="1"),
            kind=dict(type="str", choices=["packages", "image"], default="packages"),
            packages=dict(type="list", elements="path", default=[]),
            image=dict(type="path"),
            image_sha256=dict(type="str"),
            provisioning=dict(type="path"),
            dest=dict(type="path", required=True),
            src=dict(type="path"),
            sha256=dict(type="str"),
            builder=dict(type="str"),
            source_date_epoch=dict(type="int"),
            force=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("name",)), ("state", "absent", ("name",)), ("state", "extracted", ("src",))],
        supports_check_mode=True,
    )
    p = module.params
    binary = module.get_bin_path("xorriso", required=p["state"] != "absent") or "xorriso"
    try:
        if p["state"] == "absent":
            path = os.path.join(p["dest"], _media.media_filename(p["name"], p["version"]))
            removed = [f for f in (path, path + ".sha256") if os.path.exists(f)]
            if not module.check_mode:
                for item in removed:
                    os.unlink(item)
            module.exit_json(changed=bool(removed), removed=removed)
        if p["state"] == "extracted":
            manifest_path = os.path.join(p["dest"], _media.MANIFEST)
            if os.path.isfile(manifest_path) and not module.check_mode:
                # already unpacked: verify what is there against the medium's own checksums
                manifest, problems = _media.verify_tree(p["dest"])
                digest = _media.sha256_file(p["src"])
                if not problems and (not p["sha256"] or digest == p["sha256"]):
                    module.exit_json(changed=False, path=p["src"], sha256=digest, size=os.path.getsize(p["src"]),
                                     manifest=manifest, files=_media.list_media(p["src"], binary), md5_check="not checked",
                                     extracted_to=p["dest"])
            if module.check_mode:
                module.exit_json(changed=True, path=p["src"], extracted_to=p["dest"], manifest={}, files=[])
            if os.path.isdir(p["dest"]) and os.listdir(p["dest"]):
                raise _media.MediaError("%s is not empty and holds no intact copy of the medium" % p["dest"])
            result = _media.verify_media(p["src"], p["sha256"], extract_to=p["dest"], binary=binary)
            if result["problems"]:
                module.fail_json(msg="The medium %s failed verification: %s" % (p["src"], "; ".join(result["problems"])),
                                 **result)
            module.exit_json(changed=True, **result)
        if p["kind"] == "packages":
            if not p["packages"]:
                raise _media.MediaError("packages is empty: a packages medium needs at least one package")
            files, newest, extra = package_files(p["packages"])
        else:
            if not p["image"]:
                raise _media.MediaError("image is required for kind=image")
            files, newest, extra = image_files(p["image"], p["image_sha256"], p["provisioning"])
        epoch = p["source_date_epoch"] or int(os.environ.get("SOURCE_DATE_EPOCH") or 0) or newest
        builder = p["builder"] or os.environ.get("ESD_USER") or getpass.getuser()
        result = _media.build_media(p["dest"], p["name"], p["version"], p["kind"], files, builder, epoch, extra=extra,
                                    force=p["force"], check_mode=module.check_mode, binary=binary)
    except (_media.MediaError, _image.ImageError, OSError, ValueError) as exc:
        module.fail_json(msg="Failed to %s the medium %s: %s" % (
            "unpack" if p["state"] == "extracted" else "build", p["name"] or p["src"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
