"""Live progress of a run on stderr: one updating line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time


class Console:
    """Receives engine callbacks; prints what happens. ``quiet`` prints nothing."""

    def __init__(self, stream=None, quiet=False, interactive=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._last_line = 0.0
        self._last_task = None
        self._dirty = False
        self._lock = threading.Lock()

    def _write(self, text):
        if self.quiet:
            return
        with self._lock:
            if self._dirty:
                self.stream.write("\r\033[K")
                self._dirty = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def info(self, text):
        self._write(text)

    def stage_started(self, step, attempt, host_count):
        again = " (attempt %d)" % attempt if attempt > 1 else ""
        hosts = "%d host(s)" % host_count if host_count is not None else "the playbook's hosts"
        self._last_task = None
        self._write("==> stage %s%s: %s on %s" % (step["id"], again, step["title"], hosts))

    def progress(self, progress):
        """Called from the event thread on every task start and host result of the running stage."""
        if self.quiet:
            return
        total = progress.total_hosts or len(progress.hosts_seen) or 0
        snapshot = (progress.stage, progress.task_number, progress.task or "-", progress.task_hosts_done, total,
                    len(progress.hosts_failed))
        if self.interactive:
            now = time.monotonic()
            if now - self._last_line < 0.1 and progress.task_hosts_done not in (0, total):
                return
            self._last_line = now
            with self._lock:
                self.stream.write("\r\033[K" + self._task_line(snapshot)[:200])
                self.stream.flush()
                self._dirty = True
            return
        # A plain log gets one line per finished task, written when the next task starts.
        if self._last_task is not None and self._last_task[:2] != snapshot[:2]:
            self._write(self._task_line(self._last_task))
        self._last_task = snapshot

    @staticmethod
    def _task_line(snapshot):
        stage, number, task, done, total, failed = snapshot
        return "    [%s] task %d %s: %d/%d hosts done, %d failed" % (stage, number, task, done, total, failed)

    def _flush_task(self):
        if self._last_task is not None and not self.interactive:
            self._write(self._task_line(self._last_task))
        self._last_task = None

    def stage_finished(self, step, record):
        self._flush_task()
        hosts = record.get("hosts") or {}
        ok, failed = len(hosts.get("ok", [])), len(hosts.get("failed", []))
        took = record.get("duration")
        timing = " in %.1fs" % took if took is not None else ""
        if record["status"] == "succeeded":
            self._write("    stage %s succeeded%s: %d host(s) ok, %d failed" % (step["id"], timing, ok, failed))
        else:
            self._write("    stage %s %s%s: %s" % (step["id"], record["status"], timing, record.get("reason", "")))

    def gate(self, step, record):
        status = record["status"]
        if status == "pending":
            self._write("==> gate %s is pending: %s" % (step["id"], step["title"]))
        else:
            comment = ": %s" % record["comment"] if record.get("comment") else ""
            self._write("==> gate %s %s by %s%s" % (step["id"], status, record.get("decided_by"), comment))
