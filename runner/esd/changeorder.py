"""Change orders: the versioned YAML document, its validation and its typed form.

``load(path)`` parses and validates a change order and returns a :class:`ChangeOrder`, or raises
:class:`esd.errors.ValidationError` carrying *every* problem found, each naming the field path,
what was expected and what was found. Relative paths in a change order are resolved against the
directory of the change-order file, so a change order means the same thing from any working dir.

The document (``apiVersion: esd.osp/v1``, ``kind: ChangeOrder``)::

    metadata:  id, title, requester, requested_completion, description, attachments[]
    spec:
      type:          one of esd.catalogue.REQUEST_TYPES
      software:      name, version, source, artifact, sha256, builder, updates      (ESD types)
      media:         name, packages[], artifact, sha256, builder                     (media types)
      image:         family, version, source, base, artifact, sha256, builder, retire, force_retire
      build:         scan, scan_database, unit_test
      targets:       inventory, hosts, limit, build, test, depots, repository
      rollout:       beta, beta_hosts (count or "N%"), go_no_go, min_success_percent, soak_seconds,
                     health_check{playbook, urls[], timeout_seconds}, waves (patterns, or sizes like
                     serial: counts / "N%"), wave_size, failure_budget_percent (one, or one per wave)
      approvals:     required[], approvers{gate: [user]}
      backout:       plan, strategy, rehearsed_in, redistribute_attempts, retry_delay_seconds, on_halt
      notifications: events[], email[], webhook, smtp{host, port, sender}
      problems:      webhook (problem records are also kept in the ledger)
      window:        start, end  (or a list of windows: a stopped rollout resumes in the next one)
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import os
import re
from typing import Any

import yaml

from esd import catalogue, identity
from esd.errors import ValidationError

API_VERSION = "esd.osp/v1"
KIND = "ChangeOrder"

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,99}$")          # same rule as the collection's packages
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
IDENTITY_RE = identity.IDENTITY_RE
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
URL_RE = re.compile(r"^(https?|file)://\S+$")

ATTACHMENT_KINDS = ("license", "version_notes", "test_plan", "documentation", "other")
BACKOUT_STRATEGIES = ("rollback_update", "remove", "reinstall_previous", "restore_image", "manual")
NOTIFY_EVENTS = ("registered", "deployment_scheduled", "uat_ready", "gate_pending", "gate_decided", "go_no_go",
                 "failed", "completed", "cancelled")
GO_NO_GO_MODES = ("automatic", "manual")
ON_HALT = ("rollback", "keep")
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a change order."""

    path: str
    expected: str
    found: str

    def __str__(self):
        return "%s: expected %s, found %s" % (self.path, self.expected, self.found)

    def as_dict(self):
        return {"path": self.path, "expected": self.expected, "found": self.found, "message": str(self)}


@dataclasses.dataclass(frozen=True)
class Attachment:
    name: str
    kind: str
    path: str | None = None
    url: str | None = None
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class Metadata:
    id: str
    title: str
    requester: str
    requested_completion: datetime.date
    description: str = ""
    attachments: tuple[Attachment, ...] = ()


@dataclasses.dataclass(frozen=True)
class Targets:
    inventory: str
    hosts: str | None = None
    limit: str | None = None
    build: str = "build_site"
    test: str = "test_site"
    depots: str = "depots"
    repository: str = "repository"


@dataclasses.dataclass(frozen=True)
class Rollout:
    beta: str | None = "beta"            # None: no beta group (explicitly disabled)
    beta_explicit: bool = False
    beta_hosts: int | str | None = None      # a count, or a percentage of the targets ("10%")
    go_no_go: str = "automatic"
    min_success_percent: int = 100
    soak_seconds: int = 0
    waves: tuple[str, ...] = ()              # host patterns, one per wave
    wave_sizes: tuple = ()                   # or sizes like the play keyword serial: counts and "N%"
    wave_size: int | None = None
    failure_budget_percent: int | tuple = 0  # one budget for every wave, or one per wave (the last repeats)
    health_check: dict = dataclasses.field(default_factory=dict)   # playbook, urls, timeout_seconds


@dataclasses.dataclass(frozen=True)
class Approvals:
    required: tuple[str, ...] = ()
    approvers: dict = dataclasses.field(default_factory=dict)   # gate id -> tuple of identities


@dataclasses.dataclass(frozen=True)
class Backout:
    plan: str = ""
    strategy: str | None = None
    rehearsed_in: str | None = None
    redistribute_attempts: int = 2           # backout attempts for endpoints where nothing changed
    retry_delay_seconds: int = 30
    on_halt: str = "rollback"                # a halted rollout: roll back every endpoint it changed, or keep them


@dataclasses.dataclass(frozen=True)
class Notifications:
    events: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    webhook: str | None = None
    smtp: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Window:
    start: datetime.datetime
    end: datetime.datetime

    def contains(self, moment):
        return self.start <= moment < self.end


@dataclasses.dataclass(frozen=True)
class Spec:
    type: str
    targets: Targets
    software: dict = dataclasses.field(default_factory=dict)
    media: dict = dataclasses.field(default_factory=dict)
    image: dict = dataclasses.field(default_factory=dict)
    build: dict = dataclasses.field(default_factory=dict)
    rollout: Rollout = dataclasses.field(default_factory=Rollout)
    approvals: Approvals = dataclasses.field(default_factory=Approvals)
    backout: Backout = dataclasses.field(default_factory=Backout)
    notifications: Notifications = dataclasses.field(default_factory=Notifications)
    window: Window | None = None             # the first maintenance window (all of them: windows)
    windows: tuple[Window, ...] = ()
    problems: dict = dataclasses.field(default_factory=dict)

    def field(self, dotted, default=None):
        """A value by dotted path under spec (``software.name``), or ``default`` when unset."""
        head, _, rest = dotted.partition(".")
        value = getattr(self, head, None)
        for part in rest.split(".") if rest else ():
            if isinstance(value, dict):
                value = value.get(part)
            else:
                value = getattr(value, part, None)
            if value is None:
                break
        return default if value in (None, "") else value


@dataclasses.dataclass(frozen=True)
class ChangeOrder:
    metadata: Metadata
    spec: Spec
    path: str            # the file it was loaded from
    digest: str          # sha256 of the file's bytes: what was approved is what runs
    raw: dict

    @property
    def id(self):
        return self.metadata.id

    @property
    def request_type(self):
        return catalogue.get(self.spec.type)


# --- describing what was found ---------------------------------------------------------------------

_MISSING = object()


class _Said(str):
    """A description of what was found, used as is (not quoted like a user's string)."""


def describe(value):
    if value is _MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean %s" % ("true" if value else "false")
    if isinstance(value, (int, float)):
        return "number %s" % value
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return '"%s"' % shown if value else "an empty string"
    if isinstance(value, datetime.datetime):
        return "timestamp %s" % value.isoformat()
    if isinstance(value, datetime.date):
        return "date %s" % value.isoformat()
    if isinstance(value, list):
        return "a list of %d item%s" % (len(value), "" if len(value) == 1 else "s")
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _one_of(choices):
    return "one of " + ", ".join(choices)


def _suggest(value, choices):
    if isinstance(value, str):
        close = difflib.get_close_matches(value, list(choices), n=1)
        if close:
            return " (did you mean %s?)" % close[0]
    return ""


# --- YAML loading that refuses duplicate keys ------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of silently keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            loader.duplicates.append((key, key_node.start_mark.line + 1))
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text, source="change order"):
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line %d column %d" % (mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError([Problem("(document)", "valid YAML", "a syntax error%s: %s" % (where, problem))],
                              source=source) from None
    finally:
        loader.dispose()
    problems = [Problem("(document)", "each key once per mapping", 'key "%s" repeated at line %d' % (key, line))
                for key, line in loader.duplicates]
    return data, problems


# --- the validator ------------------------------------------------------------------------------------

class _Checker:
    """Walks the raw document, collects problems, and builds the typed change order."""

    def __init__(self, base_dir, check_files=True):
        self.base_dir = base_dir
        self.check_files = check_files
        self.problems = []

    def problem(self, path, expected, found):
        """Record a problem; ``found`` is the raw value, or a _Said text that already describes it."""
        self.problems.append(Problem(path, expected, str(found) if isinstance(found, _Said) else describe(found)))

    # generic shapes

    def mapping(self, data, path, known, required=()):
        if data is _MISSING or data is None:
            if required:
                self.problem(path, "a mapping with %s" % ", ".join(required), _MISSING if data is _MISSING else None)
            return None
        if not isinstance(data, dict):
            self.problem(path, "a mapping", data)
            return None
        for key in data:
            if key not in known:
                self.problem("%s.%s" % (path, key) if path else str(key),
                             "a known field (%s)%s" % (", ".join(sorted(known)), _suggest(key, known)),
                             _Said("an unknown field"))
        for key in required:
            if key not in data:
                self.problem("%s.%s" % (path, key) if path else key, self._expectation(key), _MISSING)
        return data

    _EXPECT = {}

    def _expectation(self, key):
        return self._EXPECT.get(key, "a value")

    def string(self, data, path, pattern=None, expected="a non-empty string", required=False):
        value = data.get(path.rsplit(".", 1)[-1], _MISSING) if isinstance(data, dict) else _MISSING
        return self.string_value(value, path, pattern, expected, required)

    def string_value(self, value, path, pattern=None, expected="a non-empty string", required=False):
        if value is _MISSING or value is None:
            if required:
                self.problem(path, expected, value)
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and pattern is VERSION_RE:
            self.problem(path, "%s (quote versions in YAML: \"%s\")" % (expected, value), value)
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path, expected, value)
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(path, expected, value)
            return None
        return value

    def boolean(self, data, key, path, default):
        value = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "true or false", value)
            return default
        return value

    def integer(self, data, key, path, low, high=None, default=None):
        value = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if value is _MISSING or value is None:
            return default
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
        if not ok:
            expected = "an integer from %d to %d" % (low, high) if high is not None else "an integer >= %d" % low
            self.problem(path, expected, value)
            return default
        return value

    def choice(self, data, key, path, choices, default=None, required=False):
        value = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if value is _MISSING or value is None:
            if required:
                self.problem(path, _one_of(choices), value)
            return default
        if value not in choices:
            self.problem(path, _one_of(choices) + _suggest(value, choices), value)
            return default
        return value

    def string_list(self, data, key, path, pattern=None, expected_item="a non-empty string", choices=None):
        value = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if value is _MISSING or value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, "a list of %s" % ("request gate ids" if choices else "strings"), value)
            return ()
        items = []
        for index, item in enumerate(value):
            item_path = "%s[%d]" % (path, index)
            if choices is not None:
                if item not in choices:
                    self.problem(item_path, _one_of(choices) + _suggest(item, choices), item)
                    continue
                items.append(item)
            else:
                checked = self.string_value(item, item_path, pattern, expected_item, required=True)
                if checked is not None:
                    items.append(checked)
        return tuple(items)

    def path_value(self, value, path, kind):
        """Resolve a relative path against the change order's directory; check it exists."""
        resolved = value if os.path.isabs(value) else os.path.normpath(os.path.join(self.base_dir, value))
        if self.check_files:
            if kind == "dir" and not os.path.isdir(resolved):
                self.problem(path, "an existing directory (relative paths start at the change order's directory)",
                             _Said("no such directory: %s" % resolved))
            elif kind == "file" and not os.path.isfile(resolved):
                self.problem(path, "an existing file (relative paths start at the change order's directory)",
                             _Said("no such file: %s" % resolved))
            elif kind == "any" and not os.path.exists(resolved):
                self.problem(path, "an existing file or directory (relative paths start at the change order's "
                             "directory)", _Said("no such file or directory: %s" % resolved))
        return resolved

    def location(self, value, path, kind="file"):
        """A path or an http(s)/file URL."""
        if value is None:
            return None
        if URL_RE.match(value):
            return value
        if "://" in value:
            self.problem(path, "a path or an http://, https:// or file:// URL", value)
            return None
        return self.path_value(value, path, kind)


def _date(value):
    if isinstance(value, datetime.datetime):
        return None
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _timestamp(value):
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        return None
    return moment


TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec")
METADATA_FIELDS = ("id", "title", "requester", "requested_completion", "description", "attachments")
SPEC_FIELDS = ("type", "software", "media", "image", "build", "targets", "rollout", "approvals", "backout",
               "notifications", "problems", "window")
SOFTWARE_FIELDS = ("name", "version", "source", "artifact", "sha256", "builder", "updates")
MEDIA_FIELDS = ("name", "packages", "artifact", "sha256", "builder")
IMAGE_FIELDS = ("family", "version", "source", "base", "artifact", "sha256", "builder", "retire", "force_retire")
BUILD_FIELDS = ("scan", "scan_database", "unit_test")
TARGET_FIELDS = ("inventory", "hosts", "limit", "build", "test", "depots", "repository")
ROLLOUT_FIELDS = ("beta", "beta_hosts", "go_no_go", "min_success_percent", "soak_seconds", "health_check", "waves",
                  "wave_size", "failure_budget_percent")
HEALTH_CHECK_FIELDS = ("playbook", "urls", "timeout_seconds")
PROBLEM_FIELDS = ("webhook",)
APPROVAL_FIELDS = ("required", "approvers")
BACKOUT_FIELDS = ("plan", "strategy", "rehearsed_in", "redistribute_attempts", "retry_delay_seconds", "on_halt")
NOTIFICATION_FIELDS = ("events", "email", "webhook", "smtp")
SMTP_FIELDS = ("host", "port", "sender")
WINDOW_FIELDS = ("start", "end")
ATTACHMENT_FIELDS = ("name", "kind", "path", "url", "sha256")

_FIELD_RULES = {
    # dotted path under spec -> (pattern, expectation, kind of path or None)
    "software.name": (NAME_RE, "a package name (lower-case letters, digits and . _ + -)", None),
    "software.version": (VERSION_RE, "a version string (letters, digits and . + ~ _ -)", None),
    "software.updates": (VERSION_RE, "the version this update applies to", None),
    "software.source": (None, "a package source directory containing package.yml", "source"),
    "software.artifact": (None, "a built artifact: a path or an http(s)/file URL", "location"),
    "software.sha256": (SHA256_RE, "64 lower-case hex digits (the artifact's sha256)", None),
    "software.builder": (IDENTITY_RE, "the identity that built the artifact", None),
    "media.name": (NAME_RE, "a media name (lower-case letters, digits and . _ + -)", None),
    "media.artifact": (None, "a built media image: a path or an http(s)/file URL", "location"),
    "media.sha256": (SHA256_RE, "64 lower-case hex digits (the media's sha256)", None),
    "media.builder": (IDENTITY_RE, "the identity that built the media", None),
    "image.family": (NAME_RE, "an image family name (lower-case letters, digits and . _ + -)", None),
    "image.version": (VERSION_RE, "an image version string", None),
    "image.source": (None, "an image spec directory", "dir"),
    "image.base": (VERSION_RE, "the image version this image is derived from", None),
    "image.artifact": (None, "a built image: a path or an http(s)/file URL", "location"),
    "image.sha256": (SHA256_RE, "64 lower-case hex digits (the image's sha256)", None),
    "image.builder": (IDENTITY_RE, "the identity that built the image", None),
    "image.retire": (VERSION_RE, "the image version designated for removal", None),
    "targets.hosts": (None, "an inventory host pattern (group, host or pattern)", None),
    "backout.plan": (None, "a description of how the change is backed out", None),
    "backout.rehearsed_in": (ID_RE, "the id of the change order whose test stage rehearsed this backout", None),
}


def _section_fields(section):
    return {"software": SOFTWARE_FIELDS, "media": MEDIA_FIELDS, "image": IMAGE_FIELDS}[section]


def validate_document(data, base_dir, check_files=True):
    """Every problem of a parsed change-order document, and the typed spec when there are none.

    Returns ``(problems, metadata, spec)``; ``metadata``/``spec`` are None when problems were found.
    """
    c = _Checker(base_dir, check_files)
    if not isinstance(data, dict):
        c.problem("(document)", "a mapping with apiVersion, kind, metadata and spec",
                  _Said("an empty document") if data is None else data)
        return c.problems, None, None
    c.mapping(data, "", TOP_FIELDS)
    api = data.get("apiVersion", _MISSING)
    if api != API_VERSION:
        c.problem("apiVersion", '"%s"' % API_VERSION, api)
    kind = data.get("kind", _MISSING)
    if kind != KIND:
        c.problem("kind", '"%s"' % KIND, kind)

    raw_metadata = data.get("metadata", _MISSING)
    metadata = _check_metadata(c, raw_metadata)
    # Checks that need the requester run whatever else is wrong, so every problem is reported at once.
    requester = raw_metadata.get("requester") if isinstance(raw_metadata, dict) else None
    if not isinstance(requester, str) or not IDENTITY_RE.match(requester):
        requester = None
    spec = _check_spec(c, data.get("spec", _MISSING), requester)
    if c.problems:
        return c.problems, None, None
    return [], metadata, spec


def _check_metadata(c, raw):
    """The typed metadata, or None when the section has a problem (reported in ``c``)."""
    problems_before = len(c.problems)
    section = c.mapping(raw, "metadata", METADATA_FIELDS, required=())
    if section is None:
        if raw is _MISSING or raw is None:
            c.problem("metadata", "a mapping with id, title, requester and requested_completion", raw)
        return None
    ident = c.string_value(section.get("id", _MISSING), "metadata.id", ID_RE,
                           "a change-order id (letters, digits, . _ -; at most 64, starting with a letter or digit)",
                           required=True)
    title = c.string_value(section.get("title", _MISSING), "metadata.title", None, "a non-empty title", required=True)
    requester = c.string_value(section.get("requester", _MISSING), "metadata.requester", IDENTITY_RE,
                               "the requester's identity (letters, digits, . _ @ + -)", required=True)
    raw_date = section.get("requested_completion", _MISSING)
    completion = _date(raw_date) if raw_date is not _MISSING else None
    if completion is None:
        c.problem("metadata.requested_completion", "a date (YYYY-MM-DD)", raw_date)
    description = section.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        c.problem("metadata.description", "a string", description)
    attachments = []
    raw_attachments = section.get("attachments", [])
    if raw_attachments is None:
        raw_attachments = []
    if not isinstance(raw_attachments, list):
        c.problem("metadata.attachments", "a list of attachments (name, kind, path or url)", raw_attachments)
        raw_attachments = []
    for index, item in enumerate(raw_attachments):
        path = "metadata.attachments[%d]" % index
        entry = c.mapping(item, path, ATTACHMENT_FIELDS)
        if entry is None:
            if item is None:
                c.problem(path, "a mapping with name, kind and path or url", item)
            continue
        name = c.string_value(entry.get("name", _MISSING), path + ".name", None, "a non-empty name", required=True)
        kind = c.choice(entry, "kind", path + ".kind", ATTACHMENT_KINDS, default="other")
        location_path = url = None
        if "path" in entry and "url" in entry:
            c.problem(path, "either path or url", _Said("both"))
        elif "path" in entry:
            raw_path = c.string_value(entry["path"], path + ".path", None, "a file path", required=True)
            if raw_path:
                location_path = c.path_value(raw_path, path + ".path", "file")
        elif "url" in entry:
            url = c.string_value(entry["url"], path + ".url", URL_RE, "an http(s) or file URL", required=True)
        else:
            c.problem(path + ".path", "a path or a url for the attachment", _MISSING)
        sha = c.string_value(entry.get("sha256", _MISSING), path + ".sha256", SHA256_RE,
                             "64 lower-case hex digits", required=False)
        if name:
            attachments.append(Attachment(name, kind, location_path, url, sha))
    if len(c.problems) > problems_before:
        return None
    return Metadata(ident, title, requester, completion, description or "", tuple(attachments))


def _check_spec(c, raw, requester):
    section = c.mapping(raw, "spec", SPEC_FIELDS)
    if section is None:
        if raw is _MISSING or raw is None:
            c.problem("spec", "a mapping with type, targets and the inputs of the request type", raw)
        return None
    raw_type = section.get("type", _MISSING)
    request_type = None
    if raw_type is _MISSING or raw_type is None:
        c.problem("spec.type", "a request type (see `esd catalogue`)", raw_type)
    elif raw_type not in catalogue.REQUEST_TYPES:
        c.problem("spec.type", "a request type (%s)%s" % (", ".join(sorted(catalogue.REQUEST_TYPES)),
                                                          _suggest(raw_type, catalogue.REQUEST_TYPES)), raw_type)
    else:
        request_type = catalogue.get(raw_type)

    artifacts = {}
    for name in ("software", "media", "image"):
        artifacts[name] = _check_artifact_section(c, section, name)

    build = c.mapping(section.get("build", _MISSING), "spec.build", BUILD_FIELDS) or {}
    build_values = {}
    for key in ("scan", "unit_test"):
        if key in build:
            build_values[key] = c.boolean(build, key, "spec.build.%s" % key, True)
    if "scan_database" in build:
        database = c.string_value(build["scan_database"], "spec.build.scan_database", None,
                                  "a directory of ClamAV signature databases", required=True)
        if database:
            build_values["scan_database"] = c.path_value(database, "spec.build.scan_database", "dir")

    targets = _check_targets(c, section.get("targets", _MISSING))
    rollout = _check_rollout(c, section.get("rollout", _MISSING), request_type)
    approvals = _check_approvals(c, section.get("approvals", _MISSING), request_type, requester)
    backout = _check_backout(c, section.get("backout", _MISSING))
    notifications = _check_notifications(c, section.get("notifications", _MISSING))
    problems = _check_problems(c, section.get("problems", _MISSING))
    windows = _check_windows(c, section.get("window", _MISSING))

    if request_type is not None:
        present = {"software": artifacts["software"], "media": artifacts["media"], "image": artifacts["image"],
                   "targets": {"hosts": targets.hosts} if targets else {},
                   "backout": {"plan": backout.plan, "rehearsed_in": backout.rehearsed_in} if backout else {}}
        for required in request_type.requires:
            head, _, key = required.partition(".")
            values = present.get(head)
            if values is None:
                continue       # the section itself was already reported
            raw_section = section.get(head)
            if raw_section is not None and not isinstance(raw_section, dict):
                continue       # the section has the wrong shape, already reported
            raw_value = raw_section.get(key, _MISSING) if isinstance(raw_section, dict) else _MISSING
            if raw_value is _MISSING or raw_value is None:
                rule = _FIELD_RULES.get(required)
                expected = rule[1] if rule else "a value"
                c.problem("spec.%s" % required, "%s (required by type %s)" % (expected, request_type.id),
                          raw_value)
        if rollout is not None and "rollout" in section and not request_type.uses_rollout:
            c.problem("spec.rollout", "no rollout settings (type %s does not deploy in waves)" % request_type.id,
                      _Said("a mapping"))
    if c.problems:
        return None
    return Spec(type=raw_type, targets=targets, software=artifacts["software"] or {},
                media=artifacts["media"] or {}, image=artifacts["image"] or {}, build=build_values,
                rollout=rollout, approvals=approvals, backout=backout, notifications=notifications,
                window=windows[0] if windows else None, windows=windows, problems=problems)


def _check_artifact_section(c, spec_section, name):
    raw = spec_section.get(name, _MISSING)
    section = c.mapping(raw, "spec.%s" % name, _section_fields(name))
    if section is None:
        return {} if raw is _MISSING or raw is None else None
    values = {}
    for key, raw_value in section.items():
        dotted = "%s.%s" % (name, key)
        rule = _FIELD_RULES.get(dotted)
        path = "spec.%s" % dotted
        if key == "packages":
            values[key] = _check_media_packages(c, raw_value, path)
            continue
        if key == "force_retire":
            values[key] = c.boolean(section, key, path, False)
            continue
        if rule is None:
            continue
        pattern, expected, kind = rule
        value = c.string_value(raw_value, path, pattern, expected, required=True)
        if value is None:
            continue
        if kind == "source":
            resolved = c.path_value(value, path, "dir")
            if c.check_files and os.path.isdir(resolved) and not os.path.isfile(os.path.join(resolved, "package.yml")):
                c.problem(path, "a package source directory containing package.yml",
                          _Said("no package.yml in %s" % resolved))
            value = resolved
        elif kind == "dir":
            value = c.path_value(value, path, "dir")
        elif kind == "location":
            value = c.location(value, path)
        values[key] = value
    return values


def _check_media_packages(c, raw, path):
    if not isinstance(raw, list) or not raw:
        c.problem(path, "a non-empty list of packages (name and version)", raw if raw is not None else _MISSING)
        return ()
    packages = []
    for index, item in enumerate(raw):
        item_path = "%s[%d]" % (path, index)
        entry = c.mapping(item, item_path, ("name", "version", "sha256"), required=("name", "version"))
        if entry is None:
            continue
        name = c.string_value(entry.get("name", _MISSING), item_path + ".name", NAME_RE, "a package name")
        version = c.string_value(entry.get("version", _MISSING), item_path + ".version", VERSION_RE,
                                 "a version string")
        c.string_value(entry.get("sha256", _MISSING), item_path + ".sha256", SHA256_RE, "64 lower-case hex digits")
        if name and version:
            packages.append({"name": name, "version": version, "sha256": entry.get("sha256")})
    return tuple(packages)


def _check_targets(c, raw):
    section = c.mapping(raw, "spec.targets", TARGET_FIELDS)
    if section is None:
        if raw is not _MISSING and raw is not None:
            return None
        section = {}
    inventory = c.string_value(section.get("inventory", _MISSING), "spec.targets.inventory", None,
                               "an inventory file or directory")
    inventory = c.path_value(inventory, "spec.targets.inventory", "any") if inventory else None
    values = {}
    for key in ("hosts", "limit", "build", "test", "depots", "repository"):
        value = c.string_value(section.get(key, _MISSING), "spec.targets.%s" % key, None,
                               "an inventory host pattern")
        if value is not None:
            values[key] = value
    return Targets(inventory=inventory, **values)


def _check_rollout(c, raw, request_type):
    section = c.mapping(raw, "spec.rollout", ROLLOUT_FIELDS)
    if section is None:
        return Rollout() if raw is _MISSING or raw is None else None
    beta = section.get("beta", _MISSING)
    beta_explicit = beta is not _MISSING
    if beta is _MISSING or beta is None:
        beta_value = "beta"
    elif beta is False:
        beta_value = None
    elif isinstance(beta, str) and beta.strip():
        beta_value = beta
    else:
        c.problem("spec.rollout.beta", "an inventory group or pattern for the beta group, or false", beta)
        beta_value = None
    beta_hosts = _size(c, section.get("beta_hosts", _MISSING), "spec.rollout.beta_hosts")
    if beta_hosts is not None and beta_explicit and beta_value is not None:
        c.problem("spec.rollout", "either beta or beta_hosts", _Said("both"))
    waves, wave_sizes = _check_waves(c, section.get("waves", _MISSING))
    wave_size = c.integer(section, "wave_size", "spec.rollout.wave_size", 1)
    if (waves or wave_sizes) and wave_size is not None:
        c.problem("spec.rollout", "either waves or wave_size", _Said("both"))
    raw_budget = section.get("failure_budget_percent", _MISSING)
    if isinstance(raw_budget, list):
        budget = tuple(c.integer({"v": item}, "v", "spec.rollout.failure_budget_percent[%d]" % index, 0, 100,
                                 default=0) for index, item in enumerate(raw_budget))
        if not budget:
            c.problem("spec.rollout.failure_budget_percent", "a percentage, or one per wave", _Said("an empty list"))
            budget = 0
    else:
        budget = c.integer(section, "failure_budget_percent", "spec.rollout.failure_budget_percent", 0, 100, default=0)
    return Rollout(
        beta=None if beta_hosts is not None else beta_value,
        beta_explicit=beta_explicit or beta_hosts is not None,
        beta_hosts=beta_hosts,
        go_no_go=c.choice(section, "go_no_go", "spec.rollout.go_no_go", GO_NO_GO_MODES, default="automatic"),
        min_success_percent=c.integer(section, "min_success_percent", "spec.rollout.min_success_percent", 0, 100,
                                      default=100),
        soak_seconds=c.integer(section, "soak_seconds", "spec.rollout.soak_seconds", 0, default=0),
        waves=waves,
        wave_sizes=wave_sizes,
        wave_size=wave_size,
        failure_budget_percent=budget,
        health_check=_check_health_check(c, section.get("health_check", _MISSING)),
    )


def _size(c, value, path):
    """A host count (>= 1) or a percentage string ("10%"), or None when absent."""
    if value is _MISSING or value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        match = _PERCENT_RE.match(value)
        if match and 0 < float(match.group(1)) <= 100:
            return "%s%%" % match.group(1)
    c.problem(path, "a host count (1 or more) or a percentage of the hosts such as \"10%\"", value)
    return None


def _check_waves(c, raw):
    """(patterns, sizes): waves are host patterns, or sizes like the play keyword serial - not both."""
    if raw is _MISSING or raw is None:
        return (), ()
    if not isinstance(raw, list) or not raw:
        c.problem("spec.rollout.waves", "a list of host patterns, or of wave sizes (counts or \"N%\")",
                  raw if raw != [] else _Said("an empty list"))
        return (), ()
    sized = [isinstance(item, int) and not isinstance(item, bool) or
             (isinstance(item, str) and bool(_PERCENT_RE.match(item))) for item in raw]
    if all(sized):
        sizes = tuple(_size(c, item, "spec.rollout.waves[%d]" % index) for index, item in enumerate(raw))
        return (), tuple(size for size in sizes if size is not None)
    if any(sized):
        c.problem("spec.rollout.waves", "either host patterns or wave sizes, not both", _Said("a mix"))
        return (), ()
    return c.string_list({"waves": raw}, "waves", "spec.rollout.waves", expected_item="an inventory host pattern"), ()


def _check_health_check(c, raw):
    section = c.mapping(raw, "spec.rollout.health_check", HEALTH_CHECK_FIELDS)
    if not section:
        return {}
    values = {}
    playbook = c.string_value(section.get("playbook", _MISSING), "spec.rollout.health_check.playbook", None,
                              "a playbook that checks the beta hosts")
    if playbook:
        values["playbook"] = c.path_value(playbook, "spec.rollout.health_check.playbook", "file")
    urls = c.string_list(section, "urls", "spec.rollout.health_check.urls", re.compile(r"^https?://\S+$"),
                         "an http:// or https:// URL ({host} is replaced by each beta host's name)")
    if urls:
        values["urls"] = list(urls)
    values["timeout_seconds"] = c.integer(section, "timeout_seconds", "spec.rollout.health_check.timeout_seconds",
                                          1, 600, default=10)
    if not values.get("playbook") and not values.get("urls"):
        c.problem("spec.rollout.health_check", "a playbook or urls to check", _Said("neither"))
    return values


def _check_problems(c, raw):
    section = c.mapping(raw, "spec.problems", PROBLEM_FIELDS)
    if not section:
        return {}
    webhook = c.string_value(section.get("webhook", _MISSING), "spec.problems.webhook", re.compile(r"^https?://\S+$"),
                             "an http:// or https:// URL that receives problem records")
    return {"webhook": webhook} if webhook else {}


def _check_approvals(c, raw, request_type, requester):
    section = c.mapping(raw, "spec.approvals", APPROVAL_FIELDS)
    if section is None:
        return Approvals() if raw is _MISSING or raw is None else None
    gate_ids = request_type.gate_ids if request_type else tuple(catalogue.GATES)
    optional = catalogue.optional_gates(request_type) if request_type else tuple(catalogue.GATES)
    required = c.string_list(section, "required", "spec.approvals.required",
                             choices=optional if request_type else tuple(catalogue.GATES))
    approvers = {}
    raw_approvers = section.get("approvers", _MISSING)
    if raw_approvers is not _MISSING and raw_approvers is not None:
        if not isinstance(raw_approvers, dict):
            c.problem("spec.approvals.approvers", "a mapping of gate id to a list of identities", raw_approvers)
        else:
            for gate_id, people in raw_approvers.items():
                path = "spec.approvals.approvers.%s" % gate_id
                if gate_id not in gate_ids:
                    c.problem(path, "a gate of this request type (%s)%s" % (", ".join(gate_ids),
                                                                            _suggest(gate_id, gate_ids)),
                              _Said("unknown gate \"%s\"" % gate_id))
                    continue
                names = c.string_list(raw_approvers, gate_id, path, IDENTITY_RE, "an identity")
                if isinstance(people, list) and not people:
                    c.problem(path, "at least one identity", _Said("an empty list"))
                gate = catalogue.GATES[gate_id]
                if requester is not None and "requester" in gate.excludes and identity.among(requester, names):
                    listed = next(name for name in names if identity.same(name, requester))
                    c.problem(path, "approvers other than the requester %s (separation of duties)"
                              % requester, _Said("requester %s in the list" % listed))
                approvers[gate_id] = names
    return Approvals(required=required, approvers=approvers)


def _check_backout(c, raw):
    section = c.mapping(raw, "spec.backout", BACKOUT_FIELDS)
    if section is None:
        return Backout() if raw is _MISSING or raw is None else None
    plan = c.string_value(section.get("plan", _MISSING), "spec.backout.plan", None,
                          "a description of how the change is backed out")
    strategy = c.choice(section, "strategy", "spec.backout.strategy", BACKOUT_STRATEGIES)
    rehearsed = c.string_value(section.get("rehearsed_in", _MISSING), "spec.backout.rehearsed_in", ID_RE,
                               "the id of the change order whose test stage rehearsed this backout")
    return Backout(plan or "", strategy, rehearsed,
                   redistribute_attempts=c.integer(section, "redistribute_attempts",
                                                   "spec.backout.redistribute_attempts", 0, 10, default=2),
                   retry_delay_seconds=c.integer(section, "retry_delay_seconds", "spec.backout.retry_delay_seconds",
                                                 0, 3600, default=30),
                   on_halt=c.choice(section, "on_halt", "spec.backout.on_halt", ON_HALT, default="rollback"))


def _check_notifications(c, raw):
    section = c.mapping(raw, "spec.notifications", NOTIFICATION_FIELDS)
    if section is None:
        return Notifications() if raw is _MISSING or raw is None else None
    events = c.string_list(section, "events", "spec.notifications.events", choices=NOTIFY_EVENTS)
    emails = c.string_list(section, "email", "spec.notifications.email", EMAIL_RE, "an e-mail address")
    webhook = c.string_value(section.get("webhook", _MISSING), "spec.notifications.webhook",
                             re.compile(r"^https?://\S+$"), "an http:// or https:// URL")
    smtp = {}
    raw_smtp = section.get("smtp", _MISSING)
    smtp_section = c.mapping(raw_smtp, "spec.notifications.smtp", SMTP_FIELDS)
    if smtp_section is not None:
        smtp["host"] = c.string_value(smtp_section.get("host", _MISSING), "spec.notifications.smtp.host", None,
                                      "an SMTP server host name", required=True)
        smtp["port"] = c.integer(smtp_section, "port", "spec.notifications.smtp.port", 1, 65535, default=25)
        smtp["sender"] = c.string_value(smtp_section.get("sender", _MISSING), "spec.notifications.smtp.sender",
                                        EMAIL_RE, "an e-mail address") or "esd@localhost"
    if emails and not smtp:
        c.problem("spec.notifications.smtp", "an SMTP server (host, port, sender) to send the e-mail through",
                  _MISSING)
    return Notifications(events=events, email=emails, webhook=webhook, smtp=smtp)


def _check_windows(c, raw):
    """One window (a mapping) or several (a list, in time order): a stopped rollout resumes in the next one."""
    if isinstance(raw, list):
        if not raw:
            c.problem("spec.window", "a window (start, end) or a list of windows", _Said("an empty list"))
            return ()
        windows = []
        for index, item in enumerate(raw):
            window = _check_window(c, item if item is not None else _MISSING, "spec.window[%d]" % index)
            if window is not None:
                if windows and window.start < windows[-1].end:
                    c.problem("spec.window[%d].start" % index, "a time after the end of the window before it (%s)"
                              % windows[-1].end.isoformat(), _Said("timestamp %s" % window.start.isoformat()))
                windows.append(window)
        return tuple(windows)
    window = _check_window(c, raw)
    return (window,) if window is not None else ()


def _check_window(c, raw, where="spec.window"):
    section = c.mapping(raw, where, WINDOW_FIELDS, required=("start", "end") if raw not in (_MISSING, None)
                        and isinstance(raw, dict) else ())
    if section is None:
        return None
    moments = {}
    for key in WINDOW_FIELDS:
        if key not in section:
            continue
        value = section[key]
        moment = _timestamp(value)
        if moment is None:
            c.problem("%s.%s" % (where, key), "an ISO 8601 timestamp with a time zone (2026-03-01T22:00:00+01:00)",
                      value)
        moments[key] = moment
    if moments.get("start") and moments.get("end") and moments["end"] <= moments["start"]:
        c.problem(where + ".end", "a time after %s.start (%s)" % (where, moments["start"].isoformat()),
                  _Said("timestamp %s" % moments["end"].isoformat()))
    if not (moments.get("start") and moments.get("end")):
        return None
    return Window(moments["start"], moments["end"])


_Checker._EXPECT = {
    "start": "an ISO 8601 timestamp with a time zone (2026-03-01T22:00:00+01:00)",
    "end": "an ISO 8601 timestamp with a time zone (2026-03-01T22:00:00+01:00)",
    "name": "a name", "version": "a version string",
}


def load(path, check_files=True):
    """Parse and validate the change order at ``path``; raise ValidationError with every problem."""
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        raise ValidationError([Problem("(file)", "a readable change-order file", "%s" % exc.strerror)],
                              source=path) from None
    return loads(content, path, check_files=check_files)


def loads(content, path, check_files=True):
    """Validate change-order bytes as if read from ``path`` (relative paths resolve from its directory)."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError([Problem("(document)", "UTF-8 text", "bytes that are not UTF-8")], source=path) from None
    data, problems = parse_yaml(text, source=path)
    more, metadata, spec = validate_document(data, os.path.dirname(path), check_files=check_files)
    problems.extend(more)
    if problems:
        raise ValidationError(problems, source=path)
    return ChangeOrder(metadata=metadata, spec=spec, path=path, digest=hashlib.sha256(content).hexdigest(), raw=data)
