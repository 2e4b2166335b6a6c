"""Distribution media end to end: build ISOs with the playbooks, list and verify them with xorriso, install from them.

prepare_media (packages -> ISO) and test_media use the hello-agent packages; prepare_image_media and
test_image_media use the debian12-server image that test_image_build.py left in /var/tmp/esd-test-images (built
here when it is not there).
"""

from __future__ import annotations

import json
import os
import sys
import shutil
import subprocess

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _media

pytestmark = pytest.mark.integration

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.images import shared_images  # noqa: E402


def playbook(repo_root, env, inventory, name, timeout=1800, **extravars):
    run_env = dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_SHOW_CUSTOM_STATS="true")
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join("playbooks", name), "-e", json.dumps(dict(extravars, esd_hosts="localhost"))],
        cwd=repo_root, env=run_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return result.returncode, {}, result.stdout[-8000:] + result.stderr[-4000:]
    failures = ["%s: %s" % (task["task"]["name"], res.get("msg"))
                for play in report.get("plays", []) for task in play.get("tasks", [])
                for res in task.get("hosts", {}).values() if res.get("failed")]
    return result.returncode, report.get("global_custom_stats", {}), "\n".join(failures) + result.stderr[-3000:]


def xorriso(*args):
    return subprocess.run(["xorriso", "-no_rc", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("media")
    inventory = work / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3", path=os.environ["PATH"])}}}}))
    return {"work": work, "inventory": str(inventory), "media": str(work / "media")}


@pytest.fixture(scope="module")
def packages(repo_root, site):
    """hello-agent 1.0.0 and 1.1.0 built with esd.osp.package (through its module_utils, like the module)."""
    import yaml
    from ansible_collections.esd.osp.plugins.module_utils import _artifact
    dest = str(site["work"] / "packages")
    os.makedirs(dest)
    return [_artifact.build_package(os.path.join(repo_root, "examples", "packages", source), dest, yaml.safe_load, "bob")
            for source in ("hello-agent-1.0", "hello-agent-1.1")]


@pytest.fixture(scope="module")
def package_media(repo_root, project_env, site, packages):
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "build_media.yml", media_name="hello-2026q2",
                              media_packages=[p["path"] for p in packages], media_builder="carol",
                              media_dest=site["media"])
    assert rc == 0, out
    return stats["esd_media"]


def test_package_media_is_an_iso_with_manifest_and_checksums(package_media, packages):
    iso = package_media["path"]
    assert iso.endswith("hello-2026q2-1.iso")
    assert package_media["sha256"] == _media.sha256_file(iso)
    assert package_media["builder"] == "carol"
    assert package_media["volume_id"] == "HELLO_2026Q2_1"
    # an ISO 9660 image: the primary volume descriptor at sector 16
    with open(iso, "rb") as handle:
        handle.seek(16 * 2048)
        assert handle.read(6) == b"\x01CD001"
    listed = xorriso("-indev", iso, "-find", "/", "-type", "f")
    assert listed.returncode == 0, listed.stderr
    names = sorted(line.strip("'") for line in listed.stdout.split())
    assert names == ["/MEDIA.json", "/README.txt", "/SHA256SUMS", "/packages/hello-agent-1.0.0.esdpkg",
                     "/packages/hello-agent-1.1.0.esdpkg"]
    checked = xorriso("-md5", "on", "-indev", iso, "-check_md5_r", "SORRY", "/", "--")
    assert checked.returncode == 0 and "File contents and their MD5 checksums match" in checked.stdout + checked.stderr
    pvd = xorriso("-indev", iso, "-pvd_info")
    assert "Volume Id    : HELLO_2026Q2_1" in pvd.stdout + pvd.stderr
    # and what is on it is what was built: MEDIA.json carries every package's digest
    extracted = xorriso("-osirrox", "on", "-indev", iso, "-extract", "/MEDIA.json", str(os.path.dirname(iso) + "/m.json"))
    assert extracted.returncode == 0
    manifest = json.load(open(os.path.dirname(iso) + "/m.json"))
    digests = dict((f["path"], f["sha256"]) for f in manifest["files"])
    for package in packages:
        assert digests["packages/" + os.path.basename(package["path"])] == package["sha256"]


def test_media_build_is_reproducible(repo_root, project_env, site, packages, package_media):
    again = str(site["work"] / "again")
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "build_media.yml", media_name="hello-2026q2",
                              media_packages=[p["path"] for p in packages], media_builder="carol", media_dest=again)
    assert rc == 0, out
    assert stats["esd_media"]["sha256"] == package_media["sha256"]


def test_install_from_the_media(repo_root, project_env, site, package_media):
    root = str(site["work"] / "test-host")
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "test_media.yml", media_src=package_media["path"],
                              media_sha256=package_media["sha256"], software_root=root)
    assert rc == 0, out
    result = stats["esd_test"]
    assert result["passed"] is True and result["backout_rehearsed"] is True
    assert result["medium"]["md5_check"] == "match"
    assert result["packages"] == ["packages/hello-agent-1.0.0.esdpkg", "packages/hello-agent-1.1.0.esdpkg"]
    # installed from the medium, then backed out: the host is as it was (nothing active)
    state = json.load(open(os.path.join(root, "var/lib/esd/software/hello-agent.json")))
    assert state["active"] is None
    assert [h["action"] for h in state["history"]][:4] == ["install", "activate", "install", "activate"]


def test_damaged_media_are_refused(repo_root, project_env, site, package_media):
    damaged = str(site["work"] / "damaged.iso")
    shutil.copyfile(package_media["path"], damaged)
    manifest = _media.verify_media(package_media["path"])["manifest"]
    # change one byte of MEDIA.json on the copy (the one file stored as plain text)
    with open(damaged, "r+b") as handle:
        data = handle.read()
        offset = data.index(b'"format": "esd.osp/media/v1"')
        handle.seek(offset + 1)
        handle.write(b"F")
    problems = _media.verify_media(damaged)["problems"]
    assert any("MD5" in problem for problem in problems), problems
    assert manifest["kind"] == "packages"
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "test_media.yml", media_src=damaged,
                              media_sha256=package_media["sha256"], software_root=str(site["work"] / "never"))
    assert rc != 0
    assert "expected %s" % package_media["sha256"] in out
    assert not os.path.exists(str(site["work"] / "never" / "opt"))


def built_images(repo_root, env, inventory):
    """The images test_image_build.py built for this code, built here if needed."""
    directory = shared_images(repo_root)
    base = os.path.join(directory, "debian12-server-1.0.0.rootfs.tar.gz")
    if not os.path.isfile(base):
        rc, stats, out = playbook(repo_root, env, inventory, "build_image.yml", image_source="examples/images/debian12-server",
                                  image_version="1.0.0", image_dest=directory, build_image_unit_test=False)
        assert rc == 0, out
    return directory


def test_image_media_install_and_test(repo_root, project_env, site, podman_image):
    directory = built_images(repo_root, project_env, site["inventory"])
    image = os.path.join(directory, "debian12-server-1.0.0.rootfs.tar.gz")
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "build_image_media.yml",
                              image_family="debian12-server", image_version="1.0.0", image_src=image,
                              image_sha256=_media.sha256_file(image), media_dest=site["media"])
    assert rc == 0, out
    media = stats["esd_image"]
    assert media["kind"] == "media" and media["image_sha256"] == _media.sha256_file(image)
    assert "image/debian12-server-1.0.0.rootfs.tar.gz" in media["files"]
    assert "image/debian12-server-1.0.0.sbom.cdx.json" in media["files"]
    rc, stats, out = playbook(repo_root, project_env, site["inventory"], "test_image_media.yml",
                              image_family="debian12-server", image_version="1.0.0", image_src=media["path"],
                              image_sha256=media["sha256"], image_lifecycle=False,
                              test_image_state_dir=str(site["work"] / "test-nodes"))
    assert rc == 0, out
    assert stats["esd_test"]["passed"] is True
    assert stats["esd_test"]["medium"]["md5_check"] == "match"
    assert stats["esd_test"]["failures"] == 0 and stats["esd_test"]["tests"] >= 12
