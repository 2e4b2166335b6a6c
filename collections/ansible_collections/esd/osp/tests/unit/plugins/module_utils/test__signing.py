# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _signing

# RFC 8032 section 7.1, tests 1-3: (public key, message, signature)
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("public, message, signature", RFC8032)
def test_pure_python_verifier_passes_the_rfc8032_vectors(public, message, signature):
    assert _signing.ed25519_verify_pure(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.parametrize("public, message, signature", RFC8032)
def test_pure_python_verifier_rejects_any_change(public, message, signature):
    public, message, signature = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert not _signing.ed25519_verify_pure(public, message + b"x", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not _signing.ed25519_verify_pure(public, message, flipped)
    # s >= L (signature malleability) is refused
    s = int.from_bytes(signature[32:], "little") + _signing._L
    if s < 2 ** 256:
        assert not _signing.ed25519_verify_pure(public, message, signature[:32] + s.to_bytes(32, "little"))


def test_pure_python_verifier_agrees_with_cryptography():
    signer = _signing.Signer.generate()
    for size in (0, 1, 64, 1000, 65536):
        message = os.urandom(size)
        signature = signer.sign(message)
        assert _signing.ed25519_verify_pure(signer.raw_public_key, message, signature)
        assert _signing.ed25519_verify(signer.raw_public_key, message, signature)
        other = _signing.Signer.generate()
        assert not _signing.ed25519_verify_pure(other.raw_public_key, message, signature)


@pytest.fixture
def signer():
    return _signing.Signer.generate()


@pytest.fixture
def other():
    return _signing.Signer.generate()


@pytest.fixture(params=["cryptography", "pure-python"])
def verifier(request, monkeypatch, signer, other):
    """Verify with and without the cryptography library (as on a depot without it); keys are made first."""
    if request.param == "pure-python":
        monkeypatch.setattr(_signing, "HAS_CRYPTOGRAPHY", False)
    return request.param


def test_detached_signature_round_trip(verifier, signer):
    data = b'{"channel": "production"}\n'
    sig = _signing.make_signature(data, signer)
    assert _signing.verify_detached(data, sig, [signer.public_key], "index") == signer.key_id


def test_modified_data_is_refused_with_the_digests(verifier, signer):
    sig = _signing.make_signature(b"original", signer)
    with pytest.raises(_signing.SignatureError, match="index was modified after it was signed: its sha256 is"):
        _signing.verify_detached(b"tampered", sig, [signer.public_key], "index")


def test_forged_signature_document_is_refused(verifier, signer):
    """Someone edits the data and puts its new sha256 into the .sig: the signature itself fails."""
    doc = json.loads(_signing.make_signature(b"original", signer))
    doc["signed_sha256"] = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(_signing.SignatureError, match="does not verify with key %s" % signer.key_id):
        _signing.verify_detached(b"tampered", json.dumps(doc).encode(), [signer.public_key], "index")


def test_untrusted_key_and_missing_signature_are_refused(verifier, signer, other):
    sig = _signing.make_signature(b"data", signer)
    with pytest.raises(_signing.SignatureError, match="signed by key %s, which is not trusted here" % signer.key_id):
        _signing.verify_detached(b"data", sig, [other.public_key], "index")
    with pytest.raises(_signing.SignatureError, match="is not signed"):
        _signing.verify_detached(b"data", None, [signer.public_key], "index")
    with pytest.raises(_signing.SignatureError, match="no trusted public keys"):
        _signing.verify_detached(b"data", sig, [], "index")


def test_public_key_parsing_reports_bad_input():
    with pytest.raises(_signing.SigningError, match="only ed25519"):
        _signing.decode_public_key("rsa:AAAA")
    with pytest.raises(_signing.SigningError, match="not valid base64"):
        _signing.decode_public_key("ed25519:@@@")
    with pytest.raises(_signing.SigningError, match="an Ed25519 key has 32"):
        _signing.decode_public_key("ed25519:" + base64.b64encode(b"short").decode())


def test_keyring_create_rotate_revoke(tmp_path):
    keyring = _signing.Keyring(str(tmp_path / "keys"))
    assert keyring.plan("present", []) == ["create keyring with a new active key"]
    keyring.apply("present", [], "alice")
    first = keyring.load()["active"]
    assert oct(os.stat(tmp_path / "keys" / ("%s.pem" % first)).st_mode & 0o777) == "0o600"
    assert keyring.plan("present", []) == []  # idempotent

    data = b"index v1"
    sig_old = _signing.make_signature(data, keyring.active_signer())
    keyring.apply("rotated", [], "alice")
    second = keyring.load()["active"]
    assert second != first
    statuses = dict((k["id"], k["status"]) for k in keyring.load()["keys"])
    assert statuses == {first: "retired", second: "active"}
    # the retired key is still trusted, so indexes signed before the rotation keep verifying
    assert keyring.public_keys()[0] == _signing.encode_public_key(keyring.active_signer().raw_public_key)
    assert _signing.verify_detached(data, sig_old, keyring.public_keys(), "index") == first

    with pytest.raises(_signing.SigningError, match="it is the active key; rotate first"):
        keyring.plan("present", [second])
    with pytest.raises(_signing.SigningError, match="has no such key"):
        keyring.plan("present", ["0000000000000000"])
    keyring.apply("present", [first], "bob")
    assert not (tmp_path / "keys" / ("%s.pem" % first)).exists()
    with pytest.raises(_signing.SignatureError, match="not trusted here"):
        _signing.verify_detached(data, sig_old, keyring.public_keys(), "index")


def _rotate_at_the_barrier(path, barrier):
    barrier.wait()
    _signing.Keyring(path).apply("rotated", [], "rotator-%d" % os.getpid())


def test_two_concurrent_rotations_keep_both_new_keys(tmp_path, monkeypatch):
    path = str(tmp_path / "keys")
    keyring = _signing.Keyring(path)
    keyring.apply("present", [], "alice")
    first = keyring.load()["active"]
    generate = _signing.Signer.generate

    def slow_generate():
        signer = generate()
        time.sleep(0.5)  # widens the window between reading keyring.json and writing it back
        return signer
    monkeypatch.setattr(_signing.Signer, "generate", staticmethod(slow_generate))
    context = multiprocessing.get_context("fork")  # the children inherit the slow key generation
    barrier = context.Barrier(2)
    rotations = [context.Process(target=_rotate_at_the_barrier, args=(path, barrier)) for _number in range(2)]
    for process in rotations:
        process.start()
    for process in rotations:
        process.join(60)
    assert [p.exitcode for p in rotations] == [0, 0]

    data = keyring.load()
    pems = sorted(name[:-len(".pem")] for name in os.listdir(path) if name.endswith(".pem"))
    assert sorted(k["id"] for k in data["keys"]) == pems and len(pems) == 3
    statuses = dict((k["id"], k["status"]) for k in data["keys"])
    assert statuses[first] == "retired" and sorted(statuses.values()) == ["active", "retired", "retired"]
    assert statuses[data["active"]] == "active"
    # the rotation that ran second retired the key the first one made
    second = [k for k in data["keys"] if k["id"] not in (first, data["active"])][0]
    assert second["retired_at"] >= second["created_at"]


def test_passphrase_protected_key(tmp_path):
    keyring = _signing.Keyring(str(tmp_path / "keys"))
    keyring.apply("present", [], "alice", passphrase="s3cret")
    assert keyring.active_signer("s3cret").key_id == keyring.load()["active"]
    with pytest.raises(_signing.SigningError, match="passphrase"):
        keyring.active_signer()
    with pytest.raises(_signing.SigningError, match="passphrase"):
        keyring.active_signer("wrong")


def test_load_signer_and_public_keys_from_files(tmp_path):
    signer = _signing.Signer.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(signer.pem())
    assert _signing.load_signer(str(pem)).key_id == signer.key_id
    pubs = tmp_path / "trusted.txt"
    pubs.write_text("# trusted\n%s\n" % signer.public_key)
    assert _signing.load_public_keys(str(pubs)) == [signer.public_key]
    with pytest.raises(_signing.SigningError, match="does not exist"):
        _signing.load_signer(str(tmp_path / "missing"))
