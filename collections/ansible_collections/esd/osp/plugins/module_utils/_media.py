# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distribution media: ISO 9660 images (Rock Ridge, Joliet) holding packages or an OS image, with checksums.

Layout of a medium::

    /MEDIA.json      manifest: name, version, kind (packages | image), builder, source date, and every file
                     with its size, sha256 and what it is (package name/version, image family/version)
    /SHA256SUMS      sha256sum(1) lines for every other file
    /README.txt      what the medium is and how to check it
    /packages/...    esd.osp package artifacts (kind packages)
    /image/...       the image archive, its manifest, SBOM (and SBOM diff) (kind image)
    /provisioning/.. optional: the provisioning mechanism of the image (kind image)

The ISO is written by xorriso with MD5 checksums of the session and of every file (so ``xorriso -check_md5_r``
verifies it), and is reproducible: the file dates and the volume dates come from the source date
(SOURCE_DATE_EPOCH), so the same content gives the same ISO bytes.

Standard library only; needs the xorriso program (Debian package xorriso).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

MEDIA_FORMAT = "esd.osp/media/v1"
MANIFEST = "MEDIA.json"
SUMS = "SHA256SUMS"
KINDS = ("packages", "image")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,99}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$")
CHUNK = 1024 * 1024


class MediaError(Exception):
    """A medium cannot be built, read or verified."""


def canonical_json(data):
    return (json.dumps(data, sort_keys=True, indent=1, separators=(",", ": ")) + "\n").encode("utf-8")


def media_filename(name, version):
    return "%s-%s.iso" % (name, version)


def volume_id(name, version):
    """ISO 9660 volume id: upper case, digits and _, at most 32 characters."""
    return re.sub(r"[^A-Z0-9_]", "_", ("%s_%s" % (name, version)).upper())[:32]


def xorriso(args, what, timeout=3600, env=None, binary="xorriso"):
    cmd = [binary, "-no_rc", "-report_about", "WARNING", "-abort_on", "FAILURE"] + list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MediaError("%s timed out (%s)" % (what, " ".join(cmd)))
    except OSError as exc:
        raise MediaError("%s: cannot run %s: %s (install the Debian package xorriso)" % (what, binary, exc))
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or re.search(r"^xorriso : (FAILURE|FATAL|ABORT)", output, re.MULTILINE):
        lines = [line for line in output.splitlines() if line.startswith("xorriso : ") and "NOTE" not in line]
        raise MediaError("%s failed (xorriso exited %d): %s" % (what, proc.returncode, "; ".join(lines[-5:]) or output[-500:]))
    return output


def _entry(src, path, kind, **info):
    if not os.path.isfile(src):
        raise MediaError("%s does not exist" % src)
    if path.startswith("/") or ".." in path.split("/") or not path:
        raise MediaError("media path %r must be relative without '..'" % path)
    entry = {"path": path, "kind": kind, "size": os.path.getsize(src), "sha256": sha256_file(src)}
    entry.update(dict((k, v) for k, v in info.items() if v is not None))
    return entry


def stage(files, staging, manifest, readme):
    """Copy files into the staging tree with MEDIA.json, SHA256SUMS and README.txt; all dates = source date."""
    epoch = int(manifest["source_date_epoch"])
    for item in files:
        target = os.path.join(staging, item["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # a copy, never a hard link: the modes and dates set below must not touch the original artifact
        shutil.copyfile(item["src"], target)
    with open(os.path.join(staging, MANIFEST), "wb") as handle:
        handle.write(canonical_json(manifest))
    with open(os.path.join(staging, "README.txt"), "w") as handle:
        handle.write(readme)
    lines = ["%s  %s\n" % (entry["sha256"], entry["path"]) for entry in manifest["files"]]
    for name in (MANIFEST, "README.txt"):
        lines.append("%s  %s\n" % (sha256_file(os.path.join(staging, name)), name))
    with open(os.path.join(staging, SUMS), "w") as handle:
        handle.write("".join(sorted(lines, key=lambda line: line.split("  ", 1)[1])))
    for current, dirs, names in os.walk(staging):
        for name in dirs + names:
            path = os.path.join(current, name)
            os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
    os.chmod(staging, 0o555)
    for current, dirs, names in os.walk(staging):
        for name in dirs + names:
            os.utime(os.path.join(current, name), (epoch, epoch), follow_symlinks=False)
    os.utime(staging, (epoch, epoch))


def readme_text(manifest):
    lines = ["%s %s - esd.osp distribution media (%s)" % (manifest["name"], manifest["version"], manifest["kind"]),
             "",
             "MEDIA.json lists every file with its sha256; SHA256SUMS holds the same for sha256sum -c.",
             "Check the medium:  xorriso -md5 on -indev <this.iso> -check_md5_r SORRY / --",
             "Check the files:   cd <mount point> && sha256sum -c SHA256SUMS",
             ""]
    for entry in manifest["files"]:
        what = " ".join(str(entry[k]) for k in ("name", "version") if entry.get(k))
        lines.append("  %-60s %s" % (entry["path"], what))
    return "\n".join(lines) + "\n"


def build_media(dest, name, version, kind, files, builder, epoch, extra=None, force=False, check_mode=False,
                binary="xorriso"):
    """Build dest/<name>-<version>.iso from files [{src, path, kind, ...}]; returns the result dict."""
    if not NAME_RE.match(name or ""):
        raise MediaError("media name must be lower-case letters, digits and . _ + -, got %r" % (name,))
    if not VERSION_RE.match(version or ""):
        raise MediaError("media version must be letters, digits and . + ~ _ -, got %r" % (version,))
    if kind not in KINDS:
        raise MediaError("kind must be one of %s, got %r" % (", ".join(KINDS), kind))
    if not files:
        raise MediaError("a medium needs at least one file")
    entries = []
    seen = set()
    for item in files:
        info = dict((k, v) for k, v in item.items() if k not in ("src", "path", "kind"))
        entry = _entry(item["src"], item["path"], item.get("kind", "file"), **info)
        if entry["path"] in seen:
            raise MediaError("two files would be %s on the medium" % entry["path"])
        seen.add(entry["path"])
        entries.append(entry)
    entries.sort(key=lambda e: e["path"])
    manifest = {"format": MEDIA_FORMAT, "name": name, "version": version, "kind": kind, "builder": builder,
                "source_date_epoch": int(epoch), "volume_id": volume_id(name, version), "files": entries}
    manifest.update(extra or {})
    final = os.path.join(dest, media_filename(name, version))
    sums = final + ".sha256"
    result = {"name": name, "version": version, "kind": kind, "path": final, "manifest": manifest,
              "volume_id": manifest["volume_id"], "changed": True}
    if check_mode:
        result["changed"] = not os.path.exists(final)
        return result
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o755)
    staging = tempfile.mkdtemp(prefix=".media-", dir=dest)
    fd, tmp_iso = tempfile.mkstemp(prefix=".%s-" % name, suffix=".iso.part", dir=dest)
    os.close(fd)
    os.unlink(tmp_iso)
    try:
        by_path = dict((item["path"], item["src"]) for item in files)
        stage([dict(e, src=by_path[e["path"]]) for e in entries], staging, manifest, readme_text(manifest))
        xorriso(["-md5", "on", "-outdev", tmp_iso, "-volid", manifest["volume_id"], "-joliet", "on",
                 "-volume_date", "all_file_dates", "set_to_mtime", "-map", staging, "/", "-commit"],
                "writing %s" % final, env={"SOURCE_DATE_EPOCH": str(int(epoch))}, binary=binary)
        digest = sha256_file(tmp_iso)
        if os.path.exists(final):
            existing = sha256_file(final)
            if existing == digest:
                result["changed"] = False
            elif not force:
                raise MediaError("%s already exists with sha256 %s, but building %s %s now gives %s: a medium's "
                                 "name and version must never have two contents (raise the version, or force)" % (
                                     final, existing, name, version, digest))
        if result["changed"]:
            os.rename(tmp_iso, final)
            os.chmod(final, 0o644)
        with open(sums, "w") as handle:
            handle.write("%s  %s\n" % (digest, os.path.basename(final)))
    finally:
        if os.path.exists(tmp_iso):
            os.unlink(tmp_iso)
        for current, dirs, names in os.walk(staging):
            os.chmod(current, 0o755)
        shutil.rmtree(staging, ignore_errors=True)
    result.update(sha256=digest, size=os.path.getsize(final), checksums=sums)
    return result


def list_media(iso, binary="xorriso"):
    """Paths and sizes of the files on a medium (sorted)."""
    out = xorriso(["-indev", iso, "-find", "/", "-type", "f", "-exec", "lsdl", "--"], "listing %s" % iso, binary=binary)
    files = []
    for line in out.splitlines():
        match = re.match(r"^-\S+\s+\d+\s+\S+\s+\S+\s+(\d+)\s+.*?'(/.*)'$", line)
        if match:
            files.append({"path": match.group(2).lstrip("/"), "size": int(match.group(1))})
    return sorted(files, key=lambda f: f["path"])


def check_md5(iso, binary="xorriso"):
    """xorriso's own check: the session's and every file's MD5 recorded when the ISO was written."""
    out = xorriso(["-md5", "on", "-indev", iso, "-check_md5_r", "SORRY", "/", "--"], "checking the MD5 sums of %s" % iso,
                  binary=binary)
    if "File contents and their MD5 checksums match" not in out:
        raise MediaError("%s: xorriso did not confirm the MD5 checksums: %s" % (iso, out.strip()[-300:]))
    return True


def extract(iso, target, binary="xorriso"):
    """Extract the whole medium into target (a new or empty directory) and make it writable again."""
    os.makedirs(target, exist_ok=True)
    xorriso(["-osirrox", "on", "-indev", iso, "-extract", "/", target], "extracting %s" % iso, binary=binary)
    for current, dirs, names in os.walk(target):
        os.chmod(current, 0o755)
        for name in names:
            os.chmod(os.path.join(current, name), 0o644)


def verify_tree(root):
    """Check an extracted medium against MEDIA.json and SHA256SUMS; returns (manifest, problems)."""
    problems = []
    try:
        with open(os.path.join(root, MANIFEST), "rb") as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        return None, ["%s is missing or unreadable: %s" % (MANIFEST, exc)]
    if manifest.get("format") != MEDIA_FORMAT:
        problems.append("%s has format %r, expected %s" % (MANIFEST, manifest.get("format"), MEDIA_FORMAT))
    listed = {}
    try:
        with open(os.path.join(root, SUMS)) as handle:
            for line in handle:
                if line.strip():
                    digest, dummy, path = line.rstrip("\n").partition("  ")
                    listed[path] = digest
    except OSError as exc:
        problems.append("%s is missing: %s" % (SUMS, exc))
    for path, digest in sorted(listed.items()):
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            problems.append("%s is listed in %s but not on the medium" % (path, SUMS))
        elif sha256_file(full) != digest:
            problems.append("%s does not match its sha256 in %s" % (path, SUMS))
    for entry in manifest.get("files", []):
        if listed.get(entry["path"]) != entry["sha256"]:
            problems.append("%s: %s and %s disagree" % (entry["path"], MANIFEST, SUMS))
    on_medium = set()
    for current, dirs, names in os.walk(root):
        for name in names:
            on_medium.add(os.path.relpath(os.path.join(current, name), root))
    extra = sorted(on_medium - set(listed) - {SUMS})
    if extra:
        problems.append("files on the medium that no checksum covers: %s" % ", ".join(extra[:5]))
    return manifest, problems


def verify_media(iso, expected_sha256=None, extract_to=None, binary="xorriso"):
    """Verify a medium: its sha256, xorriso's MD5 check, and every file against SHA256SUMS and MEDIA.json.

    Extracts into extract_to (kept) or a temporary directory (removed). Returns a result dict with problems.
    """
    if not os.path.isfile(iso):
        raise MediaError("the medium %s does not exist" % iso)
    digest = sha256_file(iso)
    problems = []
    if expected_sha256 and digest != expected_sha256:
        problems.append("the medium has sha256 %s, expected %s" % (digest, expected_sha256))
    try:
        check_md5(iso, binary=binary)
        md5 = "match"
    except MediaError as exc:
        problems.append(str(exc))
        md5 = "mismatch"
    listing = list_media(iso, binary=binary)
    target = extract_to or tempfile.mkdtemp(prefix="esd-media-")
    try:
        if problems and md5 == "mismatch":
            manifest = None
        else:
            extract(iso, target, binary=binary)
            manifest, tree_problems = verify_tree(target)
            problems += tree_problems
    finally:
        if not extract_to:
            shutil.rmtree(target, ignore_errors=True)
    return {"path": iso, "sha256": digest, "size": os.path.getsize(iso), "md5_check": md5, "files": listing,
            "manifest": manifest, "problems": problems, "valid": not problems,
            "extracted_to": extract_to if extract_to and manifest is not None else None}
