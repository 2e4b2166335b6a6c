"""Stage results come from ansible-runner events and stats (never from stdout)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types

import ansible_runner

from esd.stage import EventTracker, run_stage


def ev(kind, host=None, **data):
    event = {"event": kind, "pid": 4242, "event_data": dict(data)}
    if host:
        event["event_data"]["host"] = host
    return event


def test_outcomes_follow_the_final_stats():
    seen = []
    tracker = EventTracker("install", ["h1", "h2", "h3", "h4"], on_progress=lambda p: seen.append(
        (p.task_number, p.task_hosts_done, len(p.hosts_failed))), on_pid=lambda pid: seen.append(("pid", pid)))
    for event in [
        ev("playbook_on_start"),
        ev("playbook_on_task_start", task="Software | apply"),
        ev("runner_on_ok", "h1", task="Software | apply",
           res={"changed": True, "active": "1.1.0", "backup": "1.0.0", "committed": "1.0.0", "installed": ["1.0.0", "1.1.0"]}),
        ev("runner_on_failed", "h2", task="Software | apply",
           res={"msg": "Failed to activate hello-agent 1.1.0: health check exited 3", "phase": "health_check"}),
        ev("runner_on_failed", "h3", task="Software | apply", res={"msg": "rescued later"}),
        ev("runner_on_unreachable", "h4", task="Software | apply", res={"msg": "ssh: connection refused"}),
        ev("playbook_on_task_start", task="Software | rescue"),
        ev("runner_on_ok", "h3", task="Software | rescue", res={"changed": False}),
        ev("playbook_on_stats", ok={"h1": 1, "h3": 1}, changed={"h1": 1}, failures={"h2": 1}, dark={"h4": 1},
           rescued={"h3": 1}, processed={"h1": 1, "h2": 1, "h3": 1, "h4": 1},
           artifact_data={"esd_test": {"passed": True}}),
    ]:
        assert tracker(event) is True      # keep ansible-runner's job_events record
    tracker.finish()
    assert {h: o.status for h, o in tracker.hosts.items()} == {"h1": "ok", "h2": "failed", "h3": "ok",
                                                               "h4": "unreachable"}
    assert tracker.hosts["h1"].changed and tracker.hosts["h1"].software == {
        "active": "1.1.0", "backup": "1.0.0", "committed": "1.0.0", "installed": ["1.0.0", "1.1.0"]}
    failed = tracker.hosts["h2"]
    assert (failed.task, failed.phase, failed.message) == (
        "Software | apply", "health_check", "Failed to activate hello-agent 1.1.0: health check exited 3")
    assert tracker.hosts["h3"].message is None          # the rescued failure is not a failure
    assert tracker.artifact_data == {"esd_test": {"passed": True}}
    assert tracker.pid == 4242 and ("pid", 4242) in seen
    assert (1, 4, 3) in seen          # progress: task 1, 4 hosts reported, 3 failed so far


def test_ignored_errors_do_not_fail_a_host():
    tracker = EventTracker("x", ["h1"])
    tracker(ev("runner_on_failed", "h1", task="probe", ignore_errors=True, res={"msg": "no"}))
    assert tracker.hosts["h1"].status == "ok"


def test_a_missing_playbook_is_not_built(tmp_path):
    result = run_stage(stage_id="build_image", playbook=str(tmp_path / "build_image.yml"), inventory="x",
                       private_data_dir=str(tmp_path / "pdd"), extravars={}, envvars={})
    assert result.status == "not_built" and result.error.startswith("playbook ")


def test_the_playbook_pid_is_reported_as_soon_as_it_is_spawned(tmp_path, monkeypatch):
    """Before its first event: a crash while ansible-playbook starts must not leave an attempt whose process
    nobody knows. Here the "playbook" runs 1.5 s without a single event."""
    spawned = []

    def run_async(**kwargs):
        env = dict(os.environ, **kwargs["envvars"])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"], env=env)
        spawned.append(child)
        runner = types.SimpleNamespace(status=None, rc=None,
                                       config=types.SimpleNamespace(artifact_dir=str(tmp_path / "artifacts")))

        def wait():
            runner.rc = child.wait()
            runner.status = "successful"

        thread = threading.Thread(target=wait)
        thread.start()
        return thread, runner

    monkeypatch.setattr(ansible_runner, "run_async", run_async)
    playbook = tmp_path / "stage.yml"
    playbook.write_text("- hosts: all\n  tasks: []\n")
    reported = []
    result = run_stage(stage_id="install", playbook=str(playbook), inventory="x", private_data_dir=str(tmp_path / "a1"),
                       extravars={}, envvars={"ESD_STAGE": "install"},
                       on_pid=lambda pid: reported.append((pid, spawned[0].poll())))
    assert reported == [(spawned[0].pid, None)]       # once, while it ran
    assert result.pid == spawned[0].pid


def _fake_runner(tmp_path, monkeypatch, events, stdout, rc):
    """ansible_runner.run_async that hands over ``events`` and ends ``failed`` with ``stdout`` in its stdout file."""
    artifact_dir = tmp_path / "artifacts"
    artifact_dir.mkdir()
    (artifact_dir / "stdout").write_text(stdout)

    def run_async(**kwargs):
        for event in events:
            kwargs["event_handler"](event)
        thread = threading.Thread(target=lambda: None)
        thread.start()
        return thread, types.SimpleNamespace(status="failed", rc=rc,
                                             config=types.SimpleNamespace(artifact_dir=str(artifact_dir)))

    monkeypatch.setattr(ansible_runner, "run_async", run_async)
    playbook = tmp_path / "stage.yml"
    playbook.write_text("- hosts: all\n")
    return run_stage(stage_id="build", playbook=str(playbook), inventory="x", private_data_dir=str(tmp_path / "a1"),
                     extravars={}, envvars={})


def test_a_playbook_that_ends_before_any_result_is_explained_from_its_events(tmp_path, monkeypatch):
    verbose = [{"event": "verbose", "stdout": "\x1b[0;31m[ERROR]: YAML parsing failed: While parsing a flow node did "
                                              "not find expected node content.\x1b[0m"},
               {"event": "verbose", "stdout": "\x1b[0;31mOrigin: /srv/playbooks/build.yml:5:1\x1b[0m"}]
    result = _fake_runner(tmp_path, monkeypatch, verbose, "something else entirely\n", 4)
    assert (result.status, result.error) == ("failed", "ansible-playbook exited 4 before reporting a result: [ERROR]: "
                                                       "YAML parsing failed: While parsing a flow node did not find "
                                                       "expected node content.")


def test_a_playbook_that_could_not_start_is_explained_from_the_runner_output(tmp_path, monkeypatch):
    result = _fake_runner(tmp_path, monkeypatch, [], "The command was not found or was not executable: "
                                                     "ansible-playbook.\n", 127)
    assert result.error == ("ansible-playbook exited 127 before reporting a result: The command was not found or was "
                            "not executable: ansible-playbook.")
