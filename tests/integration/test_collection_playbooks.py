"""The collection's playbooks on their own (ansible-playbook, no runner) on a private demo fleet."""

import hashlib
import json
import os
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
