"""The collection's playbooks on their own (ansible-playbook, no runner) on a private demo fleet."""

import hashlib
import json
import os
import re
import subprocess

import pytest

pytestmark = pytest.mark.integration

EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


def ansible(repo_root, env, *args, tool="ansible-playbook"):
    return subprocess.run([tool, "-i", str(repo_root / "inventories" / "demo"), *args], cwd=repo_root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)


@pytest.fixture
def fleet_env(project_env, tmp_path):
    return {**project_env, "ESD_DEMO_ROOT": str(tmp_path / "fleet"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


def host_state(fleet_env, host):
    path = os.path.join(fleet_env["ESD_DEMO_ROOT"], "hosts", host, "var/lib/esd/software/hello-agent.json")
    with open(path) as handle:
        return json.load(handle)


def test_lifecycle_demo_playbook(repo_root, fleet_env):
    proc = ansible(repo_root, fleet_env, "playbooks/demo.yml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    for line in ("install 1.0.0: 24 hosts, 24 changed; active 1.0.0, backup none, committed none",
                 "roll back the update: 24 hosts, 24 changed; active 1.0.0, backup none, committed none",
                 "commit 1.1.0: 24 hosts, 24 changed; active 1.1.0, backup none, committed 1.1.0"):
        assert line in proc.stdout
    for index in range(1, 25):
        host = "prod-%03d" % index
        state = host_state(fleet_env, host)
        assert (state["active"], state["committed"], state["backups"], sorted(state["versions"])) == \
            ("1.1.0", "1.1.0", [], ["1.1.0"])
        assert [h["action"] for h in state["history"]] == [
            "install", "activate", "install", "activate", "rollback", "install", "activate", "commit"]
        base = os.path.join(fleet_env["ESD_DEMO_ROOT"], "hosts", host, "opt/esd/hello-agent")
        assert os.readlink(os.path.join(base, "current")) == "releases/1.1.0"
        assert os.listdir(os.path.join(base, "releases")) == ["1.1.0"]
    # the software inventory of one host, as an auditor would ask for it
    info = ansible(repo_root, fleet_env, "prod-007", "-m", "esd.osp.software_info",
                   "-a", "root=%s/hosts/prod-007" % fleet_env["ESD_DEMO_ROOT"], tool="ansible")
    assert info.returncode == 0, info.stdout
    packages = json.loads(info.stdout.split("=>", 1)[1])["packages"]
    assert [(p["name"], p["status"], p["active"], p["installed"]) for p in packages] == \
        [("hello-agent", "committed", "1.1.0", ["1.1.0"])]


def test_infected_source_is_refused_and_nothing_is_built(repo_root, fleet_env, tmp_path):
    src = tmp_path / "infected"
    subprocess.run(["cp", "-a", str(repo_root / "examples/packages/hello-agent-1.0"), str(src)], check=True)
    (src / "payload" / "eicar.com").write_bytes(EICAR)
    proc = ansible(repo_root, fleet_env, "playbooks/build_package.yml", "-e", "build_package_src=%s" % src)
    assert proc.returncode == 2
    assert "Virus scan of %s found 1 infected file(s): %s/payload/eicar.com (Eicar-Test-Signature.UNOFFICIAL)" % (
        src, src) in proc.stdout
    assert not os.path.exists(os.path.join(fleet_env["ESD_DEMO_ROOT"], "artifacts"))


def test_wrong_checksum_changes_no_host(repo_root, fleet_env):
    built = ansible(repo_root, fleet_env, "playbooks/build_package.yml",
                    "-e", "build_package_src=%s/examples/packages/hello-agent-1.0" % repo_root)
    assert built.returncode == 0, built.stdout[-3000:]
    artifact = os.path.join(fleet_env["ESD_DEMO_ROOT"], "artifacts", "hello-agent-1.0.0.esdpkg")
    with open(artifact, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    wrong = "0" * 64
    proc = ansible(repo_root, fleet_env, "playbooks/deploy.yml", "-l", "beta",
                   "-e", "software_name=hello-agent", "-e", "software_version=1.0.0",
                   "-e", "software_src=file://%s" % artifact, "-e", "software_sha256=%s" % wrong)
    assert proc.returncode == 2
    assert "Checksum mismatch for file://%s: expected sha256 %s, got %s" % (artifact, wrong, digest) in proc.stdout
    assert sorted(line.split("]")[0] for line in proc.stdout.splitlines() if line.startswith("fatal: [")) == [
        "fatal: [prod-001", "fatal: [prod-002", "fatal: [prod-003"]
    assert proc.stdout.count('"phase": "verify"') == 3
    for host in ("prod-001", "prod-002", "prod-003"):
        assert not os.path.exists(os.path.join(fleet_env["ESD_DEMO_ROOT"], "hosts", host, "opt"))


def test_a_check_mode_build_says_the_unit_test_did_not_run(repo_root, fleet_env):
    proc = ansible(repo_root, {**fleet_env, "ANSIBLE_SHOW_CUSTOM_STATS": "1"}, "playbooks/build_package.yml", "--check",
                   "-e", "build_package_src=%s/examples/packages/hello-agent-1.0" % repo_root)
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = json.loads(proc.stdout.split("CUSTOM STATS:", 1)[1].split("RUN:", 1)[1].strip().splitlines()[0])
    assert stats["esd_artifact"]["unit_test"] == "not run (check mode)"
    assert not os.path.exists(os.path.join(fleet_env["ESD_DEMO_ROOT"], "artifacts"))


def tree(top):
    """{relative path: sha256 or 'dir'} of everything under top ({} when it does not exist)."""
    out = {}
    for current, dirs, files in os.walk(top):
        for name in dirs:
            out[os.path.relpath(os.path.join(current, name), top)] = "dir"
        for name in files:
            with open(os.path.join(current, name), "rb") as handle:
                out[os.path.relpath(os.path.join(current, name), top)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def production_index(path):
    with open(os.path.join(path, "channels", "production.json")) as handle:
        return {(e["name"], e["version"]) for e in json.load(handle)["entries"]}


def test_promote_check_predicts_a_new_artifact_and_retire_image_syncs_depots_in_tiers(repo_root, fleet_env, tmp_path):
    """promote.yml --check on an artifact the repository has never seen (promote_src) and on a test record given as a
    mapping predicts the real run and writes nothing; retire_image.yml refuses while a node's image cannot be read,
    and once forced, retires the image from the repository and from a headquarters depot and a branch depot fed by
    it (retire.yml syncs them in the tiers of distribute.yml)."""
    root = fleet_env["ESD_DEMO_ROOT"]
    repository = os.path.join(root, "repository")
    (tmp_path / "nodes-ok").mkdir()
    (tmp_path / "nodes-broken").mkdir()
    (tmp_path / "nodes-broken" / "prod-002.json").write_text("{not json")
    extra = tmp_path / "extra.yml"  # a branch depot fed by depot-01, and where two nodes' state files live
    extra.write_text(json.dumps({"all": {"children": {
        "depots": {"hosts": {"depot-02": {
            "depot_source": "file://{{ esd_demo_root | normpath }}/hosts/depot-01/srv/esd/depot"}}},
        "production": {"hosts": {"prod-001": {"image_node_state_dir": str(tmp_path / "nodes-ok")},
                                 "prod-002": {"image_node_state_dir": str(tmp_path / "nodes-broken")}}}}}}))
    image = tmp_path / "debian12-demo-1.0.img"
    image.write_bytes(b"an OS image root filesystem\n" * 1000)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert ansible(repo_root, fleet_env, "playbooks/keys.yml").returncode == 0

    def promote(check, **extra_vars):
        args = {"promote_name": "debian12-demo", "promote_version": "1.0", **extra_vars}
        return ansible(repo_root, fleet_env, *(["--check"] if check else []), "playbooks/promote.yml",
                       "-e", json.dumps(args))

    to_test = {"promote_src": str(image), "promote_kind": "image", "promote_channel": "test"}
    to_production = {"promote_test_record": {"id": "TR-IMG-1", "name": "debian12-demo", "version": "1.0",
                                             "sha256": digest, "result": "passed"}}
    for step in (to_test, to_production):
        before = tree(repository)
        checked = promote(True, **step)
        assert checked.returncode == 0, checked.stdout[-3000:]
        assert "changed=1" in checked.stdout and tree(repository) == before
        done = promote(False, **step)
        assert done.returncode == 0, done.stdout[-3000:]
        assert "changed=1" in done.stdout
    assert production_index(repository) == {("debian12-demo", "1.0")}

    distributed = ansible(repo_root, fleet_env, "-i", str(extra), "playbooks/distribute.yml")
    assert distributed.returncode == 0, distributed.stdout[-3000:]
    depots = {host: os.path.join(root, "hosts", host, "srv", "esd", "depot") for host in ("depot-01", "depot-02")}
    for path in depots.values():
        assert production_index(path) == {("debian12-demo", "1.0")}
        assert os.path.isfile(os.path.join(path, "blobs", "sha256", digest))

    retire = ["-i", str(extra), "playbooks/retire_image.yml", "-e", "image_family=debian12-demo",
              "-e", "image_version=1.0", "-e", "retire_image_nodes=prod-001:prod-002"]
    refused = ansible(repo_root, fleet_env, *retire)
    assert refused.returncode != 0
    assert "refusing to retire debian12-demo 1.0: the image of 1 node(s) could not be read, so they may still run " \
        "it: prod-002 (" in refused.stdout, refused.stdout[-3000:]
    assert "Retire | retire" not in refused.stdout  # the retirement plays did not run
    assert production_index(repository) == {("debian12-demo", "1.0")}

    forced = ansible(repo_root, fleet_env, *retire, "-e", "retire_force=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    assert "retire_force: retiring although the image of these nodes could not be read: prod-002 (" in forced.stdout
    assert production_index(repository) == set()
    # depot-01 (fed by the repository) synced in tier 1, the branch depot-02 (fed by depot-01) only in tier 2
    tier1, tier2 = forced.stdout.split("TASK [Sync depots | tier 2 |", 1)
    mirrored = r"TASK \[esd\.osp\.depot : Depot \| sync \| Mirror the channel from [^\n]*\n(?:changed|ok): \[%s\]"
    assert re.search(mirrored % "depot-01", tier1) and not re.search(mirrored % "depot-02", tier1), tier1[-3000:]
    assert re.search(mirrored % "depot-02", tier2), tier2[:3000]
    for path in depots.values():  # the branch depot synced after depot-01 had dropped the image
        assert production_index(path) == set()
        assert not os.path.exists(os.path.join(path, "blobs", "sha256", digest))
