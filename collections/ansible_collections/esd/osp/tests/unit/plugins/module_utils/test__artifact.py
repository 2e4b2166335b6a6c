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


def test_check_mode_with_a_missing_dest_predicts_the_real_build(tmp_path, monkeypatch):
    src = write_source(tmp_path)
    dest = tmp_path / "new" / "out"
    written = []
    real_mkstemp = _artifact.tempfile.mkstemp
    monkeypatch.setattr(_artifact.tempfile, "mkstemp", lambda *a, **k: written.append(k) or real_mkstemp(*a, **k))
    predicted = _artifact.build_package(src, str(dest), yaml.safe_load, "bob", check_mode=True)
    assert not (tmp_path / "new").exists() and written == []  # no dest, no temporary file anywhere
    real = _artifact.build_package(src, str(dest), yaml.safe_load, "bob")
    assert (predicted["changed"], predicted["sha256"], predicted["size"], predicted["path"]) == \
        (True, real["sha256"], real["size"], real["path"])
    assert _artifact.build_package(src, str(dest), yaml.safe_load, "bob", check_mode=True)["changed"] is False


def test_check_mode_refuses_a_second_content_like_a_real_build(tmp_path):
    src = write_source(tmp_path)
    dest = str(tmp_path / "out")
    build(src, dest)
    with open(os.path.join(src, "payload", "etc", "tool.conf"), "a") as handle:
        handle.write("changed\n")
    with pytest.raises(_artifact.ArtifactError, match="a name and version must never have two contents"):
        _artifact.build_package(src, dest, yaml.safe_load, "bob", check_mode=True)
    assert os.listdir(dest) == ["demo-1.0.0.esdpkg"]


def test_artifact_is_world_readable(tmp_path):
    old_umask = os.umask(0o077)  # a strict builder umask must not make the artifact private either
    try:
        result = build(write_source(tmp_path), str(tmp_path / "out"))
    finally:
        os.umask(old_umask)
    assert os.stat(result["path"]).st_mode & 0o777 == 0o644


def test_scan_evidence_keeps_only_what_does_not_depend_on_paths():
    scan = {"path": "/work/main/playbooks/../examples/packages/hello", "database": "/srv/clamav",
            "database_sha256": "ab" * 32, "engine": "ClamAV 1.4.6/27400/Mon Sep  9 08:21:35 2026",
            "infected": [], "clean": True, "command": ["clamscan", "/work/main/playbooks/../examples"]}
    assert _artifact.scan_evidence(scan) == {"engine": "ClamAV 1.4.6", "clean": True, "infected": [],
                                             "database_sha256": "ab" * 32}
    found = {"path": "/src/", "infected": [{"path": "/src/payload/eicar.com", "signature": "Eicar"}], "clean": False}
    assert _artifact.scan_evidence(found)["infected"] == [{"path": "payload/eicar.com", "signature": "Eicar"}]


def test_same_tree_through_two_path_spellings_gives_the_same_artifact(tmp_path):
    """The build role embeds esd.osp.scan's result: $PWD/examples/x and playbooks/../examples/x are one tree."""
    from ansible_collections.esd.osp.plugins.module_utils import _scan
    src = write_source(tmp_path)
    (tmp_path / "playbooks").mkdir()
    database = tmp_path / "clamav"
    database.mkdir()
    (database / "test.hdb").write_text("%s:4:Esd-Test\n" % ("0" * 32))
    spellings = [(src, str(database)),
                 (os.path.join(str(tmp_path), "playbooks", "..", os.path.basename(src)),
                  os.path.join(str(tmp_path), "playbooks", "..", "clamav") + "/")]
    dest = str(tmp_path / "out")
    results = []
    for path, db in spellings:
        scanned = _scan.scan(path, database=db)
        results.append(_artifact.build_package(path, dest, yaml.safe_load, "bob", scan=dict(scanned, clean=True)))
    assert results[0]["changed"] is True and results[1]["changed"] is False
    assert results[0]["sha256"] == results[1]["sha256"]
    evidence = _artifact.read_manifest(results[0]["path"])["scan"]
    assert evidence == {"engine": evidence["engine"], "clean": True, "infected": [],
                        "database_sha256": _scan.database_digest(str(database))}
    assert evidence["engine"].startswith("ClamAV ") and "/" not in evidence["engine"]


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
    ([member("payload/disk", tarfile.BLKTYPE)], "member payload/disk is a device or fifo"),
    ([member("payload/pipe", tarfile.FIFOTYPE)], "member payload/pipe is a device or fifo"),
    # each link alone stays inside payload as text; followed like the kernel does, t ends above the release
    ([member("payload/a", tarfile.DIRTYPE), member("payload/a/b", tarfile.DIRTYPE),
      member("payload/a/b/s", tarfile.SYMTYPE, linkname="../.."),
      member("payload/a/b/t", tarfile.SYMTYPE, linkname="s/../../..")],
     "link payload/a/b/t -> s/../../.. leaves the payload tree (through the link payload/a/b/s)"),
    # back into payload/ as text, but payload/ is the release directory: this is a sibling of the release
    ([member("payload/y"), member("payload/x", tarfile.SYMTYPE, linkname="../payload/y")],
     "link payload/x -> ../payload/y leaves the payload tree"),
    ([member("payload/l1", tarfile.SYMTYPE, linkname="l2"), member("payload/l2", tarfile.SYMTYPE, linkname="l1")],
     "link payload/l1 -> l2 does not resolve: more than 40 links in a row (a loop?)"),
    # a link that stays inside is fine, but nothing may be unpacked through it
    ([member("payload/sub", tarfile.DIRTYPE), member("payload/d", tarfile.SYMTYPE, linkname="sub"),
      member("payload/d/evil")],
     "member payload/d/evil is beneath the symlink payload/d; nothing may be unpacked through a link"),
    ([member("payload/.esd/hooks/health_check")], "member payload/.esd/hooks/health_check is in the reserved directory .esd"),
    ([member("payload", tarfile.SYMTYPE, linkname="/etc")], "member payload must be a directory"),
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


def chain_escape(tmp_path):
    """The audit's archive: two links that stay inside as text, and a file written through the second."""
    links = [member("payload/a", tarfile.DIRTYPE), member("payload/a/b", tarfile.DIRTYPE),
             member("payload/a/b/s", tarfile.SYMTYPE, linkname="../.."),
             member("payload/a/b/t", tarfile.SYMTYPE, linkname="s/../../..")]
    files = [{"path": "payload/a", "type": "dir"}, {"path": "payload/a/b", "type": "dir"},
             {"path": "payload/a/b/s", "type": "link", "target": "../.."},
             {"path": "payload/a/b/t", "type": "link", "target": "s/../../.."},
             {"path": "payload/a/b/t/pwned", "type": "file", "mode": "0644",
              "sha256": __import__("hashlib").sha256(b"x").hexdigest()}]
    return hostile_archive(str(tmp_path / "evil.esdpkg"), links + [member("payload/a/b/t/pwned")], files)


def test_file_written_through_a_link_chain_is_refused(tmp_path):
    release = tmp_path / "root" / "opt" / "esd" / "evil" / "releases" / "1"
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.extract_release(chain_escape(tmp_path), str(release))
    assert str(info.value) == ("member payload/a/b/t/pwned is beneath the symlink payload/a/b/t; "
                               "nothing may be unpacked through a link")
    assert not (tmp_path / "root").exists()


def unchecked(members, manifest):
    return dict((_artifact._normalise_member_path(item.name), item) for item in members)


def test_realpath_check_stops_a_write_outside_even_if_the_member_checks_miss_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_artifact, "check_members", unchecked)
    releases = tmp_path / "root" / "opt" / "esd" / "evil" / "releases"
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.extract_release(chain_escape(tmp_path), str(releases / "1"))
    assert str(info.value) == "member payload/a/b/t/pwned would be written to %s, outside the release" % (
        os.path.realpath(str(tmp_path / "root" / "opt" / "esd")))
    assert sorted(os.listdir(str(tmp_path / "root" / "opt" / "esd"))) == ["evil"]  # no pwned
    assert os.listdir(str(releases)) == []  # staging removed


def test_realpath_check_refuses_a_link_resolving_outside_before_the_release_appears(tmp_path, monkeypatch):
    monkeypatch.setattr(_artifact, "check_members", unchecked)
    archive = hostile_archive(str(tmp_path / "evil.esdpkg"), [member("payload/up", tarfile.SYMTYPE, linkname="../..")])
    releases = tmp_path / "root" / "releases"
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.extract_release(archive, str(releases / "1"))
    assert str(info.value) == "up resolves to %s, outside the release" % os.path.realpath(str(tmp_path / "root"))
    assert os.listdir(str(releases)) == []


def test_links_that_stay_inside_are_unpacked(tmp_path):
    src = write_source(tmp_path)
    os.symlink("../etc", os.path.join(src, "payload", "bin", "conf"))
    os.symlink("bin/conf/tool.conf", os.path.join(src, "payload", "tool.conf"))
    result = build(src, str(tmp_path / "a"))
    release = tmp_path / "releases" / "1.0.0"
    _artifact.extract_release(result["path"], str(release))
    assert (release / "tool.conf").read_text() == "v=1.0.0\n"


def test_payload_link_chain_leaving_the_tree_is_refused_at_build(tmp_path):
    src = write_source(tmp_path)
    os.symlink("..", os.path.join(src, "payload", "bin", "s"))
    os.symlink("s/..", os.path.join(src, "payload", "bin", "t"))
    with pytest.raises(_artifact.ArtifactError) as info:
        build(src, str(tmp_path / "out"))
    assert str(info.value) == "link payload/bin/t -> s/.. leaves the payload tree (through the link payload/bin/s)"


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


@pytest.mark.parametrize("install_dir,problem", [
    ("/opt/hello-agent", None),
    ("/usr/local/payroll", None),
    ("/", "install_dir of demo must be a directory of its own, not the system directory / (for example /opt/esd/demo)"),
    ("/usr/local", "install_dir of demo must be a directory of its own, not the system directory /usr/local (for "
     "example /usr/local/demo)"),
    ("/opt", "install_dir of demo must be a directory of its own, not the system directory /opt (for example "
     "/opt/demo)"),
    ("/etc", "install_dir of demo must be a directory of its own, not the system directory /etc (for example "
     "/etc/demo)"),
    ("/../..", "install_dir of demo must not contain '..', got '/../..'"),
    ("/opt/demo/../../etc", "install_dir of demo must not contain '..', got '/opt/demo/../../etc'"),
    ("opt/demo", "install_dir of demo must be an absolute path, got 'opt/demo'"),
    ("/opt//demo/", "install_dir of demo must be a normalised path (/opt/demo), got '/opt//demo/'"),
    ("/opt/./demo", "install_dir of demo must be a normalised path (/opt/demo), got '/opt/./demo'"),
])
def test_install_dir_must_be_a_normalised_directory_of_the_packages_own(tmp_path, install_dir, problem):
    src = write_source(tmp_path, name="demo", extra_spec="install_dir: %s\n" % install_dir)
    if problem is None:
        assert build(src, str(tmp_path / "out"))["manifest"]["install_dir"] == install_dir
        return
    with pytest.raises(_artifact.ArtifactError) as info:
        build(src, str(tmp_path / "out"))
    assert str(info.value) == "Invalid package.yml in %s: %s" % (src, problem)
    assert not (tmp_path / "out").exists() or os.listdir(str(tmp_path / "out")) == []


@pytest.mark.parametrize("install_dir,problem", [
    ("/../..", "install_dir of evil must not contain '..', got '/../..'"),
    ("/usr", "install_dir of evil must be a directory of its own, not the system directory /usr (for example "
     "/usr/evil)"),
])
def test_a_manifest_with_an_unusable_install_dir_is_refused(tmp_path, install_dir, problem):
    archive = hostile_archive(str(tmp_path / "evil.esdpkg"), [])
    rewritten = str(tmp_path / "rewritten.esdpkg")
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("MANIFEST.json").read().decode("utf-8"))
    manifest["install_dir"] = install_dir
    data = json.dumps(manifest).encode()
    with tarfile.open(rewritten, "w:gz") as tar:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(_artifact.ArtifactError) as info:
        _artifact.read_manifest(rewritten)
    assert str(info.value) == "%s manifest: %s" % (rewritten, problem)
