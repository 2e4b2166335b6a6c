# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Depots: mirror a signed channel from the repository (or another depot) and serve it.

Runs on depot hosts, standard library only: the channel index signature is verified with the
pure-Python Ed25519 verifier of `_signing` when ``cryptography`` is absent.

Depot layout (the served part is the same as the repository's)::

    <depot>/
      channels/<channel>.json (+ .sig)   the signed index, published only when every blob it
                                         lists is present and verified (staged as .json.pending,
                                         signed, renamed into place)
      blobs/sha256/<hex>                 verified blobs, mode 0444
      .incoming/<hex>.part               partial downloads; a later sync resumes them
      depot.json                         what this depot holds: serial, source, signing key,
                                         packages deleted from this depot (excluded from syncs)
      .lock                              one sync at a time; holds the syncing process id

A sync: fetch + verify the index -> refuse an older serial (rollback) -> for every blob: keep it
if present and valid, resume or fetch it otherwise, hashing while writing and refusing a
mismatch -> publish the index -> prune blobs no longer listed. An interrupted sync leaves the
previous index published and every completed blob in place, so the next run resumes.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import ssl
import time
import urllib.request

from ansible_collections.esd.osp.plugins.module_utils import _signing
from ansible_collections.esd.osp.plugins.module_utils._repository import (
    CHANNEL_FORMAT,
    HEX_RE,
    PENDING_SUFFIX,
    RESIGN_REMEDY,
    canonical_json,
    check_hex,
    default_actor,
    exclusive_lock,
    interrupted_publication,
    move_into_place,
    read_bytes,
    utc_now,
    write_atomic,
)

DEPOT_FORMAT = "esd.osp/depot/v1"
CHUNK = 1024 * 1024
THROTTLED_CHUNK = 64 * 1024
RETRY_PAUSE = 1.0  # seconds between reads of an index caught mid-publication
DEPOT_REMEDY = ("sync that depot again (esd.osp.depot_channel, playbooks/distribute.yml): the sync publishes the index "
                "and its signature anew")


class DepotError(Exception):
    """A sync or delete on a depot failed; the message says which blob/index and why."""


class SourceError(DepotError):
    """The upstream (repository or parent depot) could not be read."""


class Source(object):
    """Read-only access to an upstream: an http(s):// or file:// URL, or a local directory."""

    def __init__(self, base, timeout=60, validate_certs=True):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.scheme = base.split("://", 1)[0].lower() if "://" in base else ""
        if self.scheme not in ("", "file", "http", "https"):
            raise SourceError("unsupported source %s (use http://, https://, file:// or a directory)" % base)
        self._opener = None

    def url(self, rel):
        return "%s/%s" % (self.base, rel)

    def _local(self, rel):
        base = self.base[len("file://"):] if self.scheme == "file" else self.base
        return os.path.join(base, *rel.split("/"))

    def _http(self, rel, offset=0):
        # One opener (and one TLS context) for the whole sync: building a context per request costs
        # tens of milliseconds, which would dominate a depot of many small blobs.
        if self._opener is None:
            handlers = []
            if self.scheme == "https":
                context = ssl.create_default_context()
                if not self.validate_certs:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                handlers.append(urllib.request.HTTPSHandler(context=context))
            self._opener = urllib.request.build_opener(*handlers)
        headers = {"Range": "bytes=%d-" % offset} if offset else {}
        headers["User-Agent"] = "esd.osp-depot"
        return self._opener.open(urllib.request.Request(self.url(rel), headers=headers), timeout=self.timeout)

    def read(self, rel, missing_ok=False):
        """The whole (small) file at rel; None when missing and missing_ok."""
        if self.scheme in ("", "file"):
            data = read_bytes(self._local(rel))
            if data is None and not missing_ok:
                raise SourceError("%s does not exist" % self._local(rel))
            return data
        try:
            return self._http(rel).read()
        except Exception as exc:  # urllib raises HTTPError/URLError/socket errors; all mean "not readable"
            if missing_ok and getattr(exc, "code", None) == 404:
                return None
            raise SourceError("cannot fetch %s: %s" % (self.url(rel), exc))

    def open(self, rel, offset=0):
        """(stream, offset actually honoured) for the file at rel from byte `offset`."""
        if self.scheme in ("", "file"):
            try:
                handle = open(self._local(rel), "rb", buffering=0)
            except OSError as exc:
                raise SourceError("cannot open %s: %s" % (self._local(rel), exc))
            handle.seek(offset)
            return handle, offset
        try:
            response = self._http(rel, offset)
        except Exception as exc:  # see read()
            if offset and getattr(exc, "code", None) == 416:
                return self.open(rel, 0)
            raise SourceError("cannot fetch %s: %s" % (self.url(rel), exc))
        status = getattr(response, "status", None) or response.getcode()
        return response, offset if (offset and status == 206) else 0


class Throttle(object):
    """Keep the average transfer rate of a whole sync under `limit_kib` KiB/s (0: no limit)."""

    def __init__(self, limit_kib, clock=time.monotonic, sleep=time.sleep):
        self.rate = limit_kib * 1024.0 if limit_kib else 0.0
        self.clock = clock
        self.sleep = sleep
        self.start = None
        self.sent = 0

    def account(self, nbytes):
        if not self.rate:
            return
        if self.start is None:
            self.start = self.clock()
        self.sent += nbytes
        ahead = self.sent / self.rate - (self.clock() - self.start)
        if ahead > 0:
            self.sleep(ahead)


def parse_package_ref(ref):
    """'name' or 'name=version' -> (name, version or None)."""
    name, sep, version = (ref or "").partition("=")
    name = name.strip()
    version = version.strip().lstrip("=").strip() if sep else None
    if not name:
        raise DepotError("package reference %r must be 'name' or 'name=version'" % ref)
    return name, version or None


def hash_file(path):
    """sha256 of a file, hashed straight from the page cache (mmap) when possible."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                digest.update(mapped)
                return digest
        except (ValueError, OSError):  # empty file, or a filesystem without mmap
            pass
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest


def _copy_local(stream, handle, wanted, throttle, what):
    """Copy up to `wanted` bytes between two local files in the kernel (copy_file_range).

    Returns the bytes copied, or None when the kernel or filesystem cannot do it (then the caller
    copies through Python). Refuses a source longer than `wanted`.
    """
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return None
    done = 0
    step = THROTTLED_CHUNK if throttle.rate else 8 * CHUNK
    try:
        while done < wanted:
            count = copy(stream.fileno(), handle.fileno(), min(step, wanted - done))
            if not count:
                return done
            done += count
            throttle.account(count)
        if copy(stream.fileno(), handle.fileno(), 1):
            raise DepotError("%s is longer than the %d bytes the index lists" % (what, wanted))
    except OSError:
        if done:
            raise
        return None
    return done


def _copy_stream(stream, handle, wanted, throttle, what, digest):
    """Copy a stream (HTTP response or file) into handle through one reused buffer, hashing it into digest;
    returns the bytes copied."""
    buffer = bytearray(THROTTLED_CHUNK if throttle.rate else CHUNK)
    view = memoryview(buffer)
    readinto = getattr(stream, "readinto", None)
    done = 0
    while True:
        try:
            if readinto is not None:
                count = readinto(buffer)
                chunk = view[:count] if count else b""
            else:
                chunk = stream.read(len(buffer))
        except Exception as exc:  # connection reset, timeout...
            raise DepotError("download of %s broke off after %d bytes: %s" % (what, done, exc))
        if not chunk:
            return done
        if done + len(chunk) > wanted:
            raise DepotError("%s is longer than the %d bytes the index lists" % (what, wanted))
        written = 0
        while written < len(chunk):
            written += handle.write(chunk[written:])
        digest.update(chunk)
        done += len(chunk)
        throttle.account(len(chunk))


def fetch_index(source, channel, public_keys, attempts=3, pause=None):
    """Fetch and verify the upstream index; return (bytes, signature bytes, parsed, key id).

    The index and its .sig are two files; a reader can meet a new index with the old
    signature while the upstream is publishing, so a digest mismatch is retried before it
    is reported as tampering.
    """
    rel = "channels/%s.json" % channel
    what = "channel index %s" % source.url(rel)
    for attempt in range(attempts):
        data = source.read(rel)
        sig = source.read(rel + ".sig", missing_ok=True)
        try:
            key = _signing.verify_detached(data, sig, public_keys, what)
            break
        except _signing.SignatureError as exc:
            mismatch = "modified after it was signed" in str(exc)
            if attempt + 1 < attempts and mismatch:
                time.sleep(RETRY_PAUSE if pause is None else pause)
                continue
            # repository and depots stage a new index before signing it: a run stopped half way is told apart
            # from tampering, and the message says how to repair the upstream
            problem = None
            if mismatch:
                remedy = DEPOT_REMEDY if _read_optional(source, "depot.json") is not None else RESIGN_REMEDY
                problem = interrupted_publication(data, sig, _read_optional(source, rel + PENDING_SUFFIX), what,
                                                  source.url(rel + PENDING_SUFFIX), remedy)
            raise DepotError("refusing to trust %s: %s" % (source.base, problem or exc))
    try:
        index = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise DepotError("%s is not valid JSON: %s" % (what, exc))
    if index.get("format") != CHANNEL_FORMAT or index.get("channel") != channel:
        raise DepotError("%s is not an index of channel %s (format %r, channel %r)" % (
            what, channel, index.get("format"), index.get("channel")))
    for entry in index.get("entries") or []:
        if not HEX_RE.match(str(entry.get("sha256"))) or not isinstance(entry.get("size"), int):
            raise DepotError("%s has an invalid entry %r" % (what, entry))
    return data, sig, index, key


def _read_optional(source, rel):
    """The file at rel upstream, or None when it is missing or cannot be read."""
    try:
        return source.read(rel, missing_ok=True)
    except SourceError:
        return None


class Depot(object):
    """One channel mirrored into a directory (see the module docstring for the layout)."""

    def __init__(self, path, channel="production", actor=None, now=utc_now):
        self.path = os.path.abspath(path)
        self.channel = channel
        self.actor = actor or default_actor()
        self.now = now

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def blob_path(self, sha256):
        return self.p("blobs", "sha256", check_hex(sha256))

    def part_path(self, sha256):
        return self.p(".incoming", "%s.part" % check_hex(sha256))

    @property
    def index_path(self):
        return self.p("channels", "%s.json" % self.channel)

    def lock(self):
        return exclusive_lock(self.p(".lock"), "depot %s" % self.path)

    def state(self):
        data = read_bytes(self.p("depot.json"))
        if data is None:
            return {"format": DEPOT_FORMAT, "channel": self.channel, "serial": 0, "excluded": []}
        try:
            state = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise DepotError("depot state %s is not valid JSON: %s" % (self.p("depot.json"), exc))
        state.setdefault("excluded", [])
        return state

    def published(self):
        data = read_bytes(self.index_path)
        return json.loads(data.decode("utf-8")) if data else None

    def blob_status(self, sha256, size, verify):
        """'present', 'missing' or 'corrupt' for one blob."""
        path = self.blob_path(sha256)
        if not os.path.isfile(path):
            return "missing"
        if os.path.getsize(path) != size:
            return "corrupt"
        if verify and hash_file(path).hexdigest() != sha256:
            return "corrupt"
        return "present"

    # --- index ------------------------------------------------------------------------------

    def fetch_index(self, source, public_keys):
        return fetch_index(source, self.channel, public_keys)

    # --- sync -------------------------------------------------------------------------------

    def sync(self, source, public_keys, bandwidth_limit=0, verify_present=True, prune=True, force=False,
             readmit=None, check=False, throttle=None):
        if check:
            return self._sync(source, public_keys, bandwidth_limit, verify_present, prune, force, readmit, True, throttle)
        with self.lock():
            return self._sync(source, public_keys, bandwidth_limit, verify_present, prune, force, readmit, False, throttle)

    def _sync(self, source, public_keys, bandwidth_limit, verify_present, prune, force, readmit, check, throttle):
        data, sig, index, key = self.fetch_index(source, public_keys)
        state = self.state()
        actions = []
        serial = int(index.get("serial") or 0)
        if serial < int(state.get("serial") or 0) and not force:
            raise DepotError("refusing the %s index serial %d from %s: this depot already published serial %d "
                             "(an older index is a rollback or a stale upstream); force to accept it" % (
                                 self.channel, serial, source.base, state["serial"]))
        excluded = list(state["excluded"])
        for ref in readmit or []:
            name, version = parse_package_ref(ref)
            keep = [x for x in excluded if not (x["name"] == name and (version is None or x["version"] == version))]
            if len(keep) != len(excluded):
                actions.append("readmit %s" % ref)
            excluded = keep
        excluded_keys = set((x["name"], x["version"]) for x in excluded)
        wanted = {}
        for entry in index["entries"]:
            if (entry["name"], entry["version"]) not in excluded_keys:
                wanted.setdefault(entry["sha256"], entry)
        stats = {"blobs_total": len(wanted), "blobs_present": 0, "blobs_fetched": 0, "blobs_repaired": 0,
                 "blobs_pruned": 0, "bytes_total": sum(e["size"] for e in wanted.values()), "bytes_fetched": 0,
                 "bytes_resumed": 0}
        todo = []
        for sha256, entry in sorted(wanted.items(), key=lambda item: (item[1]["name"], item[1]["version"])):
            status = self.blob_status(sha256, entry["size"], verify_present)
            if status == "present":
                stats["blobs_present"] += 1
                continue
            todo.append((sha256, entry, status))
            verb = "repair" if status == "corrupt" else "fetch"
            actions.append("%s %s %s (blob %s, %d bytes)" % (verb, entry["name"], entry["version"], sha256, entry["size"]))
        # a re-signed index (key rotation) has the same bytes and a new signature: publish that too
        publish = read_bytes(self.index_path) != data or read_bytes(self.index_path + ".sig") != sig
        if publish:
            actions.append("publish %s index serial %d (signed by %s)" % (self.channel, serial, key))
        stale = []
        if prune and os.path.isdir(self.p("blobs", "sha256")):
            stale = sorted(name for name in os.listdir(self.p("blobs", "sha256"))
                           if HEX_RE.match(name) and name not in wanted)
            actions.extend("prune blob %s" % name for name in stale)
        result = dict(stats, changed=bool(actions), actions=actions, serial=serial, key_id=key,
                      index_sha256=hashlib.sha256(data).hexdigest(), entries=len(index["entries"]),
                      excluded=excluded, source=source.base, channel=self.channel)
        if check or not actions:
            return result
        throttle = throttle or Throttle(bandwidth_limit)
        failures = []
        for sha256, entry, status in todo:
            try:
                fetched, resumed = self._fetch_blob(source, entry, throttle)
            except DepotError as exc:
                failures.append(str(exc))
                continue
            stats["blobs_repaired" if status == "corrupt" else "blobs_fetched"] += 1
            stats["bytes_fetched"] += fetched
            stats["bytes_resumed"] += resumed
        result.update(stats)
        if failures:
            raise DepotError("sync of %s from %s failed for %d of %d blob(s); the previous index stays published "
                             "and verified blobs are kept, so the next sync resumes: %s" % (
                                 self.path, source.base, len(failures), len(todo), "; ".join(failures)))
        if publish:
            # as the repository publishes (staged index, signature, one rename): a reader meeting the new .sig
            # with the old index retries, and a sync stopped in between is recognised and repaired by the next
            write_atomic(self.index_path + PENDING_SUFFIX, data)
            write_atomic(self.index_path + ".sig", sig)
            move_into_place(self.index_path + PENDING_SUFFIX, self.index_path)
        for name in stale:
            os.unlink(self.p("blobs", "sha256", name))
            stats["blobs_pruned"] += 1
        if os.path.isdir(self.p(".incoming")):
            for name in os.listdir(self.p(".incoming")):
                if name.endswith(".part") and name[:-5] not in wanted:
                    os.unlink(self.p(".incoming", name))
        result.update(stats)
        new_state = {"format": DEPOT_FORMAT, "channel": self.channel, "serial": serial, "source": source.base,
                     "key_id": key, "index_sha256": result["index_sha256"], "synced_at": self.now(),
                     "synced_by": self.actor, "blobs": len(wanted), "bytes": stats["bytes_total"], "excluded": excluded}
        write_atomic(self.p("depot.json"), canonical_json(new_state))
        return result

    def _fetch_blob(self, source, entry, throttle, retry=True):
        """Fetch one blob into place, resuming a partial download; return (bytes fetched, bytes resumed)."""
        sha256, size = entry["sha256"], entry["size"]
        rel = "blobs/sha256/%s" % sha256
        label = "%s %s (blob %s)" % (entry["name"], entry["version"], sha256)
        part = self.part_path(sha256)
        if not os.path.isdir(os.path.dirname(part)):
            os.makedirs(os.path.dirname(part), 0o755)
        offset = os.path.getsize(part) if os.path.isfile(part) else 0
        if offset > size:
            os.unlink(part)
            offset = 0
        stream, offset_honoured = (None, offset) if offset == size else source.open(rel, offset)
        if offset_honoured != offset:
            offset = 0
        what = "%s from %s" % (label, source.url(rel))
        try:
            with open(part, "ab" if offset else "wb", buffering=0) as handle:
                fetched, digest = 0, None
                if stream is not None and source.scheme in ("", "file"):
                    # in the kernel, then hashed from the page cache: what is verified is what the depot holds
                    fetched = _copy_local(stream, handle, size - offset, throttle, what)
                if fetched is None or (stream is not None and source.scheme not in ("", "file")):
                    # a download is hashed while it streams (the kept prefix of a resumed one first)
                    digest = hash_file(part) if offset else hashlib.sha256()
                    fetched = _copy_stream(stream, handle, size - offset, throttle, what, digest)
                os.fsync(handle.fileno())
        finally:
            if stream is not None:
                stream.close()
        if digest is None:
            digest = hash_file(part)
        got = offset + fetched
        if got != size or digest.hexdigest() != sha256:
            os.unlink(part)
            if offset and retry:
                # the kept prefix may be what was wrong: start this blob again from byte 0 once
                more, dummy = self._fetch_blob(source, entry, throttle, retry=False)
                return fetched + more, 0
            raise DepotError("%s from %s failed its checksum on arrival: got %d bytes with sha256 %s, the signed index "
                             "says %d bytes with sha256 %s; the download was discarded" % (
                                 label, source.url(rel), got, digest.hexdigest(), size, sha256))
        os.chmod(part, 0o444)
        final = self.blob_path(sha256)
        if not os.path.isdir(os.path.dirname(final)):
            os.makedirs(os.path.dirname(final), 0o755)
        os.rename(part, final)
        return fetched, offset

    # --- delete (the catalogue's delete_package, on this depot) ------------------------------

    def delete(self, packages, check=False):
        """Remove packages ('name' or 'name=version') from this depot and keep them out of later syncs."""
        with self.lock() if not check else _null():
            state = self.state()
            index = self.published() or {"entries": []}
            refs = [parse_package_ref(ref) for ref in packages]
            excluded = list(state["excluded"])
            excluded_keys = set((x["name"], x["version"]) for x in excluded)
            matched = [e for e in index["entries"]
                       if any(e["name"] == n and (v is None or e["version"] == v) for n, v in refs)]
            not_found = ["%s%s" % (n, "=%s" % v if v else "") for n, v in refs
                         if not any(e["name"] == n and (v is None or e["version"] == v) for e in index["entries"])]
            new = [e for e in matched if (e["name"], e["version"]) not in excluded_keys]
            keep_digests = set(e["sha256"] for e in index["entries"]
                               if e not in matched and (e["name"], e["version"]) not in excluded_keys)
            remove = sorted(set(e["sha256"] for e in matched) - keep_digests)
            remove = [d for d in remove if os.path.exists(self.blob_path(d)) or os.path.exists(self.part_path(d))]
            actions = ["exclude %s %s from this depot" % (e["name"], e["version"]) for e in new]
            actions += ["delete blob %s" % d for d in remove]
            result = {"changed": bool(actions), "actions": actions, "not_found": not_found,
                      "deleted": [{"name": e["name"], "version": e["version"], "sha256": e["sha256"]} for e in matched],
                      "excluded": excluded + [{"name": e["name"], "version": e["version"], "sha256": e["sha256"],
                                               "by": self.actor, "at": self.now()} for e in new],
                      "channel": self.channel}
            if check or not actions:
                return result
            for digest in remove:
                for path in (self.blob_path(digest), self.part_path(digest)):
                    if os.path.exists(path):
                        os.unlink(path)
            state["excluded"] = result["excluded"]
            write_atomic(self.p("depot.json"), canonical_json(state))
            return result


class _null(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
