# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed repository: immutable blobs, site channels, promotion rules, retirement.

Private to the collection; standard library only (signing is optional and passed in as a
`_signing.Signer`, which the caller loads behind a ``cryptography`` guard).

On-disk layout (filesystem backend)::

    <repository>/
      repository.json                       channels (in promotion order), max_live_images
      blobs/sha256/<hex>                    immutable artifact bytes, mode 0444, named by their sha256
      catalogue/<name>/<version>.json       the one binding name+version -> sha256 (kept as a tombstone
                                            after retirement, so the pair can never mean other bytes;
                                            state active, retiring while a retirement runs, or retired)
      channels/<channel>.json               channel index: serial + entries (what depots serve)
      channels/<channel>.json.sig           detached Ed25519 signature (always for the last channel)
      channels/<channel>.json.pending       only while a signed index is published (staged, signed, renamed)
      records/<name>/<version>/<id>.json    test records (evidence) accepted for production
      archives/<name>[-<version>]-<time>.esdarchive (+ .sha256)   written by archive-retire
      log/events.jsonl                      append-only history of every change
      .lock                                 serialises writers

The served part (``blobs/`` and ``channels/``) has the same layout as a depot, so a depot can
mirror the repository or another depot with the same code.

Promotion writes a channel entry (a pointer); it never reads or copies the blob, so its cost does
not depend on the artifact's size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from xml.etree import ElementTree

from ansible_collections.esd.osp.plugins.module_utils import _artifact, _fileio
from ansible_collections.esd.osp.plugins.module_utils import _signing
from ansible_collections.esd.osp.plugins.module_utils._transaction import version_key

REPOSITORY_FORMAT = "esd.osp/repository/v1"
CHANNEL_FORMAT = "esd.osp/channel/v1"
ARCHIVE_FORMAT = "esd.osp/archive/v1"
RECORD_FORMAT = "esd.osp/test-record/v1"
DEFAULT_CHANNELS = ("build", "test", "production")
DEFAULT_MAX_LIVE_IMAGES = 2
KINDS = ("package", "image", "media")
ARCHIVE_SUFFIX = ".esdarchive"
HEX_RE = re.compile(r"^[0-9a-f]{64}$")
# The files promotion stores under records/<name>/<version>/ (the report and its parsed record, named by the
# report's sha256): the only test record files an archive holds and a restore writes.
RECORD_FILE_RE = re.compile(r"^[0-9a-f]{64}\.(json|report)$")
CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
UPDATE_REF_RE = re.compile(r"^\s*([a-z0-9][a-z0-9._+-]*?)\s*(?:(==|=|>=|<=|>|<)\s*(\S+))?\s*$")
PASSED = ("passed", "pass", "success", "succeeded", "ok")
LIVE_STATES = ("active", "retiring")  # catalogue states of records still in the repository (retiring: see retire())
RETIRING_KEYS = ("retiring_at", "retiring_by", "retiring_from")
PENDING_SUFFIX = ".pending"  # channels/<channel>.json.pending: a new index staged, signed, then renamed into place


class RepositoryError(Exception):
    """Something in the repository is missing, invalid or cannot be done."""


class ConflictError(RepositoryError):
    """A name+version is already bound to different bytes, or a blob would be overwritten."""


class RuleError(RepositoryError):
    """A promotion or retirement rule refuses the operation (order, test record, image limit, in use)."""


class IntegrityError(RepositoryError):
    """Stored bytes or signed data do not match their digest or signature."""


# --- small helpers (shared with _depot) ---------------------------------------------------------

def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def default_actor():
    return os.environ.get("ESD_USER") or getpass.getuser()


def canonical_json(data):
    return _artifact.canonical_json(data)


write_atomic = _fileio.write_atomic  # kept under this name: _depot imports it from here


def read_json(path, what):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise RepositoryError("cannot read %s %s: %s" % (what, path, exc))


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


@contextlib.contextmanager
def exclusive_lock(path, what):
    """Hold an exclusive flock on `path` (created if needed); the file records the holder's pid."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            raise RepositoryError("%s is locked by another run (pid %s); try again when it has finished" % (
                what, holder or "unknown"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%d\n" % os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def check_hex(sha256, what="sha256"):
    if not isinstance(sha256, str) or not HEX_RE.match(sha256):
        raise RepositoryError("%s must be 64 lower-case hex digits, got %r" % (what, sha256))
    return sha256


def blob_relpath(sha256):
    return "blobs/sha256/%s" % sha256


def parse_update_ref(ref):
    """'payroll-agent' / 'payroll-agent=2.4.0' / 'payroll-agent>=2.4' -> (name, operator, version)."""
    match = UPDATE_REF_RE.match(ref or "")
    if not match:
        return None, None, None
    return match.group(1), match.group(2), match.group(3)


def reference_matches(operator, ref_version, version):
    """Whether `version` satisfies an update reference's `operator ref_version` (no operator: any version).

    Versions are compared in the order esd.osp.software uses for ``requires`` (1.10 > 1.9, 1.0 > 1.0~rc1).
    """
    if operator is None:
        return True
    have, want = version_key(version), version_key(ref_version)
    return {"=": have == want, "==": have == want, ">=": have >= want, "<=": have <= want,
            ">": have > want, "<": have < want}[operator]


RESIGN_REMEDY = ("re-sign the channels on the repository (esd.osp.repository state=signed, which playbooks/keys.yml "
                 "runs), then run the interrupted change again")


def interrupted_publication(data, sig, pending, what, staged, remedy=RESIGN_REMEDY):
    """When `data` does not match its signature `sig` because the run publishing it stopped between
    the signature and the index (the signature covers `pending`, the new index staged as `staged`),
    the message that says so and what to do (`remedy`); None otherwise (a match, or a mismatch not
    explained so, e.g. tampering)."""
    if data is None or sig is None or pending is None:
        return None
    try:
        signed = _signing.parse_signature(sig, what)["signed_sha256"]
    except _signing.SignatureError:
        return None
    if signed == hashlib.sha256(data).hexdigest() or signed != hashlib.sha256(pending).hexdigest():
        return None
    return ("%s does not match its signature because its publication was interrupted: the signature covers the new "
            "index staged as %s, which was never put in place; %s" % (what, staged, remedy))


def move_into_place(staged, path):
    """Rename `staged` over `path` (one atomic step) and make the rename durable."""
    os.rename(staged, path)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def entry_label(entry):
    return "%s %s" % (entry["name"], entry["version"])


# --- test reports (evidence for production) -----------------------------------------------------

def parse_test_report(path, data=None):
    """Read a JSON or JUnit XML test report into {id, result, name, version, sha256, tests, failures}.

    JSON: an object with ``name``, ``version``, ``result`` (or ``status``/``outcome``), optional
    ``sha256``/``digest``, ``id``/``report_id`` and ``summary`` ({failed, errors}).
    JUnit XML: <testsuites>/<testsuite> with tests/failures/errors counts; the package identity in
    ``<property name="name|version|sha256" value="..."/>`` (``esd.`` prefixes accepted).
    With `data`, the report's bytes are given and `path` only names them in messages.
    """
    if data is None:
        data = read_bytes(path)
    if data is None:
        raise RepositoryError("test report %s does not exist" % path)
    report_sha256 = hashlib.sha256(data).hexdigest()
    text = data.decode("utf-8", "replace").lstrip()
    if text.startswith("<"):
        try:
            root = ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise RepositoryError("test report %s is not valid XML: %s" % (path, exc))
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        if root.tag not in ("testsuite", "testsuites"):
            raise RepositoryError("test report %s is not JUnit XML (root element <%s>)" % (path, root.tag))
        tests = failed = errors = 0
        try:
            for suite in suites:
                tests += int(suite.get("tests") or 0)
                failed += int(suite.get("failures") or 0)
                errors += int(suite.get("errors") or 0)
        except ValueError as exc:
            raise RepositoryError("test report %s has test counts that are not numbers: %s" % (path, exc))
        failures = failed + errors
        props = {}
        for prop in root.iter("property"):
            key = (prop.get("name") or "").split(".", 1)[-1] if (prop.get("name") or "").startswith("esd.") else prop.get("name")
            props[key] = prop.get("value")
        report = {
            "id": root.get("id") or props.get("report_id") or root.get("name") or "sha256:%s" % report_sha256[:16],
            "result": "passed" if tests > 0 and failures == 0 else "failed",
            "name": props.get("name") or props.get("package"),
            "version": props.get("version"),
            "sha256": props.get("sha256") or props.get("digest"),
            "tests": tests,
            "failures": failures,
            "failed": failed,
            "errors": errors,
            "format": "junit",
        }
    else:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RepositoryError("test report %s is neither JSON nor JUnit XML: %s" % (path, exc))
        if not isinstance(raw, dict):
            raise RepositoryError("test report %s must be a JSON object" % path)
        result = str(raw.get("result") or raw.get("status") or raw.get("outcome") or "").lower()
        summary = raw.get("summary") if isinstance(raw.get("summary"), dict) else {}
        try:
            failed = int(summary.get("failed") or 0)
            errors = int(summary["errors"] or 0) if "errors" in summary else None
        except (TypeError, ValueError) as exc:
            raise RepositoryError("test report %s has a summary whose failed/errors counts are not numbers: %s" % (path, exc))
        artifact = raw.get("artifact") if isinstance(raw.get("artifact"), dict) else {}
        digest = raw.get("sha256") or raw.get("digest") or artifact.get("sha256")
        # A report passes only when it says so AND counts no failure: a "passed" result over a summary
        # with failed tests is a failed report, whatever produced it.
        passed = result in PASSED and failed == 0 and not errors
        report = {
            "id": str(raw.get("id") or raw.get("report_id") or "sha256:%s" % report_sha256[:16]),
            "result": "passed" if passed else "failed",
            "reported_result": result or "unknown",
            "name": raw.get("name") or raw.get("package"),
            "version": str(raw["version"]) if raw.get("version") is not None else None,
            "sha256": digest,
            "tests": summary.get("total"),
            "failures": failed + (errors or 0),
            "failed": failed,
            "errors": errors,
            "format": "json",
        }
    if isinstance(report.get("sha256"), str) and report["sha256"].startswith("sha256:"):
        report["sha256"] = report["sha256"][len("sha256:"):]
    report["report_sha256"] = report_sha256
    return report, data


def failure_summary(report):
    """Why a parsed report is not a pass, naming its counts (for the refusal message)."""
    counts = "%d failed" % report["failed"]
    if report.get("errors") is not None:
        counts += ", %d error(s)" % report["errors"]
    if report["format"] == "junit" and not report["tests"]:
        return "its result is failed: it ran no tests"
    if report["format"] == "junit":
        return "its result is failed (%d failure(s): %s, of %d test(s))" % (report["failures"], counts, report["tests"])
    if report["reported_result"] in PASSED:
        return "its result is failed: it says %r but its summary counts %s" % (report["reported_result"], counts)
    return "its result is failed: it says %r (summary: %s)" % (report["reported_result"], counts)


# --- the repository -------------------------------------------------------------------------------

class Repository(object):
    """A filesystem repository (see the module docstring for the layout)."""

    def __init__(self, path, signer=None, actor=None, now=utc_now):
        self.path = os.path.abspath(path)
        self.signer = signer
        self.actor = actor or default_actor()
        self.now = now
        self._config = None
        # what a check-mode add() would have stored, so that a promotion that follows on this object (the
        # repository module's state=promoted with src) computes what it would after a real add
        self._planned_records = {}
        self._planned_entries = {}
        self._planned_blobs = {}

    # paths
    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def blob_path(self, sha256):
        return self.p("blobs", "sha256", check_hex(sha256))

    def channel_path(self, channel):
        return self.p("channels", "%s.json" % channel)

    def catalogue_path(self, name, version):
        return self.p("catalogue", name, "%s.json" % version)

    # configuration
    def exists(self):
        return os.path.isfile(self.p("repository.json"))

    @property
    def config(self):
        if self._config is None:
            if not self.exists():
                raise RepositoryError("%s is not an esd.osp repository (no repository.json); add an artifact "
                                      "with state=present to create it" % self.path)
            config = read_json(self.p("repository.json"), "repository configuration")
            if config.get("format") != REPOSITORY_FORMAT:
                raise RepositoryError("%s has an unknown repository format %r" % (self.path, config.get("format")))
            self._config = config
        return self._config

    @property
    def channels(self):
        return list(self.config["channels"])

    @property
    def production(self):
        return self.channels[-1]

    def plan_config(self, channels=None, max_live_images=None):
        """The configuration to write (or None when nothing changes); validates the options."""
        if channels is not None:
            channels = list(channels)
            if len(channels) < 2 or len(set(channels)) != len(channels):
                raise RepositoryError("channels must name at least two distinct channels in promotion order, got %r" % (channels,))
            for channel in channels:
                if not CHANNEL_RE.match(channel):
                    raise RepositoryError("channel name %r must be lower-case letters, digits, _ and -" % channel)
        if max_live_images is not None and max_live_images < 1:
            raise RepositoryError("max_live_images must be at least 1, got %d" % max_live_images)
        if not self.exists():
            return {"format": REPOSITORY_FORMAT, "channels": channels or list(DEFAULT_CHANNELS),
                    "max_live_images": max_live_images or DEFAULT_MAX_LIVE_IMAGES,
                    "created_at": self.now(), "created_by": self.actor}
        config = dict(self.config)
        if channels is not None and channels != config["channels"]:
            raise RepositoryError("repository %s was created with channels %s; changing the channels is not supported" % (
                self.path, ", ".join(config["channels"])))
        if max_live_images is not None and max_live_images != config.get("max_live_images"):
            over = self._families_over(max_live_images)
            if over:
                raise RuleError("cannot set max_live_images to %d: more images than that are live in the %s channel (%s); "
                                "retire the surplus images first" % (max_live_images, self.production, "; ".join(
                                    "family %s: %s" % (family, ", ".join(versions)) for family, versions in over)))
            config["max_live_images"] = max_live_images
            return config
        return None

    def _families_over(self, limit):
        """[(family, [live versions])] of the image families with more than `limit` images in production."""
        families = {}
        for entry in self.load_channel(self.production)["entries"]:
            if entry.get("kind") == "image":
                families.setdefault(entry.get("family") or entry["name"], []).append(entry["version"])
        return [(family, sorted(versions, key=version_key)) for family, versions in sorted(families.items())
                if len(versions) > limit]

    def configure(self, channels=None, max_live_images=None, check=False):
        """Change the configuration of an existing repository (max_live_images; the channels are fixed).

        In check mode the planned configuration is kept in memory only, so an operation that follows
        on this object computes what it would after a real run.
        """
        # read before taking the lock, whose file would create the directory: a path that is not a repository
        # yet is refused with the message that says how to create one
        previous = self.config.get("max_live_images")
        with self.lock() if not check else _null():
            self._config = None  # read again under the lock
            previous = self.config.get("max_live_images")
            config = self.plan_config(channels, max_live_images)
            if config is None:
                return {"changed": False, "actions": [], "max_live_images": previous}
            result = {"changed": True, "actions": ["set max_live_images to %d (was %s)" % (config["max_live_images"], previous)],
                      "max_live_images": config["max_live_images"]}
            if check:
                self._config = config
                return result
            self.write_config(config)
            self._event("configure", max_live_images=config["max_live_images"], previous_max_live_images=previous)
            return result

    def write_config(self, config):
        write_atomic(self.p("repository.json"), canonical_json(config))
        self._config = config

    def lock(self):
        return exclusive_lock(self.p(".lock"), "repository %s" % self.path)

    # reading
    def load_channel(self, channel):
        if channel not in self.channels:
            raise RepositoryError("unknown channel %r (channels of %s: %s)" % (channel, self.path, ", ".join(self.channels)))
        data = read_bytes(self.channel_path(channel))
        if data is None:
            index = {"format": CHANNEL_FORMAT, "channel": channel, "serial": 0, "entries": []}
        else:
            try:
                index = json.loads(data.decode("utf-8"))
            except ValueError as exc:
                raise IntegrityError("channel index %s is not valid JSON: %s" % (self.channel_path(channel), exc))
        if self._planned_entries.get(channel):
            index = dict(index, entries=index["entries"] + self._planned_entries[channel])
        return index

    def load_record(self, name, version):
        path = self.catalogue_path(_artifact.validate_name(name), _artifact.validate_version(version))
        if (name, version) in self._planned_records:
            return self._planned_records[(name, version)]
        if not os.path.isfile(path):
            return None
        return read_json(path, "catalogue record")

    def records(self, name=None):
        """All catalogue records (optionally of one name), sorted by name then version."""
        base = self.p("catalogue")
        names = [name] if name else (sorted(os.listdir(base)) if os.path.isdir(base) else [])
        out = []
        for item in names:
            folder = os.path.join(base, item)
            if not os.path.isdir(folder):
                continue
            for filename in sorted(os.listdir(folder)):
                if filename.endswith(".json"):
                    out.append(read_json(os.path.join(folder, filename), "catalogue record"))
        return out

    def find_entry(self, channel, name, version):
        for entry in self.load_channel(channel)["entries"]:
            if entry["name"] == name and entry["version"] == version:
                return entry
        return None

    def channels_holding(self, name, version):
        return [c for c in self.channels if self.find_entry(c, name, version) is not None]

    def verify_channel(self, channel, public_keys):
        """Verify a channel index against its signature; return (index, key id)."""
        data = read_bytes(self.channel_path(channel))
        if data is None:
            raise IntegrityError("channel %s of %s has no index yet" % (channel, self.path))
        problem = self.interrupted(channel)
        if problem:
            raise IntegrityError(problem)
        key = _signing.verify_detached(data, read_bytes(self.channel_path(channel) + ".sig"), public_keys,
                                       "channel index %s" % self.channel_path(channel))
        return json.loads(data.decode("utf-8")), key

    def interrupted(self, channel):
        """The message for a channel whose publication a stopped run left half done, else None."""
        path = self.channel_path(channel)
        return interrupted_publication(read_bytes(path), read_bytes(path + ".sig"), read_bytes(path + PENDING_SUFFIX),
                                       "channel index %s" % path, path + PENDING_SUFFIX)

    # writing primitives (callers hold the lock)
    def _event(self, action, **fields):
        event = {"at": self.now(), "by": self.actor, "action": action}
        event.update(fields)
        path = self.p("log", "events.jsonl")
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o755)
        with open(path, "ab") as handle:
            handle.write((json.dumps(event, sort_keys=True) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def must_sign(self, channel):
        return channel == self.production

    def _write_channel(self, channel, entries, previous):
        index = {
            "format": CHANNEL_FORMAT,
            "channel": channel,
            "serial": int(previous.get("serial") or 0) + 1,
            "updated_at": self.now(),
            "updated_by": self.actor,
            "entries": sorted(entries, key=lambda e: (e["name"], e["version"])),
        }
        data = canonical_json(index)
        path = self.channel_path(channel)
        if self.signer is None and self.must_sign(channel):
            raise RepositoryError("the %s channel index must be signed: give signing_key" % channel)
        if self.signer is not None:
            # The index and its .sig are two files. The new index is staged beside the old one, then
            # signed, then renamed into place: a run stopped between the two leaves a signature over
            # the staged index, which verification recognises (interrupted_publication) and
            # state=signed repairs. Readers meeting the new .sig with the old index retry.
            write_atomic(path + PENDING_SUFFIX, data)
            write_atomic(path + ".sig", _signing.make_signature(data, self.signer))
            move_into_place(path + PENDING_SUFFIX, path)
        else:
            if os.path.exists(path + ".sig"):
                os.unlink(path + ".sig")  # first: a stale signature beside a new index is worse than none
            write_atomic(path, data)
        return index

    def signature_status(self, channel):
        """(signed by key id or None, matches current index bytes) for a channel."""
        data = read_bytes(self.channel_path(channel))
        sig = read_bytes(self.channel_path(channel) + ".sig")
        if data is None or sig is None:
            return None, False
        try:
            doc = _signing.parse_signature(sig, channel)
        except _signing.SignatureError:
            return None, False
        return doc["key_id"], doc["signed_sha256"] == hashlib.sha256(data).hexdigest()

    def signs_indexes(self):
        """Whether this repository signs its channel indexes: it has a signer, or a channel carries a signature."""
        return self.signer is not None or any(os.path.exists(self.channel_path(c) + ".sig") for c in self.channels)

    def needs_signature(self, channel):
        """True when the channel must be (re)signed by self.signer: unsigned, stale or another key."""
        if self.signer is None or read_bytes(self.channel_path(channel)) is None:
            return False
        key, fresh = self.signature_status(channel)
        return not fresh or key != self.signer.key_id

    def require_signer(self, channel):
        """Fail before anything is written when a change to `channel` would need a signature we cannot make."""
        if self.signer is None and self.must_sign(channel):
            raise RepositoryError("changing the %s channel re-signs its index: give signing_key (a keyring directory "
                                  "or an Ed25519 PEM private key)" % channel)

    def sign(self, check=False):
        """(Re-)sign every channel that is signed, or must be, when its signature is missing, stale or by
        another key than self.signer (after a key rotation)."""
        if self.signer is None:
            raise RepositoryError("state=signed needs signing_key")
        with self.lock() if not check else _null():
            todo = [c for c in self.channels
                    if (self.must_sign(c) or self.signature_status(c)[0]) and self.needs_signature(c)]
            # indexes staged by a run that stopped before putting them in place: never published, and
            # the re-signed current index supersedes them (the stopped change is run again)
            leftovers = [c for c in self.channels if os.path.exists(self.channel_path(c) + PENDING_SUFFIX)]
            actions = ["sign channel %s with key %s" % (c, self.signer.key_id) for c in todo]
            actions += ["discard %s%s, left unpublished by an interrupted run" % (self.channel_path(c), PENDING_SUFFIX)
                        for c in leftovers]
            result = {"changed": bool(actions), "actions": actions, "key_id": self.signer.key_id}
            if not check:
                for channel in todo:
                    self.resign(channel)
                for channel in leftovers:
                    os.unlink(self.channel_path(channel) + PENDING_SUFFIX)
            return result

    def resign(self, channel):
        data = read_bytes(self.channel_path(channel))
        write_atomic(self.channel_path(channel) + ".sig", _signing.make_signature(data, self.signer))
        self._event("sign", channel=channel, key_id=self.signer.key_id)

    # --- operations ---------------------------------------------------------------------------
    # Each returns a result dict: changed, actions, and what changed; check=True computes the
    # same result without writing anything.

    def add(self, src, name=None, version=None, kind=None, family=None, channels=None, max_live_images=None, check=False):
        """Store an artifact's bytes (by sha256) and enter it into the first channel."""
        if not os.path.isfile(src):
            raise RepositoryError("artifact %s does not exist" % src)
        manifest = None
        if src.endswith(_artifact.ARTIFACT_SUFFIX) or not (name and version):
            try:
                manifest = _artifact.read_manifest(src)
            except _artifact.ArtifactError as exc:
                if not (name and version):
                    raise RepositoryError("cannot add %s: %s; give name, version and kind for artifacts that are not "
                                          "esd.osp packages (images, media)" % (src, exc))
        if manifest is not None:
            for field, given in (("name", name), ("version", version), ("kind", kind)):
                if given and str(manifest.get(field, "package" if field == "kind" else None)) != given:
                    raise RepositoryError("cannot add %s: its manifest says %s %r but %r was given" % (
                        src, field, manifest.get(field), given))
            name, version = manifest["name"], manifest["version"]
            kind = manifest.get("kind") or "package"
            family = family or manifest.get("family")
        kind = kind or "package"
        if kind not in KINDS:
            raise RepositoryError("kind must be one of %s, got %r" % (", ".join(KINDS), kind))
        _artifact.validate_name(name)
        _artifact.validate_version(version)
        with self.lock() if not check else _null():
            self._config = None  # read again under the lock
            previous = self.config.get("max_live_images") if self.exists() else None
            config = self.plan_config(channels, max_live_images)
            first = (config or self.config)["channels"][0]
            sha256 = _artifact.sha256_file(src)
            size = os.path.getsize(src)
            record = self.load_record(name, version) if self.exists() else None
            if record is not None and record["sha256"] != sha256:
                raise ConflictError(
                    "%s %s is already bound to sha256 %s (added by %s at %s); refusing %s with sha256 %s: "
                    "a name and version can never mean two different artifacts, build a new version" % (
                        name, version, record["sha256"], record.get("added_by"), record.get("added_at"), src, sha256))
            actions = []
            if config is not None:
                actions.append("initialise repository %s (channels %s)" % (self.path, ", ".join(config["channels"]))
                               if not self.exists() else "set max_live_images to %d (was %s)" % (config["max_live_images"], previous))
            blob = self.blob_path(sha256)
            blob_ok = os.path.isfile(blob) and _artifact.sha256_file(blob) == sha256
            if not blob_ok:
                actions.append("%s blob %s (%d bytes)" % ("repair" if os.path.exists(blob) else "store", sha256, size))
            bind = record is None or record.get("state") != "active"
            if bind:
                actions.append("%s %s %s -> sha256 %s" % ("bind" if record is None else "reinstate", name, version, sha256))
                record = {"name": name, "version": version, "kind": kind, "sha256": sha256, "size": size,
                          "family": (family or name) if kind == "image" else None,
                          "updates": list((manifest or {}).get("updates") or []),
                          "source": os.path.basename(src), "added_by": self.actor, "added_at": self.now(),
                          "state": "active"}
            in_first = self.exists() and self.find_entry(first, name, version) is not None
            if not in_first:
                actions.append("enter %s %s into channel %s" % (name, version, first))
            result = {"changed": bool(actions), "actions": actions, "name": name, "version": version,
                      "sha256": sha256, "size": size, "kind": kind, "channel": first,
                      "all_channels": list((config or self.config)["channels"])}
            if check and actions:  # kept in memory only (see __init__)
                if config is not None:
                    self._config = config
                self._planned_blobs[sha256] = size
                self._planned_records[(name, version)] = record
                if not in_first:
                    self._planned_entries.setdefault(first, []).append(self._entry(record, first, None, None, None))
            if check or not actions:
                return result
            if config is not None:
                self.write_config(config)
            if not blob_ok:
                self._store_blob(src, sha256)
            if bind:
                write_atomic(self.catalogue_path(name, version), canonical_json(record))
            if not in_first:
                index = self.load_channel(first)
                entry = self._entry(record, first, None, None, None)
                self._write_channel(first, index["entries"] + [entry], index)
            self._event("add", name=name, version=version, sha256=sha256, size=size, kind=kind, channel=first)
            return result

    def _store_blob(self, src, sha256):
        """Copy src into blobs/sha256/<hex> verifying the digest on the way; never overwrite."""
        final = self.blob_path(sha256)
        directory = os.path.dirname(final)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=directory)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as handle:
                for chunk in iter(lambda: handle.read(_artifact.CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise IntegrityError("%s changed while it was being added (sha256 %s, expected %s)" % (
                    src, digest.hexdigest(), sha256))
            os.chmod(tmp, 0o444)
            if os.path.exists(final) and _artifact.sha256_file(final) == sha256:
                return  # never rewrite a valid blob: its content is its name
            # absent, or damaged (content no longer matches its name): put the right bytes in place
            os.rename(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _entry(self, record, channel, from_channel, evidence, override, test_record=None):
        entry = {
            "name": record["name"], "version": record["version"], "kind": record.get("kind", "package"),
            "sha256": record["sha256"], "size": record["size"], "path": blob_relpath(record["sha256"]),
            "updates": record.get("updates") or [],
            "promoted_by": self.actor, "promoted_at": self.now(), "from_channel": from_channel,
            "evidence": evidence, "override": override,
        }
        if record.get("kind") == "image":
            entry["family"] = record.get("family") or record["name"]
        if test_record is not None:
            entry["test_record"] = test_record
        return entry

    def promote(self, name, version, channel, from_channel=None, evidence=None, test_report=None, override=None, check=False):
        """Enter name+version into `channel` from the channel before it (or from_channel with an override)."""
        channels = self.channels
        if channel not in channels:
            raise RepositoryError("unknown channel %r (channels of %s: %s)" % (channel, self.path, ", ".join(channels)))
        position = channels.index(channel)
        if position == 0:
            raise RuleError("nothing is promoted into %s, the first channel: add the artifact with state=present" % channel)
        with self.lock() if not check else _null():
            record = self.load_record(name, version)
            if record is None or record.get("state") != "active":
                why = ""
                if record is not None and record.get("state") == "retiring":
                    why = " (its retirement was interrupted: run the retirement again to finish it)"
                elif record is not None:
                    why = " (it was retired)"
                raise RepositoryError("%s %s is not in repository %s%s" % (name, version, self.path, why))
            blob = self.blob_path(record["sha256"])
            found = self._planned_blobs.get(record["sha256"])
            if found is None and not os.path.isfile(blob):
                raise IntegrityError("the blob of %s %s (sha256 %s) is missing from %s" % (
                    name, version, record["sha256"], self.path))
            if found is None:
                found = os.path.getsize(blob)  # a stat, not a read: promotion stays independent of the size
            if found != record["size"]:
                raise IntegrityError("the blob of %s %s (sha256 %s) is damaged: the catalogue records %d bytes, %s holds %d; "
                                     "add the artifact again (state=present) to repair it" % (
                                         name, version, record["sha256"], record["size"], blob, found))
            holding = self.channels_holding(name, version)
            existing = self.find_entry(channel, name, version)
            if existing is not None:
                resign = self.needs_signature(channel)
                result = {"changed": resign, "actions": ["re-sign channel %s" % channel] if resign else [],
                          "entry": existing, "name": name, "version": version, "channel": channel}
                if resign and not check:
                    self.resign(channel)
                return result
            previous = channels[position - 1]
            source = from_channel or previous
            if source not in channels:
                raise RepositoryError("unknown from_channel %r (channels: %s)" % (source, ", ".join(channels)))
            if channels.index(source) >= position:
                raise RuleError("cannot promote %s %s from %s to %s: promotion only goes forward (%s)" % (
                    name, version, source, channel, " -> ".join(channels)))
            if source not in holding:
                raise RuleError("cannot promote %s %s to %s: it is not in the %s channel (it is in: %s); promote it to "
                                "%s first%s" % (name, version, channel, source, ", ".join(holding) or "no channel", source,
                                                "" if source != previous else ", or give from_channel and an override "
                                                "reason to skip a site"))
            if source != previous and not (override and override.strip()):
                raise RuleError("cannot promote %s %s from %s to %s: that skips %s; skipping a site needs an explicit "
                                "override reason, which is recorded" % (
                                    name, version, source, channel, ", ".join(channels[channels.index(source) + 1:position])))
            self.require_signer(channel)
            test_record = None
            actions = []
            if channel == self.production:
                test_record, new_record = self._passing_test_record(record, test_report)
                if new_record is not None:
                    actions.append("store test record %s (%s)" % (new_record[0]["id"], new_record[0]["result"]))
                if record.get("kind") == "image":
                    self._check_image_limit(record, channel)
            note = " (override: %s)" % override if source != previous else ""
            actions.append("promote %s %s from %s to %s%s" % (name, version, source, channel, note))
            entry = self._entry(record, channel, source, evidence or (test_record or {}).get("id"),
                                override if source != previous else None, test_record)
            result = {"changed": True, "actions": actions, "entry": entry, "name": name, "version": version,
                      "channel": channel}
            if check:
                return result
            if test_record is not None and new_record is not None:
                meta, raw = new_record
                folder = self.p("records", name, version)
                write_atomic(os.path.join(folder, "%s.report" % meta["report_sha256"]), raw)
                write_atomic(os.path.join(folder, "%s.json" % meta["report_sha256"]), canonical_json(meta))
            index = self.load_channel(channel)
            self._write_channel(channel, index["entries"] + [entry], index)
            self._event("promote", name=name, version=version, sha256=record["sha256"], channel=channel,
                        from_channel=source, evidence=entry["evidence"], override=entry["override"])
            return result

    def test_records(self, name, version):
        folder = self.p("records", name, version)
        if not os.path.isdir(folder):
            return []
        return [read_json(os.path.join(folder, f), "test record") for f in sorted(os.listdir(folder)) if f.endswith(".json")]

    def _passing_test_record(self, record, test_report):
        """Return (reference for the entry, (meta, raw) to store or None); raise when there is none."""
        label = "%s %s" % (record["name"], record["version"])
        if test_report:
            if isinstance(test_report, dict):  # given as a mapping (test_record): stored as canonical JSON
                source = "test_record %s" % (test_report.get("id") or test_report.get("report_id") or "(no id)")
                report, raw = parse_test_report(source, canonical_json(test_report))
            else:
                source = os.path.abspath(test_report)
                report, raw = parse_test_report(test_report)
            problems = []
            if report["name"] != record["name"] or report["version"] != record["version"]:
                problems.append("it is a report for %s %s" % (report["name"], report["version"]))
            if report.get("sha256") and report["sha256"] != record["sha256"]:
                problems.append("it tested sha256 %s, not %s" % (report["sha256"], record["sha256"]))
            if report["result"] != "passed":
                problems.append(failure_summary(report))
            if problems:
                raise RuleError("cannot promote %s to %s: test report %s is not a passing test record for it: %s" % (
                    label, self.production, source if isinstance(test_report, dict) else test_report, "; ".join(problems)))
            meta = dict(report, format=RECORD_FORMAT, report_format=report["format"], name=record["name"],
                        version=record["version"], sha256=record["sha256"], stored_at=self.now(),
                        stored_by=self.actor, source=source)
            ref = {"id": report["id"], "result": "passed", "record": "records/%s/%s/%s.json" % (
                record["name"], record["version"], report["report_sha256"]), "report_sha256": report["report_sha256"]}
            return ref, (meta, raw)
        for meta in reversed(self.test_records(record["name"], record["version"])):
            # failures too: earlier versions stored "passed" JSON reports whose summary counted failures
            if meta.get("result") == "passed" and not meta.get("failures") and meta.get("sha256") == record["sha256"]:
                return ({"id": meta["id"], "result": "passed", "record": "records/%s/%s/%s.json" % (
                    record["name"], record["version"], meta["report_sha256"]), "report_sha256": meta["report_sha256"]}, None)
        raise RuleError("cannot promote %s to %s: it has no passing test record; give test_report (the report of the "
                        "test stage) - nothing reaches %s without one" % (label, self.production, self.production))

    def _check_image_limit(self, record, channel):
        family = record.get("family") or record["name"]
        live = [e for e in self.load_channel(channel)["entries"]
                if e.get("kind") == "image" and (e.get("family") or e["name"]) == family]
        limit = int(self.config.get("max_live_images") or DEFAULT_MAX_LIVE_IMAGES)
        if len(live) >= limit:
            raise RuleError("cannot promote image %s %s to %s: %d image(s) of family %s are already live there (%s) and "
                            "at most %d may be; retire the image designated for removal first" % (
                                record["name"], record["version"], channel, len(live), family,
                                ", ".join(entry_label(e) for e in live), limit))

    def delete(self, name, channel, version=None, check=False):
        """Remove name (one version or all) from one channel; the bytes and other channels stay."""
        if channel not in self.channels:
            raise RepositoryError("unknown channel %r (channels of %s: %s)" % (channel, self.path, ", ".join(self.channels)))
        with self.lock() if not check else _null():
            index = self.load_channel(channel)
            gone = [e for e in index["entries"] if e["name"] == name and (version is None or e["version"] == version)]
            if gone:
                self.require_signer(channel)
            result = {"changed": bool(gone), "actions": ["delete %s from channel %s" % (entry_label(e), channel) for e in gone],
                      "entries": gone, "channel": channel}
            if check or not gone:
                return result
            self._write_channel(channel, [e for e in index["entries"] if e not in gone], index)
            for entry in gone:
                self._event("delete", name=entry["name"], version=entry["version"], sha256=entry["sha256"], channel=channel)
            return result

    def retirement_set(self, name, version=None):
        """The live records a retirement of name (all versions or one) takes: the package and its updates.

        Live means active, or retiring: marked by a retirement that was interrupted, which running the
        retirement again finishes. An update (a record whose ``updates`` reference ``name``) goes with every
        version of name; with one version, it goes only when its reference matches that version (``=``/``==``
        the same version, ``>=``/``<=``/``>``/``<`` compared in version order, no version: any) and no other
        active version of name still matches it: an update that still applies to a version that stays is kept.
        """
        _artifact.validate_name(name)
        every = self.records()
        if not any(r["name"] == name for r in every):
            raise RepositoryError("repository %s has no package named %s" % (self.path, name))
        if version is not None and not any(r["name"] == name and r["version"] == version for r in every):
            raise RepositoryError("repository %s has no %s %s (versions: %s)" % (
                self.path, name, version, ", ".join(r["version"] for r in every if r["name"] == name)))
        staying = [r["version"] for r in every
                   if r["name"] == name and r.get("state") == "active" and version is not None and r["version"] != version]
        chosen = []
        for record in every:
            if record.get("state") not in LIVE_STATES:
                continue
            if record["name"] == name and (version is None or record["version"] == version):
                chosen.append(record)
                continue
            for ref in record.get("updates") or []:
                ref_name, operator, ref_version = parse_update_ref(ref)
                if ref_name != name:
                    continue
                if version is None or (reference_matches(operator, ref_version, version)
                                       and not any(reference_matches(operator, ref_version, v) for v in staying)):
                    chosen.append(record)
                    break
        return chosen

    def retire(self, name, version=None, in_use=None, force=False, archive_dir=None, check=False):
        """Take the package (and every update of it) out of every channel and delete its bytes.

        With archive_dir, a verifiable archive is written (and read back) first; if that fails
        nothing is retired.

        Resumable: the records are marked ``retiring`` (with the archive they go to) before anything
        else changes, then come the archive, the channels, the blobs and last the ``retired`` tombstones.
        A run stopped at any point leaves records marked retiring, and running the same retirement
        again finishes it, keeping the archive the stopped run wrote when it is there and intact.
        """
        with self.lock() if not check else _null():
            targets = self.retirement_set(name, version)
            images = [r for r in targets if r.get("kind") == "image"]
            if images and in_use and not force:
                raise RuleError("refusing to retire %s: inventory shows it still in use on %d node(s) (%s); move them to "
                                "another image first, or force" % (
                                    ", ".join("%s %s" % (r["name"], r["version"]) for r in images), len(in_use),
                                    ", ".join(sorted(in_use)[:10]) + (" ..." if len(in_use) > 10 else "")))
            # targets an interrupted run already archived keep that archive; the others go to a new one
            kept = dict(((r["name"], r["version"]), r["archive"]) for r in targets if self._archived_by_interrupted_run(r))
            to_archive = [r for r in targets if (r["name"], r["version"]) not in kept] if archive_dir else []
            actions = []
            archive = None
            if to_archive:
                archive = os.path.join(archive_dir, "%s%s-%s%s" % (
                    name, "-%s" % version if version else "", self.now().replace("-", "").replace(":", ""), ARCHIVE_SUFFIX))
                for record in to_archive:  # before anything is written
                    blob = self.blob_path(record["sha256"])
                    if os.path.isfile(blob):
                        continue
                    if record.get("state") == "retiring":
                        raise IntegrityError(
                            "cannot archive %s %s: its retirement was interrupted after its blob was deleted, and no "
                            "intact archive of it is left (%s); finish the retirement without an archive (state=retired)" % (
                                record["name"], record["version"], record.get("archive") or "it had none"))
                    raise IntegrityError("cannot archive %s %s: its blob %s is missing" % (record["name"], record["version"], blob))
                actions.append("archive %s to %s" % (", ".join("%s %s" % (r["name"], r["version"]) for r in to_archive), archive))
            for path in sorted(set(kept.values())):
                actions.append("keep archive %s, written by the interrupted retirement of %s" % (path, ", ".join(
                    "%s %s" % key for key, where in sorted(kept.items()) if where == path)))
            plan = []
            for record in targets:
                held = self.channels_holding(record["name"], record["version"])
                for channel in held:
                    self.require_signer(channel)
                # a resumed run reports the channels the interrupted one took it out of as well
                held_before = [c for c in self.channels if c in held or c in (record.get("retiring_from") or [])]
                plan.append((record, held_before))
                actions.append("retire %s %s (from channels: %s)%s" % (
                    record["name"], record["version"], ", ".join(held_before) or "none",
                    " - finishing an interrupted retirement" if record.get("state") == "retiring" else ""))
            result = {"changed": bool(targets), "actions": actions,
                      "retired": [{"name": r["name"], "version": r["version"], "sha256": r["sha256"], "kind": r.get("kind"),
                                   "channels": held} for r, held in plan], "archive": None}
            if check or not targets:
                if archive:
                    result["archive"] = {"path": archive}
                elif kept:
                    result["archive"] = {"path": sorted(set(kept.values()))[0]}
                return result
            resumed = set((r["name"], r["version"]) for r in targets if r.get("state") == "retiring")
            archive_of = dict(kept)
            archive_of.update(((r["name"], r["version"]), archive) for r in to_archive)
            marked = self._mark_retiring(plan, archive_of)
            if archive:
                try:
                    result["archive"] = self._write_archive(archive, to_archive, name, version)
                except Exception:
                    # an archive that cannot be written retires nothing: take the marks back (a run killed here
                    # keeps them, and running it again writes the archive)
                    for record in targets:
                        write_atomic(self.catalogue_path(record["name"], record["version"]), canonical_json(record))
                    raise
            for path in sorted(set(kept.values())):
                kept_info = self._finish_archive(path)
                result["archive"] = result["archive"] or kept_info
            self._drop_from_channels(marked)
            self._delete_blobs(marked)
            for record in marked:
                tomb = dict(record, state="retired", retired_at=self.now(), retired_by=self.actor)
                for key in RETIRING_KEYS:
                    tomb.pop(key, None)
                write_atomic(self.catalogue_path(record["name"], record["version"]), canonical_json(tomb))
                self._event("archive_retire" if tomb.get("archive") else "retire", name=record["name"],
                            version=record["version"], sha256=record["sha256"], archive=tomb.get("archive"),
                            forced=bool(force and in_use), resumed=(record["name"], record["version"]) in resumed)
            return result

    def _archived_by_interrupted_run(self, record):
        """True when `record` is marked retiring by an interrupted run whose archive exists, verifies and holds it."""
        path = record.get("archive") if record.get("state") == "retiring" else None
        if not path or not os.path.isfile(path):
            return False
        try:
            manifest = verify_archive(path)["manifest"]
        except RepositoryError:
            return False
        return any(p["record"]["name"] == record["name"] and p["record"]["version"] == record["version"]
                   and p["record"]["sha256"] == record["sha256"] for p in manifest["packages"])

    def _mark_retiring(self, plan, archive_of):
        """Step 1: mark every target retiring (with its archive and the channels it leaves); return the marked records."""
        now = self.now()
        marked = []
        for record, held in plan:
            mark = dict(record, state="retiring", archive=archive_of.get((record["name"], record["version"])),
                        retiring_from=held)
            if record.get("state") != "retiring":
                mark.update(retiring_at=now, retiring_by=self.actor)
            if mark != record:
                write_atomic(self.catalogue_path(record["name"], record["version"]), canonical_json(mark))
            marked.append(mark)
        return marked

    def _finish_archive(self, path):
        """An archive an interrupted run wrote: put back its .sha256 if the run stopped before it; describe it."""
        digest = _artifact.sha256_file(path)
        if read_bytes(path + ".sha256") is None:
            write_atomic(path + ".sha256", ("%s  %s\n" % (digest, os.path.basename(path))).encode("utf-8"))
        return {"path": path, "sha256": digest, "size": os.path.getsize(path), "signed_by": archive_key_id(path)}

    def _drop_from_channels(self, records):
        """Step 3: take the records out of every channel that still lists them."""
        keys = set((r["name"], r["version"]) for r in records)
        for channel in self.channels:
            index = self.load_channel(channel)
            kept = [e for e in index["entries"] if (e["name"], e["version"]) not in keys]
            if len(kept) != len(index["entries"]):
                self._write_channel(channel, kept, index)

    def _delete_blobs(self, records):
        """Step 4: delete the records' blobs, unless another live record (or one still retiring) has the same bytes."""
        keys = set((r["name"], r["version"]) for r in records)
        live = set(r["sha256"] for r in self.records()
                   if r.get("state") in LIVE_STATES and (r["name"], r["version"]) not in keys)
        for digest in sorted(set(r["sha256"] for r in records) - live):
            self._delete_blob(digest)

    def _delete_blob(self, sha256):
        if os.path.exists(self.blob_path(sha256)):
            os.unlink(self.blob_path(sha256))

    # --- archives --------------------------------------------------------------------------

    def _write_archive(self, path, targets, name, version):
        packages = []
        members = []
        for record in targets:
            entries = {}
            for channel in self.channels:
                entry = self.find_entry(channel, record["name"], record["version"])
                if entry is not None:
                    entries[channel] = entry
            blob = self.blob_path(record["sha256"])
            if not os.path.isfile(blob):
                raise IntegrityError("cannot archive %s %s: its blob %s is missing" % (record["name"], record["version"], blob))
            members.append((blob_relpath(record["sha256"]), blob, record["sha256"]))
            # the record as it was live (a run resumed after an interruption finds it marked retiring)
            record = dict(dict((k, v) for k, v in record.items() if k not in RETIRING_KEYS + ("archive",)), state="active")
            records = []
            folder = self.p("records", record["name"], record["version"])
            if os.path.isdir(folder):
                # only the files promotion wrote (anything else there is no test record, and restore refuses other paths)
                for filename in sorted(f for f in os.listdir(folder) if RECORD_FILE_RE.match(f)):
                    full = os.path.join(folder, filename)
                    rel = "records/%s/%s/%s" % (record["name"], record["version"], filename)
                    digest = _artifact.sha256_file(full)
                    members.append((rel, full, digest))
                    records.append({"path": rel, "sha256": digest})
            packages.append({"record": record, "channels": entries, "records": records})
        manifest = {"format": ARCHIVE_FORMAT, "created_at": self.now(), "created_by": self.actor,
                    "repository": self.path, "scope": {"name": name, "version": version},
                    "packages": packages,
                    "blobs": [{"sha256": r["sha256"], "size": r["size"]} for r in targets]}
        manifest_bytes = canonical_json(manifest)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".archive-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                with tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    _add_bytes(tar, "ARCHIVE.json", manifest_bytes)
                    if self.signer is not None:
                        _add_bytes(tar, "ARCHIVE.json.sig", _signing.make_signature(manifest_bytes, self.signer))
                    for rel, full, digest in members:
                        _add_file(tar, rel, full, digest)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        archive_sha256 = _artifact.sha256_file(path)
        write_atomic(path + ".sha256", ("%s  %s\n" % (archive_sha256, os.path.basename(path))).encode("utf-8"))
        verify_archive(path)  # read it back before anything is retired
        return {"path": path, "sha256": archive_sha256, "size": os.path.getsize(path),
                "signed_by": self.signer.key_id if self.signer else None}

    def restore(self, archive, public_keys=None, check=False):
        """Bring an archived package back: blobs, catalogue records, test records, first channel.

        The archive is verified first: its digests, the paths it lists (only those archive-retire writes),
        and its signature against `public_keys` and the key of self.signer. A repository that signs its
        channel indexes restores only a signed archive, so it needs keys to trust. Restored versions
        re-enter the first channel only and go through the ordinary promotions again (their test records
        come back, so production is reachable without re-testing the same bytes).
        """
        trusted = list(public_keys or []) + ([self.signer.public_key] if self.signer is not None else [])
        if not trusted and self.signs_indexes():
            raise IntegrityError("refusing to restore %s into %s: the repository signs its channel indexes, so it restores "
                                 "only an archive signed by a key it trusts; give public_keys, or signing_key (the keys of "
                                 "its keyring are trusted)" % (archive, self.path))
        info = verify_archive(archive, trusted)
        manifest = info["manifest"]
        first = self.channels[0]
        with self.lock() if not check else _null():
            actions = []
            todo = []
            for package in manifest["packages"]:
                record = package["record"]
                current = self.load_record(record["name"], record["version"])
                if current is not None and current["sha256"] != record["sha256"]:
                    raise ConflictError("cannot restore %s %s from %s: the repository binds it to sha256 %s, the archive "
                                        "holds %s" % (record["name"], record["version"], archive, current["sha256"], record["sha256"]))
                if current is not None and current.get("state") == "active":
                    continue
                actions.append("restore %s %s into channel %s" % (record["name"], record["version"], first))
                todo.append(package)
            result = {"changed": bool(actions), "actions": actions, "archive": {"path": archive, "sha256": info["sha256"]},
                      "restored": [{"name": p["record"]["name"], "version": p["record"]["version"],
                                    "sha256": p["record"]["sha256"]} for p in todo]}
            if check or not todo:
                return result
            with tarfile.open(archive, mode="r:") as tar:
                for package in todo:
                    record = package["record"]
                    wanted = [blob_relpath(record["sha256"])] + [r["path"] for r in package["records"]]
                    for rel in wanted:
                        dest = self.p(*rel.split("/"))
                        if os.path.normpath(dest) != dest or not dest.startswith(self.path + os.sep):
                            raise IntegrityError("archive %s lists %s, which is outside repository %s" % (archive, rel, self.path))
                        if rel.startswith("blobs/") and os.path.isfile(dest) and _artifact.sha256_file(dest) == record["sha256"]:
                            continue
                        _extract_member(tar, tar.getmember(rel), dest, 0o444 if rel.startswith("blobs/") else 0o644)
                    restored = dict(record, state="active", restored_from=os.path.abspath(archive),
                                    restored_at=self.now(), restored_by=self.actor)
                    for key in ("retired_at", "retired_by", "archive") + RETIRING_KEYS:
                        restored.pop(key, None)
                    write_atomic(self.catalogue_path(record["name"], record["version"]), canonical_json(restored))
                    index = self.load_channel(first)
                    if self.find_entry(first, record["name"], record["version"]) is None:
                        entry = self._entry(restored, first, None, "restored from %s" % os.path.basename(archive), None)
                        self._write_channel(first, index["entries"] + [entry], index)
                    self._event("restore", name=record["name"], version=record["version"], sha256=record["sha256"],
                                archive=os.path.abspath(archive))
            return result

    # --- integrity -------------------------------------------------------------------------

    def verify(self, public_keys=None, blobs=True):
        """Check every channel (signature, entries bound in the catalogue, blobs present and intact)."""
        problems = []
        status = {}
        for channel in self.channels:
            index = self.load_channel(channel)
            info = {"serial": index.get("serial", 0), "entries": len(index["entries"]), "signed_by": None, "verified": None}
            key, fresh = self.signature_status(channel)
            info["signed_by"] = key
            interrupted = self.interrupted(channel)
            if interrupted:  # found without keys: the signature covers the staged index, not this one
                info["verified"] = False
                problems.append(interrupted)
            elif public_keys and read_bytes(self.channel_path(channel)) is not None and (key or self.must_sign(channel)):
                try:
                    self.verify_channel(channel, public_keys)
                    info["verified"] = True
                except (_signing.SigningError, IntegrityError) as exc:
                    info["verified"] = False
                    problems.append(str(exc))
            for entry in index["entries"]:
                record = self.load_record(entry["name"], entry["version"])
                if record is None or record["sha256"] != entry["sha256"]:
                    problems.append("channel %s lists %s with sha256 %s, but the catalogue binds it to %s" % (
                        channel, entry_label(entry), entry["sha256"], record and record["sha256"]))
                blob = self.blob_path(entry["sha256"])
                if not os.path.isfile(blob):
                    problems.append("blob %s of %s (channel %s) is missing" % (entry["sha256"], entry_label(entry), channel))
                elif blobs and _artifact.sha256_file(blob) != entry["sha256"]:
                    problems.append("blob %s of %s (channel %s) is corrupt: its content does not match its sha256" % (
                        entry["sha256"], entry_label(entry), channel))
            status[channel] = info
        return {"channels": status, "problems": sorted(set(problems)), "valid": not problems}


@contextlib.contextmanager
def _null():
    yield


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar, name, full, digest):
    info = tarfile.TarInfo(name)
    info.size = os.path.getsize(full)
    info.mode = 0o644
    info.mtime = 0
    with open(full, "rb") as handle:
        tar.addfile(info, handle)


def _extract_member(tar, member, dest, mode):
    """Stream one archive member to dest atomically (temp file, fsync, rename)."""
    source = tar.extractfile(member)
    if not os.path.isdir(os.path.dirname(dest)):
        os.makedirs(os.path.dirname(dest), 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".restore-", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(source, handle, _artifact.CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def archive_key_id(path):
    """The id of the key that signed an archive's manifest, as its signature says (not verified), or None."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.getmember("ARCHIVE.json.sig")
            return _signing.parse_signature(tar.extractfile(member).read(), path)["key_id"]
    except (KeyError, tarfile.TarError, OSError, _signing.SignatureError):
        return None


def archive_scope(path):
    """The {name, version} an archive was written for, read without verifying anything (None if unreadable)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.next()
            if member is None or member.name != "ARCHIVE.json":
                return None
            return json.loads(tar.extractfile(member).read().decode("utf-8")).get("scope")
    except (tarfile.TarError, OSError, ValueError):
        return None


def check_archive_manifest(path, manifest):
    """Refuse an archive manifest that lists anything archive-retire does not write: every package record has a
    valid name, version and sha256, and every test record path is records/<name>/<version>/<64 hex>.json|.report
    of that package. Restore builds its destinations from these, so nothing else may reach the filesystem."""
    packages = manifest.get("packages")
    if not isinstance(packages, list):
        raise IntegrityError("archive %s is not restorable: its manifest has no list of packages" % path)
    for package in packages:
        record = package.get("record") if isinstance(package, dict) else None
        if not isinstance(record, dict):
            raise IntegrityError("archive %s is not restorable: a package in its manifest has no record" % path)
        try:
            name = _artifact.validate_name(record.get("name"))
            version = _artifact.validate_version(record.get("version"))
        except _artifact.ArtifactError as exc:
            raise IntegrityError("archive %s is not restorable: a package record's %s" % (path, exc))
        if not isinstance(record.get("sha256"), str) or not HEX_RE.match(record["sha256"]):
            raise IntegrityError("archive %s is not restorable: the record of %s %s has sha256 %r, not 64 lower-case hex "
                                 "digits" % (path, name, version, record.get("sha256")))
        records = package.get("records")
        if not isinstance(records, list):
            raise IntegrityError("archive %s is not restorable: %s %s has no list of test records" % (path, name, version))
        prefix = "records/%s/%s/" % (name, version)
        for rec in records:
            rel = rec.get("path") if isinstance(rec, dict) else None
            if not (isinstance(rel, str) and rel.startswith(prefix) and RECORD_FILE_RE.match(rel[len(prefix):])):
                raise IntegrityError("archive %s is not restorable: it lists the test record path %r for %s %s; an archive "
                                     "holds test records only as %s<64 hex digits>.json or .report" % (
                                         path, rel, name, version, prefix))
            if not isinstance(rec.get("sha256"), str) or not HEX_RE.match(rec["sha256"]):
                raise IntegrityError("archive %s is not restorable: test record %s has sha256 %r, not 64 lower-case hex "
                                     "digits" % (path, rel, rec.get("sha256")))


def verify_archive(path, public_keys=None):
    """Verify an archive: its .sha256 sidecar, the manifest, every blob and record; the signature when
    public keys are given. Returns {"sha256", "manifest", "signed_by"}; raises IntegrityError."""
    if not os.path.isfile(path):
        raise RepositoryError("archive %s does not exist" % path)
    actual = _artifact.sha256_file(path)
    sidecar = read_bytes(path + ".sha256")
    if sidecar is not None:
        expected = sidecar.decode("utf-8", "replace").split()[0] if sidecar.strip() else ""
        if expected != actual:
            raise IntegrityError("archive %s is corrupt: its sha256 is %s but %s.sha256 says %s" % (path, actual, path, expected))
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = dict((m.name, m) for m in tar.getmembers())
            if "ARCHIVE.json" not in members:
                raise IntegrityError("%s is not an esd.osp archive (no ARCHIVE.json)" % path)
            manifest_bytes = tar.extractfile(members["ARCHIVE.json"]).read()
            manifest = json.loads(manifest_bytes.decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
                raise IntegrityError("%s has an unknown archive format %r" % (
                    path, manifest.get("format") if isinstance(manifest, dict) else None))
            signed_by = None
            if public_keys:
                sig = tar.extractfile(members["ARCHIVE.json.sig"]).read() if "ARCHIVE.json.sig" in members else None
                try:
                    signed_by = _signing.verify_detached(manifest_bytes, sig, public_keys, "archive manifest of %s" % path)
                except _signing.SignatureError as exc:
                    raise IntegrityError(str(exc))
            check_archive_manifest(path, manifest)
            expected = {}
            for package in manifest["packages"]:
                expected[blob_relpath(package["record"]["sha256"])] = package["record"]["sha256"]
                for rec in package["records"]:
                    expected[rec["path"]] = rec["sha256"]
            for rel, digest in sorted(expected.items()):
                member = members.get(rel)
                if member is None or not member.isfile():
                    raise IntegrityError("archive %s lacks %s" % (path, rel))
                hasher = hashlib.sha256()
                source = tar.extractfile(member)
                for chunk in iter(lambda: source.read(_artifact.CHUNK), b""):
                    hasher.update(chunk)
                if hasher.hexdigest() != digest:
                    raise IntegrityError("archive %s is corrupt: %s has sha256 %s, expected %s" % (
                        path, rel, hasher.hexdigest(), digest))
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise IntegrityError("archive %s is unreadable or corrupt: %s" % (path, exc))
    return {"sha256": actual, "manifest": manifest, "signed_by": signed_by}
