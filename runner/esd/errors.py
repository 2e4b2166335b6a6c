"""The one exception hierarchy of the runner and the exit codes the CLI maps it to.

Library code raises these; only ``esd.cli`` turns them into a one-line message and an exit code,
so the same errors read the same way from the CLI, from tests and from other Python callers.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of ``esd``; pipelines branch on them, so they never change meaning."""

    SUCCESS = 0
    FAILED = 1          # a stage failed, or the change order is in a failed state
    INVALID = 2         # invalid change order, unknown change order, bad usage
    WAITING = 3         # stopped at a pending gate or outside the maintenance window
    LOCKED = 4          # another `esd` process holds the change order
    STOPPED = 5         # cancelled, or a gate was denied


# What each exit code means, for the CLI's help and runner/README.md (a unit test keeps the two the same).
EXIT_MEANINGS = {
    ExitCode.SUCCESS: "success: the change order finished, or the command did what was asked",
    ExitCode.FAILED: "failed: a stage failed, the run was interrupted, a halted rollout was rolled back, "
                     "`log --verify` found a broken chain, or `inventory --drift` found drift",
    ExitCode.INVALID: "invalid input: change order invalid, unknown change order or gate, refused gate decision, "
                      "cancel of a change order that has finished, usage",
    ExitCode.WAITING: "waiting: a gate decision, the go/no-go soak time or the maintenance window; run `esd run` "
                      "again afterwards",
    ExitCode.LOCKED: "locked: another process runs this change order (`esd cancel` that waited in vain: its request "
                     "stands)",
    ExitCode.STOPPED: "stopped: cancelled, or a gate was denied (`esd deny --gate go_no_go` halts the rollout; the "
                      "next run backs it out)",
}


class EsdError(Exception):
    """Base of every error the runner reports to its user."""

    exit_code = ExitCode.FAILED


class ValidationError(EsdError):
    """A change order (or a command's input) is not acceptable; carries every problem found."""

    exit_code = ExitCode.INVALID

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = "%s: " % source if source else ""
        if len(self.problems) == 1:
            message = "%s%s" % (where, self.problems[0])
        else:
            message = "%s%d problems: %s" % (where, len(self.problems), "; ".join(str(p) for p in self.problems))
        super().__init__(message)


class UsageError(EsdError):
    """The command line asks for something that cannot be done (unknown change order, bad option)."""

    exit_code = ExitCode.INVALID


class LedgerError(EsdError):
    """The ledger is unreadable or its audit log does not verify."""

    exit_code = ExitCode.FAILED


class LockedError(EsdError):
    """Another process holds the change order's lock."""

    exit_code = ExitCode.LOCKED

    def __init__(self, change_order_id, holder, message=None):
        self.change_order_id = change_order_id
        self.holder = holder or {}
        who = ", ".join("%s %s" % (k, self.holder[k]) for k in ("user", "host", "pid", "command", "since") if self.holder.get(k))
        super().__init__(message or "change order %s is being run by another process (%s)"
                         % (change_order_id, who or "holder unknown"))


class GateError(EsdError):
    """A gate decision is refused (unknown gate, not pending, separation of duties, not an approver)."""

    exit_code = ExitCode.INVALID


class StageFailed(EsdError):
    """A stage ended without success; the change order is left failed at that stage."""

    exit_code = ExitCode.FAILED

    def __init__(self, stage_id, reason, hosts=None):
        self.stage_id = stage_id
        self.reason = reason
        self.hosts = sorted(hosts or [])
        suffix = " (hosts: %s)" % ", ".join(self.hosts) if self.hosts else ""
        super().__init__("stage %s failed: %s%s" % (stage_id, reason, suffix))


class StageNotBuilt(StageFailed):
    """The stage's playbook does not exist yet in this project."""


class ChangeOrderStopped(EsdError):
    """The change order was cancelled or a gate was denied; it will not run further."""

    exit_code = ExitCode.STOPPED


class ChangeOrderWaiting(EsdError):
    """The change order waits for a gate decision or its maintenance window."""

    exit_code = ExitCode.WAITING
