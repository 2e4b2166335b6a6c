"""ansible-test sanity on the esd.osp collection (scripts/ansible-test-sanity.sh).

The first run on a machine installs the sanity tests' requirements from PyPI (about a minute);
later runs reuse ansible-test's cached virtual environments.
"""

import subprocess

import pytest

pytestmark = pytest.mark.quality

# pip's chatter while ansible-test prepares its venvs; dropped from the failure message.
PIP_NOISE = (
    "WARNING: Location ", "Looking in ", "Collecting ", "Downloading ", "Processing ", "Using cached ",
    "Requirement already ", "Installing collected ", "Successfully ", "Attempting uninstall",
    "Found existing ", "Uninstalling ", "━",
)


def test_ansible_test_sanity(repo_root, venv_bin, project_env):
    result = subprocess.run(
        [str(repo_root / "scripts" / "ansible-test-sanity.sh")],
        cwd=repo_root, env=project_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, stdin=subprocess.DEVNULL, timeout=2400,
    )
    findings = "\n".join(
        line for line in result.stdout.splitlines() if not line.strip().startswith(PIP_NOISE)
    )
    exit_code = result.returncode
    assert exit_code == 0, f"ansible-test sanity exited {exit_code}:\n{findings}"
