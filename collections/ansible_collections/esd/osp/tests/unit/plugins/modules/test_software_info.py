# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.software_info: the per-host software inventory (what is installed, active, backed up, committed)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.esd.osp.plugins.modules import software, software_info
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, run_module, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def artifact(tmp_path, name, version):
    return build(write_source(tmp_path / ("%s-%s" % (name, version)), name=name, version=version),
                 str(tmp_path / "out"))


def apply(capsys, root, package, state):
    result = run_module(software, capsys, name=package["name"], version=package["version"], src=package["path"],
                        sha256=package["sha256"], state=state, root=root)
    assert result["rc"] == 0, result


@pytest.fixture
def host(tmp_path, capsys):
    """A host with payroll-agent 2.4.0 committed then updated to 2.4.1 (backup 2.4.0), and tools 1.0 staged."""
    root = str(tmp_path / "host")
    first, second = artifact(tmp_path, "payroll-agent", "2.4.0"), artifact(tmp_path, "payroll-agent", "2.4.1")
    apply(capsys, root, first, "committed")
    apply(capsys, root, second, "active")
    apply(capsys, root, artifact(tmp_path, "tools", "1.0"), "present")
    return root, first, second


def test_reports_every_package_with_its_state(host, capsys):
    root, first, second = host
    result = run_module(software_info, capsys, root=root)
    assert result["rc"] == 0 and result["changed"] is False
    packages = {p["name"]: p for p in result["packages"]}
    assert sorted(packages) == ["payroll-agent", "tools"]
    payroll = packages["payroll-agent"]
    assert (payroll["active"], payroll["committed"], payroll["backups"], payroll["status"]) == (
        "2.4.1", "2.4.0", ["2.4.0"], "uncommitted")
    assert sorted(payroll["installed"]) == ["2.4.0", "2.4.1"]
    assert payroll["digests"] == {"2.4.0": first["sha256"], "2.4.1": second["sha256"]}
    assert payroll["last_change"]["action"] == "activate" and payroll["last_change"]["version"] == "2.4.1"
    assert "history" not in payroll
    tools = packages["tools"]
    assert (tools["active"], tools["installed"], tools["status"]) == (None, ["1.0"], "staged")


def test_names_filter_and_history(host, capsys):
    root = host[0]
    result = run_module(software_info, capsys, root=root, name=["payroll-agent"], history=True)
    assert [p["name"] for p in result["packages"]] == ["payroll-agent"]
    actions = [(entry["action"], entry["version"]) for entry in result["packages"][0]["history"]]
    assert actions[0] == ("install", "2.4.0") and actions[-1] == ("activate", "2.4.1")
    assert ("commit", "2.4.0") in actions


def test_a_host_without_esd_software_has_an_empty_inventory_and_nothing_is_created(tmp_path, capsys):
    root = str(tmp_path / "bare")
    os.makedirs(root)
    result = run_module(software_info, capsys, root=root, _ansible_check_mode=True)
    assert (result["rc"], result["changed"], result["packages"]) == (0, False, [])
    assert os.listdir(root) == []
