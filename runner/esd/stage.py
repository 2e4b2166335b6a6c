"""Run one stage: a playbook through ansible-runner's ``run_async``, outcome from events and stats.

Outcomes never come from ansible's stdout: per-host outcomes come from ``runner_on_*`` events and the
final ``playbook_on_stats`` event (stats and ``set_stats`` artifact data), the stage's status from
ansible-runner's ``status``/``rc``. Output text is used for one thing, the message of a playbook that
ended before any result (a syntax error, a bad inventory): what ansible printed, from ansible-runner's
``verbose`` events; only when there was no event at all (ansible-playbook could not be started) from
the runner's stdout file, which then holds the spawn error. Each attempt gets its own
ansible-runner private data dir (``stages/<step>/attempt-<n>`` in the ledger) whose ``artifacts/``
keep the runner's record (command, job_events, stdout, rc, status).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import threading
import time
from typing import Any, Callable

import ansible_runner

from esd import processes

# Events that end a task on a host, and what they mean for it.
HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Keys of an esd.osp.software result worth keeping per host (the endpoint's state after the stage).
SOFTWARE_KEYS = ("active", "backup", "committed", "installed")


@dataclasses.dataclass
class HostOutcome:
    host: str
    status: str = "pending"            # ok | failed | unreachable | pending (never reported)
    changed: bool = False
    task: str | None = None            # the task that failed
    message: str | None = None
    phase: str | None = None           # esd.osp.software's phase when it failed
    software: dict | None = None       # what esd.osp.software last reported (active, version, committed, ...)

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StageResult:
    status: str                        # successful | failed | canceled | timeout | not_built
    rc: int | None
    hosts: dict[str, HostOutcome]
    outputs: dict[str, Any]
    started: float
    finished: float
    playbook_seconds: float | None     # playbook_on_start -> playbook_on_stats, from the events
    private_data_dir: str
    artifact_dir: str | None
    pid: int | None
    error: str | None = None           # why ansible-playbook itself did not run or finish

    @property
    def failed_hosts(self):
        return sorted(host for host, outcome in self.hosts.items() if outcome.status in ("failed", "unreachable"))

    @property
    def ok_hosts(self):
        return sorted(host for host, outcome in self.hosts.items() if outcome.status == "ok")


@dataclasses.dataclass
class StageProgress:
    """What a progress display needs while the stage runs."""

    stage: str
    total_hosts: int
    task: str | None = None
    task_number: int = 0
    task_hosts_done: int = 0
    hosts_failed: set = dataclasses.field(default_factory=set)
    hosts_seen: set = dataclasses.field(default_factory=set)


class EventTracker:
    """Folds ansible-runner events into per-host outcomes, outputs and progress."""

    def __init__(self, stage_id, hosts, on_progress=None, on_pid=None):
        self.progress = StageProgress(stage_id, len(hosts) if hosts is not None else 0)
        self.hosts = {host: HostOutcome(host) for host in (hosts or [])}
        self.stats = None
        self.artifact_data = {}
        self.pid = None
        self.play_started = None
        self.play_finished = None
        self.printed = collections.deque(maxlen=200)    # what ansible printed outside tasks (verbose events)
        self.events = 0
        self._task_hosts = set()
        self._on_progress = on_progress
        self._on_pid = on_pid
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self._handle(event)
        return True          # keep ansible-runner's job_events/ files: they are the stage's record

    def _handle(self, event):
        kind = event.get("event")
        data = event.get("event_data") or {}
        self.events += 1
        if self.pid is None and event.get("pid"):
            self.pid = event["pid"]
            if self._on_pid:
                self._on_pid(self.pid)
        if kind == "playbook_on_start":
            self.play_started = time.time()
        elif kind == "playbook_on_task_start":
            self.progress.task = data.get("task") or data.get("name")
            self.progress.task_number += 1
            self.progress.task_hosts_done = 0
            self._task_hosts = set()
            self._notify()
        elif kind in HOST_EVENTS:
            host = data.get("host")
            if not host:
                return
            outcome = self.hosts.setdefault(host, HostOutcome(host))
            status = HOST_EVENTS[kind]
            result = data.get("res") or {}
            if status == "failed" and data.get("ignore_errors"):
                status = "ok"
            if status in ("ok", "skipped"):
                if outcome.status == "pending":
                    outcome.status = "ok"
                if result.get("changed"):
                    outcome.changed = True
                if status == "ok" and "active" in result and "committed" in result:
                    outcome.software = {key: result.get(key) for key in SOFTWARE_KEYS if key in result}
            else:
                outcome.status = status
                outcome.task = data.get("task")
                outcome.message = _message(result)
                outcome.phase = result.get("phase")
                self.progress.hosts_failed.add(host)
            self.progress.hosts_seen.add(host)
            if host not in self._task_hosts:
                self._task_hosts.add(host)
                self.progress.task_hosts_done = len(self._task_hosts)
            self._notify()
        elif kind == "verbose":
            self.printed.extend(line.strip() for line in ANSI_ESCAPE.sub("", event.get("stdout") or "").splitlines()
                                if line.strip())
        elif kind == "playbook_on_stats":
            self.play_finished = time.time()
            self.stats = {key: data.get(key) or {} for key in
                          ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed")}
            self.artifact_data = data.get("artifact_data") or {}

    def _notify(self):
        if self._on_progress:
            self._on_progress(self.progress)

    def finish(self):
        """Settle per-host outcomes from the final stats (rescued failures are not failures)."""
        if self.stats is None:
            return
        failures = self.stats["failures"]
        dark = self.stats["dark"]
        for host in self.stats["processed"]:
            outcome = self.hosts.setdefault(host, HostOutcome(host))
            if host in dark:
                outcome.status = "unreachable"
            elif host in failures:
                outcome.status = "failed"
            else:
                outcome.status = "ok"
                outcome.task = outcome.message = outcome.phase = None
            if host in self.stats["changed"]:
                outcome.changed = True


def _message(result):
    message = result.get("msg") or result.get("message") or result.get("stderr") or result.get("reason")
    if not message and result.get("results"):
        for item in result["results"]:
            if isinstance(item, dict) and item.get("failed"):
                message = item.get("msg") or item.get("stderr")
                break
    if isinstance(message, (list, dict)):
        message = str(message)
    return (message or "failed without a message")[:2000]


class _PidReport:
    """Reports the pid of the run's ansible-playbook once: whoever sees it first (the watcher, or the first
    event ansible-runner hands over) tells ``on_pid``."""

    def __init__(self, on_pid):
        self.pid = None
        self._on_pid = on_pid
        self._lock = threading.Lock()

    def found(self, pid):
        with self._lock:
            if self.pid is not None:
                return
            if self._on_pid:
                self._on_pid(pid)
            self.pid = pid


def _watch_for_playbook(run_dir, report, stopped, interval=0.05):
    """Record the pid of ansible-playbook as soon as it is spawned: the child of this process whose environment
    carries the run's marker (ansible-runner hands the pid over only with the first event, a second or more
    later, and a crash in between would leave an attempt whose process nobody knows)."""
    while not stopped.is_set() and report.pid is None:
        children = processes.of_run(run_dir, parent=os.getpid())
        if children:
            try:
                report.found(children[0])
            except Exception:       # noqa: BLE001 - the first event reports the pid again, in the runner's thread
                pass
            return
        stopped.wait(interval)


def run_stage(*, stage_id, playbook, inventory, private_data_dir, extravars, envvars, hosts=None,
              limit_hosts=None, cancel_requested: Callable[[], bool] | None = None, on_progress=None, on_pid=None):
    """Run ``playbook`` once; return a StageResult. Never raises for a failed play."""
    started = time.time()
    os.makedirs(private_data_dir, exist_ok=True)
    if not os.path.isfile(playbook):
        return StageResult("not_built", None, {}, {}, started, time.time(), None, private_data_dir, None, None,
                           error="playbook %s does not exist" % playbook)
    limit = None
    if limit_hosts is not None:
        limit_file = os.path.join(private_data_dir, "limit")
        with open(limit_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(limit_hosts) + "\n")
        limit = "@" + limit_file
    tracked = limit_hosts if limit_hosts is not None else hosts
    pid = _PidReport(on_pid)
    tracker = EventTracker(stage_id, tracked, on_progress=on_progress, on_pid=pid.found)
    # Every process of this run carries the marker, so a resumed run finds them even when their pid was never
    # recorded (esd.processes.of_run).
    envvars = dict(envvars or {})
    envvars[processes.RUN_DIR_VARIABLE] = os.path.abspath(private_data_dir)
    stopped = threading.Event()
    watcher = threading.Thread(target=_watch_for_playbook, args=(envvars[processes.RUN_DIR_VARIABLE], pid, stopped),
                               name="esd-pid-%s" % stage_id, daemon=True)
    watcher.start()
    ident = os.path.basename(private_data_dir.rstrip(os.sep))
    thread, runner = ansible_runner.run_async(
        private_data_dir=private_data_dir,
        ident=ident,
        playbook=playbook,
        inventory=inventory,
        extravars=extravars,
        envvars=envvars,
        limit=limit,
        quiet=True,
        event_handler=tracker,
        cancel_callback=cancel_requested or (lambda: False),
        settings={"pexpect_timeout": 0.5, "suppress_ansible_output": True},
        # The ledger keeps every attempt; never let ansible-runner rotate them away.
        rotate_artifacts=0,
    )
    thread.join()
    stopped.set()
    watcher.join()
    tracker.finish()
    finished = time.time()
    status = runner.status
    error = None
    if status == "failed" and tracker.stats is None:
        error = _runner_error(runner, tracker)
    playbook_seconds = None
    if tracker.play_started and tracker.play_finished:
        playbook_seconds = tracker.play_finished - tracker.play_started
    return StageResult(status=status, rc=runner.rc, hosts=tracker.hosts, outputs=tracker.artifact_data,
                       started=started, finished=finished, playbook_seconds=playbook_seconds,
                       private_data_dir=private_data_dir, artifact_dir=runner.config.artifact_dir,
                       pid=pid.pid or tracker.pid, error=error)


def _runner_error(runner, tracker):
    """ansible-playbook ended before any play result (syntax error, bad inventory): say why, briefly, in the words
    ansible printed (its verbose events; the runner's stdout file only when there was no event at all)."""
    lines = list(tracker.printed)
    if not tracker.events:
        try:
            with open(os.path.join(runner.config.artifact_dir, "stdout"), encoding="utf-8",
                      errors="replace") as handle:
                lines = [line.strip() for line in ANSI_ESCAPE.sub("", handle.read()).splitlines() if line.strip()]
        except OSError:
            lines = []
    interesting = [line for line in lines if "ERROR" in line or "error" in line.lower()]
    detail = (interesting or lines or ["no output"])[-1]
    return "ansible-playbook exited %s before reporting a result: %s" % (runner.rc, detail[:500])
