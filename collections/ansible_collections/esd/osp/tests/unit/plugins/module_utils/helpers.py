# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers that make real package sources and artifacts in a temporary directory."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.esd.osp.plugins.module_utils import _artifact


def write_source(base, name="demo", version="1.0.0", health="exit 0", files=None, hooks=None, extra_spec=""):
    """Create a package source dir and return its path. `health` is the health_check script body."""
    src = os.path.join(str(base), "src-%s-%s" % (name, version))
    os.makedirs(os.path.join(src, "payload", "bin"))
    os.makedirs(os.path.join(src, "hooks"))
    files = files if files is not None else {"bin/tool": "#!/bin/sh\necho %s %s\n" % (name, version), "etc/tool.conf": "v=%s\n" % version}
    for rel, content in files.items():
        path = os.path.join(src, "payload", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(content)
        os.chmod(path, 0o755 if rel.startswith("bin/") else 0o644)
    hooks = dict(hooks or {})
    hooks.setdefault("health_check", health)
    hook_lines = []
    for hook, body in hooks.items():
        path = os.path.join(src, "hooks", hook + ".sh")
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, 0o755)
        hook_lines.append("  %s: hooks/%s.sh" % (hook, hook))
    with open(os.path.join(src, "package.yml"), "w") as handle:
        handle.write(textwrap.dedent("""\
            name: %s
            version: "%s"
            description: test package
            payload: payload
            hooks:
            """ % (name, version)) + "\n".join(hook_lines) + "\n" + extra_spec)
    return src


def build(src, dest, builder="bob"):
    os.makedirs(dest, exist_ok=True)
    return _artifact.build_package(src, dest, yaml.safe_load, builder)


def run_module(module, capsys, **args):
    """Run a module's main() with args (plus _ansible_check_mode/_ansible_diff); return its JSON result and rc."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exit_info.value.code
    return result
