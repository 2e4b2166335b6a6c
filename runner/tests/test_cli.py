"""The `esd` command line: exit codes, --json on every command, identity and messages."""

from __future__ import annotations

import json
import os

import pytest

from esd import cli
from esd import engine as engine_mod
from esd import ledger as ledger_mod

from esd_fixtures import REPO, FakeStages, minimal_document, write_document


@pytest.fixture
def esd(tmp_path, monkeypatch, capsys):
    """Run `esd ...` in-process against a private ledger with scripted stages; return (rc, stdout, stderr)."""
    monkeypatch.setattr(engine_mod, "run_stage", FakeStages())
    monkeypatch.setenv("ESD_LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setenv("ESD_PROJECT_DIR", REPO)
    monkeypatch.delenv("ESD_USER", raising=False)

    def run(*args):
        rc = cli.main(list(args))
        captured = capsys.readouterr()
        return rc, captured.out, captured.err
    return run


def js(result):
    rc, out, _ = result
    return rc, json.loads(out)


def test_validate_reports_every_problem_and_exits_2(esd, workspace):
    good = write_document(workspace, minimal_document("remove"), "good.yml")
    bad = write_document(workspace, minimal_document("remove", **{"spec.type": "remov",
                                                                  "metadata.requested_completion": "soon"}),
                         "bad.yml")
    rc, out, _ = esd("validate", good)
    assert rc == 0 and out == "%s: valid (CO-remove, type remove)\n" % good
    rc, out, _ = esd("validate", good, bad)
    assert rc == 2
    assert out.splitlines()[1:] == [
        "%s: 2 problem(s)" % bad,
        '  metadata.requested_completion: expected a date (YYYY-MM-DD), found "soon"',
        out.splitlines()[3]]
    assert out.splitlines()[3].startswith("  spec.type: expected a request type (") and \
        out.splitlines()[3].endswith('(did you mean remove?), found "remov"')
    rc, data = js(esd("validate", bad, "--json"))
    assert rc == 2 and data["exit_code"] == 2
    assert [p["path"] for p in data["results"][0]["problems"]] == ["metadata.requested_completion", "spec.type"]
    assert data["results"][0]["problems"][0] == {
        "path": "metadata.requested_completion", "expected": "a date (YYYY-MM-DD)", "found": '"soon"',
        "message": 'metadata.requested_completion: expected a date (YYYY-MM-DD), found "soon"'}


def test_validate_also_refuses_targets_that_match_no_host_unless_offline(esd, workspace):
    path = write_document(workspace, minimal_document("remove", **{"spec.targets.hosts": "web_servers"}))
    rc, out, _ = esd("validate", path)
    assert rc == 2
    assert out.splitlines() == [
        "%s: 1 problem(s)" % path,
        '  spec.targets.hosts: expected a host pattern matching at least one host of %s, found no host matching '
        '"web_servers"' % os.path.join(REPO, "inventories", "demo")]
    rc, out, _ = esd("validate", path, "--offline")          # the schema alone is fine
    assert rc == 0 and out == "%s: valid (CO-remove, type remove)\n" % path


def test_the_exit_codes_of_a_change_order_life(esd, workspace):
    path = write_document(workspace, minimal_document("software_release"))
    rc, data = js(esd("run", path, "--as", "bob", "--json", "--quiet"))
    assert (rc, data["status"], data["step"], data["exit_code"]) == (3, "waiting", "test_signoff", 3)
    rc, out, err = esd("approve", "CO-software-release", "--gate", "test_signoff", "--as", "bob")
    assert rc == 2 and err.startswith("esd: separation of duties: bob built the artifact")
    rc, data = js(esd("approve", "CO-software-release", "--gate", "test_signoff", "--as", "carol", "--json"))
    assert rc == 0 and data["exit_code"] == 0
    rc, data = js(esd("run", "CO-software-release", "--as", "erin", "--json", "--quiet"))
    assert (rc, data["step"]) == (3, "change_board")
    rc, data = js(esd("deny", "CO-software-release", "--gate", "change_board", "--as", "dave", "--comment",
                      "not this week", "--json"))
    assert (rc, data["status"]) == (5, "denied")
    rc, out, _ = esd("run", "CO-software-release", "--as", "erin", "--quiet")
    assert rc == 5 and out.startswith("DENIED: change order CO-software-release is denied: gate change_board "
                                      "denied by dave: not this week")


def test_identity_comes_from_esd_user_when_as_is_not_given(esd, workspace, monkeypatch):
    path = write_document(workspace, minimal_document("software_release"))
    monkeypatch.setenv("ESD_USER", "bob")
    esd("run", path, "--quiet")
    rc, _, err = esd("approve", "CO-software-release", "--gate", "test_signoff")
    assert rc == 2 and "bob built the artifact" in err
    rc, _, err = esd("approve", "CO-software-release", "--gate", "test_signoff", "--as", "bad identity")
    assert rc == 2 and err == "esd: --as: 'bad identity' is not an identity (letters, digits and . _ @ + -)\n"


def test_status_list_log_and_cancel(esd, workspace):
    path = write_document(workspace, minimal_document("remove"))
    esd("run", path, "--as", "erin", "--quiet")
    rc, data = js(esd("status", "CO-remove", "--json"))
    assert rc == 0 and (data["status"], data["current_step"]) == ("waiting", "change_board")
    rc, out, _ = esd("status", "CO-remove")
    assert "status: WAITING - waiting for gate change_board" in out
    rc, out, _ = esd("status", "CO-remove", "--markdown")
    assert out.startswith("# Status report: change order CO-remove")
    rc, data = js(esd("list", "--json"))
    assert [(row["id"], row["status"], row["step"]) for row in data["change_orders"]] == [
        ("CO-remove", "waiting", "change_board")]
    rc, data = js(esd("log", "CO-remove", "--json", "--verify"))
    assert rc == 0 and data["verified"] is True
    assert [r["event"] for r in data["records"]] == ["registered", "run_started", "gate_pending"]
    rc, data = js(esd("cancel", "CO-remove", "--as", "alice", "--comment", "obsolete", "--json"))
    assert (rc, data["status"], data["message"]) == (5, "cancelled", "cancelled by alice: obsolete")
    # Nothing left to cancel: invalid input (2), not "stopped" (5), and nothing is written.
    rc, out, err = esd("cancel", "CO-remove", "--as", "alice")
    assert rc == 2 and err == ("esd: change order CO-remove is already cancelled: only a change order that has not "
                               "finished can be cancelled (nothing was changed)\n")
    rc, data = js(esd("log", "CO-remove", "--json"))
    assert [r["event"] for r in data["records"]][-1] == "cancelled"


def test_log_verify_fails_on_a_tampered_log(esd, workspace, tmp_path):
    esd("run", write_document(workspace, minimal_document("remove")), "--as", "erin", "--quiet")
    audit = tmp_path / "ledger" / "CO-remove" / "audit.jsonl"
    lines = audit.read_text().splitlines()
    record = json.loads(lines[0])
    record["actor"] = "mallory"
    lines[0] = ledger_mod.canonical(record)
    audit.write_text("\n".join(lines) + "\n")
    rc, out, _ = esd("log", "CO-remove", "--verify")
    assert rc == 1
    assert out.splitlines()[-2:] == ["audit log BROKEN:",
                                     "  record 1: content does not match its hash (the record was edited)"]


def test_a_deleted_last_record_stops_the_next_command_instead_of_being_covered_up(esd, workspace, tmp_path):
    path = write_document(workspace, minimal_document("software_release"))
    assert esd("run", path, "--as", "bob", "--quiet")[0] == 3                   # waiting at test_signoff
    audit = tmp_path / "ledger" / "CO-software-release" / "audit.jsonl"
    lines = audit.read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "gate_pending"
    audit.write_text("\n".join(lines[:-1]) + "\n")                             # someone deletes the last record
    rc, out, err = esd("approve", "CO-software-release", "--gate", "test_signoff", "--as", "carol")
    assert rc == 1
    assert "does not end where the ledger state says" in err and "nothing was written" in err
    assert audit.read_text().splitlines() == lines[:-1]
    rc, out, _ = esd("log", "CO-software-release", "--verify")
    assert rc == 1 and "records were deleted from the end" in out
    state = json.loads((tmp_path / "ledger" / "CO-software-release" / "state.json").read_text())
    assert (state["status"], state["steps"]["test_signoff"]["status"]) == ("waiting", "pending")


def test_a_locked_change_order_exits_4(esd, workspace, tmp_path):
    esd("run", write_document(workspace, minimal_document("remove")), "--as", "erin", "--quiet")
    holder = ledger_mod.Ledger(str(tmp_path / "ledger")).entry("CO-remove")
    holder.lock("erin", "esd run CO-remove")
    try:
        rc, data = js(esd("run", "CO-remove", "--json", "--quiet"))
        assert rc == 4 and data["kind"] == "LockedError" and "user erin" in data["error"]
    finally:
        holder.unlock()


def test_unknown_change_orders_and_gates_exit_2(esd, workspace):
    rc, _, err = esd("status", "CO-404")
    assert rc == 2 and err.startswith("esd: no change order CO-404 in the ledger ")
    esd("run", write_document(workspace, minimal_document("remove")), "--as", "erin", "--quiet")
    rc, _, err = esd("approve", "CO-remove", "--gate", "uat_signoff", "--as", "dave")
    assert rc == 2 and err == ("esd: change order CO-remove has no gate uat_signoff (its gates: change_board, go_no_go)\n")


def test_plan_of_an_invalid_change_order_lists_the_problems(esd, workspace):
    bad = write_document(workspace, minimal_document("remove", **{"spec.targets.hosts": "nothing-here",
                                                                  "spec.backout": {"plan": 3}}))
    rc, _, err = esd("plan", bad)
    assert rc == 2
    assert err == "esd: %s: spec.backout.plan: expected a description of how the change is backed out, found " \
                  "number 3\n" % bad


def test_catalogue_json_lists_every_type(esd):
    rc, data = js(esd("catalogue", "--json"))
    assert rc == 0 and len(data["request_types"]) == 33
    release = next(row for row in data["request_types"] if row["type"] == "software_release")
    assert release["sites"] == ["build", "test", "production"]


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    for line in ("0  success", "1  failed", "2  invalid input", "3  waiting", "4  locked", "5  stopped"):
        assert line in out


def test_the_readme_and_the_help_give_exit_codes_the_same_meaning(capsys):
    from esd.errors import EXIT_MEANINGS

    with open(os.path.join(REPO, "runner", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = {int(line.split("|")[1]): line.split("|", 2)[2].rsplit("|", 1)[0].strip()
            for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert rows == {int(code): meaning for code, meaning in EXIT_MEANINGS.items()}
    with pytest.raises(SystemExit):
        cli.main(["cancel", "--help"])
    out = capsys.readouterr().out
    for code, meaning in EXIT_MEANINGS.items():
        assert "  %d  %s\n" % (code, meaning) in out
    assert "3  waiting: a gate decision, the go/no-go soak time or the maintenance window" in out


def test_report_and_metrics_written_to_a_file_say_so_in_json(esd, workspace, tmp_path):
    esd("run", write_document(workspace, minimal_document("remove")), "--as", "erin", "--quiet")
    target = tmp_path / "status.json"
    rc, out, _ = esd("report", "CO-remove", "--json", "-o", str(target))
    written = target.read_text()
    assert rc == 0 and json.loads(written)["change_order"] == "CO-remove"
    assert json.loads(out) == {"change_order": "CO-remove", "kind": "status", "format": "json",
                               "written": str(target), "bytes": len(written.encode())}
    rc, out, _ = esd("report", "CO-remove", "--format", "md", "-o", str(tmp_path / "status.md"))
    assert (rc, out) == (0, "%s\n" % (tmp_path / "status.md"))        # without --json: the path, as before
    rc, out, _ = esd("metrics", "--json", "-o", str(tmp_path / "metrics.json"))
    assert rc == 0 and json.loads(out) == {"format": "json", "written": str(tmp_path / "metrics.json"),
                                           "bytes": len((tmp_path / "metrics.json").read_bytes())}


def test_log_shows_the_head_to_anchor_it(esd, workspace, tmp_path):
    esd("run", write_document(workspace, minimal_document("remove")), "--as", "erin", "--quiet")
    state = json.loads((tmp_path / "ledger" / "CO-remove" / "state.json").read_text())
    rc, data = js(esd("log", "CO-remove", "--json"))
    assert rc == 0 and data["head"] == state["audit_head"] == {"seq": 3, "hash": data["records"][-1]["hash"]}
    rc, out, _ = esd("log", "CO-remove", "--verify")
    assert out.splitlines()[-2:] == ["head: record 3, sha256 %s" % data["head"]["hash"],
                                     "audit log verified: 3 records, hash chain intact"]


def test_close_binds_each_workaround_to_the_known_error_before_it(esd, workspace, capsys):
    assert esd("run", write_document(workspace, minimal_document("prepare_package")), "--as", "bob")[0] == 0
    rc, data = js(esd("close", "CO-prepare-package", "--comment", "fine", "--known-error", "slow start",
                      "--known-error", "logs a warning", "--workaround", "ignore it", "--known-error", "no man page",
                      "--as", "alice", "--json"))
    assert rc == 0
    # Leaving a workaround out does not shift the others onto the wrong known error.
    assert data["closure"]["known_errors"] == [{"error": "slow start", "workaround": None},
                                               {"error": "logs a warning", "workaround": "ignore it"},
                                               {"error": "no man page", "workaround": None}]
    for args, message in (
            (["--workaround", "wait", "--known-error", "slow start"],
             "argument --workaround: 'wait' has no --known-error before it: write --known-error TEXT --workaround "
             "TEXT"),
            (["--known-error", "slow start", "--workaround", "wait", "--workaround", "restart"],
             "argument --workaround: 'restart' follows a --known-error that already has a workaround ('wait'): "
             "give each workaround right after its own --known-error")):
        with pytest.raises(SystemExit) as stopped:
            cli.main(["close", "CO-prepare-package", "--comment", "again", *args])
        assert stopped.value.code == 2
        assert capsys.readouterr().err.strip().endswith("esd close: error: " + message)
