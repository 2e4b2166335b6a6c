"""The distribution report of a rollout: per wave and per endpoint results, triage, timings, a chart.

Built from the ledger only (the plan, the step records, the triage and the problem records), written
as ``report/distribution.json``, ``report/distribution.md`` and ``report/distribution.html`` in the
change order's ledger directory. The HTML page is self-contained (inline CSS and an inline SVG chart of
the success rate per wave, no scripts, fonts or images from elsewhere), so it can be mailed, attached to
the change record or opened offline.
"""

from __future__ import annotations

import datetime
import html
import json
import os

from esd import ledger as ledger_mod
from esd import problems as problems_mod
from esd import triage

SCHEMA = "esd.osp/report/distribution/v1"
STATUS_LABELS = {"success": "has the change", "rolled_back": "rolled back", "failed": "failed",
                 "manual": "manual", "not_reached": "not reached"}
CLASS_LABELS = {"success": "success", "redistribute": "redistribute", "rollback": "rollback", "manual": "manual",
                "not_reached": "not reached"}


def _seconds(start, end):
    if not start or not end:
        return None
    return round((datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds(), 1)


def build(state, entry=None):
    """The report as plain data (also what distribution.json holds)."""
    rollout = state.get("rollout") or {}
    endpoints = rollout.get("endpoints") or {}
    stages = []
    for planned in state["plan"]["steps"]:
        role = planned.get("rollout_role")
        if role not in ("beta", "check", "wave"):
            continue
        record = state["steps"][planned["id"]]
        hosts = record.get("hosts") or {}
        total = len(planned.get("limit_hosts") or [])
        ok = len(hosts.get("ok", []))
        failed = sorted(set(hosts.get("failed", [])) | set(hosts.get("never_ran", [])))
        ran = record.get("status") not in ("pending", "halted", "skipped")
        stages.append({
            "id": planned["id"], "role": role, "wave": planned.get("wave"), "title": planned["title"],
            "status": record.get("status"), "reason": record.get("reason") or None, "hosts": total,
            "ok": ok if ran else 0, "failed": len(failed) if ran else 0, "failed_hosts": failed if ran else [],
            "changed": len(hosts.get("changed", [])) if ran else 0,
            "success_percent": round(100.0 * ok / total, 1) if ran and total else None,
            "failure_budget_percent": planned.get("failure_budget_percent") if role == "wave" else None,
            "attempts": record.get("attempts", 0), "started_at": record.get("started_at"),
            "finished_at": record.get("finished_at"), "duration_seconds": record.get("duration"),
        })
    gate = state["steps"].get("go_no_go")
    go_no_go = None
    if gate and gate.get("status") in ("approved", "denied"):
        go_no_go = {"decision": "go" if gate["status"] == "approved" else "no-go", "decided_by": gate.get("decided_by"),
                    "decided_at": gate.get("decided_at"), "comment": gate.get("comment")}
    initial = {}
    initial_path = os.path.join(entry.path, "triage", "initial", "triage.json") if entry else None
    if initial_path and os.path.isfile(initial_path):
        with open(initial_path, encoding="utf-8") as handle:
            initial = json.load(handle)
    final = triage.summary(endpoints)
    records = problems_mod.read(entry) if entry else {}
    rows = []
    for host, endpoint in sorted(endpoints.items()):
        first = (initial.get("endpoints") or {}).get(host) or endpoint
        rows.append({"host": host, "stage": first.get("stage"), "wave": first.get("wave"),
                     "initial_class": first.get("class"), "initial_reason": first.get("reason"),
                     "class": endpoint["class"], "status": triage.final_status(endpoint), "reason": endpoint["reason"],
                     "phase": endpoint.get("phase"), "rc": endpoint.get("rc"), "attempts": endpoint.get("attempts", 0),
                     "notes": endpoint.get("notes") or [],
                     "problem": (records.get(problems_mod.record_id(state["change_order"]["id"], host)) or {}).get(
                         "status")})
    starts = [s["started_at"] for s in stages if s["started_at"]]
    ends = [s["finished_at"] for s in stages if s["finished_at"]]
    verdict = rollout.get("verdict")
    return {
        "schema": SCHEMA,
        "format": "esd.osp/distribution-report/v1",     # the name before reports carried `schema`; kept for readers
        "change_order": state["change_order"]["id"],
        "title": state["change_order"]["title"],
        "type": state["change_order"]["type"],
        "status": state.get("status"),
        "verdict": verdict,
        "halted": rollout.get("halted"),
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends else None,
        "elapsed_seconds": _seconds(min(starts), max(ends)) if starts and ends else None,
        "stages": stages,
        "go_no_go": go_no_go,
        "triage": {"initial": {"counts": initial.get("counts") or rollout.get("initial") or {},
                               "classes": initial.get("classes") or {}},
                   "final": final},
        "backout_attempts": rollout.get("backout_attempts") or [],
        "endpoints": rows,
        "problems": sorted(records.values(), key=lambda record: record["id"]),
    }


# --- Markdown -----------------------------------------------------------------------------------------

def _md(text):
    return str(text if text is not None else "-").replace("|", "\\|").replace("\n", " ")


def _verdict_line(report):
    verdict = report["verdict"]
    if not verdict:
        return "not decided yet (status %s)" % report["status"]
    from esd.rollout import describe

    return describe(verdict).splitlines()[0]


def render_markdown(report):
    lines = ["# Distribution report: change order %s" % report["change_order"], "",
             "%s (%s)" % (report["title"], report["type"]), "",
             "**Verdict:** %s" % _verdict_line(report), ""]
    if report["halted"]:
        lines += ["**Halted** at %s: %s" % (report["halted"]["step"], report["halted"]["reason"]), ""]
    lines += ["Started %s, finished %s, %s s." % (report["started_at"] or "-", report["finished_at"] or "-",
                                                   report["elapsed_seconds"] if report["elapsed_seconds"] is not None
                                                   else "-"), ""]
    lines += ["## Waves", "", "| stage | role | hosts | ok | failed | success | budget | status | duration s |",
              "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for stage in report["stages"]:
        lines.append("| %s | %s | %d | %d | %d | %s | %s | %s | %s |" % (
            stage["id"], stage["role"] + (" %d" % stage["wave"] if stage["wave"] else ""), stage["hosts"], stage["ok"],
            stage["failed"], "%.1f%%" % stage["success_percent"] if stage["success_percent"] is not None else "-",
            "%d%%" % stage["failure_budget_percent"] if stage["failure_budget_percent"] is not None else "-",
            _md(stage["status"]), _md(stage["duration_seconds"])))
    lines += ["", "### Success per wave", "", "```"]
    for stage in report["stages"]:
        if stage["role"] in ("beta", "wave") and stage["success_percent"] is not None:
            bar = "#" * int(round(stage["success_percent"] / 5))
            lines.append("%-22s %-20s %5.1f%%" % (stage["id"], bar, stage["success_percent"]))
    lines += ["```", ""]
    if report["go_no_go"]:
        gate = report["go_no_go"]
        lines += ["## Go/no-go", "", "**%s** by %s at %s: %s" % (gate["decision"].upper(), gate["decided_by"],
                                                                  gate["decided_at"], gate["comment"]), ""]
    lines += ["## Triage", "", "| class | after the waves | final |", "|---|---:|---:|"]
    for klass in triage.CLASSES:
        lines.append("| %s | %s | %s |" % (CLASS_LABELS[klass], report["triage"]["initial"]["counts"].get(klass, 0),
                                           report["triage"]["final"]["counts"].get(klass, 0)))
    for label, key in (("Rollback targets", "rollback"), ("Redistribute targets", "redistribute"),
                       ("Manual", "manual")):
        hosts = report["triage"]["initial"]["classes"].get(key) or []
        if hosts:
            lines += ["", "%s after the waves (%d): %s" % (label, len(hosts), ", ".join(hosts))]
    exceptions = (report["verdict"] or {}).get("exceptions") or []
    if exceptions:
        lines += ["", "## Exceptions", "", "| host | status | reason |", "|---|---|---|"]
        for exception in exceptions:
            lines.append("| %s | %s | %s |" % (exception["host"], STATUS_LABELS.get(exception["status"],
                                                                                     exception["status"]),
                                                _md(exception["reason"])))
    if report["backout_attempts"]:
        lines += ["", "## Backout", "", "| attempt | roll back | rolled back | redistribute to | redistributed | at |",
                  "|---:|---|---|---|---|---|"]
        for attempt in report["backout_attempts"]:
            lines.append("| %d | %s | %s | %s | %s | %s |" % (
                attempt["attempt"], ", ".join(attempt["rollback"]) or "-", ", ".join(attempt.get("rolled_back", [])) or "-",
                ", ".join(attempt["redistribute"]) or "-", ", ".join(attempt.get("redistributed", [])) or "-",
                attempt["at"]))
    lines += ["", "## Endpoints", "", "| host | stage | first triage | final | reason | problem record |",
              "|---|---|---|---|---|---|"]
    for row in report["endpoints"]:
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            row["host"], _md(row["stage"]), CLASS_LABELS.get(row["initial_class"], row["initial_class"]),
            STATUS_LABELS.get(row["status"], row["status"]),
            _md(row["reason"] if row["status"] != "success" or row["initial_class"] != "success"
                else "-"), _md(row["problem"])))
    if report["problems"]:
        lines += ["", "## Problem records", "", "| id | host | status | class | reason | resolution |",
                  "|---|---|---|---|---|---|"]
        for record in report["problems"]:
            lines.append("| %s | %s | %s | %s | %s | %s |" % (record["id"], record["host"], record["status"],
                                                              record["class"], _md(record["reason"]),
                                                              _md(record.get("resolution"))))
    return "\n".join(lines) + "\n"


# --- HTML -----------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 16px}.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.v-complete{background:#dafbe1;border:1px solid #4ac26b}.v-complete_with_exceptions{background:#fff8c5;border:1px solid #d4a72c}
.v-rolled_back,.v-none{background:#ffebe9;border:1px solid #ff8182}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.n{text-align:right}.success{color:#1a7f37}.failed,.manual{color:#cf222e}.rolled_back{color:#9a6700}
.not_reached{color:#57606a}.hosts{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
"""


def _e(value):
    return html.escape(str(value if value is not None else "-"))


def chart_svg(stages):
    """An SVG bar chart: success % per beta/wave stage, with the failure budget's threshold marked."""
    bars = [stage for stage in stages if stage["role"] in ("beta", "wave")]
    width, height, left, bottom, top = max(320, 90 * len(bars) + 80), 240, 48, 40, 16
    plot = height - bottom - top
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" id="success-chart" role="img" width="%d" height="%d" '
             'viewBox="0 0 %d %d"><title>Success per wave</title>' % (width, height, width, height)]
    for percent in (0, 25, 50, 75, 100):
        y = top + plot - plot * percent / 100.0
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d0d7de" stroke-width="1"/>'
                     '<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#57606a">%d%%</text>'
                     % (left, y, width - 10, y, left - 6, y + 4, percent))
    for index, stage in enumerate(bars):
        x = left + 20 + index * 90
        percent = stage["success_percent"]
        label = "beta" if stage["role"] == "beta" else "wave %d" % stage["wave"]
        if percent is None:
            parts.append('<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#57606a">not run</text>'
                         % (x + 25, top + plot - 6))
        else:
            bar = plot * percent / 100.0
            colour = "#2da44e" if stage["failed"] == 0 else ("#bf8700" if stage["status"] != "failed" else "#cf222e")
            parts.append('<rect class="bar" x="%d" y="%.1f" width="50" height="%.1f" fill="%s"><title>%s: %d of %d ok'
                         '</title></rect><text x="%d" y="%.1f" font-size="12" text-anchor="middle">%.0f%%</text>'
                         % (x, top + plot - bar, bar, colour, _e(stage["id"]), stage["ok"], stage["hosts"], x + 25,
                            top + plot - bar - 4, percent))
            if stage["failure_budget_percent"] is not None:
                y = top + plot - plot * (100 - stage["failure_budget_percent"]) / 100.0
                parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cf222e" stroke-dasharray="4 2"/>'
                             % (x - 4, y, x + 54, y))
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="middle">%s</text>'
                     '<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#57606a">%d hosts</text>'
                     % (x + 25, height - bottom + 16, label, x + 25, height - bottom + 30, stage["hosts"]))
    parts.append("</svg>")
    return "".join(parts)


def render_html(report):
    verdict = report["verdict"] or {}
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>Distribution report %s</title><style>%s</style></head><body>" % (_e(report["change_order"]), CSS),
           "<h1>Distribution report: %s</h1>" % _e(report["change_order"]),
           '<p class="sub">%s &middot; %s &middot; started %s, finished %s (%s s)</p>' % (
               _e(report["title"]), _e(report["type"]), _e(report["started_at"]), _e(report["finished_at"]),
               _e(report["elapsed_seconds"])),
           '<div class="verdict v-%s" id="verdict">Verdict: %s</div>' % (_e(verdict.get("result", "none")),
                                                                        _e(_verdict_line(report)))]
    if report["halted"]:
        out.append("<p><strong>Halted</strong> at %s: %s</p>" % (_e(report["halted"]["step"]),
                                                                 _e(report["halted"]["reason"])))
    out.append("<h2>Success per wave</h2>" + chart_svg(report["stages"]))
    out.append('<h2>Waves</h2><table id="waves"><tr><th>stage</th><th>role</th><th>hosts</th><th>ok</th>'
               "<th>failed</th><th>success</th><th>budget</th><th>status</th><th>started</th><th>duration s</th>"
               "<th>failed hosts</th></tr>")
    for stage in report["stages"]:
        out.append('<tr><td>%s</td><td>%s</td><td class="n">%d</td><td class="n">%d</td><td class="n">%d</td>'
                   '<td class="n">%s</td><td class="n">%s</td><td>%s</td><td>%s</td><td class="n">%s</td>'
                   '<td class="hosts">%s</td></tr>' % (
                       _e(stage["id"]), _e(stage["role"] + (" %d" % stage["wave"] if stage["wave"] else "")),
                       stage["hosts"], stage["ok"], stage["failed"],
                       "%.1f%%" % stage["success_percent"] if stage["success_percent"] is not None else "-",
                       "%d%%" % stage["failure_budget_percent"] if stage["failure_budget_percent"] is not None
                       else "-", _e(stage["status"]), _e(stage["started_at"]), _e(stage["duration_seconds"]),
                       _e(", ".join(stage["failed_hosts"][:20]) + (" ..." if len(stage["failed_hosts"]) > 20 else ""))))
    out.append("</table>")
    if report["go_no_go"]:
        gate = report["go_no_go"]
        out.append('<h2>Go/no-go</h2><p id="go-no-go"><strong>%s</strong> by %s at %s: %s</p>' % (
            _e(gate["decision"].upper()), _e(gate["decided_by"]), _e(gate["decided_at"]), _e(gate["comment"])))
    out.append('<h2>Triage</h2><table id="triage"><tr><th>class</th><th>after the waves</th><th>final</th>'
               "<th>hosts after the waves</th></tr>")
    for klass in triage.CLASSES:
        hosts = report["triage"]["initial"]["classes"].get(klass) or []
        shown = hosts if klass != "success" else hosts[:10]
        out.append('<tr><td class="%s">%s</td><td class="n">%s</td><td class="n">%s</td><td class="hosts">%s%s</td>'
                   "</tr>" % (klass, _e(CLASS_LABELS[klass]), report["triage"]["initial"]["counts"].get(klass, 0),
                              report["triage"]["final"]["counts"].get(klass, 0), _e(", ".join(shown)),
                              " ..." if len(shown) < len(hosts) else ""))
    out.append("</table>")
    exceptions = verdict.get("exceptions") or []
    if exceptions:
        out.append('<h2>Exceptions</h2><table id="exceptions"><tr><th>host</th><th>status</th><th>reason</th></tr>')
        for exception in exceptions:
            out.append('<tr><td>%s</td><td class="%s">%s</td><td>%s</td></tr>' % (
                _e(exception["host"]), _e(exception["status"]), _e(STATUS_LABELS.get(exception["status"],
                                                                                     exception["status"])),
                _e(exception["reason"])))
        out.append("</table>")
    if report["backout_attempts"]:
        out.append('<h2>Backout</h2><table id="backout"><tr><th>attempt</th><th>roll back</th><th>rolled back</th>'
                   "<th>redistribute to</th><th>redistributed</th><th>at</th></tr>")
        for attempt in report["backout_attempts"]:
            out.append('<tr><td class="n">%d</td><td class="hosts">%s</td><td class="hosts success">%s</td>'
                       '<td class="hosts">%s</td><td class="hosts success">%s</td><td>%s</td></tr>'
                       % (attempt["attempt"], _e(", ".join(attempt["rollback"]) or "-"),
                          _e(", ".join(attempt.get("rolled_back", [])) or "-"),
                          _e(", ".join(attempt["redistribute"]) or "-"),
                          _e(", ".join(attempt.get("redistributed", [])) or "-"), _e(attempt["at"])))
        out.append("</table>")
    out.append('<h2>Endpoints</h2><table id="endpoints"><tr><th>host</th><th>stage</th><th>first triage</th>'
               "<th>final</th><th>reason</th><th>phase</th><th>rc</th><th>backout attempts</th><th>problem record</th>"
               "</tr>")
    for row in report["endpoints"]:
        reason = row["reason"] if row["status"] != "success" or row["initial_class"] != "success" else ""
        out.append('<tr><td>%s</td><td>%s</td><td class="%s">%s</td><td class="%s">%s</td><td>%s</td><td>%s</td>'
                   '<td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>' % (
                       _e(row["host"]), _e(row["stage"]), _e(row["initial_class"]),
                       _e(CLASS_LABELS.get(row["initial_class"], row["initial_class"])), _e(row["status"]),
                       _e(STATUS_LABELS.get(row["status"], row["status"])), _e(reason or "-"), _e(row["phase"]),
                       _e(row["rc"]), row["attempts"], _e(row["problem"])))
    out.append("</table>")
    if report["problems"]:
        out.append('<h2>Problem records</h2><table id="problems"><tr><th>id</th><th>host</th><th>status</th>'
                   "<th>class</th><th>reason</th><th>resolution</th></tr>")
        for record in report["problems"]:
            out.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                _e(record["id"]), _e(record["host"]), _e(record["status"]), _e(record["class"]),
                _e(record["reason"]), _e(record.get("resolution"))))
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write(entry, state):
    """Write report/distribution.{json,md,html}; returns {format: path}."""
    report = build(state, entry)
    directory = os.path.join(entry.path, "report")
    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, "distribution.json"),
             "markdown": os.path.join(directory, "distribution.md"),
             "html": os.path.join(directory, "distribution.html")}
    ledger_mod.atomic_write(paths["json"], json.dumps(report, indent=1, default=str) + "\n")
    ledger_mod.atomic_write(paths["markdown"], render_markdown(report))
    ledger_mod.atomic_write(paths["html"], render_html(report))
    return paths
