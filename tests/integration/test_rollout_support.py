"""Helpers for the rollout integration tests: generated demo fleets, a depot, built artifacts.

A fleet here is an inventory in the test's tmp dir with N production hosts (local connection, one
install root each, like inventories/demo), a ledger and the environment to run `esd` on it. Hosts are
made to fail on purpose through their inventory variables:

    esd_site: missing | corrupt     the depot answers 404 / wrong bytes (download / checksum failure)
    unreachable                     ssh to 127.0.0.1 port 9 (nothing listens): UNREACHABLE
    health                          $root/etc/hello-agent/fail-health-check makes the health check fail
    io                              the package's state lock is a directory: an I/O error (manual)
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "runner"))

from esd import project  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_runner_support import EsdCommands, fleet_environment  # noqa: E402

PACKAGES = os.path.join(REPO, "examples", "packages")


class Depot:
    """An HTTP depot on 127.0.0.1 serving /<site>/<file>: site "missing" answers 404, "corrupt" wrong bytes."""

    def __init__(self, files):
        self.files = files             # name -> bytes
        self.requests = []
        depot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                site, _, name = self.path.lstrip("/").partition("/")
                depot.requests.append((site, name))
                body = depot.files.get(name)
                if body is None or site == "missing":
                    self.send_response(404)
                    self.end_headers()
                    return
                if site == "corrupt":
                    body = body[:-64] + b"\0" * 64
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def build_artifacts(directory, env):
    """hello-agent 1.0.0 and 1.1.0 built with esd.osp.package: {version: {path, sha256, name}}."""
    os.makedirs(directory, exist_ok=True)
    built = {}
    for source, version in (("hello-agent-1.0", "1.0.0"), ("hello-agent-1.1", "1.1.0")):
        result = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-m", "esd.osp.package", "-a",
             "src=%s dest=%s" % (os.path.join(PACKAGES, source), directory), "-o"],
            env=dict(env, SOURCE_DATE_EPOCH="1700000000"), capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr
        data = json.loads(result.stdout.split("=>", 1)[1])
        built[version] = {"path": data["path"], "sha256": data["sha256"], "name": os.path.basename(data["path"])}
    return built


class RolloutFleet(EsdCommands):
    """A generated fleet (inventory, host roots, ledger) and the `esd` command for it."""

    esd_timeout = 1200          # a 100-host rollout

    def __init__(self, tmp_path, count, depot=None, prefix="prod"):
        self.base = str(tmp_path)
        self.root = os.path.join(self.base, "fleet")
        self.inventory = os.path.join(self.base, "inventory")
        self.ledger = os.path.join(self.base, "ledger")
        self.change_orders = os.path.join(self.base, "change_orders")
        self.hosts = ["%s-%03d" % (prefix, number) for number in range(1, count + 1)]
        self.depot = depot
        self.host_vars = {}
        self.env = fleet_environment(self.root, self.ledger)
        self.write_inventory()

    # --- inventory ------------------------------------------------------------------------------

    def write_inventory(self):
        os.makedirs(os.path.join(self.inventory, "group_vars"), exist_ok=True)
        os.makedirs(os.path.join(self.inventory, "host_vars"), exist_ok=True)
        document = {"all": {"children": {
            "test_site": {"hosts": {"test-01": None, "test-02": None}},
            "production": {"hosts": {host: None for host in self.hosts}}}}}
        with open(os.path.join(self.inventory, "hosts.yml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(document, handle)
        variables = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "software_root": "%s/hosts/{{ inventory_hostname }}" % self.root, "esd_site": "good"}
        with open(os.path.join(self.inventory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(variables, handle)

    def set_host_vars(self, host, **variables):
        """Replace a host's inventory variables (the inventory is read again by every stage)."""
        path = os.path.join(self.inventory, "host_vars", "%s.yml" % host)
        if variables:
            with open(path, "w", encoding="utf-8") as handle:
                yaml.safe_dump(variables, handle)
        elif os.path.exists(path):
            os.unlink(path)

    def unreachable(self, host):
        self.set_host_vars(host, ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=9,
                           ansible_ssh_common_args="-o ConnectTimeout=5 -o BatchMode=yes")

    def depot_site(self, host, site):
        self.set_host_vars(host, esd_site=site)

    def host_root(self, host):
        return os.path.join(self.root, "hosts", host)

    def fail_health_check(self, host):
        path = os.path.join(self.host_root(host), "etc", "hello-agent")
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "fail-health-check"), "w").close()

    def break_state_lock(self, host):
        """The package's lock file path becomes a directory: esd.osp.software fails with an I/O error."""
        lock = os.path.join(self.host_root(host), "var", "lib", "esd", "software", ".hello-agent.lock")
        if os.path.isfile(lock):
            os.unlink(lock)
        os.makedirs(lock, exist_ok=True)

    # --- running ----------------------------------------------------------------------------------

    def playbook(self, playbook, extravars, limit=None):
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                   os.path.join(REPO, "playbooks", playbook), "-e", json.dumps(extravars)]
        if limit:
            command += ["--limit", limit]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=REPO,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        return result

    def seed(self, artifact, version="1.0.0", pattern="test_site:production"):
        """hello-agent 1.0.0 committed everywhere: the estate before the change."""
        self.playbook("deploy.yml", {"esd_hosts": pattern, "software_name": "hello-agent", "software_version": version,
                                     "software_src": artifact["path"], "software_sha256": artifact["sha256"],
                                     "software_state": "committed"})

    def change_order(self, change_order_id, type_id, **spec):
        document = {"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                    "metadata": {"id": change_order_id, "title": "integration: %s" % type_id, "requester": "alice",
                                 "requested_completion": "2030-01-01"},
                    "spec": {"type": type_id, "targets": {"inventory": self.inventory, "hosts": "production"},
                             "backout": {"plan": "roll back the failed endpoints (rollback_update)"}}}
        document["spec"].update(spec)
        return self.write(document, "%s.yml" % change_order_id)

    def software(self, pattern="production", name="hello-agent"):
        """{host: package record or None} read from the hosts with esd.osp.software_info (not from the ledger)."""
        import ansible_runner

        private = os.path.join(self.base, "probe-%d" % len([d for d in os.listdir(self.base)
                                                            if d.startswith("probe-")]))
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
        ansible_runner.run(private_data_dir=private, inventory=self.inventory, host_pattern=pattern,
                           module="esd.osp.software_info", module_args='name=%s root="{{ software_root }}"' % name,
                           envvars=env, quiet=True, event_handler=handler)
        return found

    def state(self, change_order_id):
        with open(os.path.join(self.ledger, change_order_id, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def audit(self, change_order_id):
        with open(os.path.join(self.ledger, change_order_id, "audit.jsonl"), encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def stage_starts(self, change_order_id):
        return [r["data"]["stage"] for r in self.audit(change_order_id) if r["event"] == "stage_started"]

    def limit_file(self, change_order_id, label, klass):
        path = os.path.join(self.ledger, change_order_id, "triage", label, "%s.limit" % klass)
        with open(path, encoding="utf-8") as handle:
            return handle.read().split()

    def problems(self, change_order_id):
        path = os.path.join(self.ledger, change_order_id, "problems.jsonl")
        records = {}
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)
                records[item["record"]["id"]] = item["record"]
        return records


def active(record):
    return record["active"] if record else None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    env = dict(os.environ)
    env.update(project.ansible_environment(REPO))
    return build_artifacts(str(tmp_path_factory.mktemp("artifacts")), env)


@pytest.fixture(scope="module")
def depot(artifacts):
    files = {}
    for artifact in artifacts.values():
        with open(artifact["path"], "rb") as handle:
            files[artifact["name"]] = handle.read()
    server = Depot(files)
    yield server
    server.close()
