# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virus scanning with ClamAV's clamscan (standard library only)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

_FOUND = re.compile(r"^(?P<path>.*): (?P<signature>\S+) FOUND$")
# Where clamscan looks without --database (Debian's clamav package, freshclam's DatabaseDirectory).
DEFAULT_DATABASE = "/var/lib/clamav"
# The files ClamAV loads from a database directory; the rest (freshclam.dat, mirrors.dat, lock files)
# is freshclam's bookkeeping, which changes on every run without changing a single signature.
SIGNATURE_SUFFIXES = (
    ".cvd", ".cld", ".cud", ".cat", ".cbc", ".cdb", ".cfg", ".crb", ".db", ".fp", ".ftm", ".gdb", ".hdb", ".hdu",
    ".hsb", ".hsu", ".idb", ".ign", ".ign2", ".imp", ".info", ".ioc", ".ldb", ".ldu", ".mdb", ".mdu", ".msb",
    ".msu", ".ndb", ".ndu", ".pdb", ".pwdb", ".sdb", ".sfp", ".sign", ".wdb", ".yar", ".yara",
)


class ScanError(Exception):
    """The scan could not run, or it found something."""

    def __init__(self, msg, infected=None, rc=None, output=""):
        super(ScanError, self).__init__(msg)
        self.msg = msg
        self.infected = infected or []
        self.rc = rc
        self.output = output


def clamscan_version(clamscan):
    try:
        proc = subprocess.run([clamscan, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise ScanError("Cannot run %s: %s (install the clamav package)" % (clamscan, exc))
    return proc.stdout.decode("utf-8", "replace").strip()


def engine_version(version_output):
    """The program part of ``clamscan --version`` ("ClamAV 1.4.6/27400/Mon Sep 9 ..." -> "ClamAV 1.4.6").

    The rest is the version and date of the *default* database, which says nothing about a database
    given with --database and changes with every freshclam run.
    """
    return version_output.split("/", 1)[0].strip()


def database_digest(database):
    """A sha256 over the signature files of a database (a file, or a directory's signature files).

    It names the signatures a scan used without naming where they were: each file counts by its name
    (ClamAV picks the format from the extension) and content, never by its path.
    """
    if os.path.isdir(database):
        files = sorted(name for name in os.listdir(database) if name.endswith(SIGNATURE_SUFFIXES)
                       and os.path.isfile(os.path.join(database, name)))
        paths = [os.path.join(database, name) for name in files]
    else:
        files, paths = [os.path.basename(database.rstrip("/"))], [database]
    digest = hashlib.sha256()
    for name, path in zip(files, paths):
        digest.update(("%s %s\n" % (name, sha256_file(path))).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def scan(path, clamscan="clamscan", database=None, timeout=3600):
    """Scan `path` (a file, archive or directory tree). Returns a result dict; raises ScanError on detection.

    clamscan exits 0 when clean, 1 when something was found and 2 on errors (for example no signature
    database); every outcome other than a clean scan raises.
    """
    if not os.path.exists(path):
        raise ScanError("Cannot scan %s: no such file or directory" % path)
    if database and not os.path.exists(database):
        raise ScanError("Cannot scan %s: signature database %s does not exist" % (path, database))
    engine = engine_version(clamscan_version(clamscan))
    command = [clamscan, "--recursive", "--infected", "--no-summary", "--stdout"]
    if database:
        command.append("--database=%s" % database)
    command.append(path)
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ScanError("Virus scan of %s did not finish within %ss" % (path, timeout))
    output = proc.stdout.decode("utf-8", "replace")
    errors = proc.stderr.decode("utf-8", "replace").strip()
    infected = []
    for line in output.splitlines():
        match = _FOUND.match(line.strip())
        if match:
            infected.append({"path": match.group("path"), "signature": match.group("signature")})
    used = database or DEFAULT_DATABASE
    result = {"path": path, "engine": engine, "database": database, "infected": infected, "command": command,
              "database_sha256": database_digest(used) if os.path.exists(used) else None}
    if proc.returncode == 1 or infected:
        listing = ", ".join("%s (%s)" % (item["path"], item["signature"]) for item in infected)
        raise ScanError("Virus scan of %s found %d infected file(s): %s" % (path, len(infected), listing),
                        infected=infected, rc=proc.returncode, output=output)
    if proc.returncode != 0:
        raise ScanError("Virus scan of %s could not run (clamscan exited %d): %s" % (
            path, proc.returncode, errors.splitlines()[-1] if errors else output.strip()), rc=proc.returncode, output=errors)
    return result
