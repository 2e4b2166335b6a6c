"""Release notes of a change order that builds or releases a version, from the change order and build metadata.

Sources: the registered change order (title, description, attachments, what it updates, backout plan),
the artifact the build stage reported and the manifest embedded in it (description, builder, build time,
source digest, virus-scan engine and verdict, requires/updates, file count), the test report (conclusion,
backout rehearsal, defects), the production results, open problem records and the known errors recorded
at closure. **Known errors** are: defects still outstanding after testing, endpoints whose latest
production result is a failure (grouped by cause, with the workaround the runner can name), open problem
records and the known errors recorded with ``esd close --known-error``.
"""

from __future__ import annotations

import json
import os
import tarfile

import yaml

from esd.reports import common, evaluation, html, markdown as md, status as status_mod, testing

SCHEMA = "esd.osp/report/release-notes/v1"
MANIFEST_NAME = "MANIFEST.json"     # the first member of an esd.osp package (esd.osp.package)


def read_manifest(path):
    """The manifest embedded in an esd.osp package artifact, or None when it cannot be read."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            first = archive.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                return None
            return json.loads(archive.extractfile(first).read().decode("utf-8"))
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return None


def _change_order_document(entry):
    try:
        with open(entry.change_order_path, encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _workaround(failure):
    """What an operator can do about an endpoint failure, from its class."""
    status, phase = failure.get("result"), failure.get("phase")
    if status == "unreachable" or phase in ("fetch", "download", "verify"):
        return ("nothing changed on the host: make it reachable / fix the download, then `esd run` the change "
                "order again to redistribute to it")
    if phase == "rollback_health_check":
        return ("the host was rolled back, but the version it went back to fails its health check: it needs "
                "hands-on repair (a manual problem), not another rollback")
    if phase in ("health_check", "activate", "post_activate"):
        return ("the package reverted the host to its previous version; investigate the health check before "
                "retrying")
    return "inspect the stage's job events in the ledger; roll the host back with a rollback_update change order"


def release_notes(state, entry):
    change_order = state["change_order"]
    document = _change_order_document(entry)
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    software, image = spec.get("software") or {}, spec.get("image") or {}
    artifacts = common.artifact_outputs(state)
    built = next((a for a in artifacts if a["kind"] in ("artifact", "image", "media")), None)
    manifest = None
    if built and built["kind"] == "artifact":
        manifest = read_manifest(built.get("path"))
    elif built and built["kind"] == "image":
        manifest = image_manifest(built)
    image_facts = _image_facts(manifest) if manifest and manifest.get("format", "").startswith("esd.osp/image") \
        else None
    name = (built or {}).get("name") or software.get("name") or image.get("family")
    version = (built or {}).get("version") or software.get("version") or image.get("version")
    applicable = bool(name and version)

    tests = testing.test_report(state, entry)
    facts = evaluation.facts(entry, state)
    status = status_mod.status_report(state, entry)

    known = []
    for defect in tests["defects"]:
        if defect["status"] == "outstanding":
            known.append({"source": "test", "error": "%s%s: %s" % (defect["check"], " on %s" % defect["host"]
                                                                  if defect["host"] else "", defect["message"]),
                          "hosts": [defect["host"]] if defect["host"] else [], "workaround": None})
    failures = {}
    for host, endpoint in status["endpoints"].items():
        if endpoint["result"] != "ok":
            key = (endpoint["result"], endpoint.get("phase"), endpoint.get("message"))
            failures.setdefault(key, []).append(host)
    for (result, phase, message), hosts in sorted(failures.items(), key=lambda item: -len(item[1])):
        known.append({"source": "production", "error": "%s%s: %s" % (result, " in phase %s" % phase if phase else "",
                                                                     message),
                      "hosts": hosts, "workaround": _workaround({"result": result, "phase": phase})})
    for problem in status["open_problems"]:
        known.append({"source": "problem %s" % problem["id"], "error": problem["title"], "hosts": problem["hosts"],
                      "workaround": problem.get("workaround")})
    for item in (state.get("closure") or {}).get("known_errors") or []:
        known.append({"source": "closure", "error": item["error"], "hosts": [], "workaround": item.get("workaround")})

    manifest = manifest or {}
    scan = manifest.get("scan") or {}
    build = manifest.get("build") or {}
    updates = manifest.get("updates") or ([software["updates"]] if software.get("updates") else [])
    if image_facts and image_facts["parent"]:
        updates = [image_facts["parent"]]
    return {
        "schema": SCHEMA,
        "change_order": change_order["id"],
        "applicable": applicable,
        "name": name,
        "version": version,
        "kind": "image" if change_order["category"] == "OSP" else "package",
        "title": change_order["title"],
        "description": metadata.get("description") or "",
        "package_description": manifest.get("description"),
        "requester": change_order["requester"],
        "status": state["status"],
        "released_at": state.get("finished_at") if state["status"] == "succeeded" else None,
        "updates": updates,
        "requires": manifest.get("requires") or [],
        "artifact": {
            "sha256": (built or {}).get("sha256") or software.get("sha256") or image.get("sha256"),
            "size": _int((built or {}).get("size")),
            "path": (built or {}).get("path") or software.get("artifact") or image.get("artifact"),
            "builder": (built or {}).get("builder") or build.get("builder") or software.get("builder")
            or image.get("builder"),
            "build_time": _int(build.get("time") if "time" in build else build.get("source_date_epoch")),
            "source_digest": build.get("source_digest") or build.get("spec_sha256") or (built or {}).get("source_digest"),
            "files": len(manifest.get("files") or []) or (manifest.get("rootfs") or {}).get("files") or None,
            "scan": {"engine": scan.get("engine") or (built or {}).get("scan_engine") or None,
                     "clean": scan.get("clean"), "infected": scan.get("infected") or []} if scan or built else None,
            "unit_test": (built or {}).get("unit_test"),
        },
        "image": image_facts,
        "attachments": [{"name": a.get("name"), "kind": a.get("kind"), "path": a.get("path"), "url": a.get("url")}
                        for a in metadata.get("attachments") or [] if isinstance(a, dict)],
        "backout": {"strategy": (spec.get("backout") or {}).get("strategy"),
                    "plan": (spec.get("backout") or {}).get("plan"), "rehearsed": tests["backout"]["rehearsed"]},
        "test": {"conclusion": tests["conclusion"], "hosts": tests["scope"]["hosts"], "rework": tests["rework"],
                 "defects": len(tests["defects"])},
        "deployment": {"endpoints": facts["production"]["endpoints"], "ok": facts["production"]["ok"],
                       "success_percent": facts["production"]["success_percent"],
                       "rolled_back": facts["production"]["rolled_back"]},
        "known_errors": known,
        "generated_at": tests["generated_at"],
    }


def image_manifest(built):
    """The manifest of an OS image the build stage reported (esd.osp.image returns it whole), or None."""
    manifest = built.get("manifest")
    if isinstance(manifest, dict):
        return manifest
    path = built.get("manifest_path")
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _image_facts(manifest):
    """What an image's manifest says beyond the artifact: OS, package count, parent, SBOM diff, hardening."""
    parent = manifest.get("parent") if isinstance(manifest.get("parent"), dict) else None
    diff = manifest.get("sbom_diff") if isinstance(manifest.get("sbom_diff"), dict) else None
    hardening = manifest.get("hardening") if isinstance(manifest.get("hardening"), dict) else None
    return {
        "os": (manifest.get("os") or {}).get("pretty_name"),
        "packages": (manifest.get("packages") or {}).get("count"),
        "parent": "%s %s" % (parent.get("family"), parent.get("version")) if parent else None,
        "changes": {"added": diff.get("added") or [], "removed": diff.get("removed") or [],
                    "changed": diff.get("changed") or [], "unchanged": diff.get("unchanged")} if diff else None,
        "hardening": {"profile": hardening.get("profile"), "passed": hardening.get("passed"),
                      "failed": hardening.get("failed")} if hardening else None,
    }


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def render_markdown(notes):
    t, c = md.text, md.code
    if not notes["applicable"]:
        return md.document(md.heading("Release notes: change order %s" % t(notes["change_order"]), 1),
                           "Not applicable: this change order does not build or release a version.")
    artifact = notes["artifact"]
    scan = artifact.get("scan") or {}
    blocks = [md.heading("%s %s — release notes" % (t(notes["name"]), t(notes["version"])), 1),
              "%s (change order %s, %s, status **%s**)" % (t(notes["title"]), c(notes["change_order"]),
                                                           t(notes["kind"]), t(notes["status"]))]
    if notes["description"] or notes["package_description"]:
        blocks.append(t(notes["description"] or notes["package_description"]))
    blocks += [md.heading("What is in it"), md.key_values([
        ("Name and version", "%s %s" % (t(notes["name"]), t(notes["version"]))),
        ("Package description", t(notes["package_description"]) if notes["package_description"] else None),
        ("Updates", t(", ".join(notes["updates"])) if notes["updates"] else "nothing (a new install)"),
        ("Requires", t(", ".join(notes["requires"])) if notes["requires"] else "nothing"),
        ("sha256", c(artifact["sha256"])), ("Size", "%s bytes" % artifact["size"] if artifact["size"] else None),
        ("Files", str(artifact["files"]) if artifact["files"] else None),
        ("Built by", t(artifact["builder"])), ("Source digest", c(artifact["source_digest"])
                                               if artifact["source_digest"] else None),
        ("Virus scan", "%s: %s" % (t(scan.get("engine")), "clean" if scan.get("clean") else
                                   "INFECTED: %s" % t(", ".join(scan.get("infected") or [])))
         if scan.get("engine") else None),
        ("Unit test", t(artifact["unit_test"]) if artifact["unit_test"] else None),
        *[(label, t(value)) for label, value in _image_lines(notes["image"])],
        ("Released", t(notes["released_at"]) if notes["released_at"] else "not yet"),
    ])]
    changes = (notes["image"] or {}).get("changes")
    if changes:
        rows = [tuple(t(cell) for cell in row) for row in _change_rows(changes)]
        blocks += [md.heading("What changed since %s" % t(notes["image"]["parent"])),
                   md.table(["package", "change", "from", "to"], rows) if rows else "No package changed."]
        if changes["unchanged"] is not None:
            blocks.append("%s package(s) unchanged." % changes["unchanged"])
    blocks += [md.heading("Testing and backout"), md.bullets([
        "Test conclusion: **%s** on %s; rework %d; defects found %d" % (
            t(notes["test"]["conclusion"]), t(", ".join(notes["test"]["hosts"])) or "no hosts",
            notes["test"]["rework"], notes["test"]["defects"]),
        "Backout: %s — %s (rehearsed: %s)" % (t(notes["backout"]["strategy"]), t(notes["backout"]["plan"]),
                                              "-" if notes["backout"]["rehearsed"] is None else
                                              ("yes" if notes["backout"]["rehearsed"] else "no"))])]
    if notes["deployment"]["endpoints"]:
        blocks.append("Deployed to %d of %d endpoints (%s%%)%s." % (
            notes["deployment"]["ok"], notes["deployment"]["endpoints"], notes["deployment"]["success_percent"],
            "; rolled back on %s" % t(", ".join(notes["deployment"]["rolled_back"]))
            if notes["deployment"]["rolled_back"] else ""))
    blocks.append(md.heading("Known errors and workarounds"))
    if notes["known_errors"]:
        blocks.append(md.table(["known error", "hosts", "source", "workaround"], [
            (t(k["error"]), t(_hosts(k["hosts"])), t(k["source"]), t(k["workaround"] or "none known"))
            for k in notes["known_errors"]]))
    else:
        blocks.append("None known.")
    if notes["attachments"]:
        blocks += [md.heading("Attachments"), md.bullets([
            "%s (%s): %s" % (t(a["name"]), t(a["kind"]), c(a["path"] or a["url"])) for a in notes["attachments"]])]
    return md.document(*blocks)


def _image_lines(image):
    """(label, value) lines an OS image adds to "What is in it"."""
    if not image:
        return []
    hardening = image["hardening"]
    return [(label, value) for label, value in (
        ("Operating system", image["os"]), ("Packages", image["packages"]),
        ("Hardening", "%s: %s passed, %s failed" % (hardening["profile"], hardening["passed"], hardening["failed"])
         if hardening else None)) if value is not None]


def _change_rows(changes):
    return ([(item["name"], "added", "-", item.get("version")) for item in changes["added"]]
            + [(item["name"], "removed", item.get("version"), "-") for item in changes["removed"]]
            + [(item["name"], "changed", item.get("from"), item.get("to")) for item in changes["changed"]])


def _hosts(hosts, shown=6):
    return ", ".join(hosts) if len(hosts) <= shown else "%s and %d more" % (", ".join(hosts[:shown]),
                                                                           len(hosts) - shown)


def render_text(notes):
    return render_markdown(notes)


def render_html(notes):
    h = html
    if not notes["applicable"]:
        return h.page("Release notes: %s" % notes["change_order"],
                      h.para("Not applicable: this change order does not build or release a version."))
    artifact = notes["artifact"]
    scan = artifact.get("scan") or {}
    body = [h.para("%s — change order %s, %s, status %s" % (notes["title"], notes["change_order"], notes["kind"],
                                                            notes["status"]))]
    if notes["description"] or notes["package_description"]:
        body.append(h.para(notes["description"] or notes["package_description"]))
    body.append(h.cards([
        ("Test", notes["test"]["conclusion"], "ok" if notes["test"]["conclusion"] == "pass" else "warn"),
        ("Backout rehearsed", "-" if notes["backout"]["rehearsed"] is None else
         ("yes" if notes["backout"]["rehearsed"] else "no"), "ok" if notes["backout"]["rehearsed"] else "muted"),
        ("Deployed", "%d of %d" % (notes["deployment"]["ok"], notes["deployment"]["endpoints"])
         if notes["deployment"]["endpoints"] else "-", "info"),
        ("Known errors", len(notes["known_errors"]), "warn" if notes["known_errors"] else "ok")]))
    body.append(h.section("What is in it", h.key_values([
        ("Name and version", "%s %s" % (notes["name"], notes["version"])),
        ("Package description", notes["package_description"]),
        ("Updates", ", ".join(notes["updates"]) or "nothing (a new install)"),
        ("Requires", ", ".join(notes["requires"]) or "nothing"),
        ("sha256", h.code(artifact["sha256"])), ("Size", "%s bytes" % artifact["size"] if artifact["size"] else None),
        ("Files", artifact["files"]), ("Built by", artifact["builder"]),
        ("Source digest", h.code(artifact["source_digest"]) if artifact["source_digest"] else None),
        ("Virus scan", "%s: %s" % (scan.get("engine"), "clean" if scan.get("clean") else "INFECTED")
         if scan.get("engine") else None),
        ("Unit test", artifact["unit_test"]), *_image_lines(notes["image"]),
        ("Released", notes["released_at"] or "not yet")])))
    changes = (notes["image"] or {}).get("changes")
    if changes:
        rows = _change_rows(changes)
        body.append(h.section("What changed since %s" % notes["image"]["parent"], h.join([
            h.table(["package", "change", "from", "to"], rows) if rows else h.para("No package changed."),
            h.para("%s package(s) unchanged." % changes["unchanged"]) if changes["unchanged"] is not None else ""])))
    body.append(h.section("Testing and backout", h.key_values([
        ("Test conclusion", notes["test"]["conclusion"]), ("Test hosts", ", ".join(notes["test"]["hosts"]) or "-"),
        ("Rework", notes["test"]["rework"]), ("Defects found", notes["test"]["defects"]),
        ("Backout strategy", notes["backout"]["strategy"]), ("Backout plan", notes["backout"]["plan"]),
        ("Rolled back endpoints", ", ".join(notes["deployment"]["rolled_back"]) or "none")])))
    body.append(h.section("Known errors and workarounds", h.table(
        ["known error", "hosts", "source", "workaround"],
        [(k["error"], _hosts(k["hosts"]), k["source"], k["workaround"] or "none known") for k in notes["known_errors"]])
        if notes["known_errors"] else h.para("None known.")))
    if notes["attachments"]:
        body.append(h.section("Attachments", h.bullet_list(
            ["%s (%s): %s" % (a["name"], a["kind"], a["path"] or a["url"]) for a in notes["attachments"]])))
    return h.page("%s %s — release notes" % (notes["name"], notes["version"]), h.join(body),
                  subtitle="change order %s" % notes["change_order"], generated=notes["generated_at"])
