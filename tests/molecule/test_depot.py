"""Depot distribution on real podman containers (molecule scenario molecule/depot).

converge: signing keys, promotions build -> test -> production on a repository host, nginx on the repository
host and on a depot (role esd.osp.depot), playbooks/distribute.yml, two targets installing from the depot with
the sha256 pin of the verified index; idempotence. side_effect: a sync killed part-way (after more than 16 MiB of
the 96 MiB medium) and resumed; a blob corrupted on the depot, refused by the targets, repaired by the next sync.
verify: testinfra.
"""

import json

import pytest

pytestmark = pytest.mark.molecule


def test_depot_distribution(run_molecule, tmp_path):
    report = tmp_path / "depot-show.json"
    run_molecule("depot", env={"ESD_DEPOT_SHOW_REPORT": str(report)}, timeout=2400)
    figures = json.loads(report.read_text())

    interrupted = figures["interrupted"]
    size, partial = int(interrupted["medium_size"]), int(interrupted["partial_bytes"])
    # killed part-way: some but not all of the medium had arrived, and the resume fetched only the rest
    assert 0 < partial < size
    # the corrupted blob was refused by every target at checksum verification, then repaired by one sync
    assert set(figures["refusals"]) == {"esd-depot-target01", "esd-depot-target02"}
    assert all("Checksum mismatch" in msg for msg in figures["refusals"].values())
    assert figures["repair"]["blobs_repaired"] == 1
    assert set(figures["installed_after_repair"].values()) == {"1.1.0"}
    print("killed after %d of %d bytes (%.0f%%); resumed the remaining %d bytes" % (
        partial, size, 100.0 * partial / size, size - partial))
