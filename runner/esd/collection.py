"""Import the esd.osp collection's controller-side plugin code (filters) from the runner.

The runner and the playbooks must split rollouts and triage endpoints the same way, so the runner
uses the collection's own filter modules (``esd.osp.waves``, ``esd.osp.triage``) instead of a copy.
They import from ``ansible_collections.esd.osp`` - through Ansible's collection loader when it is
active, else from the project's ``collections/`` directory.
"""

from __future__ import annotations

import importlib
import os
import sys

from esd import project

PACKAGE = "ansible_collections.esd.osp.plugins"


def plugin(name):
    """The module ``plugins/<name>`` of the esd.osp collection, e.g. ``plugin("filter.triage")``."""
    try:
        return importlib.import_module("%s.%s" % (PACKAGE, name))
    except ImportError:
        path = os.path.join(project.project_dir(), "collections")
        if path not in sys.path:
            sys.path.append(path)
            importlib.invalidate_caches()
        return importlib.import_module("%s.%s" % (PACKAGE, name))
