"""Where the project lives (playbooks, collections, ansible.cfg) and the environment its playbooks need.

The project directory is ``ESD_PROJECT_DIR`` when set, else the repository this package was loaded
from (``runner/esd`` -> two levels up), else the working directory when it holds ``playbooks/``.
"""

from __future__ import annotations

import os
import sys
import sysconfig

from esd.errors import UsageError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def project_dir():
    explicit = os.environ.get("ESD_PROJECT_DIR")
    if explicit:
        if not os.path.isdir(os.path.join(explicit, "playbooks")):
            raise UsageError("ESD_PROJECT_DIR=%s has no playbooks/ directory" % explicit)
        return os.path.abspath(explicit)
    for candidate in (os.path.dirname(os.path.dirname(_PACKAGE_DIR)), os.getcwd()):
        if os.path.isdir(os.path.join(candidate, "playbooks")):
            return candidate
    raise UsageError("cannot find the esd.osp project (no playbooks/ next to the esd package or in the working "
                     "directory); set ESD_PROJECT_DIR")


def demo_root(project=None):
    return os.path.abspath(os.environ.get("ESD_DEMO_ROOT") or os.path.join(project or project_dir(), ".demo"))


def ansible_environment(project=None):
    """Environment variables every ansible-runner stage gets (and in-process inventory parsing uses)."""
    project = project or project_dir()
    collections = [os.path.join(project, "collections")]
    # Collections shipped in the Python environment (the `ansible` package), after the project's own.
    site_packages = sysconfig.get_paths().get("purelib")
    if site_packages:
        collections.append(site_packages)
    extra = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
    if extra:
        collections.extend(path for path in extra.split(os.pathsep) if path and path not in collections)
    roles = [os.path.join(project, "roles"), os.path.join(project, "collections", "ansible_collections", "esd",
                                                           "osp", "roles")]
    python_bin = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    env = {
        "ANSIBLE_CONFIG": os.path.join(project, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(collections),
        "ANSIBLE_ROLES_PATH": os.pathsep.join(roles),
        # ansible-runner starts `ansible-playbook` by name: use the one next to this interpreter.
        "PATH": python_bin + (os.pathsep + path if path else ""),
        "ESD_DEMO_ROOT": demo_root(project),
        "ESD_PROJECT_DIR": project,
    }
    return env


def configure_ansible_environment(project=None):
    """Make in-process Ansible (inventory parsing) see the same configuration as the stages."""
    for key, value in ansible_environment(project).items():
        if key in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH"):
            os.environ.setdefault(key, value)
        elif key == "ESD_DEMO_ROOT":
            os.environ.setdefault(key, value)
