# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _sbom

STATUS = """Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u10
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
Homepage: https://www.gnu.org/software/libc/libc.html

Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1
Description: basic utilities from 4.4BSD-Lite

Package: telnet
Status: deinstall ok config-files
Architecture: amd64
Version: 0.17+2.4-2

"""


def make_root(tmp_path, status=STATUS, esd=None):
    root = tmp_path / "rootfs"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(status)
    for name, active in (esd or {}).items():
        (root / "var/lib/esd/software").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/esd/software" / (name + ".json")).write_text(json.dumps({"name": name, "active": active}))
    return str(root)


def test_installed_debs_reads_only_installed_packages(tmp_path):
    packages = _sbom.installed_debs(make_root(tmp_path))
    assert [p["name"] for p in packages] == ["bsdutils", "libc6"]
    bsdutils, libc6 = packages
    assert bsdutils["source"] == "util-linux" and bsdutils["source_version"] == "2.38.1-5"
    assert libc6["source"] == "glibc" and libc6["source_version"] == "2.36-9+deb12u10"
    assert libc6["summary"] == "GNU C Library: Shared libraries"
    assert libc6["homepage"].startswith("https://www.gnu.org/")


def test_missing_dpkg_database_is_an_error(tmp_path):
    with pytest.raises(_sbom.SbomError, match="cannot read the dpkg database"):
        _sbom.installed_debs(str(tmp_path))


def test_purls_encode_epochs_and_qualifiers():
    purl = _sbom.deb_purl({"name": "bsdutils", "version": "1:2.38.1-5+b1", "architecture": "amd64"}, "debian-12")
    assert purl == "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bb1?arch=amd64&distro=debian-12"


def test_sbom_is_deterministic_cyclonedx(tmp_path):
    root = make_root(tmp_path, esd={"hello-agent": "1.1.0"})
    debs = _sbom.installed_debs(root)
    esd = _sbom.installed_esd_packages(root)
    os_release = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
    image = {"family": "debian12-server", "version": "1.0.0", "description": "test"}
    first = _sbom.build_sbom(image, debs, esd, os_release, 1700000000)
    second = _sbom.build_sbom(image, debs, esd, os_release, 1700000000)
    assert first == second
    assert _sbom.validate_sbom(first) == []
    assert first["bomFormat"] == "CycloneDX" and first["specVersion"] == "1.5"
    assert first["serialNumber"].startswith("urn:uuid:")
    assert first["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert first["metadata"]["component"] == {"type": "operating-system", "bom-ref": "image:debian12-server@1.0.0",
                                              "name": "debian12-server", "version": "1.0.0", "description": "test"}
    types = [c["type"] for c in first["components"]]
    assert types == ["operating-system", "library", "library", "application"]
    assert first["components"][-1]["purl"] == "pkg:generic/esd.osp/hello-agent@1.1.0"
    # another version of the image is another BOM
    other = _sbom.build_sbom(dict(image, version="1.1.0"), debs, esd, os_release, 1700000000)
    assert other["serialNumber"] != first["serialNumber"]


def test_validate_sbom_names_the_problems():
    problems = _sbom.validate_sbom({"bomFormat": "SPDX", "specVersion": "2.3",
                                    "components": [{"type": "library", "name": "a", "bom-ref": "x"},
                                                   {"type": "library", "name": "b", "bom-ref": "x"}, {"name": "c"}]})
    assert "bomFormat is 'SPDX', expected CycloneDX" in problems
    assert "specVersion '2.3' is not a CycloneDX 1.x version" in problems
    assert "bom-ref x appears twice" in problems
    assert "component 2 lacks type" in problems


def sbom_of(version, packages, esd=()):
    debs = [{"name": n, "version": v, "architecture": "amd64"} for n, v in packages.items()]
    return _sbom.build_sbom({"family": "f", "version": version}, debs, [{"name": n, "version": v} for n, v in esd],
                            {"ID": "debian", "VERSION_ID": "12"}, 0)


def test_diff_lists_added_removed_changed():
    old = sbom_of("1.0.0", {"libc6": "2.36-9", "openssl": "3.0.20", "telnet": "0.17"}, [("agent", "1.0")])
    new = sbom_of("1.1.0", {"libc6": "2.36-9", "openssl": "3.0.22", "tree": "2.1.0-1"}, [("agent", "1.1")])
    result = _sbom.diff(old, new)
    assert result == {
        "from": "1.0.0", "to": "1.1.0",
        "added": [{"name": "tree", "version": "2.1.0-1"}],
        "removed": [{"name": "telnet", "version": "0.17"}],
        "changed": [{"name": "esd.osp/agent", "from": "1.0", "to": "1.1"},
                    {"name": "openssl", "from": "3.0.20", "to": "3.0.22"}],
        "unchanged": 1,
    }
    assert _sbom.diff_summary(result) == "+1 -1 ~2 (=1)"
    assert _sbom.diff(new, new)["changed"] == [] and _sbom.diff(new, new)["unchanged"] == 4


def test_deb822_continuation_lines():
    stanzas = _sbom.parse_deb822("A: 1\nB: two\n words\n\nA: 2\n")
    assert stanzas == [{"A": "1", "B": "two\nwords"}, {"A": "2"}]
    assert os.path.basename(_sbom.DPKG_STATUS) == "status"
