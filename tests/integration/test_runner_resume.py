"""kill -9 of `esd run` in the middle of a stage: the next `esd run` resumes at that stage, the finished
stages are not repeated, and every host ends in the right state."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import PRODUCTION, active, committed, fleet, seeded_fleet  # noqa: E402,F401

from esd import processes  # noqa: E402  (importable once test_runner_support put runner/ on sys.path)

pytestmark = pytest.mark.integration
CO = "IT-RESUME-1"


def _hosts_applied(job_events_dir, changed_only=False):
    """Hosts whose package transition (the esd.osp.software task) has finished, from the stage's events
    (``changed_only``: those it changed)."""
    hosts = set()
    for path in glob.glob(os.path.join(job_events_dir, "*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                event = json.load(handle)
        except (OSError, ValueError):
            continue        # being written
        data = event.get("event_data") or {}
        result = data.get("res") or {}
        if event.get("event") == "runner_on_ok" and "active" in result and (result.get("changed") or not changed_only):
            hosts.add(data["host"])
    return hosts


def _wave_events(fleet, attempt):
    return os.path.join(fleet.ledger, CO, "stages", "install_wave_1", "attempt-%d" % attempt, "artifacts",
                        "attempt-%d" % attempt, "job_events")


@pytest.mark.parametrize("crash", ["runner", "machine"])
def test_sigkill_mid_stage_resumes_from_the_interrupted_stage(seeded_fleet, crash):
    """``runner``: only `esd run` is killed, its ansible-playbook runs on and the resume waits for it.
    ``machine``: the ansible-playbook dies too (as in a power cut): the resume's attempt finishes the hosts the
    killed attempt never reached, and leaves the ones it had done as they were."""
    fleet = seeded_fleet
    path = fleet.release(CO, approvals=None, rollout={"beta": "beta"})
    fleet.esd_json("run", path, "--quiet", user="bob", expect_rc=3)
    fleet.esd_json("approve", CO, "--gate", "test_signoff", user="carol")
    fleet.esd_json("run", CO, "--quiet", user="erin", expect_rc=3)
    fleet.esd_json("approve", CO, "--gate", "change_board", user="dave")

    # Two forks make the 21-host wave long enough to be killed in its middle.
    env = dict(fleet.env, ESD_USER="erin", ANSIBLE_FORKS="2")
    victim = subprocess.Popen(fleet.command("run", CO, "--quiet"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    events = _wave_events(fleet, 1)
    deadline = time.monotonic() + 600
    try:
        while len(_hosts_applied(events)) < 3:
            assert victim.poll() is None, "esd run ended before it could be killed"
            assert time.monotonic() < deadline, "the wave never started"
            time.sleep(0.2)
        applied_at_kill = _hosts_applied(events)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    state = fleet.state(CO)
    wave = state["steps"]["install_wave_1"]
    assert (state["status"], wave["status"], wave["attempts"]) == ("running", "running", 1)
    assert wave["pid"], "the ansible-playbook pid was recorded when the stage started"
    if crash == "machine":
        # ansible-runner starts ansible-playbook in a session of its own: its process group holds the workers.
        os.killpg(wave["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while processes.start_time(wave["pid"]) == wave["pid_start"] and time.monotonic() < deadline:
            time.sleep(0.1)
        done_in_attempt_1 = _hosts_applied(events)
        assert len(done_in_attempt_1) < 21, "the whole wave finished before the crash: nothing left to resume"
    # The runner died in the middle of the wave: some of its 21 hosts were done, others not.
    assert 3 <= len(applied_at_kill) < 21

    resumed = fleet.esd_json("run", CO, "--quiet", user="erin")
    assert resumed["status"] == "succeeded"
    assert fleet.stage_starts(CO) == ["build", "test", "promote_test", "promote", "distribute", "install_beta",
                                      "install_wave_1", "install_wave_1", "commit"]
    interrupted = [r["data"] for r in fleet.audit(CO) if r["event"] == "stage_interrupted"]
    assert interrupted == [{"stage": "install_wave_1", "attempt": 1, "detected": "at resume"}]
    assert {h: (active(r), committed(r)) for h, r in fleet.software().items()} == {
        h: ("1.1.0", "1.1.0") for h in PRODUCTION}
    final = fleet.state(CO)["steps"]["install_wave_1"]
    assert (final["status"], final["attempts"], len(final["hosts"]["ok"])) == ("succeeded", 2, 21)
    assert fleet.esd("log", CO, "--verify").returncode == 0
    # The killed attempt's ansible-playbook is gone too: the resume waited for it before re-running the stage.
    assert processes.start_time(wave["pid"]) != wave["pid_start"]
    wave_hosts = set(final["hosts"]["ok"])
    if crash == "machine":
        # Attempt 2 ran on every host of the wave and changed only hosts attempt 1 had not reported: the ones it
        # never reached, all but the (at most 2, ANSIBLE_FORKS) whose change landed while their result was lost
        # in the crash. The hosts attempt 1 reported done were found as they should be.
        assert _hosts_applied(_wave_events(fleet, 2)) == wave_hosts
        changed_by_attempt_2 = _hosts_applied(_wave_events(fleet, 2), changed_only=True)
        assert changed_by_attempt_2 <= wave_hosts - done_in_attempt_1
        assert len(wave_hosts - done_in_attempt_1 - changed_by_attempt_2) <= 2
        assert changed_by_attempt_2, "the crash left nothing for the resume to do"
