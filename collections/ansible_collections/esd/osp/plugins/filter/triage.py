# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: triage
author:
  - esd.osp developers (@esd-osp)
version_added: 0.1.0
short_description: Classify the endpoints of a distribution log into success, redistribute, rollback and manual
description:
  - Reads the records the M(esd.osp.distribution_log) callback wrote (a list of records, or the text of one or more
    C(distribution_log.jsonl) files) and classifies every endpoint by what its last run did to it.
  - V(success) - every task of the endpoint's last run was ok, changed or skipped.
  - V(redistribute) - nothing was changed on the endpoint, so the distribution can simply be repeated - it was
    unreachable, the download or the checksum verification failed, unpacking failed, it timed out before anything
    changed, or it never ran.
  - V(rollback) - the endpoint changed and then failed - an install hook or the health check failed (the module
    reverts the host; the backout confirms the previous version), the automatic revert failed, a health-check
    playbook failed after the deployment, or a later task failed after the endpoint changed.
  - V(manual) - anything else (invalid arguments, a missing prerequisite, an I/O error, a refused request, a
    rollback whose previous version then failed its health check, an unknown failure, an endpoint that became
    unreachable after it changed) - a person must look at it.
  - Failures of tasks with C(ignore_errors) do not count. Each endpoint's entry says why it is in its class.
options:
  _input:
    description: Distribution-log records (dictionaries), or JSON-lines text, or a list of JSON-lines texts.
    type: raw
    required: true
  expected:
    description: Hosts that should appear; a host without any record is classified V(redistribute) (never ran).
    type: list
    elements: str
    default: []
  health_check_stages:
    description: Stages (the records' C(stage)) that only check health; a failure there means V(rollback).
    type: list
    elements: str
    default: []
  reversible:
    description: Whether the change can be rolled back automatically; when false, V(rollback) becomes V(manual).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Triage a distribution
  ansible.builtin.set_fact:
    triage: "{{ lookup('ansible.builtin.file', 'logs/distribution_log.jsonl') | esd.osp.triage }}"

- name: Show what has to be rolled back
  ansible.builtin.debug:
    msg: "{{ triage.rollback | map(attribute='host') | list }}"
"""

RETURN = r"""
_value:
  description: The classes, each a list of endpoints with C(host), C(reason), C(stage), C(wave), C(task), C(phase),
    C(rc) and C(outcome); and C(counts) per class.
  type: dict
  contains:
    success:
      description: Endpoints whose last run succeeded.
      type: list
      elements: dict
    redistribute:
      description: Endpoints where nothing changed; repeat the distribution.
      type: list
      elements: dict
    rollback:
      description: Endpoints that changed and then failed; roll them back.
      type: list
      elements: dict
    manual:
      description: Endpoints a person must look at.
      type: list
      elements: dict
    counts:
      description: Number of endpoints per class.
      type: dict
"""

import json

from ansible.errors import AnsibleFilterError

CLASSES = ("success", "redistribute", "rollback", "manual")

# esd.osp.software's failure phases (see its RETURN): what each means for the endpoint.
REDISTRIBUTE_PHASES = {
    "fetch": "download failed",
    "verify": "checksum verification failed",
    "unpack": "unpacking failed before anything changed",
}
ROLLBACK_PHASES = {
    "pre_install": "pre_install hook failed",
    "post_install": "post_install hook failed",
    "pre_activate": "pre_activate hook failed",
    "post_activate": "post_activate hook failed",
    "health_check": "health check failed",
    "revert": "the automatic revert failed",
}
MANUAL_PHASES = {
    "arguments": "invalid arguments",
    "requires": "a prerequisite is missing",
    "conflict": "the install directory belongs to another package",
    "state": "the package's state file is unusable",
    "pre_remove": "pre_remove hook failed, nothing was removed",
    "io": "I/O error on the endpoint",
    "rollback": "rollback refused",
    "commit": "commit refused",
    "remove": "removal refused",
    # the rollback happened, but the version it returned to is unhealthy: there is nothing left to roll back to
    "rollback_health_check": "rolled back, but the previous version failed its health check",
}
_TIMEOUT_WORDS = ("timed out", "timeout")


def parse_records(data):
    """Records from dictionaries, JSON-lines text or a list of either."""
    if data is None:
        return []
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        records = []
        for number, line in enumerate(data.splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ValueError("line %d is not a JSON record: %s" % (number, exc))
            if isinstance(record, dict):
                records.append(record)
        return records
    if isinstance(data, dict):
        return [data]
    records = []
    for item in data:
        records.extend(parse_records(item))
    return records


def _short(text, limit=300):
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _detail(record):
    """The failing record's own words: the module's message, plus the hook's error output when there is one."""
    message = _short(record.get("message"))
    stderr = _short(record.get("stderr"), 200)
    if stderr and stderr not in message:
        message = "%s (stderr: %s)" % (message, stderr) if message else stderr
    return message or "no message"


def classify_run(records, health_check=False, reversible=True):
    """(class, reason, deciding record) for the records of one endpoint in one run, in order."""
    changed = False
    for record in records:
        outcome = record.get("outcome")
        if outcome == "failed" and record.get("ignored"):
            continue
        if outcome == "unreachable":
            if changed:
                return ("manual", "became unreachable after it changed (its state is unknown): %s"
                        % _detail(record), record)
            return ("redistribute", "unreachable: %s" % _detail(record), record)
        if outcome == "failed":
            phase = record.get("phase")
            rc = record.get("rc")
            where = "phase %s%s" % (phase, ", rc %s" % rc if rc is not None else "") if phase else ""
            if health_check:
                reason = "health check failed after the deployment (task %s): %s" % (
                    record.get("task"), _detail(record))
                klass = "rollback"
            elif phase in REDISTRIBUTE_PHASES:
                reason = "%s (%s): %s" % (REDISTRIBUTE_PHASES[phase], where, _detail(record))
                klass = "redistribute"
            elif phase in ROLLBACK_PHASES:
                reverted = " and was reverted" if record.get("reverted") else ""
                reason = "%s (%s)%s: %s" % (ROLLBACK_PHASES[phase], where, reverted, _detail(record))
                klass = "rollback"
            elif phase in MANUAL_PHASES:
                reason = "%s (%s): %s" % (MANUAL_PHASES[phase], where, _detail(record))
                klass = "manual"
            elif changed:
                reason = "changed, then task %s failed: %s" % (record.get("task"), _detail(record))
                klass = "rollback"
            elif any(word in str(record.get("message") or "").lower() for word in _TIMEOUT_WORDS):
                reason = "timed out before anything changed (task %s): %s" % (record.get("task"), _detail(record))
                klass = "redistribute"
            else:
                reason = "task %s failed%s: %s" % (record.get("task"), " (%s)" % where if where else "",
                                                   _detail(record))
                klass = "manual"
            if klass == "rollback" and not reversible:
                klass = "manual"
                reason += "; this change has no automatic rollback (follow the backout plan)"
            return (klass, reason, record)
        if outcome == "changed":
            changed = True
    return ("success", "changed" if changed else "ok (nothing to change)", records[-1] if records else None)


def _entry(host, klass, reason, record):
    record = record or {}
    return {"host": host, "class": klass, "reason": reason, "stage": record.get("stage"), "wave": record.get("wave"),
            "task": record.get("task"), "phase": record.get("phase"), "rc": record.get("rc"),
            "outcome": record.get("outcome"), "run": record.get("run"), "end": record.get("end")}


def triage_records(records, expected=(), health_check_stages=(), reversible=True):
    """Classify every endpoint by its last run (see DOCUMENTATION)."""
    runs = {}
    order = {}
    for index, record in enumerate(records):
        host = record.get("host")
        if not host:
            continue
        run = record.get("run") or "-"
        runs.setdefault(host, {}).setdefault(run, []).append(record)
        order.setdefault((host, run), (record.get("start") or record.get("end") or "", index))
    result = dict((klass, []) for klass in CLASSES)
    health = set(health_check_stages or ())
    for host in sorted(runs):
        last_run = max(runs[host], key=lambda run: order[(host, run)])
        host_records = runs[host][last_run]
        is_check = bool(host_records) and host_records[0].get("stage") in health
        klass, reason, record = classify_run(host_records, health_check=is_check, reversible=reversible)
        result[klass].append(_entry(host, klass, reason, record))
    for host in expected or ():
        if host not in runs:
            result["redistribute"].append(_entry(host, "redistribute",
                                                 "no record: the distribution never reached it", None))
    for klass in CLASSES:
        result[klass].sort(key=lambda entry: entry["host"])
    result["counts"] = dict((klass, len(result[klass])) for klass in CLASSES)
    return result


def triage(data, expected=None, health_check_stages=None, reversible=True):
    try:
        records = parse_records(data)
    except ValueError as exc:
        raise AnsibleFilterError("esd.osp.triage: %s" % exc)
    return triage_records(records, expected or (), health_check_stages or (), bool(reversible))


class FilterModule(object):
    def filters(self):
        return {"triage": triage}
