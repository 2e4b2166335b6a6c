"""Processes of this machine, seen through /proc (Linux).

A pid alone does not name a process for long: pids are reused. A pid together with its start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot) does, so the ledger records both: for the
holder of a change order's lock and for the ansible-playbook of a stage attempt.

Every process of a stage run carries ``ESD_RUN_DIR=<private data dir>`` in its environment (esd.stage
sets it; ansible-playbook's workers and the modules they start inherit it). That finds the processes
of an attempt whose pid was never recorded: ``esd`` killed while ansible-playbook was starting.
"""

from __future__ import annotations

import os

RUN_DIR_VARIABLE = "ESD_RUN_DIR"


def _stat(pid):
    """(state, ppid, start time) of ``pid``, or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid):
    """The start time of process ``pid`` (clock ticks since boot), or None when it does not exist."""
    stat = _stat(pid) if pid else None
    return stat[2] if stat else None


def alive(pid, start):
    """Whether the process that had ``pid`` and started at ``start`` still runs (not a zombie)."""
    if not pid or start is None:
        return False
    stat = _stat(pid)
    return bool(stat) and stat[2] == start and stat[0] not in ("Z", "X")


def _run_dir(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            environ = handle.read()
    except OSError:
        return None
    prefix = RUN_DIR_VARIABLE.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return os.fsdecode(item[len(prefix):])
    return None


def of_run(directory, parent=None):
    """Pids of the live processes whose ``ESD_RUN_DIR`` is ``directory`` or a directory beneath it (the audit
    runs of a stage attempt have theirs inside the attempt's), children of ``parent`` only when given."""
    directory = os.path.abspath(directory).rstrip(os.sep)
    found = []
    own = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == own:
            continue
        pid = int(name)
        stat = _stat(pid)
        if not stat or stat[0] in ("Z", "X") or (parent is not None and stat[1] != parent):
            continue
        run_dir = _run_dir(pid)
        if run_dir and (run_dir == directory or run_dir.startswith(directory + os.sep)):
            found.append(pid)
    return sorted(found)
