# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.software's inventory option: the host's whole inventory before and after, on success and failure."""

from __future__ import annotations

import pytest

from ansible_collections.esd.osp.plugins.modules import software
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, run_module, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def run(capsys, **args):
    return run_module(software, capsys, **args)


def artifact(tmp_path, name, version, health="exit 0"):
    return build(write_source(tmp_path / ("%s-%s" % (name, version)), name=name, version=version, health=health),
                 str(tmp_path / "out"))


def view(inventory):
    return {package["name"]: (package["active"], package["committed"], package["status"]) for package in inventory}


def test_the_inventory_shows_every_package_before_and_after(tmp_path, capsys):
    root = str(tmp_path / "host")
    other = artifact(tmp_path, "other-agent", "3.0.0")
    assert run(capsys, name="other-agent", version="3.0.0", src=other["path"], sha256=other["sha256"],
               state="committed", root=root)["rc"] == 0
    first, second = artifact(tmp_path, "payroll-agent", "2.4.0"), artifact(tmp_path, "payroll-agent", "2.4.1")
    run(capsys, name="payroll-agent", version="2.4.0", src=first["path"], sha256=first["sha256"], state="committed",
        root=root)

    result = run(capsys, name="payroll-agent", version="2.4.1", src=second["path"], sha256=second["sha256"],
                 root=root, inventory=True)
    assert result["rc"] == 0 and result["changed"]
    assert view(result["inventory"]["before"]) == {"other-agent": ("3.0.0", "3.0.0", "committed"),
                                                   "payroll-agent": ("2.4.0", "2.4.0", "committed")}
    assert view(result["inventory"]["after"]) == {"other-agent": ("3.0.0", "3.0.0", "committed"),
                                                  "payroll-agent": ("2.4.1", "2.4.0", "uncommitted")}
    assert "error" not in result["inventory"]
    # Without the option the result carries no inventory (the default costs nothing).
    assert "inventory" not in run(capsys, name="payroll-agent", version="2.4.1", root=root)


def test_a_reverted_failure_reports_the_unchanged_inventory(tmp_path, capsys):
    root = str(tmp_path / "host")
    good, bad = artifact(tmp_path, "payroll-agent", "2.4.0"), artifact(tmp_path, "payroll-agent", "2.5.0", "exit 3")
    run(capsys, name="payroll-agent", version="2.4.0", src=good["path"], sha256=good["sha256"], state="committed",
        root=root)
    result = run(capsys, name="payroll-agent", version="2.5.0", src=bad["path"], sha256=bad["sha256"], root=root,
                 inventory=True)
    assert result["rc"] == 1 and result["phase"] == "health_check" and result["reverted"] is True
    assert view(result["inventory"]["before"]) == view(result["inventory"]["after"]) == {
        "payroll-agent": ("2.4.0", "2.4.0", "committed")}
    assert result["inventory"]["after"][0]["last_change"]["result"] == "reverted"


def test_a_refused_download_reports_the_inventory_it_left_alone(tmp_path, capsys):
    root = str(tmp_path / "host")
    result = run(capsys, name="payroll-agent", version="2.4.1", src=str(tmp_path / "missing.esdpkg"),
                 sha256="0" * 64, root=root, inventory=True)
    assert result["rc"] == 1 and result["phase"] in ("fetch", "verify")
    assert result["inventory"] == {"before": [], "after": []}
