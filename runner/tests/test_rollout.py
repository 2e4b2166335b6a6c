"""Rollouts with scripted stages (no ansible): plans, go/no-go, halts, windows, triage, backout, verdict."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import threading

import pytest

from esd import engine as engine_mod
from esd import ledger as ledger_mod
from esd import triage
from esd.engine import Engine
from esd.stage import HostOutcome, StageResult

from esd_fixtures import REPO, minimal_document, write_document

PROD = ["prod-%03d" % n for n in range(1, 25)]
CO = "CO-install"


class LoggingStages:
    """Stands in for run_stage: every host succeeds unless scripted, and each attempt writes a distribution log
    the way the esd.osp.distribution_log callback does (into the attempt's artifact directory)."""

    def __init__(self):
        self.calls = []
        self.failures = {}          # stage id -> {host: record fields}; "*" for every attempt of every stage

    def __call__(self, *, stage_id, playbook, inventory, private_data_dir, extravars, envvars, hosts=None,
                 limit_hosts=None, cancel_requested=None, on_progress=None, on_pid=None):
        import time

        if "." in stage_id:        # a helper run of another component (inventory snapshots): not a stage
            return StageResult("successful", 0, {}, {}, time.time(), time.time(), 0.0, private_data_dir, None, None)
        targets = limit_hosts if limit_hosts is not None else (hosts or [])
        self.calls.append({"stage": stage_id, "limit_hosts": targets, "extravars": extravars, "envvars": envvars})
        script = self.failures.get(stage_id, {})
        if callable(script):
            script = script(extravars)
        ident = os.path.basename(private_data_dir)
        log_dir = os.path.join(private_data_dir, "artifacts", ident)
        os.makedirs(log_dir, exist_ok=True)
        outcomes = {}
        with open(os.path.join(log_dir, "distribution_log.jsonl"), "w", encoding="utf-8") as handle:
            for host in targets:
                failure = script.get(host)
                record = {"host": host, "stage": stage_id, "run": ident, "task": "Software | apply",
                          "start": "2026-01-01T00:00:00Z", "outcome": "changed",
                          "software": {"active": "1.0.0" if "rollback" in stage_id or (
                              host in extravars.get("backout_rollback_hosts", [])) else "1.1.0"}}
                if failure:
                    record.update(failure)
                handle.write(json.dumps(record) + "\n")
                status = {"changed": "ok", "ok": "ok"}.get(record["outcome"], record["outcome"])
                outcomes[host] = HostOutcome(host, status, record["outcome"] == "changed",
                                             "Software | apply" if status != "ok" else None,
                                             record.get("message"), record.get("phase"))
        status = "failed" if any(o.status != "ok" for o in outcomes.values()) else "successful"
        started = time.time()
        outputs = {"esd_test": {"passed": True, "backout_rehearsed": True}} if stage_id == "test" else {}
        return StageResult(status, 0 if status == "successful" else 2, outcomes, outputs, started, started + 0.01,
                           0.005, private_data_dir, log_dir, 4242)

    def stages(self):
        return [call["stage"] for call in self.calls]


HEALTH = {"outcome": "failed", "phase": "health_check", "rc": 3, "reverted": True, "message": "health check exited 3"}
FETCH = {"outcome": "failed", "phase": "fetch", "message": "Failed to fetch http://depot/x: HTTP Error 404"}
UNREACHABLE = {"outcome": "unreachable", "message": "ssh: connect to host port 9: Connection refused"}


@pytest.fixture
def stages(monkeypatch):
    fake = LoggingStages()
    monkeypatch.setattr(engine_mod, "run_stage", fake)
    monkeypatch.delenv("ESD_SITE_CONFIG", raising=False)
    monkeypatch.delenv("ESD_HOME", raising=False)
    return fake


@pytest.fixture
def ledger(tmp_path):
    return ledger_mod.Ledger(str(tmp_path / "ledger"))


def rehearsed(workspace, engine):
    """The test change order whose rehearsal production approval requires (CO-TEST-1)."""
    engine.run(write_document(workspace, minimal_document("test_package", **{"metadata.id": "CO-TEST-1"}),
                              "test.yml"), "carol")


def install(workspace, engine, name="co.yml", **overrides):
    rehearsed(workspace, engine)
    overrides.setdefault("spec.backout.retry_delay_seconds", 0)
    path = write_document(workspace, minimal_document("install", **overrides), name)
    assert engine.run(path, "erin").step == "change_board"
    engine.decide(CO, "change_board", "dave", True)
    return path


def state(engine, change_order_id=CO):
    return engine.ledger.get(change_order_id).read_state()


def test_percentages_plan_a_spread_beta_group_and_serial_waves(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    plan = engine.plan(write_document(workspace, minimal_document("install", **{
        "spec.rollout": {"beta_hosts": "10%", "waves": ["25%", "50%"], "failure_budget_percent": [0, 10]}})))
    beta = plan.step("install_beta")
    assert beta.limit_hosts == ["prod-001", "prod-013"]                 # 10% of 24 is 2, spread evenly
    waves = [step for step in plan.steps if step.rollout_role == "wave"]
    assert [len(w.limit_hosts) for w in waves] == [5, 11, 6]            # 25% and 50% of 22, then the rest
    assert [w.failure_budget_percent for w in waves] == [0, 10, 10]     # the last budget repeats
    assert [s.id for s in plan.steps if s.kind in ("triage", "verdict") or s.rollout_role == "backout"] == [
        "triage", "backout", "verdict"]


def test_a_health_check_playbook_runs_on_the_beta_group_after_the_soak(workspace, ledger, stages):
    (workspace / "check.yml").write_text("- hosts: all\n  tasks: []\n")
    moment = [datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)]
    engine = Engine(ledger, project_dir=REPO, clock=lambda: moment[0])
    install(workspace, engine, **{"spec.rollout": {"beta_hosts": 2, "soak_seconds": 600,
                                                   "health_check": {"playbook": "check.yml"}}})
    stages.failures["install_beta_check"] = {"prod-013": {"outcome": "failed", "task": "Go/no-go | health",
                                                          "message": "agent not ok"}}
    # The beta stage's finish time is real; the soak is measured against the engine's clock.
    moment[0] = datetime.datetime.now(datetime.timezone.utc)
    outcome = engine.run(CO, "erin")
    assert outcome.message.startswith("go/no-go after the beta soak time: decision at ")
    assert stages.stages()[-1] == "install_beta"
    moment[0] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=601)
    outcome = engine.run(CO, "erin")
    assert outcome.status == "rolled_back"
    record = state(engine)["steps"]["go_no_go"]
    assert record["comment"] == ("automatic: 1 of 2 beta host(s) succeeded (50% < 100%); health-check playbook "
                                 "failed on prod-013")
    endpoints = state(engine)["rollout"]["endpoints"]
    assert endpoints["prod-013"]["reason"] == ("health check failed after the deployment (task Go/no-go | health): "
                                               "agent not ok")


def test_url_checks_count_against_the_beta_hosts_and_the_service(workspace, ledger, stages):
    answers = {"/prod-001/health": 200, "/prod-013/health": 503, "/service": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answers.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        engine = Engine(ledger, project_dir=REPO)
        install(workspace, engine, **{"spec.rollout": {"beta_hosts": 2, "min_success_percent": 50, "health_check": {
            "urls": [base + "/{host}/health", base + "/service"], "timeout_seconds": 5}}})
        assert engine.run(CO, "erin").status == "succeeded"
        record = state(engine)["steps"]["go_no_go"]
        assert record["status"] == "approved"
        assert record["url_failures"] == {"prod-013": "%s/prod-013/health answered HTTP 503" % base}
        # The host that failed its URL check changed: it is rolled back by the backout.
        assert state(engine)["rollout"]["backout_attempts"][0]["rollback"] == ["prod-013"]
        answers["/service"] = 500
        engine2 = Engine(ledger_mod.Ledger(str(workspace / "ledger2")), project_dir=REPO)
        install(workspace, engine2, name="co2.yml", **{"spec.rollout": {"beta_hosts": 2, "min_success_percent": 50,
                                                                        "health_check": {"urls": [base + "/service"]}}})
        assert engine2.run(CO, "erin").status == "rolled_back"
        assert "service check failed: %s/service answered HTTP 500" % base in state(engine2)["steps"]["go_no_go"][
            "comment"]
    finally:
        server.shutdown()


def test_a_manual_no_go_halts_and_the_next_run_backs_the_beta_group_out(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.rollout": {"go_no_go": "manual"}})
    assert engine.run(CO, "erin").step == "go_no_go"
    outcome = engine.decide(CO, "go_no_go", "frank", False, "beta users report errors")
    assert (outcome.status, outcome.exit_code) == ("waiting", 5)
    assert outcome.message == ("no-go by frank: the rollout is halted; `esd run CO-install` triages the beta group "
                               "and backs it out")
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    assert stages.stages()[-2:] == ["install_beta", "backout"]
    assert stages.calls[-1]["extravars"]["backout_rollback_hosts"] == ["prod-001", "prod-002", "prod-003"]
    verdict = state(engine)["rollout"]["verdict"]
    assert (verdict["result"], verdict["counts"]["rolled_back"], verdict["counts"]["not_reached"]) == (
        "rolled_back", 3, 21)


def test_a_rollout_with_failures_ends_complete_with_named_exceptions(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.rollout": {"wave_size": 7, "failure_budget_percent": 30},
                                  "spec.approvals": {"required": ["backout_review"]}})
    stages.failures["install_wave_1"] = {"prod-005": HEALTH, "prod-006": FETCH}
    stages.failures["install_wave_2"] = {"prod-012": UNREACHABLE}
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.step) == ("waiting", "backout_review")
    entry = engine.ledger.get(CO)
    read = lambda klass: open(os.path.join(entry.path, "triage", "initial", klass + ".limit")).read().split()  # noqa
    assert (read("rollback"), read("redistribute"), read("manual")) == (["prod-005"], ["prod-006", "prod-012"], [])
    assert len(read("success")) == 21
    # prod-012 comes back; prod-006's depot stays broken through both redistribution attempts.
    stages.failures["backout"] = lambda extravars: {"prod-006": FETCH}
    engine.decide(CO, "backout_review", "frank", True, "reviewed")
    outcome = engine.run(CO, "erin")
    assert outcome.status == "succeeded"
    rollout = state(engine)["rollout"]
    assert [(a["rollback"], a["redistribute"]) for a in rollout["backout_attempts"]] == [
        (["prod-005"], ["prod-006", "prod-012"]), ([], ["prod-006"])]
    assert rollout["verdict"]["result"] == "complete_with_exceptions"
    assert [(e["host"], e["status"]) for e in rollout["verdict"]["exceptions"]] == [
        ("prod-005", "rolled_back"), ("prod-006", "failed")]
    assert rollout["verdict"]["exceptions"][1]["reason"] == (
        "still failing after 2 redistribution attempt(s): download failed (phase fetch): Failed to fetch "
        "http://depot/x: HTTP Error 404")
    assert rollout["endpoints"]["prod-005"]["notes"] == ["rolled back to 1.0.0 by backout attempt 1"]
    # Problem records: open for the failures, closed for the endpoint a retry fixed.
    records = {}
    with open(os.path.join(entry.path, "problems.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            records[item["record"]["host"]] = (item["action"], item["record"]["status"])
    assert records == {"prod-005": ("update", "open"), "prod-006": ("update", "open"),
                       "prod-012": ("close", "closed")}
    # The distribution report was written with the verdict.
    with open(os.path.join(entry.path, "report", "distribution.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["verdict"]["result"] == "complete_with_exceptions"
    assert [s["id"] for s in report["stages"]] == ["install_beta", "install_wave_1", "install_wave_2",
                                                   "install_wave_3"]


def test_nothing_to_back_out_skips_the_review_and_the_backout(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.approvals": {"required": ["backout_review"]}})
    assert engine.run(CO, "erin").status == "succeeded"
    steps = state(engine)["steps"]
    assert (steps["backout_review"]["status"], steps["backout"]["status"]) == ("skipped", "skipped")
    assert state(engine)["rollout"]["verdict"]["result"] == "complete"
    assert "backout" not in stages.stages()


def test_on_halt_keep_leaves_the_changed_endpoints_and_names_the_rest(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.rollout": {"wave_size": 7}, "spec.backout.on_halt": "keep"})
    stages.failures["install_wave_1"] = {"prod-005": FETCH}
    stages.failures["backout"] = {"prod-005": FETCH}
    outcome = engine.run(CO, "erin")
    assert outcome.status == "succeeded"
    rollout = state(engine)["rollout"]
    assert rollout["halted"]["step"] == "install_wave_1"
    verdict = rollout["verdict"]
    assert verdict["result"] == "complete_with_exceptions"
    assert verdict["counts"] == {"success": 9, "rolled_back": 0, "failed": 1, "manual": 0, "not_reached": 14}
    exceptions = {e["host"]: e["reason"] for e in verdict["exceptions"]}
    assert exceptions["prod-020"].startswith("not reached: not started: the rollout halted at install_wave_1")
    # Only the failed endpoint was redistributed to; no successful one was touched again.
    assert rollout["backout_attempts"][0]["rollback"] == []
    assert rollout["backout_attempts"][0]["redistribute"] == ["prod-005"]


def test_a_change_without_automatic_rollback_sends_changed_failures_to_a_person(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    path = write_document(workspace, minimal_document("commit", **{"spec.rollout": {"beta": False},
                                                                    "spec.approvals": {}}))
    engine.run(path, "erin")
    engine.decide("CO-commit", "change_board", "dave", True)
    stages.failures["commit"] = {"prod-004": HEALTH}
    outcome = engine.run("CO-commit", "erin")
    # 1 of 24 breaks the 0% budget: the rollout halts; a commit cannot be undone, so it ends with exceptions.
    assert outcome.status == "succeeded"
    rollout = state(engine, "CO-commit")["rollout"]
    assert rollout["halted"]["cause"] == "failure_budget"
    assert [(e["host"], e["status"]) for e in rollout["verdict"]["exceptions"]] == [("prod-004", "manual")]
    endpoint = rollout["endpoints"]["prod-004"]
    assert endpoint["class"] == "manual"
    assert endpoint["reason"].endswith("this change has no automatic rollback (follow the backout plan)")
    assert "backout" not in stages.stages()


WINDOWS = [{"start": "2026-03-01T22:00:00+00:00", "end": "2026-03-02T04:00:00+00:00"},
           {"start": "2026-03-08T22:00:00+00:00", "end": "2026-03-09T04:00:00+00:00"}]


def test_no_new_wave_starts_after_the_window_closes_and_the_message_says_when_it_resumes(workspace, ledger, stages):
    moment = [datetime.datetime(2026, 3, 1, 23, 0, tzinfo=datetime.timezone.utc)]
    engine = Engine(ledger, project_dir=REPO, clock=lambda: moment[0])
    install(workspace, engine, **{"spec.window": WINDOWS, "spec.rollout": {"wave_size": 7}})

    def close_window_after(stage_id):
        def script(extravars):
            if stage_id == "install_wave_1":
                moment[0] = datetime.datetime(2026, 3, 2, 5, 0, tzinfo=datetime.timezone.utc)
            return {}
        return script

    stages.failures["install_wave_1"] = close_window_after("install_wave_1")
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.exit_code, outcome.step) == ("waiting", 3, "install_wave_2")
    assert outcome.message == ("maintenance window closed at 2026-03-02T04:00:00+00:00; stage install_wave_2 may "
                               "start when the next window opens at 2026-03-08T22:00:00+00:00 (esd run CO-install "
                               "then)")
    assert stages.stages()[-1] == "install_wave_1"
    moment[0] = datetime.datetime(2026, 3, 8, 23, 0, tzinfo=datetime.timezone.utc)
    assert engine.run(CO, "erin").status == "succeeded"
    assert stages.stages()[-3:] == ["install_wave_1", "install_wave_2", "install_wave_3"]


def test_a_window_that_closes_for_good_halts_the_rollout(workspace, ledger, stages):
    moment = [datetime.datetime(2026, 3, 1, 23, 0, tzinfo=datetime.timezone.utc)]
    engine = Engine(ledger, project_dir=REPO, clock=lambda: moment[0])
    install(workspace, engine, **{"spec.window": WINDOWS[:1], "spec.rollout": {"wave_size": 7}})

    def late(extravars):
        moment[0] = datetime.datetime(2026, 3, 2, 5, 0, tzinfo=datetime.timezone.utc)
        return {}

    stages.failures["install_wave_1"] = late
    outcome = engine.run(CO, "erin")
    assert outcome.status == "rolled_back"
    halted = state(engine)["rollout"]["halted"]
    assert halted["reason"] == ("the maintenance window closed at 2026-03-02T04:00:00+00:00 before stage "
                                "install_wave_2 could start, and the change order has no later window")
    # The backout still runs after the window: an estate left half-changed is worse.
    assert stages.stages()[-1] == "backout"
    assert len(stages.calls[-1]["extravars"]["backout_rollback_hosts"]) == 10


def test_stages_log_their_distribution_and_blank_the_site_secrets(workspace, ledger, stages, tmp_path, monkeypatch):
    site = tmp_path / "site.yml"
    site.write_text("notifications:\n  smtp: {host: 127.0.0.1, username: esd, password_env: ESD_SMTP_PW}\n"
                    "problems:\n  - {type: webhook, url: 'http://127.0.0.1:9/p', token_env: ESD_ITSM}\n")
    monkeypatch.setenv("ESD_SITE_CONFIG", str(site))
    monkeypatch.setenv("ESD_SMTP_PW", "pw")
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.rollout": {"wave_size": 10}})
    engine.run(CO, "erin")
    envvars = {call["stage"]: call["envvars"] for call in stages.calls}
    assert envvars["install_wave_2"]["ANSIBLE_CALLBACKS_ENABLED"].endswith("esd.osp.distribution_log")
    assert (envvars["install_beta"]["ESD_WAVE"], envvars["install_wave_2"]["ESD_WAVE"]) == ("beta", "2")
    assert envvars["install_wave_2"]["ESD_SMTP_PW"] == "" and envvars["install_wave_2"]["ESD_ITSM"] == ""


def test_the_runner_triage_reads_the_distribution_logs(workspace, ledger, stages):
    engine = Engine(ledger, project_dir=REPO)
    install(workspace, engine, **{"spec.rollout": {"wave_size": 7, "failure_budget_percent": 50},
                                  "spec.approvals": {"required": ["backout_review"]}})
    stages.failures["install_wave_3"] = {"prod-020": {"outcome": "failed", "phase": "io", "message": "EISDIR"}}
    engine.run(CO, "erin")
    entry = engine.ledger.get(CO)
    endpoints = triage.initial(entry, state(engine))
    assert endpoints["prod-020"]["class"] == "manual" and endpoints["prod-020"]["wave"] == 3
    assert endpoints["prod-020"]["reason"] == "I/O error on the endpoint (phase io): EISDIR"
    assert {e["class"] for h, e in endpoints.items() if h != "prod-020"} == {"success"}


def test_mitogen_is_an_optional_accelerator(monkeypatch, tmp_path):
    import sys
    import types

    from esd import rollout

    monkeypatch.delenv("ESD_ACCELERATOR", raising=False)
    assert rollout.accelerator_env() == {}
    monkeypatch.setenv("ESD_ACCELERATOR", "mitogen")
    monkeypatch.setitem(sys.modules, "ansible_mitogen", None)          # not installed: plain linear
    assert rollout.accelerator_env() == {}
    fake = types.ModuleType("ansible_mitogen")
    fake.__file__ = str(tmp_path / "ansible_mitogen" / "__init__.py")
    monkeypatch.setitem(sys.modules, "ansible_mitogen", fake)
    assert rollout.accelerator_env() == {
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_STRATEGY_PLUGINS": str(tmp_path / "ansible_mitogen" / "plugins" / "strategy")}
