#!/usr/bin/env python3
"""Install + activate a package on N local demo hosts: esd.osp.software (one task) vs a conventional role.

Usage: bench/software_install.py [--sizes 50,200,500] [--forks 20] [--strategy linear|mitogen_linear]
Prints one table row per size: hosts, seconds and hosts/second for each, and the ratio. Both runs use the
same artifact, the same inventory shape (local connection, one root per host) and the same forks.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def write_inventory(path, count, root):
    with open(path, "w") as handle:
        handle.write("[fleet]\n")
        for index in range(count):
            handle.write("bench-%04d software_root=%s/hosts/bench-%04d\n" % (index, root, index))
        handle.write("[fleet:vars]\nansible_connection=local\nansible_python_interpreter=%s\n" % sys.executable)


def build_artifact(work):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    out = subprocess.run(
        ["ansible", "localhost", "-m", "esd.osp.package", "-a",
         "src=%s/examples/packages/hello-agent-1.0 dest=%s" % (REPO, work), "-o"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True).stdout
    result = json.loads(out.split("=>", 1)[1])
    return result["path"], result["sha256"]


def timed_playbook(playbook, inventory, extravars, forks, strategy):
    env = dict(os.environ, ANSIBLE_FORKS=str(forks), ANSIBLE_STRATEGY=strategy,
               ANSIBLE_ROLES_PATH=os.path.join(HERE, "conventional", "roles"))
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook, "-e", json.dumps(extravars)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit("%s failed:\n%s" % (playbook, proc.stdout[-3000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--strategy", default="linear")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="esd-bench-")
    try:
        artifact, sha256 = build_artifact(work)
        # The baseline verifies what it copied too (ansible.builtin.copy's checksum is a SHA-1), so both sides
        # do an integrity check; esd.osp.software checks the sha256.
        with open(artifact, "rb") as handle:
            sha1 = hashlib.sha1(handle.read()).hexdigest()
        extravars = {"bench_name": "hello-agent", "bench_version": "1.0.0", "bench_artifact": artifact,
                     "bench_sha256": sha256, "bench_sha1": sha1}
        print("| hosts | esd.osp.software s | hosts/s | conventional role s | hosts/s | ratio |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in [int(s) for s in args.sizes.split(",")]:
            row = []
            for kind, playbook in (("esd", "esd_install.yml"), ("conventional", "install.yml")):
                root = os.path.join(work, "%s-%d" % (kind, size))
                inventory = os.path.join(work, "inventory-%s-%d" % (kind, size))
                write_inventory(inventory, size, root)
                row.append(timed_playbook(os.path.join(HERE, "conventional", playbook), inventory, extravars,
                                          args.forks, args.strategy))
                shutil.rmtree(root, ignore_errors=True)
            esd, conventional = row
            print("| %d | %.1f | %.1f | %.1f | %.1f | %.2fx |" % (
                size, esd, size / esd, conventional, size / conventional, conventional / esd))
            sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
