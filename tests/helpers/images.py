"""Where the shared test images live: built once by tests/integration/test_image_build.py, reused by the media,
repository and A/B tests while the code and spec they were built from are unchanged."""

from __future__ import annotations

import hashlib
import os

SHARED = "/var/tmp/esd-test-images"
SPEC = "examples/images/debian12-server"
# What the images depend on: when any of it changes, the shared copies are rebuilt.
IMAGE_INPUTS = (SPEC, "roles/standard_tools", "roles/os_hardening",
                "collections/ansible_collections/esd/osp/roles/build_image",
                "collections/ansible_collections/esd/osp/plugins/module_utils/_image.py",
                "collections/ansible_collections/esd/osp/plugins/module_utils/_sbom.py",
                "collections/ansible_collections/esd/osp/plugins/modules/image.py")


def inputs_digest(repo_root):
    """A digest of IMAGE_INPUTS: which shared image build matches this code."""
    digest = hashlib.sha256()
    for rel in IMAGE_INPUTS:
        top = os.path.join(repo_root, rel)
        paths = [top] if os.path.isfile(top) else sorted(
            os.path.join(d, f) for d, dirs, files in os.walk(top) for f in files if "__pycache__" not in d)
        for path in paths:
            with open(path, "rb") as handle:
                digest.update(os.path.relpath(path, repo_root).encode() + b"\0" + handle.read())
    return digest.hexdigest()[:16]


def shared_images(repo_root):
    """The directory holding the shared image artifacts for this code."""
    return os.path.join(SHARED, inputs_digest(str(repo_root)))
