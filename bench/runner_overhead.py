#!/usr/bin/env python3
"""The esd runner's own overhead per stage, on a stage over N demo hosts (default 200).

What is compared, in the same run, on the same fleet, the same playbook and the same variables:

  baseline   `ansible-playbook playbooks/activate.yml` started directly (subprocess), wall time
  runner     `ansible_runner.run()` of the same playbook (ansible-runner alone: pexpect, event files)
  esd        `esd run` of an `activate` change order whose single stage is that playbook, timed from
             the run call to its return (ledger, lock, audit records, state writes, event tracking,
             plan loading, result settling) - the change-board gate is approved beforehand

All three are idempotent runs (the package is installed and active on every host during setup), so
each round does the same work. Rounds rotate the order of the variants; medians are reported.

Reported per variant: wall seconds; for the runner variants also the playbook's own time (from the
events: playbook_on_start -> playbook_on_stats). Overheads: esd - baseline (what the runner adds to
a stage as a user sees it), esd - runner (what esd adds on top of ansible-runner), and the ratios.

    python bench/runner_overhead.py [--hosts 200] [--rounds 3] [--json-out FILE]

Needs the project environment (scripts/env.sh) or runs from the repository with the venv's python.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "runner"))

import ansible_runner  # noqa: E402
import yaml  # noqa: E402

from esd import project  # noqa: E402
from esd.engine import Engine  # noqa: E402
from esd.ledger import Ledger  # noqa: E402

PACKAGE = os.path.join(REPO, "examples", "packages", "hello-agent-1.1")


def make_inventory(directory, count):
    """A fleet of ``count`` production hosts with the demo fleet's connection and per-host roots."""
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    hosts = {"prod-%04d" % number: None for number in range(1, count + 1)}
    with open(os.path.join(directory, "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"children": {"production": {"hosts": hosts}}}}, handle)
    with open(os.path.join(REPO, "inventories", "demo", "group_vars", "all.yml"), encoding="utf-8") as source:
        demo_vars = source.read()
    with open(os.path.join(directory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
        handle.write(demo_vars)
    return directory


def ansible_playbook(playbook, inventory, extravars, env, check=True):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               os.path.join(REPO, "playbooks", playbook), "-e", json.dumps(extravars)]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - started
    if check and result.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s" % (playbook, result.returncode, result.stdout[-3000:]))
    return elapsed


def run_baseline(inventory, extravars, env):
    return {"wall": ansible_playbook("activate.yml", inventory, extravars, env)}


def run_ansible_runner(inventory, extravars, env, workdir, number):
    private_data_dir = os.path.join(workdir, "runner-%d" % number)
    os.makedirs(private_data_dir)
    marks = {}

    def handler(event):
        if event.get("event") == "playbook_on_start":
            marks["start"] = time.perf_counter()
        elif event.get("event") == "playbook_on_stats":
            marks["stats"] = time.perf_counter()
        return True

    started = time.perf_counter()
    result = ansible_runner.run(private_data_dir=private_data_dir, playbook=os.path.join(REPO, "playbooks",
                                                                                         "activate.yml"),
                                inventory=inventory, extravars=extravars, envvars=project.ansible_environment(REPO),
                                quiet=True, event_handler=handler)
    elapsed = time.perf_counter() - started
    if result.status != "successful":
        raise SystemExit("ansible-runner run failed: %s rc %s" % (result.status, result.rc))
    return {"wall": elapsed, "playbook": marks["stats"] - marks["start"]}


def run_esd(engine, inventory, workdir, number, hosts, artifact):
    change_order = {
        "apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
        "metadata": {"id": "BENCH-%d" % number, "title": "bench: activate on %d hosts" % hosts,
                     "requester": "alice", "requested_completion": "2030-01-01"},
        "spec": {"type": "activate", "software": {"name": "hello-agent", "version": "1.1.0", "artifact": artifact},
                 "targets": {"inventory": inventory, "hosts": "production"},
                 "backout": {"plan": "benchmark; nothing to back out"}},
    }
    path = os.path.join(workdir, "bench-%d.yml" % number)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(change_order, handle)
    outcome = engine.run(path, "erin")
    assert outcome.step == "change_board", outcome
    engine.decide("BENCH-%d" % number, "change_board", "dave", True)
    started = time.perf_counter()
    outcome = engine.run("BENCH-%d" % number, "erin")
    elapsed = time.perf_counter() - started
    if outcome.status != "succeeded":
        raise SystemExit("esd run failed: %s" % outcome.message)
    record = engine.ledger.get("BENCH-%d" % number).read_state()["steps"]["activate"]
    return {"wall": elapsed, "playbook": record["playbook_seconds"], "stage": record["duration"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out", help="write the results here (default bench/results/runner_overhead-*.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (fleet, ledger, artifacts)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="esd-bench-")
    demo_root = os.path.join(workdir, "demo")
    os.environ["ESD_DEMO_ROOT"] = demo_root
    env = dict(os.environ)
    env.update(project.ansible_environment(REPO))
    inventory = make_inventory(os.path.join(workdir, "inventory"), args.hosts)

    print("esd runner overhead: activate.yml on %d demo hosts, %d rounds (work dir %s)" % (
        args.hosts, args.rounds, workdir), flush=True)
    artifacts = os.path.join(workdir, "artifacts")
    setup = time.perf_counter()
    ansible_playbook("build_package.yml", os.path.join(REPO, "inventories", "demo"),
                     {"build_package_src": PACKAGE, "build_package_dest": artifacts}, env)
    artifact = glob.glob(os.path.join(artifacts, "*.esdpkg"))[0]
    # the artifact is passed explicitly: this fleet has no repository to resolve it from
    extravars = {"software_name": "hello-agent", "software_version": "1.1.0", "esd_hosts": "production",
                 "software_src": artifact}
    ansible_playbook("deploy.yml", inventory, dict(extravars, software_state="active"), env)
    print("setup (build + first install on every host): %.1fs" % (time.perf_counter() - setup), flush=True)

    engine = Engine(Ledger(os.path.join(workdir, "ledger")), project_dir=REPO)
    variants = {
        "baseline": lambda n: run_baseline(inventory, extravars, env),
        "runner": lambda n: run_ansible_runner(inventory, extravars, env, workdir, n),
        "esd": lambda n: run_esd(engine, inventory, workdir, n, args.hosts, artifact),
    }
    order = list(variants)
    samples = {name: [] for name in variants}
    for number in range(args.rounds):
        for name in order[number % len(order):] + order[:number % len(order)]:
            sample = variants[name](number)
            samples[name].append(sample)
            print("  round %d %-8s wall %6.2fs%s" % (number + 1, name, sample["wall"],
                                                    "  playbook %.2fs" % sample["playbook"] if "playbook" in sample
                                                    else ""), flush=True)

    def median(name, key):
        return statistics.median(sample[key] for sample in samples[name])

    def paired(name, minus):
        """Median over rounds of (wall - another measure of the same run): robust to load changing between runs."""
        return statistics.median(sample["wall"] - sample[minus] for sample in samples[name])

    baseline, runner, esd = median("baseline", "wall"), median("runner", "wall"), median("esd", "wall")
    bookkeeping = paired("esd", "stage")
    esd_outside_playbook = paired("esd", "playbook")
    runner_outside_playbook = paired("runner", "playbook")
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hosts": args.hosts, "rounds": args.rounds, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "median_wall_seconds": {"baseline_ansible_playbook": baseline, "ansible_runner": runner, "esd": esd},
        "median_playbook_seconds": {"ansible_runner": median("runner", "playbook"), "esd": median("esd", "playbook")},
        "per_stage_overhead_seconds": {
            # the headline: the runner's wall time minus the playbook's own time, per run
            "esd_wall_minus_playbook": esd_outside_playbook,
            "ansible_runner_wall_minus_playbook": runner_outside_playbook,
            "esd_added_to_ansible_runner": esd_outside_playbook - runner_outside_playbook,
            "esd_bookkeeping_outside_the_stage": bookkeeping,
        },
        "ratios": {"esd_to_ansible_playbook": esd / baseline, "esd_to_ansible_runner": esd / runner,
                   "runner_to_ansible_playbook": runner / baseline},
        "samples": samples,
    }
    print()
    print("median wall: ansible-playbook %.2fs | ansible-runner %.2fs | esd stage %.2fs" % (baseline, runner, esd))
    print("ratios: esd/ansible-playbook x%.3f, esd/ansible-runner x%.3f, ansible-runner/ansible-playbook x%.3f" % (
        esd / baseline, esd / runner, runner / baseline))
    print("per stage, wall minus the playbook's own time (median of rounds): esd %.2fs, bare ansible-runner %.2fs "
          "(esd adds %+.2fs)" % (esd_outside_playbook, runner_outside_playbook,
                                 esd_outside_playbook - runner_outside_playbook))
    print("esd bookkeeping outside the stage (lock, ledger, state, audit, report): %.2fs" % bookkeeping)
    print("load average during the run: %.1f %.1f %.1f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
    out = args.json_out or os.path.join(REPO, "bench", "results", "runner_overhead-%s.json" %
                                        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print("results: %s" % out)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
