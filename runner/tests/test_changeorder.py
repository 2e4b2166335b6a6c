"""Change-order validation: every catalogue type accepts a minimal change order; a corpus of invalid
change orders produces exactly the expected problems (field path, expected, found), all at once."""

from __future__ import annotations

import datetime
import glob
import os

import pytest

from esd import catalogue, changeorder
from esd.errors import ExitCode, ValidationError

from esd_fixtures import DELETE, REPO, minimal_document, write_document

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "invalid")
INVALID = sorted(glob.glob(os.path.join(DATA, "*.yml")))
EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "change_orders", "*.yml")))


@pytest.mark.parametrize("type_id", sorted(catalogue.REQUEST_TYPES))
def test_every_request_type_accepts_a_minimal_change_order(workspace, type_id):
    path = write_document(workspace, minimal_document(type_id))
    co = changeorder.load(path)
    assert co.spec.type == type_id
    assert co.request_type.id == type_id
    assert co.metadata.requested_completion == datetime.date(2026, 12, 31)
    assert len(co.digest) == 64


def test_the_catalogue_covers_every_design_request_type():
    esd = {"prepare_package", "prepare_update", "prepare_media", "test_package", "test_media", "add_to_production",
           "distribute", "install", "update", "activate", "commit", "rollback_update", "remove", "delete_package",
           "retire", "archive_retire", "software_release"}
    osp = {"prepare_image", "prepare_image_update", "prepare_image_media", "prepare_provisioning", "test_image",
           "test_image_media", "add_image_to_production", "distribute_image", "install_image", "update_image",
           "rollback_image", "remove_image", "delete_image", "retire_image", "archive_retire_image", "image_release"}
    assert {t for t, r in catalogue.REQUEST_TYPES.items() if r.category == "ESD"} == esd
    assert {t for t, r in catalogue.REQUEST_TYPES.items() if r.category == "OSP"} == osp


def _expected(path):
    here = os.path.dirname(path)
    with open(path, encoding="utf-8") as handle:
        return [line[len("# expect: "):].rstrip("\n").replace("{dir}", here)
                for line in handle if line.startswith("# expect: ")]


@pytest.mark.parametrize("path", INVALID, ids=[os.path.basename(p) for p in INVALID])
def test_invalid_change_orders_report_every_problem_exactly(path):
    expected = _expected(path)
    assert expected, "corpus file without # expect: lines"
    with pytest.raises(ValidationError) as raised:
        changeorder.load(path)
    assert [str(problem) for problem in raised.value.problems] == expected
    assert raised.value.exit_code == ExitCode.INVALID


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_the_example_change_orders_are_valid(path):
    assert changeorder.load(path).id


def test_relative_paths_resolve_from_the_change_order_directory(workspace, monkeypatch):
    monkeypatch.chdir("/")
    co = changeorder.load(write_document(workspace, minimal_document("prepare_package")))
    assert co.spec.software["source"] == str(workspace / "pkg")


def test_a_missing_file_is_one_problem():
    with pytest.raises(ValidationError) as raised:
        changeorder.load("/nonexistent/co.yml")
    assert [str(p) for p in raised.value.problems] == [
        "(file): expected a readable change-order file, found No such file or directory"]


def test_defaults_of_optional_sections(workspace):
    co = changeorder.load(write_document(workspace, minimal_document("install")))
    rollout = co.spec.rollout
    assert (rollout.beta, rollout.go_no_go, rollout.min_success_percent, rollout.failure_budget_percent) == (
        "beta", "automatic", 100, 0)
    assert co.spec.approvals.required == ()
    assert co.spec.window is None
    assert co.spec.build == {}          # nothing set: the playbook's and inventory's defaults apply


def test_a_window_with_time_zones_is_parsed(workspace):
    document = minimal_document("remove", **{"spec.window": {"start": "2026-03-01T22:00:00+01:00",
                                                              "end": "2026-03-02T04:00:00Z"}})
    window = changeorder.load(write_document(workspace, document)).spec.window
    assert window.start.utcoffset() == datetime.timedelta(hours=1)
    assert window.contains(datetime.datetime(2026, 3, 1, 23, 0, tzinfo=datetime.timezone.utc))
    assert not window.contains(datetime.datetime(2026, 3, 2, 4, 0, tzinfo=datetime.timezone.utc))


def test_beta_false_disables_the_beta_group(workspace):
    document = minimal_document("install", **{"spec.rollout": {"beta": False}})
    assert changeorder.load(write_document(workspace, document)).spec.rollout.beta is None


def test_optional_gates_can_be_required_per_change_order(workspace):
    document = minimal_document("install", **{"spec.approvals": {"required": ["deployment_plan",
                                                                            "client_acceptance"]}})
    co = changeorder.load(write_document(workspace, document))
    assert co.spec.approvals.required == ("deployment_plan", "client_acceptance")


def test_missing_required_field_of_a_type_names_the_type(workspace):
    document = minimal_document("update", **{"spec.software.updates": DELETE})
    with pytest.raises(ValidationError) as raised:
        changeorder.load(write_document(workspace, document))
    assert [str(p) for p in raised.value.problems] == [
        "spec.software.updates: expected the version this update applies to (required by type update), "
        "found nothing (the field is missing)"]
