"""A node's identity on disk: master key, subkeys, the current signed record.

Layout under the identity directory (``<data-dir>/identity`` by default)::

    master_key.json    Ed25519 master seed              0600, optionally sealed
    subkeys.json       X-Wing seed, ML-DSA-65 seed      0600, sealed like the master
    subkeys.next.json  the subkeys of a rotation in progress (see :func:`rotate`)
    record.bin         current signed identity record   0600
    i2p-binding.bin    salt ‖ I2P destination the record commits to   0600
    revocation.bin     signed revocation, once revoked  0600

``record.bin`` is the commit point of every change: whatever a change needs
(new subkeys, a new I2P binding) is written first, the record that uses it
last, and :func:`load` checks every subkey and the binding against the record.
A crash at any step therefore leaves the old identity or the new one, never a
mix. Nothing here ever overwrites an existing key it could not read: a
corrupted, truncated or wrongly-unlocked file is reported, and left as it is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from ..addresses import onion_address_from_public_key
from ..crypto import xwing
from ._files import atomic_rename, atomic_write
from ._i2p import I2PBinding
from ._keyfile import KeyFileError, is_encrypted, read_key_file, write_key_file
from ._record import (
    MAX_RECORD_LIFETIME,
    IdentityRecord,
    RecordError,
    RecordKind,
    make_rotation_proof,
    parse_record,
    sign_record,
    verify_signatures,
)

MASTER_FILE = "master_key.json"
SUBKEYS_FILE = "subkeys.json"
NEXT_SUBKEYS_FILE = "subkeys.next.json"
RECORD_FILE = "record.bin"
REVOCATION_FILE = "revocation.bin"
BINDING_FILE = "i2p-binding.bin"
DEFAULT_RECORD_LIFETIME = MAX_RECORD_LIFETIME


class IdentityError(Exception):
    """The identity cannot be created, loaded or changed; the message says why."""


class IdentityExists(IdentityError):
    """``init`` refused: an identity is already there."""


class IdentityMissing(IdentityError):
    """No identity in that directory."""


class Revoked(IdentityError):
    """The identity was revoked; it must not be used again."""


def expanded_secret_key(seed: bytes) -> bytes:
    """Tor's 64-byte expanded Ed25519 secret key (ADD_ONION ``ED25519-V3``).

    SHA-512 of the 32-byte seed with the scalar half clamped, as in ref10.
    """
    if len(seed) != 32:
        raise IdentityError("an Ed25519 seed is 32 bytes")
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def tor_secret_key_file(seed: bytes) -> bytes:
    """Contents of Tor's ``hs_ed25519_secret_key`` for this master key."""
    return b"== ed25519v1-secret: type0 ==\x00\x00\x00" + expanded_secret_key(seed)


def tor_public_key_file(public: bytes) -> bytes:
    """Contents of Tor's ``hs_ed25519_public_key``."""
    return b"== ed25519v1-public: type0 ==\x00\x00\x00" + public


@dataclass(frozen=True)
class NodeIdentity:
    """The loaded identity of this node (holds secrets: never log it)."""

    directory: Path
    master_seed: bytes
    xwing_secret: bytes
    mldsa_seed: bytes
    record: IdentityRecord
    i2p_binding: I2PBinding | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"NodeIdentity({self.onion})"

    # -- public facts -------------------------------------------------------
    @property
    def master(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.master_seed)

    @property
    def ed25519_public(self) -> bytes:
        return self.master.public_key().public_bytes_raw()

    @property
    def onion(self) -> str:
        return onion_address_from_public_key(self.ed25519_public)

    @property
    def xwing_public(self) -> bytes:
        return self.record.xwing_public

    @property
    def mldsa_public(self) -> bytes:
        return self.record.mldsa_public

    @property
    def mldsa(self) -> MLDSA65PrivateKey:
        return MLDSA65PrivateKey.from_seed_bytes(self.mldsa_seed)

    def expanded_secret_key(self) -> bytes:
        """For ``ADD_ONION ED25519-V3:<base64>``."""
        return expanded_secret_key(self.master_seed)

    def sign(self, data: bytes) -> bytes:
        return self.master.sign(data)

    def summary(self) -> dict[str, object]:
        """Public facts (and this node's own I2P address), for ``identity show`` and the API."""
        out = self.record.to_json()
        out["onion"] = self.onion
        out["ed25519_public"] = self.ed25519_public.hex()
        binding = self.i2p_binding
        out["i2p_destination"] = binding.destination if binding else None
        out["i2p_address"] = binding.b32 if binding else None
        return out


def _path(directory: Path, name: str) -> Path:
    return Path(directory) / name


def exists(directory: Path) -> bool:
    return _path(directory, MASTER_FILE).exists()


def _mldsa_public(seed: bytes) -> bytes:
    return MLDSA65PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()


def _new_record(
    master: Ed25519PrivateKey,
    xwing_secret: bytes,
    mldsa_seed: bytes,
    sequence: int,
    now: float,
    lifetime: int,
    *,
    i2p_commitment: bytes = b"",
    rotation_proof: bytes = b"",
) -> IdentityRecord:
    if not 0 < lifetime <= MAX_RECORD_LIFETIME:
        raise IdentityError(f"record lifetime must be 1 to {MAX_RECORD_LIFETIME} seconds")
    mldsa = MLDSA65PrivateKey.from_seed_bytes(mldsa_seed)
    rec = IdentityRecord(
        kind=RecordKind.IDENTITY,
        ed25519_public=master.public_key().public_bytes_raw(),
        sequence=sequence,
        created=int(now),
        expires=int(now) + lifetime,
        xwing_public=xwing.public_key_from_secret(xwing_secret),
        mldsa_public=mldsa.public_key().public_bytes_raw(),
        i2p_commitment=i2p_commitment,
        rotation_proof=rotation_proof,
    )
    return sign_record(rec, master, mldsa)


def _subkeys(xwing_secret: bytes, mldsa_seed: bytes) -> dict[str, bytes]:
    return {"xwing": xwing_secret, "mldsa65": mldsa_seed}


def create(
    directory: Path,
    now: float,
    *,
    passphrase: str | None = None,
    lifetime: int = DEFAULT_RECORD_LIFETIME,
) -> NodeIdentity:
    """Create a new identity (Ed25519 master, X-Wing and ML-DSA-65 subkeys).

    Refuses (:class:`IdentityExists`) if one is there.
    """
    directory = Path(directory)
    master_path = _path(directory, MASTER_FILE)
    subkeys_path = _path(directory, SUBKEYS_FILE)
    if master_path.exists() or subkeys_path.exists():
        raise IdentityExists(
            f"{directory} already holds an identity; refusing to overwrite it "
            "(move it away first if you really mean to replace it)"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    master_seed = os.urandom(32)
    xwing_secret, _ = xwing.generate_keypair()
    mldsa_seed = os.urandom(32)
    master = Ed25519PrivateKey.from_private_bytes(master_seed)
    onion = onion_address_from_public_key(master.public_key().public_bytes_raw())
    record = _new_record(master, xwing_secret, mldsa_seed, 1, now, lifetime)
    # Subkeys and record first: the master key file is what marks the identity as
    # existing, so a crash in between leaves no half identity that looks whole.
    write_key_file(subkeys_path, _subkeys(xwing_secret, mldsa_seed), onion, passphrase)
    atomic_write(_path(directory, RECORD_FILE), record.to_bytes(), mode=0o600)
    write_key_file(master_path, {"ed25519": master_seed}, onion, passphrase)
    return NodeIdentity(directory, master_seed, xwing_secret, mldsa_seed, record)


def _read_subkeys(path: Path, onion: str, passphrase: str | None) -> tuple[bytes, bytes]:
    label, sub = read_key_file(path, passphrase)
    if label != onion:
        raise KeyFileError(f"{path}: belongs to {label}, not to {onion}")
    xwing_secret = sub.get("xwing")
    if xwing_secret is None or len(xwing_secret) != 32:
        raise KeyFileError(f"{path}: no valid X-Wing key inside (corrupted?)")
    mldsa_seed = sub.get("mldsa65")
    if mldsa_seed is None or len(mldsa_seed) != 32:
        raise KeyFileError(f"{path}: no valid ML-DSA-65 seed inside (ML-DSA-65 is "
                           "mandatory; an identity made without it cannot be used: "
                           "create a new one)")
    return xwing_secret, mldsa_seed


def _matches(record: IdentityRecord, xwing_secret: bytes, mldsa_seed: bytes) -> bool:
    return (record.xwing_public == xwing.public_key_from_secret(xwing_secret)
            and record.mldsa_public == _mldsa_public(mldsa_seed))


def _load_binding(directory: Path, record: IdentityRecord) -> I2PBinding | None:
    """The binding the record commits to, or None (none, or a bind cut short by a crash)."""
    if not record.i2p_commitment:
        return None
    try:
        binding = I2PBinding.parse(_path(directory, BINDING_FILE).read_bytes())
    except (OSError, RecordError):
        return None
    return binding if binding.commitment() == record.i2p_commitment else None


def load(directory: Path, now: float, *, passphrase: str | None = None) -> NodeIdentity:
    """Load an identity, checking every file against the master key and the record.

    The record is the commit point: the subkeys used are the ones whose public
    keys it lists (``subkeys.json``, or those of a rotation that was cut short
    after its record was written, which are then put in place). A record that
    matches neither is an error, never silently paired with other keys.
    """
    directory = Path(directory)
    master_path = _path(directory, MASTER_FILE)
    subkeys_path = _path(directory, SUBKEYS_FILE)
    next_path = _path(directory, NEXT_SUBKEYS_FILE)
    record_path = _path(directory, RECORD_FILE)
    revocation_path = _path(directory, REVOCATION_FILE)
    if not master_path.exists():
        raise IdentityMissing(f"no identity in {directory} (create one with "
                              "'aegis-hidden identity init')")
    label, secrets = read_key_file(master_path, passphrase)
    seed = secrets.get("ed25519")
    if seed is None or len(seed) != 32:
        raise KeyFileError(f"{master_path}: no valid Ed25519 seed inside (corrupted?)")
    master = Ed25519PrivateKey.from_private_bytes(seed)
    onion = onion_address_from_public_key(master.public_key().public_bytes_raw())
    if label != onion:
        raise KeyFileError(f"{master_path}: the key does not match its label {label!r} "
                           "(corrupted or edited?)")
    if revocation_path.exists():
        raise Revoked(f"{onion} was revoked ({revocation_path}); create a new identity "
                      "in another directory")
    try:
        record = parse_record(record_path.read_bytes())
        # Expiry is not fatal on load: the node re-signs below.
        verify_signatures(record, onion)
    except FileNotFoundError:
        raise IdentityError(f"{record_path} is missing; the identity cannot be used "
                            "(restore it from a backup)") from None
    except RecordError as e:
        raise IdentityError(f"{record_path}: {e}") from None
    if record.kind is not RecordKind.IDENTITY:
        raise IdentityError(f"{record_path}: not an identity record")
    xwing_secret, mldsa_seed = _read_subkeys(subkeys_path, onion, passphrase)
    if _matches(record, xwing_secret, mldsa_seed):
        # A rotation that stopped before its record: the old identity stands.
        next_path.unlink(missing_ok=True)
    elif next_path.exists():
        xwing_secret, mldsa_seed = _read_subkeys(next_path, onion, passphrase)
        if not _matches(record, xwing_secret, mldsa_seed):
            raise IdentityError(f"{record_path} matches neither {subkeys_path} nor "
                                f"{next_path} (mixed backups?)")
        # A rotation that stopped after its record: finish it.
        atomic_rename(next_path, subkeys_path)
    else:
        raise IdentityError(f"{record_path} does not match {subkeys_path} (mixed backups?)")
    ident = NodeIdentity(directory, seed, xwing_secret, mldsa_seed, record,
                         _load_binding(directory, record))
    if refresh_due(ident, now):
        ident = refresh(ident, now)
    return ident


def load_or_create(
    directory: Path, now: float, *, passphrase: str | None = None
) -> tuple[NodeIdentity, bool]:
    """(identity, created?): the first start creates it, every later one loads it."""
    if exists(directory):
        return load(directory, now, passphrase=passphrase), False
    return create(directory, now, passphrase=passphrase), True


def _store_record(ident: NodeIdentity, record: IdentityRecord) -> NodeIdentity:
    atomic_write(_path(ident.directory, RECORD_FILE), record.to_bytes(), mode=0o600)
    return replace(ident, record=record)


def refresh_due(ident: NodeIdentity, now: float) -> bool:
    """True once half of the current record's lifetime has passed (time to re-sign)."""
    rec = ident.record
    return now >= rec.created + (rec.expires - rec.created) / 2


def refresh(ident: NodeIdentity, now: float, lifetime: int = DEFAULT_RECORD_LIFETIME
            ) -> NodeIdentity:
    """Re-sign the same subkeys, I2P commitment and rotation proof: sequence + 1, new expiry."""
    rec = _new_record(ident.master, ident.xwing_secret, ident.mldsa_seed,
                      ident.record.sequence + 1, now, lifetime,
                      i2p_commitment=ident.record.i2p_commitment,
                      rotation_proof=ident.record.rotation_proof)
    return _store_record(ident, rec)


def bind_i2p_destination(ident: NodeIdentity, destination: str, now: float) -> NodeIdentity:
    """Commit the record to ``destination`` (I2P base64) under a fresh random salt.

    The binding file is written before the record that commits to it, so a crash
    in between leaves the old record (whose commitment the new file does not open:
    :func:`load` then reports no binding and the I2P provider binds again).
    """
    current = ident.i2p_binding
    if current is not None and current.destination == destination:
        return ident
    binding = I2PBinding(destination, os.urandom(32))
    atomic_write(_path(ident.directory, BINDING_FILE), binding.to_bytes(), mode=0o600)
    rec = _new_record(ident.master, ident.xwing_secret, ident.mldsa_seed,
                      ident.record.sequence + 1, now, DEFAULT_RECORD_LIFETIME,
                      i2p_commitment=binding.commitment(),
                      rotation_proof=ident.record.rotation_proof)
    return _store_record(replace(ident, i2p_binding=binding), rec)


def rotate(ident: NodeIdentity, now: float, *, passphrase: str | None = None) -> NodeIdentity:
    """New X-Wing and ML-DSA-65 subkeys under the same master key, sequence + 1.

    The new record carries a rotation proof: the previous ML-DSA-65 key signs the
    new one, so peers that pinned the old key accept the change. One atomic step:
    the new subkeys go to ``subkeys.next.json``, then the record is replaced (the
    commit point), then ``subkeys.next.json`` is renamed over ``subkeys.json``;
    :func:`load` finishes or discards a rotation cut short at any point.
    """
    if passphrase is None and is_encrypted(_path(ident.directory, SUBKEYS_FILE)):
        raise IdentityError("the key files are sealed: give the passphrase to rotate")
    xwing_secret, _ = xwing.generate_keypair()
    mldsa_seed = os.urandom(32)
    sequence = ident.record.sequence + 1
    proof = make_rotation_proof(ident.mldsa, ident.ed25519_public,
                                _mldsa_public(mldsa_seed), sequence)
    rec = _new_record(ident.master, xwing_secret, mldsa_seed, sequence, now,
                      DEFAULT_RECORD_LIFETIME, i2p_commitment=ident.record.i2p_commitment,
                      rotation_proof=proof)
    next_path = _path(ident.directory, NEXT_SUBKEYS_FILE)
    write_key_file(next_path, _subkeys(xwing_secret, mldsa_seed), ident.onion, passphrase)
    new = _store_record(
        replace(ident, xwing_secret=xwing_secret, mldsa_seed=mldsa_seed), rec)
    atomic_rename(next_path, _path(ident.directory, SUBKEYS_FILE))
    return new


def revoke(ident: NodeIdentity, now: float, reason: str) -> IdentityRecord:
    """Sign (with both keys) and store a permanent revocation of this identity."""
    rec = sign_record(
        IdentityRecord(
            kind=RecordKind.REVOCATION,
            ed25519_public=ident.ed25519_public,
            sequence=ident.record.sequence + 1,
            created=int(now),
            expires=0,
            mldsa_public=ident.record.mldsa_public,
            reason=reason,
            rotation_proof=ident.record.rotation_proof,
        ),
        ident.master,
        ident.mldsa,
    )
    atomic_write(_path(ident.directory, REVOCATION_FILE), rec.to_bytes(), mode=0o600)
    return rec
