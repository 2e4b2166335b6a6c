"""``esd inventory``: which hosts run which package versions and images, and where that drifted from the intent.

**Observed** state per host is the newest audit snapshot of that host in the whole ledger (every
production stage snapshots its targets before and after, see ``esd.audit``), or, with ``--live``, what
``playbooks/audit.yml`` reads from the hosts now.

**Intended** state per host and package (or image) is what the last change order that ran a production
stage on that host for that package meant to leave there, from the stage's playbook and inputs:

=============================  ===========================================================
stage playbook                 intended
=============================  ===========================================================
deploy.yml                     ``software_state`` (default active) of ``software_version``
activate.yml                   the version active
commit.yml                     the version active and committed
rollback.yml, backout.yml      the version *not* active any more (rolled back)
remove.yml                     the package absent
provision, update/commit_image the node running image ``image_family`` ``image_version``
rollback_image.yml             the node not running that image version any more
remove_image.yml               no esd image on the node
=============================  ===========================================================

A host **drifts** when what is observed does not satisfy the intent: a failed endpoint left on the old
version, a manual change after the change order, a host rolled back outside change control.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile

from esd import audit, ledger as ledger_mod, project
from esd.reports import common

SCHEMA = "esd.osp/report/inventory/v1"

_EXPECT_BY_PLAYBOOK = {"activate.yml": "active", "commit.yml": "committed", "rollback.yml": "rolled_back",
                       "backout.yml": "rolled_back", "remove.yml": "absent"}
_IMAGE_PLAYBOOKS = {"provision.yml": "running", "update_image.yml": "running", "commit_image.yml": "running",
                    "rollback_image.yml": "rolled_back", "remove_image.yml": "absent"}


def stage_intent(planned, record):
    """The intent of a production stage as {kind, name, version, expect}, or None."""
    found = _intent(planned, record)
    if found is None:
        return None
    return dict(zip(("kind", "name", "version", "expect"), found))


def _intent(planned, record):
    """(kind, name, version, expectation) of a stage, or None when it does not set an endpoint state."""
    inputs = record.get("inputs_used") or {}
    playbook = os.path.basename(planned.get("playbook") or "")
    if playbook in _IMAGE_PLAYBOOKS and inputs.get("image_family"):
        return "image", inputs["image_family"], inputs.get("image_version"), _IMAGE_PLAYBOOKS[playbook]
    name = inputs.get("software_name")
    if not name:
        return None
    if playbook == "deploy.yml":
        state = inputs.get("software_state") or "active"
        expect = {"active": "active", "committed": "committed", "present": "installed", "absent": "absent",
                  "rolled_back": "rolled_back"}.get(state, state)
    else:
        expect = _EXPECT_BY_PLAYBOOK.get(playbook)
    if not expect:
        return None
    return "package", name, inputs.get("software_version"), expect


def describe_intent(intent):
    kind, name, version, expect = intent["kind"], intent["name"], intent["version"], intent["expect"]
    if kind == "image":
        return {"running": "runs image %s %s" % (name, version), "absent": "runs no esd image",
                "rolled_back": "does not run image %s %s (rolled back)" % (name, version)}[expect]
    return {"active": "%s active" % version, "committed": "%s committed" % version,
            "installed": "%s installed" % version, "absent": "absent",
            "rolled_back": "%s rolled back (not active)" % version}.get(expect, "%s %s" % (version, expect))


def satisfied(intent, observed):
    """Whether an observed snapshot entry of a host meets an intent."""
    if intent["kind"] == "image":
        image = observed.get("image") or {}
        if not observed.get("image_probed", True):
            return True         # not read by this snapshot: nothing to compare
        running = image.get("family") == intent["name"] and image.get("version") == intent["version"]
        if intent["expect"] == "absent":
            return not image
        return not running if intent["expect"] == "rolled_back" else running
    package = (observed.get("packages") or {}).get(intent["name"]) or {}
    active, committed, installed = package.get("active"), package.get("committed"), package.get("installed") or []
    version, expect = intent["version"], intent["expect"]
    if expect == "active":
        return active == version
    if expect == "committed":
        return active == version and committed == version
    if expect == "installed":
        return version in installed
    if expect == "absent":
        return not installed and not active
    if expect == "rolled_back":
        return active != version
    return True


def intents(ledger):
    """{host: {(kind, name): intent}} of the last change order that ran a production stage on the host."""
    found = {}
    for change_order_id in ledger.ids():
        entry = ledger.entry(change_order_id)
        try:
            state = entry.read_state()
        except Exception:  # noqa: BLE001 - an unreadable entry has no intent to compare with
            continue
        for planned, record in common.steps(state):
            if planned["kind"] != "stage" or planned.get("site") != "production" or not record.get("attempts"):
                continue
            intent = _intent(planned, record)
            hosts = record.get("hosts") or {}
            ran = set(hosts.get("ok") or []) | set(hosts.get("failed") or [])
            if os.path.basename(planned.get("playbook") or "") != "backout.yml":
                # A backout runs on the endpoints the triage chose, not on every planned host.
                ran |= set(hosts.get("never_ran") or [])
            when = record.get("finished_at") or record.get("started_at")
            if intent is None or not when:
                continue
            kind, name, version, expect = intent
            for host in ran:
                current = found.setdefault(host, {}).get((kind, name))
                if current is None or current["at"] <= when:
                    found[host][(kind, name)] = {"kind": kind, "name": name, "version": version, "expect": expect,
                                                 "change_order": change_order_id, "stage": planned["id"],
                                                 "at": when, "host_result": "ok" if host in (hosts.get("ok") or [])
                                                 else "failed"}
    return found


def observed_from_ledger(ledger):
    """{host: (snapshot entry, source)} from the newest readable snapshot of each host in the ledger.

    The image comes from the newest snapshot that probed images (image change orders probe them)."""
    newest = {}
    images = {}
    for change_order_id in ledger.ids():
        directory = os.path.join(ledger.root, change_order_id, "audit")
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as handle:
                    snapshot = json.load(handle)
            except (OSError, ValueError):
                continue
            taken = snapshot.get("taken_at") or ""
            for host, data in (snapshot.get("hosts") or {}).items():
                if data.get("error"):
                    continue
                if data.get("image_probed", True) and (host not in images or images[host][1] < taken):
                    images[host] = (data.get("image"), taken)
                if host not in newest or newest[host][1]["taken_at"] < taken:
                    newest[host] = (data, {"source": "snapshot", "change_order": change_order_id,
                                           "stage": snapshot.get("stage"), "when": snapshot.get("when"),
                                           "taken_at": taken})
    for host, (data, source) in newest.items():
        newest[host] = (dict(data, image=images.get(host, (None, None))[0], image_probed=host in images), source)
    return newest


def observed_live(inventory, pattern, project_dir=None, run=None):
    """{host: (snapshot entry, source)} read from the hosts now with playbooks/audit.yml."""
    from esd.stage import run_stage

    project_dir = project_dir or project.project_dir()
    private = tempfile.mkdtemp(prefix="esd-inventory-")
    try:
        result = (run or run_stage)(
            stage_id="inventory", playbook=os.path.join(project_dir, "playbooks", audit.PLAYBOOK), inventory=inventory,
            private_data_dir=os.path.join(private, "live"), extravars={"esd_hosts": pattern, "audit_image": True},
            envvars=project.ansible_environment(project_dir))
        reported = audit.read_results(os.path.join(private, "live"))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    taken = ledger_mod.timestamp()
    hosts = set(reported) | set(result.hosts or {})
    return {host: (audit.normalise_host(reported.get(host), (result.hosts or {}).get(host), result.error),
                   {"source": "live", "change_order": None, "stage": None, "when": None, "taken_at": taken})
            for host in sorted(hosts)}


def fleet_inventory(ledger, live=None, package=None):
    """The inventory report: hosts, versions per package and image, and drift. ``live``: {host: (data, source)}."""
    observed = live if live is not None else observed_from_ledger(ledger)
    wanted = intents(ledger)
    hosts = {}
    versions = {}
    images = {}
    drift = []
    for host in sorted(set(observed) | set(wanted)):
        data, source = observed.get(host, (None, None))
        entry = {"observed": None, "source": source, "packages": {}, "image": None, "intended": [], "drift": []}
        if data is not None and data.get("error"):
            entry["observed"] = {"error": data["error"]}
        elif data is not None:
            entry["observed"] = audit.summarise_host(data)
            for name, pkg in sorted((data.get("packages") or {}).items()):
                if package and name != package:
                    continue
                entry["packages"][name] = {key: pkg.get(key) for key in ("active", "committed", "backups", "installed",
                                                                         "status")}
                if pkg.get("active") or pkg.get("installed"):
                    versions.setdefault(name, {}).setdefault(audit.describe_package(pkg), []).append(host)
            if data.get("image"):
                entry["image"] = data["image"]
                images.setdefault(audit.describe_image(data["image"]), []).append(host)
        for (kind, name), intent in sorted((wanted.get(host) or {}).items()):
            if package and name != package:
                continue
            item = dict(intent, intended=describe_intent(intent))
            if data is None or data.get("error"):
                item["satisfied"] = None
            else:
                item["satisfied"] = satisfied(intent, data)
                if not item["satisfied"]:
                    words = audit.describe_image(data.get("image")) if kind == "image" else \
                        audit.describe_package((data.get("packages") or {}).get(name))
                    found = {"host": host, "kind": kind, "name": name, "observed": words,
                             "intended": item["intended"], "change_order": intent["change_order"],
                             "stage": intent["stage"], "host_result": intent["host_result"],
                             "observed_at": source["taken_at"], "observed_by": source["source"]}
                    entry["drift"].append(found)
                    drift.append(found)
            entry["intended"].append(item)
        hosts[host] = entry
    return {
        "schema": SCHEMA,
        "generated_at": ledger_mod.timestamp(),
        "source": "live" if live is not None else "ledger snapshots",
        "ledger": ledger.root,
        "hosts": hosts,
        "versions": {name: [{"state": state, "count": len(members), "hosts": members}
                            for state, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))]
                     for name, groups in sorted(versions.items())},
        "images": [{"image": image, "count": len(members), "hosts": members}
                   for image, members in sorted(images.items(), key=lambda item: (-len(item[1]), item[0]))],
        "drift": drift,
    }


def _hosts(hosts, shown=5):
    return ", ".join(hosts) if len(hosts) <= shown else "%s ... %s" % (", ".join(hosts[:shown - 1]), hosts[-1])


def render_text(data):
    observed = sum(1 for host in data["hosts"].values() if host["observed"])
    lines = ["Fleet inventory (%s): %d host(s) observed, %d with an intent from a change order" % (
        data["source"], observed, sum(1 for host in data["hosts"].values() if host["intended"]))]
    for name, groups in data["versions"].items():
        lines.append("%s" % name)
        for group in groups:
            lines.append("  %-36s %4d host(s)  %s" % (group["state"], group["count"], _hosts(group["hosts"])))
    if data["images"]:
        lines.append("images")
        for group in data["images"]:
            lines.append("  %-36s %4d host(s)  %s" % (group["image"], group["count"], _hosts(group["hosts"])))
    unread = [host for host, entry in data["hosts"].items() if entry["observed"] and entry["observed"].get("error")]
    if unread:
        lines.append("not read: %s" % _hosts(unread))
    if data["drift"]:
        lines.append("DRIFT (%d):" % len(data["drift"]))
        for item in data["drift"]:
            lines.append("  %s %s: runs %s; %s %s intended %s (the host %s there; observed %s at %s)" % (
                item["host"], item["name"], item["observed"], item["change_order"], item["stage"], item["intended"],
                "failed" if item["host_result"] == "failed" else "succeeded", item["observed_by"],
                item["observed_at"]))
    else:
        lines.append("No drift: every host runs what the last change order that touched it intended.")
    return "\n".join(lines) + "\n"


def render_csv(data):
    """One row per host and package/image: host,kind,name,observed,intended,change_order,stage,drift."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["host", "kind", "name", "observed", "intended", "change_order", "stage", "drift", "observed_at"])
    for host, entry in data["hosts"].items():
        rows = {}
        for name, pkg in entry["packages"].items():
            rows[("package", name)] = [host, "package", name, audit.describe_package(pkg), "", "", "", "", ""]
        if entry["image"]:
            rows[("image", entry["image"].get("family"))] = [host, "image", entry["image"].get("family"),
                                                             audit.describe_image(entry["image"]), "", "", "", "", ""]
        for item in entry["intended"]:
            key = (item["kind"], item["name"])
            row = rows.setdefault(key, [host, item["kind"], item["name"], "absent" if item["kind"] == "package"
                                        else "no esd image", "", "", "", "", ""])
            row[4:8] = [item["intended"], item["change_order"], item["stage"],
                        "" if item["satisfied"] is None else ("no" if item["satisfied"] else "yes")]
        for row in rows.values():
            row[8] = (entry["source"] or {}).get("taken_at") or ""
            writer.writerow(row)
    return buffer.getvalue()


RENDERERS = {"text": render_text, "json": lambda data: json.dumps(data, indent=2, default=str) + "\n",
             "csv": render_csv}
