"""The status report (kept for callers of ``esd.report``); the reports live in :mod:`esd.reports`.

``write_reports`` writes every applicable report of a change order (status, test, evaluation, release
notes) into its ledger entry's ``report/`` directory.
"""

from __future__ import annotations

from esd.reports import write_reports  # noqa: F401
from esd.reports.status import render_html, render_markdown, render_text, status_report  # noqa: F401
