"""Who is acting: ``--as``, else ``ESD_USER``, else the operating-system user."""

from __future__ import annotations

import getpass
import os
import re

from esd.errors import UsageError

IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
SYSTEM = "esd"     # the runner itself, for automatic decisions (go/no-go by criteria)


def current(explicit=None):
    for candidate, origin in ((explicit, "--as"), (os.environ.get("ESD_USER"), "ESD_USER")):
        if candidate:
            if not IDENTITY_RE.match(candidate):
                raise UsageError("%s: %r is not an identity (letters, digits and . _ @ + -)" % (origin, candidate))
            return candidate
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "uid-%d" % os.getuid()
