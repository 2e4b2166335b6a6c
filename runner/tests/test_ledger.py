"""The ledger: atomic state, the hash-chained audit log and its verification, the lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from esd import ledger as ledger_mod
from esd.errors import LedgerError, LockedError, UsageError


@pytest.fixture
def entry(tmp_path):
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    entry = ledger.entry("CO-1")
    state = {"change_order": {"id": "CO-1"}, "status": "registered"}
    entry.register(b"apiVersion: esd.osp/v1\n", state, "alice", {"type": "install"})
    for number in range(4):
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


@pytest.mark.parametrize("cut", [1, 2])
def test_a_deleted_tail_is_not_covered_up_by_the_next_record(entry, cut):
    """Deleting the last record(s) and letting the next command append would make a consistent-looking chain:
    the append is refused instead, the log is left as it is and --verify still reports the deletion."""
    _rewrite(entry, entry.read_audit()[:-cut])
    before = open(entry.audit_path, encoding="utf-8").read()
    state = entry.read_state()
    with pytest.raises(LedgerError) as raised:
        entry.append_audit("gate_approved", "dave", state=state)
    assert str(raised.value) == (
        "audit log %s does not end where the ledger state says (record 5, hash %s...; the log ends at record %d): "
        "records were deleted or edited, so nothing was written; `esd log CO-1 --verify` shows what is wrong"
        % (entry.audit_path, state["audit_head"]["hash"][:12], 5 - cut))
    assert open(entry.audit_path, encoding="utf-8").read() == before
    assert entry.read_state()["audit_head"]["seq"] == 5
    assert not entry.verify_audit()[0]


def test_a_last_record_replaced_with_a_forged_one_is_refused(entry):
    records = entry.read_audit()
    records[-1]["actor"] = "mallory"
    records[-1]["hash"] = ledger_mod.record_hash(records[-1])
    _rewrite(entry, records)
    with pytest.raises(LedgerError, match="does not end where the ledger state says"):
        entry.append_audit("later", "bob")                  # without a state: the state file's head is used


def test_one_record_past_the_head_is_a_crash_between_append_and_state_write(entry):
    entry.append_audit("stage_started", "alice")            # appended, state not updated (as after a crash)
    state = entry.read_state()
    assert state["audit_head"]["seq"] == 5
    assert entry.append_audit("stage_succeeded", "alice", state=state)["seq"] == 7
    assert entry.verify_audit() == (True, [], 7)


def test_a_torn_last_line_is_a_clear_error_not_a_traceback(entry):
    with open(entry.audit_path, "a", encoding="utf-8") as handle:
        handle.write('{"seq": 6, "time": "2026-')
    size = os.path.getsize(entry.audit_path)
    with pytest.raises(LedgerError) as raised:
        entry.append_audit("later", "bob", state=entry.read_state())
    assert str(raised.value) == ("the last line of audit log %s is not JSON (a torn write?): nothing was written; "
                                 "`esd log CO-1 --verify` shows the log" % entry.audit_path)
    assert os.path.getsize(entry.audit_path) == size


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


def _hold_lock(entry):
    """A process holding the change order's lock (as a running `esd run` would) until it is killed."""
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
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_the_lock_refuses_a_second_holder_and_names_the_first(entry):
    holder = _hold_lock(entry)
    try:
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


def test_cancelling_a_run_that_does_not_stop_in_time_exits_locked_and_the_request_stands(entry):
    from esd.engine import Engine

    holder = _hold_lock(entry)
    try:
        engine = Engine(ledger_mod.Ledger(os.path.dirname(entry.path)))
        with pytest.raises(LockedError) as raised:
            engine.cancel("CO-1", "erin", "wrong week", wait_seconds=0.5)
        assert raised.value.exit_code == 4
        assert str(raised.value) == (
            "asked process %d to cancel change order CO-1; it has not stopped within 0.5 s (the request stands: it "
            "stops at its next check; `esd status CO-1` shows when)" % holder.pid)
        assert entry.cancel_request()["actor"] == "erin"
    finally:
        holder.kill()
        holder.wait()


def _python(entry, body):
    """A Python process with this worktree's esd importable and ``e`` the ledger entry CO-1."""
    prelude = textwrap.dedent("""
        import json, os, socket, sys, time
        sys.path.insert(0, %r)
        from esd import ledger
        e = ledger.Ledger(%r).entry("CO-1")
    """ % (os.path.dirname(os.path.dirname(ledger_mod.__file__)), os.path.dirname(entry.path)))
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(body)], stdout=subprocess.PIPE,
                            text=True)


def test_polling_the_holder_never_makes_a_run_fail(entry):
    """`esd status` in a loop (lock_holder) while runs take and release the lock: no run is refused."""
    locker = _python(entry, """
        print("ready", flush=True)
        refused = taken = 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                e.lock("erin", "esd run CO-1")
            except Exception as exc:
                refused += 1
                print(exc, file=sys.stderr)
                continue
            taken += 1
            time.sleep(0.001)
            e.unlock()
        print(json.dumps({"taken": taken, "refused": refused}), flush=True)
    """)
    assert locker.stdout.readline().strip() == "ready"
    seen, polls = [], 0
    while locker.poll() is None:
        holder = entry.lock_holder()
        polls += 1
        if holder:
            seen.append(holder)
    counts = json.loads(locker.stdout.readline())
    assert counts["refused"] == 0 and counts["taken"] > 50
    assert seen and polls > 100        # the polls did overlap with held locks
    assert {(holder["user"], holder["command"], holder["pid"]) for holder in seen} == {
        ("erin", "esd run CO-1", locker.pid)}


def test_a_lock_taken_a_moment_ago_is_refused_naming_its_holder(entry):
    """The holder writes who it is right after taking the lock; a process refused in between waits for that."""
    holder = _python(entry, """
        handle = open(e.lock_path, "a+")
        assert ledger._try_lock(handle.fileno())
        print("locked", flush=True)
        time.sleep(0.5)
        handle.write(json.dumps({"pid": os.getpid(), "pid_start": ledger.processes.start_time(os.getpid()),
                                 "user": "carol", "host": socket.gethostname(), "command": "esd approve CO-1",
                                 "since": "2026-05-01T10:00:00.000+00:00"}))
        handle.flush()
        time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as raised:
            entry.lock("dave", "esd run CO-1")
        assert str(raised.value) == (
            "change order CO-1 is being run by another process (user carol, host %s, pid %d, command esd approve "
            "CO-1, since 2026-05-01T10:00:00.000+00:00)" % (socket.gethostname(), holder.pid))
        assert raised.value.exit_code == 4
    finally:
        holder.kill()
        holder.wait()


def test_the_record_of_a_holder_that_died_is_not_a_holder(entry, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(entry.lock_path, "w", encoding="utf-8") as handle:
        json.dump({"pid": dead.pid, "pid_start": 1, "user": "carol", "host": socket.gethostname()}, handle)
    assert entry.lock_holder() is None
    # Held, but only that stale record: after the wait, the holder is unknown rather than misnamed.
    monkeypatch.setattr(ledger_mod, "LOCK_RECORD_WAIT", 0.2)
    other = open(entry.lock_path, "a+", encoding="utf-8")
    try:
        assert ledger_mod._try_lock(other.fileno())
        with pytest.raises(LockedError, match=r"^change order CO-1 is being run by another process "
                                              r"\(holder unknown\)$"):
            entry.lock("dave", "esd run CO-1")
        assert entry.lock_holder(wait=0.1) == {"pid": None}
    finally:
        other.close()
    assert entry.lock_holder() is None
    entry.lock("dave", "esd run CO-1")
    entry.unlock()


def test_a_log_that_does_not_begin_with_the_registration_is_reported(tmp_path):
    """What a crash between writing the state and the first record used to leave: a log starting at run_started."""
    entry = ledger_mod.Ledger(str(tmp_path / "ledger")).entry("CO-2")
    state = {"change_order": {"id": "CO-2"}, "status": "registered"}
    entry.create(b"apiVersion: esd.osp/v1\n", state)
    entry.append_audit("run_started", "erin", {}, state=state)
    entry.append_audit("stage_started", "erin", {"stage": "build"}, state=state)
    ok, problems, count = entry.verify_audit()
    assert (ok, count) == (False, 2)
    assert problems == ["record 1 is run_started, not registered: the log does not begin with the change order's "
                        "registration"]


def test_registration_writes_the_state_last(tmp_path, monkeypatch):
    """A crash before the state is written leaves no registered change order; registering again starts afresh."""
    ledger = ledger_mod.Ledger(str(tmp_path / "ledger"))
    entry = ledger.entry("CO-3")

    class Crash(BaseException):
        pass

    def crash(self, state):
        raise Crash()

    with monkeypatch.context() as patch:
        patch.setattr(ledger_mod.Entry, "write_state", crash)
        with pytest.raises(Crash):
            entry.register(b"v1\n", {"status": "registered"}, "bob", {"try": 1})
    assert not ledger.exists("CO-3") and os.path.exists(entry.audit_path)
    entry.register(b"v1\n", {"status": "registered"}, "bob", {"try": 2})
    records = ledger.get("CO-3").read_audit()
    assert [(r["seq"], r["event"], r["data"]) for r in records] == [(1, "registered", {"try": 2})]
    assert ledger.get("CO-3").verify_audit() == (True, [], 1)
