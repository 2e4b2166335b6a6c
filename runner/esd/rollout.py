"""The production rollout: beta group, go/no-go, waves, halts, triage, backout, verdict.

The planner expands a catalogue ``Rollout`` into steps that carry a ``rollout_role``:

    <stage>_beta        stage   the beta group (host failures never fail it: the go/no-go judges)
    <stage>_beta_check  stage   optional health-check playbook on the beta group, after the soak time
    go_no_go            gate    automatic (min success %, soak, health-check playbook / URL checks) or manual
    <stage>_wave_<n>    stage   a production wave with its failure budget
    triage              step    classify every endpoint from the distribution logs; open problem records
    backout_review      gate    optional: a person reviews the triage before the backout runs
    backout             stage   roll back / redistribute (bounded attempts), re-triaging after each attempt
    verdict             step    complete, complete with named exceptions, or rolled back; distribution report

A wave that breaks its failure budget, a no-go and a maintenance window that closes with no later
window *halt* the rollout: no further wave starts, and the run goes on to the triage and the backout.
A halted rollout of a change that can be undone is backed out everywhere it changed something
(``spec.backout.on_halt: rollback``, the default) and ends ``rolled_back``; with ``on_halt: keep`` (and
for changes without an automatic rollback) it ends ``complete_with_exceptions`` naming every endpoint
that does not have the change, including those never reached.

The engine calls in here at a few points (before a rollout stage, when a wave breaks its budget,
for the go/no-go and for the triage and verdict steps); everything else it does as for any stage.
"""

from __future__ import annotations

import datetime
import os
import time
import urllib.error
import urllib.request

from esd import distribution_report, identity, problems, report, siteconfig, triage
from esd.gates import APPROVED, DENIED
from esd.ledger import timestamp

SKIP = object()          # before_stage: the stage is not run (halted, nothing to back out)
HALTABLE = triage.HALTABLE
CALLBACK = "esd.osp.distribution_log"


def data(state):
    return state.setdefault("rollout", {})


def halted(state):
    return (state.get("rollout") or {}).get("halted")


def _step(state, step_id):
    return next(step for step in state["plan"]["steps"] if step["id"] == step_id)


def _ran(state, roles=HALTABLE):
    """Whether any stage of the rollout has run (so a closed window halts instead of failing)."""
    return any(state["steps"][step["id"]].get("attempts") for step in triage.rollout_steps(state, roles))


# --- stage environment ------------------------------------------------------------------------------

def accelerator_env():
    """ESD_ACCELERATOR=mitogen: stages run with Mitogen's mitogen_linear strategy (pip install esd-osp[fast]).

    Optional: without it (or when Mitogen is not installed) stages run with Ansible's own linear strategy.
    """
    if os.environ.get("ESD_ACCELERATOR", "").lower() != "mitogen":
        return {}
    try:
        import ansible_mitogen
    except ImportError:
        return {}
    return {"ANSIBLE_STRATEGY": "mitogen_linear",
            "ANSIBLE_STRATEGY_PLUGINS": os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins",
                                                     "strategy")}


def stage_envvars(planned):
    """The distribution_log callback for every stage; the wave for wave stages; the optional accelerator."""
    enabled = [name for name in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if name.strip()]
    if CALLBACK not in enabled:
        enabled.append(CALLBACK)
    env = {"ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled)}
    env.update(accelerator_env())
    # Playbooks never need the notification secrets, and ansible-runner records the whole environment of
    # each run in the ledger (artifacts/<attempt>/command): blank them for the stage.
    for name in siteconfig.secret_names(siteconfig.load()):
        env[name] = ""
    if planned.get("wave"):
        env["ESD_WAVE"] = str(planned["wave"])
    elif planned.get("rollout_role") in ("beta", "check", "backout"):
        env["ESD_WAVE"] = planned["rollout_role"]
    return env


def stage_extravars(state, planned, record):
    if planned.get("rollout_role") == "backout":
        targets = record.get("backout_targets") or {}
        return {"backout_rollback_hosts": targets.get("rollback", []),
                "backout_redistribute_hosts": targets.get("redistribute", []),
                "backout_rollback_state": (planned.get("backout") or {}).get("state") or "rolled_back"}
    return {}


def stage_limit(state, planned, record):
    """The hosts a stage runs on: the backout's targets; after a verdict, only endpoints that have the change."""
    if "limit_hosts" in record and planned.get("rollout_role") == "backout":
        return record["limit_hosts"]
    verdict = data(state).get("verdict")
    if verdict and not planned.get("rollout_role") and planned.get("site") == "production" \
            and planned.get("target_pattern") is not None and planned.get("hosts"):
        have = set(data(state).get("success_hosts") or [])
        base = planned.get("limit_hosts") if planned.get("limit_hosts") is not None else planned["hosts"]
        return [host for host in base if host in have]
    return planned.get("limit_hosts")


# --- before a rollout stage ---------------------------------------------------------------------------

def before_stage(engine, entry, co, state, planned, record, actor):
    """None to run the stage, SKIP when it must not run, or an Outcome to return (waiting)."""
    role = planned.get("rollout_role")
    step_id = planned["id"]
    if role in HALTABLE and halted(state):
        if record.get("status") == "halted":
            return SKIP
        halt = halted(state)
        record.update(status="halted", reason="not started: the rollout halted at %s (%s)" % (halt["step"],
                                                                                              halt["reason"]))
        entry.append_audit("stage_skipped", actor, {"stage": step_id, "reason": record["reason"]}, state=state)
        engine.console.info("==> %s not started: the rollout halted" % step_id)
        return SKIP
    if role == "check" and planned.get("soak_seconds"):
        outcome = soak(engine, entry, state, planned)
        if outcome is not None:
            return outcome
    if role == "backout":
        return _prepare_backout(engine, entry, state, planned, record, actor)
    if not role and data(state).get("verdict") and planned.get("site") == "production" and planned.get("hosts"):
        if not stage_limit(state, planned, record):
            record.update(status="skipped", reason="no endpoint has the change")
            entry.append_audit("stage_skipped", actor, {"stage": step_id, "reason": record["reason"]}, state=state)
            return SKIP
    return None


def soak(engine, entry, state, planned):
    """Wait (status waiting, exit 3) until the beta stage finished ``soak_seconds`` ago."""
    beta = next(iter(triage.rollout_steps(state, ("beta",))), None)
    finished = state["steps"][beta["id"]].get("finished_at") if beta else None
    seconds = planned.get("soak_seconds") or 0
    if not (seconds and finished):
        return None
    ready_at = datetime.datetime.fromisoformat(finished) + datetime.timedelta(seconds=seconds)
    if engine.clock() < ready_at:
        state["status"] = "waiting"
        state["current_step"] = planned["id"]
        state["reason"] = "go/no-go after the beta soak time: decision at %s" % ready_at.isoformat()
        entry.write_state(state)
        return engine._outcome(state, state["reason"], step=planned["id"])
    return None


def _prepare_backout(engine, entry, state, planned, record, actor):
    rollout = data(state)
    endpoints = rollout.get("endpoints") or {}
    backout = planned.get("backout") or {}
    attempt = (record.get("attempts") or 0) + 1
    halted_rollback = bool(halted(state)) and backout.get("on_halt") == "rollback"
    rollback, redistribute = triage.backout_targets(endpoints, attempt, backout.get("redistribute_attempts", 0),
                                                    halted_rollback)
    if not backout.get("state"):
        rollback = []
    if not rollback and not redistribute:
        if record.get("attempts"):
            return SKIP
        record.update(status="skipped", reason="nothing to back out: the triage found no endpoint to roll back or "
                      "to redistribute to")
        entry.append_audit("stage_skipped", actor, {"stage": planned["id"], "reason": record["reason"]}, state=state)
        engine.console.info("==> backout: nothing to do")
        return SKIP
    record["backout_targets"] = {"rollback": rollback, "redistribute": redistribute}
    record["limit_hosts"] = sorted(set(rollback) | set(redistribute))
    rollout.setdefault("backout_attempts", []).append({"attempt": attempt, "rollback": rollback,
                                                       "redistribute": redistribute, "at": timestamp()})
    engine.console.info("==> backout attempt %d: roll back %d, redistribute to %d endpoint(s)"
                        % (attempt, len(rollback), len(redistribute)))
    return None


def again(engine, entry, co, state, planned, record, actor):
    """After a backout attempt: re-triage; True when another attempt should run now."""
    if planned.get("rollout_role") != "backout" or record.get("status") != "succeeded":
        return False
    rollout = data(state)
    attempt = record.get("attempts") or 0
    if rollout.get("backout_triaged", 0) < attempt:
        targets = record.get("backout_targets") or {}
        triage.apply_backout_attempt(entry, state, rollout["endpoints"], planned, attempt,
                                     targets.get("rollback", []), targets.get("redistribute", []))
        rollout["backout_triaged"] = attempt
        for item in rollout.get("backout_attempts") or []:
            if item["attempt"] == attempt:
                endpoints = rollout["endpoints"]
                item["rolled_back"] = sorted(h for h in targets.get("rollback", []) if endpoints[h]["rolled_back"])
                item["redistributed"] = sorted(h for h in targets.get("redistribute", [])
                                               if endpoints[h]["class"] == "success")
        summary = triage.summary(rollout["endpoints"])
        rollout["current"] = summary["counts"]
        result = problems.sync(entry, co, rollout["endpoints"], _backends(entry, co), _software(co))
        entry.append_audit("retriaged", identity.SYSTEM, {"attempt": attempt, "counts": summary["counts"],
                                                          "problems": _problem_counts(result)}, state=state)
    backout = planned.get("backout") or {}
    halted_rollback = bool(halted(state)) and backout.get("on_halt") == "rollback"
    rollback, redistribute = triage.backout_targets(rollout["endpoints"], attempt + 1,
                                                    backout.get("redistribute_attempts", 0), halted_rollback)
    if not backout.get("state"):
        rollback = []
    if not rollback and not redistribute:
        return False
    if attempt >= max(1, backout.get("redistribute_attempts", 0)):
        return False
    delay = backout.get("retry_delay_seconds") or 0
    if delay:
        engine.console.info("    next backout attempt in %ds" % delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if engine._should_stop(entry):
                return False
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    record["status"] = "pending"
    return True


# --- a wave breaks its budget -------------------------------------------------------------------------

def halt(engine, entry, co, state, step_id, cause, reason, actor, hosts=()):
    rollout = data(state)
    if rollout.get("halted"):
        return
    rollout["halted"] = {"step": step_id, "cause": cause, "reason": reason, "at": timestamp()}
    entry.append_audit("rollout_halted", actor, {"step": step_id, "cause": cause, "reason": reason,
                                                 "hosts": list(hosts)}, state=state)
    engine.console.info("==> rollout halted at %s: %s" % (step_id, reason))
    engine._notify(co, entry, state, "failed", "Change order %s: rollout halted at %s" % (co.id, step_id),
                   "The rollout of %s was halted at %s: %s\nNo further wave starts; the triage and the backout "
                   "follow.%s" % (co.metadata.title, step_id, reason,
                                  "\nHosts: %s" % ", ".join(hosts) if hosts else ""),
                   data={"halted": rollout["halted"]})


def wave_breached(engine, entry, co, state, planned, record, reason, bad, actor):
    """A wave broke its failure budget: record the stage failed and halt the rollout (the run goes on)."""
    record["status"], record["reason"] = "failed", reason
    entry.append_audit("stage_failed", actor, {"stage": planned["id"], "attempt": record["attempts"],
                                               "status": "failed", "reason": reason, "hosts": bad}, state=state)
    engine.console.stage_finished({"id": planned["id"]}, record)
    halt(engine, entry, co, state, planned["id"], "failure_budget", reason, actor, bad)
    return None


# --- maintenance windows ------------------------------------------------------------------------------

def window(engine, entry, co, state, planned, record, actor):
    """None (inside a window), an Outcome (wait or fail), or SKIP (the window closed: the rollout halts)."""
    windows = co.spec.windows or ((co.spec.window,) if co.spec.window else ())
    if not windows or planned.get("rollout_role") == "backout":
        return None
    moment = engine.clock()
    if any(w.start <= moment < w.end for w in windows):
        return None
    step_id = planned["id"]
    upcoming = next((w for w in windows if moment < w.start), None)
    closed = [w for w in windows if w.end <= moment]
    if upcoming is not None:
        state["status"] = "waiting"
        state["current_step"] = step_id
        if closed:
            state["reason"] = ("maintenance window closed at %s; stage %s may start when the next window opens at %s "
                               "(esd run %s then)" % (closed[-1].end.isoformat(), step_id, upcoming.start.isoformat(),
                                                      co.id))
        else:
            state["reason"] = "maintenance window opens at %s (before stage %s)" % (upcoming.start.isoformat(),
                                                                                   step_id)
        entry.append_audit("run_waiting", actor, {"step": step_id, "for": "window",
                                                  "opens": upcoming.start.isoformat()}, state=state)
        return engine._outcome(state, state["reason"], step=step_id)
    last = closed[-1]
    if planned.get("rollout_role") in HALTABLE and _ran(state):
        reason = ("the maintenance window closed at %s before stage %s could start, and the change order has no "
                  "later window" % (last.end.isoformat(), step_id))
        halt(engine, entry, co, state, step_id, "window", reason, actor)
        record.update(status="halted", reason="not started: %s" % reason)
        entry.append_audit("stage_skipped", actor, {"stage": step_id, "reason": record["reason"]}, state=state)
        return SKIP
    state["status"] = "failed"
    state["reason"] = "maintenance window closed at %s before stage %s could run" % (last.end.isoformat(), step_id)
    entry.append_audit("run_failed", actor, {"step": step_id, "for": "window"}, state=state)
    return engine._outcome(state, state["reason"], step=step_id)


# --- go/no-go -----------------------------------------------------------------------------------------

def evaluate(engine, entry, state, planned):
    """The beta group's results against the go/no-go criteria: {go, comment, ok, total, url_failures, ...}."""
    criteria = planned.get("criteria") or {}
    beta = next(iter(triage.rollout_steps(state, ("beta",))), None)
    check = next(iter(triage.rollout_steps(state, ("check",))), None)
    hosts = list(beta["limit_hosts"]) if beta else []
    beta_state = state["steps"][beta["id"]] if beta else {}
    ok = set((beta_state.get("hosts") or {}).get("ok", []))
    notes = []
    if check is not None:
        check_ok = set((state["steps"][check["id"]].get("hosts") or {}).get("ok", []))
        failed_check = sorted(ok - check_ok)
        if failed_check:
            notes.append("health-check playbook failed on %s" % ", ".join(failed_check))
        ok &= check_ok
    url_failures, service_failures = {}, []
    for url in criteria.get("health_check_urls") or []:
        timeout = criteria.get("health_check_timeout_seconds") or 10
        if "{host}" in url:
            for host in sorted(ok):
                problem = _check_url(url.replace("{host}", host), timeout)
                if problem:
                    url_failures[host] = problem
        else:
            problem = _check_url(url, timeout)
            if problem:
                service_failures.append(problem)
    if url_failures:
        notes.append("health-check URL failed on %s" % ", ".join(sorted(url_failures)))
        ok -= set(url_failures)
    if service_failures:
        notes.append("service check failed: %s" % "; ".join(service_failures))
    total = len(hosts)
    percent = 100.0 * len(ok) / total if total else 100.0
    minimum = criteria.get("min_success_percent", 100)
    go = percent >= minimum and not service_failures
    comment = "automatic: %d of %d beta host(s) succeeded (%.0f%% %s %d%%)" % (
        len(ok), total, percent, ">=" if percent >= minimum else "<", minimum)
    if notes:
        comment += "; " + "; ".join(notes)
    return {"go": go, "comment": comment, "ok": sorted(ok), "total": total, "percent": round(percent, 1),
            "failed": sorted(set(hosts) - ok), "url_failures": url_failures, "service_failures": service_failures}


def _check_url(url, timeout):
    """None when ``url`` answers 2xx/3xx in time, else why not (the URL shown without query string)."""
    from esd.notify import redact_url

    request = urllib.request.Request(url, headers={"User-Agent": "esd go/no-go"}, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if 200 <= response.status < 400:
                return None
            return "%s answered HTTP %d" % (redact_url(url), response.status)
    except urllib.error.HTTPError as exc:
        return "%s answered HTTP %d" % (redact_url(url), exc.code)
    except (urllib.error.URLError, OSError) as exc:
        return "%s: %s" % (redact_url(url), getattr(exc, "reason", exc))


def go_no_go(engine, entry, co, state, planned, record):
    """The automatic go/no-go: soak, then the criteria; a no-go halts the rollout."""
    if planned.get("soak_seconds"):
        outcome = soak(engine, entry, state, planned)
        if outcome is not None:
            return outcome
    evaluation = evaluate(engine, entry, state, planned)
    record["url_failures"] = evaluation["url_failures"]
    record["evaluation"] = evaluation
    decide(engine, entry, co, state, planned, record, identity.SYSTEM, evaluation["go"], evaluation["comment"])
    return None


def decide(engine, entry, co, state, planned, record, actor, go, comment):
    """Record a go/no-go decision (automatic or by a person); a no-go halts the rollout."""
    record.update(status=APPROVED if go else DENIED, decided_by=actor, decided_at=timestamp(), comment=comment or "")
    if "evaluation" not in record:
        record["evaluation"] = evaluate(engine, entry, state, planned)
    entry.append_audit("gate_approved" if go else "gate_denied", actor, {"gate": planned["id"],
                                                                         "comment": comment or ""}, state=state)
    engine.console.gate(planned, record)
    evaluation = record["evaluation"]
    engine._notify(co, entry, state, "go_no_go", "Change order %s: go/no-go: %s" % (co.id, "GO" if go else "NO-GO"),
                   "Go/no-go for %s decided by %s: %s.\n%s\nBeta hosts failed: %s" % (
                       co.metadata.title, actor, "go, the waves follow" if go else "no-go, the rollout is halted",
                       comment or "", ", ".join(evaluation["failed"]) or "none"),
                   data={"decision": "go" if go else "no-go", "decided_by": actor, "evaluation": evaluation})
    if go:
        if state["status"] == "waiting":
            state["reason"] = "gate %s approved by %s; continue with `esd run %s`" % (planned["id"], actor, co.id)
    else:
        halt(engine, entry, co, state, planned["id"], "no_go", "no-go decided by %s: %s" % (actor, comment or "-"),
             actor, evaluation["failed"])
        if state["status"] == "waiting":
            state["reason"] = ("no-go by %s: the rollout is halted; `esd run %s` triages the beta group and backs it "
                               "out" % (actor, co.id))
    entry.write_state(state)


def gate_not_needed(engine, entry, state, planned, record):
    """The backout review is only needed when the triage found something to back out."""
    if planned["id"] != "backout_review":
        return False
    endpoints = data(state).get("endpoints") or {}
    backout = next((step for step in state["plan"]["steps"] if step.get("rollout_role") == "backout"), {})
    settings = backout.get("backout") or {}
    halted_rollback = bool(halted(state)) and settings.get("on_halt") == "rollback"
    rollback, redistribute = triage.backout_targets(endpoints, 1, settings.get("redistribute_attempts", 0),
                                                    halted_rollback)
    if rollback or redistribute:
        return False
    record.update(status="skipped", reason="nothing to back out")
    entry.append_audit("gate_skipped", identity.SYSTEM, {"gate": planned["id"], "reason": record["reason"]},
                       state=state)
    return True


# --- triage and verdict steps ---------------------------------------------------------------------------

def run_step(engine, entry, co, state, planned, record, actor):
    if planned["kind"] == "triage":
        return _triage(engine, entry, co, state, planned, record, actor)
    return _verdict(engine, entry, co, state, planned, record, actor)


def _backends(entry, co):
    return problems.backends(entry, co, siteconfig.load())


def _software(co):
    software = co.spec.software or {}
    return {"name": software.get("name"), "version": software.get("version")} if software else None


def _problem_counts(result):
    return {"opened": len(result["opened"]), "updated": len(result["updated"]), "closed": len(result["closed"]),
            "open": len(result["open"]), "failed_deliveries": [d for d in result["deliveries"] if not d["ok"]]}


def _triage(engine, entry, co, state, planned, record, actor):
    if record.get("status") == "done":
        return None
    rollout = data(state)
    endpoints = triage.initial(entry, state)
    halt = halted(state)
    verdict_step = next((step for step in state["plan"]["steps"] if step.get("rollout_role") == "verdict"), {})
    on_halt = (verdict_step.get("backout") or {}).get("on_halt", "keep")
    rollout["endpoints"] = endpoints
    summary = triage.summary(endpoints)
    rollout["initial"] = summary["counts"]
    triage.write(entry, endpoints, "initial")
    if halt and on_halt == "rollback":
        triage.mark_halt_rollback(endpoints, halt["reason"])
    result = problems.sync(entry, co, endpoints, _backends(entry, co), _software(co))
    record.update(status="done", done_at=timestamp(), counts=summary["counts"])
    entry.append_audit("triaged", identity.SYSTEM, {"counts": summary["counts"], "halted": bool(halt),
                                                    "problems": _problem_counts(result)}, state=state)
    counts = summary["counts"]
    engine.console.info("==> triage: %s" % ", ".join("%d %s" % (counts[k], k) for k in triage.CLASSES if counts[k]))
    return None


def _verdict(engine, entry, co, state, planned, record, actor):
    rollout = data(state)
    if record.get("status") == "done":
        if rollout.get("verdict", {}).get("result") == "rolled_back":
            return engine._outcome(state, "change order %s is rolled_back" % co.id)
        return None
    endpoints = rollout.get("endpoints") or {}
    halt = halted(state)
    on_halt = (planned.get("backout") or {}).get("on_halt", "keep")
    verdict = triage.verdict(endpoints, halt, on_halt)
    rollout["verdict"] = verdict
    rollout["success_hosts"] = sorted(host for host, endpoint in endpoints.items()
                                      if triage.final_status(endpoint) == "success")
    triage.write(entry, endpoints, "final")
    result = problems.sync(entry, co, endpoints, _backends(entry, co), _software(co))
    problems.write_summary(entry)
    rollout["problems"] = _problem_counts(result)
    record.update(status="done", done_at=timestamp(), result=verdict["result"])
    entry.append_audit("verdict", identity.SYSTEM, {"result": verdict["result"], "counts": verdict["counts"],
                                                    "exceptions": [e["host"] for e in verdict["exceptions"]],
                                                    "problems": rollout["problems"]}, state=state)
    text = describe(verdict)
    engine.console.info("==> verdict: %s" % text.splitlines()[0])
    paths = distribution_report.write(entry, state)
    rollout["report"] = {key: os.path.relpath(path, entry.path) for key, path in paths.items()}
    entry.write_state(state)
    if verdict["result"] == "rolled_back":
        state["status"], state["finished_at"], state["current_step"] = "rolled_back", timestamp(), None
        state["reason"] = text.splitlines()[0]
        entry.append_audit("completed", actor, {"result": "rolled_back"}, state=state)
        engine._notify(co, entry, state, "failed", "Change order %s rolled back" % co.id,
                       "%s\n\nDistribution report: %s" % (text, paths.get("markdown")),
                       data={"verdict": verdict})
        report.write_reports(state, entry)          # a final change order gets its reports, like a completed one
        failed = sorted(host for host, endpoint in endpoints.items()
                        if endpoint["class"] != "not_reached" and not endpoint.get("halt_rollback")
                        and triage.final_status(endpoint) != "success")
        return engine._outcome(state, "change order %s %s" % (co.id, state["reason"]), hosts=failed)
    return None


def describe(verdict):
    """The verdict in words: the first line is the summary, then one line per exception."""
    counts = verdict["counts"]
    if verdict["result"] == "complete":
        first = "complete: all %d endpoint(s) have the change" % verdict["total"]
    elif verdict["result"] == "complete_with_exceptions":
        first = "complete with %d exception(s): %d of %d endpoint(s) have the change" % (
            len(verdict["exceptions"]), counts["success"], verdict["total"])
        if verdict["halted"]:
            first += " (the rollout halted: %s)" % verdict["halted"]["reason"]
    elif counts["rolled_back"]:
        first = "rolled back: the rollout halted (%s) and the change was backed out (%d endpoint(s) rolled back)" % (
            verdict["halted"]["reason"], counts["rolled_back"])
    else:
        first = "rolled back: the rollout halted (%s) before it changed any endpoint" % verdict["halted"]["reason"]
        if verdict["exceptions"]:
            first += "; %d endpoint(s) could not be restored" % len(verdict["exceptions"])
    lines = [first]
    for exception in verdict["exceptions"]:
        lines.append("  %s: %s" % (exception["host"], exception["reason"]))
    return "\n".join(lines)


def schedule(state, co):
    """The rollout's schedule for the initial notification: windows, beta, go/no-go, waves, backout."""
    steps = state["plan"]["steps"]
    windows = co.spec.windows or ((co.spec.window,) if co.spec.window else ())
    items = {"windows": [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in windows],
             "beta": None, "go_no_go": None, "waves": [], "backout": None}
    lines = ["Schedule of %s (%s):" % (co.id, co.metadata.title)]
    lines.append("  maintenance window(s): %s" % ("; ".join("%s to %s" % (w["start"], w["end"])
                                                           for w in items["windows"]) or "none (any time)"))
    for step in steps:
        role = step.get("rollout_role")
        if role == "beta":
            items["beta"] = {"stage": step["id"], "hosts": step["limit_hosts"]}
            lines.append("  beta group: %d host(s): %s" % (len(step["limit_hosts"]), ", ".join(step["limit_hosts"])))
        elif step["id"] == "go_no_go":
            criteria = step.get("criteria") or {}
            items["go_no_go"] = dict(criteria, automatic=step.get("automatic"))
            if step.get("automatic"):
                how = "automatic: at least %s%% of the beta hosts succeed" % criteria.get("min_success_percent")
                if criteria.get("soak_seconds"):
                    how += ", after a soak of %ss" % criteria["soak_seconds"]
                if criteria.get("health_check_playbook"):
                    how += ", health-check playbook %s" % os.path.basename(criteria["health_check_playbook"])
                if criteria.get("health_check_urls"):
                    how += ", URL checks %s" % ", ".join(criteria["health_check_urls"])
            else:
                how = "manual (a person decides)"
            lines.append("  go/no-go: %s" % how)
        elif role == "wave":
            items["waves"].append({"stage": step["id"], "wave": step["wave"], "hosts": len(step["limit_hosts"]),
                                   "failure_budget_percent": step["failure_budget_percent"]})
            lines.append("  wave %d (%s): %d host(s), failure budget %d%%" % (
                step["wave"], step["id"], len(step["limit_hosts"]), step["failure_budget_percent"]))
        elif role == "backout":
            backout = step.get("backout") or {}
            items["backout"] = backout
            lines.append("  backout: %s; redistribution up to %d attempt(s)" % (
                "rollback with esd.osp.software state %s" % backout["state"] if backout.get("state")
                else "no automatic rollback", backout.get("redistribute_attempts", 0)))
    total = sum(len(step.get("limit_hosts") or []) for step in steps if step.get("rollout_role") in ("beta", "wave"))
    lines.append("  %d endpoint(s) in all" % total)
    items["endpoints"] = total
    return "\n".join(lines), items
