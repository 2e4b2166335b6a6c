"""The status report of a change order, built from its ledger (state and audit log).

``status_report`` returns plain data (it is also the ``--json`` output of ``esd status``);
``render_text`` and ``render_markdown`` present it. A finished change order gets ``report/status.md``
and ``report/status.json`` in its ledger directory.
"""

from __future__ import annotations

import datetime
import json
import os

from esd import ledger as ledger_mod


def _seconds_between(start, end):
    if not start or not end:
        return None
    return round((datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds(), 3)


def status_report(state, entry=None):
    change_order = state["change_order"]
    steps = []
    artifact = None
    for planned in state["plan"]["steps"]:
        record = state["steps"][planned["id"]]
        item = {"id": planned["id"], "kind": planned["kind"], "title": planned["title"], "status": record["status"]}
        if planned["kind"] == "stage":
            hosts = record.get("hosts") or {}
            item.update(site=planned.get("site"), attempts=record.get("attempts", 0), run_by=record.get("run_by"),
                        started_at=record.get("started_at"), finished_at=record.get("finished_at"),
                        duration=record.get("duration"),
                        hosts_total=len(planned["limit_hosts"]) if planned.get("limit_hosts") is not None
                        else (len(planned["hosts"]) if planned.get("hosts") is not None else None),
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
                        comment=record.get("comment") or None, since=record.get("since"))
        steps.append(item)

    endpoints = {}
    for planned in state["plan"]["steps"]:
        if planned["kind"] != "stage" or planned.get("site") != "production":
            continue
        record = state["steps"][planned["id"]]
        if record.get("status") in ("pending", "skipped"):
            continue
        for host, software in (record.get("endpoints") or {}).items():
            endpoints[host] = {"stage": planned["id"], "result": "ok", **software}
        for host, failure in (record.get("failures") or {}).items():
            endpoints[host] = {"stage": planned["id"], "result": failure["status"], "phase": failure.get("phase"),
                               "message": failure.get("message")}
    audit_ok = None
    records = None
    if entry is not None:
        audit_ok, _, records = entry.verify_audit()
    return {
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
        "elapsed_seconds": _seconds_between(state.get("created_at"), state.get("finished_at")),
        "artifact": artifact,
        "steps": steps,
        "endpoints": dict(sorted(endpoints.items())),
        "audit": {"records": records, "verified": audit_ok},
        "ledger": entry.path if entry is not None else None,
    }


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
            lines.append("  note  %-20s %s" % (step["id"], _mark(step["status"])))
    if report["endpoints"]:
        by_state = {}
        for host, endpoint in report["endpoints"].items():
            if endpoint["result"] == "ok":
                key = "active %s, committed %s" % (endpoint.get("active"), endpoint.get("committed"))
            else:
                key = "%s at %s (%s)" % (endpoint["result"], endpoint["stage"], endpoint.get("phase") or "-")
            by_state.setdefault(key, []).append(host)
        lines.append("Endpoints (%d):" % len(report["endpoints"]))
        for key, hosts in sorted(by_state.items(), key=lambda item: -len(item[1])):
            shown = ", ".join(hosts) if len(hosts) <= 6 else "%s ... %s" % (", ".join(hosts[:4]), hosts[-1])
            lines.append("  %3d  %s: %s" % (len(hosts), key, shown))
    audit = report["audit"]
    if audit["records"] is not None:
        lines.append("Audit log: %d records, hash chain %s" % (audit["records"],
                                                                "verified" if audit["verified"] else "BROKEN"))
    if report["elapsed_seconds"] is not None:
        lines.append("Elapsed: %.1fs" % report["elapsed_seconds"])
    return "\n".join(lines)


def render_markdown(report):
    lines = ["# Status report: change order %s" % report["change_order"], "",
             "| | |", "|---|---|",
             "| Title | %s |" % report["title"],
             "| Type | %s (%s) |" % (report["type"], report["category"]),
             "| Requester | %s |" % report["requester"],
             "| Requested completion | %s |" % report["requested_completion"],
             "| Status | **%s** %s |" % (report["status"], report["reason"]),
             "| Change order sha256 | `%s` |" % report["digest"]]
    if report["artifact"]:
        artifact = report["artifact"]
        lines.append("| Artifact | %s %s, sha256 `%s`, built by %s |" % (
            artifact.get("name"), artifact.get("version"), artifact.get("sha256"), artifact.get("builder")))
    lines += ["", "## Steps", "", "| step | kind | status | hosts ok | failed | by | when |", "|---|---|---|---|---|---|---|"]
    for step in report["steps"]:
        if step["kind"] == "stage":
            lines.append("| %s | stage (%s) | %s | %s | %s | %s | %s |" % (
                step["id"], step["site"], step["status"], step["hosts_ok"],
                ", ".join(step["hosts_failed"]) or "-", step.get("run_by") or "-", step.get("finished_at") or "-"))
        elif step["kind"] == "gate":
            lines.append("| %s | gate | %s | | | %s | %s |" % (step["id"], step["status"], step.get("decided_by") or "-",
                                                             step.get("decided_at") or "-"))
        else:
            lines.append("| %s | notify | %s | | | | |" % (step["id"], step["status"]))
    if report["endpoints"]:
        lines += ["", "## Endpoints", "", "| host | result | stage | active | committed |", "|---|---|---|---|---|"]
        for host, endpoint in report["endpoints"].items():
            lines.append("| %s | %s | %s | %s | %s |" % (host, endpoint["result"], endpoint["stage"],
                                                         endpoint.get("active", "-"), endpoint.get("committed", "-")))
    audit = report["audit"]
    if audit["records"] is not None:
        lines += ["", "Audit log: %d records, hash chain %s." % (audit["records"],
                                                                  "verified" if audit["verified"] else "BROKEN")]
    return "\n".join(lines) + "\n"


def write_reports(state, entry):
    report = status_report(state, entry)
    directory = os.path.join(entry.path, "report")
    os.makedirs(directory, exist_ok=True)
    ledger_mod.atomic_write(os.path.join(directory, "status.md"), render_markdown(report))
    ledger_mod.atomic_write(os.path.join(directory, "status.json"), json.dumps(report, indent=2, default=str) + "\n")
    return directory
