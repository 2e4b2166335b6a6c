# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.scan's logic against the real clamscan, with a signature database made here (no internet)."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from ansible_collections.esd.osp.plugins.module_utils._scan import ScanError, database_digest, engine_version, scan

# The EICAR anti-virus test string, assembled at run time so this file itself is not a test virus.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


@pytest.fixture
def database(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "test.hdb").write_text("%s:%d:Esd-Test-Eicar\n" % (hashlib.md5(EICAR).hexdigest(), len(EICAR)))
    return str(db)


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "payload" / "bin").mkdir(parents=True)
    (src / "payload" / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    return src


def test_clean_tree_passes(tree, database):
    result = scan(str(tree), database=database)
    assert result["infected"] == [] and result["engine"].startswith("ClamAV ")


def test_detection_names_file_and_signature(tree, database):
    (tree / "payload" / "eicar.com").write_bytes(EICAR)
    with pytest.raises(ScanError) as info:
        scan(str(tree), database=database)
    infected = str(tree / "payload" / "eicar.com")
    assert info.value.msg == "Virus scan of %s found 1 infected file(s): %s (Esd-Test-Eicar.UNOFFICIAL)" % (tree, infected)
    assert info.value.infected == [{"path": infected, "signature": "Esd-Test-Eicar.UNOFFICIAL"}]


def test_detection_inside_an_archive(tmp_path, tree, database):
    (tree / "payload" / "eicar.com").write_bytes(EICAR)
    archive = shutil.make_archive(str(tmp_path / "bundle"), "gztar", str(tree))
    with pytest.raises(ScanError, match="found 1 infected file"):
        scan(archive, database=database)


def test_missing_database_is_an_error_not_a_pass(tree, tmp_path):
    with pytest.raises(ScanError, match="signature database %s does not exist" % (tmp_path / "nope")):
        scan(str(tree), database=str(tmp_path / "nope"))


def test_empty_database_directory_cannot_scan(tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScanError, match=r"could not run \(clamscan exited 2\)"):
        scan(str(tree), database=str(empty))


def test_missing_clamscan(tree, database):
    with pytest.raises(ScanError, match="install the clamav package"):
        scan(str(tree), clamscan="/nonexistent/clamscan", database=database)


def test_the_database_is_named_by_its_signatures_not_its_path(tree, database, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    first = scan(str(tree), database=database)
    second = scan(str(tmp_path / "elsewhere" / ".." / "src"), database=str(tmp_path / "elsewhere" / ".." / "db") + "/")
    assert first["database_sha256"] == second["database_sha256"] == database_digest(database)
    assert first["engine"] == second["engine"] and "/" not in first["engine"]
    (tmp_path / "db" / "freshclam.dat").write_bytes(b"freshclam's bookkeeping, rewritten on every update")
    assert database_digest(database) == first["database_sha256"]
    (tmp_path / "db" / "more.hdb").write_text("%s:4:Esd-Other\n" % ("1" * 32))
    assert database_digest(database) != first["database_sha256"]


def test_engine_version_drops_the_default_databases_version_and_date():
    assert engine_version("ClamAV 1.4.6/27400/Mon Sep  9 08:21:35 2026\n") == "ClamAV 1.4.6"
    assert engine_version("ClamAV 1.4.6") == "ClamAV 1.4.6"
