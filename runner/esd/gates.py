"""Gate decisions and the rules that guard them (separation of duties, approver lists, evidence).

The rules, from the seeds:
- the requester of a change order may not give its change-board approval;
- whoever built an artifact may not sign off its test, its UAT or its build;
- production approval requires that the backout was rehearsed at the test site: for a release that
  is the test stage of the same change order (every test-site stage that reports a rehearsal, esd_test);
  for install/update change orders it is the test stage of the change order named in
  ``spec.backout.rehearsed_in``, for the same artifact digest.
"""

from __future__ import annotations

import json
import os

from esd import catalogue, identity
from esd.errors import GateError

PENDING = "pending"
NOT_REACHED = "not_reached"
APPROVED = "approved"
DENIED = "denied"


def builders(state):
    """Identities that built the artifact(s) of this change order: reported by a build stage, or declared."""
    names = set()
    for step_id, step_state in state["steps"].items():
        if step_state.get("kind") != "stage" or step_state.get("status") != "succeeded":
            continue
        for output in (step_state.get("outputs") or {}).values():
            if isinstance(output, dict) and output.get("builder"):
                names.add(output["builder"])
        if step_state.get("site") == "build" and step_state.get("run_by"):
            names.add(step_state["run_by"])
    names.update(state["change_order"].get("declared_builders") or [])
    # Whoever the artifact's own manifest names as its builder, whatever the change order declares.
    names.update(state["change_order"].get("artifact_builders") or [])
    return names


def artifact_builders(spec):
    """The builders recorded inside the artifacts a change order names by local path: the manifest embedded in
    an esd.osp package (``build.builder``) and the manifest beside an OS image archive."""
    from esd.reports.release_notes import read_manifest

    found = []
    path = spec.software.get("artifact")
    if path and os.path.isfile(path):
        manifest = read_manifest(path) or {}
        found.append((manifest.get("build") or {}).get("builder"))
    path = spec.image.get("artifact")
    if path and os.path.isfile(path) and path.endswith(".rootfs.tar.gz"):
        beside = path[:-len(".rootfs.tar.gz")] + ".manifest.json"
        try:
            with open(beside, encoding="utf-8") as handle:
                found.append((json.load(handle).get("build") or {}).get("builder"))
        except (OSError, ValueError, AttributeError):
            pass
    return sorted({name for name in found if isinstance(name, str) and name})


def check_decision(state, gate_id, actor, approve):
    """Raise GateError unless ``actor`` may decide ``gate_id`` now."""
    steps = state["steps"]
    plan_gates = [step["id"] for step in state["plan"]["steps"] if step["kind"] == "gate"]
    if gate_id not in plan_gates:
        raise GateError("change order %s has no gate %s (its gates: %s)"
                        % (state["change_order"]["id"], gate_id, ", ".join(plan_gates) or "none"))
    gate_state = steps[gate_id]
    if gate_state["status"] != PENDING:
        shown = {NOT_REACHED: "not reached yet", APPROVED: "already approved by %s" % gate_state.get("decided_by"),
                 DENIED: "already denied by %s" % gate_state.get("decided_by")}.get(gate_state["status"],
                                                                                   gate_state["status"])
        raise GateError("gate %s of change order %s is not pending: %s"
                        % (gate_id, state["change_order"]["id"], shown))
    planned = next(step for step in state["plan"]["steps"] if step["id"] == gate_id)
    verb = "approve" if approve else "deny"
    requester = state["change_order"]["requester"]
    if "requester" in planned.get("excludes", []) and identity.same(actor, requester):
        raise GateError("separation of duties: %s requested change order %s and may not %s its %s gate"
                        % (actor, state["change_order"]["id"], verb, gate_id))
    if "builder" in planned.get("excludes", []) and identity.among(actor, builders(state)):
        raise GateError("separation of duties: %s built the artifact of change order %s and may not %s its %s "
                        "gate" % (actor, state["change_order"]["id"], verb, gate_id))
    approvers = planned.get("approvers") or []
    if approvers and not identity.among(actor, approvers):
        raise GateError("%s may not decide gate %s of change order %s: its approvers are %s"
                        % (actor, gate_id, state["change_order"]["id"], ", ".join(approvers)))


def _rehearsing_stages(other, digest):
    """The successful test stages of another change order's state that rehearsed the backout of ``digest``."""
    found = []
    for step in other["plan"]["steps"]:
        if step["kind"] != "stage" or step.get("site") != "test":
            continue
        result = other["steps"][step["id"]]
        test = (result.get("outputs") or {}).get("test") or {}
        tested_digest = result.get("inputs_used", {}).get("software_sha256")
        if result.get("status") == "succeeded" and test.get("backout_rehearsed") and \
                (digest is None or tested_digest == digest):
            found.append((step["id"], result))
    return found


def test_record(state, ledger):
    """The passing test record a production promotion outside a release rests on: the test stage of the change
    order named in ``spec.backout.rehearsed_in``, for this change order's digest (promote.yml's
    ``promote_test_record``). Raises GateError when there is none."""
    problems = rehearsal_problems(state, ledger)
    if problems:
        raise GateError("no test record to promote on: %s" % "; ".join(problems))
    rehearsed_in = state["change_order"]["rehearsed_in"]
    digest = state["change_order"].get("artifact_sha256")
    step_id, result = _rehearsing_stages(ledger.entry(rehearsed_in).read_state(), digest)[-1]
    return {"id": "%s-%s" % (rehearsed_in, step_id), "name": "{{ promote_name }}",
            "version": "{{ promote_version }}", "sha256": digest or result["inputs_used"]["software_sha256"],
            "result": "passed"}


def rehearsal_problems(state, ledger):
    """Why production approval is not allowed yet (the backout was not rehearsed), or an empty list."""
    problems = []
    test_steps = [step for step in state["plan"]["steps"] if step["kind"] == "stage" and step.get("site") == "test"]
    if test_steps:
        # Only stages that report a rehearsal (esd_test) decide; a plan with none cannot show a rehearsal.
        rehearsing = [step for step in test_steps if catalogue.rehearses_backout(step)]
        if not rehearsing:
            return ["no test stage of change order %s reports a backout rehearsal (esd_test.backout_rehearsed): %s "
                    "do%s not" % (state["change_order"]["id"], ", ".join(step["id"] for step in test_steps),
                                  "es" if len(test_steps) == 1 else "")]
        for step in rehearsing:
            result = state["steps"][step["id"]]
            test = (result.get("outputs") or {}).get("test") or {}
            if result.get("status") != "succeeded" or not test.get("backout_rehearsed"):
                problems.append("stage %s did not report a rehearsed backout" % step["id"])
        return problems
    rehearsed_in = state["change_order"].get("rehearsed_in")
    if not state["change_order"].get("requires_rehearsal"):
        return problems
    if not rehearsed_in:
        return ["spec.backout.rehearsed_in names no change order whose test stage rehearsed the backout"]
    if not ledger.exists(rehearsed_in):
        return ["spec.backout.rehearsed_in: change order %s is not in the ledger %s" % (rehearsed_in, ledger.root)]
    other = ledger.entry(rehearsed_in).read_state()
    digest = state["change_order"].get("artifact_sha256")
    if not _rehearsing_stages(other, digest):
        problems.append("change order %s has no successful test stage with a rehearsed backout for sha256 %s"
                        % (rehearsed_in, digest))
    return problems
