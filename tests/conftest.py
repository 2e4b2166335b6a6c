"""Fixtures shared by the repository-level tests (everything under tests/).

The tests expect the environment of scripts/env.sh (make test sources it); `project_env`
provides that environment explicitly for subprocesses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "localhost/esd-debian12:latest"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin(repo_root: Path) -> Path:
    """The project venv's bin directory (ansible-playbook, molecule, esd, ...)."""
    path = repo_root / ".venv" / "bin"
    if not (path / "python").exists():
        pytest.fail(f"{path} does not exist: run scripts/bootstrap.sh", pytrace=False)
    return path


@pytest.fixture(scope="session")
def project_env(repo_root: Path, venv_bin: Path) -> dict[str, str]:
    """os.environ plus what scripts/env.sh exports, for subprocesses."""
    result = subprocess.run(
        ["bash", "-c", 'source scripts/env.sh && exec env -0'],
        cwd=repo_root, capture_output=True, check=True, stdin=subprocess.DEVNULL,
    )
    env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    for name in ("_", "SHLVL", "OLDPWD"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def podman_image(repo_root: Path, project_env: dict[str, str]) -> str:
    """The podman test image, built by scripts/build-test-image.sh if needed; returns its name.

    Tests that need containers fail (never skip) when podman is unusable: a green run
    must mean that the container tests ran.
    """
    if shutil.which("podman", path=project_env.get("PATH")) is None:
        pytest.fail("podman is not installed: run scripts/bootstrap.sh --test", pytrace=False)
    result = subprocess.run(
        [str(repo_root / "scripts" / "build-test-image.sh")],
        env=project_env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(
            f"podman is unusable or the test image {TEST_IMAGE} cannot be built "
            f"(scripts/build-test-image.sh exited {result.returncode}):\n{result.stderr}{result.stdout}",
            pytrace=False,
        )
    return TEST_IMAGE


@pytest.fixture(scope="session")
def run_molecule(repo_root: Path, project_env: dict[str, str], podman_image: str):
    """Run a molecule command on a scenario in molecule/, failing the test with its output on error.

        def test_software(run_molecule):
            run_molecule("software")                    # molecule test -s software
            run_molecule("software", "converge", env={"ESD_MOLECULE_STEP": "install"})
    """

    def run(scenario: str, command: str = "test", *args: str, env: dict[str, str] | None = None,
            timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        if not (repo_root / "molecule" / scenario / "molecule.yml").is_file():
            pytest.fail(f"no molecule scenario named {scenario!r} in {repo_root / 'molecule'}", pytrace=False)
        result = subprocess.run(
            ["molecule", command, "-s", scenario, *args],
            cwd=repo_root, env={**project_env, "NO_COLOR": "1", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout,
        )
        if result.returncode != 0:
            pytest.fail(
                f"molecule {command} -s {scenario} exited {result.returncode}:\n{result.stdout[-20000:]}",
                pytrace=False,
            )
        return result

    return run


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show which environment the run used: the first thing to check when CI and a laptop disagree."""
    return [
        f"esd: CONTAINERS_CONF={os.environ.get('CONTAINERS_CONF', '(unset: source scripts/env.sh)')}",
        f"esd: ANSIBLE_COLLECTIONS_PATH={os.environ.get('ANSIBLE_COLLECTIONS_PATH', '(unset)')}",
    ]
