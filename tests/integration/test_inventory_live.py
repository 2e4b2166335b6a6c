"""`esd inventory --live` reads real hosts with playbooks/audit.yml: the packages esd.osp.software_info reports
and the OS image each host runs (the manifest an esd.osp image embeds at /etc/esd/image.json)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import fleet, seeded_fleet  # noqa: E402,F401

pytestmark = pytest.mark.integration


def test_live_inventory_reads_packages_and_the_running_image(seeded_fleet):
    fleet = seeded_fleet
    # prod-001 runs an esd.osp image (its embedded manifest, as esd.osp.image writes it); prod-002 runs none.
    manifest = os.path.join(fleet.root, "hosts", "prod-001", "etc", "esd", "image.json")
    os.makedirs(os.path.dirname(manifest))
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump({"format": "esd.osp/image/v1", "family": "debian12-server", "version": "1.1.0",
                   "parent": {"family": "debian12-server", "version": "1.0.0", "sha256": "f" * 64}}, handle)

    view = fleet.esd_json("inventory", "--live", "--hosts", "prod-001,prod-002")
    assert view["source"] == "live"
    assert sorted(view["hosts"]) == ["prod-001", "prod-002"]
    assert view["hosts"]["prod-001"]["image"] == {"family": "debian12-server", "version": "1.1.0", "parent": "1.0.0"}
    assert view["hosts"]["prod-002"]["image"] is None
    for host in ("prod-001", "prod-002"):
        package = view["hosts"][host]["packages"]["hello-agent"]
        assert (package["active"], package["committed"]) == ("1.0.0", "1.0.0")
    assert view["images"] == [{"image": "debian12-server 1.1.0", "count": 1, "hosts": ["prod-001"]}]
    assert view["versions"]["hello-agent"] == [{"state": "1.0.0 committed", "count": 2,
                                                "hosts": ["prod-001", "prod-002"]}]

    # A manifest that is not JSON is reported as such, not taken for "no image".
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    view = fleet.esd_json("inventory", "--live", "--hosts", "prod-001")
    assert view["hosts"]["prod-001"]["image"]["error"] == "unreadable /etc/esd/image.json"
