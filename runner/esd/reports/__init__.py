"""The reports of a change order, all generated from its ledger entry (state, audit log, stage events, snapshots).

=================  ===========================================  ==================================
kind               what                                         formats
=================  ===========================================  ==================================
``status``         project status report, at any moment         text, md, html, json
``test``           build unit test and test-site stages         text, md, html, json, junit
``evaluation``     project evaluation report (at closure)       text, md, html, json
``release-notes``  release notes with known errors              text, md, html, json
``distribution``   a rollout per wave and per endpoint          text (= md), md, html, json
=================  ===========================================  ==================================

``esd report CO --kind K --format F`` prints one; :func:`write_reports` writes every applicable one to
``<entry>/report/`` (when the change order succeeds, and when it is closed); :func:`stage_settled` writes
the test report after every build or test stage attempt, so the sign-off can read it. JSON shapes are
in docs/report-schema.md (``esd.reports.schema``). The shared HTML/Markdown pieces are
``esd.reports.html`` and ``esd.reports.markdown``.
"""

from __future__ import annotations

import json
import os
import traceback

from esd import distribution_report, triage
from esd.errors import UsageError
from esd.reports import common, evaluation, release_notes, status, testing

KINDS = {
    "status": (status.status_report, {"text": status.render_text, "md": status.render_markdown,
                                      "html": status.render_html}),
    "test": (testing.test_report, {"text": testing.render_text, "md": testing.render_markdown,
                                   "html": testing.render_html, "junit": testing.render_junit}),
    "evaluation": (lambda state, entry: evaluation.facts(entry, state),
                   {"text": evaluation.render_text, "md": evaluation.render_markdown, "html": evaluation.render_html}),
    "release-notes": (release_notes.release_notes, {"text": release_notes.render_text,
                                                    "md": release_notes.render_markdown,
                                                    "html": release_notes.render_html}),
    "distribution": (lambda state, entry: _distribution(state, entry),
                     {"text": distribution_report.render_markdown, "md": distribution_report.render_markdown,
                      "html": distribution_report.render_html}),
}


def _distribution(state, entry):
    if not triage.rollout_steps(state, ("beta", "check", "wave")):
        raise UsageError("change order %s has no rollout (a distribution report covers install, update and image "
                         "change orders rolled out in a beta group and waves)" % state["change_order"]["id"])
    return distribution_report.build(state, entry)
FORMATS = ("text", "md", "html", "json", "junit")
EXTENSIONS = {"md": "md", "html": "html", "json": "json", "junit": "junit.xml"}


def build(kind, state, entry):
    """The data of a report kind (what ``--format json`` prints)."""
    if kind not in KINDS:
        raise UsageError("unknown report kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))
    return KINDS[kind][0](state, entry)


def render(kind, data, fmt):
    if fmt == "json":
        return common.json_dump(data)
    renderers = KINDS[kind][1]
    if fmt not in renderers:
        raise UsageError("report kind %s has no %s format (formats: json, %s)" % (kind, fmt, ", ".join(renderers)))
    text = renderers[fmt](data)
    return text if text.endswith("\n") else text + "\n"


def _has_tests(state):
    return any(step["kind"] == "stage" and step.get("site") in testing.IN_SCOPE_SITES
               for step in state["plan"]["steps"])


def write_kind(kind, state, entry, formats=("md", "html", "json")):
    data = build(kind, state, entry)
    paths = []
    for fmt in formats:
        paths.append(common.write_report_file(entry, "%s.%s" % (kind, EXTENSIONS[fmt]), render(kind, data, fmt)))
    return data, paths


def write_reports(state, entry):
    """Write every applicable report of the change order into ``<entry>/report/``; return that directory.

    A report that cannot be built leaves ``<kind>.error`` (the traceback) instead: the change order's own
    outcome is already recorded and must not turn into an error because of a report.
    """
    def release_notes_files():
        notes = release_notes.release_notes(state, entry)
        if notes["applicable"]:
            for fmt in ("md", "html", "json"):
                common.write_report_file(entry, "release-notes.%s" % EXTENSIONS[fmt],
                                         render("release-notes", notes, fmt))

    jobs = [("status", lambda: write_kind("status", state, entry))]
    if _has_tests(state):
        jobs.append(("test", lambda: write_kind("test", state, entry, formats=("md", "html", "json", "junit"))))
    jobs += [("evaluation", lambda: write_kind("evaluation", state, entry)), ("release-notes", release_notes_files)]
    for kind, job in jobs:
        try:
            job()
        except Exception:  # noqa: BLE001 - see the docstring
            common.write_report_file(entry, "%s.error" % kind, traceback.format_exc())
    return os.path.join(entry.path, "report")


def stage_settled(entry, state, planned, console=None):
    """After a build or test stage attempt: write the test report (JUnit too). Never raises."""
    if planned.get("site") not in testing.IN_SCOPE_SITES:
        return None
    try:
        return write_kind("test", state, entry, formats=("md", "html", "json", "junit"))[1]
    except Exception as exc:  # noqa: BLE001 - a report problem must not fail the change order
        if console is not None:
            console.info("    could not write the test report: %s: %s" % (type(exc).__name__, exc))
        return None


def dumps(data):
    return json.dumps(data, indent=2, default=str)
