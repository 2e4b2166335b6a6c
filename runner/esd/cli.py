"""The ``esd`` command line. It parses arguments, calls the engine and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from esd import __version__, catalogue, changeorder, identity, project, report, reports
from esd.engine import Engine
from esd.errors import EXIT_MEANINGS, EsdError, ExitCode, ValidationError
from esd.ledger import Ledger
from esd.plan import describe_input, make_plan, render_text
from esd.progress import Console

EXIT_CODES_HELP = "exit codes:\n%s\n\n" % "\n".join(
    "  %d  %s" % (code, meaning) for code, meaning in EXIT_MEANINGS.items()) + """\
identity: --as, else ESD_USER, else the OS user.
ledger:   --ledger, else ESD_LEDGER, else $ESD_HOME/ledger, else ./.esd/ledger.
"""


class _KnownError(argparse.Action):
    """``--known-error TEXT``: a known error for the release notes; a ``--workaround`` after it belongs to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, list(getattr(namespace, self.dest, None) or []) + [[values, None]])


class _Workaround(argparse.Action):
    """``--workaround TEXT``: the workaround of the ``--known-error`` given last before it (each known error has
    at most one; a known error without a workaround simply has none, and the others stay with their own)."""

    def __call__(self, parser, namespace, values, option_string=None):
        known = [list(item) for item in getattr(namespace, "known_errors", None) or []]
        if not known:
            raise argparse.ArgumentError(self, "%r has no --known-error before it: write --known-error TEXT "
                                               "--workaround TEXT" % values)
        if known[-1][1] is not None:
            raise argparse.ArgumentError(self, "%r follows a --known-error that already has a workaround (%r): give "
                                               "each workaround right after its own --known-error"
                                         % (values, known[-1][1]))
        known[-1][1] = values
        namespace.known_errors = known


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    common.add_argument("--ledger", metavar="DIR", help="ledger directory (default: see below)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument("--as", dest="actor", metavar="USER", help="identity acting (default: ESD_USER, OS user)")

    parser = argparse.ArgumentParser(
        prog="esd", description="Run software-distribution and OS-provisioning change orders under change control.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="esd %s" % __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def add(name, help_text, parents=(common,)):
        return commands.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                                   epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)

    sub = add("validate", "check change-order files; report every problem (schema, then targets in the inventory)")
    sub.add_argument("files", nargs="+", metavar="CHANGE_ORDER.yml")
    sub.add_argument("--offline", action="store_true",
                     help="check the schema only; do not resolve the targets in the inventory")
    sub = add("plan", "print the plan of a change order (category, sites, stages, gates, targets)")
    sub.add_argument("change_order", metavar="CHANGE_ORDER", help="a change-order file or an id in the ledger")
    for name, text in (("run", "run a change order until it finishes, fails or waits at a gate"),
                       ("resume", "continue a change order from where it stopped (same as run)")):
        sub = add(name, text, (common, acting))
        sub.add_argument("change_order", metavar="CHANGE_ORDER", help="a change-order file or an id in the ledger")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
    for name, text in (("approve", "approve a pending gate"), ("deny", "deny a pending gate (stops the change order)")):
        sub = add(name, text, (common, acting))
        sub.add_argument("change_order", metavar="ID")
        sub.add_argument("--gate", required=True, help="gate id (see `esd status`)")
        sub.add_argument("--comment", default="", help="why")
    sub = add("cancel", "cancel a change order that has not finished (a running one is asked to stop; esd waits "
                        "until it has, up to 60 s, and cancels it)", (common, acting))
    sub.add_argument("change_order", metavar="ID")
    sub.add_argument("--comment", default="", help="why")
    sub = add("status", "the status report of a change order")
    sub.add_argument("change_order", metavar="ID")
    sub.add_argument("--markdown", action="store_true", help="Markdown instead of text")
    add("list", "change orders in the ledger")
    sub = add("log", "the audit log of a change order")
    sub.add_argument("change_order", metavar="ID")
    sub.add_argument("--verify", action="store_true", help="verify the hash chain and the head in state.json; exit 1 "
                                                           "when it is broken")
    add("catalogue", "the request types and their stages and gates")
    sub = add("report", "a report of a change order: status, test (with JUnit XML), evaluation, release notes, "
                        "distribution")
    sub.add_argument("change_order", metavar="ID")
    sub.add_argument("--kind", default="status", choices=tuple(reports.KINDS), help="which report (default: status)")
    sub.add_argument("--format", dest="fmt", choices=("text", "md", "html", "json", "junit"),
                     help="text (default), md, html, json, or junit (test report only); --json is --format json")
    sub.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    sub.add_argument("--write", action="store_true",
                     help="write every applicable report into the change order's ledger directory (report/)")
    sub = add("metrics", "measurements across all change orders (on time, built in time, rework, sent back, "
                         "rollbacks, lead time)")
    sub.add_argument("--since", metavar="DATE", help="only change orders received on or after DATE (YYYY-MM-DD)")
    sub.add_argument("--until", metavar="DATE", help="only change orders received on or before DATE (YYYY-MM-DD)")
    sub.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                     help="only this request type (repeatable)")
    sub.add_argument("--category", dest="categories", action="append", default=[], choices=("ESD", "OSP"),
                     help="only this category (repeatable)")
    sub.add_argument("--format", dest="fmt", choices=("text", "json", "csv", "md", "html"),
                     help="text (default), json, csv, md or html; --json is --format json")
    sub.add_argument("--per-change-order", action="store_true", help="CSV: one row per change order")
    sub.add_argument("--at", metavar="TIMESTAMP", help="measure as if it were this moment (default: now)")
    sub.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    sub = add("inventory", "which hosts run which package versions and images, and drift from the intended state")
    sub.add_argument("--live", action="store_true", help="read the hosts now (playbooks/audit.yml) instead of the "
                                                         "ledger's newest snapshots")
    sub.add_argument("--inventory", "-i", metavar="INVENTORY", help="with --live: the inventory (default: the demo "
                                                                   "inventory)")
    sub.add_argument("--hosts", default="all", metavar="PATTERN", help="with --live: the host pattern (default: all)")
    sub.add_argument("--package", metavar="NAME", help="only this package")
    sub.add_argument("--format", dest="fmt", choices=("text", "json", "csv"), help="text (default), json or csv")
    sub.add_argument("--drift", action="store_true", help="exit 1 when a host drifted (for monitoring)")
    sub = add("close", "close a finished change order with the lessons learned (writes the evaluation report)",
              (common, acting))
    sub.add_argument("change_order", metavar="ID")
    sub.add_argument("--comment", required=True, help="the closing comment: lessons learned")
    sub.add_argument("--satisfaction", type=int, choices=range(1, 6), metavar="1-5",
                     help="the requester's satisfaction, 1 (poor) to 5 (excellent)")
    sub.add_argument("--known-error", dest="known_errors", action=_KnownError, default=[], metavar="TEXT",
                     help="a known error for the release notes (repeatable)")
    sub.add_argument("--workaround", action=_Workaround, metavar="TEXT",
                     help="the workaround of the --known-error given right before it (optional, one per known "
                          "error): --known-error A --workaround WA --known-error B --known-error C --workaround WC")
    sub = add("demo", "run the embedded demo: a software_release on the demo fleet, end to end", (common,))
    sub.add_argument("--quiet", action="store_true", help="no stage progress, only the story")
    sub.add_argument("--keep-fleet", action="store_true", help="do not reset the demo fleet's host roots first")
    return parser


def _emit(args, data, text):
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif text:
        print(text)


def _engine(args, quiet=None):
    console = Console(quiet=bool(quiet) if quiet is not None else True)
    return Engine(Ledger(args.ledger), console=console)


def cmd_validate(args):
    results = []
    exit_code = ExitCode.SUCCESS
    for path in args.files:
        try:
            co = changeorder.load(path)
            if not args.offline:
                # What `esd run` would refuse: targets that match no host of the inventory.
                make_plan(co, project_dir=project.project_dir())
            results.append({"file": path, "valid": True, "id": co.id, "type": co.spec.type, "problems": []})
        except ValidationError as exc:
            exit_code = ExitCode.INVALID
            results.append({"file": path, "valid": False, "problems": [
                problem.as_dict() if hasattr(problem, "as_dict") else {"message": str(problem)}
                for problem in exc.problems]})
    lines = []
    for result in results:
        if result["valid"]:
            lines.append("%s: valid (%s, type %s)" % (result["file"], result["id"], result["type"]))
        else:
            lines.append("%s: %d problem(s)" % (result["file"], len(result["problems"])))
            lines.extend("  %s" % problem["message"] for problem in result["problems"])
    _emit(args, {"results": results, "exit_code": int(exit_code)}, "\n".join(lines))
    return exit_code


def cmd_plan(args):
    engine = _engine(args)
    plan = engine.plan(args.change_order)
    data = plan.as_dict()
    for step in data["steps"]:
        step["inputs"] = {key: describe_input(value) for key, value in step["inputs"].items()}
    _emit(args, data, render_text(plan, engine.project_dir))
    return ExitCode.SUCCESS


def cmd_run(args):
    engine = _engine(args, quiet=args.quiet)
    outcome = engine.run(args.change_order, identity.current(args.actor))
    _emit(args, outcome.as_dict(), "%s: %s" % (outcome.status.upper(), outcome.message))
    return outcome.exit_code


def cmd_decide(args):
    engine = _engine(args)
    outcome = engine.decide(args.change_order, args.gate, identity.current(args.actor), args.command == "approve",
                            args.comment)
    _emit(args, outcome.as_dict(), outcome.message)
    return outcome.exit_code


def cmd_cancel(args):
    engine = _engine(args)
    outcome = engine.cancel(args.change_order, identity.current(args.actor), args.comment)
    _emit(args, outcome.as_dict(), outcome.message)
    return outcome.exit_code


def cmd_status(args):
    ledger = Ledger(args.ledger)
    entry = ledger.get(args.change_order)
    state = entry.read_state()
    data = report.status_report(state, entry)
    holder = entry.lock_holder()
    data["running"] = holder
    text = report.render_markdown(data) if args.markdown else report.render_text(data)
    if holder and not args.markdown:
        text += "\nRunning now: pid %s by %s on %s since %s" % (holder.get("pid"), holder.get("user"),
                                                             holder.get("host"), holder.get("since"))
    _emit(args, data, text)
    return ExitCode.SUCCESS


def cmd_list(args):
    ledger = Ledger(args.ledger)
    rows = []
    for change_order_id in ledger.ids():
        entry = ledger.entry(change_order_id)
        try:
            state = entry.read_state()
        except EsdError as exc:
            rows.append({"id": change_order_id, "status": "unreadable", "reason": str(exc)})
            continue
        rows.append({"id": change_order_id, "type": state["change_order"]["type"], "status": state["status"],
                     "step": state.get("current_step"), "requester": state["change_order"]["requester"],
                     "updated_at": state.get("updated_at"), "reason": state.get("reason", "")})
    lines = ["%-32s %-18s %-12s %-22s %s" % ("ID", "TYPE", "STATUS", "STEP", "UPDATED")] if rows else [
        "no change orders in %s" % ledger.root]
    for row in rows:
        lines.append("%-32s %-18s %-12s %-22s %s" % (row["id"], row.get("type", "-"), row["status"],
                                                     row.get("step") or "-", row.get("updated_at") or "-"))
    _emit(args, {"ledger": ledger.root, "change_orders": rows}, "\n".join(lines))
    return ExitCode.SUCCESS


def cmd_log(args):
    entry = Ledger(args.ledger).get(args.change_order)
    records = []
    try:
        records = entry.read_audit()
    except EsdError:
        if not args.verify:
            raise
    try:
        head = entry.read_state().get("audit_head")
    except EsdError:
        if not args.verify:
            raise
        head = None
    # The head (seq and hash of the last record): kept outside the ledger (the change ticket, git), it anchors
    # the log against someone who can rewrite the whole ledger (the chain has no key).
    result = {"change_order": args.change_order, "head": head, "records": records}
    exit_code = ExitCode.SUCCESS
    lines = []
    for record in records:
        data = record.get("data") or {}
        detail = " ".join("%s=%s" % (key, value if not isinstance(value, (dict, list)) else json.dumps(value))
                          for key, value in data.items())
        lines.append("%4s %s %-18s %-8s %s" % (record.get("seq"), record.get("time"), record.get("event"),
                                               record.get("actor"), detail[:160]))
    if head:
        lines.append("head: record %s, sha256 %s" % (head.get("seq"), head.get("hash")))
    if args.verify:
        ok, problems, count = entry.verify_audit()
        result["verified"], result["problems"] = ok, problems
        if ok:
            lines.append("audit log verified: %d records, hash chain intact" % count)
        else:
            lines.append("audit log BROKEN:")
            lines.extend("  %s" % problem for problem in problems)
            exit_code = ExitCode.FAILED
    _emit(args, result, "\n".join(lines))
    return exit_code


def cmd_catalogue(args):
    rows = []
    for request_type in catalogue.REQUEST_TYPES.values():
        steps = []
        for step in request_type.steps:
            if isinstance(step, catalogue.Rollout):
                steps.append({"kind": "rollout", "id": step.stage.id, "playbook": step.stage.playbook})
            elif isinstance(step, catalogue.Stage):
                steps.append({"kind": "stage", "id": step.id, "site": step.site, "playbook": step.playbook})
            elif isinstance(step, catalogue.Gate):
                steps.append({"kind": "gate", "id": step.id, "optional": step.optional})
            else:
                steps.append({"kind": "notify", "id": step.id, "event": step.event})
        rows.append({"type": request_type.id, "category": request_type.category, "title": request_type.title,
                     "sites": list(request_type.sites), "steps": steps, "requires": list(request_type.requires)})
    lines = []
    for row in rows:
        shown = []
        for step in row["steps"]:
            if step["kind"] == "gate":
                shown.append("[%s%s]" % (step["id"], "?" if step["optional"] else ""))
            elif step["kind"] == "notify":
                shown.append("(%s)" % step["id"])
            elif step["kind"] == "rollout":
                shown.append("%s:beta>go_no_go>waves" % step["playbook"])
            else:
                shown.append(step["playbook"])
        lines.append("%-22s %s  %-28s %s" % (row["type"], row["category"], ",".join(row["sites"]), " > ".join(shown)))
    lines.append("[gate] needs a decision, [gate?] only when listed in spec.approvals.required")
    _emit(args, {"request_types": rows}, "\n".join(lines))
    return ExitCode.SUCCESS


def _write_output(args, text, **described):
    """The report on stdout, or written to ``--output``: then the path is printed, as JSON with --json."""
    if args.output:
        from esd.ledger import atomic_write

        path = os.path.abspath(args.output)
        atomic_write(path, text)
        _emit(args, dict(described, written=path, bytes=len(text.encode("utf-8"))), path)
    else:
        sys.stdout.write(text)


def cmd_report(args):
    entry = Ledger(args.ledger).get(args.change_order)
    state = entry.read_state()
    if args.write:
        directory = reports.write_reports(state, entry)
        names = sorted(os.listdir(directory))
        _emit(args, {"change_order": args.change_order, "directory": directory, "files": names},
              "\n".join(os.path.join(directory, name) for name in names))
        return ExitCode.SUCCESS
    fmt = "json" if args.json else (args.fmt or "text")
    data = reports.build(args.kind, state, entry)
    _write_output(args, reports.render(args.kind, data, fmt), change_order=args.change_order, kind=args.kind,
                  format=fmt)
    return ExitCode.SUCCESS


def cmd_metrics(args):
    from esd import metrics

    fmt = "json" if args.json else (args.fmt or "text")
    now = metrics.parse_bound(args.at) if args.at else None
    data = metrics.compute(Ledger(args.ledger), since=args.since, until=args.until, types=args.types,
                           categories=args.categories, now=now)
    if args.per_change_order and fmt == "csv":
        text = metrics.render_rows_csv(data)
    else:
        text = metrics.RENDERERS[fmt](data)
    _write_output(args, text, format=fmt)
    return ExitCode.SUCCESS


def cmd_inventory(args):
    from esd import inventory, project

    ledger = Ledger(args.ledger)
    live = None
    if args.live:
        source = args.inventory or os.path.join(project.project_dir(), "inventories", "demo")
        live = inventory.observed_live(os.path.abspath(source), args.hosts)
    data = inventory.fleet_inventory(ledger, live=live, package=args.package)
    fmt = "json" if args.json else (args.fmt or "text")
    sys.stdout.write(inventory.RENDERERS[fmt](data))
    return ExitCode.FAILED if args.drift and data["drift"] else ExitCode.SUCCESS


def cmd_close(args):
    from esd.reports import closure

    known = [tuple(item) for item in args.known_errors]
    actor = identity.current(args.actor)
    state = closure.close(Ledger(args.ledger), args.change_order, actor, args.comment, args.satisfaction, known)
    _emit(args, {"change_order": args.change_order, "status": state["status"], "closure": state["closure"]},
          "change order %s closed by %s; evaluation report: esd report %s --kind evaluation" % (
              args.change_order, actor, args.change_order))
    return ExitCode.SUCCESS


def cmd_demo(args):
    from esd import demo

    return demo.run_demo(ledger_root=args.ledger, quiet=args.quiet, keep_fleet=args.keep_fleet,
                         as_json=args.json)


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "run": cmd_run, "resume": cmd_run, "approve": cmd_decide,
            "deny": cmd_decide, "cancel": cmd_cancel, "status": cmd_status, "list": cmd_list, "log": cmd_log,
            "catalogue": cmd_catalogue, "demo": cmd_demo, "report": cmd_report, "metrics": cmd_metrics,
            "inventory": cmd_inventory, "close": cmd_close}


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = int(COMMANDS[args.command](args))
        sys.stdout.flush()
        return code
    except EsdError as exc:
        if args.debug:
            traceback.print_exc()
        problems = getattr(exc, "problems", None)
        if args.json:
            print(json.dumps({"error": str(exc), "kind": type(exc).__name__, "exit_code": int(exc.exit_code),
                              "problems": [p.as_dict() if hasattr(p, "as_dict") else {"message": str(p)}
                                           for p in problems] if problems else []}, indent=2))
        elif problems and len(problems) > 1:
            print("esd: %s: %d problems:" % (exc.source or args.command, len(problems)), file=sys.stderr)
            for problem in problems:
                print("  %s" % problem, file=sys.stderr)
        else:
            print("esd: %s" % exc, file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("esd: interrupted", file=sys.stderr)
        return int(ExitCode.FAILED)
    except BrokenPipeError:
        # `esd plan ... | head`: the reader went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.SUCCESS)


if __name__ == "__main__":
    sys.exit(main())
