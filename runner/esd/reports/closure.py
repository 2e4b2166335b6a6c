"""``esd close``: close a finished change order with its lessons learned (the evaluation report's input).

Closing records who closed it, when, the closing comment (lessons learned), optionally the requester's
satisfaction (1-5, the seeds' "satisfaction of requester") and known errors with their workarounds (they go
into the release notes). Only a change order that is over (a final status of ``esd.states``: succeeded,
cancelled, denied or rolled_back) can be closed, and only once. The closure goes into ``state.json`` and the hash-chained audit log (event
``closed``), and the evaluation report, release notes and status report are written to ``report/``.
"""

from __future__ import annotations

from esd import ledger as ledger_mod
from esd.errors import UsageError
from esd.ledger import timestamp
from esd.states import FINAL


def close(ledger, change_order_id, actor, comment, satisfaction=None, known_errors=()):
    """Close a change order; return its state. Raises UsageError when it cannot be closed."""
    if not comment or not comment.strip():
        raise UsageError("closing change order %s needs a closing comment with the lessons learned (--comment)"
                         % change_order_id)
    if satisfaction is not None and satisfaction not in (1, 2, 3, 4, 5):
        raise UsageError("--satisfaction must be 1 to 5, found %s" % satisfaction)
    entry = ledger.get(change_order_id)
    with entry.locked(actor, ledger_mod.command_line()):
        state = entry.read_state()
        if state["status"] not in FINAL:
            raise UsageError("change order %s is %s; only a finished change order (%s or %s) can be closed; cancel "
                             "it first (esd cancel)" % (change_order_id, state["status"], ", ".join(FINAL[:-1]),
                                                        FINAL[-1]))
        if state.get("closure"):
            closure = state["closure"]
            raise UsageError("change order %s was already closed by %s at %s" % (
                change_order_id, closure.get("closed_by"), closure.get("closed_at")))
        errors = [{"error": error.strip(), "workaround": (workaround or "").strip() or None}
                  for error, workaround in known_errors if error and error.strip()]
        state["closure"] = {"closed_by": actor, "closed_at": timestamp(), "comment": comment.strip(),
                            "satisfaction": satisfaction, "known_errors": errors}
        entry.append_audit("closed", actor, {"comment": comment.strip(), "satisfaction": satisfaction,
                                             "known_errors": errors}, state=state)
    from esd import reports

    reports.write_reports(state, entry)
    return state
