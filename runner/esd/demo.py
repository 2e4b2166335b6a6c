"""``esd demo``: a software_release change order run end to end on the embedded demo fleet.

The story, with the command each step corresponds to:

    alice  requests   the change order (examples/change_orders/demo-software-release.yml)
    bob    runs       build + hand-over to test + test          esd run ID --as bob
    bob    tries      to sign off his own test: refused          esd approve ID --gate test_signoff --as bob
    carol  signs off  the test                                   esd approve ID --gate test_signoff --as carol
    erin   runs       on to the change board                     esd run ID --as erin
    alice  tries      to approve her own change: refused         esd approve ID --gate change_board --as alice
    dave   approves   for the change board                       esd approve ID --gate change_board --as dave
    erin   runs       promote -> distribute -> beta ->           esd run ID --as erin
                      automatic go/no-go -> waves (from the depot, pinned to the signed index)
    alice  accepts    the change (client acceptance)             esd approve ID --gate client_acceptance --as alice
    erin   runs       commit                                     esd run ID --as erin

Every run gets a unique change-order id and its own ledger entry, so the demo can be run again and
again. The demo fleet lives under ``$ESD_DEMO_ROOT/esd-demo`` (default ``<repo>/.demo/esd-demo``). It is reset
at the start (unless ``--keep-fleet``), with its repository (``repository/``) and signing key (``keys/``), and
given its history before the change order, outside change control, with the stage playbooks and one
``esd.osp.software`` call per host and step (:func:`play_history`): the signing key (playbooks/keys.yml), then on
the 26 hosts of the test site and production hello-agent 1.0.0 installed, updated to a first 1.1.0 build, that
update rolled back, and 1.0.0 committed. So the change-controlled release is an update with a backup until
commit.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys

import yaml

from esd import project, report
from esd.engine import Engine
from esd.errors import EsdError, ExitCode, GateError
from esd.ledger import Ledger, default_root as ledger_default_root
from esd.plan import render_brief
from esd.progress import Console
from esd.stage import run_stage

EXAMPLE = os.path.join("examples", "change_orders", "demo-software-release.yml")
REQUESTER, BUILDER, TESTER, CHANGE_BOARD, OPERATOR = "alice", "bob", "carol", "dave", "erin"


BASELINE = os.path.join("examples", "packages", "hello-agent-1.0")
FIRST_ATTEMPT = os.path.join("examples", "packages", "hello-agent-1.1")
# The estate's history before the change order (demo only): one deploy.yml run per step, (title, version, state).
HISTORY = (("install hello-agent 1.0.0", "1.0.0", "active"),
           ("update to a first build of 1.1.0", "1.1.0", "active"),
           ("roll that update back", "1.1.0", "rolled_back"),
           ("commit 1.0.0", "1.0.0", "committed"))


class _Baseline:
    """Runs the stage playbooks that set up the fleet outside change control, refusing on the first failure."""

    def __init__(self, project_dir, demo_root, console=None):
        self.project_dir = project_dir
        self.envvars = project.ansible_environment(project_dir)
        self.envvars["ESD_DEMO_ROOT"] = demo_root
        self.inventory = os.path.join(project_dir, "inventories", "demo")
        self.work = os.path.join(demo_root, "baseline")
        self.on_progress = console.progress if console else None
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self, step, playbook, extravars, what):
        result = run_stage(stage_id="baseline_%s" % step, playbook=os.path.join(self.project_dir, "playbooks", playbook),
                           inventory=self.inventory, private_data_dir=os.path.join(self.work, step),
                           extravars=extravars, envvars=self.envvars, on_progress=self.on_progress)
        if result.status != "successful":
            raise EsdError("could not %s: %s" % (what, result.error or "; ".join(
                "%s: %s" % (host, outcome.message) for host, outcome in sorted(result.hosts.items())
                if outcome.message) or "see %s" % os.path.join(self.work, step)))
        return result

    def signing_key(self):
        # The key that signs the repository's channel indexes (a real site runs `ansible-playbook playbooks/keys.yml`
        # once): promote signs the production channel with it, distribute and deploy verify the index against it.
        self.run("keys", "keys.yml", {}, "create the repository signing key")

    def build(self, source):
        built = self.run("build-%s" % os.path.basename(source), "build_package.yml",
                         {"build_package_src": os.path.join(self.project_dir, source),
                          "build_package_dest": os.path.join(self.work, "artifacts"),
                          "build_package_builder": "baseline"}, "build %s" % source)
        artifact = (built.outputs or {}).get("esd_artifact") or {}
        if not artifact.get("path"):
            raise EsdError("could not build %s: the build published no artifact" % source)
        return artifact

    def deploy(self, step, pattern, artifact, state):
        return self.run(step, "deploy.yml", {
            "esd_hosts": pattern, "software_name": artifact["name"], "software_version": artifact["version"],
            "software_src": artifact["path"], "software_sha256": artifact["sha256"], "software_state": state},
            "bring %s %s to %s on %s" % (artifact["name"], artifact["version"], state, pattern))


def seed_fleet(project_dir, demo_root, pattern="test_site:production", console=None):
    """Give the fleet its baseline: hello-agent 1.0.0 committed on the test site and in production.

    This is the estate before the demo's change order (set up directly through the stage playbooks,
    outside change control), so the release is an update: 1.1.0 becomes active with 1.0.0 as its
    backup, the test site rehearses a real rollback, and commit removes the backup.
    """
    baseline = _Baseline(project_dir, demo_root, console)
    baseline.signing_key()
    artifact = baseline.build(BASELINE)
    baseline.deploy("install", pattern, artifact, "committed")
    return artifact


def play_history(project_dir, demo_root, pattern="test_site:production", console=None, on_step=None):
    """The demo's baseline, played as the estate's history: the same end state as :func:`seed_fleet`
    (hello-agent 1.0.0 committed on ``pattern``), reached through install -> update -> roll back -> commit.

    Each step is one ``playbooks/deploy.yml`` run (one ``esd.osp.software`` call per host); ``on_step(title,
    result)`` is called after each with its StageResult. Returns the 1.0.0 artifact.
    """
    baseline = _Baseline(project_dir, demo_root, console)
    baseline.signing_key()
    artifacts = {artifact["version"]: artifact for artifact in map(baseline.build, (BASELINE, FIRST_ATTEMPT))}
    for number, (title, version, state) in enumerate(HISTORY, 1):
        result = baseline.deploy("history-%d" % number, pattern, artifacts[version], state)
        if on_step:
            on_step(title, result)
    return artifacts["1.0.0"]


def fleet_after(result):
    """One line for a stage's hosts: how many changed, and how many are in each (active, backup, committed)."""
    groups = {}
    for outcome in result.hosts.values():
        software = outcome.software or {}
        key = "active %s, backup %s, committed %s" % (software.get("active") or "none", software.get("backup") or "none",
                                                      software.get("committed") or "none")
        groups[key] = groups.get(key, 0) + 1
    changed = sum(1 for outcome in result.hosts.values() if outcome.changed)
    return "%d hosts, %d changed: %s" % (len(result.hosts), changed,
                                          "; ".join("%d %s" % (count, key) for key, count in sorted(groups.items())))


def prepare_change_order(project_dir, directory, change_order_id):
    """Write the example change order with a unique id (paths made absolute) into ``directory``."""
    source = os.path.join(project_dir, EXAMPLE)
    with open(source, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    base = os.path.dirname(source)
    document["metadata"]["id"] = change_order_id
    for attachment in document["metadata"].get("attachments") or []:
        if "path" in attachment:
            attachment["path"] = os.path.normpath(os.path.join(base, attachment["path"]))
    spec = document["spec"]
    spec["software"]["source"] = os.path.normpath(os.path.join(base, spec["software"]["source"]))
    spec["targets"]["inventory"] = os.path.normpath(os.path.join(base, spec["targets"]["inventory"]))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "%s.yml" % change_order_id)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# Generated by `esd demo` from %s\n" % EXAMPLE)
        yaml.safe_dump(document, handle, sort_keys=False)
    return path


class _Story:
    def __init__(self, quiet_json):
        self.out = sys.stderr if quiet_json else sys.stdout
        self.number = 0

    def say(self, text=""):
        print(text, file=self.out, flush=True)

    def step(self, who, what, command):
        self.number += 1
        self.say("")
        self.say("[%d] %s %s" % (self.number, who, what))
        self.say("    $ %s" % command)


def run_demo(ledger_root=None, quiet=False, keep_fleet=False, as_json=False):
    project_dir = project.project_dir()
    base_root = project.demo_root(project_dir)
    demo_root = os.path.join(base_root, "esd-demo")
    # Stages see this root: the fleet of this demo is its own, whatever else uses the default root.
    os.environ["ESD_DEMO_ROOT"] = demo_root
    fresh = not keep_fleet or not os.path.isdir(os.path.join(demo_root, "hosts"))
    if fresh:
        # The hosts (depot-01's depot included), the repository and its signing key start afresh.
        for part in ("hosts", "repository", "keys"):
            shutil.rmtree(os.path.join(demo_root, part), ignore_errors=True)
    os.makedirs(demo_root, exist_ok=True)
    # The demo keeps its own ledger beside its fleet unless one is named (--ledger, ESD_LEDGER, ESD_HOME).
    if not ledger_root and (os.environ.get("ESD_LEDGER") or os.environ.get("ESD_HOME")):
        ledger_root = ledger_default_root()
    ledger = Ledger(ledger_root or os.path.join(demo_root, "ledger"))
    story = _Story(as_json)
    engine = Engine(ledger, console=Console(stream=story.out, quiet=quiet),
                    project_dir=project_dir)

    change_order_id = "DEMO-%s" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    path = prepare_change_order(project_dir, os.path.join(demo_root, "change_orders"), change_order_id)
    story.say("esd demo: release hello-agent 1.1.0 to the %s demo fleet under change control" % "24-host")
    story.say("  change order %s, ledger %s" % (change_order_id, ledger.root))
    story.say("  fleet roots under %s/hosts" % demo_root)

    if fresh:
        story.step("setup", "gives the fleet its history, outside change control: the repository signing key, then on "
                   "test-01, test-02 and prod-001..prod-024 one esd.osp.software call per host and step",
                   "ansible-playbook playbooks/keys.yml; playbooks/build_package.yml (1.0.0, 1.1.0); "
                   "playbooks/deploy.yml -e software_state=active|rolled_back|committed")

        def history_step(title, result):
            story.say("    %-36s -> %s" % (title, fleet_after(result)))

        baseline = play_history(project_dir, demo_root, on_step=history_step)
        story.say("    -> hello-agent %s (sha256 %s...) committed everywhere: the estate before the change order"
                  % (baseline["version"], baseline["sha256"][:12]))

    shown = os.path.relpath(path)
    story.step(REQUESTER, "requests the change; the runner plans it",
               "esd plan %s" % (path if shown.startswith("..") else shown))
    story.say(_indent(render_brief(engine.plan(path))))

    def run(who):
        story.step(who, "runs the change order", "esd run %s --as %s" % (change_order_id, who))
        outcome = engine.run(path, who)
        story.say("    -> %s: %s" % (outcome.status.upper(), outcome.message))
        return outcome

    def decide(gate, who, comment, expect_refusal=False):
        story.step(who, "%s gate %s" % ("tries to approve" if expect_refusal else "approves", gate),
                   "esd approve %s --gate %s --as %s" % (change_order_id, gate, who))
        try:
            outcome = engine.decide(change_order_id, gate, who, True, comment)
        except GateError as refused:
            story.say("    -> refused: %s" % refused)
            if not expect_refusal:
                raise
            return None
        story.say("    -> %s" % outcome.message)
        return outcome

    outcome = run(BUILDER)
    if outcome.status == "waiting" and outcome.step == "test_signoff":
        decide("test_signoff", BUILDER, "", expect_refusal=True)
        decide("test_signoff", TESTER, "test plan passed on test-01 and test-02; backout rehearsed")
        outcome = run(OPERATOR)
    if outcome.status == "waiting" and outcome.step == "change_board":
        decide("change_board", REQUESTER, "", expect_refusal=True)
        decide("change_board", CHANGE_BOARD, "CAB approved: low risk, backout rehearsed")
        outcome = run(OPERATOR)
    if outcome.status == "waiting" and outcome.step == "client_acceptance":
        entry = ledger.entry(change_order_id)
        story.say("    fleet now: %s" % _fleet_summary(report.status_report(entry.read_state())))
        decide("client_acceptance", REQUESTER, "beta and waves healthy; accept and commit")
        outcome = run(OPERATOR)

    entry = ledger.entry(change_order_id)
    state = entry.read_state()
    status = report.status_report(state, entry)
    story.say("")
    story.say("Status report (esd status %s):" % change_order_id)
    story.say(_indent(report.render_text(status)))
    ok, problems, count = entry.verify_audit()
    story.say("")
    story.say("esd log %s --verify: %s" % (change_order_id, "%d records, hash chain intact" % count if ok
                                           else "BROKEN: %s" % "; ".join(problems)))
    story.say("Ledger: %s (reports in %s)" % (entry.path, os.path.join(entry.path, "report")))
    story.say("Look again: esd status %s --ledger %s; esd report %s --kind evaluation --ledger %s" % (
        change_order_id, ledger.root, change_order_id, ledger.root))
    if as_json:
        print(json.dumps(status, indent=2, default=str))
    return int(ExitCode.SUCCESS) if outcome.status == "succeeded" else outcome.exit_code


def _fleet_summary(status):
    groups = {}
    for endpoint in status["endpoints"].values():
        if endpoint["result"] == "ok":
            key = "active %s, backup %s, committed %s" % (endpoint.get("active"), endpoint.get("backup"),
                                                          endpoint.get("committed"))
        else:
            key = "%s at %s" % (endpoint["result"], endpoint["stage"])
        groups[key] = groups.get(key, 0) + 1
    return "; ".join("%d host(s) %s" % (count, key) for key, count in sorted(groups.items()))


def _indent(text, prefix="    "):
    return "\n".join(prefix + line for line in text.splitlines())
