#!/usr/bin/env python3
"""Depot sync throughput compared with a plain copy of the same files, in the same run.

A repository holds a signed production channel of N blobs (default 4 x 48 MiB + 64 x 1 MiB = 256 MiB of
random bytes). Each round, in rotating order, on the same files:

  copy            plain copy of every blob into an empty directory (shutil.copyfile + fsync per file):
                  the baseline for a local (file://) sync
  sync-file       esd depot sync from the repository directory into an empty depot: verify the index
                  signature, hash every blob while writing it, fsync, publish the index
  http-get        plain download of every blob from a loopback HTTP server (urllib, fsync per file, no
                  hashing): the baseline for an HTTP sync
  sync-http       esd depot sync from the same HTTP server into an empty depot
  resync          a second sync into the full depot: nothing to fetch, every present blob re-hashed
                  (verify_present=true, the default)
  resync-trust    the same with verify_present=false (present blobs of the right size trusted)

Once, after the rounds: a sync killed at 50% of the bytes and resumed (how much is downloaded again), and
a sync with a bandwidth limit (the rate it actually achieved).

Reported: medians, MiB/s, and the ratio of each sync to its baseline (1.00 = no overhead).

    python bench/depot_sync.py [--rounds 5] [--big 4] [--big-mib 48] [--small 64] [--json-out FILE]

The HTTP server is Python's (threaded, with Range support) on 127.0.0.1, in a child process of its own (this
script with --serve); it is the same for the baseline and the sync, so the ratio isolates the sync's own cost. Work files go to a temporary directory under
/var/tmp (about 4 x the data size), removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible_collections.esd.osp.plugins.module_utils import _depot, _repository, _signing  # noqa: E402

MIB = 1024 * 1024


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range support, like nginx, for resumed downloads."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        spec = self.headers.get("Range")
        if not spec or not os.path.isfile(path):
            return super().send_head()
        start = int(spec.split("=", 1)[1].split("-", 1)[0])
        size = os.path.getsize(path)
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return handle


class QuietServer(ThreadingHTTPServer):
    """The interrupted-sync experiment cuts connections on purpose: no tracebacks for that."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def make_repository(work, big, big_mib, small):
    keyring = _signing.Keyring(os.path.join(work, "keys"))
    keyring.apply("present", [], "bench")
    repo = _repository.Repository(os.path.join(work, "repository"), signer=keyring.active_signer(), actor="bench")
    incoming = os.path.join(work, "incoming")
    os.makedirs(incoming)
    items = [("big-%02d" % i, big_mib * MIB) for i in range(big)] + [("small-%02d" % i, MIB) for i in range(small)]
    for name, size in items:
        path = os.path.join(incoming, name)
        with open(path, "wb") as handle:
            left = size
            while left:
                chunk = min(left, 8 * MIB)
                handle.write(os.urandom(chunk))
                left -= chunk
        repo.add(path, name=name, version="1.0", kind="media")
        repo.promote(name, "1.0", "test")
        report = path + ".report.json"
        with open(report, "w") as handle:
            json.dump({"name": name, "version": "1.0", "result": "passed"}, handle)
        repo.promote(name, "1.0", "production", test_report=report)
        os.unlink(path)
    entries = repo.load_channel("production")["entries"]
    return repo, keyring.public_keys(), entries


def plain_copy(repo, entries, dest):
    os.makedirs(dest)
    for entry in entries:
        target = os.path.join(dest, entry["sha256"])
        shutil.copyfile(repo.blob_path(entry["sha256"]), target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())


def plain_http(base, entries, dest):
    os.makedirs(dest)
    for entry in entries:
        target = os.path.join(dest, entry["sha256"])
        with urllib.request.urlopen("%s/%s" % (base, entry["path"])) as response, open(target, "wb") as handle:
            shutil.copyfileobj(response, handle, MIB)
            handle.flush()
            os.fsync(handle.fileno())


def depot_sync(source, keys, dest, **kwargs):
    return _depot.Depot(dest).sync(source, keys, **kwargs)


class CutOff(_depot.Throttle):
    def __init__(self, after):
        super().__init__(0)
        self.after = after
        self.seen = 0

    def account(self, nbytes):
        self.seen += nbytes
        if self.seen >= self.after:
            raise KeyboardInterrupt("bench: simulated kill")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", type=int, default=4)
    parser.add_argument("--big-mib", type=int, default=48)
    parser.add_argument("--small", type=int, default=64)
    parser.add_argument("--limit-mib", type=int, default=64, help="bandwidth limit for the throttled sync, MiB/s")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json-out", default=os.path.join(REPO, "bench", "results", "depot_sync.json"))
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        server = QuietServer(("127.0.0.1", int(args.serve[1])), partial(RangeHandler, directory=args.serve[0]))
        server.serve_forever()
        return

    work = tempfile.mkdtemp(prefix="esd-bench-depot-", dir=args.workdir or "/var/tmp")
    server = None
    try:
        print("building the repository...", flush=True)
        repo, keys, entries = make_repository(work, args.big, args.big_mib, args.small)
        total = sum(e["size"] for e in entries)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", repo.path, str(port)])
        base = "http://127.0.0.1:%d" % port
        for dummy in range(100):
            try:
                urllib.request.urlopen(base + "/channels/production.json").read()
                break
            except OSError:
                time.sleep(0.1)
        print("%d blobs, %.0f MiB; HTTP on %s" % (len(entries), total / MIB, base), flush=True)

        def fresh(tag):
            path = os.path.join(work, "out", "%s-%d" % (tag, time.monotonic_ns()))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path

        times = {k: [] for k in ("copy", "sync-file", "http-get", "sync-http", "resync", "resync-trust")}
        variants = [
            ("copy", lambda: plain_copy(repo, entries, fresh("copy"))),
            ("sync-file", lambda: depot_sync(_depot.Source(repo.path), keys, fresh("sync-file"))),
            ("http-get", lambda: plain_http(base, entries, fresh("http-get"))),
            ("sync-http", lambda: depot_sync(_depot.Source(base), keys, fresh("sync-http"))),
        ]
        full = fresh("full")
        depot_sync(_depot.Source(repo.path), keys, full)
        variants += [
            ("resync", lambda: depot_sync(_depot.Source(repo.path), keys, full)),
            ("resync-trust", lambda: depot_sync(_depot.Source(repo.path), keys, full, verify_present=False)),
        ]
        for round_no in range(args.rounds):
            shift = round_no % len(variants)
            for name, run in variants[shift:] + variants[:shift]:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
                shutil.rmtree(os.path.join(work, "out", "tmp"), ignore_errors=True)
            for entry in os.listdir(os.path.join(work, "out")):
                if not entry.startswith("full"):
                    shutil.rmtree(os.path.join(work, "out", entry))
            print("round %d done" % (round_no + 1), flush=True)

        # interrupted at half the bytes, then resumed
        half = fresh("resume")
        try:
            depot_sync(_depot.Source(base), keys, half, throttle=CutOff(total // 2))
        except KeyboardInterrupt:
            pass
        resumed = depot_sync(_depot.Source(base), keys, half)
        # bandwidth limit on the small blobs plus one big one
        limited = fresh("limited")
        start = time.perf_counter()
        result = depot_sync(_depot.Source(base), keys, limited, bandwidth_limit=args.limit_mib * 1024)
        limited_s = time.perf_counter() - start

        median = dict((k, statistics.median(v)) for k, v in times.items())
        rate = dict((k, total / MIB / v) for k, v in median.items())
        print()
        print("%-13s %10s %10s" % ("variant", "median s", "MiB/s"))
        for name in times:
            print("%-13s %10.3f %10.1f" % (name, median[name], rate[name]))
        print()
        print("sync-file / copy:     %.2f" % (median["sync-file"] / median["copy"]))
        print("sync-http / http-get: %.2f" % (median["sync-http"] / median["http-get"]))
        print("resync (verify) / copy: %.2f   resync (trust) / copy: %.3f" % (
            median["resync"] / median["copy"], median["resync-trust"] / median["copy"]))
        print("killed at 50%%: the resume downloaded %.0f MiB of %.0f (%.0f%%), kept %.0f MiB of partial blobs" % (
            resumed["bytes_fetched"] / MIB, total / MIB, 100.0 * resumed["bytes_fetched"] / total, resumed["bytes_resumed"] / MIB))
        print("limit %d MiB/s: achieved %.1f MiB/s" % (args.limit_mib, result["bytes_fetched"] / MIB / limited_s))
        record = {
            "benchmark": "depot_sync", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rounds": args.rounds, "blobs": len(entries), "bytes": total, "median_s": median, "mib_per_s": rate,
            "ratio_sync_file_over_copy": median["sync-file"] / median["copy"],
            "ratio_sync_http_over_http_get": median["sync-http"] / median["http-get"],
            "ratio_resync_over_copy": median["resync"] / median["copy"],
            "ratio_resync_trust_over_copy": median["resync-trust"] / median["copy"],
            "resume_after_half": {"bytes_fetched": resumed["bytes_fetched"], "bytes_resumed": resumed["bytes_resumed"],
                                  "blobs_present": resumed["blobs_present"]},
            "bandwidth_limit": {"limit_mib_s": args.limit_mib, "achieved_mib_s": result["bytes_fetched"] / MIB / limited_s},
        }
        os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
        with open(args.json_out, "w") as handle:
            json.dump(record, handle, indent=1)
        print("written %s" % args.json_out)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
