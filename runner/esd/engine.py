"""Executes change orders: registers them in the ledger, runs their stages, stops at gates, resumes.

The engine walks the frozen plan step by step. Finished steps (a succeeded stage, an approved gate,
a sent notification) are skipped, so ``esd run`` after a gate decision, a failure or a crash
continues where the change order stopped. A stage found ``running`` when a run starts was
interrupted by a crash (the esd process is gone, or the lock would not have been free): once the
orphaned processes of that attempt have exited, it runs again as a new attempt, which is safe
because every stage playbook is idempotent.

Change-order statuses: registered, running, waiting (a gate or the maintenance window), failed,
interrupted (SIGINT/SIGTERM; resumable), denied, cancelled, succeeded, rolled_back (a halted rollout
that was backed out). The last four are final. Rollouts (beta, go/no-go, waves, triage, backout,
verdict) are driven from esd.rollout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import threading
import time

from esd import (audit, catalogue, changeorder, gates, identity, ledger as ledger_mod, metrics, notify, processes,
                 project, report, reports)
from esd.errors import (ChangeOrderStopped, EsdError, ExitCode, GateError, LockedError, UsageError,
                        ValidationError)
from esd.ledger import timestamp
from esd.plan import Plan, make_plan
from esd.progress import Console
from esd.stage import run_stage
from esd import rollout, siteconfig
from esd.states import FINAL

STATUS_EXIT = {
    "succeeded": ExitCode.SUCCESS,
    "rolled_back": ExitCode.FAILED,      # the rollout halted and the change was backed out
    "failed": ExitCode.FAILED,
    "interrupted": ExitCode.FAILED,
    "waiting": ExitCode.WAITING,
    "denied": ExitCode.STOPPED,
    "cancelled": ExitCode.STOPPED,
    "registered": ExitCode.WAITING,
    "running": ExitCode.FAILED,
}


@dataclasses.dataclass
class Outcome:
    """What a command did to a change order; the CLI prints it and exits with ``exit_code``."""

    change_order: str
    status: str
    message: str
    step: str | None = None
    hosts: list[str] = dataclasses.field(default_factory=list)
    code: int | None = None      # when the command's exit code is not the change order's (approve: 0)

    @property
    def exit_code(self):
        if self.code is not None:
            return int(self.code)
        return int(STATUS_EXIT.get(self.status, ExitCode.FAILED))

    def as_dict(self):
        return {"change_order": self.change_order, "status": self.status, "message": self.message,
                "step": self.step, "hosts": self.hosts, "exit_code": self.exit_code}


def _check_result(stage_state, planned, co):
    """Checks named in the catalogue (Stage.checks): a play can succeed and still not deliver."""
    outputs = stage_state.get("outputs") or {}
    problems = []
    for check in planned.get("checks") or []:
        if check == "artifact_reported":
            artifact = outputs.get("artifact") or {}
            if not artifact.get("path") or not artifact.get("sha256"):
                problems.append("the build did not report its artifact (set_stats esd_artifact with path and sha256)")
        elif check == "artifact_matches_change_order":
            artifact = outputs.get("artifact") or {}
            wanted = (co.spec.software.get("name"), co.spec.software.get("version"))
            built = (artifact.get("name"), artifact.get("version"))
            if artifact and built != wanted:
                problems.append("the build produced %s %s but the change order asks for %s %s"
                                % (built[0], built[1], wanted[0], wanted[1]))
        elif check == "test_passed":
            test = outputs.get("test") or {}
            if not test.get("passed"):
                problems.append("the test plan did not report a pass (set_stats esd_test.passed)")
            elif not test.get("backout_rehearsed"):
                problems.append("the test did not rehearse the backout (set_stats esd_test.backout_rehearsed)")
    return problems


def _failure_summary(hosts, failures, shown=3):
    """Failed hosts grouped by what went wrong: "prod-1, prod-2: [verify] checksum mismatch; ..."."""
    groups = {}
    for host in hosts:
        failure = failures.get(host)
        if failure:
            key = "%s%s" % ("[%s] " % failure["phase"] if failure.get("phase") else "", failure["message"])
        else:
            key = "never ran (not matched by the playbook's hosts)"
        groups.setdefault(key, []).append(host)
    parts = []
    for key, members in sorted(groups.items(), key=lambda item: -len(item[1]))[:shown]:
        names = ", ".join(members) if len(members) <= 4 else "%s and %d more" % (", ".join(members[:3]),
                                                                                len(members) - 3)
        parts.append("%s: %s" % (names, key))
    if len(groups) > shown:
        parts.append("and %d other failure(s)" % (len(groups) - shown))
    return "; ".join(parts)


def _dig(data, dotted):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


class Engine:
    def __init__(self, ledger=None, console=None, project_dir=None, clock=None):
        self.ledger = ledger or ledger_mod.Ledger()
        self.console = console or Console(quiet=True)
        self._project_dir = project_dir
        self.clock = clock or ledger_mod.now
        self._interrupted = threading.Event()

    @property
    def project_dir(self):
        if self._project_dir is None:
            self._project_dir = project.project_dir()
        return self._project_dir

    # --- change orders and their ledger entries ---------------------------------------------------

    def load(self, reference):
        """(entry, change order) for a change-order file or an id already in the ledger."""
        if os.path.isfile(reference) or reference.endswith((".yml", ".yaml")):
            co = changeorder.load(reference)
            return self.ledger.entry(co.id), co
        entry = self.ledger.get(reference)
        return entry, self._stored_change_order(entry)

    def _stored_change_order(self, entry, state=None):
        state = state or entry.read_state()
        with open(entry.change_order_path, "rb") as handle:
            content = handle.read()
        # Relative paths mean what they meant where the change order was registered.
        return changeorder.loads(content, state["change_order"]["source"], check_files=False)

    def plan(self, reference):
        """The plan of a change order: frozen in the ledger once registered, else made now."""
        entry, co = self.load(reference)
        if self.ledger.exists(co.id):
            state = entry.read_state()
            if state["change_order"]["digest"] == co.digest:
                return Plan.from_dict(state["plan"])
        return make_plan(co, project_dir=self.project_dir)

    def _register(self, entry, co, actor):
        plan = make_plan(co, project_dir=self.project_dir)
        plan_dict = plan.as_dict()
        steps = {}
        for step in plan.steps:
            record = {"kind": step.kind, "status": "pending"}
            if step.kind == "stage":
                record.update(site=step.site, attempts=0)
            elif step.kind == "gate":
                record["status"] = gates.NOT_REACHED
            steps[step.id] = record
        spec = co.spec
        declared = [value for value in (spec.software.get("builder"), spec.image.get("builder"),
                                        spec.media.get("builder")) if value]
        state = {
            "format": ledger_mod.STATE_FORMAT,
            "change_order": {
                "id": co.id, "type": spec.type, "category": plan.category, "title": co.metadata.title,
                "requester": co.metadata.requester,
                "requested_completion": co.metadata.requested_completion.isoformat(),
                "digest": co.digest, "source": co.path, "registered_by": actor, "registered_at": timestamp(),
                "declared_builders": declared,
                "artifact_builders": gates.artifact_builders(spec),
                "requires_rehearsal": spec.type in ("install", "update", "add_to_production"),
                "rehearsed_in": spec.backout.rehearsed_in,
                "artifact_sha256": spec.software.get("sha256"),
            },
            "status": "registered",
            "reason": "",
            "current_step": None,
            "plan": plan_dict,
            "steps": steps,
            "created_at": timestamp(),
        }
        with open(co.path, "rb") as handle:
            content = handle.read()
        if hashlib.sha256(content).hexdigest() != co.digest:
            raise ValidationError(["%s changed while it was being registered; run it again" % co.path],
                                  source=co.path)
        plan_digest = hashlib.sha256(ledger_mod.canonical(plan_dict).encode()).hexdigest()
        entry.register(content, state, actor, {"type": spec.type, "digest": co.digest, "plan_sha256": plan_digest,
                                               "steps": [step.id for step in plan.steps]})
        self._notify(co, entry, state, "registered", "Change order %s registered" % co.id,
                     "%s (%s) was registered by %s." % (co.metadata.title, spec.type, actor))
        return state

    def _open_for_run(self, entry, co, actor):
        if self.ledger.exists(co.id):
            state = entry.read_state()
            if state["change_order"]["digest"] != co.digest:
                raise ValidationError(["change order %s was registered with sha256 %s and this file has %s: a "
                                       "registered change order cannot change; submit a new change order"
                                       % (co.id, state["change_order"]["digest"][:12], co.digest[:12])],
                                      source=co.path)
            self._reconcile_audit_head(entry, state)
            return state
        return self._register(entry, co, actor)

    @staticmethod
    def _reconcile_audit_head(entry, state):
        """A crash between an audit append and the state write leaves the head one record behind."""
        head = state.get("audit_head") or {}
        last = entry._last_record()
        if last and head.get("seq") != last["seq"] and last["seq"] == head.get("seq", 0) + 1 and \
                last.get("prev") == head.get("hash", ledger_mod.GENESIS):
            state["audit_head"] = {"seq": last["seq"], "hash": last["hash"]}
            entry.write_state(state)

    # --- running ---------------------------------------------------------------------------------

    def run(self, reference, actor=None):
        """Run or resume a change order until it finishes, fails or waits; return the Outcome."""
        actor = actor or identity.current()
        # A new change order refused as invalid was sent back for missing information (esd metrics).
        with metrics.rejections_recorded(self.ledger, reference, actor):
            entry, co = self.load(reference)
        with entry.locked(actor, ledger_mod.command_line()):
            with metrics.rejections_recorded(self.ledger, reference, actor):
                state = self._open_for_run(entry, co, actor)
            with self._signals():
                outcome = self._run_locked(entry, co, state, actor)
            # A cancel request is honoured whatever stopped the run (a gate, a failed stage, the window), before
            # the lock is released: nothing can decide a gate of a change order that was asked to stop.
            cancel = self._pending_cancel(entry, state)
            if cancel:
                return self._cancel_locked(entry, co, state, cancel["actor"], cancel.get("comment"), outcome.step)
            return outcome

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT/SIGTERM stop the running stage cleanly (resumable) instead of killing the runner."""
        self._interrupted.clear()
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            self._interrupted.set()

        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, handler)
        try:
            yield
        finally:
            for number, old in previous.items():
                signal.signal(number, old)

    def _run_locked(self, entry, co, state, actor):
        status = state["status"]
        if status in FINAL:
            entry.clear_cancel()
            return self._outcome(state, "change order %s is %s%s" % (co.id, status,
                                                                       ": " + state["reason"] if state["reason"] else ""))
        cancel = self._pending_cancel(entry, state)
        if cancel:
            return self._cancel_locked(entry, co, state, cancel["actor"], cancel.get("comment"))
        resumed = status != "registered"
        state["status"], state["reason"] = "running", ""
        entry.append_audit("run_started", actor, {"pid": os.getpid(), "resumed": resumed,
                                                  "previous_status": status}, state=state)
        plan_steps = state["plan"]["steps"]
        for planned in plan_steps:
            record = state["steps"][planned["id"]]
            if planned["kind"] == "stage":
                outcome = self._stage(entry, co, state, planned, record, actor)
                # A backout stage runs again while redistribution attempts remain (esd.rollout.again).
                while outcome is None and rollout.again(self, entry, co, state, planned, record, actor):
                    outcome = self._stage(entry, co, state, planned, record, actor)
            elif planned["kind"] == "gate":
                outcome = self._gate(entry, co, state, planned, record)
            elif planned["kind"] in ("triage", "verdict"):
                outcome = rollout.run_step(self, entry, co, state, planned, record, actor)
            else:
                outcome = self._notify_step(entry, co, state, planned, record)
            if outcome is not None:
                return outcome
            cancel = entry.cancel_request()
            if cancel:
                return self._cancel_locked(entry, co, state, cancel["actor"], cancel.get("comment"), planned["id"])
            if self._interrupted.is_set():
                return self._stop_interrupted(entry, state, planned["id"], actor)
        state["status"], state["current_step"], state["finished_at"] = "succeeded", None, timestamp()
        state["reason"] = "all %d steps done" % len(plan_steps)
        entry.append_audit("completed", actor, {"steps": len(plan_steps)}, state=state)
        verdict = (state.get("rollout") or {}).get("verdict")
        body = report.render_text(report.status_report(state, entry))
        if verdict:
            body = "Verdict: %s\n\n%s" % (rollout.describe(verdict), body)
        self._notify(co, entry, state, "completed", "Change order %s completed%s" % (
            co.id, " with %d exception(s)" % len(verdict["exceptions"]) if verdict and verdict["exceptions"] else ""),
            body, data={"verdict": verdict} if verdict else None)
        report.write_reports(state, entry)
        return self._outcome(state, "change order %s succeeded" % co.id)

    def _outcome(self, state, message, step=None, hosts=None, code=None):
        return Outcome(state["change_order"]["id"], state["status"], message, step=step, hosts=hosts or [],
                       code=code)

    # --- stages ----------------------------------------------------------------------------------

    def _stage(self, entry, co, state, planned, record, actor):
        if record["status"] in ("succeeded", "skipped"):
            return None
        step_id = planned["id"]
        if planned.get("skip"):
            record["status"] = "skipped"
            entry.append_audit("stage_skipped", actor, {"stage": step_id, "reason": planned["skip"]}, state=state)
            return None
        if planned.get("rollout_role") or (state.get("rollout") or {}).get("verdict"):
            outcome = rollout.before_stage(self, entry, co, state, planned, record, actor)
            if outcome is not None:
                return None if outcome is rollout.SKIP else outcome
        if planned.get("site") == catalogue.SITE_PRODUCTION and co.spec.window is not None:
            outcome = rollout.window(self, entry, co, state, planned, record, actor)
            if outcome is not None:
                return None if outcome is rollout.SKIP else outcome
        if record["status"] == "running":
            # The lock was free, so the process that ran this attempt is gone: it crashed or was killed.
            entry.append_audit("stage_interrupted", actor, {"stage": step_id, "attempt": record["attempts"],
                                                            "detected": "at resume"}, state=state)
            self._wait_for_orphan(entry, step_id, record)
            if self._interrupted.is_set():
                return self._stop_interrupted(entry, state, step_id, actor)

        attempt = record["attempts"] + 1
        private_data_dir = entry.stage_dir(step_id, attempt)
        os.makedirs(private_data_dir, exist_ok=True)
        inputs = self._resolve_inputs(entry, state, planned, actor)
        record.update(status="running", attempts=attempt, started_at=timestamp(), finished_at=None, run_by=actor,
                      private_data_dir=os.path.relpath(private_data_dir, entry.path), pid=None, pid_start=None,
                      reason="", inputs_used=inputs)
        state["current_step"] = step_id
        host_count = len(planned["limit_hosts"]) if planned.get("limit_hosts") is not None else (
            len(planned["hosts"]) if planned.get("hosts") is not None else None)
        entry.append_audit("stage_started", actor, {"stage": step_id, "attempt": attempt,
                                                    "playbook": os.path.relpath(planned["playbook"],
                                                                                self.project_dir),
                                                    "hosts": host_count}, state=state)
        self.console.stage_started(planned, attempt, host_count)

        def remember_pid(pid):
            record["pid"], record["pid_start"] = pid, processes.start_time(pid)
            entry.write_state(state)

        # An optional change-order field that is absent is not passed at all, so the playbook's own default
        # applies (install without spec.software.artifact takes the package from each host's depot).
        extravars = {key: value for key, value in inputs.items() if value is not None}
        extravars.update(rollout.stage_extravars(state, planned, record))
        extravars["esd_change_order"] = co.id
        if audit.read_by_the_stage(state, planned, rollout.stage_limit(state, planned, record)):
            extravars["software_inventory"] = True
        if planned.get("target_pattern"):
            extravars[planned.get("target_var") or "esd_hosts"] = planned["target_pattern"]
        envvars = project.ansible_environment(self.project_dir)
        envvars.update(ESD_CHANGE_ORDER=co.id, ESD_STAGE=step_id, ESD_STAGE_DIR=private_data_dir,
                       ESD_LEDGER_DIR=entry.path)
        envvars.update(rollout.stage_envvars(planned))
        # Audit before/after: the targets' software inventory around every production stage (esd.audit).
        snapshot = dict(run=run_stage, inventory=state["plan"]["inventory"], envvars=envvars,
                        project_dir=self.project_dir, console=self.console,
                        limit=rollout.stage_limit(state, planned, record))
        audit.take_snapshot(entry, state, planned, "before", attempt, **snapshot)
        result = run_stage(
            stage_id=step_id, playbook=planned["playbook"], inventory=state["plan"]["inventory"],
            private_data_dir=private_data_dir, extravars=extravars, envvars=envvars, hosts=planned.get("hosts"),
            limit_hosts=rollout.stage_limit(state, planned, record), cancel_requested=lambda: self._should_stop(entry),
            on_progress=self.console.progress, on_pid=remember_pid)
        if result.status not in ("canceled", "timeout", "not_built"):
            audit.take_snapshot(entry, state, planned, "after", attempt, **snapshot)
        outcome = self._settle_stage(entry, co, state, planned, record, result, actor)
        reports.stage_settled(entry, state, planned, self.console)
        return outcome

    def _should_stop(self, entry):
        return self._interrupted.is_set() or os.path.exists(entry.cancel_path)

    def _resolve_inputs(self, entry, state, planned, actor):
        resolved = {}
        for key, value in planned["inputs"].items():
            if isinstance(value, dict) and "__from_stage__" in value:
                source = state["steps"][value["__from_stage__"]].get("outputs") or {}
                found = _dig(source, value["path"])
                if found is None:
                    raise EsdError("stage %s needs %s from stage %s, which did not report it"
                                   % (planned["id"], value["path"], value["__from_stage__"]))
                resolved[key] = found
            elif isinstance(value, dict) and "__test_record__" in value:
                resolved[key] = gates.test_record(state, self.ledger)
            elif isinstance(value, dict) and "__actor__" in value:
                resolved[key] = actor
            elif isinstance(value, dict) and "__ledger__" in value:
                directory = os.path.join(entry.path, value["__ledger__"])
                os.makedirs(directory, exist_ok=True)
                resolved[key] = directory
            else:
                resolved[key] = value
        return resolved

    def _wait_for_orphan(self, entry, step_id, record):
        """Let the processes of a crashed attempt finish before running the stage again: its ansible-playbook by
        the recorded pid and start time and, as esd may have been killed before it recorded the pid, every
        process whose environment names the attempt's directory (ESD_RUN_DIR: the playbook and its workers)."""
        pid, start = record.get("pid"), record.get("pid_start")
        directory = os.path.join(entry.path, record["private_data_dir"]) if record.get("private_data_dir") else None
        announced = False
        while not self._interrupted.is_set():
            waiting = [pid] if processes.alive(pid, start) else []
            if directory:
                waiting += [found for found in processes.of_run(directory) if found not in waiting]
            if not waiting:
                return
            if not announced:
                self.console.info("    waiting for ansible-playbook (pid %s) of the interrupted attempt %s of stage %s "
                                  "to exit" % (", ".join(str(found) for found in waiting), record["attempts"], step_id))
                announced = True
            time.sleep(0.5)

    def _settle_stage(self, entry, co, state, planned, record, result, actor):
        step_id = planned["id"]
        limit = rollout.stage_limit(state, planned, record)
        expected = limit if limit is not None else planned.get("hosts")
        outcomes = result.hosts
        failed = result.failed_hosts
        never_ran = sorted(host for host in (expected or []) if outcomes.get(host) is None
                           or outcomes[host].status == "pending")
        record.update(finished_at=timestamp(), duration=round(result.finished - result.started, 3),
                      playbook_seconds=round(result.playbook_seconds, 3) if result.playbook_seconds else None,
                      rc=result.rc, runner_status=result.status)
        record["hosts"] = {"ok": result.ok_hosts, "failed": failed, "never_ran": never_ran,
                           "changed": sorted(h for h, o in outcomes.items() if o.changed)}
        record["failures"] = {host: {"status": o.status, "task": o.task, "message": o.message, "phase": o.phase}
                              for host, o in outcomes.items() if o.status in ("failed", "unreachable")}
        record["endpoints"] = {host: o.software for host, o in sorted(outcomes.items()) if o.software}
        record["outputs"] = {name: result.outputs.get(key) for key, name in (planned.get("outputs") or {}).items()
                             if result.outputs.get(key) is not None}
        ledger_mod.atomic_write(os.path.join(result.private_data_dir, "hosts.json"),
                                ledger_mod.canonical({h: o.as_dict() for h, o in sorted(outcomes.items())}))

        if result.status == "not_built":
            playbook = os.path.relpath(planned["playbook"], self.project_dir)
            reason = ("playbook %s is not built yet in this project: request type %s is planned but its stage %s "
                      "cannot run" % (playbook, state["change_order"]["type"], step_id))
            return self._fail_stage(entry, co, state, record, step_id, "not_built", reason, [], actor)
        if result.status in ("canceled", "timeout"):
            cancel = entry.cancel_request()
            if cancel:
                record["status"], record["reason"] = "cancelled", "cancelled by %s" % cancel["actor"]
                return self._cancel_locked(entry, co, state, cancel["actor"], cancel.get("comment"), step_id)
            return self._stop_interrupted(entry, state, step_id, actor, record)

        total = len(expected) if expected is not None else len(outcomes)
        bad = sorted(set(failed) | set(never_ran))
        budget = planned.get("failure_budget_percent") or 0
        reason = None
        breached = False
        if result.error:
            reason = result.error
        elif total == 0:
            reason = "no host ran the playbook (its host pattern matched nothing)"
        elif bad and len(bad) * 100 > budget * total:
            breached = True
            reason = "%d of %d host(s) failed%s: %s" % (
                len(bad), total, " (failure budget %d%%)" % budget if budget else "",
                _failure_summary(bad, record["failures"]))
        elif not bad and result.status != "successful":
            reason = "ansible-playbook ended %s (rc %s)" % (result.status, result.rc)
        else:
            problems = _check_result(record, planned, co)
            if problems:
                reason = "; ".join(problems)
        if reason and breached and planned.get("rollout_role") == "wave":
            # The wave broke its failure budget: the rollout halts (no further wave) and goes on to the backout.
            return rollout.wave_breached(self, entry, co, state, planned, record, reason, bad, actor)
        if reason:
            return self._fail_stage(entry, co, state, record, step_id, "failed", reason, bad, actor)

        record["status"] = "succeeded"
        audit = {"stage": step_id, "attempt": record["attempts"], "ok": len(record["hosts"]["ok"]),
                 "failed": len(failed), "changed": len(record["hosts"]["changed"]), "duration": record["duration"]}
        for name, output in record["outputs"].items():
            if isinstance(output, dict) and output.get("sha256"):
                audit["%s_sha256" % name] = output["sha256"]
        entry.append_audit("stage_succeeded", actor, audit, state=state)
        self.console.stage_finished(planned, record)
        return None

    def _fail_stage(self, entry, co, state, record, step_id, status, reason, hosts, actor):
        record["status"], record["reason"] = status, reason
        state["status"], state["reason"] = "failed", "stage %s: %s" % (step_id, reason)
        entry.append_audit("stage_failed", actor, {"stage": step_id, "attempt": record["attempts"],
                                                   "status": status, "reason": reason, "hosts": hosts}, state=state)
        self.console.stage_finished({"id": step_id}, record)
        self._notify(co, entry, state, "failed", "Change order %s failed at stage %s" % (co.id, step_id),
                     "%s\nHosts: %s" % (reason, ", ".join(hosts) or "-"))
        return self._outcome(state, "change order %s failed at stage %s: %s" % (co.id, step_id, reason),
                             step=step_id, hosts=hosts)

    def _stop_interrupted(self, entry, state, step_id, actor, record=None):
        if record is not None:
            record["status"], record["reason"] = "interrupted", "interrupted by a signal"
        state["status"], state["reason"] = "interrupted", "interrupted at %s; resume with `esd run %s`" % (
            step_id, state["change_order"]["id"])
        entry.append_audit("run_interrupted", actor, {"step": step_id}, state=state)
        self.console.info("==> interrupted at %s" % step_id)
        return self._outcome(state, state["reason"], step=step_id)

    # --- gates -----------------------------------------------------------------------------------

    def _gate(self, entry, co, state, planned, record):
        gate_id = planned["id"]
        if record["status"] in (gates.APPROVED, "skipped"):
            return None
        if record["status"] == gates.DENIED and gate_id == catalogue.GO_NO_GO.id:
            return None      # a no-go halted the rollout; the triage and the backout follow
        if record["status"] == gates.NOT_REACHED and rollout.gate_not_needed(self, entry, state, planned, record):
            return None
        if record["status"] == gates.DENIED:
            state["status"] = "denied"
            return self._outcome(state, "gate %s was denied by %s" % (gate_id, record.get("decided_by")), gate_id)
        if record["status"] == gates.NOT_REACHED:
            record.update(status=gates.PENDING, since=timestamp())
            state["current_step"] = gate_id
            entry.append_audit("gate_pending", identity.SYSTEM, {"gate": gate_id}, state=state)
            self.console.gate(planned, record)
            if not planned.get("automatic"):
                self._notify(co, entry, state, "gate_pending", "Change order %s waits for %s" % (co.id, gate_id),
                             "%s\nDecide with: esd approve %s --gate %s --as <you>  (or esd deny)"
                             % (planned["title"], co.id, gate_id))
        if planned.get("automatic"):
            return rollout.go_no_go(self, entry, co, state, planned, record)
        state["status"] = "waiting"
        state["current_step"] = gate_id
        state["reason"] = "waiting for gate %s (%s): esd approve %s --gate %s --as <identity>" % (
            gate_id, planned["title"], co.id, gate_id)
        blockers = gates.rehearsal_problems(state, self.ledger) if gate_id == catalogue.CHANGE_BOARD.id else []
        if blockers:
            state["reason"] += "; approval is refused until: %s" % "; ".join(blockers)
        entry.write_state(state)
        return self._outcome(state, state["reason"], step=gate_id)

    def _record_decision(self, entry, co, state, planned, record, actor, approve, comment):
        gate_id = planned["id"]
        record.update(status=gates.APPROVED if approve else gates.DENIED, decided_by=actor, decided_at=timestamp(),
                      comment=comment or "")
        if approve:
            if state["status"] == "waiting":
                state["reason"] = "gate %s approved by %s; continue with `esd run %s`" % (gate_id, actor, co.id)
        else:
            state["status"], state["finished_at"] = "denied", timestamp()
            state["reason"] = "gate %s denied by %s%s" % (gate_id, actor, ": %s" % comment if comment else "")
        entry.append_audit("gate_approved" if approve else "gate_denied", actor,
                           {"gate": gate_id, "comment": comment or ""}, state=state)
        self.console.gate(planned, record)
        self._notify(co, entry, state, "gate_decided", "Change order %s: gate %s %s by %s"
                     % (co.id, gate_id, record["status"], actor), comment or "")

    def decide(self, change_order_id, gate_id, actor, approve, comment=None):
        """Record an approval or a denial of a pending gate (``esd approve`` / ``esd deny``)."""
        entry = self.ledger.get(change_order_id)
        with entry.locked(actor, ledger_mod.command_line()):
            state = entry.read_state()
            self._reconcile_audit_head(entry, state)
            if state["status"] in FINAL:
                raise GateError("change order %s is %s; its gates cannot be decided any more"
                                % (change_order_id, state["status"]))
            cancel = self._pending_cancel(entry, state)
            if cancel:
                # The request of an `esd cancel` that gave up waiting (exit 4): it stands, so it comes first.
                outcome = self._cancel_locked(entry, self._stored_change_order(entry, state), state, cancel["actor"],
                                              cancel.get("comment"))
                raise ChangeOrderStopped("gate %s of change order %s was not decided: a cancel request was pending, "
                                         "so the change order is now cancelled (%s)"
                                         % (gate_id, change_order_id, outcome.message))
            gates.check_decision(state, gate_id, actor, approve)
            if approve and gate_id == catalogue.CHANGE_BOARD.id:
                blockers = gates.rehearsal_problems(state, self.ledger)
                if blockers:
                    raise GateError("cannot approve %s of change order %s: production approval requires a rehearsed "
                                    "backout: %s" % (gate_id, change_order_id, "; ".join(blockers)))
            co = self._stored_change_order(entry, state)
            planned = next(step for step in state["plan"]["steps"] if step["id"] == gate_id)
            if gate_id == catalogue.GO_NO_GO.id:
                rollout.decide(self, entry, co, state, planned, state["steps"][gate_id], actor, approve, comment)
                if not approve:
                    return self._outcome(state, state["reason"], step=gate_id, code=ExitCode.STOPPED)
                return self._outcome(state, "gate %s of %s approved by %s; continue with `esd run %s`"
                                     % (gate_id, change_order_id, actor, change_order_id), step=gate_id,
                                     code=ExitCode.SUCCESS)
            self._record_decision(entry, co, state, planned, state["steps"][gate_id], actor, approve, comment)
            if approve:
                return self._outcome(state, "gate %s of %s approved by %s; continue with `esd run %s`"
                                     % (gate_id, change_order_id, actor, change_order_id), step=gate_id,
                                     code=ExitCode.SUCCESS)
            return self._outcome(state, state["reason"], step=gate_id)

    # --- notifications ---------------------------------------------------------------------------

    def _notify_step(self, entry, co, state, planned, record):
        if record["status"] == "done":
            return None
        body, data = "%s\n%s" % (co.metadata.title, planned["title"]), None
        if planned["event"] == "deployment_scheduled" and any(step.get("rollout_role") for step in state["plan"]["steps"]):
            text, data = rollout.schedule(state, co)
            body = "%s\n\n%s" % (body, text)
            data = {"schedule": data}
        self._notify(co, entry, state, planned["event"], "Change order %s: %s" % (co.id, planned["title"]), body,
                     data=data)
        record.update(status="done", done_at=timestamp())
        entry.write_state(state)
        return None

    def _notify(self, co, entry, state, event, subject, body, data=None):
        settings = notify.effective(co.spec.notifications, siteconfig.load())
        if not settings.configured or not notify.wanted(settings, event):
            return
        deliveries = notify.send(settings, co.id, event, subject, body, data=data)
        entry.append_audit("notified", identity.SYSTEM, {"event": event, "subject": subject,
                                                         "deliveries": deliveries}, state=state)

    # --- cancel ----------------------------------------------------------------------------------

    def cancel(self, change_order_id, actor, comment=None, wait_seconds=60):
        """Cancel a change order that has not finished. When another process holds it (a run, a decision), ask
        that process to stop, wait until it has released the change order, and cancel it: whether the run
        stopped because of the request, at a gate, at a failed stage or on an error, the request never
        outlives this command unless the holder does not stop within ``wait_seconds`` (LockedError, exit 4;
        the request then stands and whoever takes the change order next honours it)."""
        entry = self.ledger.get(change_order_id)
        requested = False
        try:
            entry.lock(actor, ledger_mod.command_line())
        except LockedError as locked:
            self._refuse_finished(change_order_id, entry.read_state())
            entry.request_cancel(actor, comment)
            requested = True
            self._lock_when_released(entry, actor, locked, wait_seconds)
        try:
            state = entry.read_state()
            self._reconcile_audit_head(entry, state)
            if requested and state["status"] == "cancelled":
                # The running process honoured the request as it stopped.
                entry.clear_cancel()
                return self._outcome(state, state["reason"], step=state.get("current_step"))
            if state["status"] in FINAL:
                entry.clear_cancel()
            self._refuse_finished(change_order_id, state, requested)
            co = self._stored_change_order(entry, state)
            return self._cancel_locked(entry, co, state, actor, comment)
        finally:
            entry.unlock()

    @staticmethod
    def _refuse_finished(change_order_id, state, requested=False):
        if state["status"] in FINAL:
            raise UsageError("change order %s %s %s: only a change order that has not finished can be cancelled "
                             "(nothing was changed)" % (change_order_id, "finished as" if requested else "is already",
                                                        state["status"]))

    @staticmethod
    def _lock_when_released(entry, actor, locked, wait_seconds):
        deadline = time.monotonic() + wait_seconds
        while True:
            time.sleep(0.2)
            try:
                entry.lock(actor, ledger_mod.command_line())
                return
            except LockedError:
                if time.monotonic() >= deadline:
                    break
        # Still locked (exit 4): the request stands, and the running process stops at its next check.
        raise LockedError(entry.id, locked.holder,
                          "asked process %s to cancel change order %s; it has not stopped within %g s (the request "
                          "stands: it stops at its next check; `esd status %s` shows when)"
                          % (locked.holder.get("pid"), entry.id, wait_seconds, entry.id)) from None

    @staticmethod
    def _pending_cancel(entry, state):
        """The cancel request to honour now, if any (one for a finished change order is void: removed)."""
        cancel = entry.cancel_request()
        if cancel and state["status"] in FINAL:
            entry.clear_cancel()
            return None
        return cancel

    def _cancel_locked(self, entry, co, state, actor, comment, step=None):
        state["status"], state["finished_at"] = "cancelled", timestamp()
        state["reason"] = "cancelled by %s%s" % (actor, ": %s" % comment if comment else "")
        entry.append_audit("cancelled", actor, {"step": step or state.get("current_step"), "comment": comment or ""},
                           state=state)
        entry.clear_cancel()
        self._notify(co, entry, state, "cancelled", "Change order %s cancelled" % co.id, state["reason"])
        self.console.info("==> %s" % state["reason"])
        return self._outcome(state, state["reason"], step=step)
