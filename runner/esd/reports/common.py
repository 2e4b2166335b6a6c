"""What every report reads from a ledger entry: times, steps, stage attempts and their events, problems."""

from __future__ import annotations

import datetime
import glob
import json
import os

from esd import ledger as ledger_mod

UTC = datetime.timezone.utc


def parse_time(value):
    """An ISO 8601 timestamp from the ledger as an aware datetime (UTC when it carries no zone), or None."""
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(start, end):
    start, end = parse_time(start), parse_time(end)
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def human_duration(seconds):
    """``35.4 s``, ``12 min 5 s``, ``3 h 02 min``, ``2 d 4 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%d min %d s" % (minutes, sec)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return "%d h %02d min" % (hours, minutes)
    days, hours = divmod(hours, 24)
    return "%d d %d h" % (days, hours)


def percent(part, whole, digits=1):
    """``part`` of ``whole`` in percent, rounded; None when there is nothing to measure."""
    if not whole:
        return None
    return round(100.0 * part / whole, digits)


def due_moment(requested_completion):
    """The end of the requested completion day (the day is inclusive), in UTC."""
    day = datetime.date.fromisoformat(str(requested_completion)[:10])
    return datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), tzinfo=UTC)


def steps(state):
    """``[(planned, record)]`` in plan order."""
    return [(planned, state["steps"].get(planned["id"], {})) for planned in state["plan"]["steps"]]


def stage_hosts(planned):
    if planned.get("limit_hosts") is not None:
        return list(planned["limit_hosts"])
    if planned.get("hosts") is not None:
        return list(planned["hosts"])
    return None


def attempt_dirs(entry, step_id):
    """``[(attempt number, private data dir)]`` of a stage, oldest first."""
    base = os.path.join(entry.path, "stages", step_id)
    found = []
    for path in glob.glob(os.path.join(base, "attempt-*")):
        try:
            found.append((int(path.rsplit("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


def read_events(private_data_dir):
    """The ansible-runner job events of one attempt, in order (an interrupted write is skipped)."""
    ident = os.path.basename(private_data_dir.rstrip(os.sep))
    directory = os.path.join(private_data_dir, "artifacts", ident, "job_events")
    events = []
    for path in glob.glob(os.path.join(directory, "*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                events.append(json.load(handle))
        except (OSError, ValueError):
            continue
    events.sort(key=lambda event: event.get("counter") or 0)
    return events


def audit_records(entry):
    try:
        return entry.read_audit()
    except Exception:  # noqa: BLE001 - a report still renders when the log is unreadable; verify says why
        return []


def read_problems(entry):
    """Problem records of this change order (esd.problems writes them to ``problems.jsonl`` in the entry).

    Each line is ``{"action", "at", "record"}`` (a bare record is accepted too); the latest line of a record
    id wins. A record is open unless its ``status`` is closed/resolved/cancelled.
    """
    records = {}
    path = os.path.join(entry.path, "problems.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                record = item.get("record") if isinstance(item, dict) and isinstance(item.get("record"), dict) else item
                if isinstance(record, dict):
                    records[record.get("id") or "line-%d" % number] = record
    result = []
    for key, record in records.items():
        status = str(record.get("status") or "open").lower()
        hosts = record.get("hosts") or ([record["host"]] if record.get("host") else [])
        title = record.get("title") or record.get("summary") or record.get("reason") or record.get("message") or ""
        if record.get("class"):
            title = "%s: %s" % (record["class"], title)
        result.append({"id": record.get("id") or key, "status": status,
                       "open": status not in ("closed", "resolved", "cancelled", "canceled"),
                       "title": title, "hosts": hosts, "stage": record.get("stage"),
                       "opened_at": record.get("opened_at"),
                       "workaround": record.get("workaround") or record.get("resolution"), "url": record.get("url")})
    return sorted(result, key=lambda problem: problem["id"])


def write_report_file(entry, name, content):
    directory = os.path.join(entry.path, "report")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    ledger_mod.atomic_write(path, content)
    return path


def json_dump(data):
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def artifact_outputs(state):
    """Every artifact a stage reported (build outputs with a sha256), with the stage that made it."""
    found = []
    for planned, record in steps(state):
        if planned["kind"] != "stage" or record.get("status") != "succeeded":
            continue
        for name, output in (record.get("outputs") or {}).items():
            if isinstance(output, dict) and output.get("sha256"):
                found.append({"stage": planned["id"], "kind": name, **output})
    return found
