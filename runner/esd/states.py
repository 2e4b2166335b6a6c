"""Change-order statuses: the one list of them, and which ones are final.

A change order in a final status is over: ``esd run`` does nothing more, its gates cannot be decided, ``esd
cancel`` refuses, ``esd close`` closes it, the evaluation gives its finish time and ``esd metrics`` counts it as
finished. The engine and every report import these tuples; nothing keeps a copy.
"""

from __future__ import annotations

STATUSES = ("registered", "running", "waiting", "failed", "interrupted", "denied", "cancelled", "succeeded",
            "rolled_back")
# rolled_back: a halted rollout that was backed out (see esd.rollout).
FINAL = ("succeeded", "cancelled", "denied", "rolled_back")
