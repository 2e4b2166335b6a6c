# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The channel_index lookup, loaded as Ansible loads it, against a real repository and a depot synced from it."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleError

from ansible_collections.esd.osp.plugins.lookup import channel_index as plugin
from ansible_collections.esd.osp.plugins.module_utils import _depot, _repository, _signing

PREFIX = "esd.osp.channel_index: "


@pytest.fixture(scope="module")
def channel_index():
    """The plugin with its options registered from its DOCUMENTATION, as the plugin loader does. (The loader itself
    cannot find it here: the test run imports ansible_collections as a plain package before Ansible's collection
    finder is installed.)"""
    C.config.initialize_plugin_configuration_definitions("lookup", "esd.osp.channel_index",
                                                         yaml.safe_load(plugin.DOCUMENTATION)["options"])
    lookup = plugin.LookupModule()
    lookup._load_name = "esd.osp.channel_index"
    return lookup


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr(_depot, "RETRY_PAUSE", 0)


@pytest.fixture
def repo(tmp_path, keyring):
    """A repository with payroll-agent 2.4.1 and 2.5.0 and ledger 1.0 in production."""
    repo = _repository.Repository(str(tmp_path / "repo"), signer=keyring.active_signer(), actor="alice")
    for name, version in (("payroll-agent", "2.4.1"), ("payroll-agent", "2.5.0"), ("ledger", "1.0")):
        path = tmp_path / "in" / ("%s-%s" % (name, version))
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(("%s %s" % (name, version)).encode())
        repo.add(str(path), name=name, version=version, kind="media")
        repo.promote(name, version, "test")
        report = tmp_path / ("report-%s-%s.json" % (name, version))
        report.write_text(json.dumps({"name": name, "version": version, "result": "passed"}))
        repo.promote(name, version, "production", test_report=str(report))
    return repo


@pytest.fixture
def depot(repo, tmp_path, keyring):
    depot = _depot.Depot(str(tmp_path / "depot"), actor="dave")
    depot.sync(_depot.Source(repo.path), keyring.public_keys())
    return depot


def refusal(lookup, *terms, **options):
    with pytest.raises(AnsibleError) as failed:
        lookup.run(list(terms), variables={}, **options)
    return failed.value.message


def test_an_entry_comes_from_the_verified_index(channel_index, repo, depot, keyring):
    for base in (repo.path, depot.path, "file://" + depot.path):
        [entry] = channel_index.run(["production"], variables={}, repository=base, keyring=keyring.path,
                                    name="payroll-agent", version="2.5.0")
        assert entry["sha256"] == repo.load_record("payroll-agent", "2.5.0")["sha256"]
        assert entry["path"] == "blobs/sha256/%s" % entry["sha256"]
    [index] = channel_index.run(["production"], variables={}, repository=depot.path, public_keys=keyring.public_keys())
    assert index["serial"] == 3 and index["key_id"] == keyring.load()["active"] and index["excluded"] == []
    assert [(e["name"], e["version"]) for e in index["entries"]] == [
        ("ledger", "1.0"), ("payroll-agent", "2.4.1"), ("payroll-agent", "2.5.0")]


def test_an_unsigned_tampered_or_untrusted_index_is_refused(channel_index, repo, keyring):
    path = repo.channel_path("production")
    what = "channel index %s/channels/production.json" % repo.path
    stranger = _signing.Signer.generate()
    assert refusal(channel_index, "production", repository=repo.path, public_keys=[stranger.public_key]) == (
        "%srefusing to trust %s: %s is signed by key %s, which is not trusted here (trusted: %s)" % (
            PREFIX, repo.path, what, keyring.load()["active"], stranger.key_id))
    original = open(path, "rb").read()
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(original.replace(b'"serial": 3', b'"serial": 4'))
    message = refusal(channel_index, "production", repository=repo.path, keyring=keyring.path)
    assert message.startswith("%srefusing to trust %s: %s was modified after it was signed: its sha256 is " % (
        PREFIX, repo.path, what)), message
    os.unlink(path + ".sig")
    assert refusal(channel_index, "production", repository=repo.path, keyring=keyring.path) == (
        "%srefusing to trust %s: %s is not signed (no .sig file); refusing to trust it" % (PREFIX, repo.path, what))
    assert refusal(channel_index, "production", repository=repo.path) == (
        "esd.osp.channel_index needs trusted keys: give keyring or public_keys")


def test_a_name_or_version_the_channel_does_not_list_is_refused(channel_index, repo, keyring):
    options = dict(repository=repo.path, keyring=keyring.path)
    assert refusal(channel_index, "production", name="payroll-agent", version="9.9", **options) == (
        "payroll-agent 9.9 is not in the production channel of %s (serial 3)" % repo.path)
    assert refusal(channel_index, "production", name="nosuch", **options) == (
        "nosuch is not in the production channel of %s (serial 3)" % repo.path)
    assert refusal(channel_index, "test", name="payroll-agent", version="9.9", **options) == (
        "payroll-agent 9.9 is not in the test channel of %s (serial 3)" % repo.path)


def test_a_package_deleted_from_the_depot_is_refused_with_what_to_do(channel_index, repo, depot, keyring):
    depot.delete(["payroll-agent=2.4.1"])
    at = depot.state()["excluded"][0]["at"]
    options = dict(repository=depot.path, keyring=keyring.path)
    assert refusal(channel_index, "production", name="payroll-agent", version="2.4.1", **options) == (
        "payroll-agent 2.4.1 was deleted from depot %s (delete_package, by dave at %s); the signed production index "
        "still lists it, but the depot no longer holds its blob: take it from another depot, or bring it back with a "
        "sync that readmits it (esd.osp.depot_channel readmit, role variable depot_readmit: [payroll-agent=2.4.1])"
        % (depot.path, at))
    # the other version is still served; the listing leaves the deleted one out and says so
    assert channel_index.run(["production"], variables={}, name="payroll-agent", version="2.5.0", **options)[0][
        "version"] == "2.5.0"
    [listing] = channel_index.run(["production"], variables={}, name="payroll-agent", **options)
    assert [e["version"] for e in listing["entries"]] == ["2.5.0"]
    assert [(x["name"], x["version"]) for x in listing["excluded"]] == [("payroll-agent", "2.4.1")]
    # the repository itself has no depot.json: nothing is excluded there
    assert channel_index.run(["production"], variables={}, repository=repo.path, keyring=keyring.path,
                             name="payroll-agent", version="2.4.1")[0]["version"] == "2.4.1"
    # every version gone
    depot.delete(["payroll-agent"])
    message = refusal(channel_index, "production", name="payroll-agent", **options)
    assert message.startswith("payroll-agent 2.4.1, 2.5.0 was deleted from depot %s (delete_package, by dave at " %
                              depot.path), message
    assert message.endswith("depot_readmit: [payroll-agent])")
    # readmitted by a sync: served again
    depot.sync(_depot.Source(repo.path), keyring.public_keys(), readmit=["payroll-agent"])
    assert channel_index.run(["production"], variables={}, name="payroll-agent", version="2.4.1", **options)[0][
        "version"] == "2.4.1"


def test_a_corrupt_depot_state_is_refused(channel_index, depot, keyring):
    with open(depot.p("depot.json"), "w") as handle:
        handle.write("{")
    assert refusal(channel_index, "production", repository=depot.path, keyring=keyring.path, name="ledger") == (
        "depot state %s/depot.json is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1)" % depot.path)


def test_an_interrupted_publication_is_told_apart_from_tampering(channel_index, repo, keyring, monkeypatch):
    def crash(staged, final):
        raise OSError("simulated crash")

    monkeypatch.setattr(_repository, "move_into_place", crash)
    with pytest.raises(OSError):
        repo.delete("ledger", "production")
    monkeypatch.undo()
    path = "%s/channels/production.json" % repo.path
    assert refusal(channel_index, "production", repository=repo.path, keyring=keyring.path) == (
        "%srefusing to trust %s: channel index %s does not match its signature because its publication was "
        "interrupted: the signature covers the new index staged as %s.pending, which was never put in place; re-sign "
        "the channels on the repository (esd.osp.repository state=signed, which playbooks/keys.yml runs), then run the "
        "interrupted change again" % (PREFIX, repo.path, path, path))
    repo.sign()
    [index] = channel_index.run(["production"], variables={}, repository=repo.path, keyring=keyring.path)
    assert index["serial"] == 3
