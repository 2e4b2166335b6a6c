"""Reports of a real software_release on a private 24-host demo fleet, checked against what happened.

What happens (once per module): the test stage fails on test-02 (its health check is broken on purpose),
the cause is removed and the stage passes as attempt 2 (one rework); in production prod-005's health
check fails, the package reverts it by itself, the triage rolls it back and the commit leaves it out; an
invalid change order is sent back; alice closes the change order with her lessons learned. Then every
report is read: the test report (JUnit XML through junitparser), status with the audit snapshots, the
evaluation, the release notes, `esd metrics` and `esd inventory` (ledger and --live, with a host changed
outside change control), and each HTML report is rendered by headless Chromium.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from test_runner_support import PRODUCTION, REPO, Fleet, active, committed  # noqa: E402

pytestmark = pytest.mark.integration
CO = "IT-REPORTS-1"
LESSONS = "Break the test site on purpose once per release: the rework path works. Soak beta longer."


def _fail_health_check(fleet, host, broken=True):
    path = os.path.join(fleet.root, "hosts", host, "etc", "hello-agent", "fail-health-check")
    if broken:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    elif os.path.exists(path):
        os.unlink(path)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("reports"))
    fleet.seed()
    path = fleet.release(CO, rollout={"beta": "beta", "wave_size": 11, "failure_budget_percent": 10},
                         approvals={"approvers": {"change_board": ["dave"]}})
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    due = datetime.date.today() + datetime.timedelta(days=30)
    document["metadata"]["requested_completion"] = due.isoformat()
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)

    _fail_health_check(fleet, "test-02")
    failed = fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=1)
    assert (failed["status"], failed["step"]) == ("failed", "test")
    _fail_health_check(fleet, "test-02", broken=False)
    _fail_health_check(fleet, "prod-005")
    assert fleet.esd_json("run", CO, "--quiet", user="bob", expect_rc=3)["step"] == "test_signoff"
    fleet.esd_json("approve", CO, "--gate", "test_signoff", "--comment", "attempt 2 passed", user="carol")
    assert fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=3)["step"] == "change_board"
    fleet.esd_json("approve", CO, "--gate", "change_board", user="dave")
    assert fleet.esd_json("run", CO, "--quiet", user="erin")["status"] == "succeeded"

    invalid = dict(document, metadata=dict(document["metadata"], id="IT-REPORTS-DRAFT"))
    del invalid["metadata"]["title"]
    sent_back = fleet.esd("run", fleet.write(invalid, "draft.yml"), user="alice")
    assert sent_back.returncode == 2 and "metadata.title" in sent_back.stderr
    closed = fleet.esd_json("close", CO, "--comment", LESSONS, "--satisfaction", "4", "--known-error",
                            "hello-agent 1.1.0 fails its health check where fail-health-check exists",
                            "--workaround", "remove /etc/hello-agent/fail-health-check", user="alice")
    assert closed["closure"]["closed_by"] == "alice"
    fleet.artifact = fleet.state(CO)["steps"]["build"]["outputs"]["artifact"]
    fleet.screens = str(tmp_path_factory.mktemp("screens"))
    return fleet


def _report(fleet, kind, fmt="json"):
    result = fleet.esd("report", CO, "--kind", kind, "--format", fmt)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout) if fmt == "json" else result.stdout


def test_the_test_report_shows_the_rework_and_the_junit_xml_parses(released, tmp_path):
    junitparser = pytest.importorskip("junitparser")
    report = _report(released, "test")
    assert (report["conclusion"], report["rework"]) == ("pass", 1)
    assert report["artifact"]["sha256"] == released.artifact["sha256"]
    defects = [(d["stage"], d["attempt"], d["host"], d["check"], d["status"]) for d in report["defects"]]
    assert defects == [("test", 1, "test-02",
                        "Test package | install | Install and activate (the package's health check runs here)",
                        "retested (passed in attempt 2)")]
    assert "health check" in report["defects"][0]["message"]
    assert report["backout"] == {"rehearsed": True, "hosts": {"test-01": "passed", "test-02": "passed"}}
    first, second = report["stages"][1]["attempts"]
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    # Attempt 1: test-02 failed the install, so the rest of the plan did not run there.
    assert [c["result"] for c in first["hosts"]["test-02"]["checks"]][1:3] == ["failed", "not_run"]

    path = tmp_path / "test.junit.xml"
    path.write_text(_report(released, "test", "junit"))
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    build, test = suites["%s.build" % CO], suites["%s.test" % CO]
    # build_package.yml: 12 tasks on build-01 (the two hook tasks skipped) + the stage checks.
    assert (build.tests, build.failures, build.errors, build.skipped) == (13, 0, 0, 2)
    # test_package.yml: 7 tasks on 2 hosts + the stage checks; the latest attempt passed everything.
    assert (test.tests, test.failures, test.errors, test.skipped) == (15, 0, 0, 0)
    assert {p.name: p.value for p in test.properties()}["attempt"] == "2"
    assert sorted({case.classname for case in test}) == ["%s.test" % CO, "%s.test.test-01" % CO,
                                                         "%s.test.test-02" % CO]
    # The ledger keeps the same JUnit XML next to the other reports.
    assert os.path.isfile(os.path.join(released.ledger, CO, "report", "test.junit.xml"))


def test_status_and_audit_snapshots_match_the_hosts(released):
    status = released.esd_json("status", CO)
    assert status["stages_pending"] == [] and status["open_problems"][0]["hosts"] == ["prod-005"]
    assert [(g["id"], g["decided_by"]) for g in status["gates"] if g["decided_by"]] == [
        ("test_signoff", "carol"), ("change_board", "dave"), ("go_no_go", "esd")]
    with open(released.artifact["path"], "rb") as handle:
        content = handle.read()
    artifact = next(a for a in status["artifacts"] if a["kind"] == "artifact")
    assert (artifact["sha256"], artifact["size"]) == (hashlib.sha256(content).hexdigest(), len(content))
    hosts = released.software()
    changes = status["inventory_changes"]
    assert changes["rolled_back"] == ["prod-005"]
    updated = sorted(host for host, data in changes["hosts"].items()
                     if [c["kind"] for c in data["changes"]] == ["updated"])
    assert updated == [host for host in PRODUCTION if host != "prod-005"]
    for host in updated:
        assert changes["hosts"][host]["after"]["packages"]["hello-agent"] == "1.1.0 committed"
        assert (active(hosts[host]), committed(hosts[host])) == ("1.1.0", "1.1.0")
    assert changes["hosts"]["prod-005"]["before"]["packages"]["hello-agent"] == "1.0.0 committed"
    assert (active(hosts["prod-005"]), committed(hosts["prod-005"])) == ("1.0.0", "1.0.0")
    wave = next(stage for stage in changes["stages"] if stage["stage"] == "install_wave_1")
    assert [c["kind"] for c in wave["changes"]["prod-005"]] == ["reverted"]
    records = [r for r in released.audit(CO) if r["event"] == "inventory_snapshot"]
    assert {r["data"]["stage"] for r in records} >= {"install_beta", "install_wave_1", "install_wave_2", "commit"}
    assert released.esd("log", CO, "--verify").returncode == 0


def test_the_evaluation_and_the_release_notes_tell_what_happened(released):
    state = released.state(CO)
    evaluation = _report(released, "evaluation")
    assert (evaluation["status"], evaluation["on_time"], evaluation["lessons_learned"]) == ("succeeded", True, LESSONS)
    assert evaluation["test"]["rework"] == 1 and evaluation["test"]["passed_without_rework"] is False
    production = evaluation["production"]
    assert (production["endpoints"], production["ok"], production["failed"], production["success_percent"],
            production["rolled_back"]) == (24, 23, ["prod-005"], 95.8, ["prod-005"])
    registered = datetime.datetime.fromisoformat(state["change_order"]["registered_at"])
    finished = datetime.datetime.fromisoformat(state["finished_at"])
    assert evaluation["lead_time_seconds"] == round((finished - registered).total_seconds(), 3)
    assert [site["site"] for site in evaluation["sites"]] == ["build", "test", "production"]
    assert evaluation["sites"][1]["failed_attempts"] == 1 and evaluation["closure"]["satisfaction"] == 4

    notes = _report(released, "release-notes")
    assert (notes["name"], notes["version"], notes["artifact"]["sha256"]) == (
        "hello-agent", "1.1.0", released.artifact["sha256"])
    assert notes["artifact"]["scan"]["clean"] is True and notes["artifact"]["scan"]["engine"].startswith("ClamAV")
    assert notes["updates"] == ["hello-agent 1.0.0"]
    sources = {known["source"]: known for known in notes["known_errors"]}
    assert sources["problem PRB-%s-prod-005" % CO]["hosts"] == ["prod-005"]
    assert sources["closure"]["workaround"] == "remove /etc/hello-agent/fail-health-check"
    markdown = _report(released, "release-notes", "md")
    assert markdown.startswith("# hello-agent 1.1.0 — release notes")


def test_metrics_count_this_ledger_exactly(released):
    data = released.esd_json("metrics")
    figures = {ident: (m["numerator"], m["denominator"], m["percent"]) for ident, m in data["measures"].items()}
    assert figures == {"finished_in_requested_time": (1, 1, 100.0), "packages_built_in_requested_time": (1, 1, 100.0),
                       "images_built_in_requested_time": (0, 0, None), "passed_test_without_rework": (0, 1, 0.0),
                       "sent_back_for_missing_information": (1, 2, 50.0), "rollback_rate": (1, 1, 100.0)}
    assert data["totals"]["rework"] == 1 and data["totals"]["endpoints_rolled_back"] == 1
    assert data["totals"]["mean_satisfaction"] == 4


def test_inventory_shows_versions_and_drift_after_a_change_outside_change_control(released):
    import ansible_runner

    from esd import project

    view = released.esd_json("inventory")
    assert view["drift"] == []          # prod-005 was backed out on purpose
    assert view["versions"]["hello-agent"][0] == {"state": "1.1.0 committed", "count": 23,
                                                  "hosts": [h for h in PRODUCTION if h != "prod-005"]}
    # Someone removes hello-agent from prod-010 by hand.
    env = project.ansible_environment(REPO)
    env["ESD_DEMO_ROOT"] = released.root
    private = os.path.join(os.path.dirname(released.root), "manual-change")
    os.makedirs(private)
    result = ansible_runner.run(private_data_dir=private, inventory=os.path.join(REPO, "inventories", "demo"),
                                host_pattern="prod-010", module="esd.osp.software",
                                module_args='name=hello-agent state=absent root="{{ software_root }}"', envvars=env,
                                quiet=True)
    assert result.status == "successful"
    live = released.esd("inventory", "--live", "--hosts", "production", "--drift", "--json")
    assert live.returncode == 1, live.stderr[-2000:]
    drift = json.loads(live.stdout)["drift"]
    assert [(d["host"], d["observed"], d["intended"], d["change_order"]) for d in drift] == [
        ("prod-010", "absent", "1.1.0 committed", CO)]


@pytest.mark.parametrize("kind, expected", [
    ("status", ("Status report: %s" % CO, "Stages and gates", "Audit: software inventory before and after",
                "prod-005")),
    ("test", ("Conclusion: PASS", "retested (passed in attempt 2)", "Backout rehearsal", "test-02")),
    ("evaluation", ("Evaluation report: %s" % CO, "Lead time per site", LESSONS)),
    ("release-notes", ("hello-agent 1.1.0 — release notes", "Known errors and workarounds", "prod-005")),
    ("metrics", ("Measurements", "Sent back for missing information (failed validation)", "50.0%")),
])
def test_each_html_report_renders_in_headless_chromium(released, kind, expected):
    from helpers.browser import require_browser

    browser = require_browser()
    page_path = os.path.join(released.screens, "%s.html" % kind)
    if kind == "metrics":
        result = released.esd("metrics", "--format", "html", "--output", page_path)
    else:
        result = released.esd("report", CO, "--kind", kind, "--format", "html", "--output", page_path)
    assert result.returncode == 0, result.stderr[-2000:]
    page = browser.render(page_path, os.path.join(released.screens, "%s.png" % kind))
    assert page.screenshot_looks_rendered(), "the screenshot of the %s report is blank" % kind
    assert page.text_contains(*expected), page.text[:3000]
    keep = os.environ.get("ESD_REPORT_SCREENSHOTS")
    if keep:        # e.g. ESD_REPORT_SCREENSHOTS=/tmp/shots pytest ...: look at them
        os.makedirs(keep, exist_ok=True)
        shutil.copy(os.path.join(released.screens, "%s.png" % kind), keep)
