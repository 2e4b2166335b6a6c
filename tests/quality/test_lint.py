"""ansible-lint, production profile, on everything Ansible in the repository.

Covers playbooks/, roles/, the collection's roles and plugins' docs, inventories and molecule
scenarios; what is excluded and why is in .ansible-lint.
"""

import subprocess

import pytest

pytestmark = pytest.mark.quality


def test_ansible_lint_production_profile(repo_root, venv_bin, project_env):
    result = subprocess.run(
        [str(venv_bin / "ansible-lint"), "--profile", "production", "--nocolor"],
        cwd=repo_root, env=project_env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=1200,
    )
    exit_code = result.returncode
    assert exit_code == 0, f"ansible-lint --profile production exited {exit_code}:\n{result.stdout}\n{result.stderr}"
