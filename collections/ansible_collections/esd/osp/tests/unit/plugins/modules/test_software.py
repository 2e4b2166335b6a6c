# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esd.osp.software's inventory option: the host's whole inventory before and after, on success and failure."""

from __future__ import annotations

import errno
import os

import pytest
import yaml

from ansible_collections.esd.osp.plugins.module_utils import _artifact, _transaction
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


def test_a_rollback_left_unhealthy_is_a_changed_failure_not_a_reverted_one(tmp_path, capsys):
    root = str(tmp_path / "host")
    health = 'test ! -e "$ESD_ROOT/broken" || exit 3'
    first, second = artifact(tmp_path, "payroll-agent", "2.4.0", health), artifact(tmp_path, "payroll-agent", "2.4.1", health)
    for art in (first, second):
        assert run(capsys, name="payroll-agent", version=art["version"], src=art["path"], sha256=art["sha256"],
                   root=root)["rc"] == 0
    (tmp_path / "host" / "broken").write_text("")
    result = run(capsys, name="payroll-agent", state="rolled_back", root=root)
    assert (result["rc"], result["phase"], result["reverted"], result["changed"]) == (1, "rollback_health_check", False, True)
    assert result["msg"] == ("Rolled back payroll-agent 2.4.1 to 2.4.0, but then 2.4.0 failed its health check (health "
                             "check exited 3): 2.4.0 is active and unhealthy, and 2.4.1 is no longer installed")


def test_a_second_rollback_reports_why_nothing_changed_in_check_mode_too(tmp_path, capsys):
    root = str(tmp_path / "host")
    first, second = artifact(tmp_path, "payroll-agent", "2.4.0"), artifact(tmp_path, "payroll-agent", "2.4.1")
    for art in (first, second):
        run(capsys, name="payroll-agent", version=art["version"], src=art["path"], sha256=art["sha256"], root=root)
    assert run(capsys, name="payroll-agent", state="rolled_back", root=root)["changed"] is True
    checked = run(capsys, name="payroll-agent", state="rolled_back", root=root, _ansible_check_mode=True)
    real = run(capsys, name="payroll-agent", state="rolled_back", root=root)
    for result in (checked, real):
        assert (result["rc"], result["changed"], result["active"]) == (0, False, "2.4.0")
        assert result["msg"].startswith("Nothing to roll back: payroll-agent was rolled back from 2.4.1 to 2.4.0 on ")


def test_a_url_without_sha256_fails_the_same_in_check_mode(tmp_path, capsys):
    url = "http://depot-01.example.com/blobs/payroll-agent-2.4.1.esdpkg"
    results = [run(capsys, name="payroll-agent", version="2.4.1", src=url, root=str(tmp_path / "host"),
                   _ansible_check_mode=check_mode) for check_mode in (True, False)]
    for result in results:
        assert (result["rc"], result["phase"], result["changed"]) == (1, "arguments", False)
        assert result["msg"] == "sha256 is required when src is a URL (%s)" % url


@pytest.mark.parametrize("install_dir,problem", [
    ("/", "install_dir of payroll-agent must be a directory of its own, not the system directory / (for example "
     "/opt/esd/payroll-agent)"),
    ("/usr/local", "install_dir of payroll-agent must be a directory of its own, not the system directory /usr/local "
     "(for example /usr/local/payroll-agent)"),
    ("/opt/../..", "install_dir of payroll-agent must not contain '..', got '/opt/../..'"),
])
def test_an_unusable_install_dir_argument_is_refused_before_anything_is_written(tmp_path, capsys, install_dir, problem):
    art = artifact(tmp_path, "payroll-agent", "2.4.0")
    root = tmp_path / "host"
    root.mkdir()
    for check_mode in (True, False):
        result = run(capsys, name="payroll-agent", version="2.4.0", src=art["path"], sha256=art["sha256"],
                     root=str(root), install_dir=install_dir, _ansible_check_mode=check_mode)
        assert (result["rc"], result["phase"], result["changed"]) == (1, "arguments", False)
        assert result["msg"] == "Invalid arguments for payroll-agent: %s" % problem
    assert os.listdir(str(root)) == []


def fail_the_second_state_write(monkeypatch):
    """Make the second state write of the run fail with ENOSPC: the install is recorded, the activation is not."""
    real, calls = _transaction.write_json_atomic, []

    def write(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(_transaction, "write_json_atomic", write)


def test_an_io_error_after_the_host_changed_is_reported_as_changed(tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "host")
    art = artifact(tmp_path, "payroll-agent", "2.4.0")
    fail_the_second_state_write(monkeypatch)
    result = run(capsys, name="payroll-agent", version="2.4.0", src=art["path"], sha256=art["sha256"], root=root)
    assert (result["rc"], result["phase"], result["changed"], result["reverted"]) == (1, "io", True, False)
    assert result["msg"] == ("Failed to manage payroll-agent under %s: [Errno 28] No space left on device (the host "
                             "was changed before the error)" % root)
    # what it changed: the release unpacked and recorded, the current link switched
    assert os.readlink(os.path.join(root, "opt/esd/payroll-agent/current")) == "releases/2.4.0"


def test_an_io_error_before_anything_changed_is_reported_as_unchanged(tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "host")
    art = artifact(tmp_path, "payroll-agent", "2.4.0")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_artifact, "extract_release", no_space)
    result = run(capsys, name="payroll-agent", version="2.4.0", src=art["path"], sha256=art["sha256"], root=root,
                 state="present")
    assert (result["rc"], result["phase"], result["changed"]) == (1, "unpack", False)
    monkeypatch.undo()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setattr(_transaction.SoftwareManager, "_ensure_present", no_space)
    result = run(capsys, name="payroll-agent", version="2.4.0", src=art["path"], sha256=art["sha256"], root=root,
                 state="present")
    assert (result["rc"], result["phase"], result["changed"]) == (1, "io", False)
    assert result["msg"] == "Failed to manage payroll-agent under %s: [Errno 28] No space left on device" % root


def documented(text):
    return yaml.safe_load(text) or {}


def test_the_documentation_matches_the_argument_spec_and_the_returned_keys(tmp_path, capsys, monkeypatch):
    specs = []
    real = software.AnsibleModule

    def spy(**kwargs):
        specs.append(kwargs["argument_spec"])
        return real(**kwargs)
    monkeypatch.setattr(software, "AnsibleModule", spy)

    options = documented(software.DOCUMENTATION)["options"]
    returns = documented(software.RETURN)
    root = str(tmp_path / "host")
    good, bad = artifact(tmp_path, "payroll-agent", "2.4.0"), artifact(tmp_path, "payroll-agent", "2.5.0", "exit 3")
    success = run(capsys, name="payroll-agent", version="2.4.0", src=good["path"], sha256=good["sha256"], root=root,
                  inventory=True)
    failure = run(capsys, name="payroll-agent", version="2.5.0", src=bad["path"], sha256=bad["sha256"], root=root)
    refused = run(capsys, name="payroll-agent", version="2.4.0", root=root, install_dir="/usr")

    spec = specs[0]
    assert sorted(options) == sorted(spec)
    for name, option in options.items():
        for field in ("type", "default", "choices", "required", "elements"):
            assert option.get(field) == spec[name].get(field), (name, field)
    standard = {"changed", "failed", "invocation", "rc", "diff"}
    for result in (success, failure, refused):
        assert set(result) - standard <= set(returns), set(result) - standard - set(returns)
    for key, doc in returns.items():
        if doc["returned"] == "success":
            assert key in success, key
        if doc["returned"] == "failure":
            assert key in failure and key in refused, key
