"""Triage of a rollout: every endpoint classified from the distribution logs, with the reason.

The ``esd.osp.distribution_log`` callback writes one record per endpoint and task into each stage
attempt's artifact directory (``stages/<step>/attempt-<n>/artifacts/attempt-<n>/distribution_log.jsonl``).
The classification of one endpoint's run is the collection's own (``esd.osp.triage`` filter), so a
playbook run by hand and the runner triage the same way:

    success        every task was ok, changed or skipped
    redistribute   nothing changed on the endpoint (unreachable, download/checksum failure, timeout
                   before unpacking, never reached): distribute again
    rollback       the endpoint changed and then failed (hook or health-check failure, failed
                   auto-revert, a failed go/no-go health check): roll it back
    manual         anything else: a person must look at it
    not_reached    the rollout halted before the endpoint's wave (it was not touched)

The first triage follows the waves; the backout stage acts on it and every backout attempt updates it
(a redistributed endpoint that succeeds becomes ``success``, a rolled-back one is marked
``rolled_back``). The verdict ends the change order unambiguously: ``complete``,
``complete_with_exceptions`` (each exception named with its reason) or ``rolled_back``.

Limit files (one host per line, for ``ansible-playbook --limit @file``) and ``triage.json`` are
written to ``<ledger>/<id>/triage/<label>/``.
"""

from __future__ import annotations

import json
import os

from esd import collection, ledger as ledger_mod

CLASSES = ("success", "redistribute", "rollback", "manual", "not_reached")
HALTABLE = ("beta", "check", "wave")
LOG_NAME = "distribution_log.jsonl"
# What each endpoint's final status means in the verdict and the reports.
STATUSES = ("success", "rolled_back", "failed", "manual", "not_reached")


def _filter():
    return collection.plugin("filter.triage")


def rollout_steps(state, roles=None):
    return [step for step in state["plan"]["steps"] if step.get("rollout_role")
            and (roles is None or step["rollout_role"] in roles)]


def reversible(state):
    verdict = next((step for step in state["plan"]["steps"] if step.get("rollout_role") == "verdict"), None)
    return bool(verdict and (verdict.get("backout") or {}).get("state"))


def attempt_dir(entry, step_id, attempt):
    return entry.stage_dir(step_id, attempt)


def log_path(entry, step_id, attempt):
    directory = attempt_dir(entry, step_id, attempt)
    return os.path.join(directory, "artifacts", os.path.basename(directory.rstrip(os.sep)), LOG_NAME)


def read_log(entry, step_id, attempt):
    """The records of one stage attempt, or None when that attempt wrote no distribution log."""
    path = log_path(entry, step_id, attempt)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        records = _filter().parse_records(handle.read())
    return records


def _synthesised(record, hosts):
    """Records made from the stage's event results, for an attempt without a distribution log."""
    records = []
    changed = set((record.get("hosts") or {}).get("changed") or ())
    failures = record.get("failures") or {}
    for host in hosts:
        if host in failures:
            failure = failures[host]
            records.append({"host": host, "outcome": failure.get("status") or "failed", "phase": failure.get("phase"),
                            "task": failure.get("task"), "message": failure.get("message"), "run": "events"})
        elif host in ((record.get("hosts") or {}).get("ok") or ()):
            records.append({"host": host, "outcome": "changed" if host in changed else "ok", "run": "events"})
    return records


def stage_records(entry, state, step_id, attempt=None, hosts=()):
    """{host: [records]} of a stage attempt (default: its latest), from the log or from the events."""
    record = state["steps"][step_id]
    attempt = attempt or record.get("attempts") or 0
    if not attempt:
        return {}
    records = read_log(entry, step_id, attempt)
    if records is None:
        records = _synthesised(record, hosts) if attempt == record.get("attempts") else []
    by_host = {}
    for item in records:
        if item.get("host"):
            by_host.setdefault(item["host"], []).append(item)
    return by_host


def _endpoint(host, klass, reason, step, record=None, changed=False):
    record = record or {}
    return {"host": host, "class": klass, "reason": reason, "stage": step["id"] if step else None,
            "wave": step.get("wave") if step else None, "task": record.get("task"), "phase": record.get("phase"),
            "rc": record.get("rc"), "changed": changed, "rolled_back": False, "redistributed": False,
            "attempts": 0, "notes": []}


def _changed(records):
    return any(item.get("outcome") == "changed" for item in records)


def initial(entry, state):
    """Classify every rollout endpoint from the logs of the beta, health-check and wave stages."""
    classify = _filter().classify_run
    can_roll_back = reversible(state)
    endpoints = {}
    gate = next((step for step in state["plan"]["steps"] if step["id"] == "go_no_go"), None)
    url_failures = (state["steps"].get("go_no_go") or {}).get("url_failures") or {} if gate else {}
    check = next(iter(rollout_steps(state, ("check",))), None)
    for step in rollout_steps(state, ("beta", "wave")):
        record = state["steps"][step["id"]]
        hosts = step.get("limit_hosts") or []
        if record.get("status") in ("pending", "halted", "skipped") or not record.get("attempts"):
            for host in hosts:
                why = (record.get("reason") or "the rollout halted before this wave") if record.get("status") == \
                    "halted" else "the rollout did not reach this stage"
                endpoints[host] = _endpoint(host, "not_reached", "not reached: %s" % why, step)
            continue
        by_host = stage_records(entry, state, step["id"], hosts=hosts)
        for host in hosts:
            records = by_host.get(host) or []
            if not records:
                endpoints[host] = _endpoint(host, "redistribute", "no record: stage %s never reached it" % step["id"],
                                            step)
                continue
            klass, reason, deciding = classify(records, health_check=False, reversible=can_roll_back)
            endpoints[host] = _endpoint(host, klass, reason, step, deciding, changed=_changed(records)
                                        or klass == "rollback")
    if check is not None and state["steps"][check["id"]].get("attempts"):
        by_host = stage_records(entry, state, check["id"], hosts=check.get("limit_hosts") or [])
        for host in check.get("limit_hosts") or []:
            endpoint = endpoints.get(host)
            if not endpoint or endpoint["class"] != "success":
                continue
            records = by_host.get(host) or []
            if not records:
                continue
            klass, reason, deciding = classify(records, health_check=True, reversible=can_roll_back)
            if klass != "success":
                changed = endpoint["changed"]
                endpoints[host] = _endpoint(host, klass, reason, check, deciding, changed=changed or True)
    for host, why in url_failures.items():
        endpoint = endpoints.get(host)
        if endpoint and endpoint["class"] == "success":
            klass = "rollback" if can_roll_back else "manual"
            reason = "health check URL failed at the go/no-go: %s" % why
            if not can_roll_back:
                reason += "; this change has no automatic rollback (follow the backout plan)"
            endpoints[host] = _endpoint(host, klass, reason, gate, {"phase": "health_check"}, changed=True)
    return dict(sorted(endpoints.items()))


def mark_halt_rollback(endpoints, halt_reason):
    """A halted rollout backs the change out: endpoints it changed successfully are rolled back too."""
    for endpoint in endpoints.values():
        if endpoint["class"] == "success" and endpoint["changed"]:
            endpoint["class"] = "rollback"
            endpoint["halt_rollback"] = True
            endpoint["reason"] = "succeeded, rolled back because the rollout halted: %s" % halt_reason


def backout_targets(endpoints, attempt, redistribute_attempts, halted_rollback):
    """(rollback hosts, redistribute hosts) for backout attempt ``attempt`` (1-based)."""
    rollback = sorted(host for host, e in endpoints.items() if e["class"] == "rollback" and not e["rolled_back"])
    redistribute = []
    if not halted_rollback and attempt <= redistribute_attempts:
        redistribute = sorted(host for host, e in endpoints.items() if e["class"] == "redistribute")
    return rollback, redistribute


def apply_backout_attempt(entry, state, endpoints, step, attempt, rollback, redistribute):
    """Update the endpoints from the records of backout attempt ``attempt``."""
    classify = _filter().classify_run
    can_roll_back = reversible(state)
    by_host = stage_records(entry, state, step["id"], attempt=attempt, hosts=rollback + redistribute)
    for host in rollback:
        endpoint = endpoints[host]
        endpoint["attempts"] += 1
        records = by_host.get(host) or []
        klass, reason, deciding = classify(records, reversible=True) if records else (
            "redistribute", "no record: the backout never reached it", None)
        if klass == "success":
            endpoint["rolled_back"] = True
            software = (records[-1].get("software") if records else None) or {}
            to = " to %s" % software["active"] if software.get("active") else ""
            endpoint["notes"].append("rolled back%s by backout attempt %d" % (to, attempt))
        else:
            endpoint["notes"].append("rollback attempt %d failed: %s" % (attempt, reason))
            endpoint["rollback_failure"] = reason
    for host in redistribute:
        endpoint = endpoints[host]
        endpoint["attempts"] += 1
        records = by_host.get(host) or []
        if not records:
            klass, reason, deciding = "redistribute", "no record: the backout never reached it", None
        else:
            klass, reason, deciding = classify(records, reversible=can_roll_back)
        if klass == "success":
            endpoint.update({"class": "success", "redistributed": True, "changed": _changed(records),
                             "reason": "redistributed by backout attempt %d (first: %s)" % (attempt, endpoint["reason"])})
            endpoint["notes"].append("redistributed by backout attempt %d" % attempt)
        else:
            endpoint.update({"class": klass, "reason": reason, "stage": step["id"], "task": (deciding or {}).get("task"),
                             "phase": (deciding or {}).get("phase"), "rc": (deciding or {}).get("rc")})
            if klass == "rollback":
                endpoint["changed"] = True
            endpoint["notes"].append("redistribution attempt %d failed: %s" % (attempt, reason))
    return endpoints


def final_status(endpoint):
    """success | rolled_back | failed | manual | not_reached."""
    klass = endpoint["class"]
    if klass == "success":
        return "success"
    if klass == "rollback":
        return "rolled_back" if endpoint["rolled_back"] else "failed"
    if klass == "redistribute":
        return "failed"
    return klass


def verdict(endpoints, halt, on_halt):
    """The unambiguous end of the change order: complete, complete_with_exceptions or rolled_back."""
    statuses = {host: final_status(endpoint) for host, endpoint in endpoints.items()}
    if halt and on_halt == "rollback":
        # The change was backed out: what counts is every endpoint being as it was before.
        exceptions = [host for host, status in statuses.items()
                      if status == "manual" or (status == "failed" and endpoints[host]["class"] == "rollback")]
        result = "rolled_back"
    else:
        exceptions = [host for host, status in statuses.items() if status != "success"]
        result = "complete_with_exceptions" if exceptions else "complete"
    counts = {status: sum(1 for value in statuses.values() if value == status) for status in STATUSES}
    return {
        "result": result,
        "halted": halt,
        "counts": counts,
        "total": len(endpoints),
        "exceptions": [{"host": host, "status": statuses[host], "class": endpoints[host]["class"],
                        "reason": _exception_reason(endpoints[host], statuses[host])} for host in sorted(exceptions)],
    }


def _exception_reason(endpoint, status):
    if status == "rolled_back":
        return "rolled back: %s" % endpoint["reason"]
    if status == "failed" and endpoint["class"] == "rollback":
        return "rollback failed: %s" % endpoint.get("rollback_failure", endpoint["reason"])
    if status == "failed":
        attempts = endpoint.get("attempts") or 0
        return "still failing after %d redistribution attempt(s): %s" % (attempts, endpoint["reason"]) if attempts \
            else "not redistributed: %s" % endpoint["reason"]
    return endpoint["reason"]


def summary(endpoints):
    """{class: [hosts]} and the counts."""
    classes = {klass: sorted(host for host, e in endpoints.items() if e["class"] == klass) for klass in CLASSES}
    return {"classes": classes, "counts": {klass: len(hosts) for klass, hosts in classes.items()}}


def write(entry, endpoints, label):
    """Limit files and triage.json under <ledger>/<id>/triage/<label>/; returns the directory."""
    directory = os.path.join(entry.path, "triage", label)
    os.makedirs(directory, exist_ok=True)
    for klass, hosts in summary(endpoints)["classes"].items():
        ledger_mod.atomic_write(os.path.join(directory, "%s.limit" % klass), "".join("%s\n" % h for h in hosts))
    statuses = {}
    for host, endpoint in endpoints.items():
        statuses.setdefault(final_status(endpoint), []).append(host)
    if label != "initial":
        for status in ("rolled_back", "failed"):
            ledger_mod.atomic_write(os.path.join(directory, "%s.limit" % status),
                                    "".join("%s\n" % h for h in sorted(statuses.get(status, []))))
    ledger_mod.atomic_write(os.path.join(directory, "triage.json"),
                            json.dumps({"label": label, **summary(endpoints), "endpoints": endpoints},
                                       indent=1, sort_keys=True) + "\n")
    return directory
