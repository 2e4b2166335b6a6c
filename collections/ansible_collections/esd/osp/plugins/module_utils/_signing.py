# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ed25519 signatures for channel indexes and archives, and the keyring that holds the keys.

Split by where the code runs:

* Verification needs only public data, so it works everywhere: with ``cryptography`` when it is
  installed, otherwise with the pure-Python RFC 8032 verifier below (standard library only). Depots
  and targets therefore verify an index without extra packages.
* Key generation and signing handle secrets and need ``cryptography`` (controller or repository
  host). Callers check ``HAS_CRYPTOGRAPHY`` and report ``missing_required_lib('cryptography')``.

A keyring is a directory::

    keyring.json      {"format": "esd.osp/keyring/v1", "active": "<key id>", "keys": [...]}
    <key id>.pem      the private key (PKCS#8 PEM, mode 0600, optionally passphrase-encrypted)
    keyring.json.lock held (flock) while a change reads and rewrites keyring.json

Each key in ``keys`` has ``id``, ``algorithm`` ("ed25519"), ``public_key`` (``ed25519:<base64>``),
``created_at``, ``created_by`` and ``status``: ``active`` (signs), ``retired`` (no longer signs, still
trusted so indexes signed before a rotation keep verifying) or ``revoked`` (not trusted; its private
key file is deleted). The key id is the first 16 hex digits of the sha256 of the raw public key.

A detached signature (``<file>.sig``) is JSON::

    {"format": "esd.osp/signature/v1", "algorithm": "ed25519", "key_id": "...",
     "signed_sha256": "<sha256 of the signed bytes>", "signature": "<base64>", "signed_at": "..."}
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import time

from ansible_collections.esd.osp.plugins.module_utils import _fileio

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519 as _crypto_ed25519
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _import_error:  # pragma: no cover - depends on the host
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _import_error

SIGNATURE_FORMAT = "esd.osp/signature/v1"
KEYRING_FORMAT = "esd.osp/keyring/v1"
KEYRING_FILE = "keyring.json"
LOCK_SUFFIX = ".lock"  # keyring.json.lock: serialises changes to the keyring
ALGORITHM = "ed25519"
KEY_PREFIX = "ed25519:"


class SigningError(Exception):
    """A key, keyring or signature operation failed (bad input, missing key, wrong passphrase...)."""


class SignatureError(SigningError):
    """Signed content failed verification: tampered, signed by an untrusted key, or unsigned."""


# --- Pure-Python Ed25519 verification (RFC 8032, section 5.1.7) --------------------------------
# Only public values are involved, so the lack of constant-time arithmetic does not matter here.

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _point_add(a, b):
    pa = (a[1] - a[0]) * (b[1] - b[0]) % _P
    pb = (a[1] + a[0]) * (b[1] + b[0]) % _P
    pc = 2 * a[3] * b[3] * _D % _P
    pd = 2 * a[2] * b[2] % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _point_mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar > 0:
        if scalar & 1:
            result = _point_add(result, point)
        point = _point_add(point, point)
        scalar >>= 1
    return result


def _point_equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _point_decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_G_Y = 4 * pow(5, _P - 2, _P) % _P
_G_X = _recover_x(_G_Y, 0)
_G = (_G_X, _G_Y, 1, _G_X * _G_Y % _P)


def ed25519_verify_pure(public_key, message, signature):
    """Return True when `signature` (64 bytes) over `message` verifies with `public_key` (32 bytes)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    point_a = _point_decompress(public_key)
    if point_a is None:
        return False
    r_bytes = signature[:32]
    point_r = _point_decompress(r_bytes)
    if point_r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % _L
    return _point_equal(_point_mul(s, _G), _point_add(point_r, _point_mul(h, point_a)))


def ed25519_verify(public_key, message, signature):
    if HAS_CRYPTOGRAPHY:
        try:
            _crypto_ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False
    return ed25519_verify_pure(public_key, message, signature)


# --- Public keys --------------------------------------------------------------------------------

def key_id(raw_public_key):
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def encode_public_key(raw_public_key):
    return KEY_PREFIX + base64.b64encode(raw_public_key).decode("ascii")


def decode_public_key(text):
    """Parse ``ed25519:<base64>`` (or bare base64) into the 32 raw bytes."""
    if not isinstance(text, str):
        raise SigningError("a public key must be a string like 'ed25519:<base64>', got %r" % (text,))
    body = text.strip()
    if body.startswith(KEY_PREFIX):
        body = body[len(KEY_PREFIX):]
    elif ":" in body:
        raise SigningError("unsupported public key algorithm in %r (only ed25519 is supported)" % text)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("public key %r is not valid base64" % text)
    if len(raw) != 32:
        raise SigningError("public key %r is %d bytes long, an Ed25519 key has 32" % (text, len(raw)))
    return raw


def trusted_key_map(public_keys):
    """{key id: raw public key} for a list of ``ed25519:<base64>`` strings."""
    trusted = {}
    for text in public_keys or []:
        raw = decode_public_key(text)
        trusted[key_id(raw)] = raw
    return trusted


# --- Detached signatures ------------------------------------------------------------------------

def _utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def make_signature(data, signer):
    """Return the detached signature document (bytes) for `data`, signed by a `Signer`."""
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": signer.key_id,
        "signed_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(signer.sign(data)).decode("ascii"),
        "signed_at": _utc_now(),
    }
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("utf-8")


def parse_signature(sig_bytes, what):
    try:
        document = json.loads(sig_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError("the signature of %s is not readable JSON: %s" % (what, exc))
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise SignatureError("the signature of %s has an unknown format (expected %s)" % (what, SIGNATURE_FORMAT))
    if document.get("algorithm") != ALGORITHM:
        raise SignatureError("the signature of %s uses algorithm %r; only %s is accepted" % (
            what, document.get("algorithm"), ALGORITHM))
    for field in ("key_id", "signed_sha256", "signature"):
        if not isinstance(document.get(field), str):
            raise SignatureError("the signature of %s lacks %s" % (what, field))
    return document


def verify_detached(data, sig_bytes, public_keys, what):
    """Verify `data` against a detached signature document; return the signing key id.

    `public_keys` is a list of ``ed25519:<base64>`` strings (the trusted keys). Raises SignatureError
    with a message that says which of the checks failed, so an operator can tell a modified file
    from a rotation that has not reached this host yet.
    """
    if sig_bytes is None:
        raise SignatureError("%s is not signed (no .sig file); refusing to trust it" % what)
    document = parse_signature(sig_bytes, what)
    trusted = trusted_key_map(public_keys)
    if not trusted:
        raise SignatureError("no trusted public keys were given to verify %s" % what)
    actual = hashlib.sha256(data).hexdigest()
    if actual != document["signed_sha256"]:
        raise SignatureError(
            "%s was modified after it was signed: its sha256 is %s but the signature covers %s" % (
                what, actual, document["signed_sha256"]))
    raw = trusted.get(document["key_id"])
    if raw is None:
        raise SignatureError("%s is signed by key %s, which is not trusted here (trusted: %s)" % (
            what, document["key_id"], ", ".join(sorted(trusted))))
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signature of %s is not valid base64" % what)
    if not ed25519_verify(raw, data, signature):
        raise SignatureError("the signature of %s does not verify with key %s: the file or its signature was tampered with" % (
            what, document["key_id"]))
    return document["key_id"]


# --- Keys and keyrings (need cryptography) ------------------------------------------------------

def require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise SigningError("signing and key generation need the Python library cryptography: %s" % CRYPTOGRAPHY_IMPORT_ERROR)


class Signer(object):
    """An Ed25519 private key that signs; `key_id` and `public_key` identify it."""

    def __init__(self, private_key):
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.raw_public_key = raw
        self.key_id = key_id(raw)
        self.public_key = encode_public_key(raw)

    def sign(self, data):
        return self._private_key.sign(data)

    @classmethod
    def generate(cls):
        require_cryptography()
        return cls(_crypto_ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem_file(cls, path, passphrase=None):
        require_cryptography()
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise SigningError("cannot read signing key %s: %s" % (path, exc))
        try:
            key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8") if passphrase else None)
        except TypeError as exc:
            raise SigningError("signing key %s: %s (wrong or missing passphrase?)" % (path, exc))
        except ValueError as exc:
            raise SigningError("signing key %s cannot be loaded: %s (wrong passphrase or not a PEM private key?)" % (path, exc))
        if not isinstance(key, _crypto_ed25519.Ed25519PrivateKey):
            raise SigningError("signing key %s is not an Ed25519 key" % path)
        return cls(key)

    def pem(self, passphrase=None):
        encryption = (serialization.BestAvailableEncryption(passphrase.encode("utf-8")) if passphrase
                      else serialization.NoEncryption())
        return self._private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


class Keyring(object):
    """The signing keys of one repository, kept in a directory (see the module docstring)."""

    def __init__(self, path):
        self.path = path
        self.file = os.path.join(path, KEYRING_FILE)

    def exists(self):
        return os.path.isfile(self.file)

    def load(self):
        try:
            with open(self.file, "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise SigningError("cannot read keyring %s: %s" % (self.file, exc))
        if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT or not isinstance(data.get("keys"), list):
            raise SigningError("%s is not an esd.osp keyring (expected format %s)" % (self.file, KEYRING_FORMAT))
        return data

    def public_keys(self):
        """The trusted public keys: every key that is not revoked, the active one first."""
        data = self.load()
        keys = [k for k in data["keys"] if k.get("status") != "revoked"]
        keys.sort(key=lambda k: (k.get("id") != data.get("active"), k.get("created_at", "")))
        return [k["public_key"] for k in keys]

    def active_signer(self, passphrase=None):
        data = self.load()
        active = data.get("active")
        if not active:
            raise SigningError("keyring %s has no active key (rotate to create one)" % self.path)
        signer = Signer.from_pem_file(os.path.join(self.path, "%s.pem" % active), passphrase)
        if signer.key_id != active:
            raise SigningError("keyring %s: the private key file of %s holds key %s" % (self.path, active, signer.key_id))
        return signer

    def plan(self, state, revoke):
        """What `apply` would do, without doing it: a list of human-readable actions."""
        actions = []
        data = self.load() if self.exists() else None
        if data is None:
            actions.append("create keyring with a new active key")
        elif state == "rotated":
            actions.append("generate a new active key; retire %s" % data.get("active"))
        known = dict((k["id"], k) for k in (data or {}).get("keys", []))
        for kid in revoke or []:
            if kid not in known:
                raise SigningError("cannot revoke key %s: keyring %s has no such key (keys: %s)" % (
                    kid, self.path, ", ".join(sorted(known)) or "none"))
            if known[kid].get("status") == "revoked":
                continue
            if kid == (data or {}).get("active") and state != "rotated":
                raise SigningError("cannot revoke %s: it is the active key; rotate first (state=rotated)" % kid)
            actions.append("revoke %s" % kid)
        return actions

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive flock on keyring.json.lock while keyring.json is read, changed and rewritten: two
        concurrent rotations otherwise both read the same keys and the second write loses the first's new key.
        Waits for a holder (key changes are short)."""
        fd = os.open(self.file + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def apply(self, state, revoke, actor, passphrase=None):
        """Create / rotate / revoke as planned; return the list of actions performed."""
        require_cryptography()
        if not self.plan(state, revoke):
            return []
        os.makedirs(self.path, 0o700, exist_ok=True)
        with self.lock():
            return self._apply(state, revoke, actor, passphrase)

    def _apply(self, state, revoke, actor, passphrase):
        actions = self.plan(state, revoke)  # again under the lock: another run may have changed the keyring
        if not actions:
            return actions
        data = self.load() if self.exists() else {"format": KEYRING_FORMAT, "active": None, "keys": []}
        if not self.exists() or state == "rotated":
            signer = Signer.generate()
            _fileio.write_atomic(os.path.join(self.path, "%s.pem" % signer.key_id), signer.pem(passphrase), 0o600)
            for key in data["keys"]:
                if key.get("status") == "active":
                    key["status"] = "retired"
                    key["retired_at"] = _utc_now()
            data["keys"].append({"id": signer.key_id, "algorithm": ALGORITHM, "public_key": signer.public_key,
                                 "created_at": _utc_now(), "created_by": actor, "status": "active"})
            data["active"] = signer.key_id
        for kid in revoke or []:
            for key in data["keys"]:
                if key["id"] == kid and key.get("status") != "revoked":
                    key["status"] = "revoked"
                    key["revoked_at"] = _utc_now()
                    key["revoked_by"] = actor
                    pem = os.path.join(self.path, "%s.pem" % kid)
                    if os.path.exists(pem):
                        os.unlink(pem)
        _fileio.write_atomic(self.file, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8"), 0o644)
        return actions


def load_signer(path, passphrase=None):
    """A Signer from a keyring directory (its active key) or from a PEM private key file."""
    if os.path.isdir(path):
        return Keyring(path).active_signer(passphrase)
    if os.path.isfile(path):
        return Signer.from_pem_file(path, passphrase)
    raise SigningError("signing key %s does not exist (give a keyring directory or a PEM private key)" % path)


def load_public_keys(path):
    """Trusted public keys from a keyring directory, or from a file with one ``ed25519:...`` per line."""
    if os.path.isdir(path):
        return Keyring(path).public_keys()
    try:
        with open(path, "r") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise SigningError("cannot read public keys from %s: %s" % (path, exc))
    keys = [line for line in lines if line and not line.startswith("#")]
    for text in keys:
        decode_public_key(text)
    return keys
