# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository, repository_info, signing_key and depot_channel modules, run as Ansible runs them."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.esd.osp.plugins.modules import depot_channel, repository, repository_info, signing_key
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, run_module, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


run = run_module


@pytest.fixture
def env(tmp_path, capsys):
    keys = str(tmp_path / "keys")
    assert run(signing_key, capsys, path=keys)["changed"]
    artifact = build(write_source(tmp_path / "src", name="payroll-agent", version="2.4.1"), str(tmp_path / "out"))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"id": "TR-9", "name": "payroll-agent", "version": "2.4.1", "result": "passed"}))
    return {"repo": str(tmp_path / "repo"), "keys": keys, "artifact": artifact, "report": str(report)}


def four_steps(module, capsys, **args):
    """check -> apply -> check again -> apply again: changed, changed, unchanged, unchanged."""
    results = [run(module, capsys, _ansible_check_mode=check, _ansible_diff=True, **args)
               for check in (True, False, True, False)]
    assert [r["rc"] for r in results] == [0, 0, 0, 0], results
    assert [r["changed"] for r in results] == [True, True, False, False], results
    assert results[0]["actions"] == results[1]["actions"]
    assert results[0]["diff"]["after"] == results[1]["diff"]["after"]
    return results[1]


def test_add_and_promote_in_four_steps(env, capsys):
    added = four_steps(repository, capsys, path=env["repo"], src=env["artifact"]["path"], actor="bob")
    assert added["sha256"] == env["artifact"]["sha256"] and added["channels"] == {"build": ["2.4.1"], "test": [], "production": []}
    promoted = four_steps(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="test",
                          state="promoted", evidence="CO-7", actor="alice")
    assert promoted["entry"]["promoted_by"] == "alice" and promoted["entry"]["evidence"] == "CO-7"
    assert promoted["diff"]["before"] == "build: 2.4.1\ntest: -\nproduction: -\n"
    assert promoted["diff"]["after"] == "build: 2.4.1\ntest: 2.4.1\nproduction: -\n"
    prod = four_steps(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="production",
                      state="promoted", test_report=env["report"], signing_key=env["keys"], actor="alice")
    assert prod["entry"]["test_record"]["id"] == "TR-9"


def test_promotion_with_src_adds_first_and_check_mode_predicts_it(env, capsys, tmp_path):
    """state=promoted with src: check mode on an artifact the repository has never seen predicts the real run
    (the add, then the promotion), and a test record given as a mapping needs no file."""
    args = dict(path=env["repo"], src=env["artifact"]["path"], name="payroll-agent", version="2.4.1", channel="test",
                state="promoted", actor="bob")
    planned = run(repository, capsys, _ansible_check_mode=True, _ansible_diff=True, **args)
    assert planned["rc"] == 0, planned
    assert not os.path.exists(env["repo"])
    digest = env["artifact"]["sha256"]
    assert planned["actions"] == [
        "initialise repository %s (channels build, test, production)" % env["repo"],
        "store blob %s (%d bytes)" % (digest, os.path.getsize(env["artifact"]["path"])),
        "bind payroll-agent 2.4.1 -> sha256 %s" % digest,
        "enter payroll-agent 2.4.1 into channel build",
        "promote payroll-agent 2.4.1 from build to test"]
    assert planned["channels"] == {"build": ["2.4.1"], "test": ["2.4.1"], "production": []}
    done = four_steps(repository, capsys, **args)
    assert done["actions"] == planned["actions"] and done["channels"] == planned["channels"]
    assert done["diff"]["after"] == planned["diff"]["after"]

    record = {"id": "TR-MAP", "name": "payroll-agent", "version": "2.4.1", "sha256": digest, "result": "passed"}
    prod = four_steps(repository, capsys, path=env["repo"], src=env["artifact"]["path"], name="payroll-agent",
                      version="2.4.1", channel="production", state="promoted", test_record=record,
                      signing_key=env["keys"])
    assert prod["entry"]["test_record"]["id"] == "TR-MAP"
    assert prod["actions"] == ["store test record TR-MAP (passed)", "promote payroll-agent 2.4.1 from test to production"]
    stored = os.path.join(env["repo"], prod["entry"]["test_record"]["record"])
    with open(stored) as handle:
        assert json.load(handle)["source"] == "test_record TR-MAP"

    both = run(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="production",
               state="promoted", test_record=record, test_report=env["report"])
    assert both["failed"] and both["msg"] == "parameters are mutually exclusive: test_report|test_record"
    other = build(write_source(tmp_path / "other", name="ledger", version="1.0"), str(tmp_path / "other-out"))
    wrong = run(repository, capsys, path=env["repo"], src=other["path"], name="payroll-agent", version="2.5.0",
                channel="test", state="promoted", _ansible_check_mode=True)
    assert wrong["failed"] and wrong["msg"] == (
        "Failed to promote payroll-agent 2.5.0 in repository %s: cannot promote payroll-agent 2.5.0 with src %s: it is "
        "ledger 1.0" % (env["repo"], other["path"]))


def image(tmp_path, version, family="debian12-base"):
    path = tmp_path / "images" / ("%s-%s.img" % (family, version))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("rootfs %s %s" % (family, version)).encode())
    return str(path)


def image_to_production(env, capsys, tmp_path, version, family="debian12-base"):
    base = dict(path=env["repo"], signing_key=env["keys"])
    assert run(repository, capsys, src=image(tmp_path, version, family), name=family, version=version, kind="image",
               **base)["rc"] == 0
    assert run(repository, capsys, state="promoted", name=family, version=version, channel="test", **base)["rc"] == 0
    report = tmp_path / ("report-%s-%s.json" % (family, version))
    report.write_text(json.dumps({"name": family, "version": version, "result": "passed"}))
    promoted = run(repository, capsys, state="promoted", name=family, version=version, channel="production",
                   test_report=str(report), **base)
    assert promoted["rc"] == 0, promoted


def test_max_live_images_with_another_state_is_a_change_made_under_the_lock(env, capsys, tmp_path):
    image_to_production(env, capsys, tmp_path, "2025.10")
    image_to_production(env, capsys, tmp_path, "2026.01")
    config = os.path.join(env["repo"], "repository.json")
    # a promotion that is already done, with a new limit: the limit is the whole change
    raised = four_steps(repository, capsys, path=env["repo"], state="promoted", name="debian12-base", version="2026.01",
                        channel="production", signing_key=env["keys"], max_live_images=3)
    assert raised["actions"] == ["set max_live_images to 3 (was 2)"]
    assert raised["diff"]["before"].startswith("max_live_images: 2\n")
    assert raised["diff"]["after"] == ("max_live_images: 3\nbuild: 2025.10, 2026.01\ntest: 2025.10, 2026.01\n"
                                       "production: 2025.10, 2026.01\n")
    assert json.load(open(config))["max_live_images"] == 3
    events = [json.loads(line) for line in open(os.path.join(env["repo"], "log", "events.jsonl"))]
    assert events[-1]["action"] == "configure" and events[-1]["max_live_images"] == 3
    # with state=signed, the same
    lowered = four_steps(repository, capsys, path=env["repo"], state="signed", signing_key=env["keys"], max_live_images=2)
    assert lowered["actions"] == ["set max_live_images to 2 (was 3)"] and json.load(open(config))["max_live_images"] == 2

    # never below what is live: two images of the family are in production
    for check in (True, False):
        refused = run(repository, capsys, path=env["repo"], state="signed", signing_key=env["keys"], max_live_images=1,
                      _ansible_check_mode=check)
        assert refused["failed"] and refused["error"] == "RuleError"
        assert refused["msg"] == (
            "Failed to sign the channels of in repository %s: cannot set max_live_images to 1: more images than that are "
            "live in the production channel (family debian12-base: 2025.10, 2026.01); retire the surplus images first"
            % env["repo"])
    assert json.load(open(config))["max_live_images"] == 2

    # the change waits for the lock like every other write
    from ansible_collections.esd.osp.plugins.module_utils import _repository
    with _repository.Repository(env["repo"]).lock():
        locked = run(repository, capsys, path=env["repo"], state="signed", signing_key=env["keys"], max_live_images=5)
    assert locked["failed"] and "is locked by another run (pid %d)" % os.getpid() in locked["msg"]
    assert json.load(open(config))["max_live_images"] == 2


def test_check_mode_promotes_with_the_limit_it_would_set(env, capsys, tmp_path):
    image_to_production(env, capsys, tmp_path, "2025.10")
    image_to_production(env, capsys, tmp_path, "2026.01")
    base = dict(path=env["repo"], signing_key=env["keys"])
    run(repository, capsys, src=image(tmp_path, "2026.04"), name="debian12-base", version="2026.04", kind="image", **base)
    run(repository, capsys, state="promoted", name="debian12-base", version="2026.04", channel="test", **base)
    report = tmp_path / "report-2026.04.json"
    report.write_text(json.dumps({"name": "debian12-base", "version": "2026.04", "result": "passed"}))
    third = dict(state="promoted", name="debian12-base", version="2026.04", channel="production", test_report=str(report), **base)
    refused = run(repository, capsys, **third)
    assert refused["failed"] and "2 image(s) of family debian12-base are already live there" in refused["msg"]
    promoted = four_steps(repository, capsys, max_live_images=3, **third)
    assert promoted["actions"] == ["set max_live_images to 3 (was 2)", "store test record %s (passed)" % promoted["entry"][
        "test_record"]["id"], "promote debian12-base 2026.04 from test to production"]
    assert promoted["channels"]["production"] == ["2025.10", "2026.01", "2026.04"]


def test_refusals_are_clear_failures(env, capsys):
    run(repository, capsys, path=env["repo"], src=env["artifact"]["path"])
    skip = run(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="production",
               state="promoted", signing_key=env["keys"], test_report=env["report"])
    assert skip["failed"] and skip["error"] == "RuleError"
    assert skip["msg"].startswith("Failed to promote payroll-agent 2.4.1 in repository %s: cannot promote payroll-agent "
                                  "2.4.1 to production: it is not in the test channel" % env["repo"])
    run(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="test", state="promoted")
    unsigned = run(repository, capsys, path=env["repo"], name="payroll-agent", version="2.4.1", channel="production",
                   state="promoted", test_report=env["report"])
    assert unsigned["failed"] and "give signing_key" in unsigned["msg"]
    missing = run(repository, capsys, path=env["repo"], state="promoted", name="payroll-agent")
    assert missing["failed"] and "missing" in missing["msg"] and "channel" in missing["msg"]


def test_retire_archive_restore_through_the_module(env, capsys, tmp_path):
    base = dict(path=env["repo"], signing_key=env["keys"])
    run(repository, capsys, path=env["repo"], src=env["artifact"]["path"])
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="test", **base)
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="production",
        test_report=env["report"], **base)
    archived = four_steps(repository, capsys, state="archived", name="payroll-agent",
                          archive_dir=str(tmp_path / "archives"), **base)
    assert archived["retired"][0]["channels"] == ["build", "test", "production"]
    assert archived["channels"] == {"build": [], "test": [], "production": []}
    info = run(repository_info, capsys, path=env["repo"], name="payroll-agent", keyring=env["keys"], verify_blobs=True)
    assert info["valid"] and info["catalogue"][0]["state"] == "retired"
    path = info["catalogue"][0]["archive"]
    assert os.path.isfile(path)
    # the repository signs its indexes: without a key to trust, it restores no archive
    refused = run(repository, capsys, state="restored", src=path, path=env["repo"])
    assert refused["failed"] and refused["error"] == "IntegrityError"
    assert refused["msg"] == (
        "Failed to restore %s in repository %s: refusing to restore %s into %s: the repository signs its channel "
        "indexes, so it restores only an archive signed by a key it trusts; give public_keys, or signing_key (the keys "
        "of its keyring are trusted)" % (path, env["repo"], path, env["repo"]))
    # a rotation retires the key that signed the archive: the keyring (signing_key) still trusts it
    assert run(signing_key, capsys, path=env["keys"], state="rotated")["changed"]
    restored = run(repository, capsys, state="restored", src=path, **base)
    assert restored["changed"] and restored["channels"]["build"] == ["2.4.1"]


def test_repository_info_reports_tampering(env, capsys):
    base = dict(path=env["repo"], signing_key=env["keys"])
    run(repository, capsys, path=env["repo"], src=env["artifact"]["path"])
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="test", **base)
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="production",
        test_report=env["report"], **base)
    good = run(repository_info, capsys, path=env["repo"], channel="production", keyring=env["keys"])
    assert good["valid"] and good["changed"] is False and good["channels"]["production"]["verified"] is True
    assert good["signatures"] == "verified"
    assert [e["name"] for e in good["channels"]["production"]["entries"]] == ["payroll-agent"]
    index = os.path.join(env["repo"], "channels", "production.json")
    os.chmod(index, 0o644)
    with open(index, "a") as handle:
        handle.write(" ")
    bad = run(repository_info, capsys, path=env["repo"], keyring=env["keys"], fail_on_problems=True)
    assert bad["failed"] and "was modified after it was signed" in bad["msg"] and bad["signatures"] == "failed"
    # without keys nothing is verified, and the output says so rather than passing the tampered index as valid
    unchecked = run(repository_info, capsys, path=env["repo"])
    assert (unchecked["valid"], unchecked["signatures"], unchecked["problems"]) == (True, "not checked", [])
    assert unchecked["channels"]["production"]["verified"] is None
    assert run(repository_info, capsys, path=str(env["repo"]) + "-none")["exists"] is False


def test_depot_channel_module_syncs_and_deletes(env, capsys, tmp_path):
    base = dict(path=env["repo"], signing_key=env["keys"])
    run(repository, capsys, path=env["repo"], src=env["artifact"]["path"])
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="test", **base)
    run(repository, capsys, state="promoted", name="payroll-agent", version="2.4.1", channel="production",
        test_report=env["report"], **base)
    keys = run(signing_key, capsys, path=env["keys"])["public_keys"]
    synced = four_steps(depot_channel, capsys, path="/srv/esd/depot", root=str(tmp_path / "depot-01"),
                        src="file://" + env["repo"], public_keys=keys, bandwidth_limit=0)
    assert synced["path"] == str(tmp_path / "depot-01" / "srv" / "esd" / "depot")
    assert synced["blobs_fetched"] == 1 and synced["serial"] == 1
    blob = os.path.join(synced["path"], "blobs", "sha256", env["artifact"]["sha256"])
    assert os.path.isfile(blob)
    deleted = four_steps(depot_channel, capsys, path=synced["path"], state="absent", packages=["payroll-agent"])
    assert deleted["deleted"][0]["version"] == "2.4.1" and not os.path.exists(blob)
    refused = run(depot_channel, capsys, path=synced["path"], src="file://" + env["repo"],
                  public_keys=["ed25519:" + "A" * 43 + "="])
    assert refused["failed"] and "is not trusted here" in refused["msg"]


def test_signing_key_rotation(env, capsys):
    first = run(signing_key, capsys, path=env["keys"])
    assert first["changed"] is False and len(first["public_keys"]) == 1
    rotated = run(signing_key, capsys, path=env["keys"], state="rotated", _ansible_check_mode=True)
    assert rotated["changed"] and run(signing_key, capsys, path=env["keys"])["active_key_id"] == first["active_key_id"]
    rotated = run(signing_key, capsys, path=env["keys"], state="rotated", revoke=[first["active_key_id"]])
    assert rotated["active_key_id"] != first["active_key_id"] and len(rotated["public_keys"]) == 1
    assert [k["status"] for k in rotated["keys"]] == ["revoked", "active"]
