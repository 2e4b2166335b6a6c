# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable file writes shared by the collection's module_utils (standard library only)."""

from __future__ import annotations

import hashlib
import os
import tempfile

CHUNK = 1024 * 1024


def write_atomic(path, data, mode=0o644):
    """Write bytes to `path` so readers see the old or the new content, never half of it.

    The bytes go to a temporary file in the same directory (created if missing) with `mode`, are
    fsynced, renamed over `path`, and the directory entry is fsynced too.
    """
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sha256_file(path):
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
