"""A/B in-place image update with rollback on real podman nodes (molecule scenario molecule/image_ab).

Step by step - install 1.0.0, update to 1.1.0 (1.0.0 kept in the other slot), roll back, a broken update whose
health check fails (the node switches back by itself), update again, commit (the old slot is freed), remove -
each step converged, converged again to prove idempotence, and verified from outside with testinfra.
The two images come from /var/tmp/esd-test-images (left by tests/integration/test_image_build.py for this code);
when they are not there, the scenario's prepare step builds them.
"""

import os
import sys
import subprocess

import pytest

pytestmark = pytest.mark.molecule

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.images import shared_images  # noqa: E402

STEPS = ["install", "update", "rollback", "broken", "update", "commit", "remove"]


@pytest.fixture(scope="module")
def scenario(repo_root, project_env, podman_image):
    env = dict(project_env, NO_COLOR="1", ESD_IMAGE_AB_IMAGES=shared_images(repo_root))

    def molecule(command, step=None):
        run_env = dict(env, ESD_MOLECULE_STEP=step) if step else env
        return subprocess.run(["molecule", command, "-s", "image_ab"], cwd=repo_root, env=run_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=2400,
                              stdin=subprocess.DEVNULL)

    prepared = molecule("prepare")
    assert prepared.returncode == 0, prepared.stdout[-6000:]
    yield molecule
    molecule("cleanup")
    molecule("destroy")


def test_ab_update_rollback_commit_step_by_step(scenario):
    for step in STEPS:
        outputs = {}
        for command in ("converge", "idempotence", "verify"):
            proc = scenario(command, step)
            outputs[command] = proc.stdout
            assert proc.returncode == 0, "step %s, molecule %s failed:\n%s" % (step, command, proc.stdout[-6000:])
        if step == "broken":
            # the failed health check switched the node back, and the rescue asserted it
            assert "rescued=1" in outputs["converge"].replace(" ", ""), outputs["converge"][-3000:]
