"""From a change order and the catalogue to a concrete plan: the "software distribution plan".

``make_plan`` determines the category and the sites involved, expands the request type's steps
(a rollout becomes beta stage, go/no-go gate and wave stages), resolves every target pattern against
the inventory into host names, and fills stage inputs from the change order. Values that only exist
at run time (an earlier stage's outputs, the identity running the stage, the ledger directory) stay
as placeholders the engine resolves when the stage starts.

A plan is frozen into the ledger the first time a change order runs: what was planned (and approved)
is what runs, even if the inventory changes later.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from esd import catalogue, collection, project
from esd.catalogue import Actor, Field, Gate, LedgerPath, Notify, Ref, Rollout, Stage, TestEvidence
from esd.changeorder import Problem
from esd.errors import ValidationError


@dataclasses.dataclass
class PlannedStep:
    id: str
    kind: str                                  # stage | gate | notify
    title: str
    site: str | None = None
    playbook: str | None = None                # absolute path
    playbook_exists: bool = False
    target_pattern: str | None = None          # passed as the extra var target_var
    target_var: str = "esd_hosts"              # repository stages: repository_hosts
    hosts: list[str] | None = None             # resolved targets; None: the playbook's own default
    limit_hosts: list[str] | None = None       # explicit host list passed as ansible limit (rollout, limits)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    checks: list[str] = dataclasses.field(default_factory=list)
    rollout_role: str | None = None            # beta | check | wave | backout (stages); triage | verdict steps
    rollout_stage: str | None = None           # the catalogue stage a rollout step belongs to (install, ...)
    wave: int | None = None                    # 1, 2, ... for wave stages
    failure_budget_percent: int = 0
    soak_seconds: int = 0                      # wait this long after the beta stage finished before this step
    backout: dict[str, Any] = dataclasses.field(default_factory=dict)   # backout stage: state, attempts, ...
    skip: str | None = None                    # why the stage will not run (its `when` field is unset)
    excludes: list[str] = dataclasses.field(default_factory=list)
    approvers: list[str] = dataclasses.field(default_factory=list)
    automatic: bool = False
    criteria: dict[str, Any] = dataclasses.field(default_factory=dict)
    event: str | None = None

    def as_dict(self):
        return {key: value for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data})


@dataclasses.dataclass
class Plan:
    change_order_id: str
    type: str
    category: str
    title: str
    sites: list[str]
    inventory: str
    targets: dict[str, list[str]]
    steps: list[PlannedStep]
    notes: list[str] = dataclasses.field(default_factory=list)

    def step(self, step_id):
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def stages(self):
        return [step for step in self.steps if step.kind == "stage"]

    @property
    def gates(self):
        return [step for step in self.steps if step.kind == "gate"]

    def as_dict(self):
        data = dataclasses.asdict(self)
        data["steps"] = [step.as_dict() for step in self.steps]
        return data

    @classmethod
    def from_dict(cls, data):
        values = dict(data)
        values["steps"] = [PlannedStep.from_dict(step) for step in data["steps"]]
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls) if field.name in values})


# --- inventory ----------------------------------------------------------------------------------------

class Inventory:
    """Host-pattern resolution with Ansible's own inventory code, so patterns mean what they mean to Ansible."""

    def __init__(self, source):
        project.configure_ansible_environment()
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader

        self.source = source
        self._manager = InventoryManager(loader=DataLoader(), sources=[source])

    def hosts(self, pattern, limit=None):
        """Host names matching ``pattern`` (and ``limit``), in inventory order."""
        self._manager.subset(limit)
        try:
            return [host.name for host in self._manager.get_hosts(pattern=pattern)]
        finally:
            self._manager.subset(None)

    @property
    def group_names(self):
        return set(self._manager.groups)


def _encode_input(value, spec):
    """A stage input as it is stored in the plan: literal, or a placeholder dict for run-time values."""
    if isinstance(value, Field):
        found = spec.field(value.path, value.default)
        return list(found) if isinstance(found, tuple) else found
    if isinstance(value, Ref):
        return {"__from_stage__": value.stage, "path": value.path}
    if isinstance(value, Actor):
        return {"__actor__": True}
    if isinstance(value, TestEvidence):
        return {"__test_record__": True}
    if isinstance(value, LedgerPath):
        return {"__ledger__": value.path}
    return value


def describe_input(value):
    if isinstance(value, dict) and "__from_stage__" in value:
        return "<from stage %s: %s>" % (value["__from_stage__"], value["path"])
    if isinstance(value, dict) and "__test_record__" in value:
        return TestEvidence().describe()
    if isinstance(value, dict) and "__actor__" in value:
        return "<identity running the stage>"
    if isinstance(value, dict) and "__ledger__" in value:
        return "<ledger>/%s" % value["__ledger__"]
    return value


def make_plan(change_order, inventory=None, project_dir=None):
    """The plan for ``change_order``; raise ValidationError when targets cannot be resolved."""
    project_dir = project_dir or project.project_dir()
    spec = change_order.spec
    request_type = change_order.request_type
    inventory_source = spec.targets.inventory or os.path.join(project_dir, "inventories", "demo")
    if inventory is None:
        inventory = Inventory(inventory_source)

    problems = []
    notes = []
    targets = {}

    def resolve(role):
        if role in targets:
            return targets[role]
        pattern = getattr(spec.targets, role) if role != "hosts" else spec.targets.hosts
        limit = spec.targets.limit if role == "hosts" else None
        hosts = inventory.hosts(pattern, limit) if pattern else []
        if not hosts:
            problems.append(Problem("spec.targets.%s" % role, "a host pattern matching at least one host of %s"
                                    % inventory_source,
                                    "no host matching \"%s\"%s" % (pattern, " with limit \"%s\"" % limit if limit
                                                                  else "")))
        targets[role] = hosts
        return hosts

    steps = []
    required_optional = set(spec.approvals.required)
    for step in request_type.steps:
        if isinstance(step, Gate):
            if step.optional and step.id not in required_optional:
                continue
            steps.append(_gate_step(step, spec))
        elif isinstance(step, Notify):
            steps.append(PlannedStep(id=step.id, kind="notify", title=step.title, event=step.event))
        elif isinstance(step, Stage):
            steps.append(_stage_step(step, spec, project_dir, resolve))
        elif isinstance(step, Rollout):
            steps.extend(_rollout_steps(step, spec, project_dir, resolve, inventory, problems, notes))

    _check_refs(steps, problems)
    if problems:
        raise ValidationError(problems, source=change_order.path)
    if not catalogue.RELEASE_REPOSITORY_STAGES and request_type.id == "software_release":
        notes.append("The repository stages (add_to_production, distribute) are not in the release flow yet: "
                     "production stages install the build stage's artifact directly, pinned to its sha256.")
    for step in steps:
        if step.kind == "stage" and not step.playbook_exists and not step.skip:
            notes.append("Stage %s: playbook %s is not built yet in this project; running this change order "
                         "stops there." % (step.id, os.path.relpath(step.playbook, project_dir)))
    return Plan(change_order_id=change_order.id, type=request_type.id, category=request_type.category,
                title=request_type.title, sites=list(request_type.sites), inventory=inventory_source,
                targets=targets, steps=steps, notes=notes)


def _gate_step(gate, spec):
    criteria = {}
    automatic = False
    if gate.id == catalogue.GO_NO_GO.id:
        automatic = spec.rollout.go_no_go == "automatic"
        criteria = {"mode": spec.rollout.go_no_go, "min_success_percent": spec.rollout.min_success_percent,
                    "soak_seconds": spec.rollout.soak_seconds}
        if spec.rollout.health_check.get("playbook"):
            criteria["health_check_playbook"] = spec.rollout.health_check["playbook"]
        if spec.rollout.health_check.get("urls"):
            criteria["health_check_urls"] = list(spec.rollout.health_check["urls"])
            criteria["health_check_timeout_seconds"] = spec.rollout.health_check.get("timeout_seconds", 10)
    return PlannedStep(id=gate.id, kind="gate", title=gate.title, excludes=list(gate.excludes),
                       approvers=list(spec.approvals.approvers.get(gate.id, ())), automatic=automatic,
                       criteria=criteria)


def _stage_step(stage, spec, project_dir, resolve, step_id=None, title=None):
    playbook = os.path.join(project_dir, "playbooks", stage.playbook)
    target_pattern = None
    hosts = None
    limit_hosts = None
    if stage.target is not None:
        target_pattern = (spec.targets.hosts if stage.target == "hosts" else getattr(spec.targets, stage.target))
        hosts = resolve(stage.target)
        if stage.target == "hosts" and spec.targets.limit:
            limit_hosts = list(hosts)
    skip = None
    if stage.when and spec.field(stage.when) is None:
        skip = "spec.%s is not set" % stage.when
    return PlannedStep(
        id=step_id or stage.id, kind="stage", title=title or stage.title, site=stage.site, playbook=playbook,
        playbook_exists=os.path.isfile(playbook), target_pattern=target_pattern,
        target_var=catalogue.TARGET_VARIABLES.get(stage.target, "esd_hosts"), hosts=hosts,
        limit_hosts=limit_hosts,
        inputs={key: _encode_input(value, spec) for key, value in stage.inputs.items()
                if _encode_input(value, spec) is not None},
        outputs=dict(stage.outputs), checks=list(stage.checks), skip=skip)


def _rollout_steps(rollout_step, spec, project_dir, resolve, inventory, problems, notes):
    """Beta stage, [health-check stage], go/no-go, waves, triage, [backout review], [backout], verdict."""
    waves_filter = collection.plugin("filter.waves")
    stage = rollout_step.stage
    targets = resolve("hosts")
    if not targets:
        return []
    rollout = spec.rollout
    remaining = list(targets)
    beta = []
    if rollout.beta_hosts is not None:
        beta = waves_filter.choose_beta(remaining, rollout.beta_hosts)
    elif rollout.beta:
        members = set(inventory.hosts(rollout.beta))
        beta = [host for host in remaining if host in members]
        if not beta:
            if rollout.beta_explicit:
                problems.append(Problem("spec.rollout.beta", "a pattern matching some of the targets",
                                        "no target host in \"%s\"" % rollout.beta))
            else:
                notes.append("No beta group: none of the targets is in the group \"beta\"; the rollout goes "
                             "straight to the waves.")
    if beta and len(beta) == len(remaining):
        notes.append("The beta group holds every target, so there is no beta stage: the rollout is one wave.")
        beta = []
    remaining = [host for host in remaining if host not in beta]

    waves = []
    if rollout.waves:
        for index, pattern in enumerate(rollout.waves):
            members = set(inventory.hosts(pattern))
            wave = [host for host in remaining if host in members]
            if not wave:
                problems.append(Problem("spec.rollout.waves[%d]" % index, "a pattern matching target hosts not "
                                        "already in the beta group or an earlier wave",
                                        "no such host for \"%s\"" % pattern))
                continue
            waves.append(wave)
            remaining = [host for host in remaining if host not in members]
        if remaining:
            notes.append("%d target host(s) in no listed wave form a last wave." % len(remaining))
            waves.append(remaining)
    elif rollout.wave_sizes:
        waves = waves_filter.split_waves(remaining, list(rollout.wave_sizes))
    elif rollout.wave_size:
        waves = [remaining[i:i + rollout.wave_size] for i in range(0, len(remaining), rollout.wave_size)]
    elif remaining:
        waves = [remaining]

    budgets = rollout.failure_budget_percent
    budgets = list(budgets) if isinstance(budgets, (list, tuple)) else [budgets]
    steps = []
    if beta:
        step = _stage_step(stage, spec, project_dir, resolve, "%s_beta" % stage.id, "%s (beta group)" % stage.title)
        step.limit_hosts, step.rollout_role, step.rollout_stage = beta, "beta", stage.id
        # Host failures in the beta group do not fail the stage: the go/no-go gate judges them.
        step.failure_budget_percent = 100
        steps.append(step)
        playbook = rollout.health_check.get("playbook")
        gate = _gate_step(catalogue.GO_NO_GO, spec)
        gate.rollout_stage = stage.id
        if playbook:
            check = _stage_step(stage, spec, project_dir, resolve, "%s_beta_check" % stage.id,
                                "Health check of the beta group (go/no-go criterion)")
            check.playbook, check.playbook_exists = playbook, os.path.isfile(playbook)
            check.limit_hosts, check.rollout_role, check.rollout_stage = beta, "check", stage.id
            check.failure_budget_percent = 100
            check.soak_seconds = rollout.soak_seconds      # the check runs after the soak time
            check.outputs, check.checks = {}, []
            steps.append(check)
        else:
            gate.soak_seconds = rollout.soak_seconds
        steps.append(gate)
    single = not beta and len(waves) == 1
    for number, wave in enumerate(waves, start=1):
        # One wave and no beta group: the stage keeps its catalogue id (a plain activate is stage "activate").
        step_id = stage.id if single else "%s_wave_%d" % (stage.id, number)
        title = stage.title if single else "%s (wave %d of %d)" % (stage.title, number, len(waves))
        step = _stage_step(stage, spec, project_dir, resolve, step_id, title)
        step.limit_hosts, step.rollout_role, step.rollout_stage, step.wave = wave, "wave", stage.id, number
        step.failure_budget_percent = budgets[min(number - 1, len(budgets) - 1)]
        steps.append(step)
    steps.append(PlannedStep(id="triage", kind="triage", title="Triage the distribution logs: success, "
                             "redistribute, rollback, manual", rollout_role="triage", rollout_stage=stage.id))
    if rollout_step.backout_playbook:
        if catalogue.BACKOUT_REVIEW.id in spec.approvals.required:
            review = _gate_step(catalogue.BACKOUT_REVIEW, spec)
            review.rollout_stage = stage.id
            steps.append(review)
        backout = _stage_step(stage, spec, project_dir, resolve, "backout",
                              "Backout: roll back the endpoints that changed and failed, redistribute to those "
                              "where nothing changed")
        backout.playbook = os.path.join(project_dir, "playbooks", rollout_step.backout_playbook)
        backout.playbook_exists = os.path.isfile(backout.playbook)
        backout.rollout_role, backout.rollout_stage = "backout", stage.id
        backout.failure_budget_percent = 100
        # Extra vars outrank play vars: the state to redistribute goes by its own name, so the backout's
        # rollback play can set software_state itself.
        state = backout.inputs.pop("software_state", None) or _STATE_OF_PLAYBOOK.get(stage.playbook, "active")
        backout.inputs["backout_redistribute_state"] = state
        if stage.playbook == "activate.yml":
            backout.inputs["software_from_depot"] = False      # the version is staged: nothing to fetch
        backout.backout = {"state": rollout_step.backout_state,
                           "redistribute_attempts": spec.backout.redistribute_attempts,
                           "retry_delay_seconds": spec.backout.retry_delay_seconds,
                           "on_halt": spec.backout.on_halt if rollout_step.backout_state else "keep"}
        steps.append(backout)
    steps.append(PlannedStep(id="verdict", kind="verdict", title="Verdict: complete, complete with named exceptions, "
                             "or rolled back; problem records; distribution report", rollout_role="verdict",
                             rollout_stage=stage.id,
                             backout={"state": rollout_step.backout_state,
                                      "on_halt": spec.backout.on_halt if rollout_step.backout_state else "keep"}))
    return steps


# The esd.osp.software state each stage playbook brings the endpoints to (what a redistribution repeats).
_STATE_OF_PLAYBOOK = {"deploy.yml": "active", "activate.yml": "active", "commit.yml": "committed",
                      "rollback.yml": "rolled_back", "remove.yml": "absent"}


def _check_refs(steps, problems):
    """Every run-time reference must name a stage that runs earlier and reports that output."""
    earlier = {}
    for step in steps:
        for key, value in step.inputs.items():
            if isinstance(value, dict) and "__from_stage__" in value:
                source = earlier.get(value["__from_stage__"])
                output = value["path"].split(".", 1)[0]
                if source is None or output not in source.outputs.values():
                    problems.append(Problem("(catalogue) %s.%s" % (step.id, key),
                                            "an output of an earlier stage", describe_input(value)))
        if step.kind == "stage":
            earlier[step.id] = step


def render_brief(plan):
    """One line per step: what the demo and `esd status` readers need."""
    lines = ["%s: %s (%s), sites %s" % (plan.change_order_id, plan.type, plan.category, ", ".join(plan.sites))]
    for number, step in enumerate(plan.steps, start=1):
        if step.kind == "stage":
            shown = step.limit_hosts if step.limit_hosts is not None else step.hosts
            hosts = "%d host(s)" % len(shown) if shown is not None else "playbook default hosts"
            built = "" if step.playbook_exists else " [NOT BUILT YET]"
            lines.append("  %2d. stage %-18s %-10s %-20s %s%s" % (number, step.id, step.site,
                                                                 os.path.basename(step.playbook), hosts, built))
        elif step.kind == "gate":
            lines.append("  %2d. gate  %-18s %s" % (number, step.id, "automatic" if step.automatic else "manual"))
        elif step.kind in ("triage", "verdict"):
            lines.append("  %2d. %-6s %-17s %s" % (number, step.kind, step.id, step.title.split(":")[0]))
        else:
            lines.append("  %2d. notify %-17s %s" % (number, step.id, step.event))
    return "\n".join(lines)


def render_text(plan, project_dir=None):
    """The plan as a human reads it."""
    project_dir = project_dir or project.project_dir()
    lines = ["Change order %s: %s (%s)" % (plan.change_order_id, plan.type, plan.category),
             "  %s" % plan.title,
             "Sites: %s" % ", ".join(plan.sites),
             "Inventory: %s" % plan.inventory]
    for role, hosts in plan.targets.items():
        lines.append("Targets %-10s %d host(s): %s" % (role + ":", len(hosts), _host_summary(hosts)))
    lines.append("Steps:")
    for number, step in enumerate(plan.steps, start=1):
        if step.kind == "stage":
            state = "" if step.playbook_exists else "  [NOT BUILT YET]"
            if step.skip:
                state = "  [skipped: %s]" % step.skip
            lines.append("  %2d. stage %-22s %s site  playbooks/%s%s" % (
                number, step.id, step.site, os.path.basename(step.playbook), state))
            lines.append("        %s" % step.title)
            if step.rollout_role == "backout":
                lines.append("        hosts: decided by the triage (the endpoints to roll back and to redistribute "
                             "to, of %d targets)" % len(step.hosts or []))
            elif step.hosts is not None:
                shown = step.limit_hosts if step.limit_hosts is not None else step.hosts
                lines.append("        hosts: %d (%s)%s" % (len(shown), _host_summary(shown),
                                                          "  pattern %s" % step.target_pattern))
            else:
                lines.append("        hosts: the playbook's default")
            if step.rollout_role == "backout":
                backout = step.backout
                lines.append("        rollout: backout (%s; redistribute up to %d attempt(s), %ds apart; a halted "
                             "rollout: %s)" % ("rollback: esd.osp.software state %s" % backout["state"]
                                               if backout.get("state") else "no automatic rollback",
                                               backout["redistribute_attempts"], backout["retry_delay_seconds"],
                                               "roll back every changed endpoint" if backout["on_halt"] == "rollback"
                                               else "keep the changed endpoints"))
            elif step.rollout_role:
                lines.append("        rollout: %s, failure budget %d%%%s" % (
                    step.rollout_role, step.failure_budget_percent,
                    ", after a soak of %ds" % step.soak_seconds if step.soak_seconds else ""))
            for key, value in step.inputs.items():
                lines.append("        %s = %s" % (key, describe_input(value)))
        elif step.kind == "gate":
            how = "automatic (%s)" % ", ".join("%s %s" % item for item in step.criteria.items()) if step.automatic \
                else "decided by a person"
            rules = []
            if step.excludes:
                rules.append("not by the " + " or ".join(step.excludes))
            if step.approvers:
                rules.append("only by " + ", ".join(step.approvers))
            lines.append("  %2d. gate  %-22s %s%s" % (number, step.id, how,
                                                      "; " + "; ".join(rules) if rules else ""))
            lines.append("        %s" % step.title)
        elif step.kind in ("triage", "verdict"):
            lines.append("  %2d. %-6s %-21s %s" % (number, step.kind, step.id, step.title))
        else:
            lines.append("  %2d. notify %-21s event %s" % (number, step.id, step.event))
            lines.append("        %s" % step.title)
    for note in plan.notes:
        lines.append("Note: %s" % note)
    return "\n".join(lines)


def _host_summary(hosts, shown=6):
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return "%s, ... %s" % (", ".join(hosts[:shown - 1]), hosts[-1])
