"""The project status report of a change order, at any moment, from its ledger (state, audit log, snapshots).

``status_report`` returns plain data (also the ``--json`` output of ``esd status`` and ``esd report --kind
status``; schema ``esd.osp/report/status/v1``, see docs/report-schema.md): the stages done, failed and
pending, every gate decision with who and when, the artifacts with their digests, every target host's state
(:func:`host_states`: pending until a stage reaches it, then what the stage and the rollout's triage made of
it), what the audit snapshots saw change on each host, open problem records and the next step.
``render_text``, ``render_markdown`` and ``render_html`` present it.
"""

from __future__ import annotations

import os

from esd import audit
from esd.reports import common, html, markdown as md
from esd.states import FINAL

SCHEMA = "esd.osp/report/status/v1"
DONE = ("succeeded", "skipped")
FAILED = ("failed", "not_built")


def status_report(state, entry=None):
    change_order = state["change_order"]
    steps = []
    artifact = None
    for planned, record in common.steps(state):
        item = {"id": planned["id"], "kind": planned["kind"], "title": planned["title"],
                "status": record.get("status", "pending")}
        if planned["kind"] == "stage":
            hosts = record.get("hosts") or {}
            planned_hosts = common.stage_hosts(planned)
            item.update(site=planned.get("site"), attempts=record.get("attempts", 0), run_by=record.get("run_by"),
                        started_at=record.get("started_at"), finished_at=record.get("finished_at"),
                        duration=record.get("duration"),
                        hosts_total=len(planned_hosts) if planned_hosts is not None else None,
                        hosts_ok=len(hosts.get("ok", [])), hosts_failed=hosts.get("failed", []),
                        hosts_changed=len(hosts.get("changed", [])), reason=record.get("reason") or None,
                        playbook=os.path.basename(planned["playbook"]), playbook_exists=planned["playbook_exists"])
            if record.get("failures"):
                item["failures"] = record["failures"]
            built = (record.get("outputs") or {}).get("artifact")
            if built:
                artifact = built
        elif planned["kind"] == "gate":
            item.update(decided_by=record.get("decided_by"), decided_at=record.get("decided_at"),
                        comment=record.get("comment") or None, since=record.get("since"),
                        automatic=bool(planned.get("automatic")))
        steps.append(item)

    endpoints = {}
    triaged = (state.get("rollout") or {}).get("endpoints") or {}
    for planned, record in common.steps(state):
        if planned["kind"] != "stage" or planned.get("site") != "production":
            continue
        if record.get("status") in ("pending", "skipped", None):
            continue
        backout = planned.get("rollout_role") == "backout"
        for host, software in (record.get("endpoints") or {}).items():
            if backout and host in endpoints and (triaged.get(host) or {}).get("class") != "success":
                continue        # rolled back: what the change did there was fail (a redistribution succeeds)
            endpoints[host] = {"stage": planned["id"], "result": "ok", **software}
        for host, failure in (record.get("failures") or {}).items():
            endpoints[host] = {"stage": planned["id"], "result": failure["status"], "phase": failure.get("phase"),
                               "message": failure.get("message")}
    hosts = host_states(state)
    audit_ok = None
    records = None
    changes = None
    problems = []
    as_intended = None
    if entry is not None:
        from esd.reports import evaluation

        audit_ok, _, records = entry.verify_audit()
        changes = audit.change_order_changes(entry, state)
        problems = common.read_problems(entry)
        production = evaluation.production_facts(entry, state)
        as_intended = {"endpoints": production["endpoints"], "ok": production["ok"], "failed": production["failed"],
                       "success_percent": production["success_percent"]}
    stages = [step for step in steps if step["kind"] == "stage"]
    report = {
        "schema": SCHEMA,
        "change_order": change_order["id"],
        "title": change_order["title"],
        "type": change_order["type"],
        "category": change_order["category"],
        "requester": change_order["requester"],
        "requested_completion": change_order["requested_completion"],
        "digest": change_order["digest"],
        "status": state["status"],
        "reason": state.get("reason") or "",
        "current_step": state.get("current_step"),
        "created_at": state.get("created_at"),
        "finished_at": state.get("finished_at"),
        "elapsed_seconds": common.seconds_between(state.get("created_at"), state.get("finished_at")),
        "generated_at": _now(),
        "artifact": artifact,
        "artifacts": _artifacts(state),
        "stages_done": [s["id"] for s in stages if s["status"] in DONE],
        "stages_failed": [s["id"] for s in stages if s["status"] in FAILED],
        "stages_pending": [s["id"] for s in stages if s["status"] not in DONE + FAILED],
        "gates": [{key: step.get(key) for key in ("id", "title", "status", "decided_by", "decided_at", "comment",
                                                  "since", "automatic")}
                  for step in steps if step["kind"] == "gate"],
        "steps": steps,
        "endpoints": dict(sorted(endpoints.items())),
        "host_states": hosts,
        "hosts_by_state": _hosts_by_state(hosts),
        "endpoints_as_intended": as_intended,
        "inventory_changes": changes,
        "open_problems": [problem for problem in problems if problem["open"]],
        "next_step": next_step(state),
        "closure": state.get("closure"),
        "audit": {"records": records, "verified": audit_ok},
        "ledger": entry.path if entry is not None else None,
    }
    return report


def _now():
    from esd.ledger import timestamp

    return timestamp()


def _artifacts(state):
    change_order = state["change_order"]
    found = [{"kind": "change_order", "stage": None, "name": change_order["id"], "version": None,
              "sha256": change_order["digest"], "size": None, "path": change_order.get("source"), "builder": None}]
    if change_order.get("artifact_sha256"):
        found.append({"kind": "declared", "stage": None, "name": None, "version": None,
                      "sha256": change_order["artifact_sha256"], "size": None, "path": None,
                      "builder": ", ".join(change_order.get("declared_builders") or []) or None})
    for output in common.artifact_outputs(state):
        found.append({"kind": output["kind"], "stage": output["stage"],
                      "name": output.get("name") or output.get("family"), "version": output.get("version"),
                      "sha256": output["sha256"], "size": _int(output.get("size")), "path": output.get("path"),
                      "builder": output.get("builder")})
    return found


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def endpoint_words(reported):
    """What a stage's module said about an endpoint, in words hosts are grouped by.

    esd.osp.software: ``active 1.1.0, committed 1.0.0, backup 1.0.0``. esd.osp.image_node (``active`` is the
    running slot's image, ``committed`` a bool): ``image debian12-server 1.1.0 (slot b), uncommitted``; the
    per-node container names stay out, so nodes in the same state share a group.
    """
    active = reported.get("active")
    if isinstance(active, dict) or isinstance(reported.get("committed"), bool):
        if not active:
            return "no image"
        text = "image %s %s" % (active.get("family"), active.get("version"))
        if active.get("slot"):
            text += " (slot %s)" % active["slot"]
        return text + (", committed" if reported.get("committed") else ", uncommitted")
    text = "active %s, committed %s" % (active, reported.get("committed"))
    if reported.get("backup"):
        text += ", backup %s" % reported["backup"]
    return text


def _stage_running_on(state, planned, record):
    from esd import rollout

    return rollout.stage_limit(state, planned, record) or planned.get("hosts") or []


def host_states(state):
    """Every endpoint target of the change order (``spec.targets.hosts`` as the plan resolved it) and where it
    stands: ``{host: {"state": words, "result": result, "stage": the stage that decided it, or None}}``.

    ``result``: ``pending`` (no production stage reached it yet), ``running``, ``ok`` (with what the module
    reported), ``failed``, ``unreachable``, ``not_reached`` (the rollout halted before its wave) and, from the
    rollout's triage, ``redistribute``, ``rollback`` (to be rolled back), ``rolled_back`` and ``manual``.
    """
    targets = ((state.get("plan") or {}).get("targets") or {}).get("hosts") or []
    hosts = {host: {"state": "pending", "result": "pending", "stage": None} for host in targets}
    if not hosts:
        return {}
    for planned, record in common.steps(state):
        if planned["kind"] != "stage" or planned.get("site") != "production":
            continue
        step_id, status = planned["id"], record.get("status")
        if status == "running":
            for host in _stage_running_on(state, planned, record):
                if host in hosts:
                    hosts[host] = {"state": "in progress at %s" % step_id, "result": "running", "stage": step_id}
            continue
        if status == "halted":
            for host in planned.get("limit_hosts") or []:
                if host in hosts and hosts[host]["result"] == "pending":
                    hosts[host] = {"state": "not reached: the rollout halted", "result": "not_reached",
                                   "stage": step_id}
            continue
        if not record.get("attempts"):
            continue
        ran = record.get("hosts") or {}
        reported = record.get("endpoints") or {}
        failures = record.get("failures") or {}
        for host in ran.get("ok") or []:
            if host not in hosts:
                continue
            if host in reported:
                words = endpoint_words(reported[host])
            elif hosts[host]["result"] == "ok":
                continue        # a stage that reports no state (a health check) leaves the host as it was
            else:
                words = "ok at %s" % step_id
            hosts[host] = {"state": words, "result": "ok", "stage": step_id}
        for host, failure in failures.items():
            if host in hosts:
                hosts[host] = {"state": "%s at %s (%s)" % (failure["status"], step_id, failure.get("phase") or "-"),
                               "result": failure["status"], "stage": step_id}
        for host in ran.get("never_ran") or []:
            if host in hosts and host not in failures:
                hosts[host] = {"state": "never reached by %s" % step_id, "result": "failed", "stage": step_id}
    _triaged(state, hosts)
    return hosts


def _triaged(state, hosts):
    """What the rollout's triage and backout made of the endpoints that did not simply succeed."""
    rollout = state.get("rollout") or {}
    settled = bool(rollout.get("verdict"))
    backout = {step["id"] for step in state["plan"]["steps"] if step.get("rollout_role") == "backout"}
    for host, endpoint in (rollout.get("endpoints") or {}).items():
        if host not in hosts or endpoint["class"] == "success":
            continue        # the stages' own results stand (a redistributed endpoint: the backout's)
        where = "%s (%s)" % (endpoint.get("stage") or "-", endpoint.get("phase") or "-")
        klass, current = endpoint["class"], hosts[host]
        if klass == "not_reached":
            item = ("not reached: the rollout halted", "not_reached")
        elif klass == "rollback" and endpoint.get("rolled_back"):
            backout_words = current["state"] if current["result"] == "ok" and current["stage"] in backout else ""
            item = ("rolled back%s" % (": %s" % backout_words if backout_words else ""), "rolled_back")
        elif klass == "rollback":
            item = ("rollback failed: failed at %s" % where, "failed") if endpoint.get("rollback_failure") else (
                "to roll back: failed at %s" % where, "rollback")
        elif klass == "redistribute":
            item = ("redistribution failed: failed at %s" % where, "failed") if settled and endpoint.get("attempts") \
                else ("to redistribute: failed at %s" % where, "redistribute")
        else:
            item = ("%s: failed at %s" % (klass, where), klass)
        hosts[host] = {"state": item[0], "result": item[1], "stage": current["stage"]}


def _hosts_by_state(hosts):
    groups = {}
    for host, item in sorted(hosts.items()):
        groups.setdefault((item["state"], item["result"]), []).append(host)
    return [{"state": key, "result": result, "count": len(members), "hosts": members}
            for (key, result), members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))]


def next_step(state):
    """What has to happen next, and the command that does it: ``{"action": ..., "command": ... or None}``."""
    co_id = state["change_order"]["id"]
    status = state["status"]
    current = state.get("current_step")
    if status == "registered":
        return {"action": "run the change order", "command": "esd run %s --as <identity>" % co_id}
    if status == "running":
        return {"action": "stage %s is running; wait for it (esd status %s)" % (current, co_id), "command": None}
    if status == "waiting":
        planned = next((step for step in state["plan"]["steps"] if step["id"] == current), None)
        record = state["steps"].get(current) or {}
        if planned and planned["kind"] == "gate" and record.get("status") == "pending" and not planned.get("automatic"):
            who = []
            if planned.get("approvers"):
                who.append("approvers: %s" % ", ".join(planned["approvers"]))
            if planned.get("excludes"):
                who.append("not the %s" % " or the ".join(planned["excludes"]))
            return {"action": "decide gate %s (%s)%s" % (current, planned["title"],
                                                         "; %s" % "; ".join(who) if who else ""),
                    "command": "esd approve %s --gate %s --as <identity> --comment <why>   (or esd deny)"
                               % (co_id, current)}
        if record.get("status") == "approved":
            return {"action": "continue after the approval of %s" % current, "command": "esd run %s" % co_id}
        return {"action": state.get("reason") or "wait, then run again", "command": "esd run %s" % co_id}
    if status in ("failed", "interrupted"):
        return {"action": "fix the cause (%s), then run again: the failed stage runs as a new attempt; or cancel"
                          % (state.get("reason") or status), "command": "esd run %s   (or esd cancel %s)" % (co_id, co_id)}
    if status in FINAL and not state.get("closure"):
        action = "close the change order with the lessons learned (the evaluation report)" \
            if status == "succeeded" else "the change order is %s; close it with the lessons learned" % status
        return {"action": action, "command": "esd close %s --comment <lessons learned> --as <requester>" % co_id}
    if state.get("closure"):
        return {"action": "none: the change order is %s and closed" % status, "command": None}
    return {"action": state.get("reason") or "the change order is %s" % status, "command": "esd status %s" % co_id}


# --- text ---------------------------------------------------------------------------------------------

def _mark(status):
    return {"succeeded": "done", "approved": "approved", "done": "done", "skipped": "skipped"}.get(status, status)


def render_text(report):
    lines = ["Change order %s: %s" % (report["change_order"], report["title"]),
             "  type %s (%s), requested by %s, due %s" % (report["type"], report["category"], report["requester"],
                                                         report["requested_completion"]),
             "  status: %s%s" % (report["status"].upper(), " - %s" % report["reason"] if report["reason"] else "")]
    if report["artifact"]:
        artifact = report["artifact"]
        lines.append("  artifact: %s %s sha256 %s (built by %s)" % (artifact.get("name"), artifact.get("version"),
                                                                    artifact.get("sha256"), artifact.get("builder")))
    lines.append("Steps:")
    for step in report["steps"]:
        if step["kind"] == "stage":
            hosts = ""
            if step["status"] not in ("pending", "skipped"):
                total = step["hosts_total"] if step["hosts_total"] is not None else step["hosts_ok"]
                hosts = " %d/%d hosts ok" % (step["hosts_ok"], total)
                if step["hosts_failed"]:
                    hosts += ", failed: %s" % ", ".join(step["hosts_failed"][:10])
            timing = " %.1fs" % step["duration"] if step.get("duration") is not None else ""
            attempts = " (%d attempts)" % step["attempts"] if step.get("attempts", 0) > 1 else ""
            who = " by %s" % step["run_by"] if step.get("run_by") else ""
            lines.append("  stage %-20s %-11s%s%s%s%s" % (step["id"], _mark(step["status"]), hosts, timing, attempts,
                                                          who))
            if step.get("reason") and step["status"] != "succeeded":
                lines.append("        %s" % step["reason"])
        elif step["kind"] == "gate":
            decided = ""
            if step.get("decided_by"):
                decided = " by %s at %s" % (step["decided_by"], step["decided_at"])
                if step.get("comment"):
                    decided += " (%s)" % step["comment"]
            lines.append("  gate  %-20s %-11s%s" % (step["id"], _mark(step["status"]), decided))
        else:
            lines.append("  %-5s %-20s %s" % (step["kind"][:5], step["id"], _mark(step["status"])))
    if report["hosts_by_state"]:
        lines.append("Hosts per state (%d target(s)):" % sum(group["count"] for group in report["hosts_by_state"]))
        for group in report["hosts_by_state"]:
            hosts = group["hosts"]
            shown = ", ".join(hosts) if len(hosts) <= 6 else "%s ... %s" % (", ".join(hosts[:4]), hosts[-1])
            lines.append("  %3d  %s: %s" % (group["count"], group["state"], shown))
    changes = report.get("inventory_changes")
    if changes and changes["hosts"]:
        lines.append("Audit before/after (%d snapshot(s), %.1fs):" % (changes["snapshots"], changes["seconds"]))
        for words, hosts in _change_groups(changes["hosts"]):
            lines.append("  %3d  %s: %s" % (len(hosts), words, _host_list(hosts)))
    if report.get("open_problems"):
        lines.append("Open problems (%d):" % len(report["open_problems"]))
        for problem in report["open_problems"]:
            lines.append("  %s %s%s" % (problem["id"], problem["title"],
                                        " (%s)" % ", ".join(problem["hosts"][:5]) if problem["hosts"] else ""))
    audit_info = report["audit"]
    if audit_info["records"] is not None:
        lines.append("Audit log: %d records, hash chain %s" % (audit_info["records"],
                                                                "verified" if audit_info["verified"] else "BROKEN"))
    if report["elapsed_seconds"] is not None:
        lines.append("Elapsed: %.1fs" % report["elapsed_seconds"])
    step = report.get("next_step")
    if step:
        lines.append("Next: %s%s" % (step["action"], "\n  $ %s" % step["command"] if step.get("command") else ""))
    return "\n".join(lines)


GROUP_TONES = {"pending": "muted", "running": "info", "not_reached": "muted", "redistribute": "warn",
               "rollback": "warn", "rolled_back": "warn"}


def _group_tone(group, not_as_intended):
    if group["result"] != "ok":
        return GROUP_TONES.get(group["result"], "fail")
    return "warn" if set(group["hosts"]) & not_as_intended else "ok"


def _host_list(hosts, shown=6):
    return ", ".join(hosts) if len(hosts) <= shown else "%s ... %s" % (", ".join(hosts[:4]), hosts[-1])


def _html_host_list(hosts, shown=12):
    """Every host, folded behind the short form when there are many (no script: a <details> element)."""
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return html.tag("details", html.tag("summary", "%s (%d hosts)" % (_host_list(hosts, shown), len(hosts)))
                    + html.tag("div", ", ".join(hosts), class_="hosts"))


def change_words(host_change):
    """One host's overall change in words: ``hello-agent: 1.0.0 committed -> 1.1.0 committed (updated)``."""
    if host_change["unread"]:
        return "not read (see the snapshots)"
    if not host_change["changes"]:
        return "unchanged"
    return "; ".join("%s: %s -> %s (%s)" % (change["package"] or "image", change["before"], change["after"],
                                            change["kind"]) for change in host_change["changes"])


def _change_groups(hosts):
    groups = {}
    for host, host_change in hosts.items():
        groups.setdefault(change_words(host_change), []).append(host)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


# --- Markdown -----------------------------------------------------------------------------------------

def render_markdown(report):
    t, c = md.text, md.code
    blocks = [md.heading("Status report: change order %s" % t(report["change_order"]), 1),
              md.key_values([
                  ("Title", t(report["title"])),
                  ("Type", "%s (%s)" % (t(report["type"]), t(report["category"]))),
                  ("Requester", t(report["requester"])),
                  ("Requested completion", t(report["requested_completion"])),
                  ("Status", "**%s** %s" % (t(report["status"]), t(report["reason"]) if report["reason"] else "")),
                  ("Change order sha256", c(report["digest"])),
                  ("Artifact", "%s %s, sha256 %s, built by %s" % (
                      t(report["artifact"].get("name")), t(report["artifact"].get("version")),
                      c(report["artifact"].get("sha256")), t(report["artifact"].get("builder"))))
                  if report["artifact"] else None,
                  ("Generated", t(report.get("generated_at"))),
              ])]
    step = report.get("next_step")
    if step:
        blocks += [md.heading("Next step"), t(step["action"]) + (("\n\n" + c(step["command"])) if step.get("command")
                                                                 else "")]
    rows = []
    for item in report["steps"]:
        if item["kind"] == "stage":
            rows.append((t(item["id"]), "stage (%s)" % t(item["site"]), t(item["status"]), str(item["hosts_ok"]),
                         t(", ".join(item["hosts_failed"])) if item["hosts_failed"] else "-",
                         str(item.get("attempts") or 0), t(item.get("run_by")), t(item.get("finished_at"))))
        elif item["kind"] == "gate":
            rows.append((t(item["id"]), "gate", t(item["status"]), "", "", "", t(item.get("decided_by")),
                         t(item.get("decided_at"))))
        else:
            rows.append((t(item["id"]), t(item["kind"]), t(item["status"]), "", "", "", "", ""))
    blocks += [md.heading("Steps"), "Done: %s. Failed: %s. Pending: %s." % (
        t(", ".join(report["stages_done"])) if report["stages_done"] else "none",
        t(", ".join(report["stages_failed"])) if report["stages_failed"] else "none",
        t(", ".join(report["stages_pending"])) if report["stages_pending"] else "none"),
        md.table(["step", "kind", "status", "hosts ok", "failed", "attempts", "by", "when"], rows, numeric=(3, 5))]
    decided = [gate for gate in report["gates"] if gate.get("decided_by")]
    if decided:
        blocks += [md.heading("Gate decisions"),
                   md.table(["gate", "decision", "by", "at", "comment"],
                            [(t(g["id"]), t(g["status"]), t(g["decided_by"]), t(g["decided_at"]), t(g.get("comment")))
                             for g in decided])]
    blocks += [md.heading("Artifacts"),
               md.table(["kind", "stage", "name", "version", "sha256", "size", "built by"],
                        [(t(a["kind"]), t(a["stage"]), t(a["name"]), t(a["version"]), c(a["sha256"]),
                          t(a["size"]), t(a["builder"])) for a in report["artifacts"]], numeric=(5,))]
    if report["hosts_by_state"]:
        blocks += [md.heading("Hosts per state"),
                   md.table(["hosts", "state", "which"],
                            [(str(g["count"]), t(g["state"]), t(_host_list(g["hosts"]))) for g in report["hosts_by_state"]],
                            numeric=(0,))]
    changes = report.get("inventory_changes")
    if changes and changes["hosts"]:
        blocks += [md.heading("Audit: software inventory before and after"),
                   "%d snapshot(s) of the production targets, %s in all." % (changes["snapshots"],
                                                                              common.human_duration(changes["seconds"])),
                   md.table(["hosts", "before", "after", "change", "which"],
                            [(str(len(hosts)), t(before), t(after), t(words), t(_host_list(hosts)))
                             for (before, after, words), hosts in _before_after_groups(changes["hosts"])],
                            numeric=(0,))]
        if any(len(hosts) > 6 for _, hosts in _before_after_groups(changes["hosts"])):
            # The table folds long host lists: every host's change is listed here, so each one can be found.
            blocks += [md.heading("Every host", 3), md.table(
                ["host", "change"], [(t(host), t(change_words(data))) for host, data in sorted(changes["hosts"].items())])]
    blocks += [md.heading("Open problems")]
    if report.get("open_problems"):
        blocks.append(md.table(["id", "title", "hosts", "stage", "opened"],
                               [(t(p["id"]), t(p["title"]), t(", ".join(p["hosts"])), t(p["stage"]), t(p["opened_at"]))
                                for p in report["open_problems"]]))
    else:
        blocks.append("None.")
    audit_info = report["audit"]
    if audit_info["records"] is not None:
        blocks.append("Audit log: %d records, hash chain %s." % (audit_info["records"],
                                                                  "verified" if audit_info["verified"] else "**BROKEN**"))
    return md.document(*blocks)


def _before_after_groups(hosts):
    """[((before words, after words, change words), [hosts])], largest group first: 10,000 hosts stay readable."""
    groups = {}
    for host, data in hosts.items():
        groups.setdefault((_words(data["before"]), _words(data["after"]), change_words(data)), []).append(host)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def _words(summary):
    if not summary:
        return "-"
    if summary.get("error"):
        return "not read: %s" % summary["error"]
    parts = ["%s %s" % (name, words) for name, words in summary["packages"].items()]
    if summary.get("image"):
        parts.append("image %s" % summary["image"])
    return "; ".join(parts) or "nothing installed"


# --- HTML ---------------------------------------------------------------------------------------------

STATUS_TONES = {"succeeded": "ok", "approved": "ok", "done": "ok", "failed": "fail", "denied": "fail",
                "rolled_back": "fail", "cancelled": "muted", "interrupted": "warn", "waiting": "info", "pending": "info", "running": "info",
                "registered": "muted", "skipped": "muted", "not_reached": "muted", "not_built": "fail"}


def tone(status):
    return STATUS_TONES.get(status, "muted")


def render_html(report):
    h = html
    stages = [step for step in report["steps"] if step["kind"] == "stage"]
    done = len(report["stages_done"])
    intended = report.get("endpoints_as_intended") or {}
    hosts_total = intended.get("endpoints") if intended else len(report["endpoints"])
    hosts_ok = intended.get("ok") if intended else sum(1 for e in report["endpoints"].values() if e["result"] == "ok")
    not_as_intended = set(intended.get("failed") or [])
    body = [h.cards([("Status", report["status"], tone(report["status"])),
                     ("Stages done", "%d of %d" % (done, len(stages)), "ok" if done == len(stages) else "info"),
                     ("Endpoints as intended", "%d of %d" % (hosts_ok, hosts_total) if hosts_total else "-",
                      "ok" if hosts_total and hosts_ok == hosts_total else ("fail" if hosts_total else "muted")),
                     ("Open problems", len(report.get("open_problems") or []),
                      "fail" if report.get("open_problems") else "ok")])]
    artifact = report["artifact"]
    body.append(h.key_values([
        ("Title", report["title"]), ("Type", "%s (%s)" % (report["type"], report["category"])),
        ("Requester", report["requester"]), ("Requested completion", report["requested_completion"]),
        ("Status", h.join([h.badge(report["status"], tone(report["status"])), " ", report["reason"]])),
        ("Registered", report.get("created_at")), ("Finished", report.get("finished_at")),
        ("Change order sha256", h.code(report["digest"])),
        ("Artifact", h.join(["%s %s, sha256 " % (artifact.get("name"), artifact.get("version")),
                             h.code(artifact.get("sha256")), ", built by %s" % artifact.get("builder")])
         if artifact else None),
    ]))
    step = report.get("next_step")
    if step:
        body.append(h.section("Next step", h.para(step["action"]),
                              h.tag("pre", step["command"]) if step.get("command") else ""))
    rows = []
    for item in report["steps"]:
        if item["kind"] == "stage":
            total = item["hosts_total"] if item["hosts_total"] is not None else item["hosts_ok"]
            rows.append((item["id"], "stage · %s" % item["site"], h.badge(item["status"], tone(item["status"])),
                         "%d / %d" % (item["hosts_ok"], total) if item["status"] not in ("pending", "skipped") else "",
                         ", ".join(item["hosts_failed"]) or "", item.get("attempts") or 0, item.get("run_by") or "",
                         item.get("finished_at") or ""))
        elif item["kind"] == "gate":
            rows.append((item["id"], "gate", h.badge(item["status"], tone(item["status"])), "", "", "",
                         item.get("decided_by") or "", item.get("decided_at") or ""))
        else:
            rows.append((item["id"], item["kind"], h.badge(item["status"], tone(item["status"])), "", "", "", "", ""))
    body.append(h.section("Stages and gates", h.table(
        ["step", "kind", "status", "hosts ok", "failed", "attempts", "by", "when"], rows, numeric=(3, 5))))
    decided = [gate for gate in report["gates"] if gate.get("decided_by")]
    if decided:
        body.append(h.section("Gate decisions", h.table(
            ["gate", "decision", "by", "at", "comment"],
            [(g["id"], h.badge(g["status"], tone(g["status"])), g["decided_by"], g["decided_at"], g.get("comment") or "")
             for g in decided])))
    body.append(h.section("Artifacts", h.table(
        ["kind", "stage", "name", "version", "sha256", "size", "built by"],
        [(a["kind"], a["stage"] or "", a["name"] or "", a["version"] or "", h.code(a["sha256"]), a["size"] or "",
          a["builder"] or "") for a in report["artifacts"]], numeric=(5,))))
    if report["hosts_by_state"]:
        body.append(h.section("Hosts per state", h.stacked_bar(
            [(g["state"], g["count"], _group_tone(g, not_as_intended)) for g in report["hosts_by_state"]],
            title="endpoints per state"), h.table(
            ["hosts", "state", "which"], [(g["count"], g["state"], _html_host_list(g["hosts"]))
                                          for g in report["hosts_by_state"]], numeric=(0,))))
    changes = report.get("inventory_changes")
    if changes and changes["hosts"]:
        groups = _before_after_groups(changes["hosts"])
        body.append(h.section(
            "Audit: software inventory before and after",
            h.para("%d snapshot(s) of the production targets (esd.osp.software_info and the running image), %s in "
                   "all. Before = the host's first baseline in this change order, after = its latest snapshot; hosts with the "
                   "same change are grouped."
                   % (changes["snapshots"], common.human_duration(changes["seconds"])), note=True),
            h.table(["hosts", "before", "after", "change", "which"],
                    [(len(hosts), before, after, words, _html_host_list(hosts))
                     for (before, after, words), hosts in groups],
                    numeric=(0,), cell_classes=lambda r, col, groups=groups:
                    (("cell-fail" if "rolled back" in groups[r][0][2] or "reverted" in groups[r][0][2]
                      else "cell-ok" if groups[r][0][2] != "unchanged" else None) if col == 3 else None))))
    problems = report.get("open_problems") or []
    body.append(h.section("Open problems", h.table(
        ["id", "title", "hosts", "stage", "opened"],
        [(p["id"], p["title"], ", ".join(p["hosts"]), p["stage"] or "", p["opened_at"] or "") for p in problems])
        if problems else h.para("None.")))
    audit_info = report["audit"]
    if audit_info["records"] is not None:
        body.append(h.para("Audit log: %d records, hash chain %s." % (
            audit_info["records"], "verified" if audit_info["verified"] else "BROKEN"), note=True))
    return h.page("Status report: %s" % report["change_order"], h.join(body), subtitle=report["title"],
                  generated=report.get("generated_at"))
