# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioning mechanism: what is generated, and that the validators catch what would break an unattended install."""

from __future__ import annotations

import json
import os
import shutil

import jsonschema
import pytest
import yaml

from ansible_collections.esd.osp.plugins.module_utils import _provisioning

SHA = "ab" * 32

# A cut-down cloud-config schema in cloud-init's own layout ($defs with properties, allOf), for the tests.
SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "$defs": {
        "base": {"type": "object", "properties": {
            "hostname": {"type": "string"}, "fqdn": {"type": "string"}, "manage_etc_hosts": {"type": "boolean"},
            "timezone": {"type": "string"}, "disable_root": {"type": "boolean"}, "ssh_pwauth": {"type": "boolean"},
            "users": {"type": "array"}, "write_files": {"type": "array"}, "runcmd": {"type": "array"},
            "final_message": {"type": "string"}, "phone_home": {"type": "object"}}},
    },
    "allOf": [{"$ref": "#/$defs/base"}],
}


def settings(**overrides):
    values = {"family": "demo-server", "version": "1.1.0", "image_sha256": SHA, "http_base": "http://depot.example/prov",
              "image_url": "http://depot.example/blobs/sha256/" + SHA, "hostname": "web01", "domain": "example.com",
              "admin_user": "esd-admin", "admin_group": "esd-admins", "ssh_authorized_keys": ["ssh-ed25519 AAAA ops"],
              "locale": "en_US.UTF-8", "keyboard": "us", "timezone": "Etc/UTC", "mirror": "http://deb.debian.org/debian",
              "suite": "bookworm", "disk": "/dev/sda", "netboot_url": _provisioning.DEFAULT_NETBOOT,
              "keep": ["etc/fstab", "etc/hostname"], "phone_home_url": "", "source_date_epoch": 1700000000,
              "preseed_url": "http://depot.example/prov/demo-server-1.1.0/preseed/demo-server-1.1.0.cfg",
              "apply_script_url": "http://depot.example/prov/demo-server-1.1.0/scripts/apply-image.sh",
              "user_data_url": "http://depot.example/prov/demo-server-1.1.0/cloud-init/user-data"}
    values.update(overrides)
    return values


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    return str(path)


def generate(tmp_path, schema_file, seed_iso=False, **overrides):
    return _provisioning.generate(settings(**overrides), str(tmp_path / "prov"), yaml.safe_dump, yaml.safe_load,
                                  schema_file, jsonschema, seed_iso=seed_iso)


def test_generate_writes_a_valid_mechanism(tmp_path, schema_file):
    result = generate(tmp_path, schema_file)
    root = result["path"]
    assert sorted(os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root) for f in files) == [
        "MANIFEST.json", "SHA256SUMS", "cloud-init/meta-data", "cloud-init/user-data", "ipxe/demo-server-1.1.0.ipxe",
        "preseed/demo-server-1.1.0.cfg", "pxelinux.cfg/default", "scripts/apply-image.sh"]
    assert all(item["problems"] == [] for item in result["validation"].values())
    assert result["validation"]["cloud-init/user-data"]["validator"].startswith("cloud-init JSON schema")
    ipxe = open(os.path.join(root, "ipxe/demo-server-1.1.0.ipxe")).read()
    assert "url=http://depot.example/prov/demo-server-1.1.0/preseed/demo-server-1.1.0.cfg" in ipxe
    preseed = open(os.path.join(root, "preseed/demo-server-1.1.0.cfg")).read()
    assert "d-i preseed/late_command string wget -q -O /tmp/esd-apply-image.sh " \
           "http://depot.example/prov/demo-server-1.1.0/scripts/apply-image.sh" in preseed
    script = open(os.path.join(root, "scripts/apply-image.sh")).read()
    assert "IMAGE_SHA256='%s'" % SHA in script and "sha256sum -c -" in script
    assert "--exclude='etc/fstab' --exclude='etc/hostname'" in script
    user_data = yaml.safe_load(open(os.path.join(root, "cloud-init/user-data")))
    assert user_data["users"][0]["ssh_authorized_keys"] == ["ssh-ed25519 AAAA ops"]
    assert user_data["ssh_pwauth"] is False and user_data["disable_root"] is True
    assert json.loads(user_data["write_files"][0]["content"])["sha256"] == SHA
    assert generate(tmp_path, schema_file)["changed"] is False


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")
def test_seed_iso_is_reproducible(tmp_path, schema_file):
    first = generate(tmp_path, schema_file, seed_iso=True)
    seed = os.path.join(first["path"], "cloud-init/seed.iso")
    digest = _provisioning.sha256_file(seed)
    shutil.rmtree(first["path"])
    assert _provisioning.sha256_file(os.path.join(generate(tmp_path, schema_file, seed_iso=True)["path"],
                                                  "cloud-init/seed.iso")) == digest
    with open(seed, "rb") as handle:
        handle.seek(16 * 2048 + 40)
        assert handle.read(6) == b"CIDATA"


def test_a_different_mechanism_needs_force(tmp_path, schema_file):
    generate(tmp_path, schema_file)
    with pytest.raises(_provisioning.ProvisioningError, match="already holds a different provisioning mechanism"):
        generate(tmp_path, schema_file, hostname="web02")
    forced = _provisioning.generate(settings(hostname="web02"), str(tmp_path / "prov"), yaml.safe_dump,
                                    yaml.safe_load, schema_file, jsonschema, seed_iso=False, force=True)
    assert forced["changed"]


def test_ipxe_and_pxe_grammar():
    good = _provisioning.ipxe_script(settings())
    assert _provisioning.validate_ipxe(good) == []
    problems = _provisioning.validate_ipxe("#!/bin/sh\nfrobnicate\nkernel http://x/linux\n")
    assert "an iPXE script must start with #!ipxe" in problems
    assert "line 2: unknown iPXE command 'frobnicate'" in problems
    assert "the iPXE script never runs boot" in problems
    assert any("auto=true" in p for p in problems)
    assert _provisioning.validate_pxe(_provisioning.pxe_config(settings())) == []
    assert "DEFAULT 'other' names no LABEL (labels: one)" in _provisioning.validate_pxe(
        "DEFAULT other\nLABEL one\n  KERNEL linux\n  APPEND auto=true\n")


def test_preseed_checks(tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text("d-i debian-installer/locale string en_US\nd-i clock-setup/utc boolean maybe\nd-i broken\n"
                    "d-i netcfg/get_hostname strng web01\n")
    problems, validator = _provisioning.validate_preseed(str(path))
    assert "line 2: clock-setup/utc is boolean but has the value ['maybe']" in problems
    assert any(p.startswith("line 3: an answer needs owner, question, type and value") for p in problems)
    assert "line 4: netcfg/get_hostname has the unknown type 'strng'" in problems
    assert "the preseed does not answer preseed/late_command (needed for an unattended install)" in problems
    good = tmp_path / "good.cfg"
    good.write_text(_provisioning.preseed(settings()))
    assert _provisioning.validate_preseed(str(good))[0] == []


def test_cloud_config_against_the_schema(tmp_path, schema_file):
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nhostname: 5\nssh_pwauth: 'no'\nfavourite_colour: blue\n")
    problems, validator = _provisioning.validate_cloud_config(
        str(path), yaml.safe_load, schema_file, jsonschema, cloud_init="no-such-cloud-init")
    assert "hostname: 5 is not of type 'string'" in problems
    assert "ssh_pwauth: 'no' is not of type 'boolean'" in problems
    assert "unknown top-level key 'favourite_colour' (not in cloud-init's schema)" in problems
    assert validator == "cloud-init JSON schema (schema.json) with jsonschema"


def test_cloud_config_without_a_schema_is_checked_structurally(tmp_path):
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nusers: admin\nrunrcmd: [ls]\n")
    problems, validator = _provisioning.validate_cloud_config(
        str(path), yaml.safe_load, None, None, cloud_init="no-such-cloud-init")
    assert validator.startswith("builtin")
    assert problems == ["unknown top-level key 'runrcmd'", "users must be a list"]
    path.write_text("hostname: x\n")
    assert _provisioning.validate_cloud_config(str(path), yaml.safe_load)[0] == ["user-data must start with #cloud-config"]


def test_invalid_mechanisms_are_never_written(tmp_path, schema_file):
    with pytest.raises(_provisioning.ProvisioningError, match="mirror must be an http"):
        generate(tmp_path, schema_file, mirror="ftp://old.example/debian")
    with pytest.raises(_provisioning.ProvisioningError, match="cloud-init/user-data: hostname: 'web01' is not of type 'integer'"):
        _provisioning.generate(settings(), str(tmp_path / "prov2"), yaml.safe_dump, yaml.safe_load,
                               str(_write_schema(tmp_path, {"hostname": {"type": "integer"}})), jsonschema,
                               seed_iso=False)
    assert os.listdir(str(tmp_path / "prov2")) == []


def _write_schema(tmp_path, properties):
    schema = json.loads(json.dumps(SCHEMA))
    schema["$defs"]["base"]["properties"].update(properties)
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(schema))
    return path


def test_a_debconf_database_locked_for_a_moment_is_waited_for_but_a_parse_error_is_not(tmp_path, monkeypatch):
    """debconf-set-selections --checkonly exits 1 without a word while another debconf process holds its database
    locks: that is tried again; what it does say is a problem at once."""
    monkeypatch.setattr(_provisioning.time, "sleep", lambda seconds: None)
    preseed = tmp_path / "ok.cfg"
    preseed.write_text(_provisioning.preseed(settings()))
    calls = tmp_path / "calls"
    fake = tmp_path / "debconf-set-selections"
    fake.write_text("#!/bin/sh\necho x >> %s\n[ $(wc -l < %s) -ge 3 ] && exit 0\nexit 1\n" % (calls, calls))
    fake.chmod(0o755)
    assert _provisioning.validate_preseed(str(preseed), debconf=str(fake)) == ([], "debconf-set-selections --checkonly")
    assert len(calls.read_text().splitlines()) == 3

    fake.write_text("#!/bin/sh\nexit 1\n")
    problems = _provisioning.validate_preseed(str(preseed), debconf=str(fake))[0]
    assert problems == ["debconf-set-selections --checkonly exited 1 without a message %d times (is the debconf "
                        "database locked by another process?)" % _provisioning.DEBCONF_ATTEMPTS]

    calls.write_text("")
    fake.write_text("#!/bin/sh\necho x >> %s\necho \"error: parse error on line 1: 'd-i broken'\" >&2\nexit 1\n" % calls)
    problems = _provisioning.validate_preseed(str(preseed), debconf=str(fake))[0]
    assert problems == ["debconf-set-selections: error: parse error on line 1: 'd-i broken'"]
    assert len(calls.read_text().splitlines()) == 1
