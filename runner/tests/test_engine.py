"""The engine with scripted stages (no ansible): gates, separation of duties, failures, resume, cancel."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from esd import engine as engine_mod
from esd import ledger as ledger_mod
from esd.engine import Engine
from esd.errors import ChangeOrderStopped, GateError, LockedError, UsageError, ValidationError

from esd_fixtures import REPO, FakeStages, minimal_document, write_document


@pytest.fixture
def stages(monkeypatch):
    fake = FakeStages()
    monkeypatch.setattr(engine_mod, "run_stage", fake)
    return fake


@pytest.fixture
def ledger(tmp_path):
    return ledger_mod.Ledger(str(tmp_path / "ledger"))


@pytest.fixture
def engine(ledger):
    return Engine(ledger, project_dir=REPO)


def release(workspace, **overrides):
    overrides.setdefault("spec.approvals", {"required": ["client_acceptance"]})
    return write_document(workspace, minimal_document("software_release", **overrides))


def events(engine, change_order_id, name=None):
    records = engine.ledger.get(change_order_id).read_audit()
    return [r for r in records if name is None or r["event"] == name]


def stage_starts(engine, change_order_id):
    return [r["data"]["stage"] for r in events(engine, change_order_id, "stage_started")]


CO = "CO-software-release"


def test_a_release_runs_through_every_gate_with_distinct_people(workspace, engine, stages):
    path = release(workspace)
    outcome = engine.run(path, "bob")
    assert (outcome.status, outcome.step, outcome.exit_code) == ("waiting", "test_signoff", 3)
    with pytest.raises(GateError, match="separation of duties: bob built the artifact of change order "
                                        "CO-software-release and may not approve its test_signoff gate"):
        engine.decide(CO, "test_signoff", "bob", True)
    assert engine.decide(CO, "test_signoff", "carol", True, "passed").exit_code == 0
    assert engine.run(CO, "erin").step == "change_board"
    with pytest.raises(GateError, match="separation of duties: alice requested change order CO-software-release "
                                        "and may not approve its change_board gate"):
        engine.decide(CO, "change_board", "alice", True)
    engine.decide(CO, "change_board", "dave", True)
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.step) == ("waiting", "client_acceptance")
    engine.decide(CO, "client_acceptance", "alice", True)
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.exit_code) == ("succeeded", 0)

    # Each stage ran exactly once, in plan order; the go/no-go was decided by the runner itself.
    assert stage_starts(engine, CO) == ["build", "test", "promote_test", "promote", "distribute", "install_beta",
                                        "install_wave_1", "commit"]
    state = engine.ledger.get(CO).read_state()
    assert state["steps"]["go_no_go"]["decided_by"] == "esd"
    assert state["steps"]["go_no_go"]["comment"] == "automatic: 3 of 3 beta host(s) succeeded (100% >= 100%)"
    assert state["steps"]["build"]["outputs"]["artifact"]["builder"] == "bob"
    # The test stage got the build's artifact, pinned by digest. The repository stages entered it into the test
    # channel and promoted it to production on the passing test record; distribute mirrored production to the
    # depots. The install stages get no artifact path: deploy.yml takes it from each host's depot, pinned to the
    # signed index, which must list the build's digest. The waves get their own hosts.
    test = [c for c in stages.calls if c["stage"] == "test"][0]
    assert (test["extravars"]["software_src"], test["extravars"]["software_sha256"]) == (
        "/tmp/hello-agent-1.1.0.esdpkg", "d" * 64)
    calls = {c["stage"]: c for c in stages.calls}
    assert calls["promote_test"]["extravars"]["promote_src"] == "/tmp/hello-agent-1.1.0.esdpkg"
    assert calls["promote_test"]["extravars"]["promote_channel"] == "test"
    promote = calls["promote"]["extravars"]
    assert (promote["promote_name"], promote["promote_version"], promote["promote_channel"]) == (
        "hello-agent", "1.1.0", "production")
    assert (promote["esd_tested_sha256"], promote["esd_test_passed"], promote["esd_user"]) == ("d" * 64, True, "erin")
    assert promote["promote_test_record"]["sha256"] == "{{ esd_tested_sha256 }}"
    assert calls["distribute"]["extravars"]["distribute_depots"] == "depots"
    install = calls["install_wave_1"]
    assert "software_src" not in install["extravars"]
    assert install["extravars"]["software_sha256"] == "d" * 64
    assert install["extravars"]["esd_hosts"] == "production"
    assert install["limit_hosts"] == ["prod-%03d" % n for n in range(4, 25)]
    assert [r["event"] for r in events(engine, CO, None) if r["event"].startswith("gate_")].count("gate_approved") == 4
    assert engine.ledger.get(CO).verify_audit()[0]
    assert os.path.isfile(os.path.join(engine.ledger.get(CO).path, "report", "status.md"))


def test_running_a_finished_change_order_does_nothing(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    assert engine.run(CO, "erin").status == "succeeded"
    calls = len(stages.calls)
    outcome = engine.run(CO, "erin")
    assert outcome.status == "succeeded" and len(stages.calls) == calls


def test_a_denied_gate_stops_the_change_order(workspace, engine, stages):
    engine.run(release(workspace), "bob")
    outcome = engine.decide(CO, "test_signoff", "carol", False, "health check flaky on test-02")
    assert (outcome.status, outcome.exit_code) == ("denied", 5)
    assert outcome.message == "gate test_signoff denied by carol: health check flaky on test-02"
    again = engine.run(CO, "erin")
    assert (again.status, again.exit_code) == ("denied", 5)
    assert stage_starts(engine, CO) == ["build", "test"]
    with pytest.raises(GateError, match="is denied; its gates cannot be decided any more"):
        engine.decide(CO, "test_signoff", "carol", True)


def test_the_builder_may_not_deny_either_and_gates_must_be_pending(workspace, engine, stages):
    engine.run(release(workspace), "bob")
    with pytest.raises(GateError, match="may not deny its test_signoff gate"):
        engine.decide(CO, "test_signoff", "bob", False)
    with pytest.raises(GateError, match="gate change_board of change order CO-software-release is not pending: "
                                        "not reached yet"):
        engine.decide(CO, "change_board", "dave", True)
    with pytest.raises(GateError, match="has no gate uat_signoff"):
        engine.decide(CO, "uat_signoff", "dave", True)


def test_approver_lists_are_enforced(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {"approvers": {"test_signoff": ["carol"]}}})
    engine.run(path, "bob")
    with pytest.raises(GateError, match="erin may not decide gate test_signoff of change order "
                                        "CO-software-release: its approvers are carol"):
        engine.decide(CO, "test_signoff", "erin", True)


def test_a_wave_that_breaks_its_budget_halts_the_rollout_and_the_change_is_backed_out(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}, "spec.rollout": {"wave_size": 7}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    stages.script["install_wave_2"] = lambda call: {"failed": ["prod-012", "prod-013"]}
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    assert outcome.message.startswith(
        "change order CO-software-release rolled back: the rollout halted (2 of 7 host(s) failed: prod-012, prod-013: "
        "[health_check] health check exited 3) and the change was backed out (17 endpoint(s) rolled back)")
    state = engine.ledger.get(CO).read_state()
    assert state["steps"]["install_wave_2"]["failures"]["prod-012"]["phase"] == "health_check"
    # No further wave starts: wave 3 never ran; the backout rolled back every endpoint the rollout changed.
    assert state["steps"]["install_wave_3"]["status"] == "halted"
    assert stage_starts(engine, CO) == ["build", "test", "promote_test", "promote", "distribute", "install_beta",
                                        "install_wave_1", "install_wave_2", "backout"]
    backout = [c for c in stages.calls if c["stage"] == "backout"][0]
    assert backout["extravars"]["backout_rollback_hosts"] == ["prod-%03d" % n for n in range(1, 18)]
    assert backout["extravars"]["backout_redistribute_hosts"] == []
    assert state["rollout"]["verdict"]["result"] == "rolled_back"
    # A rolled-back change order is final: running it again does nothing.
    calls = len(stages.calls)
    assert engine.run(CO, "erin").status == "rolled_back" and len(stages.calls) == calls


def test_beta_failures_lead_to_an_automatic_no_go(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}, "spec.rollout": {"min_success_percent": 100}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    stages.script["install_beta"] = lambda call: {"failed": ["prod-002"]}
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    state = engine.ledger.get(CO).read_state()
    assert state["steps"]["go_no_go"]["comment"] == "automatic: 2 of 3 beta host(s) succeeded (67% < 100%)"
    assert state["rollout"]["halted"]["reason"] == ("no-go decided by esd: automatic: 2 of 3 beta host(s) succeeded "
                                                    "(67% < 100%)")
    assert "install_wave_1" not in stage_starts(engine, CO)
    # The beta group is backed out: the failed host and the two that succeeded.
    backout = [c for c in stages.calls if c["stage"] == "backout"][0]
    assert backout["extravars"]["backout_rollback_hosts"] == ["prod-001", "prod-002", "prod-003"]


def test_a_tolerant_go_no_go_lets_the_waves_run(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}, "spec.rollout": {"min_success_percent": 60}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    stages.script["install_beta"] = lambda call: {"failed": ["prod-002"]}
    assert engine.run(CO, "erin").status == "succeeded"


def test_a_manual_go_no_go_waits_for_a_person(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}, "spec.rollout": {"go_no_go": "manual"}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.step) == ("waiting", "go_no_go")
    engine.decide(CO, "go_no_go", "erin", True, "beta healthy for 2 days")
    assert engine.run(CO, "erin").status == "succeeded"


def test_a_playbook_that_is_not_built_yet_says_so(workspace, ledger, stages, tmp_path):
    # every playbook of the catalogue exists in this repository now, so the project here lacks one
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    for playbook in os.listdir(os.path.join(REPO, "playbooks")):
        if playbook != "build_image.yml":
            os.symlink(os.path.join(REPO, "playbooks", playbook), str(project / "playbooks" / playbook))
    engine = Engine(ledger, project_dir=str(project))
    path = write_document(workspace, minimal_document("prepare_image"))
    outcome = engine.run(path, "bob")
    assert (outcome.status, outcome.step, outcome.exit_code) == ("failed", "build_image", 1)
    assert outcome.message == ("change order CO-prepare-image failed at stage build_image: playbook "
                               "playbooks/build_image.yml is not built yet in this project: request type "
                               "prepare_image is planned but its stage build_image cannot run")
    assert engine.ledger.get("CO-prepare-image").read_state()["steps"]["build_image"]["status"] == "not_built"


def test_a_build_that_reports_another_version_fails(workspace, engine, stages):
    stages.script["build"] = lambda call: {"outputs": {"esd_artifact": {
        "name": "hello-agent", "version": "1.0.0", "sha256": "e" * 64, "path": "/tmp/x", "builder": "bob"}}}
    outcome = engine.run(release(workspace), "bob")
    assert outcome.message.endswith("the build produced hello-agent 1.0.0 but the change order asks for "
                                    "hello-agent 1.1.0")


def test_a_test_without_backout_rehearsal_fails(workspace, engine, stages):
    stages.script["test"] = lambda call: {"outputs": {"esd_test": {"passed": True, "backout_rehearsed": False}}}
    outcome = engine.run(release(workspace), "bob")
    assert (outcome.status, outcome.step) == ("failed", "test")
    assert outcome.message.endswith("the test did not rehearse the backout (set_stats esd_test.backout_rehearsed)")


class Crash(BaseException):
    """What kill -9 looks like to the ledger: the process stops between two writes."""


def test_a_crash_mid_stage_resumes_that_stage_only(workspace, engine, stages):
    path = release(workspace, **{"spec.approvals": {}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)

    def crash(call):
        raise Crash()

    stages.script["install_wave_1"] = crash
    with pytest.raises(Crash):
        engine.run(CO, "erin")
    state = engine.ledger.get(CO).read_state()
    assert state["status"] == "running" and state["steps"]["install_wave_1"]["status"] == "running"
    del stages.script["install_wave_1"]
    assert engine.run(CO, "erin").status == "succeeded"
    starts = stage_starts(engine, CO)
    assert starts == ["build", "test", "promote_test", "promote", "distribute", "install_beta", "install_wave_1",
                      "install_wave_1", "commit"]
    interrupted = events(engine, CO, "stage_interrupted")
    assert [r["data"] for r in interrupted] == [{"stage": "install_wave_1", "attempt": 1, "detected": "at resume"}]
    assert engine.ledger.get(CO).verify_audit()[0]


def test_a_resume_waits_for_the_orphan_of_an_attempt_whose_pid_was_never_recorded(workspace, ledger, stages):
    """esd killed while ansible-playbook was starting: no pid in the stage record, yet the orphan runs on. The
    resume finds it by the attempt's directory in its environment and waits for it before attempt 2."""
    import io
    import subprocess
    import sys
    import threading

    from esd.progress import Console

    said = io.StringIO()
    engine = Engine(ledger, console=Console(stream=said, interactive=False), project_dir=REPO)
    orphans = []

    def crash_while_the_playbook_starts(call):
        attempt_dir = ledger.entry(CO).stage_dir("test", 1)
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"],
                                  env=dict(os.environ, ESD_RUN_DIR=attempt_dir))
        threading.Thread(target=orphan.wait, daemon=True).start()     # init would reap it after a real crash
        orphans.append(orphan)
        raise Crash()

    stages.script["test"] = crash_while_the_playbook_starts
    with pytest.raises(Crash):
        engine.run(release(workspace), "bob")
    record = ledger.get(CO).read_state()["steps"]["test"]
    assert (record["status"], record["attempts"], record["pid"]) == ("running", 1, None)
    seen_at_attempt_2 = []
    stages.script["test"] = lambda call: seen_at_attempt_2.append(orphans[0].poll()) or {}
    assert engine.run(CO, "bob").step == "test_signoff"
    assert seen_at_attempt_2 == [0], "attempt 2 started while the orphan of attempt 1 still ran"
    assert ("    waiting for ansible-playbook (pid %d) of the interrupted attempt 1 of stage test to exit\n"
            % orphans[0].pid) in said.getvalue()
    assert stage_starts(engine, CO) == ["build", "test", "test"]


def test_a_second_run_is_refused_while_one_holds_the_lock(workspace, engine, stages, ledger):
    path = release(workspace)
    engine.run(path, "bob")
    holder = ledger.entry(CO)
    holder.lock("bob", "esd run CO-software-release")
    try:
        with pytest.raises(LockedError, match=r"change order CO-software-release is being run by another process "
                                              r"\(user bob, host .*, pid %d, command esd run" % os.getpid()):
            engine.run(CO, "erin")
    finally:
        holder.unlock()


def test_a_registered_change_order_cannot_change(workspace, engine, stages):
    path = release(workspace)
    engine.run(path, "bob")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("# edited after registration\n")
    with pytest.raises(ValidationError, match="a registered change order cannot change"):
        engine.run(path, "bob")


def test_cancel_a_waiting_change_order(workspace, engine, stages):
    engine.run(release(workspace), "bob")
    outcome = engine.cancel(CO, "alice", "requirements changed")
    assert (outcome.status, outcome.exit_code, outcome.message) == ("cancelled", 5,
                                                                    "cancelled by alice: requirements changed")
    assert engine.run(CO, "bob").status == "cancelled"
    with pytest.raises(UsageError) as raised:
        engine.cancel(CO, "alice")
    assert str(raised.value) == ("change order CO-software-release is already cancelled: only a change order that "
                                 "has not finished can be cancelled (nothing was changed)")
    assert raised.value.exit_code == 2


def test_a_cancel_request_stops_the_running_stage(workspace, engine, stages):
    def cancelled_meanwhile(call):
        engine.ledger.entry(CO).request_cancel("alice", "stop")
        assert call["cancel_requested"]()
        return {"status": "canceled"}

    stages.script["test"] = cancelled_meanwhile
    outcome = engine.run(release(workspace), "bob")
    assert (outcome.status, outcome.step) == ("cancelled", "test")
    assert engine.ledger.get(CO).read_state()["steps"]["test"]["status"] == "cancelled"


def test_a_cancel_request_is_honoured_when_the_run_stops_at_a_gate(workspace, engine, stages, monkeypatch):
    """`esd cancel` asks while the run is past its last check and on its way to stop at a gate: the run cancels
    before it lets go of the change order, so no approval can slip in and no later run cancels by surprise."""
    stop_at_gate = Engine._gate

    def gate_then_cancel_request(self, entry, co, state, planned, record):
        outcome = stop_at_gate(self, entry, co, state, planned, record)
        if outcome is not None:
            entry.request_cancel("alice", "wrong week")
        return outcome

    monkeypatch.setattr(Engine, "_gate", gate_then_cancel_request)
    outcome = engine.run(release(workspace), "bob")
    assert (outcome.status, outcome.exit_code, outcome.message, outcome.step) == (
        "cancelled", 5, "cancelled by alice: wrong week", "test_signoff")
    entry = engine.ledger.get(CO)
    assert not os.path.exists(entry.cancel_path)
    with pytest.raises(GateError, match="change order CO-software-release is cancelled; its gates cannot be decided"):
        engine.decide(CO, "test_signoff", "carol", True)
    assert [r["data"] for r in events(engine, CO, "cancelled")] == [{"step": "test_signoff", "comment": "wrong week"}]


def _hold_then_release(entry, seconds):
    """Another process holding the change order (a run that is about to stop) for ``seconds``, then exiting."""
    import subprocess
    import sys
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from esd import ledger
        e = ledger.Ledger(%r).entry(%r)
        e.lock("erin", "esd run %s")
        print("locked", flush=True)
        time.sleep(%r)
    """ % (os.path.dirname(os.path.dirname(engine_mod.__file__)), os.path.dirname(entry.path), entry.id, entry.id,
           seconds))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("stopped_at", ["gate", "failed stage"])
def test_cancel_cancels_a_run_that_stopped_without_honouring_the_request(workspace, engine, stages, stopped_at):
    """The holder lets go without looking at the request (it stopped at a gate or a failed stage, or an error
    ended it): `esd cancel` takes the change order itself and cancels it; the request file is gone."""
    if stopped_at == "failed stage":
        stages.script["test"] = lambda call: {"failed": ["test-01"]}
    engine.run(release(workspace), "bob")
    status = engine.ledger.get(CO).read_state()["status"]
    assert status == ("waiting" if stopped_at == "gate" else "failed")
    entry = engine.ledger.get(CO)
    holder = _hold_then_release(entry, 0.6)
    try:
        outcome = engine.cancel(CO, "alice", "obsolete", wait_seconds=20)
    finally:
        holder.kill()
        holder.wait()
    assert (outcome.status, outcome.exit_code, outcome.message) == ("cancelled", 5, "cancelled by alice: obsolete")
    assert not os.path.exists(entry.cancel_path)
    assert entry.read_state()["status"] == "cancelled"
    assert engine.run(CO, "bob").status == "cancelled"
    assert entry.verify_audit()[0]


def test_a_standing_cancel_request_comes_before_a_gate_decision(workspace, engine, stages):
    """`esd cancel` gave up waiting (exit 4) and its request stands; whoever takes the change order next honours
    it, an approval too."""
    engine.run(release(workspace), "bob")
    entry = engine.ledger.get(CO)
    entry.request_cancel("alice", "obsolete")
    with pytest.raises(ChangeOrderStopped) as raised:
        engine.decide(CO, "test_signoff", "carol", True)
    assert str(raised.value) == ("gate test_signoff of change order CO-software-release was not decided: a cancel "
                                 "request was pending, so the change order is now cancelled (cancelled by alice: "
                                 "obsolete)")
    assert raised.value.exit_code == 5
    state = entry.read_state()
    assert (state["status"], state["steps"]["test_signoff"]["status"]) == ("cancelled", "pending")
    assert not os.path.exists(entry.cancel_path)


def test_an_interrupt_leaves_a_resumable_change_order(workspace, engine, stages):
    def interrupted(call):
        engine._interrupted.set()
        assert call["cancel_requested"]()
        return {"status": "canceled"}

    stages.script["test"] = interrupted
    outcome = engine.run(release(workspace), "bob")
    assert (outcome.status, outcome.exit_code) == ("interrupted", 1)
    del stages.script["test"]
    assert engine.run(CO, "bob").step == "test_signoff"
    assert stage_starts(engine, CO) == ["build", "test", "test"]


def test_production_stages_wait_for_the_maintenance_window(workspace, ledger, stages):
    window = {"start": "2026-03-01T22:00:00+00:00", "end": "2026-03-02T04:00:00+00:00"}
    path = write_document(workspace, minimal_document("remove", **{"spec.window": window}))
    moment = [datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)]
    engine = Engine(ledger, project_dir=REPO, clock=lambda: moment[0])
    engine.run(path, "erin")
    engine.decide("CO-remove", "change_board", "dave", True)
    outcome = engine.run("CO-remove", "erin")
    assert (outcome.status, outcome.exit_code) == ("waiting", 3)
    assert outcome.message == "maintenance window opens at 2026-03-01T22:00:00+00:00 (before stage remove_beta)"
    assert stages.count("remove_beta") == 0
    moment[0] = datetime.datetime(2026, 3, 1, 23, 0, tzinfo=datetime.timezone.utc)
    assert engine.run("CO-remove", "erin").status == "succeeded"


def test_a_closed_window_fails_the_change_order(workspace, ledger, stages):
    window = {"start": "2026-03-01T22:00:00+00:00", "end": "2026-03-02T04:00:00+00:00"}
    path = write_document(workspace, minimal_document("remove", **{"spec.window": window}))
    engine = Engine(ledger, project_dir=REPO,
                    clock=lambda: datetime.datetime(2026, 3, 3, tzinfo=datetime.timezone.utc))
    engine.run(path, "erin")
    engine.decide("CO-remove", "change_board", "dave", True)
    outcome = engine.run("CO-remove", "erin")
    assert outcome.status == "failed"
    assert outcome.message == ("maintenance window closed at 2026-03-02T04:00:00+00:00 before stage remove_beta "
                               "could run")


def test_install_needs_a_rehearsed_backout_before_production_approval(workspace, engine, stages):
    path = write_document(workspace, minimal_document("install"))
    assert engine.run(path, "erin").step == "change_board"
    with pytest.raises(GateError, match="cannot approve change_board of change order CO-install: production "
                                        "approval requires a rehearsed backout: spec.backout.rehearsed_in: change "
                                        "order CO-TEST-1 is not in the ledger"):
        engine.decide("CO-install", "change_board", "dave", True)

    # Test the same artifact in change order CO-TEST-1, then the approval goes through.
    test_document = minimal_document("test_package", **{"metadata.id": "CO-TEST-1"})
    test_path = write_document(workspace, test_document, "test.yml")
    assert engine.run(test_path, "carol").step == "test_signoff"
    engine.decide("CO-install", "change_board", "dave", True)
    assert engine.run("CO-install", "erin").status == "succeeded"


def test_install_refuses_a_rehearsal_of_another_artifact(workspace, engine, stages):
    test_document = minimal_document("test_package", **{"metadata.id": "CO-TEST-1",
                                                        "spec.software.sha256": "f" * 64})
    engine.run(write_document(workspace, test_document, "test.yml"), "carol")
    engine.run(write_document(workspace, minimal_document("install")), "erin")
    with pytest.raises(GateError, match="change order CO-TEST-1 has no successful test stage with a rehearsed "
                                        "backout for sha256 a{64}"):
        engine.decide("CO-install", "change_board", "dave", True)


def test_status_report_and_json_are_consistent(workspace, engine, stages):
    from esd import report

    engine.run(release(workspace), "bob")
    entry = engine.ledger.get(CO)
    data = report.status_report(entry.read_state(), entry)
    assert data["status"] == "waiting" and data["current_step"] == "test_signoff"
    assert [s["status"] for s in data["steps"][:3]] == ["succeeded", "succeeded", "pending"]
    assert data["artifact"]["sha256"] == "d" * 64
    assert data["audit"] == {"records": len(entry.read_audit()), "verified": True}
    text = report.render_text(data)
    assert "status: WAITING - waiting for gate test_signoff" in text
    json.dumps(data)


def test_the_go_no_go_waits_for_the_soak_time(workspace, ledger, stages):
    offset = [datetime.timedelta(0)]
    engine = Engine(ledger, project_dir=REPO, clock=lambda: ledger_mod.now() + offset[0])
    path = release(workspace, **{"spec.approvals": {}, "spec.rollout": {"soak_seconds": 600}})
    engine.run(path, "bob")
    engine.decide(CO, "test_signoff", "carol", True)
    engine.run(CO, "erin")
    engine.decide(CO, "change_board", "dave", True)
    outcome = engine.run(CO, "erin")
    assert (outcome.status, outcome.step, outcome.exit_code) == ("waiting", "go_no_go", 3)
    assert outcome.message.startswith("go/no-go after the beta soak time: decision at ")
    assert stage_starts(engine, CO)[-1] == "install_beta"
    offset[0] = datetime.timedelta(seconds=601)
    assert engine.run(CO, "erin").status == "succeeded"
    assert stage_starts(engine, CO).count("install_beta") == 1
