#!/usr/bin/env python3
"""What the audit snapshots cost next to the production stage they surround, on N demo hosts (default 50).

Compared in the same run, on the same fleet, through the engine's own path (``esd.stage.run_stage``, one
ansible-runner private data dir per run), rounds in rotating order:

  stage        playbooks/activate.yml on every host (an idempotent production stage: the package is active)
  audit        playbooks/audit.yml as the engine runs it for a software change order (esd.osp.software_info)
  audit+image  the same with the running-image probe (image change orders)

Reported: median walls, the ratio audit / stage, and what one change order pays: the engine takes a snapshot
before and after each production stage, but one audit run serves a wave's "after" and the next wave's
"before", so a rollout of beta + W waves + commit makes W + 4 audit runs instead of 2 (W + 2).

    python bench/audit_overhead.py [--hosts 50] [--rounds 3] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import statistics
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "runner"))
sys.path.insert(0, BENCH)

from runner_overhead import PACKAGE, ansible_playbook, make_inventory  # noqa: E402

from esd import project  # noqa: E402
from esd.stage import run_stage  # noqa: E402


def timed(workdir, name, number, playbook, inventory, extravars):
    private = os.path.join(workdir, "%s-%d" % (name, number))
    started = time.perf_counter()
    result = run_stage(stage_id=name, playbook=os.path.join(REPO, "playbooks", playbook), inventory=inventory,
                       private_data_dir=private, extravars=extravars, envvars=project.ansible_environment(REPO))
    wall = time.perf_counter() - started
    if result.status != "successful":
        raise SystemExit("%s failed: %s %s" % (name, result.status, result.error or result.failed_hosts))
    return {"wall": wall, "playbook": result.playbook_seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--waves", type=int, default=3, help="waves of the example rollout (for the run count)")
    parser.add_argument("--json-out", help="default bench/results/audit_overhead-<time>.json")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="esd-bench-audit-")
    os.environ["ESD_DEMO_ROOT"] = os.path.join(workdir, "demo")
    env = dict(os.environ)
    env.update(project.ansible_environment(REPO))
    inventory = make_inventory(os.path.join(workdir, "inventory"), args.hosts)
    print("audit overhead: %d demo hosts, %d rounds (work dir %s)" % (args.hosts, args.rounds, workdir), flush=True)
    artifacts = os.path.join(workdir, "artifacts")
    ansible_playbook("build_package.yml", os.path.join(REPO, "inventories", "demo"),
                     {"build_package_src": PACKAGE, "build_package_dest": artifacts}, env)
    artifact = glob.glob(os.path.join(artifacts, "*.esdpkg"))[0]
    software = {"software_name": "hello-agent", "software_version": "1.1.0", "esd_hosts": "production"}
    ansible_playbook("deploy.yml", inventory, dict(software, software_src=artifact, software_state="active"), env)

    variants = {
        "stage": ("activate.yml", dict(software, software_src=artifact)),
        "audit": ("audit.yml", {"esd_hosts": "production", "audit_image": False}),
        "audit+image": ("audit.yml", {"esd_hosts": "production", "audit_image": True}),
    }
    order = list(variants)
    samples = {name: [] for name in variants}
    for number in range(args.rounds):
        for name in order[number % len(order):] + order[:number % len(order)]:
            playbook, extravars = variants[name]
            sample = timed(workdir, name.replace("+", "_"), number, playbook, inventory, extravars)
            samples[name].append(sample)
            print("  round %d %-12s wall %6.2fs  playbook %6.2fs" % (number + 1, name, sample["wall"],
                                                                    sample["playbook"] or 0), flush=True)

    walls = {name: statistics.median(s["wall"] for s in samples[name]) for name in variants}
    naive, shared = 2 * (args.waves + 2), args.waves + 4
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hosts": args.hosts, "rounds": args.rounds, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "median_wall_seconds": walls,
        "ratios": {"audit_to_stage": walls["audit"] / walls["stage"],
                   "audit_image_to_stage": walls["audit+image"] / walls["stage"]},
        "rollout": {"waves": args.waves, "production_stages": args.waves + 2, "audit_runs": shared,
                    "audit_runs_without_sharing": naive},
        "samples": samples,
    }
    print()
    print("median wall: stage %.2fs | audit %.2fs (x%.2f) | audit+image %.2fs (x%.2f)" % (
        walls["stage"], walls["audit"], results["ratios"]["audit_to_stage"], walls["audit+image"],
        results["ratios"]["audit_image_to_stage"]))
    print("a rollout of beta + %d waves + commit: %d audit runs (%d without the shared wave snapshots)" % (
        args.waves, shared, naive))
    out = args.json_out or os.path.join(BENCH, "results", "audit_overhead-%s.json" %
                                        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print("results: %s" % out)


if __name__ == "__main__":
    main()
