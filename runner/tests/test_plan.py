"""Plans: every request type has one; steps, gates and targets are resolved from the inventory."""

from __future__ import annotations

import json
import os

import pytest

from esd import catalogue, changeorder, cli
from esd.errors import ValidationError
from esd.plan import Plan, make_plan

from esd_fixtures import REPO, minimal_document, write_document


def plan_for(workspace, type_id, **overrides):
    co = changeorder.load(write_document(workspace, minimal_document(type_id, **overrides)))
    return make_plan(co, project_dir=REPO)


@pytest.mark.parametrize("type_id", sorted(catalogue.REQUEST_TYPES))
def test_every_request_type_has_a_plan(workspace, type_id):
    plan = plan_for(workspace, type_id)
    request_type = catalogue.get(type_id)
    assert plan.category == request_type.category
    assert plan.sites == list(request_type.sites)
    assert plan.stages, "a plan without stages does nothing"
    for stage in plan.stages:
        assert os.path.isabs(stage.playbook)
        # Every stage of the catalogue has its playbook in this project (the "not built yet" path is tested
        # with a copy of the project missing one).
        assert stage.playbook_exists and os.path.isfile(stage.playbook), stage.playbook
        assert not any("not built yet" in note for note in plan.notes)
    # Production work always needs the change board.
    if "production" in plan.sites:
        assert "change_board" in [gate.id for gate in plan.gates]
    # The plan survives the ledger's JSON round trip.
    assert Plan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan


def test_software_release_plan_orders_stages_and_gates(workspace):
    plan = plan_for(workspace, "software_release", **{"spec.approvals": {"required": ["client_acceptance"]}})
    assert [(step.kind, step.id) for step in plan.steps] == [
        ("stage", "build"), ("stage", "test"), ("gate", "test_signoff"), ("gate", "change_board"),
        ("stage", "promote_test"), ("stage", "promote"), ("stage", "distribute"), ("notify", "announce"), ("stage", "install_beta"), ("gate", "go_no_go"), ("stage", "install_wave_1"),
        ("triage", "triage"), ("stage", "backout"), ("verdict", "verdict"), ("gate", "client_acceptance"),
        ("stage", "commit")]
    assert plan.sites == ["build", "test", "production"]
    assert plan.targets["build"] == ["build-01"]
    assert plan.targets["test"] == ["test-01", "test-02"]
    assert len(plan.targets["hosts"]) == 24
    beta, wave = plan.step("install_beta"), plan.step("install_wave_1")
    assert beta.limit_hosts == ["prod-001", "prod-002", "prod-003"]
    assert wave.limit_hosts == ["prod-%03d" % n for n in range(4, 25)]
    assert plan.step("test").inputs["software_src"] == {"__from_stage__": "build", "path": "artifact.path"}
    assert plan.step("promote").inputs["esd_test_passed"] == {"__from_stage__": "test", "path": "test.passed"}
    assert plan.step("distribute").hosts == ["depot-01"]
    assert "software_src" not in beta.inputs
    assert beta.inputs["software_sha256"] == {"__from_stage__": "build", "path": "artifact.sha256"}
    assert plan.step("build").inputs["build_package_builder"] == {"__actor__": True}
    assert plan.step("go_no_go").automatic
    assert plan.step("test_signoff").excludes == ["builder"]
    assert plan.step("change_board").excludes == ["requester"]


def test_optional_gates_appear_only_when_required(workspace):
    assert "client_acceptance" not in [g.id for g in plan_for(workspace, "install").gates]
    required = plan_for(workspace, "install", **{"spec.approvals": {"required": ["deployment_plan",
                                                                                "client_acceptance"]}})
    assert [g.id for g in required.gates] == ["deployment_plan", "change_board", "go_no_go", "client_acceptance"]


def test_beta_hosts_and_wave_size(workspace):
    plan = plan_for(workspace, "install", **{"spec.rollout": {"beta_hosts": 2, "wave_size": 10}})
    # A counted beta group is spread evenly over the targets (deterministic, every site/rack sampled).
    assert plan.step("install_beta").limit_hosts == ["prod-001", "prod-013"]
    assert [len(plan.step(s).limit_hosts) for s in ("install_wave_1", "install_wave_2", "install_wave_3")] == [
        10, 10, 2]


def test_wave_patterns_leave_the_rest_to_a_last_wave(workspace):
    plan = plan_for(workspace, "install", **{"spec.rollout": {"waves": ["prod-00*", "prod-01*"]}})
    assert plan.step("install_wave_1").limit_hosts == ["prod-%03d" % n for n in range(4, 10)]
    assert plan.step("install_wave_2").limit_hosts == ["prod-%03d" % n for n in range(10, 20)]
    assert plan.step("install_wave_3").limit_hosts == ["prod-%03d" % n for n in range(20, 25)]
    assert "5 target host(s) in no listed wave form a last wave." in plan.notes


def test_manual_go_no_go(workspace):
    plan = plan_for(workspace, "install", **{"spec.rollout": {"go_no_go": "manual"}})
    assert not plan.step("go_no_go").automatic


def test_no_beta_group_goes_straight_to_the_waves(workspace):
    plan = plan_for(workspace, "install", **{"spec.rollout": {"beta": False}})
    # One wave and no beta group: the stage keeps its catalogue id.
    assert [s.id for s in plan.steps if s.kind != "notify"] == ["change_board", "install", "triage", "backout",
                                                                 "verdict"]


def test_limit_narrows_production_targets(workspace):
    plan = plan_for(workspace, "remove", **{"spec.targets.limit": "prod-01*"})
    assert plan.step("remove").limit_hosts == ["prod-%03d" % n for n in range(10, 20)]


def test_targets_that_match_nothing_are_reported(workspace):
    with pytest.raises(ValidationError) as raised:
        plan_for(workspace, "install", **{"spec.targets.hosts": "nosuchgroup",
                                          "spec.rollout": {"waves": ["prod-1*"]}})
    assert [str(p) for p in raised.value.problems] == [
        'spec.targets.hosts: expected a host pattern matching at least one host of %s, found no host matching '
        '"nosuchgroup"' % os.path.join(REPO, "inventories", "demo")]


def test_repository_stages_resolve_the_repository_host(workspace):
    plan = plan_for(workspace, "software_release")
    for step_id in ("promote_test", "promote"):
        step = plan.step(step_id)
        assert (step.target_pattern, step.target_var, step.hosts) == ("repository", "repository_hosts", ["repo-01"])
    image = plan_for(workspace, "add_image_to_production").step("promote_image")
    assert (image.target_var, image.hosts) == ("repository_hosts", ["repo-01"])
    with pytest.raises(ValidationError) as raised:
        plan_for(workspace, "add_to_production", **{"spec.targets.repository": "nosuchrepo"})
    assert [str(p) for p in raised.value.problems] == [
        'spec.targets.repository: expected a host pattern matching at least one host of %s, found no host matching '
        '"nosuchrepo"' % os.path.join(REPO, "inventories", "demo")]


def test_explicit_beta_and_wave_patterns_must_match_targets(workspace):
    with pytest.raises(ValidationError) as raised:
        plan_for(workspace, "install", **{"spec.rollout": {"beta": "test_site", "waves": ["build_site"]}})
    assert [str(p) for p in raised.value.problems] == [
        'spec.rollout.beta: expected a pattern matching some of the targets, found no target host in "test_site"',
        "spec.rollout.waves[0]: expected a pattern matching target hosts not already in the beta group or an "
        'earlier wave, found no such host for "build_site"']


def test_image_release_skips_retirement_unless_an_image_is_designated(workspace):
    assert plan_for(workspace, "image_release").step("retire_designated_image").skip == "spec.image.retire is not set"
    designated = plan_for(workspace, "image_release", **{"spec.image.retire": "2025.1"})
    step = designated.step("retire_designated_image")
    assert step.skip is None and step.inputs["image_version"] == "2025.1"


def test_playbooks_not_built_yet_are_marked(workspace, tmp_path):
    # every playbook of the catalogue exists in this repository now, so the project here lacks one
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    for playbook in os.listdir(os.path.join(REPO, "playbooks")):
        if playbook != "build_media.yml":
            os.symlink(os.path.join(REPO, "playbooks", playbook), str(project / "playbooks" / playbook))
    co = changeorder.load(write_document(workspace, minimal_document("prepare_media")))
    plan = make_plan(co, project_dir=str(project))
    stage = plan.step("build_media")
    assert not stage.playbook_exists
    assert "Stage build_media: playbook playbooks/build_media.yml is not built yet in this project; running this " \
           "change order stops there." in plan.notes


def test_catalogue_references_point_at_earlier_stage_outputs():
    for request_type in catalogue.REQUEST_TYPES.values():
        seen = {}
        for step in request_type.steps:
            stage = step.stage if isinstance(step, catalogue.Rollout) else step
            if not isinstance(stage, catalogue.Stage):
                continue
            for value in stage.inputs.values():
                if isinstance(value, catalogue.Ref):
                    assert value.stage in seen, (request_type.id, stage.id, value)
                    assert value.path.split(".")[0] in seen[value.stage].outputs.values()
            seen[stage.id] = stage


def test_esd_plan_prints_text_and_json(workspace, capsys):
    path = write_document(workspace, minimal_document("software_release"))
    assert cli.main(["plan", path]) == 0
    text = capsys.readouterr().out
    assert "Change order CO-software-release: software_release (ESD)" in text
    assert "Sites: build, test, production" in text
    assert "gate  change_board" in text
    assert cli.main(["plan", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["category"] == "ESD"
    assert data["sites"] == ["build", "test", "production"]
    assert [s["id"] for s in data["steps"] if s["kind"] == "gate"] == ["test_signoff", "change_board", "go_no_go"]
    assert data["targets"]["hosts"][:3] == ["prod-001", "prod-002", "prod-003"]
    assert data["steps"][1]["inputs"]["software_src"] == "<from stage build: artifact.path>"
