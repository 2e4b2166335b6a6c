"""`esd metrics` over a ledger with a known mix of outcomes: 10 change orders run by the engine on a simulated
fleet (3 finished late, 2 reworked, 1 package built late, 2 with rolled-back endpoints: one failed change rolled
back, one rollback_update that asked for it) plus 3 rejected submissions; every figure is checked exactly."""

from __future__ import annotations

import csv
import io
import json
import os

import jsonschema
import pytest
import yaml

from esd import cli, engine as engine_mod, ledger as ledger_mod, metrics
from esd.engine import Engine
from esd.errors import ValidationError
from esd.reports import schema

from esd_fixtures import REPO, minimal_document, write_document
from report_fixtures import Clock, SimulatedFleet, at

PRODUCTION = ["prod-%03d" % n for n in range(1, 25)]
NOW = at("2026-06-30T12:00:00")


def drive(engine, reference, actor="erin", approver="dave"):
    """Run a change order, approving every gate it waits for, until it finishes or fails."""
    outcome = engine.run(reference, actor)
    while outcome.status == "waiting":
        engine.decide(outcome.change_order, outcome.step, approver, True, "ok")
        outcome = engine.run(outcome.change_order, actor)
    return outcome


def document(type_id, ident, due, **overrides):
    doc = minimal_document(type_id, **overrides)
    doc["metadata"]["id"] = ident
    doc["metadata"]["requested_completion"] = due
    return doc


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(at("2026-03-01T09:00:00"))
    monkeypatch.setattr(ledger_mod, "now", clock)
    return clock


@pytest.fixture
def fleet(monkeypatch):
    fleet = SimulatedFleet()
    monkeypatch.setattr(engine_mod, "run_stage", fleet)
    return fleet


@pytest.fixture
def mixed_ledger(tmp_path, workspace, clock, fleet):
    """The known mix. Returns the ledger."""
    (workspace / "pkg-1.2").mkdir()
    (workspace / "pkg-1.2" / "package.yml").write_text("name: hello-agent\nversion: '1.2.0'\n")
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    engine = Engine(ledger, project_dir=REPO, clock=clock)
    fleet.install(PRODUCTION, "hello-agent", "1.0.0")

    def submit(doc, name):
        return write_document(workspace, doc, name)

    def release(ident, due, **overrides):
        return submit(document("software_release", ident, due, **overrides), ident + ".yml")

    # CO-01: on time (all in one go: lead time 0).  CO-02: late (11 days; its build was handed over in time).
    clock.set(at("2026-03-01T09:00:00"))
    assert drive(engine, release("CO-01", "2026-03-10")).status == "succeeded"
    path = release("CO-02", "2026-03-10")
    clock.set(at("2026-03-02T09:00:00"))
    assert engine.run(path, "erin").status == "waiting"           # build + test done, test sign-off pending
    clock.set(at("2026-03-13T09:00:00"))
    assert drive(engine, "CO-02").status == "succeeded"
    # CO-03: the test fails once (rework), on time.  CO-04: the test fails once (rework), late.
    for ident, received, rerun, finished, due in (("CO-03", "03-03", "03-06", "03-08", "2026-03-20"),
                                                   ("CO-04", "03-04", "03-10", "03-21", "2026-03-20")):
        fleet.failures["test"] = [{"test-01": "failed"}]
        clock.set(at("2026-%sT09:00:00" % received))
        assert engine.run(release(ident, due), "erin").status == "failed"
        clock.set(at("2026-%sT09:00:00" % rerun))
        assert engine.run(ident, "erin").status == "waiting"
        clock.set(at("2026-%sT09:00:00" % finished))
        assert drive(engine, ident).status == "succeeded"
        del fleet.failures["test"]
    # CO-05: a test_package, on time (2 days).
    clock.set(at("2026-03-05T09:00:00"))
    path = submit(document("test_package", "CO-05", "2026-03-31"), "CO-05.yml")
    assert engine.run(path, "erin").status == "waiting"
    clock.set(at("2026-03-07T09:00:00"))
    assert drive(engine, "CO-05").status == "succeeded"
    # CO-06: a prepare_package whose build fails, then succeeds after the due date: late, built late.
    fleet.failures["build"] = [{"build-01": "failed"}]
    clock.set(at("2026-03-06T09:00:00"))
    assert engine.run(submit(document("prepare_package", "CO-06", "2026-04-01"), "CO-06.yml"), "erin").status == \
        "failed"
    clock.set(at("2026-04-03T09:00:00"))
    assert drive(engine, "CO-06").status == "succeeded"
    del fleet.failures["build"]
    # CO-07: a prepare_image, built in time (1 day).
    clock.set(at("2026-03-07T09:00:00"))
    path = submit(document("prepare_image", "CO-07", "2026-03-31",
                           **{"spec.approvals": {"required": ["build_signoff"]}}), "CO-07.yml")
    assert engine.run(path, "erin").status == "waiting"
    clock.set(at("2026-03-08T09:00:00"))
    assert drive(engine, "CO-07").status == "succeeded"
    # CO-08: a rollback_update of the beta hosts, which run an uncommitted 1.1.1 (set up outside change
    # control): 3 endpoints rolled back (1 day).
    for host in ("prod-001", "prod-002", "prod-003"):
        package = fleet.package(host, "hello-agent")
        package.update(active="1.1.1", backups=[package["active"]], installed=sorted(package["installed"] + ["1.1.1"]))
    clock.set(at("2026-03-09T09:00:00"))
    path = submit(document("rollback_update", "CO-08", "2026-03-31", **{"spec.targets.hosts": "beta"}), "CO-08.yml")
    assert engine.run(path, "erin").status == "waiting"
    clock.set(at("2026-03-10T09:00:00"))
    assert drive(engine, "CO-08").status == "succeeded"
    # CO-09: release 1.2.0; prod-002's activation fails its health check and reverts itself (a rollback); the
    # go/no-go accepts 2 of 3 beta hosts (1 day).
    fleet.failures["install_beta"] = [{"prod-002": "reverted"}]
    clock.set(at("2026-03-11T09:00:00"))
    path = release("CO-09", "2026-03-31", **{"spec.software.version": "1.2.0", "spec.software.source": "pkg-1.2",
                                              "spec.rollout": {"min_success_percent": 50}})
    assert engine.run(path, "erin").status == "waiting"
    clock.set(at("2026-03-12T09:00:00"))
    assert drive(engine, "CO-09").status == "succeeded"
    # Rejected submissions (sent back for missing information), on 03-12:
    clock.set(at("2026-03-12T10:00:00"))
    invalid = document("test_package", "CO-10", "2026-03-31")
    del invalid["metadata"]["title"]
    for _ in range(2):        # the same invalid file twice: one request sent back once
        with pytest.raises(ValidationError):
            engine.run(submit(invalid, "CO-10-draft.yml"), "alice")
    never_fixed = document("software_release", "CO-11", "2026-03-31")
    del never_fixed["spec"]["backout"]
    with pytest.raises(ValidationError):
        engine.run(submit(never_fixed, "CO-11.yml"), "alice")
    (workspace / "garbage.yml").write_text("metadata: [unclosed\n")
    with pytest.raises(ValidationError):
        engine.run(str(workspace / "garbage.yml"), "alice")
    # CO-10: the fixed test_package, on time. The period filters count it as received with its first, rejected
    # submission (03-12 10:00); its lead time runs from its registration (03-13) to its success (03-14): 1 day.
    clock.set(at("2026-03-13T09:00:00"))
    path = submit(document("test_package", "CO-10", "2026-03-31"), "CO-10.yml")
    assert engine.run(path, "erin").status == "waiting"
    clock.set(at("2026-03-14T09:00:00"))
    assert drive(engine, "CO-10").status == "succeeded"
    return ledger


def test_a_known_mix_gives_exactly_the_expected_figures(mixed_ledger):
    data = metrics.compute(mixed_ledger, now=NOW)
    measures = {ident: (m["numerator"], m["denominator"], m["percent"]) for ident, m in data["measures"].items()}
    assert data["change_orders"] == 10
    assert data["by_status"] == {"succeeded": 10}
    assert measures == {
        "finished_in_requested_time": (7, 10, 70.0),          # CO-02, CO-04, CO-06 late
        "packages_built_in_requested_time": (5, 6, 83.3),     # 5 releases + CO-06; CO-06 built after its due date
        "images_built_in_requested_time": (1, 1, 100.0),      # CO-07
        "passed_test_without_rework": (5, 7, 71.4),           # 5 releases + 2 test_packages; CO-03, CO-04 reworked
        "sent_back_for_missing_information": (3, 12, 25.0),   # CO-10 (later fixed), CO-11, an unparseable file
        # A failed change rolled back: CO-09 (prod-002's activation failed and reverted). CO-08 rolled 3 endpoints
        # back because it asked for it (rollback_update): that is no failed deployment.
        "rollback_rate": (1, 6, 16.7),
    }
    assert data["requests"] == 12
    assert data["totals"]["rework"] == 2
    assert data["totals"]["endpoints_rolled_back"] == 4                     # every rolled-back endpoint
    assert data["totals"]["endpoints_rolled_back_after_failure"] == 1       # prod-002 of CO-09
    assert data["totals"]["rejected_submissions"] == 3
    # Lead times in days: 0 (CO-01 ran in one go), 11, 5, 17, 2, 28, 1, 1, 1, 1 (CO-10 counted from its
    # registration, 03-13, to 03-14).
    day = 86400
    lead = {row["change_order"]: row["lead_time_seconds"] for row in data["rows"]}
    assert lead == {"CO-01": 0, "CO-02": 11 * day, "CO-03": 5 * day, "CO-04": 17 * day, "CO-05": 2 * day,
                    "CO-06": 28 * day, "CO-07": 1 * day, "CO-08": 1 * day, "CO-09": 1 * day, "CO-10": 1 * day}
    assert data["lead_time"] == {"count": 10, "mean_seconds": 67 * day / 10, "median_seconds": 1.5 * day}
    rows = {row["change_order"]: row for row in data["rows"]}
    assert [ident for ident, row in rows.items() if row["on_time"] is False] == ["CO-02", "CO-04", "CO-06"]
    assert [ident for ident, row in rows.items() if row["rework"]] == ["CO-03", "CO-04"]
    assert rows["CO-09"]["success_percent"] == 95.8 and rows["CO-09"]["endpoints"] == 24
    assert (rows["CO-08"]["rollbacks"], rows["CO-08"]["rollbacks_after_failure"]) == (3, 0)
    assert (rows["CO-09"]["rollbacks"], rows["CO-09"]["rollbacks_after_failure"]) == (1, 1)
    assert data["definitions"]["rollback_rate"] == (
        "change orders in which a failed change was rolled back on an endpoint (the package's auto-revert of a failed "
        "activation, or the rollout's backout), of those that ran production stages on endpoints; a rollback the "
        "change order asked for (rollback_update, rollback_image) is the change itself and does not count")


def test_filters_by_period_and_type(mixed_ledger):
    releases = metrics.compute(mixed_ledger, types=["software_release"], now=NOW)
    assert releases["change_orders"] == 5
    assert releases["measures"]["finished_in_requested_time"]["percent"] == 60.0     # CO-02, CO-04 late
    assert releases["measures"]["sent_back_for_missing_information"]["numerator"] == 1   # CO-11 (a release)
    window = metrics.compute(mixed_ledger, since="2026-03-06", until="2026-03-10", now=NOW)
    assert [row["change_order"] for row in window["rows"]] == ["CO-06", "CO-07", "CO-08"]
    assert window["measures"]["finished_in_requested_time"][("numerator")] == 2
    osp = metrics.compute(mixed_ledger, categories=["OSP"], now=NOW)
    assert [row["change_order"] for row in osp["rows"]] == ["CO-07"]
    # Rejected submissions follow the same filters: one software_release rejection, none after the last one.
    assert releases["totals"]["rejected_submissions"] == 1
    assert osp["totals"]["rejected_submissions"] == 0
    later = metrics.compute(mixed_ledger, since="2026-04-01", now=NOW)
    assert (later["requests"], later["totals"]["rejected_submissions"]) == (0, 0)
    assert later["measures"]["sent_back_for_missing_information"]["denominator"] == 0


def test_the_cli_prints_text_json_and_csv(mixed_ledger, capsys):
    assert cli.main(["metrics", "--ledger", mixed_ledger.root, "--at", NOW.isoformat(), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, schema.METRICS)
    assert data["measures"]["finished_in_requested_time"]["percent"] == 70.0
    assert cli.main(["metrics", "--ledger", mixed_ledger.root, "--at", NOW.isoformat(), "--format", "csv"]) == 0
    rows = {row["measure"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert (rows["passed_test_without_rework"]["numerator"], rows["passed_test_without_rework"]["denominator"],
            rows["passed_test_without_rework"]["value"]) == ("5", "7", "71.4")
    assert rows["mean_lead_time"]["value"] == str(67 * 86400 / 10)
    assert cli.main(["metrics", "--ledger", mixed_ledger.root, "--at", NOW.isoformat(), "--format", "csv",
                     "--per-change-order"]) == 0
    per_co = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["change_order"] for row in per_co] == ["CO-01", "CO-02", "CO-03", "CO-04", "CO-05", "CO-06",
                                                       "CO-07", "CO-08", "CO-09", "CO-10"]
    assert cli.main(["metrics", "--ledger", mixed_ledger.root, "--at", NOW.isoformat()]) == 0
    text = capsys.readouterr().out
    assert "Requests finished in the requested time" in text and "70.0% (7 of 10)" in text
    assert "Sent back for missing information (failed validation)" in text and "25.0% (3 of 12)" in text
    assert "Change orders with a failed change rolled back" in text and "16.7% (1 of 6)" in text
    assert "  Rollback rate: change orders in which a failed change was rolled back" in text


def test_rejected_submissions_are_journalled_once_and_chained(tmp_path, workspace, capsys):
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    engine = Engine(ledger, project_dir=REPO)
    doc = minimal_document("test_package")
    doc["spec"]["software"]["version"] = 1.1       # a YAML number: sent back
    path = write_document(workspace, doc, "draft.yml")
    for _ in range(2):
        with pytest.raises(ValidationError):
            engine.run(path, "alice")
    # `esd validate` is a dry check: it records nothing.
    assert cli.main(["validate", path, "--ledger", ledger.root]) == 2
    capsys.readouterr()
    records = metrics.read_journal(ledger)
    assert [(r["seq"], r["event"], r["change_order"], r["type"], r["actor"]) for r in records] == [
        (1, "rejected", "CO-test-package", "test_package", "alice")]
    assert "spec.software.version" in records[0]["problems"][0]
    assert metrics.verify_journal(ledger) == (True, [])
    # Editing the journal breaks its chain.
    with open(metrics.journal_path(ledger), encoding="utf-8") as handle:
        text = handle.read()
    with open(metrics.journal_path(ledger), "w", encoding="utf-8") as handle:
        handle.write(text.replace('"alice"', '"mallory"'))
    ok, problems = metrics.verify_journal(ledger)
    assert not ok and problems == ["record 1: content does not match its hash"]


def test_an_edited_registered_change_order_is_not_counted_as_sent_back(tmp_path, workspace, clock, fleet):
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    engine = Engine(ledger, project_dir=REPO, clock=clock)
    path = write_document(workspace, minimal_document("test_package"), "co.yml")
    assert engine.run(path, "erin").status == "waiting"
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    doc["metadata"]["title"] = "edited after registration"
    write_document(workspace, doc, "co.yml")
    with pytest.raises(ValidationError, match="a registered change order cannot change"):
        engine.run(path, "erin")
    assert metrics.read_journal(ledger) == []
    assert not os.path.exists(metrics.journal_path(ledger))


def test_open_change_orders_count_only_once_they_are_due(tmp_path, workspace, clock, fleet):
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    engine = Engine(ledger, project_dir=REPO, clock=clock)
    doc = minimal_document("test_package")
    doc["metadata"]["requested_completion"] = "2026-03-10"
    assert engine.run(write_document(workspace, doc, "co.yml"), "erin").status == "waiting"
    before_due = metrics.compute(ledger, now=at("2026-03-10T23:59:00"))
    assert before_due["measures"]["finished_in_requested_time"] == {
        "id": "finished_in_requested_time", "title": "Requests finished in the requested time", "numerator": 0,
        "denominator": 0, "percent": None, "not_yet_counted": 1}
    after_due = metrics.compute(ledger, now=at("2026-03-11T00:00:00"))
    assert (after_due["measures"]["finished_in_requested_time"]["numerator"],
            after_due["measures"]["finished_in_requested_time"]["denominator"]) == (0, 1)
    # Tested (the test stage ran and passed) even though the sign-off is still pending.
    assert after_due["measures"]["passed_test_without_rework"]["percent"] == 100.0
