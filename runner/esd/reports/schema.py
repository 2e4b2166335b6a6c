"""JSON Schemas (draft 2020-12) of every JSON report esd writes; docs/report-schema.md shows the same schemas.

Each report carries its schema id in ``schema`` (``esd.osp/report/<kind>/v1``). Fields may be added in a
``v1`` schema (consumers must ignore unknown fields); renaming or removing one makes a ``v2``.
"""

from __future__ import annotations

from esd.states import STATUSES

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_BOOL = {"type": ["boolean", "null"]}
STRINGS = {"type": "array", "items": {"type": "string"}}
TIME = {"type": ["string", "null"], "description": "ISO 8601 timestamp with a time zone"}
SHA256 = {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}


def _object(properties, required=None, extra=True):
    return {"type": "object", "properties": properties, "required": list(required or properties),
            "additionalProperties": extra}


CHANGES = {"type": "array", "items": _object({
    "package": NULLABLE_STRING,
    "kind": {"enum": ["installed", "updated", "downgraded", "rolled back", "reverted", "activated", "committed",
                      "removed", "changed", "image changed"]},
    "before": {"type": "string"}, "after": {"type": "string"}})}

STATUS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/status/v1",
    "title": "Status report of a change order",
    **_object({
        "schema": {"const": "esd.osp/report/status/v1"},
        "change_order": {"type": "string"}, "title": {"type": "string"}, "type": {"type": "string"},
        "category": {"enum": ["ESD", "OSP"]}, "requester": {"type": "string"},
        "requested_completion": {"type": "string", "format": "date"},
        "digest": SHA256,
        "status": {"enum": list(STATUSES)},
        "reason": {"type": "string"}, "current_step": NULLABLE_STRING,
        "created_at": TIME, "finished_at": TIME, "elapsed_seconds": NULLABLE_NUMBER, "generated_at": TIME,
        "artifact": {"type": ["object", "null"]},
        "artifacts": {"type": "array", "items": _object({
            "kind": {"type": "string", "description": "change_order, declared, or the stage output name"},
            "stage": NULLABLE_STRING, "name": NULLABLE_STRING, "version": NULLABLE_STRING, "sha256": SHA256,
            "size": {"type": ["integer", "null"]}, "path": NULLABLE_STRING, "builder": NULLABLE_STRING})},
        "stages_done": STRINGS, "stages_failed": STRINGS, "stages_pending": STRINGS,
        "gates": {"type": "array", "items": _object({
            "id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string"},
            "decided_by": NULLABLE_STRING, "decided_at": TIME, "comment": NULLABLE_STRING, "since": TIME,
            "automatic": {"type": "boolean"}})},
        "steps": {"type": "array", "items": _object({
            "id": {"type": "string"}, "kind": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "string"}}, extra=True)},
        "endpoints": {"type": "object", "additionalProperties": _object({
            "stage": {"type": "string"}, "result": {"type": "string"}}, extra=True)},
        "host_states": {"type": "object", "description": "every endpoint target (spec.targets.hosts): pending, "
                        "running, ok, failed, unreachable, not_reached, redistribute, rollback, rolled_back, manual",
                        "additionalProperties": _object({"state": {"type": "string"}, "result": {"type": "string"},
                                                         "stage": NULLABLE_STRING})},
        "hosts_by_state": {"type": "array", "items": _object({
            "state": {"type": "string"}, "result": {"type": "string"}, "count": {"type": "integer"},
            "hosts": STRINGS})},
        "endpoints_as_intended": {"oneOf": [{"type": "null"}, _object({
            "endpoints": {"type": "integer"}, "ok": {"type": "integer"}, "failed": STRINGS,
            "success_percent": NULLABLE_NUMBER})],
            "description": "endpoints whose latest snapshot meets the change order's intent (see evaluation)"},
        "inventory_changes": {"type": ["object", "null"], "properties": {
            "hosts": {"type": "object", "additionalProperties": _object({
                "before": {"type": ["object", "null"]}, "after": {"type": ["object", "null"]}, "changes": CHANGES,
                "unread": {"type": "boolean"}})},
            "stages": {"type": "array"}, "rolled_back": STRINGS, "snapshots": {"type": "integer"},
            "seconds": {"type": "number"}}},
        "open_problems": {"type": "array", "items": _object({
            "id": {"type": "string"}, "status": {"type": "string"}, "open": {"type": "boolean"},
            "title": {"type": "string"}, "hosts": STRINGS, "stage": NULLABLE_STRING, "opened_at": TIME,
            "workaround": NULLABLE_STRING, "url": NULLABLE_STRING})},
        "next_step": _object({"action": {"type": "string"}, "command": NULLABLE_STRING}),
        "closure": {"type": ["object", "null"]},
        "audit": _object({"records": {"type": ["integer", "null"]}, "verified": NULLABLE_BOOL}),
        "ledger": NULLABLE_STRING,
    }),
}

CHECK = _object({
    "task": {"type": "string"}, "phase": NULLABLE_STRING, "action": NULLABLE_STRING,
    "result": {"enum": ["passed", "failed", "unreachable", "skipped", "not_run"]},
    "duration": NULLABLE_NUMBER, "changed": {"type": "boolean"}, "message": NULLABLE_STRING,
    "failure_phase": NULLABLE_STRING, "note": NULLABLE_STRING})
TOTALS = _object({key: {"type": "integer"} for key in ("passed", "failed", "unreachable", "skipped", "not_run",
                                                         "checks")})

TEST = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/test/v1",
    "title": "Test report: the build unit test and the test-site stages of a change order",
    **_object({
        "schema": {"const": "esd.osp/report/test/v1"},
        "change_order": {"type": "string"}, "title": {"type": "string"}, "type": {"type": "string"},
        "generated_at": TIME,
        "artifact": {"type": ["object", "null"], "properties": {"name": NULLABLE_STRING, "version": NULLABLE_STRING,
                                                                 "sha256": SHA256}},
        "scope": _object({"stages": STRINGS, "hosts": STRINGS, "not_run": STRINGS}),
        "conclusion": {"enum": ["pass", "rework", "incomplete", "not applicable"]},
        "conclusion_reason": {"type": "string"},
        "totals": TOTALS,
        "backout": _object({"rehearsed": NULLABLE_BOOL, "hosts": {"type": "object", "additionalProperties": {
            "enum": ["passed", "failed", "not run", "skipped"]}}}),
        "rework": {"type": "integer"},
        "defects": {"type": "array", "items": _object({
            "id": {"type": "string"}, "stage": {"type": "string"}, "attempt": {"type": ["integer", "null"]},
            "host": NULLABLE_STRING, "check": {"type": "string"}, "phase": NULLABLE_STRING,
            "result": {"type": "string"}, "message": NULLABLE_STRING,
            "status": {"type": "string", "description": "outstanding, or retested (passed in attempt N)"}})},
        "signoffs": {"type": "array", "items": _object({
            "gate": {"type": "string"}, "status": NULLABLE_STRING, "decided_by": NULLABLE_STRING, "decided_at": TIME,
            "comment": NULLABLE_STRING})},
        "stages": {"type": "array", "items": _object({
            "id": {"type": "string"}, "site": {"enum": ["build", "test"]}, "title": {"type": "string"},
            "playbook": {"type": "string"}, "status": {"type": "string"},
            "hosts_planned": {"type": ["array", "null"], "items": {"type": "string"}},
            "unit_test": NULLABLE_STRING, "scan": NULLABLE_STRING, "backout_rehearsed": NULLABLE_BOOL,
            "totals": {"oneOf": [TOTALS, {"type": "null"}]},
            "attempts": {"type": "array", "items": _object({
                "attempt": {"type": "integer"}, "status": {"type": ["string", "null"]}, "reason": NULLABLE_STRING,
                "run_by": NULLABLE_STRING, "started_at": TIME, "finished_at": TIME, "tasks": {"type": "integer"},
                "never_ran": STRINGS, "totals": TOTALS,
                "backout": {"type": "object"},
                "hosts": {"type": "object", "additionalProperties": _object({
                    "ran": {"type": "boolean"}, "checks": {"type": "array", "items": CHECK}})}})}})},
    }),
}

EVALUATION = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/evaluation/v1",
    "title": "Evaluation report of a change order (the facts esd metrics adds up)",
    **_object({
        "schema": {"const": "esd.osp/report/evaluation/v1"},
        "change_order": {"type": "string"}, "title": {"type": "string"}, "type": {"type": "string"},
        "category": {"enum": ["ESD", "OSP"]}, "requester": {"type": "string"}, "status": {"type": "string"},
        "reason": {"type": "string"}, "received_at": TIME, "finished_at": TIME,
        "requested_completion": {"type": "string"}, "due_at": TIME, "completed": {"type": "boolean"},
        "on_time": NULLABLE_BOOL, "lead_time_seconds": NULLABLE_NUMBER,
        "sites": {"type": "array", "items": _object({
            "site": {"enum": ["build", "test", "production"]}, "stages": STRINGS, "started_at": TIME,
            "finished_at": TIME, "lead_time_seconds": NULLABLE_NUMBER, "attempts": {"type": "integer"},
            "failed_attempts": {"type": "integer"}, "done": {"type": "boolean"}})},
        "gates": {"type": "array", "items": _object({
            "gate": {"type": "string"}, "status": {"type": "string"}, "decided_by": NULLABLE_STRING,
            "decided_at": TIME, "waited_seconds": NULLABLE_NUMBER, "comment": NULLABLE_STRING})},
        "gate_wait_seconds": {"type": "number"},
        "build": {"oneOf": [{"type": "null"}, _object({
            "kind": {"enum": ["package", "image"]}, "stages": STRINGS, "handed_over_at": TIME,
            "on_time": NULLABLE_BOOL})]},
        "test": _object({"in_scope": {"type": "boolean"}, "tested": {"type": "boolean"}, "passed": NULLABLE_BOOL,
                         "rework": {"type": "integer"}, "rework_events": {"type": "array"},
                         "passed_without_rework": NULLABLE_BOOL}),
        "production": _object({"stages_run": {"type": "integer"}, "endpoints": {"type": "integer"},
                               "ok": {"type": "integer"}, "failed": STRINGS, "success_percent": NULLABLE_NUMBER,
                               "rolled_back": STRINGS, "rollbacks": {"type": "integer"},
                               "rolled_back_after_failure": STRINGS, "rollbacks_after_failure": {"type": "integer"},
                               "audit_snapshots": {"type": "integer"}, "audit_seconds": {"type": "number"}}),
        "closure": {"oneOf": [{"type": "null"}, _object({
            "closed_by": {"type": "string"}, "closed_at": TIME, "comment": {"type": "string"},
            "satisfaction": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
            "known_errors": {"type": "array", "items": _object({"error": {"type": "string"},
                                                                 "workaround": NULLABLE_STRING})}})]},
        "lessons_learned": NULLABLE_STRING,
        "generated_at": TIME,
    }),
}

RELEASE_NOTES = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/release-notes/v1",
    "title": "Release notes of a change order that builds or releases a version",
    **_object({
        "schema": {"const": "esd.osp/report/release-notes/v1"},
        "change_order": {"type": "string"}, "applicable": {"type": "boolean"}, "name": NULLABLE_STRING,
        "version": NULLABLE_STRING, "kind": {"enum": ["package", "image"]}, "title": {"type": "string"},
        "description": {"type": "string"}, "package_description": NULLABLE_STRING, "requester": {"type": "string"},
        "status": {"type": "string"}, "released_at": TIME, "updates": STRINGS, "requires": STRINGS,
        "artifact": _object({"sha256": SHA256, "size": {"type": ["integer", "null"]}, "path": NULLABLE_STRING,
                             "builder": NULLABLE_STRING, "build_time": {"type": ["integer", "null"]},
                             "source_digest": NULLABLE_STRING, "files": {"type": ["integer", "null"]},
                             "scan": {"type": ["object", "null"]}, "unit_test": NULLABLE_STRING}),
        "image": {"oneOf": [{"type": "null"}, _object({
            "os": NULLABLE_STRING, "packages": {"type": ["integer", "null"]},
            "parent": {"type": ["string", "null"], "description": "the image it was derived from: <family> <version>"},
            "changes": {"oneOf": [{"type": "null"}, _object({
                "added": {"type": "array"}, "removed": {"type": "array"}, "changed": {"type": "array"},
                "unchanged": {"type": ["integer", "null"]}})]},
            "hardening": {"type": ["object", "null"]}})],
            "description": "OS images only: what the image manifest says (null for packages)"},
        "attachments": {"type": "array", "items": _object({"name": NULLABLE_STRING, "kind": NULLABLE_STRING,
                                                           "path": NULLABLE_STRING, "url": NULLABLE_STRING})},
        "backout": _object({"strategy": NULLABLE_STRING, "plan": NULLABLE_STRING, "rehearsed": NULLABLE_BOOL}),
        "test": _object({"conclusion": {"type": "string"}, "hosts": STRINGS, "rework": {"type": "integer"},
                         "defects": {"type": "integer"}}),
        "deployment": _object({"endpoints": {"type": "integer"}, "ok": {"type": "integer"},
                               "success_percent": NULLABLE_NUMBER, "rolled_back": STRINGS}),
        "known_errors": {"type": "array", "items": _object({
            "source": {"type": "string", "description": "test, production, problem <id>, or closure"},
            "error": {"type": "string"}, "hosts": STRINGS, "workaround": NULLABLE_STRING})},
        "generated_at": TIME,
    }),
}

MEASURE = _object({"id": {"type": "string"}, "title": {"type": "string"}, "numerator": {"type": "integer"},
                   "denominator": {"type": "integer"}, "percent": NULLABLE_NUMBER,
                   "not_yet_counted": {"type": "integer"}})

METRICS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/metrics/v1",
    "title": "Measurements across the change orders of a ledger (esd metrics --json)",
    **_object({
        "schema": {"const": "esd.osp/report/metrics/v1"},
        "generated_at": TIME, "at": TIME, "ledger": {"type": "string"},
        "filters": _object({"since": NULLABLE_STRING, "until": NULLABLE_STRING, "types": STRINGS,
                            "categories": STRINGS}),
        "change_orders": {"type": "integer"}, "requests": {"type": "integer"},
        "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        "measures": _object({ident: MEASURE for ident in (
            "finished_in_requested_time", "packages_built_in_requested_time", "images_built_in_requested_time",
            "passed_test_without_rework", "sent_back_for_missing_information", "rollback_rate")}),
        "lead_time": _object({"count": {"type": "integer"}, "mean_seconds": NULLABLE_NUMBER,
                              "median_seconds": NULLABLE_NUMBER}),
        "definitions": _object({ident: {"type": "string"} for ident in (
            "finished_in_requested_time", "packages_built_in_requested_time", "images_built_in_requested_time",
            "passed_test_without_rework", "sent_back_for_missing_information", "rollback_rate")}),
        "totals": _object({"rework": {"type": "integer"}, "endpoints_rolled_back": {"type": "integer"},
                           "endpoints_rolled_back_after_failure": {"type": "integer"},
                           "rejected_submissions": {"type": "integer"}, "mean_satisfaction": NULLABLE_NUMBER,
                           "satisfaction_answers": {"type": "integer"}}),
        "rows": {"type": "array", "items": {"type": "object", "required": ["change_order", "type", "status",
                                                                            "on_time", "lead_time_seconds"]}},
        "unreadable": {"type": "array"},
    }),
}

INVENTORY = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/inventory/v1",
    "title": "Fleet inventory and drift (esd inventory --json)",
    **_object({
        "schema": {"const": "esd.osp/report/inventory/v1"},
        "generated_at": TIME, "source": {"enum": ["live", "ledger snapshots"]}, "ledger": {"type": "string"},
        "hosts": {"type": "object", "additionalProperties": _object({
            "observed": {"type": ["object", "null"]}, "source": {"type": ["object", "null"]},
            "packages": {"type": "object"}, "image": {"type": ["object", "null"]}, "intended": {"type": "array"},
            "drift": {"type": "array"}})},
        "versions": {"type": "object", "additionalProperties": {"type": "array", "items": _object({
            "state": {"type": "string"}, "count": {"type": "integer"}, "hosts": STRINGS})}},
        "images": {"type": "array", "items": _object({"image": {"type": "string"}, "count": {"type": "integer"},
                                                       "hosts": STRINGS})},
        "drift": {"type": "array", "items": _object({
            "host": {"type": "string"}, "kind": {"enum": ["package", "image"]}, "name": {"type": "string"},
            "observed": {"type": "string"}, "intended": {"type": "string"}, "change_order": {"type": "string"},
            "stage": {"type": "string"}, "host_result": {"enum": ["ok", "failed"]}, "observed_at": TIME,
            "observed_by": {"enum": ["snapshot", "live"]}})},
    }),
}

SNAPSHOT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/audit-snapshot/v1",
    "title": "Audit snapshot: a production stage's targets before or after it (ledger audit/<stage>-<when>.json)",
    **_object({
        "format": {"const": "esd.osp/audit-snapshot/v1"},
        "change_order": {"type": "string"}, "stage": {"type": "string"}, "attempt": {"type": "integer"},
        "when": {"enum": ["before", "after"]}, "taken_at": TIME, "seconds": {"type": "number"},
        "image_probed": {"type": "boolean"},
        "read_with": {"type": ["string", "null"], "description": "esd.osp.software (the stage's own module calls "
                      "reported it) or <stage>-after (read together with that snapshot); absent: an audit.yml run"},
        "read_with_audit_playbook": {**STRINGS, "description": "hosts esd.osp.software did not report (unreachable, "
                                     "refused before any change), read with audit.yml after the stage"},
        "read_after_the_stage": {**STRINGS, "description": "in a before snapshot: hosts whose before is the read "
                                 "after the stage (esd.osp.software never ran on them)"},
        "hosts": {"type": "object", "additionalProperties": _object({
            "packages": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "active": NULLABLE_STRING, "committed": NULLABLE_STRING, "backups": STRINGS, "installed": STRINGS,
                "status": NULLABLE_STRING, "digests": {"type": ["object", "null"]},
                "last_change": {"type": ["object", "null"]}}}},
            "image": {"type": ["object", "null"], "properties": {"family": NULLABLE_STRING,
                                                                  "version": NULLABLE_STRING,
                                                                  "parent": NULLABLE_STRING,
                                                                  "error": NULLABLE_STRING}},
            "image_probed": {"type": "boolean"}, "error": NULLABLE_STRING})},
    }, required=("format", "change_order", "stage", "attempt", "when", "taken_at", "seconds", "image_probed",
                 "hosts")),
}

_HOST_CLASS = {"enum": ["success", "redistribute", "rollback", "manual", "not_reached"]}
_HOST_STATUS = {"enum": ["success", "rolled_back", "failed", "manual", "not_reached"]}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}

DISTRIBUTION = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "esd.osp/report/distribution/v1",
    "title": "Distribution report of a rollout",
    **_object({
        "schema": {"const": "esd.osp/report/distribution/v1"},
        "format": {"const": "esd.osp/distribution-report/v1"},
        "change_order": {"type": "string"}, "title": {"type": "string"}, "type": {"type": "string"},
        "status": NULLABLE_STRING,
        "verdict": {"oneOf": [{"type": "null"}, _object({
            "result": {"enum": ["complete", "complete_with_exceptions", "rolled_back"]},
            "total": {"type": "integer"}, "counts": _COUNTS,
            "exceptions": {"type": "array", "items": _object({
                "host": {"type": "string"}, "status": _HOST_STATUS, "class": _HOST_CLASS,
                "reason": {"type": "string"}})}}, required=("result", "total", "counts", "exceptions"))]},
        "halted": {"type": ["object", "null"], "description": "{step, reason} when a failure budget was breached"},
        "started_at": TIME, "finished_at": TIME, "elapsed_seconds": NULLABLE_NUMBER,
        "stages": {"type": "array", "items": _object({
            "id": {"type": "string"}, "role": {"enum": ["beta", "check", "wave"]}, "wave": {"type": ["integer", "null"]},
            "title": {"type": "string"}, "status": NULLABLE_STRING, "reason": NULLABLE_STRING,
            "hosts": {"type": "integer"}, "ok": {"type": "integer"}, "failed": {"type": "integer"},
            "failed_hosts": STRINGS, "changed": {"type": "integer"}, "success_percent": NULLABLE_NUMBER,
            "failure_budget_percent": NULLABLE_NUMBER, "attempts": {"type": "integer"},
            "started_at": TIME, "finished_at": TIME, "duration_seconds": NULLABLE_NUMBER})},
        "go_no_go": {"oneOf": [{"type": "null"}, _object({
            "decision": {"enum": ["go", "no-go"]}, "decided_by": NULLABLE_STRING, "decided_at": TIME,
            "comment": NULLABLE_STRING})]},
        "triage": _object({
            "initial": _object({"counts": _COUNTS, "classes": {"type": "object"}}),
            "final": _object({"counts": _COUNTS, "classes": {"type": "object", "additionalProperties": STRINGS}})}),
        "backout_attempts": {"type": "array", "items": {"type": "object"}},
        "endpoints": {"type": "array", "items": _object({
            "host": {"type": "string"}, "stage": NULLABLE_STRING, "wave": {"type": ["integer", "null"]},
            "initial_class": {"oneOf": [{"type": "null"}, _HOST_CLASS]}, "initial_reason": NULLABLE_STRING,
            "class": _HOST_CLASS, "status": _HOST_STATUS, "reason": NULLABLE_STRING, "phase": NULLABLE_STRING,
            "rc": {"type": ["integer", "null"]}, "attempts": {"type": "integer"}, "notes": STRINGS,
            "problem": NULLABLE_STRING})},
        "problems": {"type": "array", "items": {"type": "object"}},
    }),
}

SCHEMAS = {"status": STATUS, "test": TEST, "evaluation": EVALUATION, "release-notes": RELEASE_NOTES,
           "distribution": DISTRIBUTION, "metrics": METRICS, "inventory": INVENTORY, "audit-snapshot": SNAPSHOT}


# --- docs/report-schema.md is generated from here (a unit test keeps them equal) -----------------------

_PROSE = {
    "status": ("`esd status ID --json`, `esd report ID --kind status --format json`, `report/status.json`",
               "The project status report at any moment: stages done and pending, every gate decision with who and "
               "when, artifacts with their sha256, endpoints and hosts per state, the software inventory before "
               "and after (per host, from the audit snapshots), open problem records and the next step with its "
               "command."),
    "test": ("`esd report ID --kind test --format json`, `report/test.json` (JUnit XML: `--format junit`, "
             "`report/test.junit.xml`)",
             "The build unit test and test-site stages: every check (one task on one host in one attempt, from the "
             "ansible-runner job events) with its result, the hosts never reached, the defects (failed checks; "
             "`retested` when a later attempt passed them), the backout rehearsal per host, rework and the "
             "conclusion (`pass`, `rework`, `incomplete`, `not applicable`). The JUnit XML has one `testsuite` per "
             "stage (its latest attempt) and one `testcase` per check: `classname` `<change order>.<stage>.<host>`, "
             "`name` the task; failures carry the message, unreachable hosts are errors, skipped and not-run "
             "checks are skipped."),
    "evaluation": ("`esd report ID --kind evaluation --format json`, `report/evaluation.json`",
                   "The project evaluation report and the per-change-order facts `esd metrics` adds up: received/due/"
                   "finished, whether the requested completion date was met, lead time in all and per site, gate "
                   "waits, build handover, rework events, endpoint success and rollbacks, and the closure (`esd "
                   "close`: lessons learned, satisfaction, known errors)."),
    "release-notes": ("`esd report ID --kind release-notes --format json`, `report/release-notes.json`",
                      "Release notes from the change order and the build metadata (the artifact's embedded "
                      "manifest), the test outcome, the deployment and the known errors with workarounds."),
    "distribution": ("`esd report ID --kind distribution --format json`, `report/distribution.json`",
                     "The rollout of an install, update or image change order: every beta, check and wave stage "
                     "with its hosts, successes, failures and failure budget; the go/no-go decision; the triage of "
                     "every endpoint (success, redistribute, rollback, manual, not reached) first and after the "
                     "backout; each endpoint's final status with the reason, phase and exit code; the backout "
                     "attempts, the open problem records and the verdict."),
    "metrics": ("`esd metrics --json`",
                "The measurements over the change orders of a ledger; `rows` has one entry per change order."),
    "inventory": ("`esd inventory --json`",
                  "Which hosts run which package versions and images (newest audit snapshot per host, or `--live`), "
                  "the intended state from the last change order that touched each host, and the drift."),
    "audit-snapshot": ("`<ledger>/<id>/audit/<stage>-before.json`, `-after.json`",
                       "What a production stage's targets run before its first attempt and after each attempt. For "
                       "software change orders both come from the stage's own `esd.osp.software` call (its "
                       "`inventory` option); hosts it did not reach are read with `playbooks/audit.yml`, which "
                       "image change orders use for every host (with the running image). Its sha256 is in the "
                       "audit log (event `inventory_snapshot`)."),
}


def document():
    """The text of docs/report-schema.md."""
    import json

    lines = ["# esd report JSON schemas", "",
             "Generated from `runner/esd/reports/schema.py` (`python -m esd.reports.schema > docs/report-schema.md`); "
             "a unit test checks that this file and the code agree and that every report esd writes validates.", "",
             "Every JSON report names its schema in `schema` (snapshots: `format`). Within a `v1` schema fields may "
             "be added, so consumers ignore fields they do not know; a renamed or removed field makes a `v2`. "
             "Timestamps are ISO 8601 with a time zone (UTC, milliseconds), durations are seconds, percentages are "
             "0-100 rounded to one decimal, and `null` means not known or not applicable.", ""]
    for kind, schema in SCHEMAS.items():
        where, what = _PROSE[kind]
        lines += ["## %s (`%s`)" % (kind, schema["$id"]), "", "Where: %s." % where, "", what, "", "```json",
                  json.dumps(schema, indent=2), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(document(), end="")
