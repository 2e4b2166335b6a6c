# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Software bills of materials for OS images: what is installed in a root filesystem, as CycloneDX JSON.

The installed Debian packages come from the root filesystem's dpkg database (``var/lib/dpkg/status``),
the esd.osp packages from the state files of ``esd.osp.software`` (``var/lib/esd/software/*.json``).
Everything here is deterministic: the same root filesystem gives the same SBOM bytes (components sorted,
the serial number derived from the content, the timestamp from the image's source date).

Standard library only: this runs on build hosts.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid

SBOM_FORMAT = "CycloneDX"
SPEC_VERSION = "1.5"
DPKG_STATUS = "var/lib/dpkg/status"
ESD_STATE_DIR = "var/lib/esd/software"
# A fixed namespace so that equal content always gets the same urn:uuid serial number.
SERIAL_NAMESPACE = uuid.UUID("6f1c3d52-8a0e-4b8e-9d52-3c5e0f0e7a11")
INSTALLED = ("install ok installed", "hold ok installed")


class SbomError(Exception):
    """An SBOM or a dpkg database cannot be read."""


def parse_deb822(text):
    """Parse deb822 stanzas (dpkg status, Release files) into a list of dicts; continuation lines are joined."""
    stanzas = []
    current = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                current[last] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        last = key.strip()
        current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def installed_debs(rootfs):
    """The Debian packages installed in rootfs: sorted list of {name, version, architecture, source, ...}."""
    path = os.path.join(rootfs, DPKG_STATUS)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise SbomError("cannot read the dpkg database %s: %s" % (path, exc))
    packages = []
    for stanza in parse_deb822(text):
        if stanza.get("Status") not in INSTALLED or "Package" not in stanza:
            continue
        source = stanza.get("Source") or stanza["Package"]
        source_name, dummy, source_version = source.partition(" ")
        packages.append({
            "name": stanza["Package"],
            "version": stanza.get("Version", ""),
            "architecture": stanza.get("Architecture", ""),
            "source": source_name,
            "source_version": source_version.strip("()") or stanza.get("Version", ""),
            "maintainer": stanza.get("Maintainer", ""),
            "homepage": stanza.get("Homepage", ""),
            "summary": stanza.get("Description", "").split("\n", 1)[0],
            "essential": stanza.get("Essential") == "yes",
            "priority": stanza.get("Priority", ""),
        })
    packages.sort(key=lambda item: (item["name"], item["architecture"]))
    return packages


def installed_esd_packages(rootfs):
    """esd.osp packages installed in rootfs (their active version), from esd.osp.software's state files."""
    directory = os.path.join(rootfs, ESD_STATE_DIR)
    found = []
    if not os.path.isdir(directory):
        return found
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                state = json.load(handle)
        except (OSError, ValueError) as exc:
            raise SbomError("cannot read esd.osp software state %s: %s" % (os.path.join(directory, name), exc))
        if state.get("active"):
            found.append({"name": state.get("name") or name[:-5], "version": state["active"]})
    return found


def _purl_part(value):
    """Percent-encode a purl version/qualifier value (':' of epochs, '+' and '~' are common in Debian)."""
    safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"
    return "".join(ch if ch in safe else "%%%02X" % ord(ch) for ch in value)


def deb_purl(package, distro):
    purl = "pkg:deb/debian/%s@%s" % (package["name"].lower(), _purl_part(package["version"]))
    qualifiers = []
    if package.get("architecture"):
        qualifiers.append("arch=%s" % _purl_part(package["architecture"]))
    if distro:
        qualifiers.append("distro=%s" % _purl_part(distro))
    return purl + ("?" + "&".join(qualifiers) if qualifiers else "")


def iso_timestamp(epoch):
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_sbom(image, debs, esd_packages=(), os_release=None, epoch=0, tool_version="0.1.0"):
    """A CycloneDX 1.5 document for an image.

    image: {family, version, description?}; os_release: dict of /etc/os-release (ID, VERSION_ID, ...).
    """
    os_release = os_release or {}
    distro = "%s-%s" % (os_release.get("ID", "debian"), os_release.get("VERSION_ID", "")) if os_release.get("VERSION_ID") else ""
    components = []
    if os_release:
        components.append({
            "type": "operating-system",
            "bom-ref": "os:%s@%s" % (os_release.get("ID", "linux"), os_release.get("VERSION_ID", "")),
            "name": os_release.get("ID", "linux"),
            "version": os_release.get("VERSION_ID", ""),
            "description": os_release.get("PRETTY_NAME", ""),
        })
    for package in debs:
        purl = deb_purl(package, distro)
        properties = [{"name": "deb:architecture", "value": package.get("architecture", "")},
                      {"name": "deb:source", "value": package.get("source", "")},
                      {"name": "deb:source_version", "value": package.get("source_version", "")}]
        if package.get("priority"):
            properties.append({"name": "deb:priority", "value": package["priority"]})
        component = {"type": "library", "bom-ref": purl, "name": package["name"], "version": package["version"],
                     "purl": purl, "properties": properties}
        if package.get("maintainer"):
            component["publisher"] = package["maintainer"]
        if package.get("summary"):
            component["description"] = package["summary"]
        if package.get("homepage"):
            component["externalReferences"] = [{"type": "website", "url": package["homepage"]}]
        components.append(component)
    for package in esd_packages:
        purl = "pkg:generic/esd.osp/%s@%s" % (package["name"], _purl_part(package["version"]))
        components.append({"type": "application", "bom-ref": purl, "name": package["name"],
                           "version": package["version"], "purl": purl, "group": "esd.osp"})
    content = json.dumps([image.get("family"), image.get("version"), [c["bom-ref"] for c in components]],
                         sort_keys=True).encode("utf-8")
    serial = uuid.uuid5(SERIAL_NAMESPACE, hashlib.sha256(content).hexdigest())
    metadata_component = {"type": "operating-system", "bom-ref": "image:%s@%s" % (image["family"], image["version"]),
                          "name": image["family"], "version": image["version"]}
    if image.get("description"):
        metadata_component["description"] = image["description"]
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": SBOM_FORMAT,
        "specVersion": SPEC_VERSION,
        "serialNumber": "urn:uuid:%s" % serial,
        "version": 1,
        "metadata": {
            "timestamp": iso_timestamp(epoch),
            "tools": {"components": [{"type": "application", "group": "esd.osp", "name": "image",
                                      "version": tool_version}]},
            "component": metadata_component,
        },
        "components": components,
    }


def validate_sbom(sbom):
    """Structural checks of a CycloneDX document as we write it; returns a list of problems (empty: fine)."""
    problems = []
    if not isinstance(sbom, dict):
        return ["the SBOM is not a JSON object"]
    if sbom.get("bomFormat") != SBOM_FORMAT:
        problems.append("bomFormat is %r, expected %s" % (sbom.get("bomFormat"), SBOM_FORMAT))
    if not str(sbom.get("specVersion", "")).startswith("1."):
        problems.append("specVersion %r is not a CycloneDX 1.x version" % sbom.get("specVersion"))
    components = sbom.get("components")
    if not isinstance(components, list):
        problems.append("components is missing or not a list")
        return problems
    refs = set()
    for index, component in enumerate(components):
        for key in ("type", "name", "bom-ref"):
            if not component.get(key):
                problems.append("component %d lacks %s" % (index, key))
        ref = component.get("bom-ref")
        if ref in refs:
            problems.append("bom-ref %s appears twice" % ref)
        refs.add(ref)
    return problems


def package_versions(sbom):
    """{key: version} of an SBOM's components; key is the package name (esd.osp packages: 'esd.osp/<name>')."""
    versions = {}
    for component in sbom.get("components") or []:
        if component.get("type") == "operating-system":
            continue
        key = component["name"] if component.get("group") != "esd.osp" else "esd.osp/%s" % component["name"]
        versions[key] = component.get("version", "")
    return versions


def diff(old, new):
    """What changed between two SBOMs: added, removed and changed packages (sorted), and how many stayed."""
    before, after = package_versions(old), package_versions(new)
    added = [{"name": name, "version": after[name]} for name in sorted(set(after) - set(before))]
    removed = [{"name": name, "version": before[name]} for name in sorted(set(before) - set(after))]
    changed = [{"name": name, "from": before[name], "to": after[name]}
               for name in sorted(set(before) & set(after)) if before[name] != after[name]]
    unchanged = len(set(before) & set(after)) - len(changed)
    return {
        "from": (old.get("metadata") or {}).get("component", {}).get("version"),
        "to": (new.get("metadata") or {}).get("component", {}).get("version"),
        "added": added, "removed": removed, "changed": changed, "unchanged": unchanged,
    }


def diff_summary(result):
    """One line for logs and reports: '+2 -0 ~5 (=180)'."""
    return "+%d -%d ~%d (=%d)" % (len(result["added"]), len(result["removed"]), len(result["changed"]),
                                  result["unchanged"])
