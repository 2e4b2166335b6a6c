# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import builtins
import hashlib
import json
import os
import stat
import tarfile

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _repository, _signing
from ansible_collections.esd.osp.plugins.module_utils._repository import ConflictError, IntegrityError, Repository, RuleError
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, write_source


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


@pytest.fixture
def repo(tmp_path, keyring):
    return Repository(str(tmp_path / "repo"), signer=keyring.active_signer(), actor="alice")


def package(tmp_path, name="payroll-agent", version="2.4.1", files=None, extra_spec=""):
    src = write_source(tmp_path / "sources", name=name, version=version, files=files, extra_spec=extra_spec)
    return build(src, str(tmp_path / "artifacts"))["path"]


def raw_artifact(tmp_path, filename, content):
    path = tmp_path / "raw" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def test_report(tmp_path, name, version, result="passed", sha256=None, report_id="TR-1", summary=None):
    path = tmp_path / "reports" / ("%s-%s-%s.json" % (name, version, report_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"id": report_id, "name": name, "version": version, "result": result}
    if sha256:
        body["sha256"] = sha256
    if summary is not None:
        body["summary"] = summary
    path.write_text(json.dumps(body))
    return str(path)


test_report.__test__ = False  # a helper, not a test


def to_production(repo, tmp_path, name, version, **kwargs):
    repo.promote(name, version, "test", evidence="CO-1")
    return repo.promote(name, version, "production", test_report=test_report(tmp_path, name, version), **kwargs)


def snapshot(top):
    """Every directory and file under top (top included) with its mode, and each file's content digest, to prove
    that check mode writes nothing: no new or changed file, no new directory (a lock file, an empty archive
    folder), no changed permission."""
    out = {".": ("dir", stat.S_IMODE(os.stat(top).st_mode))}
    for current, dirs, files in os.walk(top):
        for name in dirs:
            full = os.path.join(current, name)
            out[os.path.relpath(full, top)] = ("dir", stat.S_IMODE(os.lstat(full).st_mode))
        for name in files:
            full = os.path.join(current, name)
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            out[os.path.relpath(full, top)] = ("file", stat.S_IMODE(os.lstat(full).st_mode), digest)
    return out


# --- immutability and binding -----------------------------------------------------------------

def test_add_stores_the_bytes_once_by_sha256_read_only(repo, tmp_path):
    artifact = package(tmp_path)
    result = repo.add(artifact)
    digest = hashlib.sha256(open(artifact, "rb").read()).hexdigest()
    assert result["changed"] and result["sha256"] == digest and result["channel"] == "build"
    blob = repo.blob_path(digest)
    assert open(blob, "rb").read() == open(artifact, "rb").read()
    assert stat.S_IMODE(os.stat(blob).st_mode) == 0o444
    entry = repo.find_entry("build", "payroll-agent", "2.4.1")
    assert entry["sha256"] == digest and entry["size"] == os.path.getsize(artifact)
    assert entry["kind"] == "package" and entry["path"] == "blobs/sha256/%s" % digest
    assert entry["promoted_by"] == "alice" and entry["from_channel"] is None
    record = repo.load_record("payroll-agent", "2.4.1")
    assert record["sha256"] == digest and record["state"] == "active" and record["added_by"] == "alice"


def test_adding_again_changes_nothing_and_never_rewrites_the_blob(repo, tmp_path):
    artifact = package(tmp_path)
    first = repo.add(artifact)
    before = os.stat(repo.blob_path(first["sha256"]))
    again = repo.add(artifact)
    assert again["changed"] is False and again["actions"] == []
    after = os.stat(repo.blob_path(first["sha256"]))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_a_name_and_version_can_never_map_to_two_digests(repo, tmp_path):
    repo.add(package(tmp_path))
    other = package(tmp_path / "rebuilt", files={"bin/tool": "#!/bin/sh\necho changed\n"})
    with pytest.raises(ConflictError, match="payroll-agent 2.4.1 is already bound to sha256 .* a name and version can "
                                            "never mean two different artifacts"):
        repo.add(other)
    # ... not even after the package was retired: the binding stays as a tombstone
    repo.retire("payroll-agent")
    with pytest.raises(ConflictError, match="already bound"):
        repo.add(other)


def test_manifest_and_arguments_must_agree(repo, tmp_path):
    with pytest.raises(_repository.RepositoryError, match="its manifest says version '2.4.1' but '9.9' was given"):
        repo.add(package(tmp_path), version="9.9")
    blob = raw_artifact(tmp_path, "disk.img", b"not a package")
    with pytest.raises(_repository.RepositoryError, match="give name, version and kind"):
        repo.add(blob)


def test_a_damaged_blob_is_repaired_by_adding_the_right_bytes(repo, tmp_path):
    artifact = package(tmp_path)
    digest = repo.add(artifact)["sha256"]
    blob = repo.blob_path(digest)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.write(b"XX")
    assert repo.verify()["valid"] is False
    result = repo.add(artifact)
    assert result["actions"] == ["repair blob %s (%d bytes)" % (digest, os.path.getsize(artifact))]
    assert repo.verify()["valid"] is True


# --- promotion --------------------------------------------------------------------------------

def test_promotion_goes_build_test_production_and_records_who_when_from_what(repo, tmp_path):
    repo.add(package(tmp_path))
    result = repo.promote("payroll-agent", "2.4.1", "test", evidence="scan-ok CO-42")
    entry = result["entry"]
    assert entry["from_channel"] == "build" and entry["evidence"] == "scan-ok CO-42" and entry["override"] is None
    assert entry["promoted_by"] == "alice" and entry["promoted_at"].endswith("Z")
    report = test_report(tmp_path, "payroll-agent", "2.4.1", report_id="TR-17")
    prod = repo.promote("payroll-agent", "2.4.1", "production", test_report=report)["entry"]
    assert prod["from_channel"] == "test" and prod["evidence"] == "TR-17"
    assert prod["test_record"]["id"] == "TR-17" and prod["test_record"]["result"] == "passed"
    assert os.path.isfile(repo.p(*prod["test_record"]["record"].split("/")))
    assert repo.channels_holding("payroll-agent", "2.4.1") == ["build", "test", "production"]
    events = [json.loads(line) for line in open(repo.p("log", "events.jsonl"))]
    assert [e["action"] for e in events] == ["add", "promote", "promote"]
    assert events[-1]["by"] == "alice" and events[-1]["from_channel"] == "test" and events[-1]["evidence"] == "TR-17"
    # promoting again changes nothing
    assert repo.promote("payroll-agent", "2.4.1", "production")["changed"] is False


def test_skipping_a_site_needs_a_recorded_override(repo, tmp_path):
    repo.add(package(tmp_path))
    report = test_report(tmp_path, "payroll-agent", "2.4.1")
    with pytest.raises(RuleError, match="it is not in the test channel \\(it is in: build\\); promote it to test first"):
        repo.promote("payroll-agent", "2.4.1", "production", test_report=report)
    with pytest.raises(RuleError, match="that skips test; skipping a site needs an explicit override reason"):
        repo.promote("payroll-agent", "2.4.1", "production", from_channel="build", test_report=report)
    entry = repo.promote("payroll-agent", "2.4.1", "production", from_channel="build", test_report=report,
                         override="emergency fix, tested on the vendor's lab (CAB-99)")["entry"]
    assert entry["from_channel"] == "build"
    assert entry["override"] == "emergency fix, tested on the vendor's lab (CAB-99)"
    last = json.loads(open(repo.p("log", "events.jsonl")).read().splitlines()[-1])
    assert last["override"] == entry["override"]


def test_promotion_never_goes_backwards_or_into_the_first_channel(repo, tmp_path):
    repo.add(package(tmp_path))
    with pytest.raises(RuleError, match="promotion only goes forward"):
        repo.promote("payroll-agent", "2.4.1", "test", from_channel="production")
    with pytest.raises(RuleError, match="nothing is promoted into build"):
        repo.promote("payroll-agent", "2.4.1", "build")
    with pytest.raises(_repository.RepositoryError, match="unknown channel 'staging'"):
        repo.promote("payroll-agent", "2.4.1", "staging")
    with pytest.raises(_repository.RepositoryError, match="payroll-agent 9.9 is not in repository"):
        repo.promote("payroll-agent", "9.9", "test")


def test_nothing_reaches_production_without_a_passing_test_record(repo, tmp_path):
    digest = repo.add(package(tmp_path))["sha256"]
    repo.promote("payroll-agent", "2.4.1", "test")
    with pytest.raises(RuleError, match="has no passing test record; give test_report"):
        repo.promote("payroll-agent", "2.4.1", "production")
    failed = test_report(tmp_path, "payroll-agent", "2.4.1", result="failed", report_id="TR-f")
    with pytest.raises(RuleError, match="its result is failed"):
        repo.promote("payroll-agent", "2.4.1", "production", test_report=failed)
    wrong_version = test_report(tmp_path, "payroll-agent", "2.4.0", report_id="TR-v")
    with pytest.raises(RuleError, match="it is a report for payroll-agent 2.4.0"):
        repo.promote("payroll-agent", "2.4.1", "production", test_report=wrong_version)
    wrong_bytes = test_report(tmp_path, "payroll-agent", "2.4.1", sha256="0" * 64, report_id="TR-b")
    with pytest.raises(RuleError, match="it tested sha256 0000"):
        repo.promote("payroll-agent", "2.4.1", "production", test_report=wrong_bytes)
    # "passed" over a summary that counts failures or errors is a failed report, not a pass
    for report_id, summary, counts in (("TR-5f", {"total": 40, "failed": 5}, "5 failed"),
                                       ("TR-2e", {"total": 40, "failed": 0, "errors": 2}, "0 failed, 2 error(s)")):
        lying = test_report(tmp_path, "payroll-agent", "2.4.1", sha256=digest, report_id=report_id, summary=summary)
        with pytest.raises(RuleError) as refused:
            repo.promote("payroll-agent", "2.4.1", "production", test_report=lying)
        assert str(refused.value) == (
            "cannot promote payroll-agent 2.4.1 to production: test report %s is not a passing test record for it: "
            "its result is failed: it says 'passed' but its summary counts %s" % (lying, counts))
    assert repo.find_entry("production", "payroll-agent", "2.4.1") is None
    assert repo.test_records("payroll-agent", "2.4.1") == []
    # ... and such a report stored by an earlier version of the collection is no passing record either
    os.makedirs(repo.p("records", "payroll-agent", "2.4.1"))
    with open(repo.p("records", "payroll-agent", "2.4.1", "%s.json" % ("e" * 64)), "w") as handle:
        json.dump({"id": "TR-old", "result": "passed", "failures": 5, "sha256": digest, "report_sha256": "e" * 64}, handle)
    with pytest.raises(RuleError, match="has no passing test record; give test_report"):
        repo.promote("payroll-agent", "2.4.1", "production")
    good = test_report(tmp_path, "payroll-agent", "2.4.1", sha256=digest, report_id="TR-ok",
                       summary={"total": 40, "failed": 0, "errors": 0})
    assert repo.promote("payroll-agent", "2.4.1", "production", test_report=good)["entry"]["evidence"] == "TR-ok"


def test_junit_xml_reports_are_accepted(repo, tmp_path):
    repo.add(package(tmp_path))
    repo.promote("payroll-agent", "2.4.1", "test")
    xml = tmp_path / "junit.xml"
    xml.write_text("""<?xml version="1.0"?>
<testsuites name="TR-x" tests="3" failures="1">
  <testsuite name="install" tests="3" failures="1" errors="0">
    <properties><property name="esd.name" value="payroll-agent"/><property name="esd.version" value="2.4.1"/></properties>
    <testcase name="install"/><testcase name="health"/><testcase name="backout"><failure message="x"/></testcase>
  </testsuite>
</testsuites>""")
    with pytest.raises(RuleError, match="its result is failed \\(1 failure"):
        repo.promote("payroll-agent", "2.4.1", "production", test_report=str(xml))
    xml.write_text(xml.read_text().replace('failures="1"', 'failures="0"'))
    assert repo.promote("payroll-agent", "2.4.1", "production", test_report=str(xml))["entry"]["evidence"] == "TR-x"


def test_promotion_cost_does_not_depend_on_size_it_never_reads_the_blob(repo, tmp_path, monkeypatch):
    big = raw_artifact(tmp_path, "media.iso", os.urandom(3 * 1024 * 1024))
    digest = repo.add(big, name="install-media", version="1.0", kind="media")["sha256"]
    blob = repo.blob_path(digest)
    real_open = builtins.open

    def guarded_open(path, *args, **kwargs):
        assert os.path.abspath(str(path)) != blob, "promotion read the blob"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(_repository._artifact, "sha256_file", lambda path: pytest.fail("promotion hashed %s" % path))
    repo.promote("install-media", "1.0", "test")
    report = test_report(tmp_path, "install-media", "1.0")
    assert repo.promote("install-media", "1.0", "production", test_report=report)["changed"]


def test_promotion_refuses_a_blob_whose_size_is_not_the_recorded_one(repo, tmp_path):
    artifact = package(tmp_path)
    digest = repo.add(artifact)["sha256"]
    size = os.path.getsize(artifact)
    blob = repo.blob_path(digest)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.truncate(size - 10)
    before = snapshot(repo.path)
    with pytest.raises(IntegrityError) as refused:
        repo.promote("payroll-agent", "2.4.1", "test")
    assert str(refused.value) == (
        "the blob of payroll-agent 2.4.1 (sha256 %s) is damaged: the catalogue records %d bytes, %s holds %d; add the "
        "artifact again (state=present) to repair it" % (digest, size, blob, size - 10))
    assert snapshot(repo.path) == before
    assert repo.add(artifact)["actions"] == ["repair blob %s (%d bytes)" % (digest, size)]
    assert repo.promote("payroll-agent", "2.4.1", "test")["changed"]


def test_production_index_is_signed_and_changes_need_the_key(repo, tmp_path, keyring):
    repo.add(package(tmp_path))
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    index, key = repo.verify_channel("production", keyring.public_keys())
    assert key == keyring.load()["active"] and index["serial"] == 1
    assert [e["name"] for e in index["entries"]] == ["payroll-agent"]

    unsigned = Repository(repo.path, actor="mallory")
    unsigned.add(package(tmp_path, version="2.5.0"))
    unsigned.promote("payroll-agent", "2.5.0", "test")
    before = snapshot(repo.path)
    with pytest.raises(_repository.RepositoryError, match="give signing_key"):
        unsigned.promote("payroll-agent", "2.5.0", "production",
                         test_report=test_report(tmp_path, "payroll-agent", "2.5.0"))
    assert snapshot(repo.path) == before


def test_a_tampered_index_or_blob_is_found(repo, tmp_path, keyring):
    digest = repo.add(package(tmp_path))["sha256"]
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    assert repo.verify(keyring.public_keys())["valid"]
    path = repo.channel_path("production")
    text = open(path).read()
    os.chmod(path, 0o644)
    with open(path, "w") as handle:
        handle.write(text.replace('"size": ', '"size": 1'))
    report = repo.verify(keyring.public_keys(), blobs=False)
    assert not report["valid"]
    assert any("was modified after it was signed" in p for p in report["problems"])
    with pytest.raises(_signing.SignatureError, match="modified after it was signed"):
        repo.verify_channel("production", keyring.public_keys())
    with open(path, "w") as handle:
        handle.write(text)
    blob = repo.blob_path(digest)
    os.chmod(blob, 0o644)
    with open(blob, "ab") as handle:
        handle.write(b"!")
    assert any("is missing" in p or "corrupt" in p for p in repo.verify(keyring.public_keys())["problems"])


def test_a_publication_stopped_between_signature_and_index_says_what_to_do_and_re_signing_repairs_it(
        repo, tmp_path, keyring, monkeypatch):
    repo.add(package(tmp_path))
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    repo.add(package(tmp_path, version="2.5.0"))
    repo.promote("payroll-agent", "2.5.0", "test")
    path = repo.channel_path("production")
    published = open(path, "rb").read()

    def crash(staged, final):
        raise OSError("simulated crash between the signature and the index")

    # the run stops after writing the new signature, before the new index is in place
    monkeypatch.setattr(_repository, "move_into_place", crash)
    with pytest.raises(OSError, match="simulated crash"):
        repo.promote("payroll-agent", "2.5.0", "production", test_report=test_report(tmp_path, "payroll-agent", "2.5.0"))
    monkeypatch.undo()
    assert open(path, "rb").read() == published and os.path.isfile(path + ".pending")

    expected = ("channel index %s does not match its signature because its publication was interrupted: the signature "
                "covers the new index staged as %s.pending, which was never put in place; re-sign the channels on the "
                "repository (esd.osp.repository state=signed, which playbooks/keys.yml runs), then run the interrupted "
                "change again" % (path, path))
    with pytest.raises(IntegrityError) as refused:
        repo.verify_channel("production", keyring.public_keys())
    assert str(refused.value) == expected
    report = repo.verify()  # found without keys too
    assert report["valid"] is False and report["problems"] == [expected]
    assert report["channels"]["production"]["verified"] is False

    # a depot (or the channel_index lookup) reading the repository gets the same explanation, not "tampered"
    from ansible_collections.esd.osp.plugins.module_utils import _depot
    monkeypatch.setattr(_depot, "RETRY_PAUSE", 0)
    with pytest.raises(_depot.DepotError) as depot_refused:
        _depot.fetch_index(_depot.Source(repo.path), "production", keyring.public_keys())
    assert str(depot_refused.value) == "refusing to trust %s: %s" % (
        repo.path, expected.replace(path + ".pending", "%s/channels/production.json.pending" % repo.path))

    # state=signed re-signs the published index and drops the staged one
    plan = repo.sign(check=True)
    assert plan["actions"] == ["sign channel production with key %s" % keyring.load()["active"],
                               "discard %s.pending, left unpublished by an interrupted run" % path]
    assert repo.sign()["actions"] == plan["actions"]
    assert repo.verify(keyring.public_keys())["valid"] and not os.path.exists(path + ".pending")
    index, key = repo.verify_channel("production", keyring.public_keys())
    assert [e["version"] for e in index["entries"]] == ["2.4.1"]
    # ... and the interrupted promotion, run again, publishes a signed index
    assert repo.promote("payroll-agent", "2.5.0", "production")["changed"]
    index, key = repo.verify_channel("production", keyring.public_keys())
    assert [e["version"] for e in index["entries"]] == ["2.4.1", "2.5.0"] and not os.path.exists(path + ".pending")


def test_key_rotation_and_re_signing(tmp_path):
    ring = _signing.Keyring(str(tmp_path / "keys"))
    ring.apply("present", [], "keyadmin")
    repo = Repository(str(tmp_path / "repo"), signer=ring.active_signer(), actor="alice")
    repo.add(package(tmp_path))
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    old = ring.load()["active"]
    ring.apply("rotated", [], "keyadmin")
    repo = Repository(repo.path, signer=ring.active_signer(), actor="alice")
    new = ring.load()["active"]
    assert repo.sign(check=True)["actions"] == ["sign channel %s with key %s" % (c, new) for c in repo.channels]
    assert repo.sign()["changed"] and not repo.sign()["changed"]
    ring.apply("present", [old], "keyadmin")
    assert repo.verify_channel("production", ring.public_keys())[1] == ring.load()["active"]


# --- images: at most two live per family -------------------------------------------------------

def add_image(repo, tmp_path, version, family="debian12-base"):
    path = raw_artifact(tmp_path, "%s-%s.img" % (family, version), ("rootfs %s %s" % (family, version)).encode())
    repo.add(path, name=family, version=version, kind="image")
    return path


def test_at_most_two_live_images_per_family_in_production(repo, tmp_path):
    for version in ("2025.10", "2026.01", "2026.04"):
        add_image(repo, tmp_path, version)
    add_image(repo, tmp_path, "1.0", family="ubuntu24-base")
    to_production(repo, tmp_path, "debian12-base", "2025.10")
    to_production(repo, tmp_path, "debian12-base", "2026.01")
    to_production(repo, tmp_path, "ubuntu24-base", "1.0")  # another family does not count
    with pytest.raises(RuleError, match="2 image\\(s\\) of family debian12-base are already live there "
                                        "\\(debian12-base 2025.10, debian12-base 2026.01\\) and at most 2 may be; "
                                        "retire the image designated for removal first"):
        to_production(repo, tmp_path, "debian12-base", "2026.04")
    repo.retire("debian12-base", version="2025.10")
    assert repo.promote("debian12-base", "2026.04", "production",
                        test_report=test_report(tmp_path, "debian12-base", "2026.04"))["changed"]


def test_the_image_limit_is_configurable(tmp_path, keyring):
    repo = Repository(str(tmp_path / "repo"), signer=keyring.active_signer())
    path = raw_artifact(tmp_path, "a.img", b"a")
    repo.add(path, name="rhel9", version="1", kind="image", max_live_images=1)
    assert repo.config["max_live_images"] == 1
    add_image(repo, tmp_path, "2", family="rhel9")
    to_production(repo, tmp_path, "rhel9", "1")
    with pytest.raises(RuleError, match="at most 1 may be"):
        to_production(repo, tmp_path, "rhel9", "2")


def test_retiring_an_image_in_use_is_refused_unless_forced(repo, tmp_path):
    add_image(repo, tmp_path, "2025.10")
    to_production(repo, tmp_path, "debian12-base", "2025.10")
    with pytest.raises(RuleError, match="still in use on 2 node\\(s\\) \\(prod-001, prod-002\\); move them to another "
                                        "image first, or force"):
        repo.retire("debian12-base", version="2025.10", in_use=["prod-002", "prod-001"])
    assert repo.find_entry("production", "debian12-base", "2025.10") is not None
    result = repo.retire("debian12-base", version="2025.10", in_use=["prod-001"], force=True)
    assert result["changed"]
    last = json.loads(open(repo.p("log", "events.jsonl")).read().splitlines()[-1])
    assert last["action"] == "retire" and last["forced"] is True


# --- lifecycle: delete, retire, archive-retire, restore ----------------------------------------

def test_delete_takes_a_package_out_of_one_channel_only(repo, tmp_path):
    digest = repo.add(package(tmp_path))["sha256"]
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    result = repo.delete("payroll-agent", "production")
    assert result["changed"] and [e["version"] for e in result["entries"]] == ["2.4.1"]
    assert repo.channels_holding("payroll-agent", "2.4.1") == ["build", "test"]
    assert os.path.isfile(repo.blob_path(digest))
    assert repo.delete("payroll-agent", "production")["changed"] is False
    # its test record stays, so it can go back to production without a new report
    assert repo.promote("payroll-agent", "2.4.1", "production")["entry"]["test_record"]["id"] == "TR-1"


def test_retire_removes_the_package_and_all_its_updates_everywhere(repo, tmp_path):
    base = repo.add(package(tmp_path))["sha256"]
    update = repo.add(package(tmp_path, name="payroll-agent-hotfix", version="1",
                              extra_spec="updates: [payroll-agent]\n"))["sha256"]
    other = repo.add(package(tmp_path, name="ledger", version="1.0"))["sha256"]
    for name, version in (("payroll-agent", "2.4.1"), ("payroll-agent-hotfix", "1"), ("ledger", "1.0")):
        to_production(repo, tmp_path, name, version)
    plan = repo.retire("payroll-agent", check=True)
    assert sorted(r["name"] for r in plan["retired"]) == ["payroll-agent", "payroll-agent-hotfix"]
    result = repo.retire("payroll-agent")
    assert result["archive"] is None
    for channel in repo.channels:
        assert [e["name"] for e in repo.load_channel(channel)["entries"]] == ["ledger"]
    assert not os.path.exists(repo.blob_path(base)) and not os.path.exists(repo.blob_path(update))
    assert os.path.exists(repo.blob_path(other))
    assert repo.load_record("payroll-agent", "2.4.1")["state"] == "retired"
    assert repo.retire("payroll-agent")["changed"] is False
    with pytest.raises(_repository.RepositoryError, match="has no package named nosuch"):
        repo.retire("nosuch")


def test_retiring_one_version_takes_only_the_updates_whose_reference_matches_it(repo, tmp_path):
    for version in ("2.4.0", "3.0.0"):
        repo.add(package(tmp_path, version=version))
    updates = {
        "hotfix3": "payroll-agent>=3.0",      # for 3.x only: stays with 3.0.0
        "hotfix2": "payroll-agent<3.0",       # for 2.x only: goes with 2.4.0
        "pin240": "payroll-agent=2.4.0",      # for exactly 2.4.0: goes
        "pin300": "payroll-agent==3.0.0",     # for exactly 3.0.0: stays
        "from210": "payroll-agent>=2.10",     # 2.4.0 < 2.10 in version order (not as strings): stays
        "upto25": "payroll-agent<=2.5",       # matches 2.4.0 only: goes
        "after24": "payroll-agent>2.4.0",     # matches 3.0.0 only: stays
        "any2": "payroll-agent>=2.0",         # matches 2.4.0, but also 3.0.0, which stays: stays
        "any": "payroll-agent",               # no version: stays while another version of payroll-agent is live
    }
    for name, ref in updates.items():
        repo.add(package(tmp_path, name=name, version="1", extra_spec="updates: ['%s']\n" % ref))
    for name, version in [("payroll-agent", "2.4.0"), ("payroll-agent", "3.0.0")] + [(n, "1") for n in updates]:
        to_production(repo, tmp_path, name, version)

    plan = repo.retire("payroll-agent", version="2.4.0", check=True)
    result = repo.retire("payroll-agent", version="2.4.0")
    assert plan["actions"] == result["actions"]
    assert sorted((r["name"], r["version"]) for r in result["retired"]) == [
        ("hotfix2", "1"), ("payroll-agent", "2.4.0"), ("pin240", "1"), ("upto25", "1")]
    live = sorted((e["name"], e["version"]) for e in repo.load_channel("production")["entries"])
    assert live == [("after24", "1"), ("any", "1"), ("any2", "1"), ("from210", "1"), ("hotfix3", "1"),
                    ("payroll-agent", "3.0.0"), ("pin300", "1")]

    # the last live version of payroll-agent: every update that still refers to it goes with it
    last = repo.retire("payroll-agent", version="3.0.0")
    assert sorted(r["name"] for r in last["retired"]) == ["after24", "any", "any2", "from210", "hotfix3",
                                                          "payroll-agent", "pin300"]
    assert repo.load_channel("production")["entries"] == []


def test_an_unversioned_update_goes_only_with_the_last_live_version(repo, tmp_path):
    for version in ("2.4.0", "3.0.0"):
        repo.add(package(tmp_path, version=version))
    repo.add(package(tmp_path, name="payroll-agent-hotfix", version="1", extra_spec="updates: [payroll-agent]\n"))
    first = repo.retire("payroll-agent", version="2.4.0")
    assert [(r["name"], r["version"]) for r in first["retired"]] == [("payroll-agent", "2.4.0")]
    assert repo.load_record("payroll-agent-hotfix", "1")["state"] == "active"
    second = repo.retire("payroll-agent", version="3.0.0")
    assert sorted((r["name"], r["version"]) for r in second["retired"]) == [
        ("payroll-agent", "3.0.0"), ("payroll-agent-hotfix", "1")]
    assert repo.load_record("payroll-agent-hotfix", "1")["state"] == "retired"


def test_archive_retire_writes_a_verifiable_archive_that_restores(repo, tmp_path, keyring):
    artifact = package(tmp_path)
    digest = repo.add(artifact)["sha256"]
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    archive_dir = str(tmp_path / "archives")
    result = repo.retire("payroll-agent", archive_dir=archive_dir)
    archive = result["archive"]
    assert os.path.isfile(archive["path"]) and archive["signed_by"] == keyring.load()["active"]
    sidecar = open(archive["path"] + ".sha256").read().split()
    assert sidecar == [archive["sha256"], os.path.basename(archive["path"])]
    assert not os.path.exists(repo.blob_path(digest))
    assert repo.load_record("payroll-agent", "2.4.1")["archive"] == archive["path"]

    info = _repository.verify_archive(archive["path"], keyring.public_keys())
    assert info["signed_by"] == keyring.load()["active"]
    assert info["manifest"]["packages"][0]["channels"]["production"]["evidence"] == "TR-1"

    restored = repo.restore(archive["path"], public_keys=keyring.public_keys())
    assert restored["restored"] == [{"name": "payroll-agent", "version": "2.4.1", "sha256": digest}]
    assert open(repo.blob_path(digest), "rb").read() == open(artifact, "rb").read()
    assert repo.channels_holding("payroll-agent", "2.4.1") == ["build"]
    assert repo.verify()["valid"]
    assert repo.restore(archive["path"])["changed"] is False
    # back through the sites; the archived test record still counts for the same bytes
    repo.promote("payroll-agent", "2.4.1", "test")
    assert repo.promote("payroll-agent", "2.4.1", "production")["entry"]["test_record"]["id"] == "TR-1"


def test_a_damaged_or_wrongly_signed_archive_is_refused(repo, tmp_path):
    repo.add(package(tmp_path))
    path = repo.retire("payroll-agent", archive_dir=str(tmp_path / "archives"))["archive"]["path"]
    stranger = _signing.Signer.generate()
    with pytest.raises(IntegrityError, match="signed by key .* which is not trusted here"):
        _repository.verify_archive(path, [stranger.public_key])
    with tarfile.open(path) as tar:
        offset = [m for m in tar.getmembers() if m.name.startswith("blobs/")][0].offset_data
    data = bytearray(open(path, "rb").read())
    data[offset + 10] ^= 0xFF  # inside the archived blob
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    with pytest.raises(IntegrityError, match="is corrupt: its sha256 is"):
        _repository.verify_archive(path)
    os.unlink(path + ".sha256")
    with pytest.raises(IntegrityError, match="corrupt"):
        repo.restore(path)


def test_check_mode_computes_the_same_result_and_writes_nothing(repo, tmp_path):
    artifact = package(tmp_path)
    planned = repo.add(artifact, check=True)
    assert not os.path.exists(repo.path)
    assert repo.add(artifact)["actions"] == planned["actions"]
    add_image(repo, tmp_path, "2025.10")
    to_production(repo, tmp_path, "debian12-base", "2025.10")
    repo.promote("payroll-agent", "2.4.1", "test")
    before = snapshot(repo.path)
    report = test_report(tmp_path, "payroll-agent", "2.4.1")
    checks = [
        repo.promote("payroll-agent", "2.4.1", "production", test_report=report, check=True),
        repo.delete("payroll-agent", "test", check=True),
        repo.retire("payroll-agent", archive_dir=str(tmp_path / "a"), check=True),
    ]
    with pytest.raises(RuleError, match="still in use"):
        repo.retire("debian12-base", in_use=["prod-001"], check=True)
    assert snapshot(repo.path) == before and not os.path.exists(str(tmp_path / "a"))
    assert all(c["changed"] for c in checks)
    assert repo.promote("payroll-agent", "2.4.1", "production", test_report=report)["actions"] == checks[0]["actions"]


def test_the_check_mode_snapshot_sees_new_directories_and_changed_modes(repo, tmp_path):
    repo.add(package(tmp_path))
    before = snapshot(repo.path)
    os.mkdir(repo.p("archives"))
    assert snapshot(repo.path) != before
    os.rmdir(repo.p("archives"))
    os.chmod(repo.p("repository.json"), 0o600)
    assert snapshot(repo.path) != before


def test_channels_are_configurable(tmp_path, keyring):
    repo = Repository(str(tmp_path / "repo"), signer=keyring.active_signer())
    repo.add(package(tmp_path), channels=["dev", "qa", "uat", "prod"])
    repo.promote("payroll-agent", "2.4.1", "qa")
    with pytest.raises(RuleError, match="that skips uat"):
        repo.promote("payroll-agent", "2.4.1", "prod", from_channel="qa",
                     test_report=test_report(tmp_path, "payroll-agent", "2.4.1"))
    with pytest.raises(_repository.RepositoryError, match="changing the channels is not supported"):
        repo.plan_config(channels=["build", "production"])


def test_one_writer_at_a_time(repo, tmp_path):
    repo.add(package(tmp_path))
    with repo.lock():
        with pytest.raises(_repository.RepositoryError, match="is locked by another run \\(pid %d\\)" % os.getpid()):
            Repository(repo.path).promote("payroll-agent", "2.4.1", "test")


# --- restore refuses crafted archives -----------------------------------------------------------

def crafted_archive(path, record_path, signer=None, name="payroll-agent", version="9.9"):
    """An archive as an attacker would build it: a real blob, and a 'test record' at `record_path`."""
    blob, evil = b"not really a package", b"written where it should not be\n"
    digest = hashlib.sha256(blob).hexdigest()
    manifest = {"format": _repository.ARCHIVE_FORMAT, "created_at": "2026-01-01T00:00:00Z", "created_by": "mallory",
                "repository": "/elsewhere", "scope": {"name": name, "version": version},
                "packages": [{"record": {"name": name, "version": version, "kind": "package", "sha256": digest,
                                         "size": len(blob), "state": "retired"},
                              "channels": {},
                              "records": [{"path": record_path, "sha256": hashlib.sha256(evil).hexdigest()}]}],
                "blobs": [{"sha256": digest, "size": len(blob)}]}
    manifest_bytes = _repository.canonical_json(manifest)
    with tarfile.open(path, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _repository._add_bytes(tar, "ARCHIVE.json", manifest_bytes)
        if signer is not None:
            _repository._add_bytes(tar, "ARCHIVE.json.sig", _signing.make_signature(manifest_bytes, signer))
        _repository._add_bytes(tar, "blobs/sha256/%s" % digest, blob)
        _repository._add_bytes(tar, record_path, evil)
    return str(path)


ESCAPE = "catalogue/payroll-agent/../../../evil.txt"


def test_a_signing_repository_refuses_an_unsigned_or_untrusted_archive_and_writes_nothing(repo, tmp_path, keyring):
    repo.add(package(tmp_path))
    archive = crafted_archive(tmp_path / "crafted.esdarchive", "records/payroll-agent/9.9/%s.json" % ("a" * 64))
    before = snapshot(repo.path)
    with pytest.raises(IntegrityError, match="is not signed \\(no .sig file\\); refusing to trust it"):
        repo.restore(archive)
    stranger = _signing.Signer.generate()
    signed_by_stranger = crafted_archive(tmp_path / "stranger.esdarchive", "records/payroll-agent/9.9/%s.json" % ("a" * 64),
                                         signer=stranger)
    with pytest.raises(IntegrityError, match="is signed by key %s, which is not trusted here" % stranger.key_id):
        repo.restore(signed_by_stranger, public_keys=keyring.public_keys())
    # without a signer, the repository still signs its indexes (production has a .sig): it needs keys to trust
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    before = snapshot(repo.path)
    with pytest.raises(IntegrityError) as refused:
        Repository(repo.path).restore(archive)
    assert str(refused.value) == (
        "refusing to restore %s into %s: the repository signs its channel indexes, so it restores only an archive "
        "signed by a key it trusts; give public_keys, or signing_key (the keys of its keyring are trusted)" % (
            archive, repo.path))
    assert snapshot(repo.path) == before


@pytest.mark.parametrize("record_path", [ESCAPE, "records/payroll-agent/9.9/../../../../evil.txt",
                                         "records/other/9.9/%s.json" % ("a" * 64), "records/payroll-agent/9.9/notes.txt",
                                         "/tmp/evil.txt"])
def test_an_archive_listing_a_path_archive_retire_never_writes_is_refused_even_when_signed(
        repo, tmp_path, keyring, record_path):
    repo.add(package(tmp_path))
    archive = crafted_archive(tmp_path / "crafted.esdarchive", record_path, signer=keyring.active_signer())
    before, outside = snapshot(repo.path), sorted(os.listdir(str(tmp_path)))
    with pytest.raises(IntegrityError) as refused:
        repo.restore(archive)
    assert str(refused.value) == (
        "archive %s is not restorable: it lists the test record path %r for payroll-agent 9.9; an archive holds test "
        "records only as records/payroll-agent/9.9/<64 hex digits>.json or .report" % (archive, record_path))
    assert snapshot(repo.path) == before and sorted(os.listdir(str(tmp_path))) == outside
    assert not os.path.exists(str(tmp_path / "evil.txt"))
    # an unsigned repository (nothing signed yet, no signer) refuses it just the same
    plain = Repository(str(tmp_path / "plain"), actor="bob")
    plain.add(package(tmp_path, version="1.0"))
    with pytest.raises(IntegrityError, match="is not restorable: it lists the test record path"):
        plain.restore(crafted_archive(tmp_path / "unsigned.esdarchive", record_path))
    assert not os.path.exists(str(tmp_path / "evil.txt"))


def test_a_crafted_package_record_is_refused(repo, tmp_path, keyring):
    repo.add(package(tmp_path))
    archive = crafted_archive(tmp_path / "crafted.esdarchive", "records/x/1/%s.json" % ("a" * 64),
                              signer=keyring.active_signer(), name="../../x", version="1")
    with pytest.raises(IntegrityError, match="is not restorable: a package record's name must be lower-case letters"):
        repo.restore(archive)


# --- an interrupted retirement finishes when it runs again ---------------------------------------

class Killed(BaseException):
    """The process stops here (a kill: no exception handler of the code under test runs)."""


def ticking_clock():
    seconds = iter(range(10 ** 6))
    return lambda: "2026-03-02T10:%02d:%02dZ" % divmod(next(seconds) % 3600, 60)


def stop_after(method, calls=1):
    """Wrap Repository.<method>: run it `calls` times, then stop the process at the next call."""
    original = getattr(Repository, method)
    seen = []

    def wrapper(self, *args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise Killed(method)
        return original(self, *args, **kwargs)
    return wrapper


def killed_after(method, calls=0):
    """Wrap Repository.<method>: run it, and stop the process right after its call number `calls` + 1."""
    original = getattr(Repository, method)
    seen = []

    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        seen.append(1)
        if len(seen) > calls:
            raise Killed(method)
        return result
    return wrapper


def mark_first_then_stop():
    """Wrap Repository._mark_retiring: mark the first record only, then stop the process."""
    original = Repository._mark_retiring

    def wrapper(self, plan, archive_of):
        original(self, plan[:1], archive_of)
        raise Killed("_mark_retiring")
    return wrapper


INTERRUPTIONS = {
    "while marking the records": ("_mark_retiring", mark_first_then_stop),
    "before the archive is written": ("_write_archive", lambda: stop_after("_write_archive", 0)),
    "after the archive, before the channels": ("_write_archive", lambda: killed_after("_write_archive")),
    "after the channels, before the blobs": ("_drop_from_channels", lambda: killed_after("_drop_from_channels")),
    "between two blob deletions": ("_delete_blob", lambda: stop_after("_delete_blob", 1)),
    "after the blobs, before the tombstones": ("_delete_blobs", lambda: killed_after("_delete_blobs")),
    "between two tombstones": ("_event", lambda: killed_after("_event")),
}


@pytest.mark.parametrize("where", sorted(INTERRUPTIONS))
def test_an_interrupted_archive_retire_finishes_when_run_again(tmp_path, keyring, monkeypatch, where):
    repo = Repository(str(tmp_path / "repo"), signer=keyring.active_signer(), actor="alice", now=ticking_clock())
    artifact = package(tmp_path)
    base = repo.add(artifact)["sha256"]
    update = repo.add(package(tmp_path, name="payroll-agent-hotfix", version="1",
                              extra_spec="updates: [payroll-agent]\n"))["sha256"]
    other = repo.add(package(tmp_path, name="ledger", version="1.0"))["sha256"]
    for name, version in (("payroll-agent", "2.4.1"), ("payroll-agent-hotfix", "1"), ("ledger", "1.0")):
        to_production(repo, tmp_path, name, version)
    archives = str(tmp_path / "archives")
    method, patch = INTERRUPTIONS[where]
    with monkeypatch.context() as patched:
        patched.setattr(Repository, method, patch())
        with pytest.raises(Killed):
            repo.retire("payroll-agent", archive_dir=archives)
    planned = repo.load_record("payroll-agent", "2.4.1").get("archive")
    first_archive_written = planned is not None and os.path.isfile(planned)
    retiring = [r for r in repo.records() if r.get("state") == "retiring"]
    assert retiring, "the stopped run left no record marked retiring"
    with pytest.raises(_repository.RepositoryError) as refused:
        repo.promote(retiring[0]["name"], retiring[0]["version"], "production")
    assert str(refused.value) == "%s %s is not in repository %s (its retirement was interrupted: run the retirement " \
        "again to finish it)" % (retiring[0]["name"], retiring[0]["version"], repo.path)

    left = sorted(r["name"] for r in repo.records() if r["state"] != "retired" and r["name"] != "ledger")
    before = snapshot(repo.path)
    plan = repo.retire("payroll-agent", archive_dir=archives, check=True)
    assert snapshot(repo.path) == before

    result = repo.retire("payroll-agent", archive_dir=archives)
    assert result["changed"] is True and result["retired"] == plan["retired"]
    # what the stopped run had not finished, with every channel it left (the stopped run took some out already)
    assert sorted((r["name"], r["channels"]) for r in result["retired"]) == [
        (name, ["build", "test", "production"]) for name in left]
    path = result["archive"]["path"]
    if first_archive_written:  # the archive the stopped run wrote is kept, not written twice
        assert path == planned
        assert any(a.startswith("keep archive %s" % planned) for a in result["actions"])
    assert [f for f in os.listdir(archives) if f.endswith(_repository.ARCHIVE_SUFFIX)] == [os.path.basename(path)]
    assert open(path + ".sha256").read().split() == [result["archive"]["sha256"], os.path.basename(path)]
    assert result["archive"]["signed_by"] == keyring.load()["active"]
    for name, version in (("payroll-agent", "2.4.1"), ("payroll-agent-hotfix", "1")):
        record = repo.load_record(name, version)
        assert (record["state"], record["archive"]) == ("retired", path)
        assert not set(_repository.RETIRING_KEYS) & set(record)
    for channel in repo.channels:
        assert [e["name"] for e in repo.load_channel(channel)["entries"]] == ["ledger"]
    assert not os.path.exists(repo.blob_path(base)) and not os.path.exists(repo.blob_path(update))
    assert os.path.exists(repo.blob_path(other))
    assert repo.verify(keyring.public_keys())["valid"]
    assert repo.retire("payroll-agent", archive_dir=archives)["changed"] is False

    info = _repository.verify_archive(path, keyring.public_keys())
    assert sorted((p["record"]["name"], p["record"]["state"], sorted(p["channels"])) for p in info["manifest"]["packages"]) == [
        ("payroll-agent", "active", ["build", "production", "test"]),
        ("payroll-agent-hotfix", "active", ["build", "production", "test"])]
    restored = repo.restore(path)
    assert sorted(r["name"] for r in restored["restored"]) == ["payroll-agent", "payroll-agent-hotfix"]
    assert open(repo.blob_path(base), "rb").read() == open(artifact, "rb").read()
    assert not set(_repository.RETIRING_KEYS + ("archive",)) & set(repo.load_record("payroll-agent", "2.4.1"))


def test_an_archive_that_cannot_be_written_retires_nothing(repo, tmp_path, monkeypatch):
    digest = repo.add(package(tmp_path))["sha256"]
    to_production(repo, tmp_path, "payroll-agent", "2.4.1")
    before = repo.load_record("payroll-agent", "2.4.1")

    def full_disk(self, *args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Repository, "_write_archive", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        repo.retire("payroll-agent", archive_dir=str(tmp_path / "archives"))
    assert repo.load_record("payroll-agent", "2.4.1") == before
    assert repo.channels_holding("payroll-agent", "2.4.1") == ["build", "test", "production"]
    assert os.path.exists(repo.blob_path(digest))


def test_an_interrupted_plain_retire_that_deleted_the_blob_cannot_become_an_archive_retire(repo, tmp_path, monkeypatch):
    repo.add(package(tmp_path))
    with monkeypatch.context() as patched:
        patched.setattr(Repository, "_delete_blobs", killed_after("_delete_blobs"))
        with pytest.raises(Killed):
            repo.retire("payroll-agent")
    with pytest.raises(IntegrityError) as refused:
        repo.retire("payroll-agent", archive_dir=str(tmp_path / "archives"))
    assert str(refused.value) == (
        "cannot archive payroll-agent 2.4.1: its retirement was interrupted after its blob was deleted, and no intact "
        "archive of it is left (it had none); finish the retirement without an archive (state=retired)")
    assert repo.retire("payroll-agent")["changed"] is True
    assert repo.load_record("payroll-agent", "2.4.1")["state"] == "retired"


def test_a_promotion_after_a_check_mode_add_on_the_same_object_predicts_the_real_run(repo, tmp_path):
    artifact, ledger = package(tmp_path), package(tmp_path, name="ledger", version="1.0")
    repo.add(ledger)
    before = snapshot(repo.path)
    added = repo.add(artifact, check=True)
    promoted = repo.promote("payroll-agent", "2.4.1", "test", check=True)
    assert snapshot(repo.path) == before
    assert promoted["actions"] == ["promote payroll-agent 2.4.1 from build to test"]
    assert promoted["entry"]["sha256"] == added["sha256"]
    with pytest.raises(RuleError, match="that skips test"):  # the rules apply to the planned add as to a real one
        repo.promote("payroll-agent", "2.4.1", "production", from_channel="build", override="",
                     test_report={"id": "TR-9", "name": "payroll-agent", "version": "2.4.1", "result": "passed"},
                     check=True)
    real = Repository(repo.path, signer=repo.signer, actor="alice")
    assert real.add(artifact)["actions"] == added["actions"]
    assert real.promote("payroll-agent", "2.4.1", "test")["actions"] == promoted["actions"]
    # without the planned add, the same check-mode promotion is refused
    fresh = Repository(repo.path + "-fresh", signer=repo.signer)
    fresh.add(ledger)
    with pytest.raises(_repository.RepositoryError, match="payroll-agent 2.4.1 is not in repository"):
        fresh.promote("payroll-agent", "2.4.1", "test", check=True)
