# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.package (with esd.osp.scan's result, as the build_package role passes it) through the modules."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.esd.osp.plugins.modules import package, scan
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import run_module, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


@pytest.fixture
def database(tmp_path):
    db = tmp_path / "clamav"
    db.mkdir()
    (db / "test.hdb").write_text("%s:4:Esd-Test\n" % ("0" * 32))
    (db / "freshclam.dat").write_bytes(os.urandom(16))  # freshclam's bookkeeping: not a signature
    return str(db)


def test_the_same_tree_spelled_two_ways_builds_the_same_artifact(tmp_path, capsys, database):
    src = write_source(tmp_path)
    (tmp_path / "playbooks").mkdir()
    dest = str(tmp_path / "artifacts")
    spellings = [(src, database),  # $PWD/examples/... as in the README tour
                 (os.path.join(str(tmp_path), "playbooks", "..", os.path.basename(src)),  # playbooks/../examples/...
                  os.path.join(str(tmp_path), "playbooks", "..", "clamav"))]
    built = []
    for path, db in spellings:
        scanned = run_module(scan, capsys, path=path, database=db)
        assert scanned["rc"] == 0 and scanned["scan"]["path"] == path
        built.append(run_module(package, capsys, src=path, dest=dest, builder="bob", scan_result=scanned["scan"]))
    assert [result["rc"] for result in built] == [0, 0]
    assert built[0]["sha256"] == built[1]["sha256"]
    assert (built[0]["changed"], built[1]["changed"]) == (True, False)  # not refused as a second content
    evidence = built[1]["manifest"]["scan"]
    assert sorted(evidence) == ["clean", "database_sha256", "engine", "infected"]
    assert evidence["clean"] is True and evidence["database_sha256"] == scanned["scan"]["database_sha256"]


def test_check_mode_with_a_missing_dest_says_changed_and_writes_nothing(tmp_path, capsys):
    src = write_source(tmp_path)
    dest = tmp_path / "artifacts" / "new"
    predicted = run_module(package, capsys, src=src, dest=str(dest), builder="bob", _ansible_check_mode=True)
    assert (predicted["rc"], predicted["changed"]) == (0, True) and not (tmp_path / "artifacts").exists()
    real = run_module(package, capsys, src=src, dest=str(dest), builder="bob")
    assert (real["rc"], real["changed"], real["sha256"]) == (0, True, predicted["sha256"])
    assert os.listdir(str(dest)) == ["demo-1.0.0.esdpkg"]
    assert stat.S_IMODE(os.stat(real["path"]).st_mode) == 0o644
    again = run_module(package, capsys, src=src, dest=str(dest), builder="bob", _ansible_check_mode=True)
    assert (again["rc"], again["changed"]) == (0, False)
