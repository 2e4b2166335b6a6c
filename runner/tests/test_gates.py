"""Separation of duties and decision rules, on ledger states built by hand."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from esd import engine as engine_mod, gates, ledger as ledger_mod
from esd.engine import Engine
from esd.errors import GateError

from esd_fixtures import REPO, FakeStages, minimal_document, write_document


def state(**steps):
    plan_steps = [
        {"id": "build", "kind": "stage", "site": "build"},
        {"id": "test_signoff", "kind": "gate", "excludes": ["builder"], "approvers": []},
        {"id": "change_board", "kind": "gate", "excludes": ["requester"], "approvers": ["dave", "frank"]},
        {"id": "client_acceptance", "kind": "gate", "excludes": [], "approvers": []},
    ]
    records = {"build": {"kind": "stage", "status": "succeeded", "site": "build", "run_by": "bob",
                         "outputs": {"artifact": {"builder": "bob-ci"}}},
               "test_signoff": {"kind": "gate", "status": "pending"},
               "change_board": {"kind": "gate", "status": "pending"},
               "client_acceptance": {"kind": "gate", "status": "not_reached"}}
    records.update(steps)
    return {"change_order": {"id": "CO-1", "requester": "alice", "declared_builders": ["bob-declared"]},
            "plan": {"steps": plan_steps}, "steps": records}


def test_builders_are_who_ran_the_build_what_it_reported_and_what_was_declared():
    assert gates.builders(state()) == {"bob", "bob-ci", "bob-declared"}


@pytest.mark.parametrize("actor", ["bob", "bob-ci", "bob-declared"])
def test_no_builder_may_sign_off_the_test(actor):
    with pytest.raises(GateError, match="separation of duties: %s built the artifact" % actor):
        gates.check_decision(state(), "test_signoff", actor, True)


def test_the_requester_may_not_approve_the_change_board():
    with pytest.raises(GateError, match="alice requested change order CO-1 and may not approve its change_board"):
        gates.check_decision(state(), "change_board", "alice", True)


def test_approver_lists_and_pending_state():
    gates.check_decision(state(), "change_board", "frank", True)
    gates.check_decision(state(), "test_signoff", "carol", False)
    with pytest.raises(GateError, match="erin may not decide gate change_board of change order CO-1: its approvers "
                                        "are dave, frank"):
        gates.check_decision(state(), "change_board", "erin", True)
    with pytest.raises(GateError, match="gate client_acceptance of change order CO-1 is not pending: not reached"):
        gates.check_decision(state(), "client_acceptance", "alice", True)
    decided = state(test_signoff={"kind": "gate", "status": "approved", "decided_by": "carol"})
    with pytest.raises(GateError, match="is not pending: already approved by carol"):
        gates.check_decision(decided, "test_signoff", "erin", True)


def test_a_failed_build_makes_no_builder():
    failed = state(build={"kind": "stage", "status": "failed", "site": "build", "run_by": "bob"})
    assert gates.builders(failed) == {"bob-declared"}


def test_identities_compare_without_case():
    with pytest.raises(GateError, match="separation of duties: Bob built the artifact"):
        gates.check_decision(state(), "test_signoff", "Bob", True)
    with pytest.raises(GateError, match="ALICE requested change order CO-1"):
        gates.check_decision(state(), "change_board", "ALICE", True)
    # Approver lists too: the list says Dave, the command line says dave (or DAVE): one person.
    listed = state()
    listed["plan"]["steps"][2]["approvers"] = ["Dave", "frank"]
    for actor in ("dave", "DAVE", "Frank"):
        gates.check_decision(listed, "change_board", actor, True)
    with pytest.raises(GateError) as raised:
        gates.check_decision(listed, "change_board", "erin", True)
    assert str(raised.value) == ("erin may not decide gate change_board of change order CO-1: its approvers are "
                                 "Dave, frank")


def test_one_rule_for_identities():
    from esd import identity

    assert identity.same("Alice", "alice") and identity.same("ALICE@corp", "alice@Corp")
    assert not identity.same("alice", "alice2") and not identity.same("", "") and not identity.same(None, "alice")
    assert identity.among("DAVE", ["alice", "dave"]) and not identity.among("erin", ["alice", "dave"])
    assert not identity.among("dave", None)


def _package_with_builder(path, builder):
    """A minimal .esdpkg: MANIFEST.json first, as esd.osp.package writes it."""
    manifest = json.dumps({"name": "hello-agent", "version": "1.1.0", "build": {"builder": builder}}).encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    return str(path)


def test_the_builder_named_in_the_artifact_cannot_be_declared_away(workspace, tmp_path, monkeypatch):
    """A test_package change order declaring another builder: the artifact's own manifest still names mallory."""
    monkeypatch.setattr(engine_mod, "run_stage", FakeStages())
    engine = Engine(ledger_mod.Ledger(str(tmp_path / "ledger")), project_dir=REPO)
    artifact = _package_with_builder(tmp_path / "hello-agent-1.1.0.esdpkg", "mallory")
    doc = minimal_document("test_package", **{"spec.software.artifact": artifact, "spec.software.builder": "erin"})
    outcome = engine.run(write_document(workspace, doc), "alice")
    assert (outcome.status, outcome.step) == ("waiting", "test_signoff")
    state = engine.ledger.get(outcome.change_order).read_state()
    assert state["change_order"]["artifact_builders"] == ["mallory"]
    with pytest.raises(GateError, match="separation of duties: mallory built the artifact of change order %s"
                       % outcome.change_order):
        engine.decide(outcome.change_order, "test_signoff", "mallory", True, "looks fine")
    engine.decide(outcome.change_order, "test_signoff", "carol", True, "tested")
