#!/usr/bin/env python3
"""Promotion cost versus artifact size: a 1 MiB and a 1 GiB artifact, same repository, same run.

Promotion must write a pointer (a signed channel entry) and never read or copy the bytes, so promoting
1 GiB should cost what promoting 1 MiB costs: the reported ratio should be about 1.

What is measured, per artifact, in rounds that alternate the two sizes:

  promote    build -> test and test -> production (production signs its index with Ed25519 and stores
             the test record), timed together; before each round the entry is deleted from test and
             production again (not timed), so every round does the same two promotions
  add        ingest of the artifact (hash + copy into blobs/sha256/<hex>): O(size), for contrast
  copy       a plain copy of the artifact (shutil.copyfile + fsync): what promotion would cost if it
             copied bytes

Reported: medians, ratio promote(1 GiB) / promote(1 MiB) (of the medians, and of the fastest rounds, which
other load on the machine disturbs least), and promote(1 GiB) / copy(1 GiB). A promotion's time is mostly
fsync latency (index, signature, event log), so single rounds vary; use enough rounds.

    python bench/promotion.py [--rounds 15] [--big-mib 1024] [--workdir DIR] [--json-out FILE]

The working directory (default: a temporary one under /var/tmp) needs about 3 x the big size free;
it is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible_collections.esd.osp.plugins.module_utils import _repository, _signing  # noqa: E402

MIB = 1024 * 1024


def make_file(path, size):
    """Random bytes (incompressible, no sparse tricks), written in 8 MiB chunks."""
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = min(left, 8 * MIB)
            handle.write(os.urandom(chunk))
            left -= chunk
        handle.flush()
        os.fsync(handle.fileno())


def write_report(path, name, version):
    with open(path, "w") as handle:
        json.dump({"id": "TR-%s-%s" % (name, version), "name": name, "version": version, "result": "passed"}, handle)


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - start


def copy_with_fsync(src, dest):
    shutil.copyfile(src, dest)
    with open(dest, "rb+") as handle:
        os.fsync(handle.fileno())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-mib", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json-out", default=os.path.join(REPO, "bench", "results", "promotion.json"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="esd-bench-promotion-", dir=args.workdir or "/var/tmp")
    try:
        keyring = _signing.Keyring(os.path.join(work, "keys"))
        keyring.apply("present", [], "bench")
        repo = _repository.Repository(os.path.join(work, "repository"), signer=keyring.active_signer(), actor="bench")
        sizes = {"small": args.small_mib * MIB, "big": args.big_mib * MIB}
        results = {}
        for label, size in sizes.items():
            src = os.path.join(work, "%s.iso" % label)
            print("making the %s artifact (%d MiB)..." % (label, size // MIB), flush=True)
            make_file(src, size)
            name = "bench-%s" % label
            report = os.path.join(work, "%s.report.json" % label)
            write_report(report, name, "1.0")
            add = timed(repo.add, src, name=name, version="1.0", kind="media")
            copy = timed(copy_with_fsync, src, os.path.join(work, "%s.copy" % label))
            os.unlink(os.path.join(work, "%s.copy" % label))
            results[label] = {"size": size, "name": name, "report": report, "add_s": add, "copy_s": copy, "promote_s": []}

        for round_no in range(args.rounds):
            order = ["small", "big"] if round_no % 2 == 0 else ["big", "small"]
            for label in order:
                item = results[label]
                repo.delete(item["name"], "production")
                repo.delete(item["name"], "test")
                start = time.perf_counter()
                repo.promote(item["name"], "1.0", "test", evidence="bench")
                repo.promote(item["name"], "1.0", "production", test_report=item["report"])
                item["promote_s"].append(time.perf_counter() - start)

        summary = {}
        for label, item in results.items():
            summary[label] = {
                "size_bytes": item["size"],
                "promote_median_s": statistics.median(item["promote_s"]),
                "promote_min_s": min(item["promote_s"]),
                "promote_max_s": max(item["promote_s"]),
                "add_s": item["add_s"],
                "copy_s": item["copy_s"],
            }
        ratio = summary["big"]["promote_median_s"] / summary["small"]["promote_median_s"]
        ratio_min = summary["big"]["promote_min_s"] / summary["small"]["promote_min_s"]
        versus_copy = summary["big"]["promote_median_s"] / summary["big"]["copy_s"]
        print()
        print("%-6s %10s %14s %14s %10s %10s" % ("size", "MiB", "promote (ms)", "min-max (ms)", "add (s)", "copy (s)"))
        for label in ("small", "big"):
            s = summary[label]
            print("%-6s %10d %14.2f %14s %10.2f %10.2f" % (
                label, s["size_bytes"] // MIB, s["promote_median_s"] * 1000,
                "%.2f-%.2f" % (s["promote_min_s"] * 1000, s["promote_max_s"] * 1000), s["add_s"], s["copy_s"]))
        print()
        print("promotion time ratio %d MiB / %d MiB: %.2f (1.00 means promotion cost does not depend on size)" % (
            args.big_mib, args.small_mib, ratio))
        print("same ratio of the fastest rounds (least disturbed by other load): %.2f" % ratio_min)
        print("promotion of %d MiB / plain copy of it: %.4f" % (args.big_mib, versus_copy))
        record = {"benchmark": "promotion", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "rounds": args.rounds, "results": summary, "ratio_big_over_small": ratio, "ratio_big_over_small_fastest": ratio_min,
                  "ratio_promote_big_over_copy_big": versus_copy}
        os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
        with open(args.json_out, "w") as handle:
            json.dump(record, handle, indent=1)
        print("written %s" % args.json_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
