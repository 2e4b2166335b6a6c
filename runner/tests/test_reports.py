"""The reports from real engine runs on a simulated fleet (no ansible): test report and JUnit XML, audit
snapshots and their diff, status, evaluation, closure, release notes, inventory drift, JSON schemas, HTML."""

from __future__ import annotations

import hashlib
import json
import os
import re

import jsonschema
import junitparser
import pytest

from esd import audit, cli, engine as engine_mod, inventory, ledger as ledger_mod, reports
from esd.engine import Engine
from esd.errors import UsageError
from esd.reports import closure, html, markdown as md, schema
from esd.reports import testing as test_report_mod

from esd_fixtures import REPO, minimal_document, write_document
from report_fixtures import Clock, SimulatedFleet, at

PRODUCTION = ["prod-%03d" % n for n in range(1, 25)]
CO = "CO-software-release"



@pytest.fixture
def clock(monkeypatch):
    clock = Clock(at("2026-03-01T09:00:00"))
    monkeypatch.setattr(ledger_mod, "now", clock)
    return clock


@pytest.fixture
def fleet(monkeypatch):
    fleet = SimulatedFleet()
    fleet.install(PRODUCTION, "hello-agent", "1.0.0")
    monkeypatch.setattr(engine_mod, "run_stage", fleet)
    return fleet


@pytest.fixture
def engine(tmp_path, clock):
    return Engine(ledger_mod.Ledger(str(tmp_path / "ledger")), project_dir=REPO, clock=clock)


def drive(engine, reference, actor="erin", approver="dave"):
    outcome = engine.run(reference, actor)
    while outcome.status == "waiting":
        engine.decide(outcome.change_order, outcome.step, approver, True, "ok by %s" % approver)
        outcome = engine.run(outcome.change_order, actor)
    return outcome


def release(workspace, **overrides):
    overrides.setdefault("spec.rollout", {"wave_size": 7})
    return write_document(workspace, minimal_document("software_release", **overrides))


def state_of(engine, change_order=CO):
    entry = engine.ledger.get(change_order)
    return entry, entry.read_state()


# --- the test report ---------------------------------------------------------------------------------

def test_a_failed_then_passed_test_gives_a_retested_defect_and_a_passing_junit(workspace, engine, fleet, tmp_path):
    fleet.failures["test"] = [{"test-02": "failed"}]
    assert engine.run(release(workspace), "erin").status == "failed"
    entry, state = state_of(engine)
    failed = reports.build("test", state, entry)
    assert (failed["conclusion"], failed["rework"]) == ("rework", 1)
    status = reports.build("status", state, entry)
    assert (status["stages_done"], status["stages_failed"], status["stages_pending"][:2]) == (
        ["build"], ["test"], ["promote_test", "promote"])
    assert "Done: build. Failed: test. Pending: promote\\_test, promote," in reports.render("status", status, "md")
    assert failed["conclusion_reason"].startswith("stage test failed: 1 of 2 host(s) failed")
    assert [(d["id"], d["stage"], d["attempt"], d["host"], d["check"], d["status"]) for d in failed["defects"]] == [
        ("D1", "test", 1, "test-02", "Test package | backout | Rehearse the backout plan (roll back, or uninstall a "
                                     "first install)", "outstanding")]
    # The stage wrote its test report (and JUnit XML) into the ledger when it failed: the evidence for rework.
    assert os.path.isfile(os.path.join(entry.path, "report", "test.junit.xml"))
    attempt = failed["stages"][1]["attempts"][0]
    assert attempt["backout"] == {"test-01": "passed", "test-02": "failed"}
    assert [c["result"] for c in attempt["hosts"]["test-02"]["checks"]] == ["passed", "passed", "failed", "not_run"]

    assert engine.run(CO, "erin").status == "waiting"           # attempt 2 passes; test_signoff pending
    entry, state = state_of(engine)
    data = reports.build("test", state, entry)
    assert (data["conclusion"], data["rework"]) == ("pass", 1)
    assert data["defects"][0]["status"] == "retested (passed in attempt 2)"
    assert data["backout"] == {"rehearsed": True, "hosts": {"test-01": "passed", "test-02": "passed"}}
    assert data["scope"] == {"stages": ["build", "test"], "hosts": ["build-01", "test-01", "test-02"], "not_run": []}
    # Latest attempts: build 5 checks (1 skipped by its condition), test 4 checks on 2 hosts.
    assert data["totals"] == {"passed": 12, "failed": 0, "unreachable": 0, "skipped": 1, "not_run": 0, "checks": 13}

    junit_path = tmp_path / "test.xml"
    junit_path.write_text(reports.render("test", data, "junit"))
    xml = junitparser.JUnitXml.fromfile(str(junit_path))
    suites = {suite.name: suite for suite in xml}
    assert sorted(suites) == ["%s.build" % CO, "%s.test" % CO]
    test_suite = suites["%s.test" % CO]
    assert (test_suite.tests, test_suite.failures, test_suite.errors, test_suite.skipped) == (9, 0, 0, 0)
    properties = {p.name: p.value for p in test_suite.properties()}
    assert (properties["attempt"], properties["attempt_status"], properties["conclusion"]) == ("2", "succeeded",
                                                                                               "pass")
    cases = [(case.classname, case.name) for case in test_suite]
    assert ("%s.test.test-02" % CO, "Test package | verify | Check the backout left the host as it was") in cases
    build_suite = suites["%s.build" % CO]
    skipped = [case for case in build_suite if case.result and isinstance(case.result[0], junitparser.Skipped)]
    assert [case.name for case in skipped] == ["Build package | after build | Run the site's post-build tasks"]


def test_an_image_test_reports_the_backout_rehearsed_inside_the_test_node(workspace, engine, fleet):
    doc = minimal_document("test_image")
    assert drive(engine, write_document(workspace, doc)).status == "succeeded"
    entry, state = state_of(engine, doc["metadata"]["id"])
    data = reports.build("test", state, entry)
    assert data["conclusion"] == "pass"
    assert data["conclusion_reason"] == "every build and test stage passed; the backout was rehearsed"
    assert data["backout"] == {"rehearsed": True, "hosts": {"test-01": "passed", "test-02": "passed"}}
    notes = reports.build("release-notes", state, entry)
    assert notes["backout"]["rehearsed"] is True
    assert "(rehearsed: yes)" in reports.render("release-notes", notes, "md")


def test_an_image_release_walks_the_seed_workflow_and_approves_production_last(workspace, engine, fleet):
    from esd import catalogue, gates

    # Seed 000: validate request, build, automated install-and-test, validate image, announce UAT, UAT sign-off,
    # build sign-off, then the change board approves production (move to PROD, retire the designated image).
    request = catalogue.get("image_release")
    assert [step.id for step in request.steps] == [
        "deployment_plan", "build_image", "test_image", "validate_image", "announce_uat", "uat_signoff",
        "build_signoff", "change_board", "promote_image", "retire_designated_image"]
    doc = minimal_document("image_release", **{"spec.approvals": {"required": ["deployment_plan"]},
                                               "spec.image.retire": "2025.1"})
    co_id = doc["metadata"]["id"]
    outcome = engine.run(write_document(workspace, doc), "erin")
    decided = []
    while outcome.status == "waiting":
        decided.append(outcome.step)
        assert engine.decide(co_id, outcome.step, "dave", True, "ok").exit_code == 0
        outcome = engine.run(co_id, "erin")
    assert outcome.status == "succeeded", outcome.message
    assert decided == ["deployment_plan", "uat_signoff", "build_signoff", "change_board"]
    assert [call["stage"] for call in fleet.calls] == ["build_image", "test_image", "validate_image", "promote_image",
                                                       "retire_designated_image"]
    entry, state = state_of(engine, co_id)
    assert gates.rehearsal_problems(state, engine.ledger) == []
    data = reports.build("test", state, entry)
    assert (data["conclusion"], data["conclusion_reason"]) == (
        "pass", "every build and test stage passed; the backout was rehearsed")
    # validate_image rehearses nothing: it neither counts for nor against the rehearsal.
    assert [(stage["id"], stage["backout_rehearsed"]) for stage in data["stages"]] == [
        ("build_image", None), ("test_image", True), ("validate_image", None)]
    assert data["backout"] == {"rehearsed": True, "hosts": {"test-01": "passed", "test-02": "passed"}}
    notes = reports.build("release-notes", state, entry)
    assert notes["backout"]["rehearsed"] is True and "(rehearsed: yes)" in reports.render("release-notes", notes, "md")

    # The same change order if no test stage had reported a rehearsal (a site catalogue without esd_test): the
    # stages passed, but that is no pass, and production approval is refused.
    for step in state["plan"]["steps"]:
        if step["id"] == "test_image":
            step["outputs"] = {}
    data = reports.build("test", state, entry)
    assert (data["conclusion"], data["conclusion_reason"], data["backout"]["rehearsed"]) == (
        "incomplete", "every build and test stage passed, but the backout was NOT rehearsed: no test stage reports "
        "a backout rehearsal (production approval needs a rehearsed backout)", False)
    assert gates.rehearsal_problems(state, engine.ledger) == [
        "no test stage of change order %s reports a backout rehearsal (esd_test.backout_rehearsed): test_image, "
        "validate_image do not" % co_id]


@pytest.mark.parametrize("type_id, stage_id, unit_test", [
    ("prepare_image", "build_image", "passed"),       # esd_image reports it
    ("prepare_media", "build_media", "passed"),       # from the build's "unit test" checks (media report none)
])
def test_image_and_media_builds_show_their_unit_test(workspace, engine, fleet, type_id, stage_id, unit_test):
    doc = minimal_document(type_id)
    assert drive(engine, write_document(workspace, doc)).status == "succeeded"
    entry, state = state_of(engine, doc["metadata"]["id"])
    data = reports.build("test", state, entry)
    assert [(stage["id"], stage["unit_test"], stage["scan"]) for stage in data["stages"]] == [
        (stage_id, unit_test, None)]
    page = reports.render("test", data, "html")
    assert "unit test %s, virus scan not reported" % unit_test in page and "unit test None" not in page
    assert "unit test: %s; virus scan: not reported" % unit_test in reports.render("test", data, "md")


def test_junit_of_a_failing_test_has_the_failure_and_the_checks_not_run(workspace, engine, fleet, tmp_path):
    fleet.failures["test"] = [{"test-01": "failed", "test-02": "unreachable"}]
    engine.run(release(workspace), "erin")
    entry, state = state_of(engine)
    path = tmp_path / "failing.xml"
    path.write_text(reports.render("test", reports.build("test", state, entry), "junit"))
    suite = next(s for s in junitparser.JUnitXml.fromfile(str(path)) if s.name.endswith(".test"))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (9, 1, 1, 2)
    failure = next(case for case in suite if case.result and isinstance(case.result[0], junitparser.Failure))
    assert failure.classname == "%s.test.test-01" % CO
    assert "Rehearse the backout plan" in failure.name
    assert failure.result[0].message.startswith("Test package | backout | Rehearse the backout plan")
    error = next(case for case in suite if case.result and isinstance(case.result[0], junitparser.Error))
    assert (error.classname, error.result[0].type) == ("%s.test.test-02" % CO, "unreachable")


def test_a_change_order_without_build_or_test_stages_has_nothing_to_test(workspace, engine, fleet):
    doc = minimal_document("rollback_update")
    engine.run(write_document(workspace, doc), "erin")
    entry, state = state_of(engine, "CO-rollback-update")
    data = reports.build("test", state, entry)
    assert (data["conclusion"], data["stages"], data["defects"]) == ("not applicable", [], [])


# --- audit snapshots ------------------------------------------------------------------------------------

def test_production_stages_are_snapshotted_before_and_after_and_recorded_in_the_audit_log(workspace, engine, fleet):
    assert drive(engine, release(workspace)).status == "succeeded"
    entry, state = state_of(engine)
    production = ["install_beta", "install_wave_1", "install_wave_2", "install_wave_3", "commit"]
    files = sorted(os.listdir(os.path.join(entry.path, "audit")))
    assert files == sorted("%s-%s.json" % (stage, when) for stage in production for when in ("before", "after"))
    records = [r for r in entry.read_audit() if r["event"] == "inventory_snapshot"]
    assert [(r["data"]["stage"], r["data"]["when"], r["data"]["hosts"]) for r in records] == [
        ("install_beta", "before", 3), ("install_beta", "after", 3), ("install_wave_1", "before", 7),
        ("install_wave_1", "after", 7), ("install_wave_2", "before", 7), ("install_wave_2", "after", 7),
        ("install_wave_3", "before", 7), ("install_wave_3", "after", 7), ("commit", "before", 24),
        ("commit", "after", 24)]
    for record in records:                       # the log holds each snapshot's digest
        with open(os.path.join(entry.path, record["data"]["file"]), "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == record["data"]["sha256"]
    # A software change order's snapshots come from the stages' own esd.osp.software calls (software_inventory):
    # no audit.yml run at all when every host reported.
    assert {r["data"]["read_with"] for r in records} == {"esd.osp.software"}
    assert [call["playbook"] for call in fleet.calls if call["playbook"] == "audit.yml"] == []
    production_calls = [call for call in fleet.calls if call["stage"] in production]
    assert production_calls and all(call["extravars"]["software_inventory"] is True for call in production_calls)
    assert all("software_inventory" not in call["extravars"] for call in fleet.calls
               if call["stage"] not in production)
    before = audit.read_snapshot(entry, "install_wave_1", "before")
    jsonschema.validate(before, schema.SNAPSHOT)
    assert before["hosts"]["prod-004"]["packages"]["hello-agent"]["active"] == "1.0.0"
    assert audit.read_snapshot(entry, "install_wave_1", "after")["hosts"]["prod-004"]["packages"]["hello-agent"][
        "active"] == "1.1.0"
    assert entry.verify_audit()[0]

    status = reports.build("status", state, entry)
    changes = status["inventory_changes"]
    assert changes["snapshots"] == 10 and changes["rolled_back"] == []
    assert changes["hosts"]["prod-010"] == {
        "before": {"packages": {"hello-agent": "1.0.0 committed"}, "image": None, "image_probed": False},
        "after": {"packages": {"hello-agent": "1.1.0 committed"}, "image": None, "image_probed": False},
        "changes": [{"package": "hello-agent", "kind": "updated", "before": "1.0.0 committed",
                     "after": "1.1.0 committed"}], "unread": False}
    text = reports.render("status", status, "text")
    assert "24  hello-agent: 1.0.0 committed -> 1.1.0 committed (updated): prod-001" in text


def test_a_stage_retried_keeps_its_first_baseline_and_the_latest_after(workspace, engine, fleet):
    fleet.failures["commit"] = [{"prod-012": "unreachable"}]
    assert drive(engine, release(workspace)).status == "failed"
    entry, _ = state_of(engine)
    first_before = audit.read_snapshot(entry, "commit", "before")
    assert audit.read_snapshot(entry, "commit", "after")["attempt"] == 1
    assert audit.read_snapshot(entry, "commit", "after")["hosts"]["prod-012"]["packages"]["hello-agent"][
        "committed"] == "1.0.0"
    # The unreachable host did not report its inventory: it alone was read with audit.yml after the stage, and
    # (never reached by esd.osp.software) that read is its baseline too.
    assert audit.read_snapshot(entry, "commit", "after")["read_with_audit_playbook"] == ["prod-012"]
    assert first_before["read_after_the_stage"] == ["prod-012"]
    assert [call["hosts"] for call in fleet.calls if call["playbook"] == "audit.yml"] == [["prod-012"]]
    assert first_before["hosts"]["prod-012"]["packages"]["hello-agent"]["committed"] == "1.0.0"
    assert first_before["hosts"]["prod-011"]["packages"]["hello-agent"]["committed"] == "1.0.0"
    assert drive(engine, CO).status == "succeeded"
    assert audit.read_snapshot(entry, "commit", "before") == first_before
    after = audit.read_snapshot(entry, "commit", "after")
    assert after["attempt"] == 2 and after["hosts"]["prod-012"]["packages"]["hello-agent"]["committed"] == "1.1.0"


def test_an_image_rollout_audits_the_images_with_one_read_between_waves(workspace, engine, fleet):
    fleet.provision(PRODUCTION, "std-server", "2025.4")
    doc = minimal_document("update_image", **{"spec.rollout": {"wave_size": 7}})
    co_id = doc["metadata"]["id"]
    assert engine.run(write_document(workspace, doc), "erin").step == "change_board"
    entry, state = state_of(engine, co_id)
    assert [(g["state"], g["count"]) for g in reports.build("status", state, entry)["hosts_by_state"]] == [
        ("pending", 24)]
    engine.decide(co_id, "change_board", "dave", True)
    assert engine.run(co_id, "erin").status == "succeeded"
    entry, state = state_of(engine, co_id)
    beta, waves = PRODUCTION[:3], [PRODUCTION[3:10], PRODUCTION[10:17], PRODUCTION[17:]]
    # Image change orders read the hosts with audit.yml (software and the running image) around each stage; between
    # two back-to-back stages (only the automatic go/no-go between them) one run reads the finished stage and the
    # next one together, and that next stage's "before" is taken from it.
    assert [(call["stage"], call["hosts"], call["extravars"]["audit_image"]) for call in fleet.calls
            if call["playbook"] == "audit.yml"] == [
        ("update_image_beta.audit_before", beta, True),
        ("update_image_beta.audit_after", beta + waves[0], True),
        ("update_image_wave_1.audit_after", waves[0] + waves[1], True),
        ("update_image_wave_2.audit_after", waves[1] + waves[2], True),
        ("update_image_wave_3.audit_after", waves[2], True)]
    records = [r["data"] for r in entry.read_audit() if r["event"] == "inventory_snapshot"]
    assert [(r["stage"], r["when"], r["hosts"]) for r in records] == [
        (stage, when, count) for stage, count in (("update_image_beta", 3), ("update_image_wave_1", 7),
                                                  ("update_image_wave_2", 7), ("update_image_wave_3", 7))
        for when in ("before", "after")]
    before = audit.read_snapshot(entry, "update_image_wave_1", "before")
    after = audit.read_snapshot(entry, "update_image_wave_1", "after")
    jsonschema.validate(before, schema.SNAPSHOT)
    assert (before["image_probed"], before["seconds"], sorted(before["hosts"])) == (True, 0.0, waves[0])
    assert before["hosts"]["prod-004"]["image"] == {"family": "std-server", "version": "2025.4", "parent": None,
                                                    "slot": "a", "status": "committed"}
    assert after["hosts"]["prod-004"]["image"] == {"family": "std-server", "version": "2026.1", "parent": "2025.4",
                                                   "slot": "b", "status": "uncommitted"}
    assert audit.stage_changes(before, after)["prod-004"] == [
        {"package": None, "kind": "updated", "before": "std-server 2025.4", "after": "std-server 2026.1"}]

    status = reports.build("status", state, entry)
    changes = status["inventory_changes"]
    assert (changes["snapshots"], changes["rolled_back"]) == (8, [])
    assert changes["hosts"]["prod-010"] == {
        "before": {"packages": {"hello-agent": "1.0.0 committed"}, "image": "std-server 2025.4", "image_probed": True},
        "after": {"packages": {"hello-agent": "1.0.0 committed"}, "image": "std-server 2026.1", "image_probed": True},
        "changes": [{"package": None, "kind": "updated", "before": "std-server 2025.4", "after": "std-server 2026.1"}],
        "unread": False}
    # esd.osp.image_node reports the image as a dict and committed as a bool: grouped by image and slot.
    assert [(g["state"], g["result"], g["count"]) for g in status["hosts_by_state"]] == [
        ("image std-server 2026.1 (slot b), uncommitted", "ok", 24)]
    text = reports.render("status", status, "text")
    assert "24  image std-server 2026.1 (slot b), uncommitted: prod-001" in text
    assert "24  image: std-server 2025.4 -> std-server 2026.1 (updated): prod-001" in text
    assert "| 24 | hello-agent 1.0.0 committed; image std-server 2025.4 | hello-agent 1.0.0 committed; image " \
        "std-server 2026.1 | image: std-server 2025.4 -\\> std-server 2026.1 (updated) |" in reports.render(
            "status", status, "md")
    evaluation = reports.build("evaluation", state, entry)
    assert (evaluation["production"]["endpoints"], evaluation["production"]["success_percent"]) == (24, 100.0)


@pytest.mark.parametrize("old, new, kind", [
    (None, {"active": "1.0", "committed": "1.0", "installed": ["1.0"]}, "installed"),
    ({"active": "1.0", "committed": "1.0", "installed": ["1.0"]},
     {"active": "1.1", "committed": "1.0", "backups": ["1.0"], "installed": ["1.0", "1.1"]}, "updated"),
    ({"active": "1.1", "committed": "1.0", "backups": ["1.0"], "installed": ["1.0", "1.1"]},
     {"active": "1.1", "committed": "1.1", "installed": ["1.1"]}, "committed"),
    ({"active": "1.1", "committed": "1.0", "backups": ["1.0"], "installed": ["1.0", "1.1"]},
     {"active": "1.0", "committed": "1.0", "installed": ["1.0"]}, "rolled back"),
    ({"active": "1.1", "committed": "1.1", "installed": ["1.1"]},
     {"active": "1.0", "committed": "1.0", "installed": ["1.0"]}, "downgraded"),
    ({"active": "1.0", "committed": "1.0", "installed": ["1.0"]}, None, "removed"),
    ({"active": "1.0", "committed": "1.0", "installed": ["1.0"], "last_change": {"result": "ok"}},
     {"active": "1.0", "committed": "1.0", "installed": ["1.0"], "last_change": {"result": "reverted"}}, "reverted"),
    ({"active": "1.9", "committed": "1.9", "installed": ["1.9"]},
     {"active": "1.10", "committed": "1.9", "backups": ["1.9"], "installed": ["1.10", "1.9"]}, "updated"),
])
def test_what_changed_on_a_host_is_named(old, new, kind):
    def host(package, image=None):
        return {"packages": {"p": package} if package else {}, "image": image, "image_probed": True, "error": None}
    assert [change["kind"] for change in audit.diff_host(host(old), host(new))] == [kind]
    assert audit.diff_host(host(old), host(old)) == []


@pytest.mark.parametrize("old, new, kind", [
    ({"family": "std", "version": "1.9.0"}, {"family": "std", "version": "1.10.0"}, "updated"),
    # back to the node's previous A/B slot (image_node_info) or the image it was built from (its manifest)
    ({"family": "std", "version": "1.1.0", "parent": "1.0.0"}, {"family": "std", "version": "1.0.0"}, "rolled back"),
    ({"family": "std", "version": "1.2.0", "parent": "1.1.0"}, {"family": "std", "version": "1.0.0"}, "downgraded"),
    ({"family": "std", "version": "1.0.0"}, {"family": "web", "version": "1.0.0"}, "image changed"),
    (None, {"family": "std", "version": "1.0.0"}, "image changed"),
])
def test_what_changed_in_the_running_image_is_named(old, new, kind):
    def host(image):
        return {"packages": {}, "image": image, "image_probed": True, "error": None}
    changes = audit.diff_host(host(old), host(new))
    assert [(c["package"], c["kind"], c["after"]) for c in changes] == [
        (None, kind, "%s %s" % (new["family"], new["version"]))]
    assert audit.diff_host(host(new), host(new)) == []


def test_an_image_rollback_counts_as_a_rollback_and_an_unprobed_snapshot_as_no_change():
    before = {"packages": {}, "image": {"family": "std", "version": "1.1.0", "parent": "1.0.0"}, "image_probed": True,
              "error": None}
    after = {"packages": {}, "image": {"family": "std", "version": "1.0.0"}, "image_probed": True, "error": None}
    assert audit.diff_host(before, after) == [{"package": None, "kind": "rolled back", "before": "std 1.1.0",
                                               "after": "std 1.0.0"}]
    stage = {"before": {"hosts": {"node-1": before}}, "after": {"hosts": {"node-1": after}}}
    assert audit.stage_changes(stage["before"], stage["after"]) == {"node-1": [
        {"package": None, "kind": "rolled back", "before": "std 1.1.0", "after": "std 1.0.0"}]}
    # A snapshot that did not probe the image (software change orders) never reports an image change, either way.
    assert audit.diff_host(before, dict(after, image_probed=False)) == []
    assert audit.diff_host(dict(before, image_probed=False), dict(after, image=None)) == []
    assert audit.diff_host(before, {"packages": {}, "image": None, "error": "unreachable: timeout"}) == []


# --- status, evaluation, closure, release notes ---------------------------------------------------------------

def test_the_status_report_shows_pending_gates_decisions_artifacts_and_the_next_step(workspace, engine, fleet):
    engine.run(release(workspace), "erin")
    entry, state = state_of(engine)
    data = reports.build("status", state, entry)
    assert data["stages_done"] == ["build", "test"]
    assert data["stages_pending"][:4] == ["promote_test", "promote", "distribute", "install_beta"]
    assert data["next_step"] == {
        "action": "decide gate test_signoff (Test sign-off (test plan passed, backout rehearsed)); not the builder",
        "command": "esd approve %s --gate test_signoff --as <identity> --comment <why>   (or esd deny)" % CO}
    assert [(a["kind"], a["sha256"]) for a in data["artifacts"]] == [("change_order", state["change_order"]["digest"]),
                                                                      ("artifact", "d" * 64)]
    engine.decide(CO, "test_signoff", "carol", True, "all checks passed")
    data = reports.build("status", *reversed(state_of(engine)))
    gate = next(g for g in data["gates"] if g["id"] == "test_signoff")
    assert (gate["status"], gate["decided_by"], gate["comment"]) == ("approved", "carol", "all checks passed")
    assert gate["decided_at"] == "2026-03-01T09:00:00.000+00:00"
    assert data["next_step"]["command"] == "esd run %s" % CO
    jsonschema.validate(json.loads(reports.render("status", data, "json")), schema.STATUS)


def test_hosts_per_state_cover_every_target_before_during_and_after_the_rollout(workspace, engine, fleet):
    def groups(change_order=CO):
        data = reports.build("status", *reversed(state_of(engine, change_order)))
        return data, [(g["state"], g["result"], g["count"], g["hosts"]) for g in data["hosts_by_state"]]

    path = release(workspace, **{"spec.rollout": {"go_no_go": "manual", "wave_size": 7},
                                 "spec.approvals": {"required": ["client_acceptance"]}})
    assert engine.run(path, "erin").step == "test_signoff"
    data, found = groups()
    assert found == [("pending", "pending", 24, PRODUCTION)]          # before production: every target, pending
    assert data["host_states"]["prod-024"] == {"state": "pending", "result": "pending", "stage": None}
    engine.decide(CO, "test_signoff", "carol", True)
    assert engine.run(CO, "erin").step == "change_board"
    engine.decide(CO, "change_board", "dave", True)
    assert engine.run(CO, "erin").step == "go_no_go"
    data, found = groups()
    beta = ["prod-001", "prod-002", "prod-003"]
    assert found == [("pending", "pending", 21, PRODUCTION[3:]),
                     ("active 1.1.0, committed 1.0.0, backup 1.0.0", "ok", 3, beta)]
    assert data["host_states"]["prod-001"] == {"state": "active 1.1.0, committed 1.0.0, backup 1.0.0", "result": "ok",
                                               "stage": "install_beta"}
    text = reports.render("status", data, "text")
    assert "Hosts per state (24 target(s)):\n   21  pending: prod-004, prod-005, prod-006, prod-007 ... prod-024\n" \
        "    3  active 1.1.0, committed 1.0.0, backup 1.0.0: prod-001, prod-002, prod-003\n" in text
    engine.decide(CO, "go_no_go", "frank", True)
    assert engine.run(CO, "erin").step == "client_acceptance"             # after the waves, before the commit
    assert groups()[1] == [("active 1.1.0, committed 1.0.0, backup 1.0.0", "ok", 24, PRODUCTION)]
    engine.decide(CO, "client_acceptance", "alice", True)
    assert engine.run(CO, "erin").status == "succeeded"
    data, found = groups()
    assert found == [("active 1.1.0, committed 1.1.0", "ok", 24, PRODUCTION)]
    assert data["host_states"]["prod-024"]["stage"] == "commit"
    markdown = reports.render("status", data, "md")
    assert "| 24 | active 1.1.0, committed 1.1.0 | prod-001, prod-002, prod-003, prod-004 ... prod-024 |" in markdown


def test_hosts_per_state_of_a_halted_and_backed_out_rollout(workspace, engine, fleet):
    path = release(workspace, **{"spec.rollout": {"go_no_go": "manual", "wave_size": 7}})
    outcome = engine.run(path, "erin")
    while outcome.step != "go_no_go":
        engine.decide(CO, outcome.step, "dave", True)
        outcome = engine.run(CO, "erin")
    engine.decide(CO, "go_no_go", "frank", False, "beta users report errors")
    assert engine.run(CO, "erin").status == "rolled_back"
    data = reports.build("status", *reversed(state_of(engine)))
    assert [(g["state"], g["result"], g["count"]) for g in data["hosts_by_state"]] == [
        ("not reached: the rollout halted", "not_reached", 21),
        ("rolled back: active 1.0.0, committed 1.0.0", "rolled_back", 3)]
    assert data["host_states"]["prod-001"] == {"state": "rolled back: active 1.0.0, committed 1.0.0",
                                               "result": "rolled_back", "stage": "backout"}
    page = reports.render("status", data, "html")
    assert "rolled back: active 1.0.0, committed 1.0.0" in page and "not reached: the rollout halted" in page


def test_closing_records_lessons_learned_and_writes_the_evaluation(workspace, engine, fleet, clock):
    engine.run(release(workspace), "erin")
    with pytest.raises(UsageError, match="is waiting; only a finished change order"):
        closure.close(engine.ledger, CO, "alice", "too early")
    clock.set(at("2026-03-03T09:00:00"))
    assert drive(engine, CO).status == "succeeded"
    with pytest.raises(UsageError, match="needs a closing comment"):
        closure.close(engine.ledger, CO, "alice", "  ")
    closure.close(engine.ledger, CO, "alice", "Soak the beta group longer next time.", satisfaction=4,
                  known_errors=[("hello-agent logs a warning at start", "ignore it; fixed in 1.2")])
    with pytest.raises(UsageError, match="already closed by alice"):
        closure.close(engine.ledger, CO, "alice", "again")
    entry, state = state_of(engine)
    assert entry.verify_audit()[0]
    closed = [r for r in entry.read_audit() if r["event"] == "closed"]
    assert [(r["actor"], r["data"]["satisfaction"]) for r in closed] == [("alice", 4)]
    evaluation = reports.build("evaluation", state, entry)
    assert evaluation["lessons_learned"] == "Soak the beta group longer next time."
    assert (evaluation["on_time"], evaluation["lead_time_seconds"], evaluation["test"]["rework"]) == (True, 2 * 86400,
                                                                                                       0)
    # Everything but the wait for the test sign-off ran at once: the lead time is that wait.
    assert [(s["site"], s["lead_time_seconds"]) for s in evaluation["sites"]] == [
        ("build", 0.0), ("test", 0.0), ("production", 0.0)]
    assert evaluation["gate_wait_seconds"] == 2 * 86400
    assert evaluation["production"]["audit_seconds"] == 0.0        # read from the stages themselves: no audit.yml run
    assert dict(evaluation["production"], audit_seconds=None) == {
        "stages_run": 8, "endpoints": 24, "ok": 24, "failed": [], "success_percent": 100.0, "rolled_back": [],
        "rollbacks": 0, "rolled_back_after_failure": [], "rollbacks_after_failure": 0, "audit_snapshots": 10,
        "audit_seconds": None}
    markdown = reports.render("evaluation", evaluation, "md")
    assert "## Lessons learned\n\nSoak the beta group longer next time." in markdown
    assert "| Requested completion met | yes |" in markdown
    written = sorted(os.listdir(os.path.join(entry.path, "report")))
    assert set(written) >= set(["status.md", "status.html", "status.json", "test.md", "test.html", "test.json",
                              "test.junit.xml", "evaluation.md", "evaluation.html", "evaluation.json",
                              "release-notes.md", "release-notes.html", "release-notes.json"])
    notes = reports.build("release-notes", state, entry)
    assert (notes["name"], notes["version"], notes["artifact"]["sha256"]) == ("hello-agent", "1.1.0", "d" * 64)
    assert notes["known_errors"] == [{"source": "closure", "error": "hello-agent logs a warning at start",
                                      "hosts": [], "workaround": "ignore it; fixed in 1.2"}]
    for kind in ("status", "test", "evaluation", "release-notes"):
        with open(os.path.join(entry.path, "report", "%s.json" % kind), encoding="utf-8") as handle:
            jsonschema.validate(json.load(handle), schema.SCHEMAS[kind])


def test_a_rolled_back_change_order_is_final_closable_evaluated_and_counted(workspace, engine, fleet, clock):
    from esd import metrics, states

    # One definition of the final statuses, imported everywhere (never a copy that can drift).
    assert engine_mod.FINAL is states.FINAL and "rolled_back" in states.FINAL
    path = release(workspace, **{"spec.rollout": {"go_no_go": "manual", "wave_size": 7},
                                 "metadata.requested_completion": "2026-03-05"})
    outcome = engine.run(path, "erin")
    while outcome.step != "go_no_go":
        engine.decide(CO, outcome.step, "dave", True)
        outcome = engine.run(CO, "erin")
    assert outcome.status == "waiting"
    clock.set(at("2026-03-02T09:00:00"))
    engine.decide(CO, "go_no_go", "frank", False, "beta users report errors")
    assert engine.run(CO, "erin").status == "rolled_back"
    entry, state = state_of(engine)
    assert state["finished_at"] == "2026-03-02T09:00:00.000+00:00"
    status = reports.build("status", state, entry)
    assert status["next_step"] == {"action": "the change order is rolled_back; close it with the lessons learned",
                                   "command": "esd close %s --comment <lessons learned> --as <requester>" % CO}
    evaluation = reports.build("evaluation", state, entry)
    # Finished (not fulfilled): a finish time, not in the requested time, no lead time (nothing was delivered).
    assert (evaluation["finished_at"], evaluation["on_time"], evaluation["completed"],
            evaluation["lead_time_seconds"]) == ("2026-03-02T09:00:00.000+00:00", False, False, None)
    assert "| Lead time | none: the change order ended rolled\\_back |" in reports.render("evaluation", evaluation, "md")
    # Counted as finished at once, not "not yet counted" until its due date.
    data = metrics.compute(engine.ledger, now=at("2026-03-03T09:00:00"))
    assert data["measures"]["finished_in_requested_time"] == {
        "id": "finished_in_requested_time", "title": "Requests finished in the requested time", "numerator": 0,
        "denominator": 1, "percent": 0.0, "not_yet_counted": 0}
    assert data["by_status"] == {"rolled_back": 1}
    # The backout rolled the beta group back after the no-go: a failed change rolled back.
    assert (data["measures"]["rollback_rate"]["numerator"], data["measures"]["rollback_rate"]["denominator"]) == (1, 1)
    closed = closure.close(engine.ledger, CO, "alice", "Give the beta group a longer soak.")
    assert (closed["status"], closed["closure"]["closed_by"]) == ("rolled_back", "alice")
    entry, state = state_of(engine)
    assert reports.build("status", state, entry)["next_step"] == {
        "action": "none: the change order is rolled_back and closed", "command": None}
    assert reports.build("evaluation", state, entry)["lessons_learned"] == "Give the beta group a longer soak."


def test_closing_an_unfinished_change_order_names_the_final_statuses(workspace, engine, fleet):
    engine.run(release(workspace), "erin")
    with pytest.raises(UsageError) as refused:
        closure.close(engine.ledger, CO, "alice", "too early")
    assert str(refused.value) == (
        "change order %s is waiting; only a finished change order (succeeded, cancelled, denied or rolled_back) "
        "can be closed; cancel it first (esd cancel)" % CO)


def test_every_host_can_be_found_in_the_status_report_however_many_share_a_change(workspace, engine, fleet):
    fleet.failures["install_beta"] = [{"prod-002": "reverted"}]
    assert drive(engine, release(workspace, **{"spec.rollout": {"min_success_percent": 50, "wave_size": 7}})).status \
        == "succeeded"
    entry, state = state_of(engine)
    data = reports.build("status", state, entry)
    markdown = reports.render("status", data, "md")
    assert "### Every host" in markdown
    assert "| prod-017 | hello-agent: 1.0.0 committed -\\> 1.1.0 committed (updated) |" in markdown
    assert "| prod-002 | hello-agent: 1.0.0 committed -\\> 1.0.0 committed (reverted) |" in markdown
    page = reports.render("status", data, "html")
    assert "<details><summary>prod-001, prod-003, prod-004, prod-005 ... prod-024 (23 hosts)</summary>" in page
    assert "prod-017" in page.split("<details>", 1)[1]


def test_release_notes_of_an_image_update_come_from_its_manifest(workspace, engine, fleet):
    doc = minimal_document("prepare_image_update")
    assert drive(engine, write_document(workspace, doc)).status == "succeeded"
    entry, state = state_of(engine, doc["metadata"]["id"])
    notes = reports.build("release-notes", state, entry)
    jsonschema.validate(json.loads(reports.render("release-notes", notes, "json")), schema.RELEASE_NOTES)
    family, version = doc["spec"]["image"]["family"], str(doc["spec"]["image"]["version"])
    assert (notes["kind"], notes["name"], notes["version"]) == ("image", family, version)
    assert notes["updates"] == ["%s 1.0.0" % family]
    assert notes["package_description"] == "Debian 12 standard server image"
    assert (notes["artifact"]["files"], notes["artifact"]["build_time"], notes["artifact"]["size"]) == (
        8110, 1795140670, 79697572)
    assert notes["image"] == {
        "os": "Debian GNU/Linux 12 (bookworm)", "packages": 150, "parent": "%s 1.0.0" % family,
        "changes": {"added": [{"name": "tree", "version": "2.1.0-1"}], "removed": [],
                    "changed": [{"name": "openssl", "from": "3.0.20-1~deb12u2", "to": "3.0.22-1~deb12u2"}],
                    "unchanged": 148},
        "hardening": {"profile": "esd-baseline-1", "passed": 57, "failed": 0}}
    markdown = reports.render("release-notes", notes, "md")
    assert "| Updates | %s 1.0.0 |" % family in markdown
    assert "| Hardening | esd-baseline-1: 57 passed, 0 failed |" in markdown
    assert "## What changed since %s 1.0.0" % family in markdown
    assert "| tree | added | - | 2.1.0-1 |" in markdown and "| openssl | changed | 3.0.20-1~deb12u2 | 3.0.22-1~deb12u2 |" \
        in markdown
    assert "148 package(s) unchanged." in markdown
    page = reports.render("release-notes", notes, "html")
    assert_self_contained(page)
    assert "What changed since %s 1.0.0" % family in page and "<td>openssl</td>" in page


def test_release_notes_list_failed_endpoints_and_reverts_as_known_errors(workspace, engine, fleet):
    fleet.failures["install_beta"] = [{"prod-002": "reverted"}]
    path = release(workspace, **{"spec.rollout": {"min_success_percent": 50, "wave_size": 7}})
    assert drive(engine, path).status == "succeeded"
    entry, state = state_of(engine)
    notes = reports.build("release-notes", state, entry)
    assert notes["deployment"] == {"endpoints": 24, "ok": 23, "success_percent": 95.8, "rolled_back": ["prod-002"]}
    assert [(k["source"], k["hosts"]) for k in notes["known_errors"]] == [
        ("production", ["prod-002"]), ("problem PRB-%s-prod-002" % CO, ["prod-002"])]
    assert notes["known_errors"][0]["error"].startswith("failed in phase health_check: Failed to activate")
    evaluation = reports.build("evaluation", state, entry)
    assert evaluation["production"]["failed"] == ["prod-002"]
    assert evaluation["production"]["rolled_back_after_failure"] == ["prod-002"]
    markdown = reports.render("evaluation", evaluation, "md")
    assert "| Rollbacks | 1 endpoint(s): prod-002, 1 after a failed change |" in markdown
    status = reports.build("status", state, entry)
    assert [(g["state"], g["result"], g["count"]) for g in status["hosts_by_state"]] == [
        ("active 1.1.0, committed 1.1.0", "ok", 23), ("rolled back: active 1.0.0, committed 1.0.0", "rolled_back", 1)]
    # The backout's own success on prod-002 does not hide what the change did there.
    assert (status["endpoints"]["prod-002"]["result"], status["endpoints"]["prod-002"]["stage"]) == (
        "failed", "install_beta")
    assert status["inventory_changes"]["rolled_back"] == ["prod-002"]
    beta = next(stage for stage in status["inventory_changes"]["stages"] if stage["stage"] == "install_beta")
    assert beta["changes"]["prod-002"] == [{"package": "hello-agent", "kind": "reverted", "before": "1.0.0 committed",
                                            "after": "1.0.0 committed"}]
    # prod-002 was backed out on purpose (the triage's rollback) and the commit left it out: no drift.
    fleet_view = inventory.fleet_inventory(engine.ledger)
    assert fleet_view["drift"] == []
    assert fleet_view["hosts"]["prod-002"]["intended"][0]["stage"] == "backout"
    assert fleet_view["versions"]["hello-agent"] == [
        {"state": "1.1.0 committed", "count": 23, "hosts": [h for h in PRODUCTION if h != "prod-002"]},
        {"state": "1.0.0 committed", "count": 1, "hosts": ["prod-002"]}]
    jsonschema.validate(fleet_view, schema.INVENTORY)


def test_inventory_live_reads_the_hosts_now_and_finds_a_manual_change(workspace, engine, fleet, capsys):
    assert drive(engine, release(workspace)).status == "succeeded"
    fleet.hosts["prod-007"]["hello-agent"].update(active="1.0.0", committed="1.0.0", installed=["1.0.0"])
    assert cli.main(["inventory", "--ledger", engine.ledger.root, "--drift"]) == 0      # the ledger saw no drift
    capsys.readouterr()
    live = inventory.observed_live("unused", "production", project_dir=REPO, run=fleet)
    view = inventory.fleet_inventory(engine.ledger, live=live)
    assert view["source"] == "live"
    assert [(d["host"], d["observed"], d["intended"], d["observed_by"]) for d in view["drift"]] == [
        ("prod-007", "1.0.0 committed", "1.1.0 committed", "live")]
    assert "prod-007 hello-agent: runs 1.0.0 committed; %s commit intended 1.1.0 committed" % CO in \
        inventory.render_text(view)


# --- the CLI and the renderers ---------------------------------------------------------------------------------

def test_esd_report_prints_every_kind_in_every_format(workspace, engine, fleet, capsys, tmp_path):
    assert drive(engine, release(workspace)).status == "succeeded"
    assert sorted(reports.KINDS) == ["distribution", "evaluation", "release-notes", "status", "test"]
    for kind in reports.KINDS:
        for fmt in ("text", "md", "html", "json"):
            assert cli.main(["report", CO, "--kind", kind, "--format", fmt, "--ledger", engine.ledger.root]) == 0
            out = capsys.readouterr().out
            if fmt == "json":
                jsonschema.validate(json.loads(out), schema.SCHEMAS[kind])
            elif fmt == "html":
                assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
                assert_self_contained(out)
    assert cli.main(["report", CO, "--kind", "status", "--format", "junit", "--ledger", engine.ledger.root]) == 2
    assert "has no junit format" in capsys.readouterr().err
    assert cli.main(["report", CO, "--kind", "distribution", "--json", "--ledger", engine.ledger.root]) == 0
    distribution = json.loads(capsys.readouterr().out)
    assert (distribution["verdict"]["result"], distribution["verdict"]["total"]) == ("complete", 24)
    assert [stage["role"] for stage in distribution["stages"]] == ["beta", "wave", "wave", "wave"]
    doc = minimal_document("add_to_production", **{"metadata.id": "CO-no-rollout"})
    engine.run(write_document(workspace, doc), "erin")
    assert cli.main(["report", "CO-no-rollout", "--kind", "distribution", "--ledger", engine.ledger.root]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "change order CO-no-rollout has no rollout (a distribution report covers install, update and image change "
        "orders rolled out in a beta group and waves)")
    target = tmp_path / "out" / "test.xml"
    target.parent.mkdir()
    assert cli.main(["report", CO, "--kind", "test", "--format", "junit", "-o", str(target),
                     "--ledger", engine.ledger.root]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert junitparser.JUnitXml.fromfile(str(target)).tests == 15     # build 5 + 1, test 2 x 4 + 1
    assert cli.main(["close", CO, "--comment", "fine", "--known-error", "slow start", "--workaround", "wait",
                     "--as", "alice", "--ledger", engine.ledger.root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["closure"]["known_errors"] == [{"error": "slow start",
                                                                                "workaround": "wait"}]


def assert_self_contained(page):
    """No external assets: no scripts, links, images or URLs other than the SVG namespace."""
    assert "<script" not in page and "<link" not in page and "<img" not in page and "@import" not in page
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>)]*", page))
    assert urls <= {"http://www.w3.org/2000/svg", "https://json-schema.org/draft/2020-12/schema"}, urls


def test_a_host_left_unhealthy_by_its_rollback_is_not_told_to_roll_back_again():
    from esd.reports import release_notes

    advice = release_notes._workaround({"result": "failed", "phase": "rollback_health_check"})
    assert advice.startswith("the host was rolled back, but the version it went back to fails its health check")
    assert "rollback_update" not in advice


def test_multi_paragraph_free_text_keeps_its_paragraphs_in_markdown():
    assert md.paragraphs("Soak longer.\n\nAsk | the beta\nowners first.\n\n\n") == \
        "Soak longer.\n\nAsk \\| the beta owners first."
    assert md.paragraphs("") == "-"


def test_html_helpers_escape_everything_and_markdown_tables_survive_odd_values():
    page = html.page("<Report>", html.table(["a|b", "c"], [["<script>alert(1)</script>", html.code("x&y")]]))
    assert "<script>" not in page and "&lt;script&gt;" in page and "<code>x&amp;y</code>" in page
    assert "<title>&lt;Report&gt;</title>" in page
    assert_self_contained(page)
    chart = html.bar_chart([("ok", 3, "ok"), ("failed <1>", 1, "fail")], unit="hosts")
    assert chart.startswith("<svg") and "failed &lt;1&gt;" in chart and 'fill="#cf222e"' in chart
    table = md.table(["host", "message"], [(md.text("a|b"), md.text("line one\nline `two` *x*"))])
    assert table.splitlines()[2] == "| a\\|b | line one line \\`two\\` \\*x\\* |"
    assert md.code("a`b") == "`` a`b ``"


def test_the_schema_document_matches_the_code():
    with open(os.path.join(REPO, "docs", "report-schema.md"), encoding="utf-8") as handle:
        assert handle.read() == schema.document(), "regenerate: python -m esd.reports.schema > docs/report-schema.md"
    for kind, document in schema.SCHEMAS.items():
        jsonschema.Draft202012Validator.check_schema(document)


def test_a_report_never_breaks_the_run(workspace, engine, fleet, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(test_report_mod, "test_report", broken)
    monkeypatch.setitem(reports.KINDS, "test", (broken, reports.KINDS["test"][1]))
    assert engine.run(release(workspace), "erin").status == "waiting"
    monkeypatch.setitem(reports.KINDS, "evaluation", (broken, reports.KINDS["evaluation"][1]))
    assert drive(engine, CO).status == "succeeded"
    entry, _ = state_of(engine)
    with open(os.path.join(entry.path, "report", "evaluation.error"), encoding="utf-8") as handle:
        assert "RuntimeError: disk full" in handle.read()
    assert os.path.isfile(os.path.join(entry.path, "report", "status.json"))


def test_the_audit_reads_the_image_a_node_runs_and_inventory_checks_image_intents(tmp_path):
    from report_fixtures import _Events

    private = str(tmp_path / "audit-after")
    events = _Events(private)
    events.task("Audit | software | Read the installed packages", "esd.osp.software_info")
    events.result("web01", "runner_on_ok", {"packages": []})
    events.result("web02", "runner_on_ok", {"packages": []})
    events.task("Audit | image | Read the image the node runs", "esd.osp.image_node_info")
    events.result("web01", "runner_on_ok", {"nodes": [{"name": "web01", "status": "uncommitted",
                                                       "active": {"family": "debian12-server", "version": "1.1.0",
                                                                  "slot": "b"},
                                                       "previous": {"family": "debian12-server", "version": "1.0.0"}}]})
    events.result("web02", "runner_on_ok", {"nodes": [{"name": "web02", "status": "absent", "active": None}]})
    found = audit.read_results(private)
    assert found["web01"]["image"] == {"family": "debian12-server", "version": "1.1.0", "parent": "1.0.0",
                                       "slot": "b", "status": "uncommitted"}
    assert found["web02"]["image"] is None
    web01 = audit.normalise_host(found["web01"])
    intent = {"kind": "image", "name": "debian12-server", "version": "1.1.0", "expect": "running"}
    assert inventory.satisfied(intent, web01)
    assert not inventory.satisfied(dict(intent, expect="rolled_back"), web01)
    assert inventory.satisfied(dict(intent, expect="absent"), audit.normalise_host(found["web02"]))
    before = audit.normalise_host({"packages": [], "image": {"family": "debian12-server", "version": "1.0.0"}})
    assert [c["kind"] for c in audit.diff_host(before, web01)] == ["updated"]
    assert [c["kind"] for c in audit.diff_host(web01, before)] == ["rolled back"]      # to its previous slot
