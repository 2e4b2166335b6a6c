"""OS images end to end on this machine: build a real Debian image, test it in podman, build an update, diff the SBOMs.

One real debootstrap build (minbase, examples/images/debian12-server) and one image update of it, made with
playbooks/build_image.yml exactly as the runner calls it, and shared by every test in this module. The
debootstrap result is cached in /var/cache/esd/images (the role's default), so a second run of the suite on the
same machine skips debootstrap but still customises, finalises and packs for real. The finished artifacts are
also copied to /var/tmp/esd-test-images/<digest of the image code and spec>, where the media test and the A/B
molecule scenario pick them up instead of building their own.
"""

from __future__ import annotations

import json
import os
import sys
import shutil
import subprocess
import tarfile
import time

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _image, _sbom

pytestmark = pytest.mark.integration

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.images import shared_images  # noqa: E402

SPEC = "examples/images/debian12-server"
FAMILY = "debian12-server"


def write_inventory(path):
    path.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3", path=os.environ["PATH"])}}}}))
    return str(path)


def playbook(repo_root, env, inventory, name, timeout=1800, **extravars):
    """Run playbooks/<name> on this machine; return (rc, set_stats data, output)."""
    run_env = dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_SHOW_CUSTOM_STATS="true")
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join("playbooks", name), "-e", json.dumps(dict(extravars, esd_hosts="localhost"))],
        cwd=repo_root, env=run_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return result.returncode, {}, result.stdout[-8000:] + result.stderr[-4000:]
    failures = [
        "%s: %s" % (task["task"]["name"], host_result.get("msg"))
        for play in report.get("plays", []) for task in play.get("tasks", [])
        for host_result in task.get("hosts", {}).values() if host_result.get("failed") and not host_result.get("ignore_errors")]
    return result.returncode, report.get("global_custom_stats", {}), "\n".join(failures) + result.stderr[-4000:]


@pytest.fixture(scope="module")
def images(repo_root, project_env, tmp_path_factory):
    """Build 1.0.0 (debootstrap) and its update 1.1.0 once; return their published data elements and timings."""
    work = tmp_path_factory.mktemp("images")
    inventory = write_inventory(work / "hosts.json")
    dest = str(work / "artifacts")
    built = {"inventory": inventory, "dest": dest}
    common = dict(image_source=SPEC, image_family=FAMILY, image_dest=dest, image_builder="alice",
                  build_image_work_dir=str(work / "rootfs"))
    started = time.monotonic()
    rc, stats, out = playbook(repo_root, project_env, inventory, "build_image.yml", image_version="1.0.0", **common)
    assert rc == 0, out
    built["base"] = stats["esd_image"]
    built["base_seconds"] = time.monotonic() - started
    started = time.monotonic()
    rc, stats, out = playbook(repo_root, project_env, inventory, "build_image.yml", image_version="1.1.0",
                              image_base=built["base"]["path"], image_base_sha256=built["base"]["sha256"], **common)
    assert rc == 0, out
    built["update"] = stats["esd_image"]
    built["update_seconds"] = time.monotonic() - started
    shared = shared_images(repo_root)
    os.makedirs(shared, exist_ok=True)
    for name in os.listdir(dest):
        if not os.path.exists(os.path.join(shared, name)):
            shutil.copy2(os.path.join(dest, name), os.path.join(shared, name))
    print("\nbuilt %s 1.0.0 in %.0f s and its update 1.1.0 in %.0f s" % (FAMILY, built["base_seconds"], built["update_seconds"]))
    return built


def test_build_publishes_the_data_elements(images):
    base = images["base"]
    assert base["family"] == FAMILY and base["version"] == "1.0.0"
    assert base["builder"] == "alice"
    assert base["path"].endswith("debian12-server-1.0.0.rootfs.tar.gz")
    assert base["sha256"] == _image.sha256_file(base["path"])
    assert int(base["size"]) == os.path.getsize(base["path"])
    assert base["unit_test"] == "passed"
    assert os.path.isfile(base["sbom"]) and os.path.isfile(base["manifest"])
    checked, problems = _image.verify_sums(base["checksums"])
    assert checked == 3 and problems == []


def test_manifest_records_os_build_and_hardening(images):
    manifest = json.load(open(images["base"]["manifest"]))
    assert manifest["format"] == "esd.osp/image/v1"
    assert manifest["os"]["id"] == "debian" and manifest["os"]["version_id"] == "12"
    assert manifest["os"]["codename"] == "bookworm"
    assert manifest["build"]["method"] == "debootstrap"
    assert manifest["build"]["debootstrap"]["variant"] == "minbase"
    assert manifest["build"]["roles"] == ["standard_tools", "os_hardening"]
    assert manifest["parent"] is None
    hardening = manifest["hardening"]
    assert hardening["failed"] == 0 and hardening["passed"] >= 40
    assert {"ssh.permitrootlogin", "sysctl.kernel.kptr_restrict", "file./etc/shadow", "banner.issue.net",
            "service.debug-shell.service"} <= set(c["id"] for c in hardening["checks"])
    assert "empty /etc/machine-id (set at first boot)" in manifest["build"]["finalise"]
    assert manifest["archive"]["sha256"] == images["base"]["sha256"]


def test_sbom_is_cyclonedx_of_the_installed_packages(images):
    sbom = json.load(open(images["base"]["sbom"]))
    assert _sbom.validate_sbom(sbom) == []
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    debs = dict((c["name"], c) for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/debian/"))
    for name in ("openssh-server", "python3", "curl", "libc6", "base-files"):
        assert name in debs
    assert debs["openssh-server"]["purl"].endswith("?arch=amd64&distro=debian-12")
    assert len(debs) == json.load(open(images["base"]["manifest"]))["packages"]["count"]


def test_archive_is_a_clean_reproducible_rootfs(images):
    manifest = json.load(open(images["base"]["manifest"]))
    epoch = manifest["build"]["source_date_epoch"]
    names, shadow, dev, keys, machine_id, newest = [], None, [], [], None, 0
    with tarfile.open(images["base"]["path"], "r:gz") as tar:
        for member in tar:
            names.append(member.name)
            newest = max(newest, member.mtime)
            assert member.uname == "" and member.gname == ""  # numeric owners only
            if member.name == "etc/shadow":
                shadow = member
            if member.name.startswith("dev/"):
                dev.append(member.name)
            if member.name.startswith("etc/ssh/ssh_host_"):
                keys.append(member.name)
            if member.name == "etc/machine-id":
                machine_id = tar.extractfile(member).read()
    assert names[:3] == ["bin", "boot", "dev"]
    assert dev == [] and keys == [] and machine_id == b""
    assert shadow.mode == 0o640 and shadow.gid != 0  # group shadow kept
    assert newest <= epoch
    with open(images["base"]["path"], "rb") as handle:
        assert handle.read(10)[4:8] == b"\0\0\0\0"  # gzip header without a timestamp


def test_image_runs_its_test_plan_in_podman(repo_root, project_env, images, podman_image):
    base = images["base"]
    rc, stats, out = playbook(repo_root, project_env, images["inventory"], "test_image.yml", image_family=FAMILY,
                              image_version="1.0.0", image_src=base["path"], image_sha256=base["sha256"],
                              test_image_state_dir=os.path.join(images["dest"], "..", "test-nodes"))
    assert rc == 0, out
    result = stats["esd_test"]
    assert result["passed"] is True
    assert result["failures"] == 0 and result["tests"] >= 12
    assert result["lifecycle"] == ["hello-agent=1.1.0"]
    report = json.load(open(result["report"]))
    assert report["result"] == "passed" and report["sha256"] == base["sha256"]
    assert report["name"] == FAMILY and report["version"] == "1.0.0"
    junit = open(report["hosts"]["localhost"]["junit"]).read()
    assert 'failures="0"' in junit and "test_package_lifecycle_inside_the_node" in junit
    # the test node is gone again
    assert subprocess.run(["podman", "container", "exists", result["hosts"]["localhost"]["node"]],
                          env=project_env).returncode == 1


def test_update_records_its_parent_and_the_sbom_diff(images):
    base, update = images["base"], images["update"]
    manifest = json.load(open(update["manifest"]))
    assert manifest["build"]["method"] == "derived"
    assert manifest["parent"] == {"family": FAMILY, "version": "1.0.0", "sha256": base["sha256"]}
    assert update["parent"]["sha256"] == base["sha256"]
    diff = json.load(open(update["manifest"].replace(".manifest.json", ".sbom-diff.json")))
    # the diff recorded at build time is the diff of the two SBOMs
    assert diff == _sbom.diff(json.load(open(base["sbom"])), json.load(open(update["sbom"])))
    assert diff == manifest["sbom_diff"] == update["sbom_diff"]
    assert diff["from"] == "1.0.0" and diff["to"] == "1.1.0"
    assert {"name": "tree", "version": diff["added"][0]["version"]} in diff["added"]
    assert diff["removed"] == []
    assert diff["unchanged"] > 100
    print("\nSBOM diff 1.0.0 -> 1.1.0: %s" % _sbom.diff_summary(diff))
    for item in diff["added"]:
        print("  + %s %s" % (item["name"], item["version"]))
    for item in diff["changed"]:
        print("  ~ %s %s -> %s" % (item["name"], item["from"], item["to"]))
    # the update was patched from the mirror (dist-upgrade) and still passes its hardening audit
    assert any(action.startswith("apt-get dist-upgrade") for action in manifest["build"]["apt"])
    assert manifest["hardening"]["failed"] == 0


def test_validate_image_accepts_the_update_and_refuses_a_wrong_digest(repo_root, project_env, images):
    update = images["update"]
    rc, stats, out = playbook(repo_root, project_env, images["inventory"], "validate_image.yml", image_family=FAMILY,
                              image_version="1.1.0", image_src=update["path"], image_sha256=update["sha256"])
    assert rc == 0, out
    assert stats["esd_validation"]["valid"] is True
    assert stats["esd_validation"]["parent"]["version"] == "1.0.0"
    rc, stats, out = playbook(repo_root, project_env, images["inventory"], "validate_image.yml", image_family=FAMILY,
                              image_version="1.1.0", image_src=update["path"], image_sha256="0" * 64)
    assert rc != 0
    assert "is not a valid image" in out and "expected 0000" in out
