"""The project evaluation report of a change order, and the per-change-order facts the measurements add up.

:func:`facts` is the one place that decides, for one change order, what ``esd metrics`` counts: whether it
finished in the requested time, its lead times, whether its build was handed over in time, its rework,
its endpoints' success and its rollbacks. The definitions (also in runner/README.md, "Reports"):

- **received**: when the change order was registered (``esd run`` accepted it). **due**: the end of the
  ``requested_completion`` day, UTC (the day is inclusive).
- **finished**: in a final status (``esd.states.FINAL``: succeeded, cancelled, denied, rolled_back); its
  ``finished_at`` is when it got there.
- **finished in the requested time**: it succeeded before it was due. A succeeded change order finished
  after it was due, a denied, cancelled or rolled-back one, and one still open after it was due count as
  *not* in time; one still open before it is due is not counted yet (``on_time`` is null).
- **lead time**: received → succeeded; a change order that ended otherwise delivered nothing and has
  none. **Site lead time**: the first start of the site's first stage → the end of its last stage
  (retries and gate waits between them included).
- **built in the requested time**: the build-site stages all succeeded (the artifact was handed over)
  before the change order was due; packages and media count as *package*, OS images and image media as
  *image*.
- **rework**: a return to the building site: a failed test-site stage attempt, or a denied test, UAT or
  build sign-off. **Passed test without rework**: the test-site stages all succeeded and rework is 0.
- **rollback**: an endpoint whose audit snapshots show its active version going back to a version it
  already had, or the package's own auto-revert of a failed activation (see ``esd.audit``).
  **Rolled back after a failure** (what the rollback rate counts): the package's auto-revert of a failed
  activation, or a rollback by the rollout's backout of an endpoint the triage sent to be rolled back. A
  rollback the change order asked for (rollback_update, rollback_image, a deploy of a version the host had)
  is the change itself, not a failed deployment.
- **success percentage**: endpoints that ended as the change order meant (the intent of the last
  production stage that ran on them, a backout's aside, checked against their latest audit snapshot; without
  snapshots, that stage's result), of the endpoints production stages ran on.
"""

from __future__ import annotations

import datetime

from esd import audit
from esd.reports import common, html, markdown as md, testing
from esd.states import FINAL

SCHEMA = "esd.osp/report/evaluation/v1"
BUILD_KINDS = {"artifact": "package", "media": "package", "image": "image"}


def _stage_times(records):
    """{stage: {"first_start", "last_end", "failed": n, "attempts": n}} from the audit log."""
    times = {}
    for record in records:
        data = record.get("data") or {}
        stage = data.get("stage")
        if not stage:
            continue
        item = times.setdefault(stage, {"first_start": None, "last_end": None, "failed": 0, "attempts": 0,
                                        "succeeded_at": None})
        if record["event"] == "stage_started":
            item["attempts"] += 1
            item["first_start"] = item["first_start"] or record["time"]
        elif record["event"] in ("stage_succeeded", "stage_failed"):
            item["last_end"] = record["time"]
            if record["event"] == "stage_failed":
                item["failed"] += 1
            else:
                item["succeeded_at"] = record["time"]
    return times


def facts(entry, state, now=None):
    """Everything the evaluation report and the measurements need about one change order."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    change_order = state["change_order"]
    status = state["status"]
    received = change_order.get("registered_at") or state.get("created_at")
    due = common.due_moment(change_order["requested_completion"])
    finished = state.get("finished_at") if status in FINAL else None
    completed = status == "succeeded"
    on_time = _in_time(completed and common.parse_time(finished), due, status in FINAL, now)

    records = common.audit_records(entry)
    times = _stage_times(records)
    sites = []
    for site in ("build", "test", "production"):
        planned_stages = [planned for planned, _ in common.steps(state)
                          if planned["kind"] == "stage" and planned.get("site") == site and not planned.get("skip")]
        if not planned_stages:
            continue
        ran = [times[p["id"]] for p in planned_stages if p["id"] in times]
        done = all(state["steps"][p["id"]].get("status") in ("succeeded", "skipped") for p in planned_stages)
        start = min((t["first_start"] for t in ran if t["first_start"]), default=None)
        end = max((t["last_end"] for t in ran if t["last_end"]), default=None) if done else None
        sites.append({"site": site, "stages": [p["id"] for p in planned_stages], "started_at": start,
                      "finished_at": end, "lead_time_seconds": common.seconds_between(start, end),
                      "attempts": sum(t["attempts"] for t in ran), "failed_attempts": sum(t["failed"] for t in ran),
                      "done": done})

    gates = []
    gate_wait = 0.0
    for planned, record in common.steps(state):
        if planned["kind"] != "gate" or not record.get("decided_at"):
            continue
        waited = common.seconds_between(record.get("since"), record["decided_at"])
        gate_wait += waited or 0
        gates.append({"gate": planned["id"], "status": record["status"], "decided_by": record.get("decided_by"),
                      "decided_at": record["decided_at"], "waited_seconds": waited, "comment": record.get("comment")})

    build = _build_facts(state, times, due, now)

    test_stages = [p for p, _ in common.steps(state) if p["kind"] == "stage" and p.get("site") == "test"]
    rework_events = []
    test_ids = {planned["id"] for planned in test_stages}
    for record in records:
        data = record.get("data") or {}
        if record["event"] == "stage_failed" and data.get("stage") in test_ids:
            rework_events.append({"what": "test stage %s attempt %s failed" % (data["stage"], data.get("attempt")),
                                  "time": record["time"], "reason": data.get("reason")})
    for planned, record in common.steps(state):
        if planned["kind"] == "gate" and planned["id"] in testing.SIGNOFF_GATES and record.get("status") == "denied":
            rework_events.append({"what": "%s denied by %s" % (planned["id"], record.get("decided_by")),
                                  "time": record.get("decided_at"), "reason": record.get("comment")})
    tested = any(times.get(p["id"], {}).get("last_end") for p in test_stages)
    test_passed = bool(test_stages) and all(state["steps"][p["id"]].get("status") == "succeeded" for p in test_stages)
    test = {"in_scope": bool(test_stages), "tested": tested, "passed": test_passed if tested else None,
            "rework": len(rework_events), "rework_events": rework_events,
            "passed_without_rework": (test_passed and not rework_events) if tested else None}

    production = production_facts(entry, state)
    closure = state.get("closure") or None
    return {
        "schema": SCHEMA,
        "change_order": change_order["id"],
        "title": change_order["title"],
        "type": change_order["type"],
        "category": change_order["category"],
        "requester": change_order["requester"],
        "status": status,
        "reason": state.get("reason") or "",
        "received_at": received,
        "finished_at": finished,
        "requested_completion": change_order["requested_completion"],
        "due_at": due.isoformat(),
        "completed": completed,
        "on_time": on_time,
        "lead_time_seconds": common.seconds_between(received, finished) if completed else None,
        "sites": sites,
        "gates": gates,
        "gate_wait_seconds": round(gate_wait, 3),
        "build": build,
        "test": test,
        "production": production,
        "closure": closure,
        "lessons_learned": (closure or {}).get("comment"),
        "generated_at": _now(),
    }


def _now():
    from esd.ledger import timestamp

    return timestamp()


def _in_time(finished, due, final, now):
    if finished:
        return finished < due
    if final or now >= due:
        return False
    return None


def _build_facts(state, times, due, now):
    build_stages = [p for p, _ in common.steps(state) if p["kind"] == "stage" and p.get("site") == "build"
                    and not p.get("skip")]
    if not build_stages:
        return None
    kinds = {BUILD_KINDS.get(name, "package") for planned in build_stages for name in (planned.get("outputs") or
                                                                                        {}).values()}
    kind = "image" if "image" in kinds or state["change_order"]["category"] == "OSP" else "package"
    done = all(state["steps"][p["id"]].get("status") == "succeeded" for p in build_stages)
    handed_over = max((times.get(p["id"], {}).get("succeeded_at") or "" for p in build_stages), default="") or None
    if not done:
        handed_over = None
    return {"kind": kind, "stages": [p["id"] for p in build_stages], "handed_over_at": handed_over,
            "on_time": _in_time(common.parse_time(handed_over), due, state["status"] in FINAL, now)}


def production_facts(entry, state):
    """Endpoints and their success: the intent of the last stage that ran on a host (esd.inventory), checked
    against the host's latest snapshot; without snapshots, that stage's result for the host."""
    from esd import inventory

    endpoints = {}
    intents = {}
    stages_run = 0
    for planned, record in common.steps(state):
        if planned["kind"] != "stage" or planned.get("site") != "production" or not record.get("attempts"):
            continue
        stages_run += 1
        targets = audit.audited_hosts(state, planned) or []
        hosts = record.get("hosts") or {}
        # Success means the change itself: a backout's intent (undo it) is not what the change order was for.
        intent = None if planned.get("rollout_role") == "backout" else inventory.stage_intent(planned, record)
        for host in targets:
            if host in (hosts.get("ok") or []):
                endpoints[host] = "ok"
            elif host in (hosts.get("failed") or []) or host in (hosts.get("never_ran") or []):
                endpoints[host] = "failed"
            elif record.get("status") in ("running", "interrupted"):
                endpoints.setdefault(host, "unknown")
            if host in endpoints and intent is not None:
                intents[host] = intent
    latest = {}
    for _, before, after in audit.stage_snapshots(entry, state):
        for snapshot in (before, after):
            for host, data in ((snapshot or {}).get("hosts") or {}).items():
                if not data.get("error") and (host not in latest or latest[host][0] <= snapshot["taken_at"]):
                    latest[host] = (snapshot["taken_at"], data)
    for host, intent in intents.items():
        if host in latest and endpoints.get(host) != "unknown":
            endpoints[host] = "ok" if inventory.satisfied(intent, latest[host][1]) else "failed"
    changes = audit.change_order_changes(entry, state)
    ok = sum(1 for result in endpoints.values() if result == "ok")
    after_failure = rolled_back_after_failure(state, changes)
    return {"stages_run": stages_run, "endpoints": len(endpoints), "ok": ok,
            "failed": sorted(host for host, result in endpoints.items() if result == "failed"),
            "success_percent": common.percent(ok, len(endpoints)),
            "rolled_back": changes["rolled_back"], "rollbacks": len(changes["rolled_back"]),
            "rolled_back_after_failure": after_failure, "rollbacks_after_failure": len(after_failure),
            "audit_snapshots": changes["snapshots"], "audit_seconds": changes["seconds"]}


def rolled_back_after_failure(state, changes):
    """The endpoints on which a failed change was rolled back: the package reverted a failed activation
    (``reverted``), or the rollout's backout rolled back an endpoint the triage classified ``rollback`` (a
    failure, or a success undone because the rollout halted). ``changes``: :func:`esd.audit.change_order_changes`."""
    backout = {step["id"] for step in state["plan"]["steps"] if step.get("rollout_role") == "backout"}
    triaged = (state.get("rollout") or {}).get("endpoints") or {}
    found = set()
    for stage in changes["stages"]:
        for host, host_changes in stage["changes"].items():
            kinds = {change["kind"] for change in host_changes}
            if audit.REVERTED in kinds or (audit.ROLLED_BACK in kinds and stage["stage"] in backout
                                           and (triaged.get(host) or {}).get("class") == "rollback"):
                found.add(host)
    return sorted(found)


# --- presentation -------------------------------------------------------------------------------------

def _yes_no(value, pending="not yet known"):
    return pending if value is None else ("yes" if value else "no")


def _lead_time(data):
    if data["lead_time_seconds"] is None and data["finished_at"] and not data["completed"]:
        return "none: the change order ended %s" % data["status"]
    return common.human_duration(data["lead_time_seconds"])


def render_markdown(data):
    t = md.text
    production = data["production"]
    test = data["test"]
    build = data["build"]
    closure = data.get("closure") or {}
    blocks = [md.heading("Evaluation report: change order %s" % t(data["change_order"]), 1),
              md.heading("Project summary"),
              md.key_values([
                  ("Title", t(data["title"])), ("Type", "%s (%s)" % (t(data["type"]), t(data["category"]))),
                  ("Requester", t(data["requester"])), ("Status", "**%s** %s" % (t(data["status"]), t(data["reason"]))),
                  ("Received", t(data["received_at"])), ("Finished", t(data["finished_at"])),
                  ("Requested completion", t(data["requested_completion"])),
                  ("Requested completion met", _yes_no(data["on_time"])),
                  ("Lead time", t(_lead_time(data))),
                  ("Waiting at gates", common.human_duration(data["gate_wait_seconds"])),
                  ("Closed", "%s by %s" % (t(closure.get("closed_at")), t(closure.get("closed_by"))) if closure
                   else "not yet (esd close)"),
                  ("Requester satisfaction", "%s of 5" % closure["satisfaction"] if closure.get("satisfaction")
                   else None),
              ]),
              md.heading("Measurements"),
              md.key_values([
                  ("Build handed over in time", _yes_no(build["on_time"]) + " (%s)" % build["kind"] if build else
                   "no build in this change order"),
                  ("Rework (returns to the building site)", str(test["rework"]) if test["in_scope"] else "no test stage"),
                  ("Passed test without rework", _yes_no(test["passed_without_rework"]) if test["in_scope"] else None),
                  ("Endpoints", "%d of %d ok (%s%%)" % (production["ok"], production["endpoints"],
                                                        production["success_percent"]) if production["endpoints"]
                   else "no production endpoints"),
                  ("Rollbacks", "%d endpoint(s)%s, %d after a failed change" % (
                      production["rollbacks"], ": %s" % t(", ".join(production["rolled_back"]))
                      if production["rolled_back"] else "", production["rollbacks_after_failure"])),
              ]),
              md.heading("Lead time per site"),
              md.table(["site", "stages", "started", "finished", "lead time", "attempts", "failed attempts"],
                       [(t(s["site"]), t(", ".join(s["stages"])), t(s["started_at"]), t(s["finished_at"]),
                         common.human_duration(s["lead_time_seconds"]) if s["done"] else "not finished",
                         str(s["attempts"]), str(s["failed_attempts"])) for s in data["sites"]], numeric=(5, 6))]
    if test["rework_events"]:
        blocks += [md.heading("Rework"), md.table(["what", "when", "why"], [
            (t(e["what"]), t(e["time"]), t(e["reason"])) for e in test["rework_events"]])]
    if data["gates"]:
        blocks += [md.heading("Decisions"), md.table(["gate", "decision", "by", "at", "waited"], [
            (t(g["gate"]), t(g["status"]), t(g["decided_by"]), t(g["decided_at"]),
             common.human_duration(g["waited_seconds"])) for g in data["gates"]])]
    blocks += [md.heading("Lessons learned"),
               md.paragraphs(data["lessons_learned"]) if data["lessons_learned"] else
               "_Not recorded yet: `esd close %s --comment ...` records them._" % data["change_order"]]
    if closure.get("known_errors"):
        blocks += [md.heading("Known errors recorded at closure"), md.table(["known error", "workaround"], [
            (t(k["error"]), t(k.get("workaround"))) for k in closure["known_errors"]])]
    return md.document(*blocks)


def render_text(data):
    return render_markdown(data)


def render_html(data):
    h = html
    production = data["production"]
    test = data["test"]
    build = data["build"]
    closure = data.get("closure") or {}
    on_time_tone = {True: "ok", False: "fail", None: "muted"}[data["on_time"]]
    body = [h.cards([
        ("Requested completion met", _yes_no(data["on_time"]), on_time_tone),
        ("Lead time", _lead_time(data), "info"),
        ("Rework", test["rework"] if test["in_scope"] else "-", "fail" if test["rework"] else "ok"),
        ("Success", "%s%%" % production["success_percent"] if production["endpoints"] else "-",
         "ok" if production["success_percent"] == 100 else ("fail" if production["endpoints"] else "muted")),
        ("Rollbacks", production["rollbacks"], "warn" if production["rollbacks"] else "ok")])]
    body.append(h.section("Project summary", h.key_values([
        ("Title", data["title"]), ("Type", "%s (%s)" % (data["type"], data["category"])),
        ("Requester", data["requester"]), ("Status", h.join([h.badge(data["status"], "ok" if data["completed"] else
                                                                      "fail"), " ", data["reason"]])),
        ("Received", data["received_at"]), ("Finished", data["finished_at"] or "-"),
        ("Requested completion", "%s (the whole day, UTC)" % data["requested_completion"]),
        ("Waiting at gates", common.human_duration(data["gate_wait_seconds"])),
        ("Build handed over in time", "%s (%s)" % (_yes_no(build["on_time"]), build["kind"]) if build else None),
        ("Passed test without rework", _yes_no(test["passed_without_rework"]) if test["in_scope"] else None),
        ("Endpoints ok", "%d of %d" % (production["ok"], production["endpoints"]) if production["endpoints"] else None),
        ("Rolled back", ", ".join(production["rolled_back"]) or "none"),
        ("Rolled back after a failed change", ", ".join(production["rolled_back_after_failure"]) or "none"),
        ("Closed", "%s by %s" % (closure.get("closed_at"), closure.get("closed_by")) if closure else "not yet"),
        ("Requester satisfaction", "%s of 5" % closure["satisfaction"] if closure.get("satisfaction") else None)])))
    chart = [(s["site"], round((s["lead_time_seconds"] or 0) / 60.0, 2), "info") for s in data["sites"] if s["done"]]
    body.append(h.section("Lead time per site",
                          h.bar_chart(chart, unit="min", title="lead time per site") if chart else "",
                          h.table(["site", "stages", "started", "finished", "lead time", "attempts", "failed attempts"],
                                  [(s["site"], ", ".join(s["stages"]), s["started_at"] or "", s["finished_at"] or "",
                                    common.human_duration(s["lead_time_seconds"]) if s["done"] else "not finished",
                                    s["attempts"], s["failed_attempts"]) for s in data["sites"]], numeric=(5, 6))))
    if test["rework_events"]:
        body.append(h.section("Rework", h.table(["what", "when", "why"], [
            (e["what"], e["time"] or "", e["reason"] or "") for e in test["rework_events"]])))
    if data["gates"]:
        body.append(h.section("Decisions", h.table(["gate", "decision", "by", "at", "waited"], [
            (g["gate"], g["status"], g["decided_by"] or "", g["decided_at"], common.human_duration(g["waited_seconds"]))
            for g in data["gates"]])))
    body.append(h.section("Lessons learned", h.tag("p", data["lessons_learned"], class_="prose")
                          if data["lessons_learned"] else
                          h.para("Not recorded yet: esd close %s --comment ... records them." % data["change_order"],
                                 note=True)))
    if closure.get("known_errors"):
        body.append(h.section("Known errors recorded at closure", h.table(
            ["known error", "workaround"], [(k["error"], k.get("workaround") or "") for k in closure["known_errors"]])))
    return h.page("Evaluation report: %s" % data["change_order"], h.join(body), subtitle=data["title"],
                  generated=data["generated_at"])
