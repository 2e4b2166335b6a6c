"""Who is acting (``--as``, else ``ESD_USER``, else the operating-system user), and when two names are one
identity: without regard to case, everywhere (separation of duties, approver lists, the validator), so that
``Alice`` in a change order and ``alice`` at the command line are the same person to every rule."""

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


def same(one, other):
    """Whether two identities are one person: Bob and bob are."""
    return bool(one and other) and one.casefold() == other.casefold()


def among(name, names):
    """Whether ``name`` is one of ``names`` (compared as identities, see ``same``)."""
    return any(same(name, other) for other in names or ())
