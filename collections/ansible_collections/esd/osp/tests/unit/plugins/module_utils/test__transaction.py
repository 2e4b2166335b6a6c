# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _transaction
from ansible_collections.esd.osp.plugins.module_utils._transaction import SoftwareError, SoftwareManager
from ansible_collections.esd.osp.tests.unit.plugins.module_utils.helpers import build, write_source


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A host root plus artifacts 1.0.0, 1.1.0 and a 1.2.0 whose health check fails."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = str(tmp_path / "artifacts")
    arts = {
        "1.0.0": build(write_source(tmp_path, version="1.0.0"), out),
        "1.1.0": build(write_source(tmp_path, version="1.1.0"), out),
        "1.2.0": build(write_source(tmp_path, version="1.2.0", health="echo probing; echo port closed >&2; exit 3"), out),
    }
    root = str(tmp_path / "host")
    os.makedirs(root)

    def apply(state, version=None, check_mode=False, **kwargs):
        art = arts.get(version) if version else None
        kwargs.setdefault("src", art["path"] if art else None)
        kwargs.setdefault("sha256", art["sha256"] if art else None)
        manager = SoftwareManager("demo", state, version=version, root=root, check_mode=check_mode,
                                  fetch=lambda src, sha: _transaction.fetch_artifact(src, sha, os.path.join(root, "dl")),
                                  **kwargs)
        return manager.run()
    return {"apply": apply, "root": root, "arts": arts, "base": os.path.join(root, "opt/esd/demo")}


def rewrite_install_dir(path, install_dir):
    """Rewrite the artifact at path so that its manifest names install_dir (as a tampered or old builder would)."""
    with tarfile.open(path, "r:gz") as tar:
        members = [(info, tar.extractfile(info).read() if info.isfile() else None) for info in tar.getmembers()]
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if info.name == "MANIFEST.json":
                manifest = json.loads(data.decode("utf-8"))
                manifest["install_dir"] = install_dir
                data = json.dumps(manifest).encode("utf-8")
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def current(env):
    return os.readlink(os.path.join(env["base"], "current"))


def releases(env):
    return sorted(os.listdir(os.path.join(env["base"], "releases")))


def state_file(env):
    with open(os.path.join(env["root"], "var/lib/esd/software/demo.json")) as handle:
        return json.load(handle)


def test_present_stages_without_activating(env):
    result = env["apply"]("present", "1.0.0")
    assert result["changed"] and result["active"] is None and result["installed"] == ["1.0.0"]
    assert releases(env) == ["1.0.0"] and not os.path.lexists(os.path.join(env["base"], "current"))
    assert env["apply"]("present", "1.0.0")["changed"] is False


def test_full_lifecycle_install_update_rollback_commit_remove(env):
    first = env["apply"]("active", "1.0.0")
    assert first["actions"] == ["install 1.0.0", "activate 1.0.0"] and current(env) == "releases/1.0.0"
    assert env["apply"]("active", "1.0.0")["changed"] is False

    update = env["apply"]("active", "1.1.0")
    assert update["active"] == "1.1.0" and update["backup"] == "1.0.0"
    assert current(env) == "releases/1.1.0" and releases(env) == ["1.0.0", "1.1.0"]

    back = env["apply"]("rolled_back", "1.1.0")
    assert back["active"] == "1.0.0" and back["backups"] == [] and back["installed"] == ["1.0.0"]
    assert current(env) == "releases/1.0.0" and releases(env) == ["1.0.0"]
    assert env["apply"]("rolled_back", "1.1.0")["changed"] is False  # idempotent

    env["apply"]("active", "1.1.0")
    commit = env["apply"]("committed", "1.1.0")
    assert commit["committed"] == "1.1.0" and commit["backups"] == [] and releases(env) == ["1.1.0"]
    assert env["apply"]("committed")["changed"] is False

    gone = env["apply"]("absent")
    assert gone["changed"] and gone["installed"] == [] and not os.path.exists(env["base"])
    assert env["apply"]("absent")["changed"] is False
    actions = [(h["action"], h["version"], h["result"]) for h in state_file(env)["history"]]
    assert actions == [
        ("install", "1.0.0", "ok"), ("activate", "1.0.0", "ok"), ("install", "1.1.0", "ok"), ("activate", "1.1.0", "ok"),
        ("rollback", "1.1.0", "ok"), ("install", "1.1.0", "ok"), ("activate", "1.1.0", "ok"), ("commit", "1.1.0", "ok"),
        ("remove", "1.1.0", "ok")]


def test_failed_health_check_reverts_to_previous_version(env):
    env["apply"]("active", "1.1.0")
    with pytest.raises(SoftwareError) as info:
        env["apply"]("active", "1.2.0")
    error = info.value
    assert error.phase == "health_check" and error.rc == 3 and error.reverted
    assert error.msg == "Failed to activate demo 1.2.0: health check exited 3 (see stderr); reverted to 1.1.0"
    assert error.stdout == "probing\n" and error.stderr == "port closed\n"
    assert current(env) == "releases/1.1.0" and releases(env) == ["1.1.0"]
    recorded = state_file(env)
    assert recorded["active"] == "1.1.0" and sorted(recorded["versions"]) == ["1.1.0"]
    assert recorded["history"][-2]["result"] == "reverted" and recorded["history"][-2]["phase"] == "health_check"


def test_failed_first_install_leaves_nothing_active(env):
    with pytest.raises(SoftwareError, match="reverted to no active version"):
        env["apply"]("active", "1.2.0")
    assert not os.path.lexists(os.path.join(env["base"], "current")) and releases(env) == []


def test_rollback_of_committed_update_is_refused_with_advice(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    env["apply"]("committed")
    with pytest.raises(SoftwareError) as info:
        env["apply"]("rolled_back", "1.1.0")
    assert info.value.phase == "rollback"
    assert "Cannot roll back demo 1.1.0: the update was committed on " in info.value.msg
    assert "install that version as a new update (state=active, version=<earlier>)" in info.value.msg
    assert current(env) == "releases/1.1.0"


@pytest.mark.parametrize("check_mode", [False, True])
def test_rolled_back_without_version_twice_changes_nothing_the_second_time(env, check_mode):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    first = env["apply"]("rolled_back")
    assert first["changed"] and first["active"] == "1.0.0" and current(env) == "releases/1.0.0"
    when = state_file(env)["history"][-1]["time"]
    snapshot = sorted(os.walk(env["root"]))
    second = env["apply"]("rolled_back", check_mode=check_mode)
    assert (second["changed"], second["actions"], second["active"], second["installed"]) == (False, [], "1.0.0", ["1.0.0"])
    assert second["msg"] == ("Nothing to roll back: demo was rolled back from 1.1.0 to 1.0.0 on %s, and 1.0.0 is "
                             "still active" % when)
    assert sorted(os.walk(env["root"])) == snapshot and current(env) == "releases/1.0.0"


def test_rolled_back_twice_after_an_update_over_a_committed_version(env):
    """The README tour: 1.1.0 committed, 1.0.0 deployed as an update, rolled back twice."""
    env["apply"]("committed", "1.1.0")
    env["apply"]("active", "1.0.0")
    assert env["apply"]("rolled_back")["active"] == "1.1.0"
    again = env["apply"]("rolled_back")
    assert again["changed"] is False and again["msg"].startswith("Nothing to roll back: demo was rolled back from 1.0.0 to 1.1.0 on ")
    assert current(env) == "releases/1.1.0" and releases(env) == ["1.1.0"]


def test_rolled_back_again_after_a_reverted_update_still_changes_nothing(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    env["apply"]("rolled_back")
    with pytest.raises(SoftwareError):
        env["apply"]("active", "1.2.0")  # fails its health check and is reverted: 1.0.0 stays active
    assert env["apply"]("rolled_back")["changed"] is False


def test_rolled_back_without_version_after_a_new_update_rolls_that_back(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    env["apply"]("rolled_back")
    env["apply"]("active", "1.1.0")
    result = env["apply"]("rolled_back")
    assert result["changed"] and result["active"] == "1.0.0" and "msg" not in result


def test_rolling_back_the_backup_version_is_refused_and_keeps_it(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    for check_mode in (True, False):
        with pytest.raises(SoftwareError) as info:
            env["apply"]("rolled_back", "1.0.0", check_mode=check_mode)
        assert info.value.phase == "rollback" and info.value.msg == (
            "Cannot roll back demo 1.0.0: it is not an update but the backup that rolling back demo 1.1.0 returns to. "
            "To roll back the update, use state=rolled_back with version=1.1.0 (or without version); to delete the "
            "backup, use state=absent with version=1.0.0.")
    assert releases(env) == ["1.0.0", "1.1.0"] and state_file(env)["backups"] == ["1.0.0"]
    assert [h["action"] for h in state_file(env)["history"]][-1] == "activate"


def test_rolling_back_a_staged_version_removes_it(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("present", "1.1.0")
    result = env["apply"]("rolled_back", "1.1.0")
    assert result["actions"] == ["remove staged 1.1.0"] and releases(env) == ["1.0.0"]


def test_rollback_whose_previous_version_is_unhealthy_is_not_reported_as_reverted(env, tmp_path):
    out = str(tmp_path / "flaky")
    flag = os.path.join(env["root"], "broken")
    arts = dict((version, build(write_source(tmp_path / version, name="flaky", version=version,
                                             health='test ! -e "$ESD_ROOT/broken" || { echo broken >&2; exit 3; }'),
                                out)) for version in ("1.0.0", "1.1.0"))

    def apply(state, version=None):
        art = arts.get(version) or {}
        return SoftwareManager("flaky", state, version=version, src=art.get("path"), sha256=art.get("sha256"),
                               root=env["root"], fetch=lambda s, h: _transaction.fetch_artifact(s, h, "/tmp")).run()
    apply("active", "1.0.0")
    apply("active", "1.1.0")
    open(flag, "w").close()  # from now on every version of flaky is unhealthy
    with pytest.raises(SoftwareError) as info:
        apply("rolled_back")
    error = info.value
    assert (error.phase, error.reverted, error.changed, error.rc, error.stderr) == (
        "rollback_health_check", False, True, 3, "broken\n")
    assert error.msg == ("Rolled back flaky 1.1.0 to 1.0.0, but then 1.0.0 failed its health check (health check "
                         "exited 3; see stderr): 1.0.0 is active and unhealthy, and 1.1.0 is no longer installed")
    assert os.readlink(os.path.join(env["root"], "opt/esd/flaky/current")) == "releases/1.0.0"


@pytest.mark.parametrize("check_mode", [False, True])
def test_url_without_sha256_fails_alike_in_check_mode_and_for_real(env, check_mode):
    with pytest.raises(SoftwareError) as info:
        env["apply"]("active", "1.0.0", src="https://depot-01.example.com/blobs/demo-1.0.0.esdpkg", sha256=None,
                     check_mode=check_mode)
    assert (info.value.phase, info.value.msg) == (
        "arguments", "sha256 is required when src is a URL (https://depot-01.example.com/blobs/demo-1.0.0.esdpkg)")
    assert not os.path.exists(env["base"])


@pytest.mark.parametrize("src,phase,msg", [
    ("ftp://depot/demo.esdpkg", "arguments",
     "Unsupported src scheme 'ftp' in ftp://depot/demo.esdpkg (use a path, file://, http:// or https://)"),
    ("/nonexistent/demo.esdpkg", "fetch", "Failed to fetch /nonexistent/demo.esdpkg: no such file on this host"),
])
def test_check_mode_refuses_an_unusable_src_like_a_real_run(env, src, phase, msg):
    for check_mode in (True, False):
        with pytest.raises(SoftwareError) as info:
            env["apply"]("active", "1.0.0", src=src, sha256="ab" * 32, check_mode=check_mode)
        assert (info.value.phase, info.value.msg) == (phase, msg)


def test_rollback_of_first_install_is_refused(env):
    env["apply"]("active", "1.0.0")
    with pytest.raises(SoftwareError, match="it is the first version installed on this host.*Use state=absent"):
        env["apply"]("rolled_back")


def test_removing_the_active_version_alone_is_refused(env):
    env["apply"]("active", "1.0.0")
    with pytest.raises(SoftwareError, match="Cannot remove demo 1.0.0: it is the active version"):
        env["apply"]("absent", "1.0.0")


def test_wrong_checksum_changes_nothing(env):
    env["apply"]("active", "1.0.0")
    with pytest.raises(SoftwareError) as info:
        env["apply"]("active", "1.1.0", sha256="0" * 64)
    assert info.value.phase == "verify" and "Checksum mismatch" in info.value.msg
    assert current(env) == "releases/1.0.0" and releases(env) == ["1.0.0"]


def test_artifact_for_another_version_is_refused(env):
    with pytest.raises(SoftwareError, match="the artifact at .* is demo 1.0.0"):
        env["apply"]("active", "1.1.0", src=env["arts"]["1.0.0"]["path"], sha256=None)


def test_same_version_with_other_content_is_refused(env):
    env["apply"]("active", "1.0.0")
    with pytest.raises(SoftwareError, match="one version cannot have two contents"):
        env["apply"]("active", "1.0.0", sha256="f" * 64)


def test_url_needs_a_pin():
    with pytest.raises(SoftwareError, match="sha256 is required when src is a URL"):
        _transaction.fetch_artifact("http://127.0.0.1:1/x.esdpkg", None, "/nonexistent")


def test_missing_local_src(env):
    with pytest.raises(SoftwareError) as info:
        env["apply"]("active", "1.0.0", src="/nonexistent/demo.esdpkg", sha256=None)
    assert info.value.phase == "fetch" and info.value.msg == "Failed to fetch /nonexistent/demo.esdpkg: no such file on this host"


@pytest.mark.parametrize("steps,final", [
    ([("active", "1.0.0")], ("present", "1.0.0")),
    ([], ("active", "1.0.0")),
    ([("active", "1.0.0")], ("active", "1.1.0")),
    ([("active", "1.0.0"), ("active", "1.1.0")], ("rolled_back", "1.1.0")),
    ([("active", "1.0.0"), ("active", "1.1.0")], ("committed", None)),
    ([("active", "1.0.0"), ("active", "1.1.0")], ("absent", None)),
    ([("active", "1.0.0"), ("active", "1.1.0")], ("absent", "1.0.0")),
])
def test_check_mode_predicts_exactly_and_changes_nothing(env, steps, final):
    for state, version in steps:
        env["apply"](state, version)
    snapshot = sorted(os.walk(env["root"]))
    predicted = env["apply"](final[0], final[1], check_mode=True)
    assert sorted(os.walk(env["root"])) == snapshot
    real = env["apply"](final[0], final[1])
    for key in ("changed", "active", "backups", "committed", "installed", "actions"):
        assert predicted[key] == real[key], key
    assert predicted["diff"] == real["diff"]


def test_keep_zero_drops_backup_immediately(env):
    env["apply"]("active", "1.0.0", keep=0)
    result = env["apply"]("active", "1.1.0", keep=0)
    assert result["backups"] == [] and releases(env) == ["1.1.0"]


def test_hooks_see_the_esd_environment(env, tmp_path):
    out = str(tmp_path / "artifacts2")
    src = write_source(tmp_path, name="envcheck", version="2.0", hooks={
        "post_activate": 'echo "$ESD_PACKAGE $ESD_VERSION $ESD_PHASE prev=$ESD_PREVIOUS_VERSION" > "$ESD_ROOT/hook.out"'})
    art = build(src, out)
    SoftwareManager("envcheck", "active", version="2.0", src=art["path"], root=env["root"],
                    fetch=lambda s, h: _transaction.fetch_artifact(s, h, "/tmp")).run()
    with open(os.path.join(env["root"], "hook.out")) as handle:
        assert handle.read() == "envcheck 2.0 post_activate prev=\n"


def test_requirements_are_checked(env, tmp_path):
    src = write_source(tmp_path, name="needy", version="1", extra_spec="requires: ['demo >= 1.1.0']\n")
    art = build(src, str(tmp_path / "a3"))
    env["apply"]("active", "1.0.0")
    with pytest.raises(SoftwareError) as info:
        SoftwareManager("needy", "active", version="1", src=art["path"], root=env["root"],
                        fetch=lambda s, h: _transaction.fetch_artifact(s, h, "/tmp")).run()
    assert info.value.phase == "requires"
    assert "requirement 'demo >= 1.1.0' not met: demo 1.0.0 is active but demo >= 1.1.0 is required" in info.value.msg


def test_version_ordering():
    key = _transaction.version_key
    assert key("1.10") > key("1.9") and key("1.0") > key("1.0~rc1") and key("2.0.1") > key("2.0")


def test_describe_status(env):
    env["apply"]("active", "1.0.0")
    env["apply"]("active", "1.1.0")
    info = _transaction.describe(_transaction.load_state(env["root"], "demo"))
    assert info["status"] == "uncommitted" and info["active"] == "1.1.0" and info["backups"] == ["1.0.0"]
    assert info["digests"]["1.1.0"] == env["arts"]["1.1.0"]["sha256"]


@pytest.fixture
def http_server(env):
    """A loopback HTTP server serving the artifacts directory (a stand-in depot, really serving bytes)."""
    import functools
    import http.server
    import threading
    directory = os.path.dirname(env["arts"]["1.0.0"]["path"])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_install_from_http_with_pin(env, http_server):
    from ansible.module_utils.urls import open_url
    art = env["arts"]["1.0.0"]
    url = "%s/%s" % (http_server, os.path.basename(art["path"]))
    downloads = os.path.join(env["root"], "dl")
    result = SoftwareManager("demo", "active", version="1.0.0", src=url, sha256=art["sha256"], root=env["root"],
                             fetch=lambda s, h: _transaction.fetch_artifact(s, h, downloads, open_url=open_url)).run()
    assert result["active"] == "1.0.0" and current(env) == "releases/1.0.0"
    assert os.listdir(downloads) == [art["sha256"] + ".esdpkg"]  # kept by digest: a retry needs no download


def test_http_checksum_mismatch_leaves_no_download(env, http_server):
    from ansible.module_utils.urls import open_url
    art = env["arts"]["1.0.0"]
    url = "%s/%s" % (http_server, os.path.basename(art["path"]))
    downloads = os.path.join(env["root"], "dl")
    with pytest.raises(SoftwareError) as info:
        _transaction.fetch_artifact(url, "ab" * 32, downloads, open_url=open_url)
    assert info.value.phase == "verify"
    assert info.value.msg == "Checksum mismatch for %s: expected sha256 %s, got %s" % (url, "ab" * 32, art["sha256"])
    assert os.listdir(downloads) == []


def test_http_not_found_and_unreachable_are_fetch_failures(env, http_server, tmp_path):
    from ansible.module_utils.urls import open_url
    with pytest.raises(SoftwareError) as info:
        _transaction.fetch_artifact(http_server + "/missing.esdpkg", "ab" * 32, str(tmp_path / "dl"), open_url=open_url)
    assert info.value.phase == "fetch" and "HTTP Error 404" in info.value.msg
    with pytest.raises(SoftwareError) as info:
        _transaction.fetch_artifact("http://127.0.0.1:9/x.esdpkg", "ab" * 32, str(tmp_path / "dl"), open_url=open_url, timeout=5)
    assert info.value.phase == "fetch" and info.value.msg.startswith("Failed to fetch http://127.0.0.1:9/x.esdpkg:")


# --- hooks, uninstall, install_dir, commit and rollback edge cases --------------------------------

# Every hook of a `hooky` package fails (exit 4, a line on stderr) while the file fail-<phase>-<version> exists in
# the root, and records each run in hooks.log.
FLAGGED_HOOK = ('echo "$ESD_PHASE $ESD_VERSION" >> "$ESD_ROOT/hooks.log"; '
                'test ! -e "$ESD_ROOT/fail-$ESD_PHASE-$ESD_VERSION" || { echo "$ESD_PHASE refused" >&2; exit 4; }')
ALL_HOOKS = ("pre_install", "post_install", "pre_activate", "post_activate", "pre_remove", "health_check")


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host root plus `package` (build an artifact with the given hooks/spec) and `apply` (run a transition)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    root = tmp_path / "host"
    root.mkdir()
    arts = {}

    def package(name, version, hooks=None, extra_spec=""):
        src = write_source(tmp_path / ("%s-%s" % (name, version)), name=name, version=version,
                           hooks=hooks or {}, extra_spec=extra_spec)
        arts[(name, version)] = build(src, str(tmp_path / "out"))
        return arts[(name, version)]

    def apply(name, state, version=None, check_mode=False, **kwargs):
        art = arts.get((name, version)) or {}
        kwargs.setdefault("src", art.get("path"))
        kwargs.setdefault("sha256", art.get("sha256"))
        return SoftwareManager(name, state, version=version, root=str(root), check_mode=check_mode,
                               fetch=lambda s, h: _transaction.fetch_artifact(s, h, str(root / "dl")), **kwargs).run()

    def fail(phase, version):
        (root / ("fail-%s-%s" % (phase, version))).write_text("")

    class Host(object):
        pass
    result = Host()
    result.root, result.package, result.apply, result.fail = root, package, apply, fail
    return result


def hooky(host, *versions, extra_spec=""):
    for version in versions:
        host.package("hooky", version, hooks=dict((hook, FLAGGED_HOOK) for hook in ALL_HOOKS), extra_spec=extra_spec)


def link(host, name="hooky", install_dir=None):
    return os.readlink(os.path.join(str(host.root), (install_dir or "/opt/esd/" + name).lstrip("/"), "current"))


def recorded(host, name="hooky"):
    return _transaction.load_state(str(host.root), name)


def tree(path):
    return sorted((os.path.relpath(d, str(path)), sorted(dirs), sorted(files)) for d, dirs, files in os.walk(str(path)))


def outside_of(path_or_tree, inner):
    """The tree of path without the subtree `inner` (a root the test lets the module write in)."""
    entries = tree(path_or_tree) if not isinstance(path_or_tree, list) else path_or_tree
    return [entry for entry in entries if entry[0] != inner and not entry[0].startswith(inner + "/")]


def test_uninstall_removes_what_the_package_owns_and_keeps_the_rest_of_its_install_dir(host):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        host.package("demo", version, extra_spec="install_dir: /srv/tools\n")
    base = host.root / "srv" / "tools"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "other-tool").write_text("#!/bin/sh\necho not demo's\n")
    (base / "notes.txt").write_text("kept\n")
    host.apply("demo", "active", "1.0.0")
    host.apply("demo", "active", "1.1.0")
    host.apply("demo", "present", "1.2.0")
    assert sorted(os.listdir(str(base))) == ["bin", "current", "notes.txt", "releases"]

    snapshot = tree(host.root)
    predicted = host.apply("demo", "absent", check_mode=True)
    assert tree(host.root) == snapshot
    result = host.apply("demo", "absent")
    assert predicted["actions"] == result["actions"] == ["uninstall 1.0.0, 1.1.0, 1.2.0"]
    assert sorted(os.listdir(str(base))) == ["bin", "notes.txt"]
    assert (base / "bin" / "other-tool").read_text() == "#!/bin/sh\necho not demo's\n"
    state = recorded(host, "demo")  # the state file stays, with the history, and says the package is absent
    assert (state["versions"], state["active"], state["backups"], state["committed"]) == ({}, None, [], None)
    assert state["history"][-1]["action"] == "remove"
    assert host.apply("demo", "absent")["changed"] is False
    assert host.apply("demo", "absent", check_mode=True)["changed"] is False


def test_uninstall_removes_the_install_dir_it_leaves_empty_but_not_its_parent(host):
    host.package("demo", "1.0.0", extra_spec="install_dir: /opt/hello-agent\n")
    (host.root / "opt" / "other").mkdir(parents=True)
    host.apply("demo", "active", "1.0.0")
    host.apply("demo", "absent")
    assert os.listdir(str(host.root / "opt")) == ["other"]


def test_a_system_directory_in_the_manifest_is_refused_on_the_target_and_its_files_survive(host, tmp_path):
    """A package built before install_dir was checked (or by a tampered builder) names /usr/local."""
    art = host.package("demo", "1.0.0")
    rewrite_install_dir(art["path"], "/usr/local")
    other = host.root / "usr" / "local" / "bin" / "other-tool"
    other.parent.mkdir(parents=True)
    other.write_text("other\n")
    with pytest.raises(SoftwareError) as info:
        host.apply("demo", "active", "1.0.0", sha256=None)
    assert info.value.phase == "verify"
    assert info.value.msg == ("Failed to install demo 1.0.0: %s manifest: install_dir of demo must be a directory of its "
                              "own, not the system directory /usr/local (for example /usr/local/demo)" % art["path"])
    assert host.apply("demo", "absent")["changed"] is False
    assert other.read_text() == "other\n" and sorted(os.listdir(str(host.root / "usr" / "local"))) == ["bin"]


def test_an_install_dir_escaping_the_root_in_the_manifest_writes_nothing_outside(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    art = build(write_source(tmp_path, name="demo", version="1.0.0"), str(tmp_path / "out"))
    rewrite_install_dir(art["path"], "/../..")
    outside = tmp_path / "a"
    root = outside / "b" / "host"
    root.mkdir(parents=True)
    (outside / "sentinel").write_text("")
    before = tree(outside)
    with pytest.raises(SoftwareError) as info:
        SoftwareManager("demo", "active", version="1.0.0", src=art["path"], root=str(root),
                        fetch=lambda s, h: _transaction.fetch_artifact(s, h, "/nonexistent")).run()
    assert (info.value.phase, info.value.msg) == ("verify", "Failed to install demo 1.0.0: %s manifest: install_dir of "
                                                  "demo must not contain '..', got '/../..'" % art["path"])
    assert outside_of(outside, "b/host") == outside_of(before, "b/host")
    assert tree(root) == [(".", ["var"], []), ("var", ["lib"], []), ("var/lib", ["esd"], []),
                          ("var/lib/esd", ["software"], []), ("var/lib/esd/software", [], [".demo.lock"])]


def test_a_state_file_naming_an_install_dir_outside_the_root_is_refused_before_anything_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    art = build(write_source(tmp_path, name="demo", version="1.0.0"), str(tmp_path / "out"))
    outside = tmp_path / "a"
    root = outside / "b" / "host"
    root.mkdir(parents=True)
    (outside / "sentinel").write_text("")

    def apply(state, **kwargs):
        return SoftwareManager("demo", state, root=str(root), sha256=art["sha256"],
                               fetch=lambda s, h: _transaction.fetch_artifact(s, h, "/nonexistent"), **kwargs).run()
    apply("active", version="1.0.0", src=art["path"])
    path = root / "var/lib/esd/software/demo.json"
    state = json.loads(path.read_text())
    state["install_dir"] = "/../.."
    path.write_text(json.dumps(state))
    before = tree(outside)
    with pytest.raises(SoftwareError) as info:
        apply("absent")
    assert (info.value.phase, info.value.msg) == ("state", "State file %s of demo is not usable: install_dir of demo "
                                                  "must not contain '..', got '/../..'" % path)
    assert tree(outside) == before


def test_join_root_never_leaves_the_root():
    assert _transaction.join_root("/srv/fleet/h1", "/../../etc") == "/srv/fleet/h1/etc"
    assert _transaction.join_root("/srv/fleet/h1", "/..") == "/srv/fleet/h1"
    assert _transaction.join_root("/srv/fleet/h1", "/opt/esd/demo") == "/srv/fleet/h1/opt/esd/demo"
    assert _transaction.join_root("", "/opt/esd/demo") == "/opt/esd/demo"


def test_a_second_package_in_the_same_install_dir_is_refused_naming_the_owner(host):
    host.package("demo", "1.0.0", extra_spec="install_dir: /srv/shared\n")
    host.package("other", "2.0.0", extra_spec="install_dir: /srv/shared\n")
    host.apply("demo", "active", "1.0.0")
    message = ("Cannot install other 2.0.0 into /srv/shared: that install_dir belongs to demo (installed: 1.0.0). "
               "Give other an install_dir of its own.")
    with pytest.raises(SoftwareError) as info:
        host.apply("other", "active", "2.0.0")  # install_dir from the artifact's manifest
    assert (info.value.phase, info.value.msg) == ("conflict", message)
    for check_mode in (True, False):  # install_dir as an argument: check mode refuses it alike
        with pytest.raises(SoftwareError) as info:
            host.apply("other", "active", "2.0.0", install_dir="/srv/shared", check_mode=check_mode)
        assert (info.value.phase, info.value.msg) == ("conflict", message)
    assert os.listdir(str(host.root / "srv" / "shared" / "releases")) == ["1.0.0"]
    assert not os.path.exists(str(host.root / "var/lib/esd/software/other.json"))
    host.apply("demo", "absent")  # once demo is gone, the directory is free
    assert host.apply("other", "active", "2.0.0")["active"] == "2.0.0"


@pytest.mark.parametrize("check_mode", [False, True])
def test_commit_removes_the_backups_but_keeps_a_staged_version(host, check_mode):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        host.package("demo", version)
    host.apply("demo", "active", "1.0.0")
    host.apply("demo", "active", "1.1.0")
    host.apply("demo", "present", "1.2.0")
    result = host.apply("demo", "committed", check_mode=check_mode)
    assert result["actions"] == ["commit 1.1.0 (remove 1.0.0)"]
    assert (result["active"], result["committed"], result["backups"], result["installed"]) == (
        "1.1.0", "1.1.0", [], ["1.1.0", "1.2.0"])
    if check_mode:
        return
    assert sorted(os.listdir(str(host.root / "opt/esd/demo/releases"))) == ["1.1.0", "1.2.0"]
    assert host.apply("demo", "committed")["changed"] is False
    # the staged version can still be activated later, without its artifact
    assert host.apply("demo", "active", "1.2.0", src=None, sha256=None)["actions"] == ["activate 1.2.0 (backup 1.1.0)"]


@pytest.mark.parametrize("version", [None, "1.0.0"])
def test_rolling_back_a_reactivated_committed_version_returns_to_the_update_before_it(env, version):
    """1.0.0 committed, 1.1.0 activated, 1.0.0 activated again: the last update (1.1.0 -> 1.0.0) is uncommitted."""
    env["apply"]("committed", "1.0.0")
    env["apply"]("active", "1.1.0")
    before_update = state_file(env)
    env["apply"]("active", "1.0.0")
    assert (state_file(env)["active"], state_file(env)["backups"]) == ("1.0.0", ["1.1.0"])

    predicted = env["apply"]("rolled_back", version, check_mode=True)
    result = env["apply"]("rolled_back", version)
    assert predicted["actions"] == result["actions"] == ["activate 1.1.0 (roll back 1.0.0, kept as a backup)"]
    assert predicted["diff"] == result["diff"]
    # the state before the update: 1.1.0 active, the committed 1.0.0 its backup, both installed
    after = state_file(env)
    for key in ("active", "backups", "committed", "versions"):
        assert after[key] == before_update[key], key
    assert current(env) == "releases/1.1.0" and releases(env) == ["1.0.0", "1.1.0"]

    # and rolling back 1.1.0 itself returns to the committed 1.0.0, as before
    again = env["apply"]("rolled_back", "1.1.0")
    assert (again["active"], again["committed"], again["backups"], again["installed"]) == ("1.0.0", "1.0.0", [], ["1.0.0"])
    with pytest.raises(SoftwareError, match="Cannot roll back demo 1.0.0: the update was committed on "):
        env["apply"]("rolled_back", "1.0.0")


def test_rollback_whose_post_activate_fails_switches_back_to_the_update(host):
    hooky(host, "1.0.0", "1.1.0")
    host.apply("hooky", "active", "1.0.0")
    host.apply("hooky", "active", "1.1.0")
    before = recorded(host)
    host.fail("post_activate", "1.0.0")
    with pytest.raises(SoftwareError) as info:
        host.apply("hooky", "rolled_back")
    error = info.value
    assert (error.phase, error.rc, error.reverted, error.changed, error.stderr) == (
        "post_activate", 4, True, False, "post_activate refused\n")
    assert error.msg == ("Failed to roll back hooky 1.1.0 to 1.0.0: post_activate hook exited 4 (see stderr); "
                         "switched back to 1.1.0, which is still active")
    # the host and its state agree, as they were: 1.1.0 active (its post_activate ran again), 1.0.0 its backup
    assert link(host) == "releases/1.1.0"
    after = recorded(host)
    for key in ("active", "backups", "committed", "versions"):
        assert after[key] == before[key], key
    assert after["history"][-1]["result"] == "reverted" and after["history"][-1]["phase"] == "post_activate"
    assert (host.root / "hooks.log").read_text().splitlines()[-3:] == [
        "pre_activate 1.0.0", "post_activate 1.0.0", "post_activate 1.1.0"]
    # once the hook is fixed, the same request completes
    os.unlink(str(host.root / "fail-post_activate-1.0.0"))
    result = host.apply("hooky", "rolled_back")
    assert (result["active"], result["installed"]) == ("1.0.0", ["1.0.0"]) and link(host) == "releases/1.0.0"


def test_rollback_whose_pre_activate_fails_changes_nothing(host):
    hooky(host, "1.0.0", "1.1.0")
    host.apply("hooky", "active", "1.0.0")
    host.apply("hooky", "active", "1.1.0")
    snapshot = tree(host.root / "opt"), recorded(host)
    host.fail("pre_activate", "1.0.0")
    with pytest.raises(SoftwareError) as info:
        host.apply("hooky", "rolled_back", "1.1.0")
    assert (info.value.phase, info.value.rc, info.value.changed, info.value.msg) == (
        "pre_activate", 4, False,
        "Failed to roll back hooky 1.1.0 to 1.0.0: pre_activate hook exited 4 (see stderr); 1.1.0 is still active")
    assert (tree(host.root / "opt"), recorded(host)) == snapshot


@pytest.mark.parametrize("phase,steps,message,left", [
    ("pre_install", [], "Failed to install hooky 1.0.0: pre_install hook exited 4 (see stderr); the unpacked "
     "release was removed", (None, [])),
    ("post_install", [], "Failed to install hooky 1.0.0: post_install hook exited 4 (see stderr); the unpacked "
     "release was removed", (None, [])),
    ("pre_activate", [("active", "0.9.0")], "Failed to activate hooky 1.0.0: pre_activate hook exited 4 (see stderr); "
     "0.9.0 is still active", ("0.9.0", ["0.9.0"])),
    ("post_activate", [("active", "0.9.0")], "Failed to activate hooky 1.0.0: post_activate hook exited 4 (see "
     "stderr); reverted to 0.9.0", ("0.9.0", ["0.9.0"])),
    ("health_check", [("active", "0.9.0")], "Failed to activate hooky 1.0.0: health check exited 4 (see stderr); "
     "reverted to 0.9.0", ("0.9.0", ["0.9.0"])),
])
def test_a_failing_install_or_activation_hook_is_named_and_reverted(host, phase, steps, message, left):
    hooky(host, "0.9.0", "1.0.0")
    for state, version in steps:
        host.apply("hooky", state, version)
    host.fail(phase, "1.0.0")
    with pytest.raises(SoftwareError) as info:
        host.apply("hooky", "active", "1.0.0")
    error = info.value
    assert (error.phase, error.rc, error.reverted, error.msg) == (phase, 4, True, message)
    assert error.stderr == "%s refused\n" % phase
    state = recorded(host)
    assert (state["active"], sorted(state["versions"])) == left
    assert sorted(os.listdir(str(host.root / "opt/esd/hooky/releases"))) == left[1]


def test_a_failing_pre_remove_hook_removes_nothing(host):
    hooky(host, "1.0.0")
    host.apply("hooky", "active", "1.0.0")
    snapshot = tree(host.root / "opt"), recorded(host)
    host.fail("pre_remove", "1.0.0")
    with pytest.raises(SoftwareError) as info:
        host.apply("hooky", "absent")
    assert (info.value.phase, info.value.rc, info.value.reverted, info.value.changed, info.value.msg) == (
        "pre_remove", 4, False, False,
        "Failed to uninstall hooky 1.0.0: pre_remove hook exited 4 (see stderr); nothing was removed")
    assert (tree(host.root / "opt"), recorded(host)) == snapshot


def running(pid):
    """Whether process `pid` still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# The hook starts a child that outlives it (its output detached, so nothing waits for it), then sleeps past the timeout.
SLOW_HOOK = 'sleep 120 >/dev/null 2>&1 & echo $! > "$ESD_ROOT/child.pid"; echo started; sleep 120'


@pytest.mark.parametrize("hook,timeouts,message", [
    ("pre_install", {"hook_timeout": 1}, "Failed to install slow 1.0.0: pre_install hook timed out after 1s and was "
     "stopped with the processes it started; the unpacked release was removed"),
    ("health_check", {"health_check_timeout": 1}, "Failed to activate slow 1.0.0: health check timed out after 1s and "
     "was stopped with the processes it started; reverted to no active version"),
])
def test_a_hook_that_times_out_is_stopped_with_the_processes_it_started(host, hook, timeouts, message):
    host.package("slow", "1.0.0", hooks={hook: SLOW_HOOK})
    with pytest.raises(SoftwareError) as info:
        host.apply("slow", "active", "1.0.0", **timeouts)
    error = info.value
    assert (error.phase, error.rc, error.reverted, error.msg, error.stdout) == (hook, None, True, message, "started\n")
    child = int((host.root / "child.pid").read_text())
    for dummy in range(100):  # SIGKILL is delivered at once, but the process takes a moment to go
        if not running(child):
            break
        time.sleep(0.05)
    assert not running(child)
    assert recorded(host, "slow")["versions"] == {}
    assert os.listdir(str(host.root / "opt/esd/slow/releases")) == []
