"""The ledger: atomic state, the hash-chained audit log and its verification, the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from esd import ledger as ledger_mod
from esd.errors import LockedError, UsageError


@pytest.fixture
def entry(tmp_path):
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    entry = ledger.entry("CO-1")
    state = {"change_order": {"id": "CO-1"}, "status": "registered"}
    entry.create(b"apiVersion: esd.osp/v1\n", state)
    for number in range(5):
        entry.append_audit("event_%d" % number, "alice", {"n": number}, state=state)
    return entry


def _rewrite(entry, records):
    with open(entry.audit_path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(ledger_mod.canonical(record) + "\n")


def test_records_chain_by_hash(entry):
    records = entry.read_audit()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == "0" * 64
    for before, after in zip(records, records[1:]):
        assert after["prev"] == before["hash"]
    for record in records:
        assert record["hash"] == ledger_mod.record_hash(record)
    assert entry.verify_audit() == (True, [], 5)
    assert entry.read_state()["audit_head"] == {"seq": 5, "hash": records[-1]["hash"]}


def test_an_edited_record_is_detected(entry):
    records = entry.read_audit()
    records[2]["actor"] = "mallory"
    _rewrite(entry, records)
    ok, problems, _ = entry.verify_audit()
    assert not ok
    assert problems == ["record 3: content does not match its hash (the record was edited)"]


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(entry):
    records = entry.read_audit()
    records[2]["actor"] = "mallory"
    records[2]["hash"] = ledger_mod.record_hash(records[2])
    _rewrite(entry, records)
    ok, problems, _ = entry.verify_audit()
    assert problems == ["record 4: prev does not match the hash of the record before it"]


def test_a_deleted_record_is_detected(entry):
    records = entry.read_audit()
    del records[1]
    _rewrite(entry, records)
    ok, problems, _ = entry.verify_audit()
    assert not ok
    assert "record 2: sequence number is 3 (a record was deleted or inserted)" in problems
    assert "record 3: prev does not match the hash of the record before it" in problems


def test_records_deleted_from_the_end_are_detected(entry):
    _rewrite(entry, entry.read_audit()[:3])
    ok, problems, _ = entry.verify_audit()
    assert not ok
    assert problems == ["the log ends at record 3 but the ledger state recorded record 5: records were deleted "
                        "from the end"]


def test_a_line_that_is_not_json_is_reported(entry):
    with open(entry.audit_path, "a", encoding="utf-8") as handle:
        handle.write("garbage\n")
    ok, problems, _ = entry.verify_audit()
    assert not ok and problems == ["audit log %s line 6 is not JSON" % entry.audit_path]


def test_appends_continue_the_chain_after_reopening(entry, tmp_path):
    again = ledger_mod.Ledger(str(tmp_path / "ledger")).get("CO-1")
    state = again.read_state()
    record = again.append_audit("later", "bob", state=state)
    assert record["seq"] == 6
    assert again.verify_audit()[0]


def test_state_writes_are_atomic_and_leave_no_temporary_files(entry):
    state = entry.read_state()
    for number in range(20):
        state["n"] = number
        entry.write_state(state)
    assert entry.read_state()["n"] == 19
    assert sorted(os.listdir(entry.path)) == ["audit.jsonl", "change_order.yml", "state.json"]


def test_unknown_change_order_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no change order CO-404 in the ledger"):
        ledger_mod.Ledger(str(tmp_path)).get("CO-404")


def test_the_lock_refuses_a_second_holder_and_names_the_first(entry):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            sys.path.insert(0, %r)
            from esd import ledger
            e = ledger.Ledger(%r).entry("CO-1")
            e.lock("carol", "esd run CO-1")
            print("locked", flush=True)
            time.sleep(60)
        """ % (os.path.dirname(os.path.dirname(ledger_mod.__file__)), os.path.dirname(entry.path)))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as raised:
            entry.lock("dave", "esd run CO-1")
        message = str(raised.value)
        assert "change order CO-1 is being run by another process" in message
        assert "user carol" in message and "pid %d" % holder.pid in message and "command esd run CO-1" in message
        assert raised.value.exit_code == 4
        assert entry.lock_holder()["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock with the process: no stale lock after a crash.
    assert entry.lock_holder() is None
    entry.lock("dave", "esd run CO-1")
    assert json.loads(open(entry.lock_path).read())["user"] == "dave"
    entry.unlock()
