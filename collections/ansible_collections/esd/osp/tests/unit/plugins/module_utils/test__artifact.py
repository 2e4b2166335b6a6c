# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
import yaml

from ansible_collections.esd.osp.plugins.module_utils import _artifact
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def test_same_inputs_give_identical_bytes(tmp_path):
    src = write_source(tmp_path)
    first = build(src, str(tmp_path / "a"))
    second = build(src, str(tmp_path / "b"))
    assert first["sha256"] == second["sha256"]
    assert open(first["path"], "rb").read() == open(second["path"], "rb").read()
    assert first["size"] == os.path.getsize(first["path"])


def test_reproducible_whatever_the_mtimes_and_umask(tmp_path):
    src = write_source(tmp_path)
    first = build(src, str(tmp_path / "a"))
    for current, dirs, files in os.walk(src):
        for name in files:
            os.utime(os.path.join(current, name), (1, 1))
    os.chmod(os.path.join(src, "payload", "etc", "tool.conf"), 0o600)  # a stricter umask on the builder
    assert build(src, str(tmp_path / "b"))["sha256"] == first["sha256"]


def test_manifest_lists_every_file_with_mode_and_digest(tmp_path):
    src = write_source(tmp_path)
    result = build(src, str(tmp_path / "a"), builder="bob")
    manifest = _artifact.read_manifest(result["path"])
    files = dict((item["path"], item) for item in manifest["files"])
    assert files["payload/bin/tool"]["mode"] == "0755"
    assert files["payload/etc/tool.conf"]["mode"] == "0644"
    assert files["hooks/health_check"]["mode"] == "0755"
    with tarfile.open(result["path"]) as tar:
        names = tar.getnames()
        data = tar.extractfile("payload/etc/tool.conf").read()
        assert all(member.mtime == 1700000000 and member.uid == 0 for member in tar.getmembers())
    assert names[0] == "MANIFEST.json" and names[1:] == sorted(names[1:])
    assert files["payload/etc/tool.conf"]["sha256"] == __import__("hashlib").sha256(data).hexdigest()
    assert manifest["build"] == {"builder": "bob", "source_digest": _artifact.source_digest(src),
                                 "time": 1700000000, "tool": "esd.osp.package"}


def test_source_digest_changes_with_content(tmp_path):
    src = write_source(tmp_path)
    before = _artifact.source_digest(src)
    with open(os.path.join(src, "payload", "etc", "tool.conf"), "a") as handle:
        handle.write("x\n")
    assert _artifact.source_digest(src) != before


def test_rebuild_identical_is_unchanged_and_different_is_refused(tmp_path):
    src = write_source(tmp_path)
    dest = str(tmp_path / "out")
    assert build(src, dest)["changed"] is True
    again = build(src, dest)
    assert again["changed"] is False
    with open(os.path.join(src, "payload", "etc", "tool.conf"), "a") as handle:
        handle.write("changed\n")
    with pytest.raises(_artifact.ArtifactError, match="a name and version must never have two contents"):
        build(src, dest)
    assert _artifact.sha256_file(again["path"]) == again["sha256"]  # the original is untouched
    forced = _artifact.build_package(src, dest, yaml.safe_load, "bob", force=True)
    assert forced["changed"] is True and forced["previous_sha256"] == again["sha256"]
    assert os.listdir(dest) == ["demo-1.0.0.esdpkg"]  # no temporary files left


def test_check_mode_predicts_without_writing(tmp_path):
    src = write_source(tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    result = _artifact.build_package(src, str(dest), yaml.safe_load, "bob", check_mode=True)
    assert result["changed"] is True and os.listdir(str(dest)) == []


def test_invalid_spec_reports_every_problem(tmp_path):
    src = tmp_path / "bad"
    (src / "payload").mkdir(parents=True)
    (src / "package.yml").write_text("name: Bad Name\nhooks:\n  on_boot: x.sh\n  health_check: missing.sh\ncolour: red\n")
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.build_package(str(src), str(tmp_path / "out"), yaml.safe_load, "bob")
    message = str(info.value)
    assert "unknown key(s) colour" in message
    assert "name must be lower-case letters" in message and "'Bad Name'" in message
    assert "version is required" in message
    assert "unknown hook 'on_boot'" in message
    assert "hook health_check script %s does not exist" % os.path.join(str(src), "missing.sh") in message
    assert not (tmp_path / "out").exists()


def test_payload_link_leaving_the_tree_is_refused_at_build(tmp_path):
    src = write_source(tmp_path)
    os.symlink("../../../etc/passwd", os.path.join(src, "payload", "bin", "escape"))
    with pytest.raises(_artifact.ArtifactError, match="link payload/bin/escape -> ../../../etc/passwd leaves the payload tree"):
        build(src, str(tmp_path / "out"))


# --- safe extraction of hostile archives ------------------------------------------------------

def hostile_archive(path, members, manifest_files=None):
    """Write an archive whose manifest claims `manifest_files` and which holds `members` (TarInfo, data)."""
    manifest = {"format": _artifact.MANIFEST_FORMAT, "name": "evil", "version": "1", "install_dir": "/opt/esd/evil",
                "files": manifest_files or [], "build": {"time": 0}}
    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("members,expected", [
    ([member("/etc/cron.d/evil")], "member '/etc/cron.d/evil' has an absolute path"),
    ([member("payload/../../etc/passwd")], "member 'payload/../../etc/passwd' contains '..'"),
    ([member("payload/up", tarfile.SYMTYPE, linkname="../../../../etc")], "link payload/up -> ../../../../etc leaves the payload tree"),
    ([member("payload/abs", tarfile.SYMTYPE, linkname="/etc/shadow")], "link payload/abs points to the absolute path '/etc/shadow'"),
    ([member("payload/hard", tarfile.LNKTYPE, linkname="/etc/shadow")], "member payload/hard is a hard link (to /etc/shadow); hard links are not allowed"),
    ([member("payload/null", tarfile.CHRTYPE)], "member payload/null is a device or fifo"),
    ([member("payload/pipe", tarfile.FIFOTYPE)], "member payload/pipe is a device or fifo"),
    ([member("elsewhere/file")], "member elsewhere/file is outside payload/ and hooks/"),
    ([member("payload/extra")], "archive holds member(s) not in its manifest: payload/extra"),
])
def test_hostile_archives_are_refused_and_nothing_is_written(tmp_path, members, expected):
    archive = hostile_archive(str(tmp_path / "evil.esdpkg"), members)
    release = tmp_path / "root" / "releases" / "1"
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.extract_release(archive, str(release))
    assert expected in str(info.value)
    assert not release.exists()
    assert not (tmp_path / "root").exists() or os.listdir(str(tmp_path / "root" / "releases")) == []


def test_content_not_matching_manifest_is_refused_and_cleaned(tmp_path):
    files = [{"path": "payload/tool", "type": "file", "mode": "0644", "sha256": "0" * 64}]
    archive = hostile_archive(str(tmp_path / "evil.esdpkg"), [member("payload/tool", data=b"tampered")], files)
    release = tmp_path / "releases" / "1"
    with pytest.raises(_artifact.ArtifactError, match="member payload/tool does not match its manifest checksum"):
        _artifact.extract_release(archive, str(release))
    assert os.listdir(str(tmp_path / "releases")) == []


def test_not_an_artifact(tmp_path):
    path = tmp_path / "junk.esdpkg"
    path.write_bytes(b"not a tarball")
    with pytest.raises(_artifact.ArtifactError, match="is not a readable esd.osp artifact"):
        _artifact.read_manifest(str(path))


def test_extract_lays_out_payload_hooks_and_manifest(tmp_path):
    result = build(write_source(tmp_path), str(tmp_path / "a"))
    release = tmp_path / "releases" / "1.0.0"
    _artifact.extract_release(result["path"], str(release))
    assert (release / "bin" / "tool").read_text() == "#!/bin/sh\necho demo 1.0.0\n"
    assert os.stat(str(release / "bin" / "tool")).st_mode & 0o777 == 0o755
    assert os.access(str(release / ".esd" / "hooks" / "health_check"), os.X_OK)
    assert json.loads((release / ".esd" / "manifest.json").read_text())["version"] == "1.0.0"
