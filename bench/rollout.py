#!/usr/bin/env python3
"""A full production rollout to N demo hosts with the esd runner, side by side with plain Ansible.

What is compared, on fresh fleets of N local-connection hosts (a root directory each), installing the same
hello-agent 1.1.0 artifact:

  conventional  `ansible-playbook bench/conventional/rollout_serial.yml`: the conventional multi-task role
                (directories, copy, unarchive, link, health command, cleanup: 7 module calls per host) in batches
                with serial ["2%", "10%", "50%", "100%"] and max_fail_percentage 5
  esd           `esd run` of an install change order: beta group (2%, spread) -> automatic go/no-go ->
                waves ["10%", "50%", "100%"] (5% failure budget each) -> triage of the distribution logs ->
                verdict, with the ledger, the audit log, the distribution log callback and the reports;
                timed from the run after the change-board approval to its end

Each runs with the plain linear strategy and, when Mitogen is installed (pip install mitogen; see
bench/README.md), with strategy mitogen_linear. Reported: wall seconds, host-tasks per second, the ratio
conventional / esd per strategy and conventional (linear) / esd (mitogen), and for esd the time inside
the stage playbooks versus the rest (runner bookkeeping, inventory snapshots of other components, reports).

    python bench/rollout.py [--hosts 500] [--strategies linear,mitogen_linear] [--json-out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "runner"))

import yaml  # noqa: E402

from esd import project  # noqa: E402

BIN = os.path.dirname(sys.executable)
PACKAGE = os.path.join(REPO, "examples", "packages", "hello-agent-1.1")
CONVENTIONAL_TASKS = 7          # the role's module calls per host (its directory task loops twice)


def mitogen_strategy_dir():
    try:
        import ansible_mitogen
    except ImportError:
        return None
    return os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")


def strategy_env(strategy):
    env = dict(os.environ)
    env.update(project.ansible_environment(REPO))
    env["ANSIBLE_STRATEGY"] = strategy
    if strategy.startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_dir()
        env["ESD_ACCELERATOR"] = "mitogen"          # how esd users ask for it (runner/README.md)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "runner"), os.path.join(REPO, "collections")])
    for name in ("ESD_USER", "ESD_SITE_CONFIG", "ESD_HOME"):
        env.pop(name, None)
    return env


def build(work):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    env.update(project.ansible_environment(REPO))
    result = subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-m", "esd.osp.package", "-a",
                             "src=%s dest=%s" % (PACKAGE, os.path.join(work, "artifacts")), "-o"],
                            env=env, capture_output=True, text=True, check=True)
    data = json.loads(result.stdout.split("=>", 1)[1])
    return data["path"], data["sha256"]


def inventory(directory, count, roots, group):
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    hosts = {"prod-%04d" % number: None for number in range(1, count + 1)}
    document = {"all": {"children": {group: {"hosts": hosts}, "test_site": {"hosts": {"test-01": None}}}}}
    with open(os.path.join(directory, "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle)
    with open(os.path.join(directory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                        "software_root": "%s/{{ inventory_hostname }}" % roots}, handle)
    return directory


def run_conventional(work, count, artifact, strategy):
    name = "conventional-%s" % strategy
    inv = inventory(os.path.join(work, "inventory-" + name), count, os.path.join(work, "roots-" + name), "fleet")
    env = strategy_env(strategy)
    env["ANSIBLE_ROLES_PATH"] = os.path.join(REPO, "bench", "conventional", "roles")
    extravars = {"bench_name": "hello-agent", "bench_version": "1.1.0", "bench_artifact": artifact}
    started = time.perf_counter()
    result = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv,
                             os.path.join(REPO, "bench", "conventional", "rollout_serial.yml"),
                             "-e", json.dumps(extravars)], env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("conventional rollout failed (rc %d):\n%s" % (result.returncode, result.stdout[-3000:]))
    return {"wall": wall, "host_tasks": count * CONVENTIONAL_TASKS}


def esd(env, *args, expect=0):
    result = subprocess.run([sys.executable, "-m", "esd.cli", *args, "--json"], env=env, capture_output=True,
                            text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    if result.returncode != expect:
        raise SystemExit("esd %s exited %d:\n%s\n%s" % (" ".join(args), result.returncode, result.stdout[-3000:],
                                                         result.stderr[-3000:]))
    return json.loads(result.stdout)


def run_esd(work, count, artifact, sha256, strategy):
    name = "esd-%s" % strategy
    inv = inventory(os.path.join(work, "inventory-" + name), count, os.path.join(work, "roots-" + name), "production")
    env = strategy_env(strategy)
    env.update(ESD_LEDGER=os.path.join(work, "ledger-" + name), ESD_PROJECT_DIR=REPO)
    software = {"name": "hello-agent", "version": "1.1.0", "artifact": artifact, "sha256": sha256}
    documents = {
        "BENCH-TEST": {"type": "test_package", "software": dict(software, builder="bob")},
        "BENCH-ROLLOUT": {"type": "install", "software": software,
                          "rollout": {"beta_hosts": "2%", "go_no_go": "automatic", "min_success_percent": 100,
                                      "waves": ["10%", "50%", "100%"], "failure_budget_percent": 5},
                          "backout": {"plan": "roll back the failed endpoints", "rehearsed_in": "BENCH-TEST",
                                      "retry_delay_seconds": 0}},
    }
    paths = {}
    for ident, spec in documents.items():
        document = {"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                    "metadata": {"id": ident, "title": "bench: rollout to %d hosts" % count, "requester": "alice",
                                 "requested_completion": "2030-01-01"},
                    "spec": dict({"targets": {"inventory": inv, "hosts": "production"},
                                  "backout": {"plan": "none"}}, **spec)}
        paths[ident] = os.path.join(work, "%s-%s.yml" % (ident, strategy))
        with open(paths[ident], "w", encoding="utf-8") as handle:
            yaml.safe_dump(document, handle)
    esd(dict(env, ESD_USER="carol"), "run", paths["BENCH-TEST"], "--quiet", expect=3)
    esd(dict(env, ESD_USER="erin"), "run", paths["BENCH-ROLLOUT"], "--quiet", expect=3)
    esd(dict(env, ESD_USER="dave"), "approve", "BENCH-ROLLOUT", "--gate", "change_board")
    started = time.perf_counter()
    outcome = esd(dict(env, ESD_USER="erin"), "run", "BENCH-ROLLOUT", "--quiet")
    wall = time.perf_counter() - started
    with open(os.path.join(env["ESD_LEDGER"], "BENCH-ROLLOUT", "state.json"), encoding="utf-8") as handle:
        state = json.load(handle)
    stages = {}
    for step in state["plan"]["steps"]:
        record = state["steps"][step["id"]]
        if step.get("rollout_role") in ("beta", "wave"):
            stages[step["id"]] = {"hosts": len(step["limit_hosts"]), "ok": len((record.get("hosts") or {}).get("ok", [])),
                                  "stage_seconds": record.get("duration"),
                                  "playbook_seconds": record.get("playbook_seconds")}
    snapshots = 0.0
    with open(os.path.join(env["ESD_LEDGER"], "BENCH-ROLLOUT", "audit.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["event"] == "inventory_snapshot":
                snapshots += record["data"].get("seconds") or 0.0
    return {"wall": wall, "status": outcome["status"], "verdict": state["rollout"]["verdict"]["result"],
            "host_tasks": count, "stages": stages,
            "stage_seconds": sum(s["stage_seconds"] or 0 for s in stages.values()),
            "playbook_seconds": sum(s["playbook_seconds"] or 0 for s in stages.values()),
            "inventory_snapshot_seconds": round(snapshots, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--strategies", default="linear,mitogen_linear",
                        help="comma-separated; mitogen_linear is skipped when Mitogen is not installed")
    parser.add_argument("--json-out", help="default bench/results/rollout-<time>.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    strategies = [s for s in args.strategies.split(",") if s]
    if any(s.startswith("mitogen") for s in strategies) and mitogen_strategy_dir() is None:
        print("Mitogen is not installed (pip install 'mitogen>=0.3,<0.4'): running the linear strategy only")
        strategies = [s for s in strategies if not s.startswith("mitogen")]
    work = tempfile.mkdtemp(prefix="esd-bench-rollout-")
    print("rollout to %d demo hosts: conventional serial role vs esd; strategies %s (work dir %s)"
          % (args.hosts, ", ".join(strategies), work), flush=True)
    artifact, sha256 = build(work)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "hosts": args.hosts, "cpus": os.cpu_count(), "runs": {}}
    for strategy in strategies:
        for kind, run in (("conventional", lambda: run_conventional(work, args.hosts, artifact, strategy)),
                          ("esd", lambda: run_esd(work, args.hosts, artifact, sha256, strategy))):
            load = os.getloadavg()[0]
            sample = run()
            sample["load_average_before"] = load
            sample["host_tasks_per_second"] = sample["host_tasks"] / sample["wall"]
            results["runs"]["%s/%s" % (kind, strategy)] = sample
            print("  %-13s %-15s wall %7.1fs  %5.1f host-tasks/s%s" % (
                kind, strategy, sample["wall"], sample["host_tasks_per_second"],
                "  (stages %.1fs, of which playbooks %.1fs; snapshots %.1fs; verdict %s)" % (
                    sample["stage_seconds"], sample["playbook_seconds"], sample["inventory_snapshot_seconds"],
                    sample["verdict"]) if kind == "esd" else ""), flush=True)
    runs = results["runs"]
    ratios = {}
    for strategy in strategies:
        ratios["conventional/esd, both %s" % strategy] = runs["conventional/" + strategy]["wall"] / runs[
            "esd/" + strategy]["wall"]
    if "linear" in strategies:
        for strategy in strategies:
            if strategy != "linear":
                ratios["conventional linear / esd %s" % strategy] = runs["conventional/linear"]["wall"] / runs[
                    "esd/" + strategy]["wall"]
    results["ratios"] = ratios
    print()
    print("| run | wall s | host-tasks/s |")
    print("|---|---:|---:|")
    for key, sample in runs.items():
        print("| %s | %.1f | %.1f |" % (key, sample["wall"], sample["host_tasks_per_second"]))
    for key, value in ratios.items():
        print("ratio %s: x%.2f" % (key, value))
    print("load average at the end: %.1f %.1f %.1f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
    out = args.json_out or os.path.join(REPO, "bench", "results", "rollout-%s.json"
                                        % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print("results: %s" % out)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
