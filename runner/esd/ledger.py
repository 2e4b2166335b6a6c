"""The ledger: one directory per change order with its state, decisions, stage artifacts and audit log.

Layout of ``<root>/<change-order id>/``::

    change_order.yml   the change order exactly as registered (its sha256 is in state.json)
    state.json         current state; replaced atomically (temp file, fsync, rename)
    audit.jsonl        append-only audit log; each record carries the hash of the one before
    lock               the lock of the process running the change order (an open-file-description fcntl
                       lock; the file holds the holder's pid, start time, user, host, command)
    cancel             present when `esd cancel` asked a running process to stop
    stages/<step>/attempt-<n>/    the ansible-runner private data dir of each stage attempt
    artifacts/         what build stages produce

The audit log's records are canonical JSON (sorted keys, no spaces) hashed with sha256 over every
field but ``hash``; ``prev`` is the previous record's hash (64 zeros for the first). state.json
keeps the head (seq and hash of the last record written), so removing records from the end of the
log is detected too. The chain has no key: it shows changes by whoever does not also rewrite every
later record and the head; a copy of the head kept outside the ledger anchors it (``esd log``).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import struct
import sys
import tempfile
import time

from esd import processes
from esd.errors import LedgerError, LockedError, UsageError

GENESIS = "0" * 64
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")     # as esd.changeorder.ID_RE
STATE_FORMAT = "esd.osp/ledger/v1"
LOCK_RECORD_WAIT = 2.0      # seconds a refused lock() waits for the holder to write who it is
# struct flock of 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid and the padding after it.
_FLOCK = "hhqqii"


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(moment=None):
    return (moment or now()).isoformat(timespec="milliseconds")


def canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record):
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def atomic_write(path, data):
    """Write bytes/str to ``path`` so readers see the old or the new content, never a mix."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _ofd_lock(fd, command, lock_type):
    """An open-file-description lock request on the whole file; returns the kernel's struct flock."""
    request = struct.pack(_FLOCK, lock_type, os.SEEK_SET, 0, 0, 0, 0)
    return struct.unpack(_FLOCK, fcntl.fcntl(fd, command, request))


def _try_lock(fd):
    """Take the exclusive lock of ``fd``'s file; False when another open file description holds it.

    An open-file-description lock (F_OFD_SETLK) rather than flock: F_OFD_GETLK tells whether it is held without
    taking it (``lock_holder``), and like flock it belongs to the open file, so the kernel releases it when the
    holder dies and it conflicts between two opens in one process."""
    try:
        _ofd_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _is_locked(path):
    """Whether some process holds the lock of ``path``, asked without taking it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return _ofd_lock(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def default_root():
    """``ESD_LEDGER``, else ``$ESD_HOME/ledger``, else ``./.esd/ledger``."""
    if os.environ.get("ESD_LEDGER"):
        return os.path.abspath(os.environ["ESD_LEDGER"])
    if os.environ.get("ESD_HOME"):
        return os.path.join(os.path.abspath(os.environ["ESD_HOME"]), "ledger")
    return os.path.abspath(os.path.join(".esd", "ledger"))


class Ledger:
    """All change orders under one root directory."""

    def __init__(self, root=None):
        self.root = os.path.abspath(root or default_root())

    def entry(self, change_order_id):
        if not ID_RE.match(change_order_id or ""):
            raise UsageError("%r is not a change-order id (letters, digits, . _ -) nor a change-order file"
                             % change_order_id)
        return Entry(os.path.join(self.root, change_order_id), change_order_id)

    def exists(self, change_order_id):
        if not ID_RE.match(change_order_id or ""):
            return False
        return os.path.isfile(os.path.join(self.root, change_order_id, "state.json"))

    def ids(self):
        if not os.path.isdir(self.root):
            return []
        return sorted(name for name in os.listdir(self.root)
                      if os.path.isfile(os.path.join(self.root, name, "state.json")))

    def get(self, change_order_id):
        if not self.exists(change_order_id):
            raise UsageError("no change order %s in the ledger %s" % (change_order_id, self.root))
        return self.entry(change_order_id)


class Entry:
    """One change order's ledger directory."""

    def __init__(self, path, change_order_id):
        self.path = path
        self.id = change_order_id
        self.state_path = os.path.join(path, "state.json")
        self.audit_path = os.path.join(path, "audit.jsonl")
        self.lock_path = os.path.join(path, "lock")
        self.cancel_path = os.path.join(path, "cancel")
        self.change_order_path = os.path.join(path, "change_order.yml")
        self._lock_handle = None

    # --- state -------------------------------------------------------------------------------------

    def create(self, change_order_bytes, state):
        """A bare entry: the change order and its state, no audit record (``register`` is what esd uses)."""
        os.makedirs(self.path, exist_ok=True)
        atomic_write(self.change_order_path, change_order_bytes)
        self.write_state(state)

    def register(self, change_order_bytes, state, actor, data):
        """Register a change order: its file, the first audit record (``registered``) and its state, state.json
        last. The entry exists for esd once state.json does (``Ledger.exists``), so a crash half-way leaves no
        registered change order but leftovers the next registration replaces: never a log that starts later."""
        os.makedirs(self.path, exist_ok=True)
        atomic_write(self.change_order_path, change_order_bytes)
        record = self._record(None, "registered", actor, data)
        atomic_write(self.audit_path, canonical(record) + "\n")
        state["audit_head"] = {"seq": record["seq"], "hash": record["hash"]}
        self.write_state(state)
        return record

    def read_state(self):
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise UsageError("no change order %s in the ledger" % self.id) from None
        except (OSError, ValueError) as exc:
            raise LedgerError("cannot read %s: %s" % (self.state_path, exc)) from None

    def write_state(self, state):
        state["updated_at"] = timestamp()
        atomic_write(self.state_path, json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")

    def stage_dir(self, step_id, attempt):
        return os.path.join(self.path, "stages", step_id, "attempt-%d" % attempt)

    # --- audit log ---------------------------------------------------------------------------------

    def read_audit(self):
        """Audit records in order; raise LedgerError when a line is not JSON."""
        records = []
        if not os.path.exists(self.audit_path):
            return records
        with open(self.audit_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise LedgerError("audit log %s line %d is not JSON" % (self.audit_path, number)) from None
        return records

    def _last_record(self):
        """The last audit record (read from the end of the file, not the whole log)."""
        try:
            with open(self.audit_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                block = min(size, 65536)
                while True:
                    handle.seek(size - block)
                    tail = handle.read(block)
                    lines = tail.rstrip(b"\n").split(b"\n")
                    if len(lines) > 1 or block == size:
                        break
                    block = min(size, block * 4)
        except FileNotFoundError:
            return None
        if not lines[-1]:
            return None
        try:
            return json.loads(lines[-1])
        except ValueError:
            raise LedgerError("the last line of audit log %s is not JSON (a torn write?): nothing was written; "
                              "`esd log %s --verify` shows the log" % (self.audit_path, self.id)) from None

    def _recorded_head(self, state):
        """The audit head the ledger state recorded (from ``state`` when given, else from the state file)."""
        if state is None:
            if not os.path.exists(self.state_path):
                return None
            state = self.read_state()
        return state.get("audit_head")

    def _check_log_end(self, last, head):
        """Refuse to append to a log that does not end where the state says: a deleted or edited tail must not
        be covered up by the next record. One record past the head is a crash between append and state write."""
        if not head:
            return
        if last and last.get("seq") == head["seq"] and last.get("hash") == head["hash"]:
            return
        if last and last.get("seq") == head["seq"] + 1 and last.get("prev") == head["hash"]:
            return
        raise LedgerError(
            "audit log %s does not end where the ledger state says (record %d, hash %s...; the log ends at %s): "
            "records were deleted or edited, so nothing was written; `esd log %s --verify` shows what is wrong"
            % (self.audit_path, head["seq"], head["hash"][:12],
               "record %s" % last.get("seq") if last else "no record", self.id))

    def append_audit(self, event, actor, data=None, state=None):
        """Append one hash-chained record; when ``state`` is given its audit head is updated and saved.

        Refuses (LedgerError) when the log does not end at the head the state recorded."""
        last = self._last_record()
        self._check_log_end(last, self._recorded_head(state))
        record = self._record(last, event, actor, data)
        line = canonical(record) + "\n"
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if state is not None:
            state["audit_head"] = {"seq": record["seq"], "hash": record["hash"]}
            self.write_state(state)
        return record

    def _record(self, last, event, actor, data):
        record = {
            "seq": (last["seq"] + 1) if last else 1,
            "time": timestamp(),
            "change_order": self.id,
            "event": event,
            "actor": actor,
            "data": data or {},
            "prev": last["hash"] if last else GENESIS,
        }
        record["hash"] = record_hash(record)
        return record

    def verify_audit(self):
        """Check the chain; return (ok, problems, count). Problems name the record and what is wrong.

        The chain has no key: it shows edits, insertions, deletions, reordering and a cut tail made by anyone who
        does not also rewrite every later record and the head in state.json. Someone who can rewrite the whole
        ledger can forge a consistent one; comparing the head with a copy kept elsewhere (``esd log ID --json``,
        ``head``) shows that too."""
        problems = []
        try:
            records = self.read_audit()
        except LedgerError as exc:
            return False, [str(exc)], 0
        if records and records[0].get("event") != "registered":
            problems.append("record 1 is %s, not registered: the log does not begin with the change order's "
                            "registration" % records[0].get("event"))
        previous = GENESIS
        for index, record in enumerate(records, start=1):
            seq = record.get("seq")
            if seq != index:
                problems.append("record %d: sequence number is %s (a record was deleted or inserted)" % (index, seq))
            if record.get("prev") != previous:
                problems.append("record %s: prev does not match the hash of the record before it" % seq)
            if record.get("hash") != record_hash(record):
                problems.append("record %s: content does not match its hash (the record was edited)" % seq)
            previous = record.get("hash")
        try:
            head = self.read_state().get("audit_head")
        except (UsageError, LedgerError) as exc:
            problems.append(str(exc))
            head = None
        if head:
            if head["seq"] > len(records):
                problems.append("the log ends at record %d but the ledger state recorded record %d: records were "
                                "deleted from the end" % (len(records), head["seq"]))
            elif records[head["seq"] - 1].get("hash") != head["hash"]:
                problems.append("record %d does not match the hash the ledger state recorded for it" % head["seq"])
        return not problems, problems, len(records)

    # --- lock --------------------------------------------------------------------------------------

    def lock(self, user, command):
        """Take the change order's exclusive lock or raise LockedError naming the holder.

        When the lock is taken but its holder has not written who it is yet (it writes right after taking it),
        wait up to LOCK_RECORD_WAIT seconds for the record, or for the lock to come free, before refusing."""
        os.makedirs(self.path, exist_ok=True)
        handle = open(self.lock_path, "a+", encoding="utf-8")
        deadline = None
        try:
            while not _try_lock(handle.fileno()):
                holder = self._holder_record()
                if holder:
                    raise LockedError(self.id, holder)
                deadline = deadline or time.monotonic() + LOCK_RECORD_WAIT
                if time.monotonic() >= deadline:
                    raise LockedError(self.id, {})
                time.sleep(0.02)
        except BaseException:
            handle.close()
            raise
        holder = {"pid": os.getpid(), "pid_start": processes.start_time(os.getpid()), "user": user,
                  "host": socket.gethostname(), "command": command, "since": timestamp()}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        self._lock_handle = handle
        return holder

    def unlock(self):
        if self._lock_handle is not None:
            with contextlib.suppress(OSError):
                self._lock_handle.seek(0)
                self._lock_handle.truncate()
                self._lock_handle.flush()
            with contextlib.suppress(OSError):
                _ofd_lock(self._lock_handle.fileno(), fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
            self._lock_handle.close()
            self._lock_handle = None

    def lock_holder(self, wait=LOCK_RECORD_WAIT):
        """Who holds the lock now ({pid, user, host, command, since}), or None when nobody does.

        Only asks the kernel (F_OFD_GETLK) and reads the holder's record: it never takes the lock, so polling
        it (`esd status` in a loop, `esd cancel` waiting) cannot make a concurrent `esd run` fail. When the lock
        is held but the record is not written yet, waits up to ``wait`` seconds for it; then ``{"pid": None}``."""
        deadline = time.monotonic() + wait
        while _is_locked(self.lock_path):
            holder = self._holder_record()
            if holder:
                return holder
            if time.monotonic() >= deadline:
                return {"pid": None}
            time.sleep(0.02)
        return None

    def _holder_record(self):
        """The holder record in the lock file when it names a live process, else None (not written yet, being
        written, or left by a holder that died: the kernel released its lock, the record stayed)."""
        try:
            with open(self.lock_path, encoding="utf-8") as handle:
                holder = json.loads(handle.read() or "null")
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            return None
        if holder.get("host") == socket.gethostname():
            start = holder.get("pid_start")
            if (start is None and processes.start_time(holder["pid"]) is None) or \
                    (start is not None and not processes.alive(holder["pid"], start)):
                return None
        return holder

    @contextlib.contextmanager
    def locked(self, user, command):
        self.lock(user, command)
        try:
            yield self
        finally:
            self.unlock()

    # --- cancel requests ---------------------------------------------------------------------------

    def request_cancel(self, actor, comment):
        atomic_write(self.cancel_path, json.dumps({"actor": actor, "comment": comment, "time": timestamp()}))

    def cancel_request(self):
        try:
            with open(self.cancel_path, encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return None

    def clear_cancel(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cancel_path)


def command_line():
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:200]
