# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Media on small files, written and read back with the real xorriso (Debian package xorriso)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _media

pytestmark = pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")


@pytest.fixture
def files(tmp_path):
    made = []
    for name, version in (("alpha", "1.0.0"), ("beta", "2.1.0")):
        path = tmp_path / ("%s-%s.esdpkg" % (name, version))
        path.write_bytes(("%s %s payload\n" % (name, version)).encode() * 100)
        made.append({"src": str(path), "path": "packages/" + path.name, "kind": "package", "name": name,
                     "version": version})
    return made


def build(tmp_path, files, dest="media", **kwargs):
    return _media.build_media(str(tmp_path / dest), "tools-2026q2", "1", "packages", files, "carol", 1700000000, **kwargs)


def test_build_and_verify(tmp_path, files):
    result = build(tmp_path, files)
    assert result["changed"] and result["volume_id"] == "TOOLS_2026Q2_1"
    assert open(result["checksums"]).read() == "%s  tools-2026q2-1.iso\n" % result["sha256"]
    listing = _media.list_media(result["path"])
    assert [f["path"] for f in listing] == [
        "MEDIA.json", "README.txt", "SHA256SUMS", "packages/alpha-1.0.0.esdpkg", "packages/beta-2.1.0.esdpkg"]
    assert listing[3]["size"] == os.path.getsize(files[0]["src"])
    verified = _media.verify_media(result["path"], result["sha256"])
    assert verified["valid"] and verified["md5_check"] == "match" and verified["problems"] == []
    assert verified["manifest"]["files"][0] == dict((k, v) for k, v in files[0].items() if k != "src") | {
        "size": os.path.getsize(files[0]["src"]), "sha256": _media.sha256_file(files[0]["src"])}
    # the originals are untouched (the ISO was staged from copies)
    assert oct(os.stat(files[0]["src"]).st_mode & 0o777) == "0o644"


def test_build_is_reproducible_and_idempotent(tmp_path, files):
    first = build(tmp_path, files)
    assert build(tmp_path, files, dest="elsewhere")["sha256"] == first["sha256"]
    assert build(tmp_path, files)["changed"] is False


def test_a_medium_never_gets_a_second_content(tmp_path, files):
    build(tmp_path, files)
    with pytest.raises(_media.MediaError, match="must never have two contents"):
        build(tmp_path, files[:1])
    assert build(tmp_path, files[:1], force=True)["changed"]


def test_extract_and_verify_tree(tmp_path, files):
    result = build(tmp_path, files)
    target = str(tmp_path / "unpacked")
    verified = _media.verify_media(result["path"], extract_to=target)
    assert verified["extracted_to"] == target
    assert open(os.path.join(target, "packages/beta-2.1.0.esdpkg"), "rb").read() == open(files[1]["src"], "rb").read()
    with open(os.path.join(target, "packages/beta-2.1.0.esdpkg"), "ab") as handle:
        handle.write(b"tampered")
    manifest, problems = _media.verify_tree(target)
    assert problems == ["packages/beta-2.1.0.esdpkg does not match its sha256 in SHA256SUMS"]
    open(os.path.join(target, "stowaway"), "w").close()
    assert "files on the medium that no checksum covers: stowaway" in _media.verify_tree(target)[1]


def test_damaged_iso_fails_the_md5_check(tmp_path, files):
    result = build(tmp_path, files)
    with open(result["path"], "r+b") as handle:
        data = handle.read()
        handle.seek(data.index(b"alpha 1.0.0 payload"))
        handle.write(b"ALPHA")
    verified = _media.verify_media(result["path"], result["sha256"])
    assert not verified["valid"] and verified["md5_check"] == "mismatch"
    assert any("expected %s" % result["sha256"] in p for p in verified["problems"])


def test_bad_requests(tmp_path, files):
    with pytest.raises(_media.MediaError, match="media name must be"):
        _media.build_media(str(tmp_path), "Bad Name", "1", "packages", files, "carol", 0)
    with pytest.raises(_media.MediaError, match="two files would be packages/alpha-1.0.0.esdpkg"):
        build(tmp_path, files + files[:1])
    with pytest.raises(_media.MediaError, match="does not exist"):
        build(tmp_path, [{"src": str(tmp_path / "missing"), "path": "packages/missing"}])
    with pytest.raises(_media.MediaError, match="must be relative without '..'"):
        build(tmp_path, [dict(files[0], path="../escape")])
    predicted = build(tmp_path, files, dest="never", check_mode=True)
    assert predicted["changed"] and not os.path.exists(str(tmp_path / "never"))
    assert json.loads(json.dumps(predicted["manifest"]))["kind"] == "packages"
