#!/usr/bin/env python3
"""OS image build time with and without a local package cache, and archive size against root filesystem size.

Usage: bench/image_build.py [--spec examples/images/debian12-server] [--rounds 1] [--mirror URL]

Builds the same image (playbooks/build_image.yml, unit test off, as root) three ways per round, each into its own
destination, with a fresh cache directory per round:

    cold   empty cache: debootstrap downloads every .deb
    debs   the .debs cached by the cold build (debootstrap --cache-dir), but no cached base: debootstrap unpacks
           and configures again, without downloading
    base   the debootstrap result cached by the cold build (a tarball keyed by the mirror's Release file):
           debootstrap is skipped

Customisation (roles), finalisation and packing run in every variant. Prints walls and their ratios to the cold
build, the root filesystem size against the archive size, and whether the three archives are byte-identical;
writes bench/results/image_build.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VARIANTS = ("cold", "debs", "base")


def build(spec, version, dest, work, cache, inventory, mirror):
    extravars = {"esd_hosts": "localhost", "image_source": spec, "image_version": version, "image_dest": dest,
                 "build_image_work_dir": work, "build_image_cache_dir": cache, "build_image_unit_test": False,
                 "image_builder": "bench"}
    if mirror:
        extravars["build_image_mirror"] = mirror
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_SHOW_CUSTOM_STATS="true")
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO, "playbooks", "build_image.yml"),
                           "-e", json.dumps(extravars)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit("build_image.yml failed:\n%s" % proc.stdout[-4000:])
    image = json.loads(proc.stdout)["global_custom_stats"]["esd_image"]
    manifest = json.load(open(image["manifest"]))
    return {"seconds": round(elapsed, 1), "sha256": image["sha256"], "archive_bytes": int(image["size"]),
            "rootfs_bytes": int(manifest["rootfs"]["bytes"]), "files": manifest["rootfs"]["files"],
            "packages": manifest["packages"]["count"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/images/debian12-server")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mirror", default="")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("image builds need root (debootstrap, chroot, mount)")
    work = tempfile.mkdtemp(prefix="esd-bench-image-", dir="/var/tmp")
    inventory = os.path.join(work, "hosts.json")
    with open(inventory, "w") as handle:
        json.dump({"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                   "ansible_python_interpreter": sys.executable}}}}, handle)
    rounds = []
    try:
        for number in range(args.rounds):
            cache = os.path.join(work, "cache-%d" % number)
            results = {}
            for variant in VARIANTS:
                if variant == "debs":
                    shutil.rmtree(os.path.join(cache, "bases"), ignore_errors=True)
                results[variant] = build(args.spec, "bench", os.path.join(work, "out-%d-%s" % (number, variant)),
                                         os.path.join(work, "rootfs"), cache, inventory, args.mirror)
                print("round %d %-5s %6.1f s  archive %s" % (number + 1, variant, results[variant]["seconds"],
                                                             results[variant]["sha256"][:16]), flush=True)
            rounds.append(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(values):
        values = sorted(values)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2.0

    walls = dict((v, median([r[v]["seconds"] for r in rounds])) for v in VARIANTS)
    first = rounds[0]["cold"]
    summary = {
        "rounds": rounds,
        "median_seconds": walls,
        "ratio_to_cold": dict((v, round(walls[v] / walls["cold"], 2)) for v in VARIANTS),
        "rootfs_bytes": first["rootfs_bytes"], "archive_bytes": first["archive_bytes"],
        "archive_to_rootfs": round(first["archive_bytes"] / float(first["rootfs_bytes"]), 3),
        "identical_archives": all(len(set(r[v]["sha256"] for v in VARIANTS)) == 1 for r in rounds),
        "load_average": os.getloadavg(),
    }
    print()
    print("| variant | wall (median of %d) | ratio to cold |" % len(rounds))
    print("|---|---|---|")
    for variant in VARIANTS:
        print("| %s | %.1f s | x%.2f |" % (variant, walls[variant], summary["ratio_to_cold"][variant]))
    print()
    print("root filesystem %.1f MiB in %d files (%d packages); archive %.1f MiB: %.1f %% of the tree" % (
        first["rootfs_bytes"] / 1048576.0, first["files"], first["packages"], first["archive_bytes"] / 1048576.0,
        100 * summary["archive_to_rootfs"]))
    print("the three builds gave %s archives" % ("byte-identical" if summary["identical_archives"] else "different"))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "image_build.json"), "w") as handle:
        json.dump(summary, handle, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
