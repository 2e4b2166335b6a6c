# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import json
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _depot, _repository, _signing
from ansible_collections.esd.osp.plugins.module_utils._depot import Depot, DepotError, Source


class RangeHandler(SimpleHTTPRequestHandler):
    """A static file server with single-range support (like nginx), recording the requests."""

    requests = []

    def log_message(self, *args):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        spec = self.headers.get("Range")
        self.requests.append((self.path, spec))
        if not spec or not os.path.isfile(path):
            return super().send_head()
        start = int(spec.split("=", 1)[1].split("-", 1)[0])
        size = os.path.getsize(path)
        if start >= size:
            self.send_error(416)
            return None
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return handle


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr(_depot, "RETRY_PAUSE", 0)


@pytest.fixture
def upstream(tmp_path, keyring):
    """A repository with three media artifacts in production."""
    repo = _repository.Repository(str(tmp_path / "repo"), signer=keyring.active_signer(), actor="alice")
    for name, size in (("alpha", 300 * 1024), ("beta", 2 * 1024 * 1024 + 7), ("gamma", 10)):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
        publish(repo, tmp_path, str(path), name, "1.0")
    return repo


def publish(repo, tmp_path, path, name, version):
    repo.add(path, name=name, version=version, kind="media")
    repo.promote(name, version, "test")
    report = tmp_path / ("report-%s-%s.json" % (name, version))
    report.write_text(json.dumps({"name": name, "version": version, "result": "passed"}))
    repo.promote(name, version, "production", test_report=str(report))


@pytest.fixture
def http_upstream(upstream):
    RangeHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=upstream.path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


class Interrupted(Exception):
    pass


class CutOff(_depot.Throttle):
    """A throttle that kills the sync after `after` bytes, like a kill -9 halfway through."""

    def __init__(self, after):
        super().__init__(0)
        self.after = after
        self.seen = 0

    def account(self, nbytes):
        self.seen += nbytes
        if self.seen >= self.after:
            raise Interrupted()


def production_entries(repo):
    return dict((e["name"], e) for e in repo.load_channel("production")["entries"])


def test_sync_fetches_verifies_and_publishes(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"), actor="ops")
    result = depot.sync(Source(upstream.path), keyring.public_keys())
    assert result["changed"] and result["blobs_fetched"] == 3 and result["blobs_present"] == 0
    assert result["bytes_fetched"] == result["bytes_total"] == sum(e["size"] for e in production_entries(upstream).values())
    for entry in production_entries(upstream).values():
        blob = depot.blob_path(entry["sha256"])
        assert hashlib.sha256(open(blob, "rb").read()).hexdigest() == entry["sha256"]
    assert open(depot.index_path, "rb").read() == open(upstream.channel_path("production"), "rb").read()
    _signing.verify_detached(open(depot.index_path, "rb").read(), open(depot.index_path + ".sig", "rb").read(),
                             keyring.public_keys(), "depot index")
    state = depot.state()
    assert state["serial"] == result["serial"] == 3 and state["key_id"] == keyring.load()["active"]
    assert state["synced_by"] == "ops" and not os.listdir(depot.p(".incoming"))
    again = depot.sync(Source(upstream.path), keyring.public_keys())
    assert again["changed"] is False and again["blobs_present"] == 3 and again["bytes_fetched"] == 0


def test_an_interrupted_sync_resumes_where_it_stopped(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    total = sum(e["size"] for e in production_entries(upstream).values())
    with pytest.raises(Interrupted):
        depot.sync(Source(upstream.path), keyring.public_keys(), throttle=CutOff(total // 2))
    assert not os.path.exists(depot.index_path), "an incomplete sync must not publish the index"
    blobs_dir = depot.p("blobs", "sha256")
    done = os.listdir(blobs_dir) if os.path.isdir(blobs_dir) else []
    done_bytes = sum(os.path.getsize(os.path.join(blobs_dir, f)) for f in done)
    partial_bytes = sum(os.path.getsize(depot.p(".incoming", f)) for f in os.listdir(depot.p(".incoming")))
    assert partial_bytes > 0
    result = depot.sync(Source(upstream.path), keyring.public_keys())
    assert result["blobs_present"] == len(done)
    assert result["bytes_resumed"] == partial_bytes
    # nothing was transferred twice
    assert done_bytes + result["bytes_resumed"] + result["bytes_fetched"] == total
    assert os.path.exists(depot.index_path)


def test_resume_over_http_uses_range_requests(upstream, http_upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    beta = production_entries(upstream)["beta"]
    with pytest.raises(Interrupted):
        depot.sync(Source(http_upstream), keyring.public_keys(), throttle=CutOff(300 * 1024 + 1024 * 1024))
    kept = os.path.getsize(depot.part_path(beta["sha256"]))
    assert 0 < kept < beta["size"]
    result = depot.sync(Source(http_upstream), keyring.public_keys())
    assert result["bytes_resumed"] == kept
    assert ("/blobs/sha256/%s" % beta["sha256"], "bytes=%d-" % kept) in RangeHandler.requests
    assert hashlib.sha256(open(depot.blob_path(beta["sha256"]), "rb").read()).hexdigest() == beta["sha256"]


def test_a_damaged_blob_on_the_depot_is_found_and_repaired(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    depot.sync(Source(upstream.path), keyring.public_keys())
    alpha = production_entries(upstream)["alpha"]
    blob = depot.blob_path(alpha["sha256"])
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.write(b"corrupt!")
    plan = depot.sync(Source(upstream.path), keyring.public_keys(), check=True)
    assert plan["actions"] == ["repair alpha 1.0 (blob %s, %d bytes)" % (alpha["sha256"], alpha["size"])]
    result = depot.sync(Source(upstream.path), keyring.public_keys())
    assert result["blobs_repaired"] == 1 and result["blobs_present"] == 2
    assert hashlib.sha256(open(blob, "rb").read()).hexdigest() == alpha["sha256"]
    # without verify_present a same-size damage goes unnoticed: that is the documented trade-off
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.write(b"corrupt!")
    assert depot.sync(Source(upstream.path), keyring.public_keys(), verify_present=False)["changed"] is False


def test_a_tampered_upstream_index_is_refused_and_nothing_changes(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    depot.sync(Source(upstream.path), keyring.public_keys())
    path = upstream.channel_path("production")
    original = open(path, "rb").read()
    index = json.loads(original)
    index["entries"][0]["sha256"] = "f" * 64
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(_repository.canonical_json(index))
    before = open(depot.index_path, "rb").read()
    with pytest.raises(DepotError, match="refusing to trust .*channels/production.json was modified after it was signed"):
        depot.sync(Source(upstream.path), keyring.public_keys())
    assert open(depot.index_path, "rb").read() == before
    with open(path, "wb") as handle:
        handle.write(original)
    stranger = _signing.Signer.generate()
    with pytest.raises(DepotError, match="which is not trusted here"):
        Depot(str(tmp_path / "other")).sync(Source(upstream.path), [stranger.public_key])
    os.unlink(path + ".sig")
    with pytest.raises(DepotError, match="is not signed"):
        Depot(str(tmp_path / "third")).sync(Source(upstream.path), keyring.public_keys())


def test_a_depot_publication_stopped_half_way_is_named_and_the_next_sync_repairs_it(
        upstream, tmp_path, keyring, monkeypatch):
    hq = Depot(str(tmp_path / "hq"))
    hq.sync(Source(upstream.path), keyring.public_keys())
    branch = Depot(str(tmp_path / "branch"))
    branch.sync(Source(hq.path), keyring.public_keys())
    published = open(hq.index_path, "rb").read()
    upstream.delete("gamma", "production")

    def crash(staged, final):
        raise OSError("simulated crash between the signature and the index")

    monkeypatch.setattr(_depot, "move_into_place", crash)
    with pytest.raises(OSError, match="simulated crash"):
        hq.sync(Source(upstream.path), keyring.public_keys())
    monkeypatch.undo()
    assert open(hq.index_path, "rb").read() == published
    with pytest.raises(DepotError) as refused:
        branch.sync(Source(hq.path), keyring.public_keys())
    index = "%s/channels/production.json" % hq.path
    assert str(refused.value) == (
        "refusing to trust %s: channel index %s does not match its signature because its publication was interrupted: "
        "the signature covers the new index staged as %s.pending, which was never put in place; sync that depot again "
        "(esd.osp.depot_channel, playbooks/distribute.yml): the sync publishes the index and its signature anew" % (
            hq.path, index, index))
    repaired = hq.sync(Source(upstream.path), keyring.public_keys())
    assert repaired["serial"] == 4 and not os.path.exists(hq.index_path + ".pending")
    assert branch.sync(Source(hq.path), keyring.public_keys())["serial"] == 4


def test_a_tampered_upstream_blob_is_refused_on_arrival(upstream, tmp_path, keyring):
    beta = production_entries(upstream)["beta"]
    blob = upstream.blob_path(beta["sha256"])
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"evil")
    depot = Depot(str(tmp_path / "depot"))
    with pytest.raises(DepotError, match="failed for 1 of 3 blob.*beta 1.0 \\(blob %s\\) from .* failed its checksum on "
                                         "arrival: got %d bytes with sha256 [0-9a-f]+, the signed index says %d bytes "
                                         "with sha256 %s; the download was discarded" % (
                                             beta["sha256"], beta["size"], beta["size"], beta["sha256"])):
        depot.sync(Source(upstream.path), keyring.public_keys())
    assert not os.path.exists(depot.blob_path(beta["sha256"])) and not os.path.exists(depot.part_path(beta["sha256"]))
    assert not os.path.exists(depot.index_path)
    assert len(os.listdir(depot.p("blobs", "sha256"))) == 2  # the good ones are kept for the next run


def test_an_older_index_is_refused_unless_forced(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    old_index = open(upstream.channel_path("production"), "rb").read()
    old_sig = open(upstream.channel_path("production") + ".sig", "rb").read()
    upstream.delete("gamma", "production")
    depot.sync(Source(upstream.path), keyring.public_keys())
    for path, data in ((upstream.channel_path("production"), old_index), (upstream.channel_path("production") + ".sig", old_sig)):
        os.chmod(path, 0o644)
        with open(path, "wb") as handle:
            handle.write(data)
    with pytest.raises(DepotError, match="refusing the production index serial 3 .* already published serial 4"):
        depot.sync(Source(upstream.path), keyring.public_keys())
    assert depot.sync(Source(upstream.path), keyring.public_keys(), force=True)["serial"] == 3


def test_retired_packages_are_pruned_from_the_depot(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    depot.sync(Source(upstream.path), keyring.public_keys())
    gamma = production_entries(upstream)["gamma"]
    upstream.retire("gamma")
    result = depot.sync(Source(upstream.path), keyring.public_keys())
    assert result["blobs_pruned"] == 1 and not os.path.exists(depot.blob_path(gamma["sha256"]))
    assert depot.sync(Source(upstream.path), keyring.public_keys(), prune=False)["changed"] is False


def test_delete_from_a_depot_sticks_until_readmitted(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"), actor="ops")
    depot.sync(Source(upstream.path), keyring.public_keys())
    beta = production_entries(upstream)["beta"]
    planned = depot.delete(["beta=1.0", "nosuch"], check=True)
    assert os.path.exists(depot.blob_path(beta["sha256"]))
    result = depot.delete(["beta=1.0", "nosuch"])
    assert result["actions"] == planned["actions"] == ["exclude beta 1.0 from this depot", "delete blob %s" % beta["sha256"]]
    assert result["not_found"] == ["nosuch"]
    assert not os.path.exists(depot.blob_path(beta["sha256"]))
    assert [x["name"] for x in depot.state()["excluded"]] == ["beta"] and depot.state()["excluded"][0]["by"] == "ops"
    assert depot.delete(["beta"])["changed"] is False
    again = depot.sync(Source(upstream.path), keyring.public_keys())
    assert again["changed"] is False and again["blobs_total"] == 2
    back = depot.sync(Source(upstream.path), keyring.public_keys(), readmit=["beta"])
    assert back["blobs_fetched"] == 1 and depot.state()["excluded"] == []


def test_check_mode_writes_nothing(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    plan = depot.sync(Source(upstream.path), keyring.public_keys(), check=True)
    assert plan["changed"] and len(plan["actions"]) == 4 and not os.path.exists(depot.path)


def test_throttle_keeps_the_average_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    throttle = _depot.Throttle(100, clock=lambda: now[0], sleep=sleep)  # 100 KiB/s
    for dummy in range(10):
        throttle.account(50 * 1024)
    assert now[0] == pytest.approx(5.0)
    assert _depot.Throttle(0).rate == 0


def test_one_sync_at_a_time(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    with depot.lock():
        assert open(depot.p(".lock")).read().strip() == str(os.getpid())
        with pytest.raises(_repository.RepositoryError, match="is locked by another run"):
            depot.sync(Source(upstream.path), keyring.public_keys())


def test_sources(tmp_path):
    with pytest.raises(DepotError, match="unsupported source"):
        Source("ftp://example.invalid/")
    with pytest.raises(DepotError, match="does not exist"):
        Source("file://%s" % tmp_path).read("channels/production.json")
    assert Source(str(tmp_path)).read("nothing", missing_ok=True) is None
    assert _depot.parse_package_ref("a=1") == ("a", "1") and _depot.parse_package_ref("a") == ("a", None)


def test_local_sync_without_copy_file_range(upstream, tmp_path, keyring, monkeypatch):
    """Filesystems or kernels without copy_file_range: the blobs go through Python, hashed as they stream."""
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    depot = Depot(str(tmp_path / "depot"))
    result = depot.sync(Source(upstream.path), keyring.public_keys())
    assert result["blobs_fetched"] == 3
    for entry in production_entries(upstream).values():
        assert hashlib.sha256(open(depot.blob_path(entry["sha256"]), "rb").read()).hexdigest() == entry["sha256"]


def test_a_re_signed_index_is_published_after_a_key_rotation(upstream, tmp_path, keyring):
    depot = Depot(str(tmp_path / "depot"))
    depot.sync(Source(upstream.path), keyring.public_keys())
    ring = _signing.Keyring(str(tmp_path / "rotated"))
    ring.apply("present", [], "keyadmin")
    _repository.Repository(upstream.path, signer=ring.active_signer()).sign()
    trusted = keyring.public_keys() + ring.public_keys()
    result = depot.sync(Source(upstream.path), trusted)
    assert result["changed"] and result["key_id"] == ring.load()["active"] and result["blobs_fetched"] == 0
    assert depot.state()["key_id"] == ring.load()["active"]
    assert depot.sync(Source(upstream.path), trusted)["changed"] is False
