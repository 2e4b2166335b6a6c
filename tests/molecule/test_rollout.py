"""A production rollout on six podman containers, driven by the esd runner (molecule scenario "rollout").

Production is node1 (the beta group) and node2-node6; node1 first rehearses the backout (test_package).
The install of hello-agent 1.1.0 runs: beta -> automatic go/no-go (soak, health-check playbook, URL check)
-> wave 1 (node2, node3) -> wave 2 (node4, node5, node6) -> triage -> backout review -> backout -> verdict.
node3's health check fails after its install unpacked; node5 is stopped during the go/no-go soak and started
again before the backout. The triage must name exactly those two, the backout must leave node3 on 1.0.0 and
redistribute to node5, and an SMTP sink and a webhook sink started here receive the notifications and the
problem records. Secrets (SMTP password, bearer tokens) reach the sinks and nowhere else.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

import pytest
import yaml

pytestmark = pytest.mark.molecule

NODES = ["esd-rollout-node%d" % n for n in range(1, 7)]
FAILING, STOPPED = "esd-rollout-node3", "esd-rollout-node5"
CO, TEST_CO = "MOL-ROLLOUT-1", "MOL-ROLLOUT-TEST"
SMTP_PASSWORD = "s3cret-smtp-pw-7f1c"
NOTIFY_TOKEN = "notify-token-2b9e"
ITSM_TOKEN = "itsm-token-c41d"
SOAK = 20


# --- sinks ------------------------------------------------------------------------------------------------

class SMTPSink:
    """A minimal SMTP server on 127.0.0.1 (EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA) that keeps what it gets."""

    def __init__(self):
        self.messages = []
        self.logins = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write((line + "\r\n").encode())

            def handle(self):
                self.reply("220 esd-test-sink ESMTP")
                sender, recipients = None, []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-esd-test-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        parts = line.split()
                        if parts[1].upper() == "PLAIN":
                            token = parts[2] if len(parts) > 2 else None
                            if token is None:
                                self.reply("334 ")
                                token = self.rfile.readline().decode().strip()
                            _, user, password = base64.b64decode(token).decode().split("\0")
                        else:
                            self.reply("334 VXNlcm5hbWU6")
                            user = base64.b64decode(self.rfile.readline().strip()).decode()
                            self.reply("334 UGFzc3dvcmQ6")
                            password = base64.b64decode(self.rfile.readline().strip()).decode()
                        sink.logins.append((user, password))
                        self.reply("235 2.7.0 Authentication successful")
                    elif verb == "MAIL":
                        sender = line.split(":", 1)[1].strip()
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        data = []
                        while True:
                            chunk = self.rfile.readline()
                            if chunk in (b".\r\n", b".\n", b""):
                                break
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        message = email.message_from_bytes(b"".join(data), policy=email.policy.default)
                        sink.messages.append({"from": sender, "to": recipients, "message": message})
                        sender, recipients = None, []
                        self.reply("250 OK: queued")
                    elif verb == "RSET":
                        sender, recipients = None, []
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("250 OK")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subjects(self):
        # A long subject is folded on the wire; unfolded it may keep the folding space.
        return [" ".join(str(item["message"]["Subject"]).split()) for item in self.messages]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class WebhookSink:
    """HTTP on 127.0.0.1: POSTs are kept per path with their Authorization header; GET /health answers 200."""

    def __init__(self):
        self.posts = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sink.posts.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                   "body": body})
                self.send_response(204)
                self.end_headers()

            def do_GET(self):
                self.send_response(200 if self.path == "/health" else 404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def bodies(self, path):
        return [post["body"] for post in self.posts if post["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- the scenario ------------------------------------------------------------------------------------------

def _sha256_of_build(repo_root, project_env, tmp_path, source):
    """Builds are reproducible: building the source again gives the bytes converge shipped, and their digest."""
    result = subprocess.run(
        ["ansible", "localhost", "-m", "esd.osp.package", "-a",
         "src=%s dest=%s" % (repo_root / "examples" / "packages" / source, tmp_path / "built"), "-o"],
        env={**project_env, "SOURCE_DATE_EPOCH": "1700000000"}, capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])["sha256"]


def _podman(project_env, *args):
    result = subprocess.run(["podman", *args], env=project_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


class Runner:
    """`esd` on the scenario's inventory, with its own ledger and site config."""

    def __init__(self, repo_root, project_env, tmp_path, site_config):
        self.repo = str(repo_root)
        self.ledger = str(tmp_path / "ledger")
        self.env = dict(project_env)
        self.env.update(ESD_LEDGER=self.ledger, ESD_SITE_CONFIG=site_config, ESD_PROJECT_DIR=self.repo,
                        ESD_TEST_SMTP_PASSWORD=SMTP_PASSWORD, ESD_TEST_NOTIFY_TOKEN=NOTIFY_TOKEN,
                        ESD_TEST_ITSM_TOKEN=ITSM_TOKEN, NO_COLOR="1")
        self.env["PYTHONPATH"] = os.pathsep.join([os.path.join(self.repo, "runner"),
                                                  os.path.join(self.repo, "collections")])
        self.outputs = []

    def __call__(self, *args, user="erin", expect=0):
        result = subprocess.run([sys.executable, "-m", "esd.cli", *args, "--json"], env={**self.env, "ESD_USER": user},
                                capture_output=True, text=True, cwd=self.repo, timeout=1200, stdin=subprocess.DEVNULL)
        self.outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, (args, result.returncode, result.stdout[-4000:], result.stderr[-4000:])
        return json.loads(result.stdout)

    def state(self, change_order_id):
        with open(os.path.join(self.ledger, change_order_id, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)


def _inventory(path):
    """The scenario's containers for the runner: podman connection, the real root, the groups of molecule.yml."""
    connection = {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3",
                  "software_root": ""}
    document = {"all": {"vars": connection, "children": {
        "test_site": {"hosts": {"esd-rollout-node1": None}},
        "production": {"hosts": {node: None for node in NODES}, "children": {
            "beta": {"hosts": {"esd-rollout-node1": None}}}}}}}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle)
    return str(path)


@pytest.fixture(scope="module")
def scenario(repo_root, project_env, podman_image, tmp_path_factory):
    def molecule(command, **env):
        result = subprocess.run(["molecule", command, "-s", "rollout"], cwd=repo_root,
                                env={**project_env, "NO_COLOR": "1", **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=1800, stdin=subprocess.DEVNULL)
        return result

    created = molecule("create")
    assert created.returncode == 0, created.stdout[-6000:]
    try:
        yield molecule
    finally:
        if not os.environ.get("ESD_MOLECULE_KEEP"):      # keep the containers to look at them (or re-run)
            molecule("destroy")


def test_rollout_beta_go_no_go_waves_triage_backout_and_notifications(scenario, repo_root, project_env, tmp_path):
    for command in ("converge", "idempotence"):
        result = scenario(command)
        assert result.returncode == 0, "molecule %s:\n%s" % (command, result.stdout[-6000:])

    smtp, hooks = SMTPSink(), WebhookSink()
    try:
        _run_and_check(repo_root, project_env, tmp_path, smtp, hooks, scenario)
    finally:
        smtp.close()
        hooks.close()


def _run_and_check(repo_root, project_env, tmp_path, smtp, hooks, scenario):
    sha256 = _sha256_of_build(repo_root, project_env, tmp_path, "hello-agent-1.1")
    site_config = tmp_path / "site.yml"
    site_config.write_text(yaml.safe_dump({
        "notifications": {"webhook": hooks.url("/notify"), "webhook_token_env": "ESD_TEST_NOTIFY_TOKEN",
                          "smtp": {"username": "esd", "password_env": "ESD_TEST_SMTP_PASSWORD"}},
        "problems": [{"type": "webhook", "url": hooks.url("/problems"), "token_env": "ESD_TEST_ITSM_TOKEN"}]}))
    esd = Runner(repo_root, project_env, tmp_path, str(site_config))
    inventory = _inventory(tmp_path / "inventory.yml")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    software = {"name": "hello-agent", "version": "1.1.0", "artifact": "file:///srv/esd/hello-agent-1.1.0.esdpkg",
                "sha256": sha256}

    def write(document, name):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return str(path)

    def change_order(ident, spec):
        return write({"apiVersion": "esd.osp/v1", "kind": "ChangeOrder",
                      "metadata": {"id": ident, "title": "hello-agent 1.1.0 on the molecule fleet",
                                   "requester": "alice", "requested_completion": "2030-01-01"},
                      "spec": {"targets": {"inventory": inventory, "hosts": "production"}, **spec}}, ident + ".yml")

    test = change_order(TEST_CO, {"type": "test_package", "software": dict(software, builder="bob"),
                                  "backout": {"plan": "rehearsed here"}})
    assert esd("run", test, user="carol", expect=3)["step"] == "test_signoff"

    install = change_order(CO, {
        "type": "install", "software": software,
        "rollout": {"beta": "beta", "go_no_go": "automatic", "min_success_percent": 100, "soak_seconds": SOAK,
                    "health_check": {"playbook": str(repo_root / "molecule" / "rollout" / "health_check.yml"),
                                     "urls": [hooks.url("/health")]},
                    "waves": [2, 3], "failure_budget_percent": 50},
        "approvals": {"required": ["backout_review"]},
        "backout": {"strategy": "rollback_update", "plan": "roll back the failed nodes; redistribute to the others",
                    "rehearsed_in": TEST_CO, "redistribute_attempts": 2, "retry_delay_seconds": 5},
        "notifications": {"email": ["ops@example.test", "change-board@example.test"],
                          "smtp": {"host": "127.0.0.1", "port": smtp.port, "sender": "esd@example.test"}},
        "window": {"start": (now - datetime.timedelta(hours=1)).isoformat(),
                   "end": (now + datetime.timedelta(hours=3)).isoformat()}})
    assert esd("run", install, expect=3)["step"] == "change_board"
    esd("approve", CO, "--gate", "change_board", user="dave")

    # The beta group is done; the go/no-go waits for the soak time. node5 goes down in the meantime.
    soaking = esd("run", CO, expect=3)
    assert soaking["message"].startswith("go/no-go after the beta soak time: decision at ")
    _podman(project_env, "stop", "-t", "1", STOPPED)
    ready_at = datetime.datetime.fromisoformat(soaking["message"].rsplit(" ", 1)[1])
    time.sleep(max(0.0, (ready_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1)

    # Health check, go, both waves, triage: the run stops for the backout review.
    review = esd("run", CO, expect=3)
    assert review["step"] == "backout_review"
    state = esd.state(CO)
    assert state["steps"]["go_no_go"]["status"] == "approved"
    assert state["steps"]["install_beta_check"]["hosts"]["ok"] == ["esd-rollout-node1"]
    limits = {klass: (tmp_path / "ledger" / CO / "triage" / "initial" / ("%s.limit" % klass)).read_text().split()
              for klass in ("success", "redistribute", "rollback", "manual", "not_reached")}
    assert limits == {"success": ["esd-rollout-node1", "esd-rollout-node2", "esd-rollout-node4",
                                  "esd-rollout-node6"],
                      "redistribute": [STOPPED], "rollback": [FAILING], "manual": [], "not_reached": []}
    endpoints = state["rollout"]["endpoints"]
    assert endpoints[FAILING]["reason"].startswith("health check failed (phase health_check, rc 3) and was reverted")
    assert endpoints[STOPPED]["reason"].startswith("unreachable: ")

    # node5 is back; the backout rolls node3 back and redistributes to node5.
    _podman(project_env, "start", STOPPED)
    esd("approve", CO, "--gate", "backout_review", "--comment", "node5 is up again", user="frank")
    finished = esd("run", CO)
    assert finished["status"] == "succeeded"
    state = esd.state(CO)
    verdict = state["rollout"]["verdict"]
    assert verdict["result"] == "complete_with_exceptions"
    assert [(e["host"], e["status"]) for e in verdict["exceptions"]] == [(FAILING, "rolled_back")]
    assert endpoints[STOPPED]["class"] == "redistribute"
    assert state["rollout"]["endpoints"][STOPPED]["class"] == "success"
    assert state["rollout"]["backout_attempts"][0]["rollback"] == [FAILING]
    assert state["rollout"]["backout_attempts"][0]["redistribute"] == [STOPPED]

    after = scenario("verify", ESD_ROLLOUT_VERIFY="after")
    assert after.returncode == 0, after.stdout[-6000:]

    # The distribution report lists both with their reasons.
    report_dir = tmp_path / "ledger" / CO / "report"
    report = json.loads((report_dir / "distribution.json").read_text())
    rows = {row["host"]: row for row in report["endpoints"]}
    assert (rows[FAILING]["initial_class"], rows[FAILING]["status"]) == ("rollback", "rolled_back")
    assert rows[FAILING]["initial_reason"].startswith("health check failed")
    assert (rows[STOPPED]["initial_class"], rows[STOPPED]["status"]) == ("redistribute", "success")
    assert rows[STOPPED]["initial_reason"].startswith("unreachable: ")
    markdown = (report_dir / "distribution.md").read_text()
    assert "| %s | install_wave_1 | rollback | rolled back | health check failed" % FAILING in markdown
    assert "| %s | install_wave_2 | redistribute | has the change | redistributed by backout attempt 1 " \
           "(first: unreachable: " % STOPPED in markdown

    _check_notifications(smtp, hooks, sha256)
    _check_problem_records(hooks, tmp_path)
    _check_no_secret_leaked(tmp_path, esd)


def _check_notifications(smtp, hooks, sha256):
    subjects = smtp.subjects()
    assert "Change order %s: Notify stakeholders of the scheduled distribution" % CO in subjects
    assert "Change order %s: go/no-go: GO" % CO in subjects
    assert "Change order %s completed with 1 exception(s)" % CO in subjects
    assert all(item["to"] == ["ops@example.test", "change-board@example.test"] for item in smtp.messages)
    assert smtp.logins and set(smtp.logins) == {("esd", SMTP_PASSWORD)}
    by_event = {}
    for body in hooks.bodies("/notify"):
        by_event.setdefault(body["event"], []).append(body)
    # Initial notification, before production starts: the schedule.
    schedule = by_event["deployment_scheduled"][0]["data"]["schedule"]
    assert schedule["beta"]["hosts"] == ["esd-rollout-node1"]
    assert [(w["wave"], w["hosts"], w["failure_budget_percent"]) for w in schedule["waves"]] == [(1, 2, 50), (2, 3, 50)]
    assert len(schedule["windows"]) == 1 and schedule["go_no_go"]["soak_seconds"] == SOAK
    scheduled_mail = next(item["message"] for item in smtp.messages
                          if str(item["message"]["Subject"]).endswith("scheduled distribution"))
    assert "beta group: 1 host(s): esd-rollout-node1" in scheduled_mail.get_content()
    # Go/no-go with the beta results; completion with the verdict naming node3.
    go = by_event["go_no_go"][0]["data"]
    assert go["decision"] == "go" and go["evaluation"]["ok"] == ["esd-rollout-node1"]
    completed = by_event["completed"][0]
    assert completed["data"]["verdict"]["result"] == "complete_with_exceptions"
    assert "%s: rolled back: health check failed" % FAILING in completed["body"]
    completed_mail = next(item["message"] for item in smtp.messages if "completed" in item["message"]["Subject"])
    assert "%s: rolled back: health check failed" % FAILING in completed_mail.get_content()
    assert all(post["authorization"] == "Bearer %s" % NOTIFY_TOKEN for post in hooks.posts
               if post["path"] == "/notify")
    assert sha256  # the pin travelled in the change order, not in the notifications' secrets


def _check_problem_records(hooks, tmp_path):
    posts = [post for post in hooks.posts if post["path"] == "/problems"]
    assert posts and all(post["authorization"] == "Bearer %s" % ITSM_TOKEN for post in posts)
    actions = [(post["body"]["action"], post["body"]["record"]["host"]) for post in posts]
    assert ("open", FAILING) in actions and ("open", STOPPED) in actions
    assert ("close", STOPPED) in actions and ("close", FAILING) not in actions
    closed = next(post["body"]["record"] for post in posts if post["body"]["action"] == "close")
    assert (closed["status"], closed["resolution"]) == ("closed", "redistributed successfully")
    ledger_records = {}
    with open(tmp_path / "ledger" / CO / "problems.jsonl", encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            ledger_records[item["record"]["host"]] = item["record"]
    assert {host: record["status"] for host, record in ledger_records.items()} == {FAILING: "open",
                                                                                   STOPPED: "closed"}


def _check_no_secret_leaked(tmp_path, esd):
    secrets = (SMTP_PASSWORD, NOTIFY_TOKEN, ITSM_TOKEN)
    for directory, _, files in os.walk(tmp_path / "ledger"):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                content = handle.read()
            for secret in secrets:
                assert secret.encode() not in content, "%s leaked into %s" % (secret, os.path.join(directory, name))
    for output in esd.outputs:
        assert not any(secret in output for secret in secrets)
