# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OS images: the build spec, the root filesystem, finalisation, the reproducible archive and its manifest.

An image is built in two module calls around the customisation by Ansible roles:

1. ``prepare_rootfs`` makes the root filesystem: debootstrap (with a local cache of .debs and of whole
   base root filesystems), or, for an image update, the parent image's archive unpacked and patched with
   apt (upgrade, added and removed packages). It leaves the tree in *build mode*: /proc mounted, a
   ``policy-rc.d`` that stops package scripts from starting services, the build host's resolv.conf.
2. Roles run against the tree (community.general.chroot).
3. ``pack_image`` leaves build mode, finalises the tree (package caches, apt lists, logs, machine-id,
   SSH host keys, resolv.conf, hostname), writes the image's manifest, SBOM and test plan *into* it
   (``/etc/esd/image.json``, ``/usr/share/esd/image/``), and packs it.

Artifact files in ``dest`` (``<family>-<version>`` is the stem)::

    <stem>.rootfs.tar.gz     the root filesystem: gzip'ed POSIX tar, `podman import`-able
    <stem>.manifest.json     the embedded manifest plus the archive's sha256 and size
    <stem>.sbom.cdx.json     CycloneDX 1.5 SBOM of the installed packages (also embedded)
    <stem>.sbom-diff.json    image updates only: what changed against the parent image
    <stem>.sha256            sha256sum(1) lines for the files above

The archive is reproducible: members sorted, mtimes clamped to the image's source date (the files from
Debian packages keep their own, older mtimes), owners kept as numbers (a root filesystem needs its real
owners), xattrs (file capabilities) kept as PAX records, gzip header without a timestamp. Packing the
same tree twice gives the same bytes. The source date is SOURCE_DATE_EPOCH when given, else the newest
``Date:`` of the mirror's Release files the tree was built from, so it never depends on when the build ran.
/dev, /proc, /sys, /run and /tmp are packed as empty directories.

Standard library only: this runs on build hosts (as root: debootstrap, chroot and mount need it).
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile

from ansible.module_utils.urls import open_url

from ansible_collections.esd.osp.plugins.module_utils import _sbom
from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

MANIFEST_FORMAT = "esd.osp/image/v1"
TOOL = "esd.osp.image"
TOOL_VERSION = "0.1.0"
ARCHIVE_SUFFIX = ".rootfs.tar.gz"
MANIFEST_SUFFIX = ".manifest.json"
SBOM_SUFFIX = ".sbom.cdx.json"
DIFF_SUFFIX = ".sbom-diff.json"
SUMS_SUFFIX = ".sha256"
STATE_SUFFIX = ".esd-build.json"
EMBEDDED_MANIFEST = "etc/esd/image.json"
EMBEDDED_SBOM = "usr/share/esd/image/sbom.cdx.json"
EMBEDDED_TESTS = "usr/share/esd/image/test-plan"
HARDENING_REPORT = "var/lib/esd/hardening/report.json"
POLICY_RC_D = "usr/sbin/policy-rc.d"
POLICY_RC_D_BODY = b"#!/bin/sh\n# esd.osp image build: package scripts must not start services in the image.\nexit 101\n"
# Packed as empty directories with these modes: they are mount points on a running system.
EMPTY_DIRS = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,99}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
SUITE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
VARIANTS = ("minbase", "buildd", "default")
SPEC_KEYS = ("family", "version", "description", "os", "suite", "mirror", "variant", "architecture", "components",
             "packages", "remove_packages", "upgrade", "apt_sources", "roles", "vars", "tests", "update", "labels")
UPDATE_KEYS = ("upgrade", "packages", "remove_packages")
DEFAULT_APT_SOURCES = (
    "deb {mirror} {suite} {components}",
    "deb {mirror} {suite}-updates {components}",
    "deb {security} {suite}-security {components}",
)
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_CACHE_KEEP = 3
CHUNK = 1024 * 1024
BUILD_ENV = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true",
             "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
APT_OPTIONS = ["-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
               "-o", "Acquire::Languages=none",
               "-o", "APT::Install-Recommends=false"]


class ImageError(Exception):
    """An image spec, root filesystem, build step or archive is not acceptable."""


# --- small helpers --------------------------------------------------------------------------------


def canonical_json(data):
    return (json.dumps(data, sort_keys=True, indent=1, separators=(",", ": ")) + "\n").encode("utf-8")


def write_atomic(path, data, mode=0o644):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path, what):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ImageError("cannot read the %s %s: %s" % (what, path, exc))


def stem(family, version):
    return "%s-%s" % (family, version)


def artifact_paths(dest, family, version):
    base = os.path.join(dest, stem(family, version))
    return {"archive": base + ARCHIVE_SUFFIX, "manifest": base + MANIFEST_SUFFIX, "sbom": base + SBOM_SUFFIX,
            "sbom_diff": base + DIFF_SUFFIX, "sums": base + SUMS_SUFFIX}


def sidecar_paths(archive):
    """The artifact files that belong to an image archive path (…rootfs.tar.gz)."""
    if not archive.endswith(ARCHIVE_SUFFIX):
        base = os.path.splitext(archive)[0]
    else:
        base = archive[:-len(ARCHIVE_SUFFIX)]
    return {"archive": archive, "manifest": base + MANIFEST_SUFFIX, "sbom": base + SBOM_SUFFIX,
            "sbom_diff": base + DIFF_SUFFIX, "sums": base + SUMS_SUFFIX}


def in_root(rootfs, rel):
    return os.path.join(rootfs, rel.lstrip("/"))


def run(cmd, what, timeout=3600, log=None, env=None):
    """Run a build command; raise ImageError naming the step, the exit code and the end of its output."""
    full_env = dict(BUILD_ENV)
    full_env.update(env or {})
    try:
        proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ImageError("%s timed out after %d s (%s)" % (what, timeout, " ".join(cmd)))
    except OSError as exc:
        raise ImageError("%s could not run %s: %s" % (what, cmd[0], exc))
    output = proc.stdout.decode("utf-8", "replace")
    if log:
        with open(log, "a") as handle:
            handle.write("$ %s\n%s\n" % (" ".join(cmd), output))
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise ImageError("%s failed (exit %d): %s" % (what, proc.returncode, tail))
    return output


# --- the build spec -------------------------------------------------------------------------------

def _str_list(value, field, problems, pattern=None):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append("%s must be a list of strings, got %r" % (field, value))
        return []
    if pattern is not None:
        for item in value:
            if not pattern.match(item):
                problems.append("%s: %r is not a Debian package name" % (field, item))
    return list(value)


def validate_spec(raw, spec_dir):
    """Check a parsed image.yml and return it normalised; every problem is reported at once."""
    if not isinstance(raw, dict):
        raise ImageError("image.yml in %s must be a mapping, got %s" % (spec_dir, type(raw).__name__))
    problems = []
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        problems.append("unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(SPEC_KEYS)))
    spec = {"dir": spec_dir}
    family = raw.get("family")
    if not isinstance(family, str) or not NAME_RE.match(family):
        problems.append("family must be lower-case letters, digits and . _ + - (e.g. debian12-server), got %r" % (family,))
    spec["family"] = family
    version = raw.get("version")
    if version is not None:
        version = str(version)
        if not VERSION_RE.match(version):
            problems.append("version must be letters, digits and . + ~ _ -, got %r" % (version,))
    spec["version"] = version
    spec["description"] = str(raw.get("description") or "")
    spec["os"] = str(raw.get("os") or "debian")
    if spec["os"] != "debian":
        problems.append("os %r is not supported (supported: debian)" % spec["os"])
    spec["suite"] = str(raw.get("suite") or "bookworm")
    if not SUITE_RE.match(spec["suite"]):
        problems.append("suite must be a Debian suite name such as bookworm, got %r" % spec["suite"])
    spec["mirror"] = str(raw.get("mirror") or "")
    if spec["mirror"] and not re.match(r"^(https?|file)://", spec["mirror"]):
        problems.append("mirror must be an http(s):// or file:// URL, got %r" % spec["mirror"])
    spec["variant"] = str(raw.get("variant") or "minbase")
    if spec["variant"] not in VARIANTS:
        problems.append("variant must be one of %s, got %r" % (", ".join(VARIANTS), spec["variant"]))
    spec["architecture"] = str(raw.get("architecture") or "")
    spec["components"] = _str_list(raw.get("components") or ["main"], "components", problems)
    spec["packages"] = _str_list(raw.get("packages"), "packages", problems, PACKAGE_RE)
    spec["remove_packages"] = _str_list(raw.get("remove_packages"), "remove_packages", problems, PACKAGE_RE)
    spec["upgrade"] = bool(raw.get("upgrade", False))
    spec["apt_sources"] = _str_list(raw.get("apt_sources"), "apt_sources", problems) or list(DEFAULT_APT_SOURCES)
    roles = raw.get("roles") or []
    spec["roles"] = []
    if not isinstance(roles, list):
        problems.append("roles must be a list of role names, got %r" % (roles,))
    else:
        for role in roles:
            name = role.get("name") if isinstance(role, dict) else role
            if not isinstance(name, str) or not name:
                problems.append("roles: %r is not a role name" % (role,))
            else:
                spec["roles"].append(name)
    for key, default in (("vars", "vars.yml"), ("tests", "tests")):
        rel = raw.get(key)
        if rel is not None and (not isinstance(rel, str) or rel.startswith("/") or ".." in rel.split("/")):
            problems.append("%s must be a path relative to the spec directory, got %r" % (key, rel))
            rel = None
        path = os.path.join(spec_dir, rel or default)
        if rel and not os.path.exists(path):
            problems.append("%s %s does not exist" % (key, path))
        spec[key] = path if os.path.exists(path) else ""
    update = raw.get("update") or {}
    if not isinstance(update, dict):
        problems.append("update must be a mapping (upgrade, packages, remove_packages), got %r" % (update,))
        update = {}
    unknown = sorted(set(update) - set(UPDATE_KEYS))
    if unknown:
        problems.append("update: unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(UPDATE_KEYS)))
    spec["update"] = {
        "upgrade": bool(update.get("upgrade", True)),
        "packages": _str_list(update.get("packages"), "update.packages", problems, PACKAGE_RE),
        "remove_packages": _str_list(update.get("remove_packages"), "update.remove_packages", problems, PACKAGE_RE),
    }
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        problems.append("labels must be a mapping, got %r" % (labels,))
        labels = {}
    spec["labels"] = dict((str(k), str(v)) for k, v in sorted(labels.items()))
    if problems:
        raise ImageError("Invalid image spec in %s: %s" % (spec_dir, "; ".join(problems)))
    return spec


def _tree_digest(digest, top):
    for current, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(current, name)
            rel = os.path.relpath(full, top)
            if "__pycache__" in rel.split(os.sep):
                continue
            digest.update(("F %s %s\n" % (rel, sha256_file(full))).encode("utf-8", "surrogateescape"))


def load_spec(path, loader):
    """Read an image spec: a YAML file, or a directory holding image.yml (plus vars.yml and tests/)."""
    spec_file = os.path.join(path, "image.yml") if os.path.isdir(path) else path
    if not os.path.isfile(spec_file):
        raise ImageError("no image spec at %s (expected a YAML file or a directory holding image.yml)" % path)
    with open(spec_file, "rb") as handle:
        data = handle.read()
    try:
        raw = loader(data.decode("utf-8"))
    except Exception as exc:  # the YAML parser's errors have no common base we can import here
        raise ImageError("image spec %s is not valid YAML: %s" % (spec_file, exc))
    spec = validate_spec(raw, os.path.dirname(os.path.abspath(spec_file)))
    spec["path"] = os.path.abspath(spec_file)
    digest = hashlib.sha256(b"spec\n" + data)
    if spec["vars"]:
        digest.update(b"vars\n" + open(spec["vars"], "rb").read())
    if spec["tests"]:
        _tree_digest(digest, spec["tests"])
    spec["sha256"] = digest.hexdigest()
    return spec


# --- mirrors and Release files --------------------------------------------------------------------

def host_mirror(suite="bookworm", sources=("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")):
    """The Debian mirror the build host itself uses for `suite` (deb822 or one-line sources), else deb.debian.org."""
    for path in sources:
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in _sbom.parse_deb822(text):
                if "deb" in stanza.get("Types", "").split() and suite in stanza.get("Suites", "").split():
                    uris = stanza.get("URIs", "").split()
                    if uris:
                        return uris[0].rstrip("/")
        else:
            for line in text.splitlines():
                fields = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(fields) >= 3 and fields[0] == "deb" and fields[2] == suite:
                    return fields[1].rstrip("/")
    return DEFAULT_MIRROR


def fetch_release(mirror, suite, timeout=30):
    """The Release file of mirror/dists/suite: {url, sha256, date (epoch)}; None when it cannot be fetched."""
    for name in ("InRelease", "Release"):
        url = "%s/dists/%s/%s" % (mirror.rstrip("/"), suite, name)
        try:
            response = open_url(url, timeout=timeout)
            data = response.read()
        except Exception:  # open_url raises urllib, http.client and socket errors: any of them means "not here"
            continue
        match = re.search(rb"^Date:\s*(.+)$", data, re.MULTILINE)
        epoch = None
        if match:
            try:
                epoch = int(email.utils.parsedate_to_datetime(match.group(1).decode("ascii", "replace").strip()).timestamp())
            except (TypeError, ValueError):
                epoch = None
        return {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "date": epoch}
    return None


def expand_sources(lines, mirror, suite, components):
    security = DEFAULT_SECURITY_MIRROR
    return [line.format(mirror=mirror, suite=suite, components=" ".join(components), security=security)
            for line in lines]


def sources_suites(lines):
    """(uri, suite) of every `deb` line."""
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb":
            found.append((fields[1], fields[2]))
    return found


# --- mounts and safe removal ----------------------------------------------------------------------

def _unescape_mount(path):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_below(path, mountinfo="/proc/self/mountinfo"):
    """Mount points at or below path, deepest first."""
    real = os.path.realpath(path)
    found = []
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4:
                    point = _unescape_mount(fields[4])
                    if point == real or point.startswith(real.rstrip("/") + "/"):
                        found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(path):
    """Unmount everything mounted below path; raise when something stays mounted."""
    actions = []
    for point in mounts_below(path):
        if subprocess.call(["umount", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
            subprocess.call(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        actions.append("unmount %s" % point)
    left = mounts_below(path)
    if left:
        raise ImageError("cannot unmount %s; refusing to touch the tree below it" % ", ".join(left))
    return actions


def remove_rootfs(path):
    """Remove a root filesystem work tree: unmount first, and never follow links out of it."""
    if not os.path.lexists(path):
        return []
    actions = unmount_all(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return actions + ["remove %s" % path]


def is_mounted(point):
    return os.path.realpath(point) in mounts_below(point)


# --- build mode -----------------------------------------------------------------------------------

# The device nodes package scripts expect. An image's /dev is packed empty (its runtime provides one), so a tree
# unpacked from an image archive gets them here; they never reach an archive.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEVICE_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"))


def make_devices(rootfs):
    dev = in_root(rootfs, "dev")
    os.makedirs(dev, exist_ok=True)
    made = 0
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)
            made += 1
    for name, target in DEVICE_LINKS:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)
            made += 1
    return ["create %d device node(s) in /dev" % made] if made else []


def enter_build_mode(rootfs):
    """Make the tree usable for apt and roles: /proc, a policy-rc.d that stops services, working DNS."""
    actions = []
    policy = in_root(rootfs, POLICY_RC_D)
    if not os.path.exists(policy):
        os.makedirs(os.path.dirname(policy), exist_ok=True)
        with open(policy, "wb") as handle:
            handle.write(POLICY_RC_D_BODY)
        os.chmod(policy, 0o755)
        actions.append("write policy-rc.d")
    resolv = in_root(rootfs, "etc/resolv.conf")
    if not os.path.islink(resolv) and os.path.isfile("/etc/resolv.conf"):
        with open("/etc/resolv.conf", "rb") as handle:
            host = handle.read()
        current = open(resolv, "rb").read() if os.path.exists(resolv) else None
        if current != host:
            with open(resolv, "wb") as handle:
                handle.write(host)
            actions.append("use the build host's resolv.conf")
    actions += make_devices(rootfs)
    proc = in_root(rootfs, "proc")
    os.makedirs(proc, exist_ok=True)
    if not is_mounted(proc):
        run(["mount", "-t", "proc", "proc", proc], "mounting /proc in %s" % rootfs)
        actions.append("mount /proc")
    return actions


def leave_build_mode(rootfs):
    actions = unmount_all(rootfs)
    policy = in_root(rootfs, POLICY_RC_D)
    if os.path.lexists(policy):
        os.unlink(policy)
        actions.append("remove policy-rc.d")
    return actions


# --- apt inside the tree ---------------------------------------------------------------------------

def _seed_debs(rootfs, cache_debs):
    """Put cached .debs where apt inside the tree finds them (hard links when possible)."""
    archives = in_root(rootfs, "var/cache/apt/archives")
    os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
    seeded = set()
    if not cache_debs or not os.path.isdir(cache_debs):
        return seeded
    for name in os.listdir(cache_debs):
        if not name.endswith(".deb"):
            continue
        target = os.path.join(archives, name)
        if not os.path.exists(target):
            try:
                os.link(os.path.join(cache_debs, name), target)
            except OSError:
                shutil.copy2(os.path.join(cache_debs, name), target)
        seeded.add(name)
    return seeded


def _harvest_debs(rootfs, cache_debs, seeded):
    if not cache_debs:
        return 0
    os.makedirs(cache_debs, exist_ok=True)
    archives = in_root(rootfs, "var/cache/apt/archives")
    added = 0
    for name in os.listdir(archives):
        if name.endswith(".deb") and name not in seeded and not os.path.exists(os.path.join(cache_debs, name)):
            shutil.copy2(os.path.join(archives, name), os.path.join(cache_debs, name))
            added += 1
    return added


def apt_get(rootfs, args, what, log=None, timeout=3600):
    return run(["chroot", rootfs, "apt-get"] + APT_OPTIONS + args, what, timeout=timeout, log=log)


def installed_names(rootfs):
    return set(p["name"] for p in _sbom.installed_debs(rootfs))


def apply_packages(rootfs, upgrade, packages, remove, cache_debs=None, log=None, timeout=3600):
    """apt-get update, then upgrade / install / purge inside the tree; returns the actions taken."""
    actions = []
    have = installed_names(rootfs)
    wanted = [p for p in packages if p.split("=")[0].split(":")[0] not in have or "=" in p]
    unwanted = [p for p in remove if p in have]
    if not (upgrade or wanted or unwanted):
        return actions
    seeded = _seed_debs(rootfs, cache_debs)
    apt_get(rootfs, ["update"], "apt-get update in the image", log=log, timeout=timeout)
    actions.append("apt-get update")
    if upgrade:
        out = apt_get(rootfs, ["dist-upgrade"], "apt-get dist-upgrade in the image", log=log, timeout=timeout)
        match = re.search(r"(\d+) upgraded, (\d+) newly installed", out)
        actions.append("apt-get dist-upgrade (%s upgraded)" % (match.group(1) if match else "?"))
    if wanted:
        apt_get(rootfs, ["install"] + wanted, "installing %s in the image" % ", ".join(wanted), log=log, timeout=timeout)
        actions.append("install %s" % ", ".join(wanted))
    if unwanted:
        apt_get(rootfs, ["purge"] + unwanted, "purging %s from the image" % ", ".join(unwanted), log=log, timeout=timeout)
        apt_get(rootfs, ["autoremove", "--purge"], "autoremove in the image", log=log, timeout=timeout)
        actions.append("purge %s" % ", ".join(unwanted))
    harvested = _harvest_debs(rootfs, cache_debs, seeded)
    if harvested:
        actions.append("cache %d new .deb file(s)" % harvested)
    return actions


# --- making the root filesystem --------------------------------------------------------------------

def host_architecture():
    try:
        return subprocess.check_output(["dpkg", "--print-architecture"], stderr=subprocess.DEVNULL).decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


def base_cache_key(spec, mirror, arch, release_sha256):
    data = {"suite": spec["suite"], "variant": spec["variant"], "arch": arch, "mirror": mirror,
            "components": spec["components"], "include": sorted(spec["packages"]), "release": release_sha256,
            "format": 1}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _prune_base_cache(bases):
    entries = sorted((os.path.getmtime(os.path.join(bases, n)), n) for n in os.listdir(bases) if n.endswith(".tar"))
    for dummy, name in entries[:-BASE_CACHE_KEEP]:
        for suffix in (".tar", ".json"):
            path = os.path.join(bases, name[:-4] + suffix)
            if os.path.exists(path):
                os.unlink(path)


def debootstrap(spec, target, mirror, arch, cache_dir, log, timeout):
    cmd = ["debootstrap", "--arch=%s" % arch, "--components=%s" % ",".join(spec["components"])]
    if spec["variant"] != "default":
        cmd.append("--variant=%s" % spec["variant"])
    if spec["packages"]:
        cmd.append("--include=%s" % ",".join(p.split("=")[0] for p in spec["packages"]))
    if cache_dir:
        debs = os.path.join(cache_dir, "debs")
        os.makedirs(debs, exist_ok=True)
        cmd.append("--cache-dir=%s" % os.path.abspath(debs))
    cmd += [spec["suite"], target, mirror]
    run(cmd, "debootstrap %s %s from %s" % (spec["variant"], spec["suite"], mirror), timeout=timeout, log=log)


def extract_tar(archive, target, what, log=None, timeout=3600):
    """Unpack a trusted root filesystem archive (ours: built here or verified by sha256) with its owners and xattrs."""
    os.makedirs(target, exist_ok=True)
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", archive, "-C", target], what,
        timeout=timeout, log=log)


def state_path(rootfs):
    return rootfs.rstrip("/") + STATE_SUFFIX


def read_build_state(rootfs):
    path = state_path(rootfs)
    if not os.path.isfile(path):
        return None
    return read_json(path, "build state")


def request_key(spec, family, version, mirror, base_sha256):
    data = {"spec": spec["sha256"], "family": family, "version": version, "mirror": mirror, "base": base_sha256}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def read_image_metadata(archive):
    """The manifest and SBOM of an image artifact: the sidecar files when present, else the embedded copies."""
    paths = sidecar_paths(archive)
    manifest = sbom = None
    if os.path.isfile(paths["manifest"]):
        manifest = read_json(paths["manifest"], "image manifest")
    if os.path.isfile(paths["sbom"]):
        sbom = read_json(paths["sbom"], "image SBOM")
    if manifest is None or sbom is None:
        embedded = read_embedded(archive, (EMBEDDED_MANIFEST, EMBEDDED_SBOM))
        if manifest is None and EMBEDDED_MANIFEST in embedded:
            manifest = json.loads(embedded[EMBEDDED_MANIFEST].decode("utf-8"))
        if sbom is None and EMBEDDED_SBOM in embedded:
            sbom = json.loads(embedded[EMBEDDED_SBOM].decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ImageError("%s is not an esd.osp image: no %s manifest beside it or inside it" % (archive, MANIFEST_FORMAT))
    return manifest, sbom


def read_embedded(archive, names):
    """Read some members of an image archive (one pass)."""
    wanted = set(names)
    found = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name in wanted and member.isfile():
                    found[name] = tar.extractfile(member).read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageError("%s is not a readable image archive: %s" % (archive, exc))
    return found


def prepare_rootfs(spec, rootfs, family, version, mirror=None, base=None, base_sha256=None, cache_dir=None,
                   source_date_epoch=None, timeout=3600, check_mode=False):
    """Make the root filesystem for family/version at rootfs and leave it in build mode.

    Returns {changed, actions, method, cache, state}. Idempotent: a tree already made for the same request
    is kept (only build mode is restored).
    """
    mirror = (mirror or spec["mirror"] or host_mirror(spec["suite"])).rstrip("/")
    if base:
        if not os.path.isfile(base):
            raise ImageError("the base image %s does not exist" % base)
        digest = sha256_file(base)
        if base_sha256 and digest != base_sha256:
            raise ImageError("the base image %s has sha256 %s, expected %s" % (base, digest, base_sha256))
        base_sha256 = digest
    key = request_key(spec, family, version, mirror, base_sha256)
    existing = read_build_state(rootfs)
    if existing and existing.get("key") == key and os.path.isdir(rootfs):
        actions = [] if check_mode else enter_build_mode(rootfs)
        return {"changed": False, "actions": actions, "method": existing["method"], "cache": existing.get("cache"),
                "state": existing}
    if check_mode:
        return {"changed": True, "actions": ["make the root filesystem %s" % rootfs],
                "method": "derived" if base else "debootstrap", "cache": None, "state": None}
    parent_dir = os.path.dirname(os.path.abspath(rootfs))
    os.makedirs(parent_dir, exist_ok=True)
    actions = []
    if os.path.lexists(rootfs):
        actions += remove_rootfs(rootfs)
    log = rootfs.rstrip("/") + ".log"
    with open(log, "w") as handle:
        handle.write("esd.osp image build of %s %s\n" % (family, version))
    partial = rootfs.rstrip("/") + ".partial"
    if os.path.lexists(partial):
        remove_rootfs(partial)
    arch = spec["architecture"] or host_architecture()
    state = {"format": "esd.osp/image-build/v1", "key": key, "family": family, "version": version, "mirror": mirror,
             "architecture": arch, "spec": spec["path"], "spec_sha256": spec["sha256"], "parent": None,
             "debootstrap": None, "apt": [], "release_dates": []}
    cache = "none"
    try:
        if base:
            parent_manifest, parent_sbom = read_image_metadata(base)
            state["method"] = "derived"
            state["parent"] = {"family": parent_manifest.get("family"), "version": parent_manifest.get("version"),
                               "sha256": base_sha256, "path": os.path.abspath(base),
                               "source_date_epoch": (parent_manifest.get("build") or {}).get("source_date_epoch")}
            state["parent_sbom"] = parent_sbom
            extract_tar(base, partial, "unpacking the base image %s" % base, log=log, timeout=timeout)
            actions.append("unpack the base image %s %s" % (parent_manifest.get("family"), parent_manifest.get("version")))
            cache = "base-image"
        else:
            state["method"] = "debootstrap"
            release = fetch_release(mirror, spec["suite"])
            state["debootstrap"] = {"suite": spec["suite"], "variant": spec["variant"], "components": spec["components"],
                                    "include": spec["packages"], "mirror": mirror,
                                    "release_sha256": (release or {}).get("sha256")}
            if release and release.get("date"):
                state["release_dates"].append(release["date"])
            bases = os.path.join(cache_dir, "bases") if cache_dir else None
            cached = None
            if bases and release:
                cached = os.path.join(bases, base_cache_key(spec, mirror, arch, release["sha256"]) + ".tar")
            if cached and os.path.isfile(cached):
                extract_tar(cached, partial, "unpacking the cached base %s" % cached, log=log, timeout=timeout)
                os.utime(cached)
                actions.append("unpack the cached debootstrap result %s" % os.path.basename(cached))
                cache = "base"
            else:
                debs = os.path.join(cache_dir, "debs") if cache_dir else None
                had_debs = bool(debs and os.path.isdir(debs) and any(n.endswith(".deb") for n in os.listdir(debs)))
                debootstrap(spec, partial, mirror, arch, cache_dir, log, timeout)
                actions.append("debootstrap --variant=%s %s from %s" % (spec["variant"], spec["suite"], mirror))
                cache = "debs" if had_debs else "none"
                if cached:
                    os.makedirs(bases, exist_ok=True)
                    tmp = cached + ".part"
                    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", tmp, "-C", partial, "."],
                        "caching the debootstrap result", timeout=timeout, log=log)
                    os.rename(tmp, cached)
                    write_atomic(cached[:-4] + ".json", canonical_json(state["debootstrap"]))
                    _prune_base_cache(bases)
                    actions.append("cache the debootstrap result as %s" % os.path.basename(cached))
        # apt sources the image keeps (patching needs -updates and -security), then the packages
        sources = expand_sources(spec["apt_sources"], mirror, spec["suite"], spec["components"])
        write_sources(partial, sources)
        enter_build_mode(partial)
        try:
            if base:
                upgrade = spec["update"]["upgrade"]
                packages = spec["packages"] + spec["update"]["packages"]
                remove = spec["remove_packages"] + spec["update"]["remove_packages"]
            else:
                upgrade, packages, remove = spec["upgrade"], [], spec["remove_packages"]
            if upgrade or packages or remove:
                for uri, suite in sources_suites(sources):
                    release = fetch_release(uri, suite)
                    if release and release.get("date"):
                        state["release_dates"].append(release["date"])
            debs = os.path.join(cache_dir, "debs") if cache_dir else None
            state["apt"] = apply_packages(partial, upgrade, packages, remove, cache_debs=debs, log=log, timeout=timeout)
            actions += state["apt"]
        finally:
            unmount_all(partial)
        os.rename(partial, rootfs)
    except BaseException:
        if os.path.lexists(partial):
            remove_rootfs(partial)
        raise
    actions += enter_build_mode(rootfs)
    state["source_date_epoch"] = resolve_source_date(source_date_epoch, state)
    state["cache"] = cache
    write_atomic(state_path(rootfs), canonical_json(state))
    return {"changed": True, "actions": actions, "method": state["method"], "cache": cache, "state": state}


def write_sources(rootfs, lines):
    path = in_root(rootfs, "etc/apt/sources.list")
    content = ("# Written by esd.osp.image\n" + "\n".join(lines) + "\n").encode("utf-8")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    os.chmod(path, 0o644)


def resolve_source_date(given, state):
    """SOURCE_DATE_EPOCH (option, then environment), else the newest Release date the tree was built from."""
    if given:
        return int(given)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ImageError("SOURCE_DATE_EPOCH must be an integer number of seconds, got %r" % env)
    dates = [d for d in state.get("release_dates") or [] if d]
    parent = (state.get("parent") or {}).get("source_date_epoch")
    if parent:
        dates.append(int(parent))
    if dates:
        return max(dates)
    # Offline and nothing known: the newest file of the dpkg database, which only installs change.
    return 0


# --- finalising ------------------------------------------------------------------------------------

FINALISE_GLOBS = (
    ("var/cache/apt/archives", (".deb",), "package cache"),
    ("var/cache/apt", (".bin",), "apt caches"),
    ("var/lib/apt/lists", None, "apt lists"),
    ("var/cache/debconf", ("-old",), "debconf backups"),
    ("var/lib/dpkg", ("-old",), "dpkg backups"),
    ("var/cache/ldconfig", ("aux-cache",), "ldconfig cache"),
    ("etc/ssh", ("_key", "_key.pub"), "SSH host keys"),
)


# What a finalised tree guarantees (recorded in the manifest; what one run actually removed is in the module result).
FINALISE_GUARANTEES = (
    "no package cache, apt lists or apt/dpkg/debconf backups",
    "log files empty",
    "empty /etc/machine-id (set at first boot)",
    "no SSH host keys (made at first boot)",
    "empty resolv.conf, hostname localhost",
    "empty /tmp and /var/tmp",
    "first-boot script /usr/lib/esd/firstboot",
)


def finalise(rootfs):
    """Remove what must not ship in an image (build traces, host identity); idempotent. Returns what it did."""
    actions = []

    def gone(rel):
        path = in_root(rootfs, rel)
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
            return True
        if os.path.isdir(path):
            shutil.rmtree(path)
            return True
        return False

    for rel, suffixes, what in FINALISE_GLOBS:
        directory = in_root(rootfs, rel)
        if not os.path.isdir(directory):
            continue
        removed = 0
        for name in sorted(os.listdir(directory)):
            full = os.path.join(directory, name)
            if not (os.path.isfile(full) or os.path.islink(full)):
                continue
            if name == "lock":
                continue
            if suffixes is None or name.endswith(suffixes):
                if rel == "etc/ssh" and not name.startswith("ssh_host_"):
                    continue
                os.unlink(full)
                removed += 1
        if removed:
            actions.append("remove %s (%d file(s))" % (what, removed))
    # logs: keep the files (some daemons expect them), drop their content
    truncated = 0
    log_dir = in_root(rootfs, "var/log")
    for current, dirs, files in os.walk(log_dir):
        for name in files:
            full = os.path.join(current, name)
            if os.path.islink(full):
                continue
            if name.endswith((".gz", ".1", ".old")) or re.search(r"\.\d+$", name):
                os.unlink(full)
                truncated += 1
            elif os.path.getsize(full):
                open(full, "wb").close()
                truncated += 1
    if truncated:
        actions.append("empty %d log file(s)" % truncated)
    for rel in ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "root/.bash_history", "root/.wget-hsts",
                "root/.ansible", "root/.cache", "var/lib/esd/hardening/.tmp"):
        if gone(rel):
            actions.append("remove /%s" % rel)
    for rel in ("tmp", "var/tmp"):
        directory = in_root(rootfs, rel)
        if os.path.isdir(directory):
            names = os.listdir(directory)
            for name in names:
                gone(os.path.join(rel, name))
            if names:
                actions.append("empty /%s" % rel)
    # host identity: an empty machine-id means "first boot" to systemd; the build host's DNS and name go
    for rel, content, what in (("etc/machine-id", b"", "reset machine-id"), ("etc/resolv.conf", b"", "empty resolv.conf"),
                               ("etc/hostname", b"localhost\n", "reset hostname")):
        path = in_root(rootfs, rel)
        if os.path.islink(path):
            continue
        if rel == "etc/machine-id" or os.path.exists(path):
            current = open(path, "rb").read() if os.path.exists(path) else None
            if current != content:
                with open(path, "wb") as handle:
                    handle.write(content)
                os.chmod(path, 0o444 if rel == "etc/machine-id" else 0o644)
                actions.append(what)
    return actions


FIRSTBOOT = "usr/lib/esd/firstboot"
FIRSTBOOT_DONE = "var/lib/esd/firstboot.done"
FIRSTBOOT_SCRIPT = b"""#!/bin/sh
# esd.osp image first boot: give this node the identity the image ships without (esd.osp.image finalise
# empties /etc/machine-id and removes the SSH host keys). Runs once; systemd runs it as esd-firstboot.service,
# podman nodes (esd.osp.image_node) run it before their command.
set -e
[ -e /var/lib/esd/firstboot.done ] && exit 0
if [ ! -s /etc/machine-id ]; then
  if command -v systemd-machine-id-setup >/dev/null 2>&1; then
    systemd-machine-id-setup >/dev/null
  else
    tr -d '-' </proc/sys/kernel/random/uuid >/etc/machine-id
  fi
fi
if command -v ssh-keygen >/dev/null 2>&1; then
  ssh-keygen -A >/dev/null
fi
mkdir -p /var/lib/esd
date -u +%Y-%m-%dT%H:%M:%SZ >/var/lib/esd/firstboot.done
"""
FIRSTBOOT_UNIT = b"""[Unit]
Description=esd.osp first boot: machine-id and SSH host keys of this node
ConditionPathExists=!/var/lib/esd/firstboot.done
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/lib/esd/firstboot
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


def install_firstboot(rootfs):
    """Install the first-boot script (and its systemd unit when the image has systemd); idempotent."""
    actions = []
    wanted = [(FIRSTBOOT, FIRSTBOOT_SCRIPT, 0o755)]
    if os.path.exists(in_root(rootfs, "bin/systemctl")) or os.path.exists(in_root(rootfs, "usr/bin/systemctl")):
        wanted.append(("etc/systemd/system/esd-firstboot.service", FIRSTBOOT_UNIT, 0o644))
    for rel, content, mode in wanted:
        path = in_root(rootfs, rel)
        current = open(path, "rb").read() if os.path.isfile(path) else None
        if current != content:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
            actions.append("install /%s" % rel)
        os.chmod(path, mode)
    if len(wanted) > 1:
        link = in_root(rootfs, "etc/systemd/system/multi-user.target.wants/esd-firstboot.service")
        if not os.path.islink(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/etc/systemd/system/esd-firstboot.service", link)
            actions.append("enable esd-firstboot.service")
    done = in_root(rootfs, FIRSTBOOT_DONE)
    if os.path.exists(done):
        os.unlink(done)
        actions.append("remove /%s" % FIRSTBOOT_DONE)
    return actions


# --- reading the tree ------------------------------------------------------------------------------

def read_os_release(rootfs):
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = in_root(rootfs, rel)
        if os.path.isfile(path):
            values = {}
            with open(path) as handle:
                for line in handle:
                    key, sep, value = line.strip().partition("=")
                    if sep and key and not key.startswith("#"):
                        values[key] = value.strip().strip('"').strip("'")
            return values
    return {}


def read_hardening(rootfs):
    """The os_hardening role's audit of the tree: {profile, passed, failed, checks}; None when there is none."""
    path = in_root(rootfs, HARDENING_REPORT)
    if not os.path.isfile(path):
        return None
    report = read_json(path, "hardening report")
    checks = report.get("checks") or []
    return {"profile": report.get("profile"), "role": report.get("role"),
            "passed": sum(1 for c in checks if c.get("passed")),
            "failed": sum(1 for c in checks if not c.get("passed")),
            "checks": checks}


def walk_tree(rootfs):
    """Yield (relative path, lstat) of everything in rootfs, sorted depth-first; mount-point contents skipped."""
    def walk(directory, prefix):
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise ImageError("cannot read %s: %s" % (directory, exc))
        for name in names:
            full = os.path.join(directory, name)
            rel = prefix + name
            st = os.lstat(full)
            yield rel, full, st
            if stat.S_ISDIR(st.st_mode) and not (prefix == "" and name in EMPTY_DIRS):
                yield from walk(full, rel + "/")
    return walk(rootfs, "")


def tree_size(rootfs):
    """(bytes, files) of the tree: regular files' apparent sizes, hard links counted once."""
    seen = set()
    total = files = 0
    for rel, full, st in walk_tree(rootfs):
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
            files += 1
    return total, files


# --- the reproducible archive ----------------------------------------------------------------------

def _xattrs(full):
    headers = {}
    try:
        names = os.listxattr(full, follow_symlinks=False)
    except OSError:
        return headers
    for name in sorted(names):
        if name.startswith("security.selinux"):
            continue
        try:
            value = os.getxattr(full, name, follow_symlinks=False)
        except OSError:
            continue
        headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return headers


def write_archive(rootfs, fileobj, epoch, compresslevel=6):
    """Pack rootfs into fileobj deterministically. Returns the number of members."""
    members = 0
    hardlinks = {}
    with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, mtime=0, compresslevel=compresslevel) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape") as tar:
            for rel, full, st in walk_tree(rootfs):
                info = tarfile.TarInfo(rel)
                info.uid, info.gid = st.st_uid, st.st_gid
                info.uname = info.gname = ""
                info.mode = stat.S_IMODE(st.st_mode)
                info.mtime = min(int(st.st_mtime), int(epoch)) if epoch else int(st.st_mtime)
                headers = _xattrs(full)
                if headers:
                    info.pax_headers = headers
                data = None
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    if "/" not in rel and rel in EMPTY_DIRS:
                        info.mode = EMPTY_DIRS[rel]
                elif stat.S_ISLNK(st.st_mode):
                    info.type = tarfile.SYMTYPE
                    info.linkname = os.readlink(full)
                elif stat.S_ISREG(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in hardlinks:
                        info.type = tarfile.LNKTYPE
                        info.linkname = hardlinks[key]
                    else:
                        if st.st_nlink > 1:
                            hardlinks[key] = rel
                        info.size = st.st_size
                        data = full
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                    info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                elif stat.S_ISFIFO(st.st_mode):
                    info.type = tarfile.FIFOTYPE
                else:
                    continue  # sockets are runtime objects
                if data is not None:
                    with open(data, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
                members += 1
    return members


def pack_to_temp(rootfs, dest, family, version, epoch, compresslevel=6):
    fd, tmp = tempfile.mkstemp(prefix=".%s-" % stem(family, version), suffix=".part", dir=dest)
    try:
        with os.fdopen(fd, "wb") as handle:
            members = write_archive(rootfs, handle, epoch, compresslevel)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, members


def copy_test_plan(spec, rootfs):
    """Put the spec's test plan into the image (replacing an older one): it travels with the image."""
    target = in_root(rootfs, EMBEDDED_TESTS)
    if os.path.isdir(target):
        shutil.rmtree(target)
    if not spec.get("tests"):
        return []
    names = []
    os.makedirs(target, 0o755)
    for name in sorted(os.listdir(spec["tests"])):
        src = os.path.join(spec["tests"], name)
        if os.path.isfile(src) and not name.endswith(".pyc"):
            shutil.copyfile(src, os.path.join(target, name))
            os.chmod(os.path.join(target, name), 0o644)
            names.append(name)
    return names


def build_manifest(spec, family, version, state, builder, os_release, packages, esd_packages, hardening,
                   rootfs_bytes, rootfs_files, sbom_sha256, test_plan, sbom_diff):
    parent = state.get("parent")
    return {
        "format": MANIFEST_FORMAT,
        "kind": "image",
        "name": family,
        "family": family,
        "version": version,
        "description": spec.get("description", ""),
        "labels": spec.get("labels", {}),
        "os": {"id": os_release.get("ID", ""), "version_id": os_release.get("VERSION_ID", ""),
               "codename": os_release.get("VERSION_CODENAME", ""), "pretty_name": os_release.get("PRETTY_NAME", ""),
               "architecture": state.get("architecture", "")},
        "build": {
            "builder": builder, "tool": TOOL, "tool_version": TOOL_VERSION, "method": state["method"],
            "source_date_epoch": state.get("source_date_epoch"), "spec_sha256": state.get("spec_sha256"),
            "spec": os.path.basename(os.path.dirname(state.get("spec") or "")) or None,
            "mirror": state.get("mirror"), "debootstrap": state.get("debootstrap"), "apt": state.get("apt") or [],
            "roles": spec.get("roles", []), "finalise": list(FINALISE_GUARANTEES),
        },
        "parent": None if not parent else {"family": parent.get("family"), "version": parent.get("version"),
                                           "sha256": parent.get("sha256")},
        "sbom_diff": sbom_diff,
        "hardening": hardening,
        "packages": {"count": len(packages), "esd": esd_packages,
                     "sha256": hashlib.sha256("\n".join("%s=%s" % (p["name"], p["version"]) for p in packages)
                                              .encode("utf-8")).hexdigest()},
        "rootfs": {"bytes": rootfs_bytes, "files": rootfs_files},
        "sbom": {"format": "CycloneDX", "spec_version": _sbom.SPEC_VERSION, "path": "/" + EMBEDDED_SBOM,
                 "sha256": sbom_sha256},
        "test_plan": {"path": "/" + EMBEDDED_TESTS, "files": test_plan},
    }


def _write_embedded(rootfs, rel, data):
    path = in_root(rootfs, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for current in (os.path.dirname(path),):
        os.chmod(current, 0o755)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)


def write_sums(path, files):
    lines = ["%s  %s\n" % (sha256_file(f), os.path.basename(f)) for f in files if os.path.isfile(f)]
    write_atomic(path, "".join(lines).encode("utf-8"))


def verify_sums(path):
    """Check a sha256sum(1) file against the files beside it; returns (checked, problems)."""
    directory = os.path.dirname(path)
    problems, checked = [], 0
    with open(path) as handle:
        for line in handle:
            if not line.strip():
                continue
            digest, dummy, name = line.rstrip("\n").partition("  ")
            full = os.path.join(directory, name.lstrip("*"))
            if not os.path.isfile(full):
                problems.append("%s is listed in %s but missing" % (name, os.path.basename(path)))
            elif sha256_file(full) != digest:
                problems.append("%s does not match its checksum in %s" % (name, os.path.basename(path)))
            else:
                checked += 1
    return checked, problems


def pack_image(spec, rootfs, dest, family, version, builder, force=False, keep_rootfs=False, compresslevel=6,
               check_mode=False):
    """Finalise the tree, embed manifest/SBOM/test plan, pack, and write the artifact files in dest."""
    paths = artifact_paths(dest, family, version)
    exists = os.path.isfile(paths["archive"]) and os.path.isfile(paths["manifest"])
    if check_mode:
        return {"changed": not exists, "actions": [] if exists else ["finalise and pack %s" % rootfs],
                "path": paths["archive"]}
    if not os.path.isdir(rootfs):
        if exists:
            result = describe_artifact(paths["archive"])
            result.update({"changed": False, "actions": []})
            return result
        raise ImageError("there is no root filesystem at %s to pack (make it with state=rootfs first)" % rootfs)
    state = read_build_state(rootfs)
    if state is None:
        raise ImageError("%s was not made by esd.osp.image (no %s beside it)" % (rootfs, os.path.basename(state_path(rootfs))))
    if state.get("family") != family or state.get("version") != version:
        raise ImageError("%s holds %s %s, not %s %s" % (rootfs, state.get("family"), state.get("version"), family, version))
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o755)
    actions = leave_build_mode(rootfs)
    finalise_actions = finalise(rootfs) + install_firstboot(rootfs)
    actions += finalise_actions
    os_release = read_os_release(rootfs)
    packages = _sbom.installed_debs(rootfs)
    esd_packages = _sbom.installed_esd_packages(rootfs)
    image = {"family": family, "version": version, "description": spec.get("description")}
    epoch = state.get("source_date_epoch") or 0
    sbom = _sbom.build_sbom(image, packages, esd_packages, os_release, epoch, TOOL_VERSION)
    sbom_bytes = canonical_json(sbom)
    sbom_diff = None
    if state.get("parent") and state.get("parent_sbom"):
        sbom_diff = _sbom.diff(state["parent_sbom"], sbom)
    test_plan = copy_test_plan(spec, rootfs)
    hardening = read_hardening(rootfs)
    for rel in (EMBEDDED_MANIFEST, EMBEDDED_SBOM):
        path = in_root(rootfs, rel)
        if os.path.exists(path):
            os.unlink(path)
    rootfs_bytes, rootfs_files = tree_size(rootfs)
    manifest = build_manifest(spec, family, version, state, builder, os_release, packages, esd_packages, hardening,
                              rootfs_bytes, rootfs_files, hashlib.sha256(sbom_bytes).hexdigest(), test_plan,
                              sbom_diff)
    _write_embedded(rootfs, EMBEDDED_SBOM, sbom_bytes)
    _write_embedded(rootfs, EMBEDDED_MANIFEST, canonical_json(manifest))
    tmp, members = pack_to_temp(rootfs, dest, family, version, epoch, compresslevel)
    try:
        digest = sha256_file(tmp)
        size = os.path.getsize(tmp)
        changed = True
        if os.path.isfile(paths["archive"]):
            existing = sha256_file(paths["archive"])
            if existing == digest:
                changed = False
            elif not force:
                raise ImageError(
                    "%s already exists with sha256 %s, but this build of %s %s gives %s: an image version must never "
                    "have two contents. Raise the version, or set force=true to replace it." % (
                        paths["archive"], existing, family, version, digest))
        if changed:
            os.rename(tmp, paths["archive"])
            os.chmod(paths["archive"], 0o644)
            actions.append("pack %s (%d members)" % (os.path.basename(paths["archive"]), members))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sidecar = dict(manifest)
    sidecar["archive"] = {"name": os.path.basename(paths["archive"]), "sha256": digest, "size": size,
                          "members": members, "compression": "gzip"}
    write_atomic(paths["manifest"], canonical_json(sidecar))
    write_atomic(paths["sbom"], sbom_bytes)
    files = [paths["archive"], paths["manifest"], paths["sbom"]]
    if sbom_diff is not None:
        write_atomic(paths["sbom_diff"], canonical_json(sbom_diff))
        files.append(paths["sbom_diff"])
    elif os.path.exists(paths["sbom_diff"]):
        os.unlink(paths["sbom_diff"])
    write_sums(paths["sums"], files)
    if not keep_rootfs:
        actions += remove_rootfs(rootfs)
        for extra in (state_path(rootfs), rootfs.rstrip("/") + ".log"):
            if os.path.exists(extra):
                os.unlink(extra)
    return {"changed": changed, "actions": actions, "path": paths["archive"], "sha256": digest, "size": size,
            "manifest": sidecar, "manifest_path": paths["manifest"], "sbom": paths["sbom"],
            "sbom_diff": sbom_diff, "sbom_diff_path": paths["sbom_diff"] if sbom_diff is not None else None,
            "checksums": paths["sums"], "rootfs_size": rootfs_bytes, "files": rootfs_files,
            "packages": len(packages), "members": members}


def describe_artifact(archive, expected_sha256=None):
    """What an image artifact is: its files, digest, size and manifest (no change)."""
    if not os.path.isfile(archive):
        raise ImageError("the image %s does not exist" % archive)
    paths = sidecar_paths(archive)
    digest = sha256_file(archive)
    if expected_sha256 and digest != expected_sha256:
        raise ImageError("the image %s has sha256 %s, expected %s" % (archive, digest, expected_sha256))
    manifest, sbom = read_image_metadata(archive)
    diff = manifest.get("sbom_diff")
    return {"path": archive, "sha256": digest, "size": os.path.getsize(archive), "manifest": manifest,
            "manifest_path": paths["manifest"] if os.path.isfile(paths["manifest"]) else None,
            "sbom": paths["sbom"] if os.path.isfile(paths["sbom"]) else None,
            "sbom_diff": diff, "sbom_diff_path": paths["sbom_diff"] if os.path.isfile(paths["sbom_diff"]) else None,
            "checksums": paths["sums"] if os.path.isfile(paths["sums"]) else None,
            "rootfs_size": (manifest.get("rootfs") or {}).get("bytes"), "files": (manifest.get("rootfs") or {}).get("files"),
            "packages": (manifest.get("packages") or {}).get("count"),
            "members": (manifest.get("archive") or {}).get("members")}


def validate_artifact(archive, expected_sha256=None, family=None, version=None):
    """Full validation of an image artifact; returns (info, problems). Reads the whole archive once."""
    problems = []
    info = describe_artifact(archive)
    manifest = info["manifest"]
    if expected_sha256 and info["sha256"] != expected_sha256:
        problems.append("sha256 is %s, expected %s" % (info["sha256"], expected_sha256))
    if family and manifest.get("family") != family:
        problems.append("the manifest says family %s, expected %s" % (manifest.get("family"), family))
    if version and manifest.get("version") != str(version):
        problems.append("the manifest says version %s, expected %s" % (manifest.get("version"), version))
    archive_info = manifest.get("archive") or {}
    if archive_info.get("sha256") and archive_info["sha256"] != info["sha256"]:
        problems.append("the manifest records archive sha256 %s, the file has %s" % (archive_info["sha256"], info["sha256"]))
    embedded = read_embedded(archive, (EMBEDDED_MANIFEST, EMBEDDED_SBOM))
    if EMBEDDED_MANIFEST not in embedded:
        problems.append("the archive holds no /%s" % EMBEDDED_MANIFEST)
    else:
        inner = json.loads(embedded[EMBEDDED_MANIFEST].decode("utf-8"))
        outer = dict((k, v) for k, v in manifest.items() if k != "archive")
        if inner != outer:
            changed = sorted(k for k in set(inner) | set(outer) if inner.get(k) != outer.get(k))
            problems.append("the manifest beside the archive differs from the embedded one in: %s" % ", ".join(changed))
    if EMBEDDED_SBOM not in embedded:
        problems.append("the archive holds no /%s" % EMBEDDED_SBOM)
    else:
        sbom_sha = hashlib.sha256(embedded[EMBEDDED_SBOM]).hexdigest()
        if sbom_sha != (manifest.get("sbom") or {}).get("sha256"):
            problems.append("the embedded SBOM has sha256 %s, the manifest says %s" % (
                sbom_sha, (manifest.get("sbom") or {}).get("sha256")))
        sbom = json.loads(embedded[EMBEDDED_SBOM].decode("utf-8"))
        problems += ["SBOM: %s" % p for p in _sbom.validate_sbom(sbom)]
        count = len([c for c in sbom.get("components", []) if c.get("purl", "").startswith("pkg:deb/")])
        if count != (manifest.get("packages") or {}).get("count"):
            problems.append("the SBOM lists %d Debian packages, the manifest says %s" % (
                count, (manifest.get("packages") or {}).get("count")))
    hardening = manifest.get("hardening")
    if hardening and hardening.get("failed"):
        failed = [c.get("id") for c in hardening.get("checks", []) if not c.get("passed")]
        problems.append("hardening checks failed at build time: %s" % ", ".join(failed))
    if info["checksums"]:
        dummy, sum_problems = verify_sums(info["checksums"])
        problems += sum_problems
    return info, problems


def remove_artifact(dest, family, version, check_mode=False):
    removed = [p for p in artifact_paths(dest, family, version).values() if os.path.exists(p)]
    if not check_mode:
        for path in removed:
            os.unlink(path)
    return removed
