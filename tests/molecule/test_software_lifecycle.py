"""The package lifecycle on two real podman containers, one molecule step at a time.

For every step (install, activate, update, broken, rollback, commit, remove) the scenario is converged,
converged again to prove idempotence, and verified from outside the containers with testinfra
(molecule/software/tests/test_software.py reads the same ESD_MOLECULE_STEP).
"""

import pytest

pytestmark = pytest.mark.molecule

STEPS = ["install", "activate", "update", "broken", "rollback", "commit", "remove"]


@pytest.fixture(scope="module")
def scenario(run_molecule):
    run_molecule("software", "destroy")
    run_molecule("software", "create")
    yield run_molecule
    run_molecule("software", "destroy")


@pytest.mark.parametrize("step", STEPS)
def test_step(scenario, step):
    env = {"ESD_MOLECULE_STEP": step, "ANSIBLE_NOCOLOR": "1"}
    converge = scenario("software", "converge", env=env)
    scenario("software", "idempotence", env=env)
    scenario("software", "verify", env=env)
    if step == "broken":
        # the health check failed on both nodes; the rescue asserted the revert, nothing else failed
        assert converge.stdout.count("rescued=1") == 2, converge.stdout[-3000:]
        assert "failed=0" in converge.stdout
