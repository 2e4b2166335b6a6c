"""Measurements across all change orders of a ledger (``esd metrics``), and the journal of rejected submissions.

The seeds' measures (ESD change request 2.2, building site 3.2, OSP building site 6.2), each as
numerator / denominator / percent over the change orders received in the chosen period and of the chosen
types; every per-change-order fact comes from :func:`esd.reports.evaluation.facts`, where the definitions
live:

==================================  =======================================================================
measure                             counted
==================================  =======================================================================
finished_in_requested_time          succeeded before due, of those finished (esd.states.FINAL) or past due
packages_built_in_requested_time    ESD builds handed over before due, of ESD change orders with a build
images_built_in_requested_time      OSP builds handed over before due, of OSP change orders with a build
passed_test_without_rework          tested without a failed test attempt or denied sign-off, of those tested
sent_back_for_missing_information   requests with a rejected submission, of all requests
rollback_rate                       change orders with a failed change rolled back on an endpoint, of those
                                    that ran production stages on endpoints
==================================  =======================================================================

The rollback rate measures failed deployments that were rolled back (the package's auto-revert of a failed
activation, or the rollout's backout), not rollbacks a change order asked for: a rollback_update or
rollback_image rolls endpoints back because that is its change (``DEFINITIONS``, printed with every format).

plus the mean and median lead time (received → succeeded) and totals (rework, endpoints rolled back,
requester satisfaction from ``esd close``).

**Submissions.** ``esd run FILE`` with a change order that fails validation (schema, or targets that do
not resolve) is a request *sent back for missing information*: it is appended to the ledger-level journal
``<ledger>/submissions.jsonl`` (hash-chained like the audit logs; one record per distinct file content).
A request is identified by its change-order id when the file has one, else by the file's sha256; it
counts once however often it was sent back, and a request that was sent back and registered later is
one request, sent back. ``esd validate`` is a dry check and records nothing.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import hashlib
import io
import json
import os
import statistics

import yaml

from esd import ledger as ledger_mod
from esd.errors import UsageError, ValidationError
from esd.reports import common, evaluation, html, markdown as md

SCHEMA = "esd.osp/report/metrics/v1"
JOURNAL = "submissions.jsonl"

MEASURES = (
    ("finished_in_requested_time", "Requests finished in the requested time"),
    ("packages_built_in_requested_time", "Packages built in the requested time"),
    ("images_built_in_requested_time", "Images built in the requested time"),
    ("passed_test_without_rework", "Passed test without rework"),
    ("sent_back_for_missing_information", "Sent back for missing information (failed validation)"),
    ("rollback_rate", "Change orders with a failed change rolled back"),
)

# What each measure counts, in the output of every format (the full definitions: esd.reports.evaluation).
DEFINITIONS = {
    "finished_in_requested_time": "succeeded before the end of the requested completion day (UTC), of the change "
                                  "orders finished (succeeded, cancelled, denied, rolled_back) or past that day",
    "packages_built_in_requested_time": "package and media builds handed over before due, of the change orders "
                                        "with such a build",
    "images_built_in_requested_time": "OS image and image media builds handed over before due, of the change "
                                      "orders with such a build",
    "passed_test_without_rework": "test stages passed with no failed test attempt and no denied sign-off, of the "
                                  "change orders tested",
    "sent_back_for_missing_information": "requests esd run refused as invalid (once per request), of all requests",
    "rollback_rate": "change orders in which a failed change was rolled back on an endpoint (the package's "
                     "auto-revert of a failed activation, or the rollout's backout), of those that ran production "
                     "stages on endpoints; a rollback the change order asked for (rollback_update, rollback_image) is "
                     "the change itself and does not count",
}

SHORT_TITLES = {"finished_in_requested_time": "Finished in time", "packages_built_in_requested_time":
                "Packages built in time", "images_built_in_requested_time": "Images built in time",
                "passed_test_without_rework": "Passed test without rework",
                "sent_back_for_missing_information": "Sent back (failed validation)", "rollback_rate": "Rollback rate"}


# --- the journal of rejected submissions -------------------------------------------------------------

def journal_path(ledger):
    return os.path.join(ledger.root, JOURNAL)


def _peek(path):
    """(id, type) read from a change-order file as far as it parses; either may be None."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
    ident = metadata.get("id") if isinstance(metadata.get("id"), str) and ledger_mod.ID_RE.match(metadata["id"]) \
        else None
    kind = spec.get("type") if isinstance(spec.get("type"), str) else None
    return ident, kind


def record_rejection(ledger, reference, error, actor):
    """Journal a change-order file that ``esd run`` refused as invalid; return the record or None.

    Not journalled: references that are not files (ids), a change order that is already registered (an
    edited registered change order is refused for another reason), and a file content already journalled.
    """
    if not os.path.isfile(reference):
        return None
    try:
        with open(reference, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None
    ident, kind = _peek(reference)
    if ident and ledger.exists(ident):
        return None
    os.makedirs(ledger.root, exist_ok=True)
    path = journal_path(ledger)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0)
            records = [json.loads(line) for line in handle if line.strip()]
            if any(record.get("sha256") == digest for record in records):
                return None
            last = records[-1] if records else None
            problems = [str(problem) for problem in getattr(error, "problems", [])] or [str(error)]
            record = {"seq": (last["seq"] + 1) if last else 1, "time": ledger_mod.timestamp(), "event": "rejected",
                      "change_order": ident, "type": kind, "file": os.path.abspath(reference), "sha256": digest,
                      "actor": actor, "problems": problems[:50], "prev": last["hash"] if last else ledger_mod.GENESIS}
            record["hash"] = ledger_mod.record_hash(record)
            handle.seek(0, os.SEEK_END)
            handle.write(ledger_mod.canonical(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            return record
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def rejections_recorded(ledger, reference, actor):
    """Journal a ValidationError raised inside the block (``esd run`` of a new change order), then re-raise it."""
    try:
        yield
    except ValidationError as exc:
        try:
            record_rejection(ledger, reference, exc, actor)
        except OSError:
            pass        # the measurement must not hide the validation error itself
        raise


def read_journal(ledger):
    path = journal_path(ledger)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def verify_journal(ledger):
    """(ok, problems) of the journal's hash chain."""
    problems = []
    previous = ledger_mod.GENESIS
    for index, record in enumerate(read_journal(ledger), start=1):
        if record.get("seq") != index:
            problems.append("record %d: sequence number is %s" % (index, record.get("seq")))
        if record.get("prev") != previous:
            problems.append("record %s: prev does not match the record before it" % record.get("seq"))
        if record.get("hash") != ledger_mod.record_hash(record):
            problems.append("record %s: content does not match its hash" % record.get("seq"))
        previous = record.get("hash")
    return not problems, problems


# --- computing the measures ------------------------------------------------------------------------------

def parse_bound(value, end=False):
    """A period bound: YYYY-MM-DD (``end``: the whole day is included) or an ISO timestamp; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=common.UTC)
    text = str(value)
    try:
        if len(text) == 10:
            day = datetime.date.fromisoformat(text)
            if end:
                day += datetime.timedelta(days=1)
            return datetime.datetime.combine(day, datetime.time(), tzinfo=common.UTC)
        moment = common.parse_time(text)
        if moment is None:
            raise ValueError(text)
        return moment
    except ValueError:
        raise UsageError("%r is not a date (YYYY-MM-DD) or an ISO 8601 timestamp" % text) from None


def _measure(ident, title, numerator, denominator, excluded=0):
    return {"id": ident, "title": title, "numerator": numerator, "denominator": denominator,
            "percent": common.percent(numerator, denominator), "not_yet_counted": excluded}


def compute(ledger, since=None, until=None, types=(), categories=(), now=None):
    """The measurements over the change orders of ``ledger`` received in [since, until) of the given types."""
    from esd import catalogue

    now = now or datetime.datetime.now(datetime.timezone.utc)
    start, end = parse_bound(since), parse_bound(until, end=True)
    types, categories = tuple(types or ()), tuple(c.upper() for c in categories or ())

    def wanted(received, kind, category):
        moment = common.parse_time(received)
        if start and (moment is None or moment < start):
            return False
        if end and (moment is None or moment >= end):
            return False
        if types and kind not in types:
            return False
        if categories and category not in categories:
            return False
        return True

    all_facts = []
    unreadable = []
    for change_order_id in ledger.ids():
        entry = ledger.entry(change_order_id)
        try:
            state = entry.read_state()
            all_facts.append(evaluation.facts(entry, state, now=now))
        except Exception as exc:  # noqa: BLE001 - one broken entry must not hide every other measurement
            unreadable.append({"change_order": change_order_id, "error": "%s: %s" % (type(exc).__name__, exc)})

    def category_of(kind):
        return catalogue.REQUEST_TYPES[kind].category if kind in catalogue.REQUEST_TYPES else None

    first_rejection = {}
    rejections = 0          # every rejected submission in the filters (one request may be rejected twice)
    for record in read_journal(ledger):
        key = record.get("change_order") or "sha256:%s" % record["sha256"]
        first_rejection.setdefault(key, record)
        category = category_of(record.get("type"))
        if not ((types or categories) and category is None) and wanted(record["time"], record.get("type"), category):
            rejections += 1
    registered = {facts["change_order"]: facts for facts in all_facts}

    facts_list = []
    for facts in all_facts:
        rejected = first_rejection.get(facts["change_order"])
        received = min(filter(None, [facts["received_at"], rejected["time"] if rejected else None]))
        if wanted(received, facts["type"], facts["category"]):
            facts_list.append(facts)
    requests, sent_back = 0, 0
    for facts in facts_list:
        requests += 1
        if facts["change_order"] in first_rejection:
            sent_back += 1
    for key, record in first_rejection.items():
        if key in registered:
            continue
        kind = record.get("type")
        category = category_of(kind)
        if (types or categories) and category is None:
            continue
        if wanted(record["time"], kind, category):
            requests += 1
            sent_back += 1

    on_time = [f["on_time"] for f in facts_list]
    package_builds = [f["build"]["on_time"] for f in facts_list if f["build"] and f["build"]["kind"] == "package"]
    image_builds = [f["build"]["on_time"] for f in facts_list if f["build"] and f["build"]["kind"] == "image"]
    tested = [f["test"]["passed_without_rework"] for f in facts_list if f["test"]["tested"]]
    production = [f for f in facts_list if f["production"]["stages_run"] and f["production"]["endpoints"]]
    lead_times = [f["lead_time_seconds"] for f in facts_list if f["lead_time_seconds"] is not None]
    satisfaction = [f["closure"]["satisfaction"] for f in facts_list if f.get("closure")
                    and f["closure"].get("satisfaction")]

    def counted(values):
        known = [value for value in values if value is not None]
        return sum(1 for value in known if value), len(known), len(values) - len(known)

    titles = dict(MEASURES)
    measures = {}
    for ident, values in (("finished_in_requested_time", on_time),
                          ("packages_built_in_requested_time", package_builds),
                          ("images_built_in_requested_time", image_builds),
                          ("passed_test_without_rework", tested)):
        numerator, denominator, excluded = counted(values)
        measures[ident] = _measure(ident, titles[ident], numerator, denominator, excluded)
    measures["sent_back_for_missing_information"] = _measure(
        "sent_back_for_missing_information", titles["sent_back_for_missing_information"], sent_back, requests)
    measures["rollback_rate"] = _measure("rollback_rate", titles["rollback_rate"],
                                         sum(1 for f in production if f["production"]["rollbacks_after_failure"]),
                                         len(production))
    by_status = {}
    for facts in facts_list:
        by_status[facts["status"]] = by_status.get(facts["status"], 0) + 1
    return {
        "schema": SCHEMA,
        "generated_at": ledger_mod.timestamp(),
        "at": now.isoformat(),
        "ledger": ledger.root,
        "filters": {"since": since and str(since), "until": until and str(until), "types": list(types),
                    "categories": list(categories)},
        "change_orders": len(facts_list),
        "requests": requests,
        "by_status": dict(sorted(by_status.items())),
        "measures": measures,
        "definitions": dict(DEFINITIONS),
        "lead_time": {"count": len(lead_times),
                      "mean_seconds": round(statistics.fmean(lead_times), 3) if lead_times else None,
                      "median_seconds": round(statistics.median(lead_times), 3) if lead_times else None},
        "totals": {"rework": sum(f["test"]["rework"] for f in facts_list),
                   "endpoints_rolled_back": sum(f["production"]["rollbacks"] for f in facts_list),
                   "endpoints_rolled_back_after_failure": sum(f["production"]["rollbacks_after_failure"]
                                                              for f in facts_list),
                   "rejected_submissions": rejections,
                   "mean_satisfaction": round(statistics.fmean(satisfaction), 2) if satisfaction else None,
                   "satisfaction_answers": len(satisfaction)},
        "rows": [_row(f) for f in sorted(facts_list, key=lambda f: f["received_at"] or "")],
        "unreadable": unreadable,
    }


def _row(facts):
    return {"change_order": facts["change_order"], "type": facts["type"], "category": facts["category"],
            "status": facts["status"], "received_at": facts["received_at"], "finished_at": facts["finished_at"],
            "requested_completion": facts["requested_completion"], "on_time": facts["on_time"],
            "lead_time_seconds": facts["lead_time_seconds"],
            "build_on_time": facts["build"]["on_time"] if facts["build"] else None,
            "tested": facts["test"]["tested"], "rework": facts["test"]["rework"],
            "passed_without_rework": facts["test"]["passed_without_rework"],
            "endpoints": facts["production"]["endpoints"], "success_percent": facts["production"]["success_percent"],
            "rollbacks": facts["production"]["rollbacks"],
            "rollbacks_after_failure": facts["production"]["rollbacks_after_failure"]}


# --- presentation ----------------------------------------------------------------------------------------

def _percent_text(measure):
    if measure["percent"] is None:
        return "n/a (nothing to measure)"
    return "%.1f%% (%d of %d)" % (measure["percent"], measure["numerator"], measure["denominator"])


def _filters_text(data):
    filters = data["filters"]
    parts = []
    if filters["since"] or filters["until"]:
        parts.append("received %s .. %s" % (filters["since"] or "start", filters["until"] or "now"))
    if filters["types"]:
        parts.append("types %s" % ", ".join(filters["types"]))
    if filters["categories"]:
        parts.append("categories %s" % ", ".join(filters["categories"]))
    return "; ".join(parts) or "all change orders"


def render_text(data):
    lines = ["Measurements over %d change order(s), %d request(s) (%s)" % (data["change_orders"], data["requests"],
                                                                         _filters_text(data)),
             "ledger %s" % data["ledger"], ""]
    width = max(len(title) for _, title in MEASURES)
    for ident, title in MEASURES:
        measure = data["measures"][ident]
        lines.append("  %-*s  %s %s" % (width, title, md.bar(measure["percent"], 100, 20) or " " * 20,
                                        _percent_text(measure)))
    lead = data["lead_time"]
    lines += ["", "  %-*s  %s (median %s, %d succeeded)" % (
        width, "Mean lead time", common.human_duration(lead["mean_seconds"]),
        common.human_duration(lead["median_seconds"]), lead["count"])]
    totals = data["totals"]
    satisfaction = ""
    if totals["mean_satisfaction"] is not None:
        satisfaction = ", satisfaction %.2f of 5 (%d answers)" % (
            totals["mean_satisfaction"], totals["satisfaction_answers"])
    lines.append("  %-*s  %d rework, %d endpoint(s) rolled back (%d after a failed change), %d rejected "
                 "submission(s)%s" % (width, "Totals", totals["rework"], totals["endpoints_rolled_back"],
                                      totals["endpoints_rolled_back_after_failure"], totals["rejected_submissions"],
                                      satisfaction))
    if data["by_status"]:
        lines.append("  %-*s  %s" % (width, "By status", ", ".join("%s %d" % item for item in data["by_status"].items())))
    if data["unreadable"]:
        lines.append("  unreadable entries: %s" % ", ".join(item["change_order"] for item in data["unreadable"]))
    lines += ["", "Definitions:"] + ["  %s: %s" % (SHORT_TITLES[ident], data["definitions"][ident])
                                     for ident, _ in MEASURES]
    return "\n".join(lines) + "\n"


def render_csv(data):
    """``measure,title,numerator,denominator,value,unit`` rows: the percentages, then lead time and totals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["measure", "title", "numerator", "denominator", "value", "unit"])
    for ident, title in MEASURES:
        measure = data["measures"][ident]
        writer.writerow([ident, title, measure["numerator"], measure["denominator"],
                         "" if measure["percent"] is None else measure["percent"], "percent"])
    lead = data["lead_time"]
    writer.writerow(["mean_lead_time", "Mean lead time (received to succeeded)", "", lead["count"],
                     "" if lead["mean_seconds"] is None else lead["mean_seconds"], "seconds"])
    writer.writerow(["median_lead_time", "Median lead time (received to succeeded)", "", lead["count"],
                     "" if lead["median_seconds"] is None else lead["median_seconds"], "seconds"])
    totals = data["totals"]
    for key, title in (("rework", "Rework (returns to the building site)"),
                       ("endpoints_rolled_back", "Endpoints rolled back"),
                       ("endpoints_rolled_back_after_failure", "Endpoints rolled back after a failed change"),
                       ("rejected_submissions", "Rejected submissions")):
        writer.writerow([key, title, "", "", totals[key], "count"])
    return buffer.getvalue()


def render_rows_csv(data):
    """One row per change order (``esd metrics --per-change-order --format csv``)."""
    buffer = io.StringIO()
    fields = ["change_order", "type", "category", "status", "received_at", "finished_at", "requested_completion",
              "on_time", "lead_time_seconds", "build_on_time", "tested", "rework", "passed_without_rework",
              "endpoints", "success_percent", "rollbacks", "rollbacks_after_failure"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in data["rows"]:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in fields})
    return buffer.getvalue()


def render_markdown(data):
    t = md.text
    rows = [(t(title), _percent_text(data["measures"][ident]), md.bar(data["measures"][ident]["percent"], 100) or "-")
            for ident, title in MEASURES]
    lead = data["lead_time"]
    totals = data["totals"]
    return md.document(
        md.heading("Measurements", 1),
        "%d change order(s), %d request(s): %s." % (data["change_orders"], data["requests"], t(_filters_text(data))),
        md.table(["measure", "value", ""], rows),
        md.key_values([("Mean lead time", common.human_duration(lead["mean_seconds"])),
                       ("Median lead time", common.human_duration(lead["median_seconds"])),
                       ("Rework", str(totals["rework"])),
                       ("Endpoints rolled back", "%d (%d after a failed change)" % (
                           totals["endpoints_rolled_back"], totals["endpoints_rolled_back_after_failure"])),
                       ("Rejected submissions", str(totals["rejected_submissions"]))]),
        md.heading("Definitions"),
        md.key_values([(t(SHORT_TITLES[ident]), t(data["definitions"][ident])) for ident, _ in MEASURES]))


def render_html(data):
    h = html
    chart = [(SHORT_TITLES[ident], data["measures"][ident]["percent"] or 0,
              "warn" if ident in ("sent_back_for_missing_information", "rollback_rate") else "ok")
             for ident, _ in MEASURES]
    lead = data["lead_time"]
    totals = data["totals"]
    body = [h.para("%d change order(s), %d request(s): %s." % (data["change_orders"], data["requests"],
                                                              _filters_text(data))),
            h.cards([("Change orders", data["change_orders"], "info"),
                     ("Mean lead time", common.human_duration(lead["mean_seconds"]), "info"),
                     ("Rework", totals["rework"], "warn" if totals["rework"] else "ok"),
                     ("Endpoints rolled back", totals["endpoints_rolled_back"],
                      "warn" if totals["endpoints_rolled_back"] else "ok")]),
            h.section("Measures", h.bar_chart(chart, unit="%", max_value=100, title="measures in percent"),
                      h.table(["measure", "numerator", "denominator", "percent"],
                              [(title, data["measures"][i]["numerator"], data["measures"][i]["denominator"],
                                "-" if data["measures"][i]["percent"] is None else "%.1f%%" % data["measures"][i]["percent"])
                               for i, title in MEASURES], numeric=(1, 2, 3))),
            h.section("Change orders", h.table(
                ["change order", "type", "status", "received", "due", "on time", "lead time", "rework", "rollbacks"],
                [(r["change_order"], r["type"], r["status"], r["received_at"], r["requested_completion"],
                  {True: "yes", False: "no", None: "-"}[r["on_time"]], common.human_duration(r["lead_time_seconds"]),
                  r["rework"], r["rollbacks"]) for r in data["rows"]], numeric=(7, 8))),
            h.section("Definitions", h.key_values([(SHORT_TITLES[ident], data["definitions"][ident])
                                                   for ident, _ in MEASURES]))]
    return h.page("Measurements", h.join(body), subtitle="ledger %s" % data["ledger"], generated=data["generated_at"])


RENDERERS = {"text": render_text, "json": lambda data: json.dumps(data, indent=2, default=str) + "\n",
             "csv": render_csv, "md": render_markdown, "html": render_html}
