"""Checks of the depot scenario's hosts from outside (testinfra), after converge and side_effect."""

import json
import os

import testinfra.utils.ansible_runner

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = INVENTORY.get_hosts("all")

DEPOT = "/srv/esd/depot"


def only(host, group):
    return host.backend.get_hostname() in INVENTORY.get_hosts(group)


def read_json(host, path):
    return json.loads(host.check_output("cat %s" % path))


def test_nginx_serves_on_loopback(host):
    if only(host, "repository"):
        port = 18481
    elif only(host, "depots"):
        port = 18480
    else:
        return
    assert host.socket("tcp://127.0.0.1:%d" % port).is_listening
    assert host.file("/etc/nginx/sites-enabled/esd-depot.conf").is_symlink
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    status = host.check_output("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/channels/production.json" % port)
    assert status == "200"
    assert host.check_output("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/.lock" % port) == "403"


def test_every_depot_blob_matches_its_name_and_the_index(host):
    if not only(host, "depots"):
        return
    index = read_json(host, DEPOT + "/channels/production.json")
    state = read_json(host, DEPOT + "/depot.json")
    assert state["serial"] == index["serial"] and state["excluded"] == []
    listed = sorted(e["sha256"] for e in index["entries"])
    on_disk = sorted(host.check_output("ls %s/blobs/sha256" % DEPOT).split())
    assert on_disk == listed
    for line in host.check_output("cd %s/blobs/sha256 && sha256sum *" % DEPOT).splitlines():
        digest, name = line.split()
        assert digest == name, "blob %s is corrupt on the depot" % name
    assert host.check_output("ls -A %s/.incoming" % DEPOT) == "", "a partial download was left behind"
    assert {(e["name"], e["version"]) for e in index["entries"]} == {
        ("hello-agent", "1.0.0"), ("hello-agent", "1.1.0"), ("install-media", "1.0"), ("install-media", "2.0")}


def test_depot_supports_range_requests_for_resuming_clients(host):
    if not only(host, "depots"):
        return
    blob = host.check_output("ls %s/blobs/sha256 | head -n 1" % DEPOT)
    headers = host.check_output("curl -s -D - -o /dev/null -r 0-9 http://127.0.0.1:18480/blobs/sha256/%s" % blob)
    assert headers.startswith("HTTP/1.1 206")
    assert "immutable" in headers


def test_repository_index_is_signed_and_the_key_private(host):
    if not only(host, "repository"):
        return
    assert host.file("/srv/esd/repository/channels/production.json.sig").exists
    keyring = read_json(host, "/etc/esd/keys/keyring.json")
    pem = host.file("/etc/esd/keys/%s.pem" % keyring["active"])
    assert pem.mode == 0o600
    events = host.check_output("cat /srv/esd/repository/log/events.jsonl").splitlines()
    promotions = [json.loads(e) for e in events if '"promote"' in e]
    assert {p["by"] for p in promotions} == {"release-manager", "molecule"}
    assert all(p["channel"] != "production" or p["from_channel"] == "test" for p in promotions)


def test_targets_run_the_repaired_update(host):
    if not only(host, "production"):
        return
    state = read_json(host, "/var/lib/esd/software/hello-agent.json")
    assert state["active"] == "1.1.0"
    assert host.file("/opt/esd/hello-agent/current").linked_to == "/opt/esd/hello-agent/releases/1.1.0"
    assert host.check_output("/opt/esd/hello-agent/current/bin/hello-agent --health") == "ok"
    # what the target installed is exactly what the signed index pins
    digest = state["versions"]["1.1.0"]["sha256"]
    assert host.file("/var/cache/esd/downloads/%s.esdpkg" % digest).sha256sum == digest
