# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image build logic on small hand-made root filesystems (the real debootstrap build is an integration test)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap

import pytest
import yaml

from ansible_collections.esd.osp.plugins.module_utils import _image, _sbom

EPOCH = 1700000000
STATUS = """Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u15

Package: tree
Status: install ok installed
Architecture: amd64
Version: 2.1.0-1

"""


def write(path, content="", mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(content)
    os.chmod(path, mode)
    return path


def make_spec(tmp_path, extra="", tests=True):
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "image.yml").write_text(textwrap.dedent("""\
        family: demo-server
        version: "1.0.0"
        description: a test image
        packages: [python3, openssh-server]
        roles: [standard_tools, os_hardening]
        update:
          packages: [tree]
        """) + extra)
    (spec_dir / "vars.yml").write_text("standard_tools_packages: [less]\n")
    if tests:
        (spec_dir / "tests").mkdir()
        (spec_dir / "tests" / "test_image.py").write_text("def test_nothing():\n    pass\n")
    return str(spec_dir)


def make_rootfs(tmp_path, name="rootfs"):
    root = str(tmp_path / name)
    write(os.path.join(root, "etc/os-release"), 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
                                                'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    write(os.path.join(root, "var/lib/dpkg/status"), STATUS)
    write(os.path.join(root, "usr/bin/tool"), "#!/bin/sh\necho tool\n", 0o755)
    os.link(os.path.join(root, "usr/bin/tool"), os.path.join(root, "usr/bin/tool-alias"))
    os.symlink("tool", os.path.join(root, "usr/bin/tool-link"))
    write(os.path.join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o640)
    write(os.path.join(root, "dev/console-leftover"), "x")
    write(os.path.join(root, "proc/should-not-be-packed"), "x")
    os.makedirs(os.path.join(root, "tmp"))
    write(os.path.join(root, "var/lib/esd/hardening/report.json"), json.dumps({
        "format": "esd.osp/hardening-report/v1", "role": "os_hardening", "profile": "test",
        "checks": [{"id": "ssh.permitrootlogin", "title": "sshd PermitRootLogin no", "passed": True, "detail": ""}]}))
    return root


def make_state(rootfs, family="demo-server", version="1.0.0", spec=None, **extra):
    state = {"format": "esd.osp/image-build/v1", "key": "k", "family": family, "version": version,
             "method": "debootstrap", "mirror": "http://deb.example/debian", "architecture": "amd64",
             "spec": (spec or {}).get("path"), "spec_sha256": (spec or {}).get("sha256"), "parent": None,
             "debootstrap": {"suite": "bookworm", "variant": "minbase"}, "apt": [], "source_date_epoch": EPOCH}
    state.update(extra)
    _image.write_atomic(_image.state_path(rootfs), _image.canonical_json(state))
    return state


# --- spec -----------------------------------------------------------------------------------------

def test_spec_is_read_and_normalised(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    assert spec["family"] == "demo-server" and spec["version"] == "1.0.0"
    assert spec["suite"] == "bookworm" and spec["variant"] == "minbase" and spec["components"] == ["main"]
    assert spec["roles"] == ["standard_tools", "os_hardening"]
    assert spec["update"] == {"upgrade": True, "packages": ["tree"], "remove_packages": []}
    assert spec["vars"].endswith("vars.yml") and spec["tests"].endswith("tests")
    assert spec["apt_sources"] == list(_image.DEFAULT_APT_SOURCES)


def test_spec_digest_covers_vars_and_test_plan(tmp_path):
    spec_dir = make_spec(tmp_path)
    before = _image.load_spec(spec_dir, yaml.safe_load)["sha256"]
    with open(os.path.join(spec_dir, "tests", "test_image.py"), "a") as handle:
        handle.write("# changed\n")
    assert _image.load_spec(spec_dir, yaml.safe_load)["sha256"] != before


def test_spec_problems_are_reported_together(tmp_path):
    spec_dir = tmp_path / "bad"
    spec_dir.mkdir()
    (spec_dir / "image.yml").write_text(textwrap.dedent("""\
        family: Bad Family
        variant: tiny
        packages: ["ok-pkg", "Not A Package"]
        colour: blue
        update: {upgrade: true, downgrade: true}
        tests: ../elsewhere
        """))
    with pytest.raises(_image.ImageError) as caught:
        _image.load_spec(str(spec_dir), yaml.safe_load)
    message = str(caught.value)
    for expected in ("unknown key(s) colour", "family must be", "variant must be one of minbase, buildd, default",
                     "'Not A Package' is not a Debian package name", "update: unknown key(s) downgrade",
                     "tests must be a path relative"):
        assert expected in message


def test_missing_spec_and_bad_yaml(tmp_path):
    with pytest.raises(_image.ImageError, match="no image spec at"):
        _image.load_spec(str(tmp_path / "nothing"), yaml.safe_load)
    (tmp_path / "image.yml").write_text("family: [unclosed\n")
    with pytest.raises(_image.ImageError, match="is not valid YAML"):
        _image.load_spec(str(tmp_path / "image.yml"), yaml.safe_load)


# --- mirrors, mounts ------------------------------------------------------------------------------

def test_host_mirror_from_deb822_and_one_line_sources(tmp_path):
    deb822 = write(str(tmp_path / "debian.sources"), textwrap.dedent("""\
        Types: deb
        URIs: http://mirror.example/debian/
        Suites: bookworm bookworm-updates
        Components: main

        Types: deb
        URIs: http://security.example/debian-security
        Suites: bookworm-security
        """))
    assert _image.host_mirror("bookworm", (deb822,)) == "http://mirror.example/debian"
    one_line = write(str(tmp_path / "sources.list"), "# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert _image.host_mirror("bookworm", (str(tmp_path / "missing"), one_line)) == "http://other.example/debian"
    assert _image.host_mirror("bookworm", ()) == _image.DEFAULT_MIRROR


def test_mounts_below_reads_mountinfo(tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(root)
    info = write(str(tmp_path / "mountinfo"), "\n".join([
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw",
        "40 22 0:5 / %s/proc rw - proc proc rw" % root,
        "41 40 0:6 / %s/proc/sys\\040x rw - proc proc rw" % root,
        "42 22 0:7 / %s-other rw - tmpfs tmpfs rw" % root]) + "\n")
    assert _image.mounts_below(root, info) == [root + "/proc/sys x", root + "/proc"]


def test_sources_are_expanded():
    lines = _image.expand_sources(list(_image.DEFAULT_APT_SOURCES), "http://m/debian", "bookworm", ["main", "contrib"])
    assert lines == ["deb http://m/debian bookworm main contrib", "deb http://m/debian bookworm-updates main contrib",
                     "deb http://deb.debian.org/debian-security bookworm-security main contrib"]
    assert _image.sources_suites(lines)[2] == ("http://deb.debian.org/debian-security", "bookworm-security")


# --- finalise -------------------------------------------------------------------------------------

def test_finalise_removes_build_traces_and_host_identity(tmp_path):
    root = str(tmp_path / "root")
    write(os.path.join(root, "var/cache/apt/archives/tree_2.1.0-1_amd64.deb"), "deb")
    write(os.path.join(root, "var/cache/apt/pkgcache.bin"), "bin")
    write(os.path.join(root, "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"), "x")
    write(os.path.join(root, "var/lib/apt/lists/lock"), "")
    write(os.path.join(root, "etc/ssh/ssh_host_ed25519_key"), "secret", 0o600)
    write(os.path.join(root, "etc/ssh/ssh_config"), "keep me")
    write(os.path.join(root, "etc/machine-id"), "0123456789abcdef0123456789abcdef\n")
    write(os.path.join(root, "etc/hostname"), "buildhost\n")
    write(os.path.join(root, "etc/resolv.conf"), "nameserver 10.0.0.1\n")
    write(os.path.join(root, "var/log/dpkg.log"), "installed things\n")
    write(os.path.join(root, "var/log/apt/history.log.1.gz"), "old")
    write(os.path.join(root, "tmp/leftover"), "x")
    write(os.path.join(root, "root/.ansible/tmp/x"), "x")
    actions = _image.finalise(root)
    assert "remove SSH host keys (1 file(s))" in actions and "reset machine-id" in actions
    assert not os.path.exists(os.path.join(root, "var/cache/apt/archives/tree_2.1.0-1_amd64.deb"))
    assert os.listdir(os.path.join(root, "var/lib/apt/lists")) == ["lock"]
    assert open(os.path.join(root, "etc/ssh/ssh_config")).read() == "keep me"
    assert open(os.path.join(root, "etc/machine-id")).read() == ""
    assert open(os.path.join(root, "etc/hostname")).read() == "localhost\n"
    assert open(os.path.join(root, "etc/resolv.conf")).read() == ""
    assert open(os.path.join(root, "var/log/dpkg.log")).read() == ""
    assert not os.path.exists(os.path.join(root, "var/log/apt/history.log.1.gz"))
    assert os.listdir(os.path.join(root, "tmp")) == [] and not os.path.exists(os.path.join(root, "root/.ansible"))
    assert _image.finalise(root) == []  # idempotent


def test_firstboot_is_installed_once(tmp_path):
    root = str(tmp_path / "root")
    write(os.path.join(root, "bin/systemctl"), "", 0o755)
    actions = _image.install_firstboot(root)
    assert "install /usr/lib/esd/firstboot" in actions and "enable esd-firstboot.service" in actions
    assert os.access(os.path.join(root, "usr/lib/esd/firstboot"), os.X_OK)
    assert os.readlink(os.path.join(root, "etc/systemd/system/multi-user.target.wants/esd-firstboot.service")) \
        == "/etc/systemd/system/esd-firstboot.service"
    assert _image.install_firstboot(root) == []


# --- the archive ----------------------------------------------------------------------------------

def pack(root):
    buffer = io.BytesIO()
    _image.write_archive(root, buffer, EPOCH)
    return buffer.getvalue()


def test_archive_is_reproducible_and_keeps_what_a_rootfs_needs(tmp_path):
    root = make_rootfs(tmp_path)
    os.utime(os.path.join(root, "usr/bin/tool"), (EPOCH - 1000, EPOCH - 1000))  # older than the source date: kept
    if os.geteuid() == 0:
        os.chown(os.path.join(root, "etc/shadow"), 0, 42)
    first = pack(root)
    os.utime(os.path.join(root, "etc/os-release"), None)  # touched now: clamped to the source date, same bytes
    assert pack(root) == first
    assert first[4:8] == b"\0\0\0\0"  # no gzip timestamp
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    by_name = dict((m.name, m) for m in members)
    assert "dev/console-leftover" not in by_name and "proc/should-not-be-packed" not in by_name
    assert by_name["dev"].isdir() and by_name["proc"].mode == 0o555 and by_name["tmp"].mode == 0o1777
    assert by_name["usr/bin/tool"].mtime == EPOCH - 1000
    assert by_name["etc/os-release"].mtime == EPOCH
    assert by_name["usr/bin/tool"].mode == 0o755 and by_name["etc/shadow"].mode == 0o640
    assert by_name["usr/bin/tool-alias"].islnk() and by_name["usr/bin/tool-alias"].linkname == "usr/bin/tool"
    assert by_name["usr/bin/tool-link"].issym() and by_name["usr/bin/tool-link"].linkname == "tool"
    assert all(m.uname == "" and m.gname == "" for m in members)
    if os.geteuid() == 0:
        assert by_name["etc/shadow"].gid == 42  # real owners are kept


def test_xattrs_such_as_file_capabilities_are_kept(tmp_path):
    root = make_rootfs(tmp_path)
    target = os.path.join(root, "usr/bin/tool")
    try:
        os.setxattr(target, "user.esd-test", b"\x01\x00\xff")
    except OSError:
        pytest.skip("this filesystem takes no user xattrs")
    with tarfile.open(fileobj=io.BytesIO(pack(root)), mode="r:gz") as tar:
        member = tar.getmember("usr/bin/tool")
    assert member.pax_headers["SCHILY.xattr.user.esd-test"].encode("utf-8", "surrogateescape") == b"\x01\x00\xff"


# --- pack_image and the artifact -------------------------------------------------------------------

def test_pack_image_writes_the_artifact_files(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    make_state(root, spec=spec)
    dest = str(tmp_path / "out")
    result = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice", keep_rootfs=True)
    assert result["changed"] and result["path"] == os.path.join(dest, "demo-server-1.0.0.rootfs.tar.gz")
    manifest = result["manifest"]
    assert manifest["family"] == "demo-server" and manifest["build"]["builder"] == "alice"
    assert manifest["os"]["version_id"] == "12" and manifest["packages"]["count"] == 2
    assert manifest["hardening"]["passed"] == 1 and manifest["hardening"]["failed"] == 0
    assert manifest["test_plan"]["files"] == ["test_image.py"]
    assert manifest["archive"]["sha256"] == result["sha256"]
    assert _image.verify_sums(result["checksums"]) == (3, [])
    embedded = _image.read_embedded(result["path"], (_image.EMBEDDED_MANIFEST, _image.EMBEDDED_SBOM,
                                                     _image.EMBEDDED_TESTS + "/test_image.py"))
    assert json.loads(embedded[_image.EMBEDDED_MANIFEST]) == dict((k, v) for k, v in manifest.items() if k != "archive")
    sbom = json.loads(embedded[_image.EMBEDDED_SBOM])
    assert _sbom.validate_sbom(sbom) == [] and len(sbom["components"]) == 3
    # the same tree packs to the same archive: nothing changes the second time
    again = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice", keep_rootfs=True)
    assert again["changed"] is False and again["sha256"] == result["sha256"]
    info, problems = _image.validate_artifact(result["path"], result["sha256"], "demo-server", "1.0.0")
    assert problems == [] and info["packages"] == 2


def test_a_version_never_gets_a_second_content(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    make_state(root, spec=spec)
    dest = str(tmp_path / "out")
    first = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice", keep_rootfs=True)
    write(os.path.join(root, "usr/bin/new-tool"), "new")
    with pytest.raises(_image.ImageError, match="an image version must never have two contents"):
        _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice", keep_rootfs=True)
    forced = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice", keep_rootfs=True, force=True)
    assert forced["changed"] and forced["sha256"] != first["sha256"]


def test_pack_removes_the_work_tree_and_a_rerun_reuses_the_artifact(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    make_state(root, spec=spec)
    dest = str(tmp_path / "out")
    result = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice")
    assert not os.path.exists(root) and not os.path.exists(_image.state_path(root))
    again = _image.pack_image(spec, root, dest, "demo-server", "1.0.0", "alice")
    assert again["changed"] is False and again["sha256"] == result["sha256"]
    predicted = _image.pack_image(spec, root, str(tmp_path / "elsewhere"), "demo-server", "1.0.0", "alice", check_mode=True)
    assert predicted["changed"] is True and not os.path.exists(str(tmp_path / "elsewhere"))


def test_update_records_parent_and_sbom_diff(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    parent_sbom = _sbom.build_sbom({"family": "demo-server", "version": "1.0.0"},
                                   [{"name": "base-files", "version": "12.4+deb12u14", "architecture": "amd64"}],
                                   [], {"ID": "debian", "VERSION_ID": "12"}, EPOCH)
    make_state(root, version="1.1.0", spec=spec, method="derived",
               parent={"family": "demo-server", "version": "1.0.0", "sha256": "ab" * 32}, parent_sbom=parent_sbom)
    result = _image.pack_image(spec, root, str(tmp_path / "out"), "demo-server", "1.1.0", "alice")
    assert result["manifest"]["parent"] == {"family": "demo-server", "version": "1.0.0", "sha256": "ab" * 32}
    diff = result["sbom_diff"]
    assert diff["added"] == [{"name": "tree", "version": "2.1.0-1"}]
    assert diff["changed"] == [{"name": "base-files", "from": "12.4+deb12u14", "to": "12.4+deb12u15"}]
    assert json.load(open(result["sbom_diff_path"])) == diff
    assert _image.verify_sums(result["checksums"]) == (4, [])


def test_embedded_metadata_is_found_without_the_sidecars(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    make_state(root, spec=spec)
    result = _image.pack_image(spec, root, str(tmp_path / "out"), "demo-server", "1.0.0", "alice")
    for key in ("manifest_path", "sbom", "checksums"):
        os.unlink(result[key])
    manifest, sbom = _image.read_image_metadata(result["path"])
    assert manifest["version"] == "1.0.0" and "archive" not in manifest
    assert sbom["metadata"]["component"]["name"] == "demo-server"


def test_validation_finds_tampering(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    make_state(root, spec=spec)
    result = _image.pack_image(spec, root, str(tmp_path / "out"), "demo-server", "1.0.0", "alice")
    manifest = json.load(open(result["manifest_path"]))
    manifest["packages"]["count"] = 99
    with open(result["manifest_path"], "w") as handle:
        json.dump(manifest, handle)
    info, problems = _image.validate_artifact(result["path"], "0" * 64, "demo-server", "2.0.0")
    text = "; ".join(problems)
    assert "sha256 is %s, expected 0000" % result["sha256"] in text
    assert "the manifest says version 1.0.0, expected 2.0.0" in text
    assert "differs from the embedded one in: packages" in text
    assert "the SBOM lists 2 Debian packages, the manifest says 99" in text
    assert "debian12" not in text and "does not match its checksum" in text


def test_pack_refuses_a_tree_of_another_build(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path), yaml.safe_load)
    root = make_rootfs(tmp_path)
    with pytest.raises(_image.ImageError, match="was not made by esd.osp.image"):
        _image.pack_image(spec, root, str(tmp_path / "out"), "demo-server", "1.0.0", "alice")
    make_state(root, spec=spec, version="0.9")
    with pytest.raises(_image.ImageError, match="holds demo-server 0.9, not demo-server 1.0.0"):
        _image.pack_image(spec, root, str(tmp_path / "out"), "demo-server", "1.0.0", "alice")


def test_prepare_rootfs_in_check_mode_changes_nothing(tmp_path):
    spec = _image.load_spec(make_spec(tmp_path, extra="mirror: http://mirror.invalid/debian\n"), yaml.safe_load)
    rootfs = str(tmp_path / "work" / "rootfs")
    result = _image.prepare_rootfs(spec, rootfs, "demo-server", "1.0.0", check_mode=True)
    assert result["changed"] is True and result["method"] == "debootstrap"
    assert not os.path.exists(str(tmp_path / "work"))
    with pytest.raises(_image.ImageError, match="the base image .* does not exist"):
        _image.prepare_rootfs(spec, rootfs, "demo-server", "1.1.0", base=str(tmp_path / "nope.tar.gz"), check_mode=True)


def test_remove_rootfs_never_follows_links(tmp_path):
    outside = write(str(tmp_path / "outside" / "precious"), "keep")
    root = str(tmp_path / "rootfs")
    os.makedirs(root)
    os.symlink(os.path.dirname(outside), os.path.join(root, "link"))
    assert _image.remove_rootfs(root)[-1] == "remove %s" % root
    assert open(outside).read() == "keep"
    assert _image.remove_rootfs(root) == []
