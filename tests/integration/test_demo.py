"""The README's first command, `make demo` (scripts/demo.sh -> `esd demo`), run as a user runs it on a fleet of its
own: the fleet's history (install -> update -> roll back -> commit on 26 hosts), then the software_release change
order with its refused and given approvals, the beta group, the waves and the commit. What the demo prints is
checked against what the hosts report afterwards and against the ledger."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_runner_support import PRODUCTION, REPO, Fleet, active, backup, committed  # noqa: E402

pytestmark = pytest.mark.integration


def test_make_demo_runs_the_release_end_to_end_and_says_what_happened(tmp_path):
    fleet = Fleet(tmp_path)
    result = subprocess.run([os.path.join(REPO, "scripts", "demo.sh"), "--json"], cwd=REPO, env=fleet.env,
                            capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    story, status = result.stderr, json.loads(result.stdout)

    # The history, one line per step with the fleet's state after it, as the hosts reported it.
    history = dict(re.findall(r"^    (install hello-agent 1\.0\.0|update to a first build of 1\.1\.0|roll that update "
                              r"back|commit 1\.0\.0) +-> (.*)$", story, re.M))
    assert history == {
        "install hello-agent 1.0.0": "26 hosts, 26 changed: 26 active 1.0.0, backup none, committed none",
        "update to a first build of 1.1.0": "26 hosts, 26 changed: 26 active 1.1.0, backup 1.0.0, committed none",
        "roll that update back": "26 hosts, 26 changed: 26 active 1.0.0, backup none, committed none",
        "commit 1.0.0": "26 hosts, 26 changed: 26 active 1.0.0, backup none, committed 1.0.0"}

    # Separation of duties is shown refusing, then the right people decide.
    assert "refused: separation of duties: bob built the artifact of change order" in story
    assert re.search(r"refused: .*alice requested change order", story)
    for who, gate in (("carol", "test_signoff"), ("dave", "change_board"), ("alice", "client_acceptance")):
        assert "gate %s of %s approved by %s" % (gate, status["change_order"], who) in story
    assert "-> SUCCEEDED: change order %s succeeded" % status["change_order"] in story
    assert re.search(r"esd log %s --verify: \d+ records, hash chain intact" % re.escape(status["change_order"]), story)

    # The status report the demo ends with, and the ledger it names.
    assert status["status"] == "succeeded"
    assert len(status["endpoints"]) == 24
    assert os.path.isfile(os.path.join(fleet.ledger, status["change_order"], "state.json"))
    assert fleet.esd("log", status["change_order"], "--verify").returncode == 0

    # The hosts themselves: 1.1.0 committed in production (no backup left), the test site back on 1.0.0.
    fleet.root = os.path.join(fleet.root, "esd-demo")
    production = fleet.software("production")
    assert {host: (active(r), backup(r), committed(r)) for host, r in production.items()} == {
        host: ("1.1.0", None, "1.1.0") for host in PRODUCTION}
    assert {host: (active(r), committed(r)) for host, r in fleet.software("test_site").items()} == {
        "test-01": ("1.0.0", "1.0.0"), "test-02": ("1.0.0", "1.0.0")}
