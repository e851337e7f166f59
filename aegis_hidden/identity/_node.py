"""A node's identity on disk: master key, subkeys, the current signed record.

Layout under the identity directory (``<data-dir>/identity`` by default)::

    master_key.json   Ed25519 master seed            0600, optionally sealed
    subkeys.json      X-Wing seed, ML-DSA-65 seed    0600, sealed like the master
    record.bin        current signed identity record
    revocation.bin    signed revocation, once revoked

Nothing here ever overwrites an existing key it could not read: a corrupted,
truncated or wrongly-unlocked file is reported, and left as it is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from ..session import xwing
from ._files import atomic_write
from ._keyfile import KeyFileError, read_key_file, write_key_file
from ._onion import onion_address_from_public_key
from ._record import (
    IdentityRecord,
    RecordError,
    RecordKind,
    parse_record,
    sign_record,
    verify_record,
)

MASTER_FILE = "master_key.json"
SUBKEYS_FILE = "subkeys.json"
RECORD_FILE = "record.bin"
REVOCATION_FILE = "revocation.bin"
DEFAULT_RECORD_LIFETIME = 30 * 24 * 3600


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
    mldsa_seed: bytes | None
    record: IdentityRecord

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
    def mldsa(self) -> MLDSA65PrivateKey | None:
        if self.mldsa_seed is None:
            return None
        return MLDSA65PrivateKey.from_seed_bytes(self.mldsa_seed)

    def expanded_secret_key(self) -> bytes:
        """For ``ADD_ONION ED25519-V3:<base64>``."""
        return expanded_secret_key(self.master_seed)

    def sign(self, data: bytes) -> bytes:
        return self.master.sign(data)

    def summary(self) -> dict[str, object]:
        """Public facts only, for ``identity show --json`` and the API."""
        out = self.record.to_json()
        out["onion"] = self.onion
        out["ed25519_public"] = self.ed25519_public.hex()
        return out


def _paths(directory: Path) -> tuple[Path, Path, Path, Path]:
    d = Path(directory)
    return d / MASTER_FILE, d / SUBKEYS_FILE, d / RECORD_FILE, d / REVOCATION_FILE


def exists(directory: Path) -> bool:
    return _paths(directory)[0].exists()


def _new_record(
    master: Ed25519PrivateKey,
    xwing_secret: bytes,
    mldsa_seed: bytes | None,
    sequence: int,
    now: float,
    lifetime: int,
    i2p_destination: str = "",
) -> IdentityRecord:
    mldsa = MLDSA65PrivateKey.from_seed_bytes(mldsa_seed) if mldsa_seed else None
    rec = IdentityRecord(
        kind=RecordKind.IDENTITY,
        ed25519_public=master.public_key().public_bytes_raw(),
        sequence=sequence,
        created=int(now),
        expires=int(now) + lifetime,
        xwing_public=xwing.public_key_from_secret(xwing_secret),
        mldsa_public=mldsa.public_key().public_bytes_raw() if mldsa else b"",
        i2p_destination=i2p_destination,
    )
    return sign_record(rec, master, mldsa)


def create(
    directory: Path,
    now: float,
    *,
    passphrase: str | None = None,
    with_mldsa: bool = True,
    lifetime: int = DEFAULT_RECORD_LIFETIME,
) -> NodeIdentity:
    """Create a new identity; refuses (:class:`IdentityExists`) if one is there."""
    directory = Path(directory)
    master_path, subkeys_path, record_path, _ = _paths(directory)
    if master_path.exists() or subkeys_path.exists():
        raise IdentityExists(
            f"{directory} already holds an identity; refusing to overwrite it "
            "(move it away first if you really mean to replace it)"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    master_seed = os.urandom(32)
    xwing_secret, _ = xwing.generate_keypair()
    mldsa_seed = os.urandom(32) if with_mldsa else None
    master = Ed25519PrivateKey.from_private_bytes(master_seed)
    onion = onion_address_from_public_key(master.public_key().public_bytes_raw())
    record = _new_record(master, xwing_secret, mldsa_seed, 1, now, lifetime)
    subkeys = {"xwing": xwing_secret}
    if mldsa_seed:
        subkeys["mldsa65"] = mldsa_seed
    # Subkeys and record first: the master key file is what marks the identity as
    # existing, so a crash in between leaves no half identity that looks whole.
    write_key_file(subkeys_path, subkeys, onion, passphrase)
    atomic_write(record_path, record.to_bytes(), mode=0o600)
    write_key_file(master_path, {"ed25519": master_seed}, onion, passphrase)
    return NodeIdentity(directory, master_seed, xwing_secret, mldsa_seed, record)


def load(directory: Path, now: float, *, passphrase: str | None = None) -> NodeIdentity:
    """Load an identity, checking every file against the master key."""
    directory = Path(directory)
    master_path, subkeys_path, record_path, revocation_path = _paths(directory)
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
    sub_label, sub = read_key_file(subkeys_path, passphrase)
    if sub_label != onion:
        raise KeyFileError(f"{subkeys_path}: belongs to {sub_label}, not to {onion}")
    xwing_secret = sub.get("xwing")
    if xwing_secret is None or len(xwing_secret) != 32:
        raise KeyFileError(f"{subkeys_path}: no valid X-Wing key inside (corrupted?)")
    mldsa_seed = sub.get("mldsa65")
    if mldsa_seed is not None and len(mldsa_seed) != 32:
        raise KeyFileError(f"{subkeys_path}: ML-DSA-65 seed has the wrong length")
    try:
        record = parse_record(record_path.read_bytes())
        # Expiry is not fatal on load: the node re-signs below.
        verify_record(record, onion, now=min(now, record.expires - 1) if record.expires
                      else now)
    except FileNotFoundError:
        raise IdentityError(f"{record_path} is missing; run 'aegis-hidden identity rotate' "
                            "to sign a new record") from None
    except RecordError as e:
        raise IdentityError(f"{record_path}: {e}") from None
    if record.xwing_public != xwing.public_key_from_secret(xwing_secret):
        raise IdentityError(f"{record_path} does not match {subkeys_path} (mixed backups?)")
    ident = NodeIdentity(directory, seed, xwing_secret, mldsa_seed, record)
    if record.expires and record.expires - now < DEFAULT_RECORD_LIFETIME // 3:
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
    atomic_write(_paths(ident.directory)[2], record.to_bytes(), mode=0o600)
    return replace(ident, record=record)


def refresh(ident: NodeIdentity, now: float, lifetime: int = DEFAULT_RECORD_LIFETIME
            ) -> NodeIdentity:
    """Re-sign the same subkeys with a higher sequence and a new expiry."""
    rec = _new_record(ident.master, ident.xwing_secret, ident.mldsa_seed,
                      ident.record.sequence + 1, now, lifetime,
                      ident.record.i2p_destination)
    return _store_record(ident, rec)


def bind_i2p_destination(ident: NodeIdentity, destination: str, now: float) -> NodeIdentity:
    """Bind (or change) the node's I2P destination in a new signed record."""
    if ident.record.i2p_destination == destination:
        return ident
    rec = _new_record(ident.master, ident.xwing_secret, ident.mldsa_seed,
                      ident.record.sequence + 1, now, DEFAULT_RECORD_LIFETIME, destination)
    return _store_record(ident, rec)


def rotate(ident: NodeIdentity, now: float, *, passphrase: str | None = None,
           with_mldsa: bool | None = None) -> NodeIdentity:
    """New X-Wing (and ML-DSA) subkeys under the same master key, sequence + 1."""
    if with_mldsa is None:
        with_mldsa = ident.mldsa_seed is not None
    xwing_secret, _ = xwing.generate_keypair()
    mldsa_seed = os.urandom(32) if with_mldsa else None
    rec = _new_record(ident.master, xwing_secret, mldsa_seed, ident.record.sequence + 1,
                      now, DEFAULT_RECORD_LIFETIME, ident.record.i2p_destination)
    _, subkeys_path, _, _ = _paths(ident.directory)
    subkeys = {"xwing": xwing_secret}
    if mldsa_seed:
        subkeys["mldsa65"] = mldsa_seed
    # Record first, then subkeys: a crash in between is detected at load time
    # ("does not match") rather than silently pairing a record with wrong keys.
    write_key_file(subkeys_path, subkeys, ident.onion, passphrase)
    new = NodeIdentity(ident.directory, ident.master_seed, xwing_secret, mldsa_seed, rec)
    return _store_record(new, rec)


def revoke(ident: NodeIdentity, now: float, reason: str) -> IdentityRecord:
    """Sign and store a revocation of this identity; returns the revocation record."""
    rec = sign_record(
        IdentityRecord(
            kind=RecordKind.REVOCATION,
            ed25519_public=ident.ed25519_public,
            sequence=ident.record.sequence + 1,
            created=int(now),
            expires=0,
            reason=reason,
        ),
        ident.master,
        None,
    )
    atomic_write(_paths(ident.directory)[3], rec.to_bytes(), mode=0o600)
    return rec
