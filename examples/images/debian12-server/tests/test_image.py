"""Test plan of the debian12-server image (testinfra), run by playbooks/test_image.yml against a running node.

It travels inside the image (/usr/share/esd/image/test-plan/) and reads its expectations from the image itself:
the manifest (/etc/esd/image.json: hardening results recorded at build time), the SBOM (package versions) and the
standard tools inventory. So it checks that what the build recorded is what a node provisioned from the archive
really has - modes, owners and links survived packing, the packages are the ones the SBOM lists, sshd's effective
configuration is hardened.

    pytest --hosts=podman://<container> /usr/share/esd/image/test-plan   (ESD_IMAGE_LIFECYCLE=name=version optional)
"""

import json
import os

import pytest


def read_json(host, path):
    assert host.file(path).exists, "%s is missing" % path
    return json.loads(host.check_output("cat %s" % path))


@pytest.fixture(scope="module")
def manifest(host):
    return read_json(host, "/etc/esd/image.json")


@pytest.fixture(scope="module")
def hardening(manifest):
    report = manifest.get("hardening")
    assert report, "the image manifest has no hardening results"
    return report


@pytest.fixture(scope="module")
def installed(host):
    """{package: version} of what dpkg says is installed (one command instead of one per package)."""
    out = host.check_output("dpkg-query --show --showformat='${Package}\t${Version}\t${db:Status-Status}\n'")
    return dict(line.split("\t")[:2] for line in out.splitlines() if line.endswith("\tinstalled"))


@pytest.fixture(scope="module")
def sshd_config(host):
    # the runtime directory sshd's service would make (/run is empty on a fresh node)
    host.check_output("mkdir -p /run/sshd")
    out = host.check_output("/usr/sbin/sshd -T -C user=esd-test,host=localhost,addr=127.0.0.1")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


# --- identity -------------------------------------------------------------------------------------

def test_identity(host, manifest):
    assert manifest["format"] == "esd.osp/image/v1"
    assert manifest["family"] == "debian12-server"
    os_release = host.system_info
    assert os_release.distribution == "debian"
    assert os_release.release.startswith(manifest["os"]["version_id"])
    expected = os.environ.get("ESD_IMAGE_VERSION")
    if expected:
        assert manifest["version"] == expected


def test_first_boot_gave_the_node_its_own_identity(host):
    assert host.file("/var/lib/esd/firstboot.done").exists
    assert len(host.file("/etc/machine-id").content_string.strip()) == 32
    for key in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        assert host.file("/etc/ssh/%s" % key).exists


def test_no_build_leftovers(host):
    assert not host.file("/usr/sbin/policy-rc.d").exists, "policy-rc.d would stop every service"
    assert host.run("ls /var/cache/apt/archives/*.deb").rc != 0
    assert host.check_output("find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock") == ""


# --- hardening ------------------------------------------------------------------------------------

def test_hardening_passed_at_build_time(hardening):
    assert hardening["failed"] == 0, [c["id"] for c in hardening["checks"] if not c["passed"]]
    assert hardening["passed"] >= 30


def test_ssh_is_hardened(host, sshd_config, hardening):
    assert sshd_config["permitrootlogin"] == "no"
    assert sshd_config["passwordauthentication"] == "no"
    assert sshd_config["x11forwarding"] == "no"
    assert sshd_config["banner"] == "/etc/issue.net"
    # and every SSH setting the build audited is still in effect on the node
    for check in hardening["checks"]:
        if check["id"].startswith("ssh."):
            key = check["id"][len("ssh."):]
            wanted = check["title"].split(" ", 2)[2]
            assert sshd_config.get(key, "").lower() == wanted.lower(), check


def test_file_permissions_survived_packing(host, hardening):
    checks = [c for c in hardening["checks"] if c["id"].startswith("file.")]
    assert checks
    paths = [c["id"][len("file."):] for c in checks]
    out = host.check_output("stat -c '%%n %%U:%%G %%04a' %s" % " ".join(paths))
    found = dict(line.split(" ", 1) for line in out.splitlines())
    for check, path in zip(checks, paths):
        wanted = " ".join(check["title"].rsplit(" ", 2)[-2:])
        assert found[path] == wanted, "%s is %s, expected %s" % (path, found[path], wanted)
    assert found["/etc/shadow"] == "root:shadow 0640"


def test_banners_and_masked_units(host, hardening):
    for check in hardening["checks"]:
        if check["id"].startswith("banner."):
            assert "Authorised use only" in host.file("/etc/" + check["id"][len("banner."):]).content_string
        if check["id"].startswith("service."):
            unit = host.file("/etc/systemd/system/" + check["id"][len("service."):])
            assert unit.is_symlink and unit.linked_to == "/dev/null"


def test_kernel_and_login_settings(host):
    sysctl = host.file("/etc/sysctl.d/60-esd-hardening.conf").content_string
    assert "net.ipv4.tcp_syncookies = 1" in sysctl
    assert "kernel.kptr_restrict = 2" in sysctl
    assert host.file("/etc/login.defs").contains("^UMASK\t027")
    assert host.file("/etc/security/limits.d/60-esd-hardening.conf").contains("hard core 0")


def test_legacy_packages_absent(installed):
    for name in ("telnet", "rsh-client", "nis"):
        assert name not in installed


# --- standard tools and packages ------------------------------------------------------------------

def test_standard_tools_present(host, installed):
    inventory = read_json(host, "/etc/esd/standard-tools.json")
    missing = [name for name in inventory["packages"] if name not in installed]
    assert not missing, "standard tools not installed: %s" % missing
    commands = inventory["commands"]
    out = host.check_output("for c in %s; do command -v $c; done" % " ".join(sorted(commands)))
    assert out.split() == [commands[c] for c in sorted(commands)]
    assert host.group(inventory["admin_group"]).exists
    assert host.file("/etc/sudoers.d/%s" % inventory["admin_group"]).exists


def test_packages_at_the_versions_of_the_sbom(host, manifest, installed):
    sbom = read_json(host, manifest["sbom"]["path"])
    expected = dict((c["name"], c["version"]) for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/"))
    assert installed == expected
    assert len(expected) == manifest["packages"]["count"]


def test_update_lineage(manifest, installed):
    if manifest["parent"] is None:
        assert manifest["sbom_diff"] is None
        return
    assert manifest["parent"]["family"] == manifest["family"]
    assert manifest["sbom_diff"]["to"] == manifest["version"]
    for added in manifest["sbom_diff"]["added"]:
        assert installed.get(added["name"]) == added["version"]


# --- the package lifecycle (esd.osp.software) inside the node --------------------------------------

def test_package_lifecycle_inside_the_node(host):
    wanted = os.environ.get("ESD_IMAGE_LIFECYCLE")
    if not wanted:
        pytest.skip("ESD_IMAGE_LIFECYCLE not set: the lifecycle rehearsal did not run")
    name, version = wanted.split("=")
    state = read_json(host, "/var/lib/esd/software/%s.json" % name)
    assert state["active"] == version
    assert state["committed"] == version
    assert state["backups"] == []
    current = host.file("/opt/esd/%s/current" % name)
    assert current.is_symlink and current.linked_to.endswith("/releases/%s" % version)
    assert host.run("/opt/esd/%s/current/bin/%s" % (name, name)).rc == 0
