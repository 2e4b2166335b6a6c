# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Package artifacts: the spec, the reproducible archive, its manifest and safe extraction.

This file is private to the collection (leading underscore) and runs on build hosts and on
targets, so it uses the Python standard library only.

An artifact is a gzip-compressed tar archive whose first member is ``MANIFEST.json``, followed by
``hooks/<hook>`` and ``payload/...`` members in sorted order, every member with a fixed mtime,
owner 0:0 and normalised modes. Building the same inputs twice gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
import shutil
import tempfile
import zlib

from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = "esd.osp/package/v1"
ARTIFACT_SUFFIX = ".esdpkg"
HOOKS = ("pre_install", "post_install", "pre_activate", "post_activate", "pre_remove", "health_check")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,99}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$")
SPEC_KEYS = ("name", "version", "description", "payload", "install_dir", "hooks", "requires", "updates", "kind")
CHUNK = 1024 * 1024


class ArtifactError(Exception):
    """A package spec, artifact or archive member is not acceptable."""


def artifact_filename(name, version):
    return "%s-%s%s" % (name, version, ARTIFACT_SUFFIX)


def validate_name(name, field="name"):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ArtifactError(
            "%s must be lower-case letters, digits and . _ + - (starting with a letter or digit), got %r" % (field, name))
    return name


def validate_version(version, field="version"):
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ArtifactError("%s must be letters, digits and . + ~ _ - (starting with a letter or digit), got %r" % (field, version))
    return version


# Directories that hold other software: uninstalling a package removes its install_dir when it is left empty,
# so a package must have a directory of its own (/opt/hello-agent, /usr/local/payroll), never one of these.
SYSTEM_DIRS = frozenset((
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt", "/opt", "/opt/esd",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/include", "/usr/lib",
    "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/etc", "/usr/local/lib",
    "/usr/local/sbin", "/usr/local/share", "/usr/sbin", "/usr/share", "/usr/src", "/var", "/var/cache",
    "/var/cache/esd", "/var/lib", "/var/lib/esd", "/var/lib/esd/software", "/var/log", "/var/opt", "/var/tmp",
))


def validate_install_dir(install_dir, name):
    """Refuse an install_dir that is not an absolute, normalised directory of the package's own.

    Checked when a package is built, when a target reads an artifact's manifest and for the software
    module's install_dir: `..` could leave the install root, and a shared system directory could be
    emptied by an uninstall.
    """
    where = "install_dir of %s" % name
    if not isinstance(install_dir, str) or not install_dir.startswith("/"):
        raise ArtifactError("%s must be an absolute path, got %r" % (where, install_dir))
    if ".." in install_dir.split("/"):
        raise ArtifactError("%s must not contain '..', got %r" % (where, install_dir))
    normal = "/" + posixpath.normpath(install_dir).lstrip("/")
    if install_dir != normal:
        raise ArtifactError("%s must be a normalised path (%s), got %r" % (where, normal, install_dir))
    if normal in SYSTEM_DIRS:
        raise ArtifactError("%s must be a directory of its own, not the system directory %s (for example %s)" % (
            where, normal, posixpath.join("/opt/esd" if normal == "/" else normal, name)))
    return normal


def _str_list(value, field):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ArtifactError("%s must be a list of strings, got %r" % (field, value))
    return list(value)


def validate_spec(raw, src_dir):
    """Check a parsed package.yml and return it normalised; every problem is reported at once."""
    if not isinstance(raw, dict):
        raise ArtifactError("package.yml in %s must be a mapping, got %s" % (src_dir, type(raw).__name__))
    problems = []
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        problems.append("unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(SPEC_KEYS)))
    spec = {}
    for key, check in (("name", validate_name), ("version", validate_version)):
        if key not in raw:
            problems.append("%s is required" % key)
            continue
        try:
            spec[key] = check(str(raw[key]) if isinstance(raw[key], (int, float)) else raw[key])
        except ArtifactError as exc:
            problems.append(str(exc))
    spec["description"] = str(raw.get("description") or "")
    spec["kind"] = str(raw.get("kind") or "package")
    payload = raw.get("payload", "payload")
    if not isinstance(payload, str) or payload.startswith("/") or ".." in payload.split("/"):
        problems.append("payload must be a directory relative to the source, got %r" % (payload,))
    elif not os.path.isdir(os.path.join(src_dir, payload)):
        problems.append("payload directory %s does not exist" % os.path.join(src_dir, payload))
    spec["payload"] = payload
    install_dir = raw.get("install_dir") or "/opt/esd/%s" % spec.get("name", "package")
    try:
        validate_install_dir(install_dir, spec.get("name") or raw.get("name") or "the package")
    except ArtifactError as exc:
        problems.append(str(exc))
    spec["install_dir"] = install_dir
    hooks = raw.get("hooks") or {}
    spec["hooks"] = {}
    if not isinstance(hooks, dict):
        problems.append("hooks must be a mapping of hook name to script path, got %r" % (hooks,))
        hooks = {}
    for hook, rel in sorted(hooks.items()):
        if hook not in HOOKS:
            problems.append("unknown hook %r (allowed: %s)" % (hook, ", ".join(HOOKS)))
        elif not isinstance(rel, str) or rel.startswith("/") or ".." in rel.split("/"):
            problems.append("hook %s must be a path relative to the source, got %r" % (hook, rel))
        elif not os.path.isfile(os.path.join(src_dir, rel)):
            problems.append("hook %s script %s does not exist" % (hook, os.path.join(src_dir, rel)))
        else:
            spec["hooks"][hook] = rel
    for key in ("requires", "updates"):
        try:
            spec[key] = _str_list(raw.get(key), key)
        except ArtifactError as exc:
            problems.append(str(exc))
    if problems:
        raise ArtifactError("Invalid package.yml in %s: %s" % (src_dir, "; ".join(problems)))
    return spec


def _normalised_mode(mode):
    if stat.S_ISDIR(mode):
        return 0o755
    return 0o755 if mode & 0o111 else 0o644


def _walk_sorted(top):
    """Yield (relative path, absolute path, lstat) for everything below top, sorted, links not followed."""
    for current, dirs, files in os.walk(top):
        dirs.sort()
        rel_dir = os.path.relpath(current, top)
        for name in sorted(dirs + files):
            full = os.path.join(current, name)
            rel = name if rel_dir == "." else posixpath.join(rel_dir.replace(os.sep, "/"), name)
            yield rel, full, os.lstat(full)


def collect_files(spec, src_dir):
    """Return the archive entries (sorted) for a validated spec: list of dicts with path/type/mode/...

    Refuses what a target would refuse: special files and links that leave the payload.
    """
    entries = []
    payload_dir = os.path.join(src_dir, spec["payload"])
    for rel, full, st in _walk_sorted(payload_dir):
        path = "payload/" + rel
        if rel == ".esd" or rel.startswith(".esd/"):
            raise ArtifactError("payload may not contain the reserved directory .esd (%s)" % full)
        if stat.S_ISLNK(st.st_mode):
            entries.append({"path": path, "type": "link", "target": os.readlink(full), "full": full})
        elif stat.S_ISDIR(st.st_mode):
            entries.append({"path": path, "type": "dir", "mode": "0755", "full": full})
        elif stat.S_ISREG(st.st_mode):
            entries.append({"path": path, "type": "file", "mode": "%04o" % _normalised_mode(st.st_mode),
                            "size": st.st_size, "sha256": sha256_file(full), "full": full})
        else:
            raise ArtifactError("payload file %s is not a regular file, directory or symlink" % full)
    links = dict((entry["path"], entry["target"]) for entry in entries if entry["type"] == "link")
    for path, target in sorted(links.items()):
        check_link_target(path, target, "payload", links)
    for hook, rel in sorted(spec["hooks"].items()):
        full = os.path.join(src_dir, rel)
        entries.append({"path": "hooks/" + hook, "type": "file", "mode": "0755",
                        "size": os.path.getsize(full), "sha256": sha256_file(full), "full": full})
    entries.sort(key=lambda item: item["path"])
    return entries


def source_digest(src_dir):
    """A digest of the whole source tree (paths, kinds, modes, contents, link targets)."""
    digest = hashlib.sha256()
    for rel, full, st in _walk_sorted(src_dir):
        if stat.S_ISLNK(st.st_mode):
            line = "L %s %s" % (rel, os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            line = "D %s" % rel
        elif stat.S_ISREG(st.st_mode):
            line = "F %s %04o %s" % (rel, _normalised_mode(st.st_mode), sha256_file(full))
        else:
            line = "S %s" % rel
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def default_build_time(src_dir):
    """SOURCE_DATE_EPOCH when set, else the newest mtime in the source (so rebuilds are identical)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return int(epoch)
        except ValueError:
            raise ArtifactError("SOURCE_DATE_EPOCH must be an integer number of seconds, got %r" % epoch)
    newest = 0
    for dummy, dummy2, st in _walk_sorted(src_dir):
        newest = max(newest, int(st.st_mtime))
    return newest


def scan_evidence(scan):
    """The part of an esd.osp.scan result that goes into the manifest.

    Only what describes the scan itself is kept: the engine's program version (without the signature
    database version and date that ``clamscan --version`` appends, which describe its default database,
    not necessarily the one used), whether it was clean, what it found (paths relative to the scanned
    tree) and the digest of the signature database. The scanned path and the database path are dropped:
    they depend on how the source was spelled, and the artifact's bytes must not.
    """
    if not isinstance(scan, dict):
        raise ArtifactError("scan_result must be a mapping (the scan result of esd.osp.scan), got %r" % (scan,))
    scanned = str(scan.get("path") or "").rstrip("/")
    infected = []
    for item in scan.get("infected") or []:
        item = dict(item) if isinstance(item, dict) else {"path": str(item)}
        path = str(item.get("path") or "")
        if scanned and path.startswith(scanned + "/"):
            item["path"] = path[len(scanned) + 1:]
        infected.append(item)
    engine = str(scan.get("engine") or "").split("/", 1)[0].strip() or None
    clean = scan.get("clean")
    return {
        "engine": engine,
        "clean": bool(clean) if clean is not None else not infected,
        "infected": infected,
        "database_sha256": scan.get("database_sha256"),
    }


def build_manifest(spec, entries, builder, src_digest, build_time, scan=None, tool="esd.osp.package"):
    files = []
    for entry in entries:
        item = dict((k, v) for k, v in entry.items() if k != "full")
        files.append(item)
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": spec.get("kind", "package"),
        "name": spec["name"],
        "version": spec["version"],
        "description": spec["description"],
        "install_dir": spec["install_dir"],
        "hooks": sorted(spec["hooks"]),
        "requires": spec["requires"],
        "updates": spec["updates"],
        "files": files,
        "build": {"builder": builder, "source_digest": src_digest, "time": build_time, "tool": tool},
    }
    if scan is not None:
        manifest["scan"] = scan_evidence(scan)
    return manifest


def _tarinfo(name, kind, mode, mtime, size=0, target=None):
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = mode
    if kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "link":
        info.type = tarfile.SYMTYPE
        info.linkname = target
    else:
        info.size = size
    return info


def write_archive(fileobj, manifest, entries):
    """Write the reproducible archive for manifest + entries into a binary file object."""
    mtime = int(manifest["build"]["time"])
    manifest_bytes = canonical_json(manifest)
    with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_tarinfo(MANIFEST_NAME, "file", 0o644, mtime, len(manifest_bytes)), io.BytesIO(manifest_bytes))
            for entry in entries:
                if entry["type"] == "file":
                    with open(entry["full"], "rb") as handle:
                        data = handle.read()
                    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                        raise ArtifactError("%s changed while the package was being built" % entry["full"])
                    tar.addfile(_tarinfo(entry["path"], "file", int(entry["mode"], 8), mtime, len(data)), io.BytesIO(data))
                elif entry["type"] == "dir":
                    tar.addfile(_tarinfo(entry["path"], "dir", 0o755, mtime))
                else:
                    tar.addfile(_tarinfo(entry["path"], "link", 0o777, mtime, target=entry["target"]))


def canonical_json(data):
    return (json.dumps(data, sort_keys=True, indent=1, separators=(",", ": ")) + "\n").encode("utf-8")


class _DigestSink(object):
    """A write-only file object that keeps only the sha256 and the size of what is written to it."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        pass


def prepare_build(spec, src_dir, builder, build_time=None, scan=None):
    """The archive entries and the manifest of the artifact for a validated spec (nothing is written)."""
    entries = collect_files(spec, src_dir)
    if build_time is None:
        build_time = default_build_time(src_dir)
    return entries, build_manifest(spec, entries, builder, source_digest(src_dir), build_time, scan)


def measure_archive(manifest, entries):
    """(sha256, size) of the archive write_archive would produce, computed in memory (check mode)."""
    sink = _DigestSink()
    write_archive(sink, manifest, entries)
    return sink.digest.hexdigest(), sink.size


def build_to_temp(spec, src_dir, dest_dir, builder, build_time=None, scan=None):
    """Build the artifact into a temporary file inside dest_dir; return (temp path, manifest, sha256, size).

    The file is mode 0644 (mkstemp's 0600 would make the artifact unreadable to the depot's web server
    and to anyone who copies it on).
    """
    entries, manifest = prepare_build(spec, src_dir, builder, build_time, scan)
    fd, tmp_path = tempfile.mkstemp(prefix=".%s-" % spec["name"], suffix=".part", dir=dest_dir)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            write_archive(handle, manifest, entries)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp_path)
        raise
    return tmp_path, manifest, sha256_file(tmp_path), os.path.getsize(tmp_path)


def read_manifest(path):
    """Read and check the embedded manifest of an artifact (the first archive member)."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                raise ArtifactError("%s is not an esd.osp artifact: its first member is not %s" % (path, MANIFEST_NAME))
            manifest = json.loads(tar.extractfile(first).read().decode("utf-8"))
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise ArtifactError("%s is not a readable esd.osp artifact: %s" % (path, exc))
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError("%s has an unknown manifest format %r (expected %s)" % (
            path, manifest.get("format") if isinstance(manifest, dict) else None, MANIFEST_FORMAT))
    for key in ("name", "version", "files", "install_dir"):
        if key not in manifest:
            raise ArtifactError("%s manifest lacks %r" % (path, key))
    try:
        validate_install_dir(manifest["install_dir"], manifest["name"])
    except ArtifactError as exc:
        raise ArtifactError("%s manifest: %s" % (path, exc))
    return manifest


# --- Safe extraction -------------------------------------------------------------------------

def _normalise_member_path(name):
    if name.startswith("/") or name.startswith("\\"):
        raise ArtifactError("member %r has an absolute path" % name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArtifactError("member %r contains '..'" % name)
    if not parts:
        raise ArtifactError("member %r has an empty path" % name)
    return "/".join(parts)


# How many links one link's resolution may follow before it counts as a loop (the kernel's limit).
MAX_LINK_HOPS = 40


def check_link_target(path, target, top, links=None):
    """Refuse a symlink at `path` (relative, inside `top`) whose target leaves `top`.

    The target is resolved the way the kernel will resolve it once unpacked: component by component,
    following the other links of the same tree (`links`, {path: target}) wherever a component is one.
    A step above `top` leaves the tree even when a later component comes back into it (the archive's
    own root is not a directory on the target: ``payload/`` *is* the release directory). Returns the
    resolved path.
    """
    links = links or {}
    followed = []

    def leaves(why=None):
        if why is None and followed:
            why = "through the link%s %s" % ("s" if len(followed) > 1 else "", ", ".join(followed))
        return ArtifactError("link %s -> %s leaves the %s tree%s" % (path, target, top, " (%s)" % why if why else ""))

    def walk(stack, text):
        if not text or text.startswith("/"):
            if not followed:
                raise ArtifactError("link %s points to the absolute path %r" % (path, text))
            raise leaves("the link %s points to the absolute path %r" % (followed[-1], text))
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) <= 1:
                    raise leaves()
                stack = stack[:-1]
                continue
            here = "/".join(stack + [part])
            if here in links:
                followed.append(here)
                if len(followed) > MAX_LINK_HOPS:
                    raise ArtifactError("link %s -> %s does not resolve: more than %d links in a row (a loop?)" % (
                        path, target, MAX_LINK_HOPS))
                stack = walk(stack, links[here])
            else:
                stack = stack + [part]
        return stack

    parent = path.split("/")[:-1]
    if not parent or parent[0] != top:
        raise ArtifactError("link %s is not inside the %s tree" % (path, top))
    return "/".join(walk(parent, target))


def check_members(members, manifest):
    """Validate every archive member before anything is written; return {path: member}."""
    seen = {}
    for member in members:
        path = _normalise_member_path(member.name)
        if path in seen:
            raise ArtifactError("member %s appears twice" % path)
        if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise ArtifactError("member %s is a device or fifo" % path)
        if member.islnk():
            raise ArtifactError("member %s is a hard link (to %s); hard links are not allowed" % (path, member.linkname))
        if not (member.issym() or member.isfile() or member.isdir()):
            raise ArtifactError("member %s has an unsupported type" % path)
        if path != MANIFEST_NAME and not (path.startswith("payload/") or path.startswith("hooks/")) and path not in ("payload", "hooks"):
            raise ArtifactError("member %s is outside payload/ and hooks/" % path)
        if path in ("payload", "hooks") and not member.isdir():
            raise ArtifactError("member %s must be a directory" % path)
        if path == "payload/.esd" or path.startswith("payload/.esd/"):
            raise ArtifactError("member %s is in the reserved directory .esd" % path)
        seen[path] = member
    links = dict((path, member.linkname) for path, member in seen.items() if member.issym())
    for path in sorted(seen):
        # a member beneath a link would be written wherever the link points, outside the checks below
        parts = path.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if ancestor in links:
                raise ArtifactError("member %s is beneath the symlink %s; nothing may be unpacked through a link" % (
                    path, ancestor))
    for path in sorted(links):
        check_link_target(path, links[path], path.split("/", 1)[0], links)
    expected = dict((item["path"], item) for item in manifest["files"])
    extra = sorted(set(seen) - set(expected) - {MANIFEST_NAME, "payload", "hooks"})
    missing = sorted(set(expected) - set(seen))
    if extra:
        raise ArtifactError("archive holds member(s) not in its manifest: %s" % ", ".join(extra[:5]))
    if missing:
        raise ArtifactError("archive lacks member(s) listed in its manifest: %s" % ", ".join(missing[:5]))
    for path, item in expected.items():
        member = seen[path]
        kind = "link" if member.issym() else "dir" if member.isdir() else "file"
        if kind != item.get("type"):
            raise ArtifactError("member %s is a %s but the manifest says %s" % (path, kind, item.get("type")))
        if kind == "link" and member.linkname != item.get("target"):
            raise ArtifactError("link %s points to %s but the manifest says %s" % (path, member.linkname, item.get("target")))
    return seen


def _inside(path, top):
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _check_real_parent(dest, staging_real, member_path, checked):
    """Belt and braces to check_members: the directory `dest` is written into really is inside the staging dir."""
    parent = os.path.dirname(dest)
    if parent in checked:
        return
    real = os.path.realpath(parent)
    if not _inside(real, staging_real):
        raise ArtifactError("member %s would be written to %s, outside the release" % (member_path, real))
    checked.add(parent)


def _check_tree_stays_inside(staging):
    """Belt and braces to check_members: nothing in the unpacked tree resolves outside it."""
    staging_real = os.path.realpath(staging)
    for current, dirs, files in os.walk(staging):
        # a regular file resolves to its directory's real path plus its name: checking every directory walked
        # and every link covers every path, without a realpath per file
        for full in [current] + [os.path.join(current, name) for name in dirs + files
                                 if os.path.islink(os.path.join(current, name))]:
            real = os.path.realpath(full)
            if not _inside(real, staging_real):
                raise ArtifactError("%s resolves to %s, outside the release" % (
                    os.path.relpath(full, staging), real))


def extract_release(artifact_path, release_dir, manifest=None):
    """Extract an artifact safely into a new directory `release_dir` (must not exist).

    Layout: payload/* goes to release_dir/*, hooks/* to release_dir/.esd/hooks/*, the manifest to
    release_dir/.esd/manifest.json. Every member is checked before anything is written (links are
    resolved against each other, and nothing is unpacked beneath a link); file contents are verified
    against the manifest while being written; every directory written into, and finally every path of
    the unpacked tree, is checked with realpath to be inside it. On any error the partial directory is
    removed and nothing is left behind.
    """
    if manifest is None:
        manifest = read_manifest(artifact_path)
    parent = os.path.dirname(release_dir)
    if os.path.lexists(release_dir):
        raise ArtifactError("%s already exists" % release_dir)
    try:
        tar = tarfile.open(artifact_path, mode="r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise ArtifactError("cannot open %s: %s" % (artifact_path, exc))
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArtifactError("%s is truncated or corrupt: %s" % (artifact_path, exc))
        checked = check_members(members, manifest)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
        try:
            staging_real = os.path.realpath(staging)
            safe_parents = set()
            os.makedirs(os.path.join(staging, ".esd", "hooks"))
            expected = dict((item["path"], item) for item in manifest["files"])
            for path in sorted(checked):
                member = checked[path]
                if path in (MANIFEST_NAME, "payload", "hooks"):
                    continue
                top, rest = path.split("/", 1)
                dest = os.path.join(staging, rest) if top == "payload" else os.path.join(staging, ".esd", "hooks", rest)
                _check_real_parent(dest, staging_real, path, safe_parents)
                if member.isdir():
                    os.makedirs(dest, 0o755, exist_ok=True)
                    continue
                dest_parent = os.path.dirname(dest)
                if not os.path.isdir(dest_parent):
                    os.makedirs(dest_parent, 0o755)
                if member.issym():
                    os.symlink(member.linkname, dest)
                    continue
                _write_verified(tar, member, dest, expected[path])
            with open(os.path.join(staging, ".esd", "manifest.json"), "wb") as handle:
                handle.write(canonical_json(manifest))
            _check_tree_stays_inside(staging)
            os.chmod(staging, 0o755)
            os.rename(staging, release_dir)
        except BaseException:
            remove_tree(staging)
            raise
    return manifest


def _write_verified(tar, member, dest, item):
    source = tar.extractfile(member)
    digest = hashlib.sha256()
    mode = int(item.get("mode", "0644"), 8) & 0o755
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as handle:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            digest.update(chunk)
            handle.write(chunk)
    os.chmod(dest, mode)
    if digest.hexdigest() != item.get("sha256"):
        raise ArtifactError("member %s does not match its manifest checksum (got %s, expected %s)" % (
            member.name, digest.hexdigest(), item.get("sha256")))


def remove_tree(path):
    """Remove a file, link or directory tree (links are never followed); a missing path is fine."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def build_package(src_dir, dest_dir, spec_loader, builder, force=False, scan=None, check_mode=False):
    """Build the artifact for the package in src_dir into dest_dir.

    Returns a dict with changed/name/version/sha256/size/path/manifest. An existing identical
    artifact is left alone (changed False); an existing different artifact for the same name and
    version is refused unless force, because a name+version must never have two contents.
    """
    spec_path = os.path.join(src_dir, "package.yml")
    if not os.path.isfile(spec_path):
        raise ArtifactError("No package.yml in %s" % src_dir)
    with open(spec_path, "rb") as handle:
        try:
            raw = spec_loader(handle.read().decode("utf-8"))
        except Exception as exc:  # the YAML parser's errors have no common base we can import here
            raise ArtifactError("package.yml in %s is not valid YAML: %s" % (src_dir, exc))
    spec = validate_spec(raw, src_dir)
    final = os.path.join(dest_dir, artifact_filename(spec["name"], spec["version"]))
    if check_mode:
        # nothing is written anywhere, dest included (it may not even exist yet): the digest is computed in memory
        tmp_path = None
        entries, manifest = prepare_build(spec, src_dir, builder, scan=scan)
        digest, size = measure_archive(manifest, entries)
    else:
        if not os.path.isdir(dest_dir):
            os.makedirs(dest_dir, 0o755)
        tmp_path, manifest, digest, size = build_to_temp(spec, src_dir, dest_dir, builder, scan=scan)
    result = {"name": spec["name"], "version": spec["version"], "sha256": digest, "size": size, "path": final,
              "manifest": manifest, "changed": True}
    try:
        if os.path.exists(final):
            existing = sha256_file(final)
            result["previous_sha256"] = existing
            if existing == digest:
                result["changed"] = False
                return result
            if not force:
                raise ArtifactError(
                    "%s already exists with sha256 %s, but building %s %s now gives %s: a name and version must "
                    "never have two contents. Raise the version, or set force=true to replace it." % (
                        final, existing, spec["name"], spec["version"], digest))
        if tmp_path is not None:
            os.rename(tmp_path, final)
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.unlink(tmp_path)
    return result
