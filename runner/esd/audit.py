"""Audit before and after: software-inventory snapshots of a production stage's targets, and their diff.

Every production stage whose hosts are the change order's targets gets a snapshot of those hosts before its
first attempt and after every attempt. Software change orders read them from the stage itself: the runner
passes ``software_inventory=true`` and esd.osp.software returns the host's whole inventory as it found it and
as it left it (one module call per host, no extra run); only hosts on which the module did not run are read
afterwards with ``playbooks/audit.yml``. Image change orders run ``playbooks/audit.yml``
(``esd.osp.software_info`` plus the running image's embedded manifest) on exactly those hosts before and after,
through the same ansible-runner path as a stage (``stages/<step>/attempt-<n>/audit-<when>/``). The result is
kept in the ledger as::

    audit/<step>-before.json   the hosts as the first attempt found them (the baseline; never rewritten)
    audit/<step>-after.json    the hosts after the latest attempt

and each snapshot's sha256 goes into the hash-chained audit log (event ``inventory_snapshot``), so a
snapshot edited afterwards no longer matches its record. A snapshot never fails the change order:
hosts that could not be read are recorded with the reason (``error``).

:func:`diff_host` names what changed on a host between two snapshots (installed, updated, rolled back,
reverted, committed, removed; for the running image: updated, rolled back, downgraded, image changed); reports
and metrics use it, so "rollback" means the same
everywhere: the active version went back to an older version the host already had, or the package's
own auto-revert undid a failed activation during the stage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import traceback

from esd import identity, ledger as ledger_mod

SNAPSHOT_FORMAT = "esd.osp/audit-snapshot/v1"
PLAYBOOK = "audit.yml"
PACKAGE_KEYS = ("active", "committed", "backups", "installed", "status", "digests", "last_change")
WHEN = ("before", "after")

# Change kinds, in the order reports list them.
INSTALLED, UPDATED, DOWNGRADED, ROLLED_BACK, REVERTED, ACTIVATED, COMMITTED, REMOVED, CHANGED, IMAGE = (
    "installed", "updated", "downgraded", "rolled back", "reverted", "activated", "committed", "removed",
    "changed", "image changed")
ROLLBACK_KINDS = (ROLLED_BACK, REVERTED)


def audited_hosts(state, planned, limit=None):
    """The hosts a stage's snapshots cover: its hosts that are change-order targets; None when not audited.

    Only production stages are audited, and only their endpoint targets (``spec.targets.hosts``): depot
    and repository stages do not change what endpoints run. ``limit``: the hosts the stage really runs on
    when they are decided at run time (a backout's endpoints).
    """
    if planned.get("kind") != "stage" or planned.get("site") != "production":
        return None
    hosts = limit if limit is not None else (
        planned.get("limit_hosts") if planned.get("limit_hosts") is not None else planned.get("hosts"))
    targets = set(((state.get("plan") or {}).get("targets") or {}).get("hosts") or [])
    audited = [host for host in hosts or [] if host in targets]
    return audited or None


def snapshot_path(entry, step_id, when):
    return os.path.join(entry.path, "audit", "%s-%s.json" % (step_id, when))


# Snapshots read together with an "after" for the next stage's "before", kept only in this process: they are
# used when that stage starts in the same run (nothing but automatic steps in between), else read again.
_PREFETCHED = {}


def _next_audited(state, planned):
    """The next production stage after ``planned`` if only automatic steps lie between them, else None."""
    steps = state["plan"]["steps"]
    index = next(i for i, step in enumerate(steps) if step["id"] == planned["id"])
    for step in steps[index + 1:]:
        if step["kind"] == "notify":
            continue
        if step["kind"] == "gate" and step.get("automatic") and not (step.get("criteria") or {}).get("soak_seconds"):
            continue
        if step["kind"] == "stage" and not step.get("skip") and audited_hosts(state, step):
            return step
        return None
    return None


def read_by_the_stage(state, planned, limit=None):
    """Whether the stage's own esd.osp.software calls report its targets' inventory (``software_inventory``).

    True for the production stages of software change orders: their playbooks change software only through
    esd.osp.software, which returns the host's whole inventory as it found it and as it left it, so the
    snapshots cost no module call of their own. Image change orders also read the running image: audit.yml.
    """
    return state["change_order"].get("category") != "OSP" and audited_hosts(state, planned, limit) is not None


def stage_inventories(private_data_dir):
    """{host: {"before": [...], "after": [...], "error": str or None}} from esd.osp.software's job events.

    A host on which the module ran more than once (backout.yml) has the first call's before and the last
    call's after.
    """
    from esd.reports.common import read_events

    found = {}
    for event in read_events(private_data_dir):
        if event.get("event") not in ("runner_on_ok", "runner_on_failed"):
            continue
        data = event.get("event_data") or {}
        action = data.get("resolved_action") or data.get("task_action") or ""
        inventory = (data.get("res") or {}).get("inventory")
        host = data.get("host")
        if not host or action not in ("esd.osp.software", "software") or not isinstance(inventory, dict):
            continue
        record = found.setdefault(host, {"before": None, "after": None, "error": None})
        if record["before"] is None and "before" in inventory:
            record["before"] = inventory.get("before")
        if "after" in inventory:
            record["after"] = inventory.get("after")
        record["error"] = inventory.get("error") or record["error"]
    return found


def _read_hosts(entry, step_id, attempt, when, hosts, probe_image, *, run, inventory, envvars, project_dir,
                console):
    """Run audit.yml on ``hosts``; {host: snapshot entry} (a host not read carries the reason)."""
    outputs, outcomes, error = {}, {}, None
    private_data_dir = os.path.join(entry.stage_dir(step_id, attempt), "audit-%s" % when)
    try:
        result = run(stage_id="%s.audit_%s" % (step_id, when),
                     playbook=os.path.join(project_dir, "playbooks", PLAYBOOK), inventory=inventory,
                     private_data_dir=private_data_dir,
                     extravars={"esd_hosts": "all", "esd_change_order": entry.id, "audit_image": probe_image},
                     envvars=envvars, hosts=hosts, limit_hosts=hosts)
        outputs = read_results(private_data_dir)
        outcomes = result.hosts or {}
        error = result.error
    except Exception as exc:  # noqa: BLE001 - an audit problem must never stop a production change
        error = "the audit run raised %s: %s" % (type(exc).__name__, exc)
        if console is not None:
            console.info("    audit %s %s failed: %s" % (when, step_id, traceback.format_exc(limit=3)))
    return {host: normalise_host(outputs.get(host), outcomes.get(host), error, probe_image) for host in hosts}


def _snapshot(entry, step_id, attempt, when, seconds, hosts, **extra):
    return dict({"format": SNAPSHOT_FORMAT, "change_order": entry.id, "stage": step_id, "attempt": attempt,
                 "when": when, "taken_at": ledger_mod.timestamp(), "seconds": round(seconds, 3),
                 "image_probed": False, "hosts": hosts}, **extra)


def _snapshots_from_the_stage(entry, state, planned, attempt, hosts, *, run, inventory, envvars, project_dir,
                              console):
    """Write the stage's before (unless an earlier attempt did) and after snapshots from its own events.

    Hosts on which esd.osp.software did not run in this attempt (unreachable, refused before any change) are
    read once with audit.yml; as the stage's playbooks change software only through esd.osp.software, that read
    stands for their before as well, unless an earlier attempt of the stage reported it.
    """
    step_id = planned["id"]
    before_path = snapshot_path(entry, step_id, "before")
    need_before = not os.path.exists(before_path)
    befores = {}
    if need_before:
        for number in range(1, attempt + 1):
            for host, data in stage_inventories(entry.stage_dir(step_id, number)).items():
                if host in hosts and host not in befores and data["before"] is not None:
                    befores[host] = data
    current = {host: data for host, data in stage_inventories(entry.stage_dir(step_id, attempt)).items()
               if host in hosts and data["after"] is not None}
    unread = [host for host in hosts if host not in current]
    started = time.time()
    read_after = _read_hosts(entry, step_id, attempt, "after", unread, False, run=run, inventory=inventory,
                             envvars=envvars, project_dir=project_dir, console=console) if unread else {}
    seconds = time.time() - started

    def from_module(data, when):
        entry_ = normalise_host({"packages": data[when] or [], "image": None}, image_probed=False)
        if data["error"]:
            entry_["error"] = "esd.osp.software could not read the inventory: %s" % data["error"]
        return entry_

    if need_before:
        hosts_before = {host: from_module(befores[host], "before") if host in befores else read_after[host]
                        if host in read_after else normalise_host(None, None, "esd.osp.software reported no "
                                                                  "inventory before the stage", False)
                        for host in hosts}
        _record(entry, state, before_path, _snapshot(
            entry, step_id, attempt, "before", 0.0, hosts_before, read_with="esd.osp.software",
            read_after_the_stage=sorted(host for host in hosts if host not in befores)), console)
    hosts_after = {host: from_module(current[host], "after") if host in current else read_after[host]
                   for host in hosts}
    return _record(entry, state, snapshot_path(entry, step_id, "after"), _snapshot(
        entry, step_id, attempt, "after", seconds, hosts_after, read_with="esd.osp.software",
        read_with_audit_playbook=unread), console)


def take_snapshot(entry, state, planned, when, attempt, *, run, inventory, envvars, project_dir, console=None,
                  limit=None):
    """Snapshot the stage's targets ``before``/``after`` an attempt; return the snapshot, or None when not audited.

    ``run`` is the engine's stage runner (``esd.stage.run_stage``). The first attempt's ``before`` is the
    baseline: later attempts do not replace it. An ``after`` also reads the next stage's hosts when only
    automatic steps (notifications, an automatic go/no-go without soak time) separate the two stages, and
    that stage's ``before`` uses it if it starts in this same run: one audit run between two waves.
    """
    hosts = audited_hosts(state, planned, limit)
    if not hosts:
        return None
    if read_by_the_stage(state, planned, limit):
        if when == "before":
            return None         # esd.osp.software reads it as it starts, on every host
        return _snapshots_from_the_stage(entry, state, planned, attempt, hosts, run=run, inventory=inventory,
                                         envvars=envvars, project_dir=project_dir, console=console)
    step_id = planned["id"]
    path = snapshot_path(entry, step_id, when)
    if when == "before" and os.path.exists(path):
        return None
    probe_image = state["change_order"].get("category") == "OSP"
    prefetched = _PREFETCHED.pop((entry.path, step_id), None) if when == "before" else None
    if prefetched is not None and set(prefetched["hosts"]) >= set(hosts):
        snapshot = dict(prefetched, stage=step_id, attempt=attempt, when=when, seconds=0.0,
                        hosts={host: prefetched["hosts"][host] for host in hosts})
        return _record(entry, state, path, snapshot, console)
    following = _next_audited(state, planned) if when == "after" else None
    extra = [host for host in audited_hosts(state, following) or [] if host not in hosts] if following else []
    started = time.time()
    # Software change orders cannot change the running image: probe it only for image change orders.
    read = _read_hosts(entry, step_id, attempt, when, hosts + extra, probe_image, run=run, inventory=inventory,
                       envvars=envvars, project_dir=project_dir, console=console)
    snapshot = {
        "format": SNAPSHOT_FORMAT,
        "change_order": entry.id,
        "stage": step_id,
        "attempt": attempt,
        "when": when,
        "taken_at": ledger_mod.timestamp(),
        "seconds": round(time.time() - started, 3),
        "image_probed": probe_image,
        "hosts": {host: read[host] for host in hosts},
    }
    if following is not None:
        _PREFETCHED[(entry.path, following["id"])] = dict(
            snapshot, read_with="%s-%s" % (step_id, when),
            hosts={host: read[host] for host in audited_hosts(state, following)})
    return _record(entry, state, path, snapshot, console)


def _record(entry, state, path, snapshot, console):
    content = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ledger_mod.atomic_write(path, content)
    unread = sorted(host for host, data in snapshot["hosts"].items() if data.get("error"))
    entry.append_audit("inventory_snapshot", identity.SYSTEM, {
        "stage": snapshot["stage"], "attempt": snapshot["attempt"], "when": snapshot["when"],
        "file": os.path.relpath(path, entry.path), "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
        "hosts": len(snapshot["hosts"]), "unread": len(unread), "seconds": snapshot["seconds"],
        "read_with": snapshot.get("read_with")}, state=state)
    if console is not None:
        console.info("    audit: software inventory of %d host(s) %s %s (%s%s)" % (
            len(snapshot["hosts"]), snapshot["when"], snapshot["stage"],
            ("read with %s" % snapshot["read_with"] if snapshot.get("read_with") else "%.1fs" % snapshot["seconds"])
            + (", %d read with audit.yml in %.1fs" % (len(snapshot["read_with_audit_playbook"]), snapshot["seconds"])
               if snapshot.get("read_with_audit_playbook") else ""),
            ", %d unread" % len(unread) if unread else ""))
    return snapshot


def read_results(private_data_dir):
    """{host: {packages: [...], image: {...} or None}} from the job events of an audit.yml run."""
    from esd.reports.common import read_events

    found = {}
    for event in read_events(private_data_dir):
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        result = data.get("res") or {}
        host = data.get("host")
        action = data.get("resolved_action") or data.get("task_action") or ""
        if not host:
            continue
        if action.endswith("software_info") and "packages" in result:
            found.setdefault(host, {"packages": [], "image": None})["packages"] = result["packages"]
        elif action.endswith("image_node_info"):
            node = next((n for n in result.get("nodes") or [] if n.get("name") == host), None)
            if node and node.get("active"):
                active, previous = node["active"], node.get("previous") or {}
                found.setdefault(host, {"packages": [], "image": None})["image"] = {
                    "family": active.get("family"), "version": active.get("version"),
                    "parent": previous.get("version"), "slot": active.get("slot"), "status": node.get("status")}
        elif action.endswith("slurp") and result.get("content") and \
                not (found.get(host) or {}).get("image"):
            try:
                manifest = json.loads(base64.b64decode(result["content"]).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                manifest = {"family": None, "version": None, "error": "unreadable /etc/esd/image.json"}
            parent = manifest.get("parent") if isinstance(manifest.get("parent"), dict) else {}
            image = {"family": manifest.get("family"), "version": manifest.get("version"),
                     "parent": parent.get("version")}
            if manifest.get("error"):
                image["error"] = manifest["error"]
            found.setdefault(host, {"packages": [], "image": None})["image"] = image
    return found


def normalise_host(reported, outcome=None, run_error=None, image_probed=True):
    """One host's snapshot entry: {packages: {name: {...}}, image: {...} or None, image_probed, error}."""
    if not isinstance(reported, dict):
        if outcome is not None and getattr(outcome, "status", None) in ("failed", "unreachable"):
            why = "%s: %s" % (outcome.status, outcome.message)
        else:
            why = run_error or "the audit reported nothing for this host"
        return {"packages": {}, "image": None, "image_probed": image_probed, "error": why}
    packages = {}
    for package in reported.get("packages") or []:
        if isinstance(package, dict) and package.get("name"):
            packages[package["name"]] = {key: package.get(key) for key in PACKAGE_KEYS}
    image = reported.get("image") if isinstance(reported.get("image"), dict) else None
    return {"packages": packages, "image": image, "image_probed": image_probed, "error": None}


def read_snapshot(entry, step_id, when):
    try:
        with open(snapshot_path(entry, step_id, when), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def stage_snapshots(entry, state):
    """``[(planned step, before, after)]`` for every production stage with at least one snapshot, in plan order."""
    found = []
    for planned in state["plan"]["steps"]:
        if planned.get("kind") != "stage" or planned.get("site") != "production":
            continue
        before = read_snapshot(entry, planned["id"], "before")
        after = read_snapshot(entry, planned["id"], "after")
        if before or after:
            found.append((planned, before, after))
    return found


# --- what changed ---------------------------------------------------------------------------------------

_VERSION_PART = re.compile(r"(\d+|[A-Za-z]+)")


def version_key(version):
    """Order versions like esd.osp.software does: 1.10 > 1.9, 1.0 > 1.0~rc1."""
    main, tilde, pre = str(version).partition("~")
    key = [(0, int(part)) if part.isdigit() else (1, part) for part in _VERSION_PART.findall(main)]
    return (key, 0 if tilde else 1, pre)


def describe_package(package):
    """A package's state in a few words: ``1.1.0 committed``, ``1.1.0 active (backup 1.0.0)``, ``absent``."""
    if not package or not (package.get("installed") or package.get("active")):
        return "absent"
    active, committed = package.get("active"), package.get("committed")
    backups = [version for version in package.get("backups") or [] if version != active]
    if active and committed == active:
        text = "%s committed" % active
    elif active:
        text = "%s active, uncommitted" % active
    else:
        text = "staged %s" % ", ".join(package.get("installed") or [])
    if backups:
        text += " (backup %s)" % ", ".join(backups)
    return text


def describe_image(image):
    if not image:
        return "no esd image"
    if image.get("error"):
        return "unknown image (%s)" % image["error"]
    return "%s %s" % (image.get("family"), image.get("version"))


def _same(before, after):
    keys = ("active", "committed", "backups", "installed")
    return all(sorted(before.get(k) or []) == sorted(after.get(k) or []) if k in ("backups", "installed")
               else before.get(k) == after.get(k) for k in keys)


def diff_host(before, after):
    """What changed on one host between two snapshot entries: ``[{package, kind, before, after}]``."""
    if not before or not after or before.get("error") or after.get("error"):
        return []
    changes = []
    before_packages, after_packages = before.get("packages") or {}, after.get("packages") or {}
    for name in sorted(set(before_packages) | set(after_packages)):
        old, new = before_packages.get(name) or {}, after_packages.get(name) or {}
        kind = _package_change(old, new)
        if kind:
            changes.append({"package": name, "kind": kind, "before": describe_package(old),
                            "after": describe_package(new)})
    if before.get("image_probed", True) and after.get("image_probed", True):
        old_image, new_image = before.get("image"), after.get("image")
        kind = _image_change(old_image or {}, new_image or {})
        if kind:
            changes.append({"package": None, "kind": kind, "before": describe_image(old_image),
                            "after": describe_image(new_image)})
    return changes


def _image_change(old, new):
    """Within one family: updated, rolled back (to the image it came from: the node's previous A/B slot, or the
    parent the image was built from) or downgraded; another family, or none before or after: image changed."""
    if (old.get("family"), old.get("version")) == (new.get("family"), new.get("version")):
        return None
    if not (old.get("family") and old.get("family") == new.get("family") and old.get("version") and new.get("version")):
        return IMAGE
    if version_key(new["version"]) > version_key(old["version"]):
        return UPDATED
    return ROLLED_BACK if new["version"] == old.get("parent") else DOWNGRADED


def _package_change(old, new):
    old_active, new_active = old.get("active"), new.get("active")
    if _same(old, new):
        last_old, last_new = old.get("last_change"), new.get("last_change")
        if last_new and last_new != last_old and last_new.get("result") == "reverted":
            return REVERTED
        return None
    if not (old.get("installed") or old_active) and (new.get("installed") or new_active):
        return INSTALLED
    if (old.get("installed") or old_active) and not (new.get("installed") or new_active):
        return REMOVED
    if old_active != new_active:
        if new_active is None:
            return CHANGED
        if old_active is None:
            return ACTIVATED
        newer = version_key(new_active) > version_key(old_active)
        if newer:
            return UPDATED
        kept = new_active in (old.get("installed") or []) or new_active in (old.get("backups") or [])
        return ROLLED_BACK if kept else DOWNGRADED
    if new.get("committed") != old.get("committed") and new.get("committed") == new_active:
        return COMMITTED
    return CHANGED


def stage_changes(before, after):
    """{host: [change, ...]} for the hosts of one stage's snapshot pair (hosts without changes left out)."""
    if not before or not after:
        return {}
    changes = {}
    for host in sorted(set(before.get("hosts") or {}) & set(after.get("hosts") or {})):
        found = diff_host(before["hosts"][host], after["hosts"][host])
        if found:
            changes[host] = found
    return changes


def change_order_changes(entry, state):
    """Per host, the change over the whole change order: its first baseline against its latest snapshot.

    Returns ``{"hosts": {host: {before, after, changes, unread}}, "stages": [{stage, attempt_after, taken_before,
    taken_after, seconds, hosts, changes}], "rolled_back": [hosts], "snapshots": n, "seconds": total}``.
    """
    first, last = {}, {}
    stages = []
    rolled_back = set()
    snapshots = 0
    seconds = 0.0
    for planned, before, after in stage_snapshots(entry, state):
        for snapshot in (before, after):
            if snapshot:
                snapshots += 1
                seconds += snapshot.get("seconds") or 0
        for host, data in ((before or {}).get("hosts") or {}).items():
            first.setdefault(host, data)
        for host, data in ((after or {}).get("hosts") or {}).items():
            last[host] = data
        changed = stage_changes(before, after)
        for host, changes in changed.items():
            if any(change["kind"] in ROLLBACK_KINDS for change in changes):
                rolled_back.add(host)
        stages.append({"stage": planned["id"], "taken_before": (before or {}).get("taken_at"),
                       "taken_after": (after or {}).get("taken_at"), "attempt_after": (after or {}).get("attempt"),
                       "seconds": round(((before or {}).get("seconds") or 0) + ((after or {}).get("seconds") or 0), 3),
                       "hosts": len(((before or after) or {}).get("hosts") or {}),
                       "unread": sorted({host for snap in (before, after) if snap
                                         for host, data in snap["hosts"].items() if data.get("error")}),
                       "changes": changed})
    hosts = {}
    for host in sorted(set(first) | set(last)):
        before, after = first.get(host), last.get(host)
        hosts[host] = {
            "before": summarise_host(before), "after": summarise_host(after),
            "changes": diff_host(before, after),
            "unread": bool((before or {}).get("error") or (after or {}).get("error")),
        }
    return {"hosts": hosts, "stages": stages, "rolled_back": sorted(rolled_back), "snapshots": snapshots,
            "seconds": round(seconds, 3)}


def summarise_host(data):
    """{packages: {name: words}, image: words} of one snapshot entry, or None."""
    if not data:
        return None
    if data.get("error"):
        return {"error": data["error"]}
    return {"packages": {name: describe_package(package) for name, package in sorted((data.get("packages") or
                                                                                        {}).items())},
            "image": describe_image(data.get("image")) if data.get("image") else None,
            "image_probed": data.get("image_probed", True)}
