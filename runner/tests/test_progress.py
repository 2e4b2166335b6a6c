"""Live progress: what `esd run` prints while a stage runs, on a log (one line per task) and on a terminal."""

from __future__ import annotations

import io

from esd.progress import Console
from esd.stage import EventTracker


def _stage(console, hosts, failing=()):
    """Feed the console the events of a two-task stage, as ansible-runner's event_handler would."""
    tracker = EventTracker("install_wave_1", hosts, on_progress=console.progress)
    for task in ("Software | apply | Bring hello-agent to its state", "Software | verify | Check it is active"):
        tracker({"event": "playbook_on_task_start", "event_data": {"task": task}})
        for host in hosts:
            failed = host in failing and task.startswith("Software | apply")
            tracker({"event": "runner_on_failed" if failed else "runner_on_ok",
                     "event_data": {"host": host, "task": task, "res": {"changed": not failed}}})
    return tracker


def test_a_log_gets_a_line_per_stage_task_and_result():
    out = io.StringIO()
    console = Console(stream=out, interactive=False)
    step = {"id": "install_wave_1", "title": "Install (wave 1 of 1)"}
    console.stage_started(step, 2, 3)
    _stage(console, ["h1", "h2", "h3"], failing=("h2",))
    console.stage_finished(step, {"status": "failed", "duration": 4.25, "reason": "1 of 3 host(s) failed",
                                  "hosts": {"ok": ["h1", "h3"], "failed": ["h2"]}})
    assert out.getvalue().splitlines() == [
        "==> stage install_wave_1 (attempt 2): Install (wave 1 of 1) on 3 host(s)",
        "    [install_wave_1] task 1 Software | apply | Bring hello-agent to its state: 3/3 hosts done, 1 failed",
        "    [install_wave_1] task 2 Software | verify | Check it is active: 3/3 hosts done, 1 failed",
        "    stage install_wave_1 failed in 4.2s: 1 of 3 host(s) failed"]


def test_a_terminal_gets_one_updating_line_cleared_before_the_next_message():
    out = io.StringIO()
    console = Console(stream=out, interactive=True)
    _stage(console, ["h1", "h2"])
    console.gate({"id": "go_no_go", "title": "Go/no-go"}, {"status": "approved", "decided_by": "esd",
                                                          "comment": "automatic: 2 of 2 succeeded"})
    text = out.getvalue()
    assert text.startswith("\r\033[K    [install_wave_1] task 1 ")
    # the last progress state shown, then cleared before the gate line
    assert "\r\033[K    [install_wave_1] task 2 Software | verify | Check it is active: 2/2 hosts done, 0 failed" \
        "\r\033[K==> gate go_no_go approved by esd: automatic: 2 of 2 succeeded\n" in text


def test_quiet_prints_nothing():
    out = io.StringIO()
    console = Console(stream=out, quiet=True)
    console.stage_started({"id": "s", "title": "S"}, 1, 1)
    _stage(console, ["h1"])
    assert out.getvalue() == ""
