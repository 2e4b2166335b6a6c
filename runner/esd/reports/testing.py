"""The test report: the build unit test and the test-site stages of a change order, from their job events.

Scope is every build-site and test-site stage of the plan. Each *check* is one task on one host of one
stage attempt, read from that attempt's ansible-runner job events (never from stdout): passed, failed
(with the message and the esd.osp.software phase), skipped (its condition was false: not run by design)
or not run (the host never got to it). Planned hosts the playbook never reached are listed too.

Conclusion (``pass`` / ``rework`` / ``incomplete`` / ``not applicable``):

- ``rework``: the latest attempt of an in-scope stage failed, or a test/UAT/build sign-off was denied;
- ``pass``: every in-scope stage succeeded and, when there are test-site stages, the backout was rehearsed
  (the engine's checks make a test stage succeed only when the test plan passed and the backout was
  rehearsed);
- ``incomplete``: in-scope stages are still pending or running, or they all succeeded but the backout was
  not rehearsed (production approval needs a rehearsal, so this is no pass);
- ``not applicable``: the change order has no build or test stage.

*Backout rehearsed*: only test-site stages that report a rehearsal (set_stats ``esd_test``, see
``esd.catalogue.rehearses_backout``) decide it: each reported ``backout_rehearsed`` and every host's backout
checks passed. Stages that rehearse nothing (image_release's validate_image) count neither for nor against
it; test-site stages of which none reports a rehearsal mean the backout was not rehearsed.

A *defect* is a failed check (or a stage that failed its catalogue checks without a failed host). It is
``retested`` when a later attempt of the same stage passed that check on that host, else ``outstanding``.
*Rework* counts the returns to the building site: failed test-site attempts plus denied sign-offs.

JUnit XML (:func:`render_junit`) has one ``<testsuite>`` per in-scope stage (its latest attempt, the
current verdict; earlier attempts are in the defects list) and one ``<testcase>`` per check.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from esd import catalogue
from esd.reports import common, html, markdown as md

SCHEMA = "esd.osp/report/test/v1"
IN_SCOPE_SITES = ("build", "test")
SIGNOFF_GATES = ("test_signoff", "uat_signoff", "build_signoff")
HOST_EVENTS = {"runner_on_ok": "passed", "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
               "runner_on_skipped": "skipped"}
RESULTS = ("passed", "failed", "unreachable", "skipped", "not_run")


def _phase(task_name):
    parts = [part.strip() for part in (task_name or "").split("|")]
    if len(parts) >= 3:
        return parts[1]
    if (task_name or "").startswith("Validating arguments"):
        return "arguments"
    return None


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


def read_checks(events, planned_hosts):
    """Tasks in order and per-host check results of one attempt's events."""
    tasks = []
    task_index = {}
    results = {}
    seen_hosts = []
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            uuid = data.get("task_uuid") or event.get("uuid")
            if uuid not in task_index:
                task_index[uuid] = len(tasks)
                tasks.append({"uuid": uuid, "task": data.get("task") or data.get("name") or "",
                              "action": data.get("resolved_action") or data.get("task_action"),
                              "phase": _phase(data.get("task") or data.get("name"))})
        elif kind in HOST_EVENTS:
            host = data.get("host")
            uuid = data.get("task_uuid")
            if not host or uuid is None:
                continue
            if host not in seen_hosts:
                seen_hosts.append(host)
            result = data.get("res") or {}
            outcome = HOST_EVENTS[kind]
            note = None
            if outcome == "failed" and data.get("ignore_errors"):
                outcome, note = "passed", "failure ignored by the playbook"
            check = {"result": outcome, "duration": data.get("duration"), "changed": bool(result.get("changed")),
                     "message": None, "failure_phase": None, "note": note}
            if outcome in ("failed", "unreachable"):
                check["message"] = _message(result)
                check["failure_phase"] = result.get("phase")
            elif outcome == "skipped":
                check["message"] = result.get("skip_reason") or (
                    "condition false: %s" % result["false_condition"] if result.get("false_condition") else None)
            results[(uuid, host)] = check
    hosts = list(planned_hosts) if planned_hosts is not None else []
    for host in seen_hosts:
        if host not in hosts:
            hosts.append(host)
    per_host = {}
    for host in hosts:
        checks = []
        for task in tasks:
            found = results.get((task["uuid"], host))
            if found is None:
                found = {"result": "not_run", "duration": None, "changed": False, "message": None,
                         "failure_phase": None, "note": None}
            checks.append({"task": task["task"], "phase": task["phase"], "action": task["action"], **found})
        per_host[host] = {"ran": host in seen_hosts, "checks": checks}
    return tasks, per_host


def _attempt_outcomes(entry, step_id):
    """{attempt: (status, reason, time)} from the audit log: succeeded, failed or interrupted."""
    outcomes = {}
    for record in common.audit_records(entry):
        data = record.get("data") or {}
        if data.get("stage") != step_id or "attempt" not in data:
            continue
        if record["event"] == "stage_succeeded":
            outcomes[data["attempt"]] = ("succeeded", "", record["time"])
        elif record["event"] == "stage_failed":
            outcomes[data["attempt"]] = ("failed", data.get("reason") or "", record["time"])
        elif record["event"] == "stage_interrupted":
            outcomes.setdefault(data["attempt"], ("interrupted", "interrupted (%s)" % data.get("detected", ""),
                                                  record["time"]))
        elif record["event"] == "stage_started":
            outcomes.setdefault(("started", data["attempt"]), (record["actor"], record["time"]))
    return outcomes


def _totals(host_map):
    counts = dict.fromkeys(RESULTS, 0)
    for host in host_map.values():
        for check in host["checks"]:
            counts[check["result"]] = counts.get(check["result"], 0) + 1
    counts["checks"] = sum(counts[result] for result in RESULTS)
    return counts


def _backout(host_map):
    """Per host: the backout rehearsal checks (tasks naming the backout) passed, failed or not run."""
    per_host = {}
    for host, data in host_map.items():
        checks = [check for check in data["checks"] if "backout" in (check["task"] or "").lower()]
        if not checks:
            continue
        results = {check["result"] for check in checks}
        if results & {"failed", "unreachable"}:
            per_host[host] = "failed"
        elif results & {"not_run"}:
            per_host[host] = "not run"
        elif results == {"skipped"}:
            per_host[host] = "skipped"
        else:
            per_host[host] = "passed"
    return per_host


def test_report(state, entry):
    change_order = state["change_order"]
    stages = []
    defects = []
    rework = 0
    tested_artifact = None
    rehearsing = []         # the test-site stages that report a backout rehearsal
    for planned, record in common.steps(state):
        if planned["kind"] != "stage" or planned.get("site") not in IN_SCOPE_SITES:
            continue
        outcomes = _attempt_outcomes(entry, planned["id"])
        planned_hosts = common.stage_hosts(planned)
        attempts = []
        for number, directory in common.attempt_dirs(entry, planned["id"]):
            events = common.read_events(directory)
            tasks, host_map = read_checks(events, planned_hosts)
            status, reason, finished = outcomes.get(number, (None, "", None))
            if status is None:
                status = record.get("status") if number == record.get("attempts") else "unknown"
                reason = record.get("reason") or ""
                finished = record.get("finished_at")
            actor, started = outcomes.get(("started", number), (None, None))
            attempts.append({"attempt": number, "status": status, "reason": reason or None, "run_by": actor,
                             "started_at": started, "finished_at": finished, "tasks": len(tasks),
                             "hosts": host_map, "never_ran": sorted(h for h, d in host_map.items() if not d["ran"]),
                             "totals": _totals(host_map), "backout": _backout(host_map)})
            if planned["site"] == "test" and status == "failed":
                rework += 1
        outputs = record.get("outputs") or {}
        inputs = record.get("inputs_used") or {}
        if planned["site"] == "test":
            tested_artifact = {"name": inputs.get("software_name") or inputs.get("image_family")
                               or inputs.get("media_name"),
                               "version": inputs.get("software_version") or inputs.get("image_version"),
                               "sha256": inputs.get("software_sha256") or inputs.get("image_sha256")
                               or inputs.get("media_sha256")}
        elif outputs.get("artifact") and tested_artifact is None:
            built = outputs["artifact"]
            tested_artifact = {"name": built.get("name"), "version": built.get("version"), "sha256": built.get("sha256")}
        latest = attempts[-1] if attempts else None
        stage_defects = []
        for attempt in attempts:
            failed_hosts = False
            for host, data in attempt["hosts"].items():
                for check in data["checks"]:
                    if check["result"] in ("failed", "unreachable"):
                        failed_hosts = True
                        stage_defects.append({"stage": planned["id"], "attempt": attempt["attempt"], "host": host,
                                              "check": check["task"],
                                              "phase": check["failure_phase"] or check["phase"],
                                              "result": check["result"], "message": check["message"]})
            if attempt["status"] == "failed" and not failed_hosts:
                stage_defects.append({"stage": planned["id"], "attempt": attempt["attempt"], "host": None,
                                      "check": "esd stage checks", "phase": None, "result": "failed",
                                      "message": attempt["reason"]})
        for defect in stage_defects:
            defect["status"] = "outstanding"
            for later in attempts:
                if later["attempt"] <= defect["attempt"] or later["status"] != "succeeded":
                    continue
                if defect["host"] is None or any(check["task"] == defect["check"] and check["result"] == "passed"
                                                 for check in later["hosts"].get(defect["host"], {}).get("checks", [])):
                    defect["status"] = "retested (passed in attempt %d)" % later["attempt"]
                    break
        defects.extend(stage_defects)
        test_output = outputs.get(catalogue.TEST_OUTPUT) or {}
        rehearses = catalogue.rehearses_backout(planned)
        if rehearses:
            rehearsing.append(planned["id"])
        stages.append({
            "id": planned["id"], "site": planned["site"], "title": planned["title"],
            "playbook": os.path.basename(planned["playbook"]), "status": record.get("status", "pending"),
            "hosts_planned": planned_hosts, "attempts": attempts,
            "unit_test": _unit_test(outputs, attempts) if planned["site"] == "build" else None,
            "scan": (_built(outputs).get("scan_engine") or None) if planned["site"] == "build" else None,
            "backout_rehearsed": test_output.get("backout_rehearsed") if rehearses else None,
            "totals": latest["totals"] if latest else None,
        })
    for planned, record in common.steps(state):
        if planned["kind"] == "gate" and planned["id"] in SIGNOFF_GATES and record.get("status") == "denied":
            rework += 1
            defects.append({"stage": planned["id"], "attempt": None, "host": None, "check": "%s decision" % planned["id"],
                            "phase": None, "result": "failed", "status": "outstanding",
                            "message": "denied by %s: %s" % (record.get("decided_by"), record.get("comment") or "")})
    for number, defect in enumerate(defects, start=1):
        defect["id"] = "D%d" % number
    rehearsed, backout_hosts, not_rehearsed = _rehearsal(stages, rehearsing)
    conclusion, why = _conclusion(state, stages, rehearsed, not_rehearsed)
    signoffs = [{"gate": planned["id"], "status": record.get("status"), "decided_by": record.get("decided_by"),
                 "decided_at": record.get("decided_at"), "comment": record.get("comment") or None}
                for planned, record in common.steps(state)
                if planned["kind"] == "gate" and planned["id"] in SIGNOFF_GATES]
    latest_totals = [stage["totals"] for stage in stages if stage["totals"]]
    totals = {key: sum(t[key] for t in latest_totals) for key in (*RESULTS, "checks")}
    not_run_stages = [stage["id"] for stage in stages if not stage["attempts"]]
    return {
        "schema": SCHEMA,
        "change_order": change_order["id"],
        "title": change_order["title"],
        "type": change_order["type"],
        "generated_at": _now(),
        "artifact": tested_artifact,
        "scope": {"stages": [stage["id"] for stage in stages],
                  "hosts": sorted({host for stage in stages for host in (stage["hosts_planned"] or [])}),
                  "not_run": not_run_stages},
        "conclusion": conclusion,
        "conclusion_reason": why,
        "totals": totals,
        "backout": {"rehearsed": rehearsed, "hosts": dict(sorted(backout_hosts.items()))},
        "rework": rework,
        "defects": defects,
        "signoffs": signoffs,
        "stages": stages,
    }


def _now():
    from esd.ledger import timestamp

    return timestamp()


BUILD_OUTPUTS = ("artifact", "image", "media")       # what the build stages report (esd_artifact, esd_image, ...)


def _built(outputs):
    return next((outputs[name] for name in BUILD_OUTPUTS if isinstance(outputs.get(name), dict)), {})


def _unit_test(outputs, attempts):
    """The build's unit test: as the build reported it (packages, images), else from its ``unit test`` checks in
    the latest attempt (media verify the medium in such a task), else None (not reported)."""
    if _built(outputs).get("unit_test"):
        return _built(outputs)["unit_test"]
    latest = attempts[-1] if attempts else None
    results = {check["result"] for data in (latest or {}).get("hosts", {}).values() for check in data["checks"]
               if (check["phase"] or "").lower() == "unit test"}
    if not results:
        return None
    if results & {"failed", "unreachable"}:
        return "failed"
    if "not_run" in results:
        return "not run"
    return "skipped" if results == {"skipped"} else "passed"


def _rehearsal(stages, rehearsing):
    """(rehearsed: True/False/None, {host: result}, why not) from the test-site stages that report a rehearsal."""
    if not any(stage["site"] == "test" for stage in stages):
        return None, {}, None
    reporting = [stage for stage in stages if stage["id"] in rehearsing]
    if not reporting:
        return False, {}, "no test stage reports a backout rehearsal"
    backout_hosts = {}
    for stage in reporting:
        if stage["attempts"]:
            backout_hosts.update(stage["attempts"][-1]["backout"])
    silent = [stage["id"] for stage in reporting if not stage["backout_rehearsed"]]
    if silent:
        return False, backout_hosts, "stage %s did not report a rehearsed backout" % ", ".join(silent)
    if not backout_hosts:
        return False, backout_hosts, "no host ran a backout check"
    failed = sorted(host for host, result in backout_hosts.items() if result != "passed")
    if failed:
        return False, backout_hosts, "the backout checks did not pass on %s" % ", ".join(failed)
    return True, backout_hosts, None


def _conclusion(state, stages, rehearsed, not_rehearsed=None):
    if not stages:
        return "not applicable", "the change order has no build or test stage"
    for planned, record in common.steps(state):
        if planned["kind"] == "gate" and planned["id"] in SIGNOFF_GATES and record.get("status") == "denied":
            return "rework", "%s was denied by %s" % (planned["id"], record.get("decided_by"))
    failed = [stage for stage in stages if stage["status"] in ("failed", "not_built")]
    if failed:
        latest = failed[0]["attempts"][-1] if failed[0]["attempts"] else {}
        return "rework", "stage %s failed: %s" % (failed[0]["id"], latest.get("reason") or "see the defects")
    open_stages = [stage["id"] for stage in stages if stage["status"] not in ("succeeded", "skipped")]
    if open_stages:
        return "incomplete", "not finished yet: %s" % ", ".join(open_stages)
    if rehearsed is None:
        return "pass", "every build and test stage passed"
    if not rehearsed:
        return "incomplete", ("every build and test stage passed, but the backout was NOT rehearsed: %s (production "
                              "approval needs a rehearsed backout)" % not_rehearsed)
    return "pass", "every build and test stage passed; the backout was rehearsed"


# --- JUnit XML ----------------------------------------------------------------------------------------

def render_junit(report):
    """JUnit XML (the common Jenkins/GitLab/Surefire shape) of the latest attempt of every in-scope stage."""
    root = ET.Element("testsuites", name="esd test report %s" % report["change_order"])
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for stage in report["stages"]:
        if not stage["attempts"]:
            continue
        attempt = stage["attempts"][-1]
        suite = ET.SubElement(root, "testsuite", name="%s.%s" % (report["change_order"], stage["id"]))
        if attempt.get("started_at"):
            suite.set("timestamp", str(attempt["started_at"])[:19])
        properties = ET.SubElement(suite, "properties")
        for name, value in (("change_order", report["change_order"]), ("stage", stage["id"]), ("site", stage["site"]),
                            ("attempt", attempt["attempt"]), ("attempt_status", attempt["status"]),
                            ("run_by", attempt.get("run_by")), ("playbook", stage["playbook"]),
                            ("artifact_sha256", (report.get("artifact") or {}).get("sha256")),
                            ("conclusion", report["conclusion"])):
            if value is not None:
                ET.SubElement(properties, "property", name=name, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        failed_hosts = False
        for host, data in sorted(attempt["hosts"].items()):
            classname = "%s.%s.%s" % (report["change_order"], stage["id"], host)
            if not data["ran"]:
                case = ET.SubElement(suite, "testcase", classname=classname, name="host ran the playbook", time="0")
                ET.SubElement(case, "error", message="the playbook never reached %s" % host, type="never_ran")
                counts["tests"] += 1
                counts["errors"] += 1
                continue
            for check in data["checks"]:
                seconds = float(check["duration"] or 0)
                case = ET.SubElement(suite, "testcase", classname=classname, name=check["task"] or "(unnamed task)",
                                     time="%.3f" % seconds)
                counts["tests"] += 1
                counts["time"] += seconds
                if check["result"] == "failed":
                    failed_hosts = True
                    failure = ET.SubElement(case, "failure", message=_one_line(check["message"]),
                                            type=check["failure_phase"] or check["phase"] or "failed")
                    failure.text = check["message"]
                    counts["failures"] += 1
                elif check["result"] == "unreachable":
                    failed_hosts = True
                    error = ET.SubElement(case, "error", message=_one_line(check["message"]), type="unreachable")
                    error.text = check["message"]
                    counts["errors"] += 1
                elif check["result"] in ("skipped", "not_run"):
                    reason = check["message"] if check["result"] == "skipped" else \
                        "not run: %s did not get to this check" % host
                    ET.SubElement(case, "skipped", message=_one_line(reason or "skipped"))
                    counts["skipped"] += 1
        case = ET.SubElement(suite, "testcase", classname="%s.%s" % (report["change_order"], stage["id"]),
                             name="esd stage checks", time="0")
        counts["tests"] += 1
        if attempt["status"] == "failed" and not failed_hosts:
            failure = ET.SubElement(case, "failure", message=_one_line(attempt.get("reason")), type="stage_check")
            failure.text = attempt.get("reason")
            counts["failures"] += 1
        for key, value in counts.items():
            suite.set(key, "%.3f" % value if key == "time" else str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, "%.3f" % value if key == "time" else str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _one_line(text):
    return " ".join(str(text or "").split())[:500]


# --- Markdown and HTML --------------------------------------------------------------------------------

CONCLUSION_TONES = {"pass": "ok", "rework": "fail", "incomplete": "info", "not applicable": "muted"}
RESULT_TONES = {"passed": "ok", "failed": "fail", "unreachable": "fail", "skipped": "muted", "not_run": "warn"}
RESULT_WORDS = {"passed": "passed", "failed": "FAILED", "unreachable": "UNREACHABLE", "skipped": "skipped",
                "not_run": "not run"}


def _check_label(check):
    words = RESULT_WORDS[check["result"]]
    return words + (" (changed)" if check["result"] == "passed" and check["changed"] else "")


def _matrix(attempt):
    """Rows of (check, phase, result per host) for one attempt."""
    hosts = sorted(attempt["hosts"])
    rows = []
    if not hosts:
        return hosts, rows
    first = attempt["hosts"][hosts[0]]["checks"]
    for index, check in enumerate(first):
        rows.append((check["task"], check["phase"], [attempt["hosts"][host]["checks"][index] for host in hosts]))
    return hosts, rows


def render_markdown(report):
    t, c = md.text, md.code
    artifact = report.get("artifact") or {}
    blocks = [md.heading("Test report: change order %s" % t(report["change_order"]), 1),
              "**Conclusion: %s** — %s" % (t(report["conclusion"]).upper(), t(report["conclusion_reason"])),
              md.key_values([
                  ("Title", t(report["title"])), ("Type", t(report["type"])),
                  ("Tested artifact", "%s %s, sha256 %s" % (t(artifact.get("name")), t(artifact.get("version")),
                                                           c(artifact.get("sha256"))) if artifact else None),
                  ("Backout rehearsal", "-" if report["backout"]["rehearsed"] is None else
                   ("passed" if report["backout"]["rehearsed"] else "**NOT rehearsed**")),
                  ("Rework", str(report["rework"])),
                  ("Checks (latest attempts)", "%d: %d passed, %d failed, %d unreachable, %d skipped, %d not run" % (
                      report["totals"]["checks"], report["totals"]["passed"], report["totals"]["failed"],
                      report["totals"]["unreachable"], report["totals"]["skipped"], report["totals"]["not_run"])),
                  ("Generated", t(report["generated_at"])),
              ]),
              md.heading("Scope"),
              md.bullets([
                  "Stages: %s" % (t(", ".join(report["scope"]["stages"])) or "none"),
                  "Hosts: %s" % (t(", ".join(report["scope"]["hosts"])) or "none"),
                  "Not run yet: %s" % (t(", ".join(report["scope"]["not_run"])) if report["scope"]["not_run"]
                                       else "nothing (every stage in scope ran)")])]
    blocks += [md.heading("Defects found")]
    if report["defects"]:
        blocks.append(md.table(["id", "stage", "attempt", "host", "check", "result", "status", "message"],
                               [(d["id"], t(d["stage"]), t(d["attempt"]), t(d["host"]), t(d["check"]), t(d["result"]),
                                 t(d["status"]), t(d["message"])) for d in report["defects"]]))
    else:
        blocks.append("None.")
    if report["backout"]["hosts"]:
        blocks += [md.heading("Backout rehearsal"),
                   md.table(["host", "rehearsal"], [(t(h), t(r)) for h, r in report["backout"]["hosts"].items()])]
    for stage in report["stages"]:
        blocks.append(md.heading("Stage %s (%s site)" % (t(stage["id"]), t(stage["site"]))))
        facts = ["%s, playbook %s, status **%s**, %d attempt(s)" % (t(stage["title"]), c(stage["playbook"]),
                                                                   t(stage["status"]), len(stage["attempts"]))]
        if stage["site"] == "build":
            facts.append("unit test: %s; virus scan: %s" % (t(stage["unit_test"] or "not reported"),
                                                            t(stage["scan"] or "not reported")))
        blocks.append(md.bullets(facts))
        for attempt in stage["attempts"]:
            hosts, rows = _matrix(attempt)
            blocks.append(md.heading("Attempt %d: %s%s" % (attempt["attempt"], t(attempt["status"]),
                                                            " — %s" % t(attempt["reason"]) if attempt["reason"] else ""),
                                     3))
            if attempt["never_ran"]:
                blocks.append("Never reached: %s" % t(", ".join(attempt["never_ran"])))
            if rows:
                blocks.append(md.table(["check", "phase"] + [t(h) for h in hosts],
                                       [(t(task), t(phase)) + tuple(_check_label(check) for check in checks)
                                        for task, phase, checks in rows]))
    if report["signoffs"]:
        blocks += [md.heading("Sign-off"),
                   md.table(["gate", "status", "by", "at", "comment"],
                            [(t(s["gate"]), t(s["status"]), t(s["decided_by"]), t(s["decided_at"]), t(s["comment"]))
                             for s in report["signoffs"]])]
    return md.document(*blocks)


def render_html(report):
    h = html
    artifact = report.get("artifact") or {}
    totals = report["totals"]
    tone = CONCLUSION_TONES.get(report["conclusion"], "muted")
    rehearsed = report["backout"]["rehearsed"]
    body = [h.verdict("Conclusion: %s — %s" % (report["conclusion"].upper(), report["conclusion_reason"]), tone),
            h.cards([("Checks", totals["checks"], "info"), ("Passed", totals["passed"], "ok"),
                     ("Failed", totals["failed"] + totals["unreachable"],
                      "fail" if totals["failed"] + totals["unreachable"] else "ok"),
                     ("Skipped / not run", "%d / %d" % (totals["skipped"], totals["not_run"]),
                      "warn" if totals["not_run"] else "muted"),
                     ("Rework", report["rework"], "fail" if report["rework"] else "ok"),
                     ("Backout rehearsal", "-" if rehearsed is None else ("passed" if rehearsed else "NOT rehearsed"),
                      "muted" if rehearsed is None else ("ok" if rehearsed else "fail"))]),
            h.key_values([("Title", report["title"]), ("Type", report["type"]),
                          ("Tested artifact", h.join(["%s %s, sha256 " % (artifact.get("name"), artifact.get("version")),
                                                      h.code(artifact.get("sha256"))]) if artifact else None),
                          ("Stages in scope", ", ".join(report["scope"]["stages"]) or "none"),
                          ("Hosts", ", ".join(report["scope"]["hosts"]) or "none"),
                          ("Not run yet", ", ".join(report["scope"]["not_run"]) or "nothing"),
                          ("Generated", report["generated_at"])])]
    chart = [(stage["id"], stage["totals"]["passed"], "ok") for stage in report["stages"] if stage["totals"]]
    chart += [("%s failed" % stage["id"], stage["totals"]["failed"] + stage["totals"]["unreachable"], "fail")
              for stage in report["stages"] if stage["totals"] and stage["totals"]["failed"] + stage["totals"]["unreachable"]]
    if chart:
        body.append(h.section("Checks passed per stage (latest attempt)",
                              h.bar_chart(chart, unit="checks", title="checks per stage")))
    body.append(h.section("Defects found", h.table(
        ["id", "stage", "attempt", "host", "check", "result", "status", "message"],
        [(d["id"], d["stage"], d["attempt"] or "", d["host"] or "", d["check"], h.badge(d["result"], "fail"),
          h.badge(d["status"], "ok" if d["status"].startswith("retested") else "fail"), d["message"] or "")
         for d in report["defects"]]) if report["defects"] else h.para("None.")))
    if report["backout"]["hosts"]:
        body.append(h.section("Backout rehearsal", h.table(
            ["host", "rehearsal"], [(host, h.badge(result, "ok" if result == "passed" else "fail"))
                                    for host, result in report["backout"]["hosts"].items()])))
    for stage in report["stages"]:
        parts = [h.para("%s — playbook %s, status %s, %d attempt(s)%s" % (
            stage["title"], stage["playbook"], stage["status"], len(stage["attempts"]),
            "; unit test %s, virus scan %s" % (stage["unit_test"] or "not reported", stage["scan"] or "not reported")
            if stage["site"] == "build" else ""))]
        for attempt in stage["attempts"]:
            hosts, rows = _matrix(attempt)
            parts.append(h.tag("h3", h.join(["Attempt %d " % attempt["attempt"],
                                             h.badge(attempt["status"], "ok" if attempt["status"] == "succeeded"
                                                     else "fail" if attempt["status"] == "failed" else "warn"),
                                             " %s" % (attempt["reason"] or "")])))
            if attempt["never_ran"]:
                parts.append(h.para("Never reached: %s" % ", ".join(attempt["never_ran"])))
            if rows:
                flat = [checks for _, _, checks in rows]
                parts.append(h.table(
                    ["check", "phase"] + hosts,
                    [[task, phase or ""] + [_check_label(check) for check in checks] for task, phase, checks in rows],
                    cell_classes=lambda r, col, flat=flat: "cell-%s" % RESULT_TONES[flat[r][col - 2]["result"]]
                    if col >= 2 else None))
        body.append(h.section("Stage %s (%s site)" % (stage["id"], stage["site"]), *parts))
    if report["signoffs"]:
        body.append(h.section("Sign-off", h.table(
            ["gate", "status", "by", "at", "comment"],
            [(s["gate"], s["status"], s["decided_by"] or "", s["decided_at"] or "", s["comment"] or "")
             for s in report["signoffs"]])))
    return h.page("Test report: %s" % report["change_order"], h.join(body), subtitle=report["title"],
                  generated=report["generated_at"])


def render_text(report):
    return render_markdown(report)
