# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.depot_channel failures, run as Ansible runs the module (its syncs: test_repository.py)."""

from __future__ import annotations

import pytest

from ansible_collections.esd.osp.plugins.modules import depot_channel
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import run_module


@pytest.mark.parametrize("args, doing", [
    ({"src": "file:///nonexistent/repository", "public_keys": ["ed25519:" + "A" * 43 + "="]},
     "sync the production channel to"),
    ({"state": "absent", "packages": ["payroll-agent=2.4.1"]}, "delete payroll-agent=2.4.1 from"),
])
def test_a_corrupt_depot_json_is_a_clear_failure_not_a_traceback(tmp_path, capsys, args, doing):
    depot = tmp_path / "depot"
    depot.mkdir()
    (depot / "depot.json").write_text('{"format": "esd.osp/depot/v1", "serial": 3, ')
    for check in (True, False):
        result = run_module(depot_channel, capsys, path=str(depot), _ansible_check_mode=check, **args)
        assert result["rc"] == 1 and result["failed"] and "exception" not in result
        assert result["msg"] == (
            "Failed to %s depot %s: depot state %s/depot.json is not valid JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 45 (char 44)" % (doing, depot, depot))
        assert result["path"] == str(depot)
    assert (depot / "depot.json").read_text() == '{"format": "esd.osp/depot/v1", "serial": 3, '
