"""Helpers for the esd runner's integration tests (real ansible-runner runs on the demo fleet).

Every test gets its own fleet (ESD_DEMO_ROOT) and ledger (ESD_LEDGER) under pytest's tmp_path, so
tests never touch the shared <repo>/.demo and can run in any order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "runner"))

from esd import demo, project  # noqa: E402

DEMO_INVENTORY = os.path.join(REPO, "inventories", "demo")
PRODUCTION = ["prod-%03d" % number for number in range(1, 25)]


def fleet_environment(root, ledger):
    """The environment `esd` and ansible run with for one test fleet: its host roots and ledger, this project's
    Ansible settings, and nothing of the caller's identity or site configuration."""
    env = dict(os.environ)
    env.update(project.ansible_environment(REPO))
    env.update(ESD_DEMO_ROOT=root, ESD_LEDGER=ledger, ESD_PROJECT_DIR=REPO)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "runner"), os.path.join(REPO, "collections")]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for name in ("ESD_USER", "ESD_SITE_CONFIG", "ESD_HOME"):
        env.pop(name, None)
    return env


class EsdCommands:
    """`esd` as a user runs it (a subprocess with the fleet's environment) and the change orders it is given.
    Needs ``env`` and ``change_orders``."""

    esd_timeout = 900

    def command(self, *args):
        return [sys.executable, "-m", "esd.cli", *args]

    def esd(self, *args, user=None, extra_env=None, timeout=None):
        env = dict(self.env)
        if user:
            env["ESD_USER"] = user
        env.update(extra_env or {})
        return subprocess.run(self.command(*args), env=env, capture_output=True, text=True,
                              timeout=timeout or self.esd_timeout, cwd=REPO, stdin=subprocess.DEVNULL)

    def esd_json(self, *args, expect_rc=0, **kwargs):
        result = self.esd(*args, "--json", **kwargs)
        assert result.returncode == expect_rc, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
        return json.loads(result.stdout)

    def write(self, document, name):
        os.makedirs(self.change_orders, exist_ok=True)
        path = os.path.join(self.change_orders, name)
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(document, handle, sort_keys=False)
        return path


class Fleet(EsdCommands):
    """One test's demo fleet, ledger and `esd` command."""

    def __init__(self, tmp_path):
        self.root = str(tmp_path / "fleet")
        self.ledger = str(tmp_path / "ledger")
        self.change_orders = str(tmp_path / "change_orders")
        self.env = fleet_environment(self.root, self.ledger)

    def seed(self):
        """The estate before the change: hello-agent 1.0.0 committed on the test site and in production."""
        return demo.seed_fleet(REPO, self.root)

    def release(self, change_order_id, **spec_changes):
        """The demo's software_release change order with a unique id; ``spec_changes`` replace spec keys."""
        path = demo.prepare_change_order(REPO, self.change_orders, change_order_id)
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        for key, value in spec_changes.items():
            if value is None:
                document["spec"].pop(key, None)
            else:
                document["spec"][key] = value
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(document, handle, sort_keys=False)
        return path

    def software(self, pattern="production", name="hello-agent"):
        """{host: package record or None} read from the hosts with esd.osp.software_info (not the ledger)."""
        import ansible_runner

        private = os.path.join(os.path.dirname(self.root), "probe-%d" % len(os.listdir(os.path.dirname(self.root))))
        os.makedirs(private)
        found = {}

        def handler(event):
            if event.get("event") == "runner_on_ok":
                data = event["event_data"]
                packages = [p for p in data["res"].get("packages", []) if p["name"] == name]
                found[data["host"]] = packages[0] if packages else None
            return True

        env = project.ansible_environment(REPO)
        env["ESD_DEMO_ROOT"] = self.root
        result = ansible_runner.run(private_data_dir=private, inventory=DEMO_INVENTORY, host_pattern=pattern,
                                    module="esd.osp.software_info",
                                    module_args='name=%s root="{{ software_root }}"' % name,
                                    envvars=env, quiet=True, event_handler=handler)
        assert result.status == "successful", result.stats
        return found

    def state(self, change_order_id):
        with open(os.path.join(self.ledger, change_order_id, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def audit(self, change_order_id):
        with open(os.path.join(self.ledger, change_order_id, "audit.jsonl"), encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def stage_starts(self, change_order_id):
        return [r["data"]["stage"] for r in self.audit(change_order_id) if r["event"] == "stage_started"]


def active(record):
    return record["active"] if record else None


def committed(record):
    return record["committed"] if record else None


def backup(record):
    return record["backups"][0] if record and record.get("backups") else None


@pytest.fixture
def fleet(tmp_path):
    return Fleet(tmp_path)


@pytest.fixture
def seeded_fleet(fleet):
    """A fleet running the baseline hello-agent 1.0.0 (committed) on the test site and in production."""
    fleet.seed()
    return fleet
