"""Node identity: master Ed25519 key, v3 onion address, signed identity record.

Pure code: no reactor, no sockets. Times are passed in as ``now`` (unix seconds).
"""

from ._files import atomic_write
from ._keyfile import KeyFileError, PassphraseRequired, WrongPassphrase, is_encrypted
from ._node import (
    IdentityError,
    IdentityExists,
    IdentityMissing,
    NodeIdentity,
    Revoked,
    bind_i2p_destination,
    create,
    exists,
    expanded_secret_key,
    load,
    load_or_create,
    refresh,
    revoke,
    rotate,
    tor_public_key_file,
    tor_secret_key_file,
)
from ._onion import (
    OnionAddressError,
    is_onion_v3,
    onion_address_from_public_key,
    public_key_from_onion_address,
)
from ._record import (
    IdentityRecord,
    RecordCache,
    RecordError,
    RecordKind,
    parse_record,
    sign_record,
    verify_record,
)

__all__ = [
    "IdentityError",
    "IdentityExists",
    "IdentityMissing",
    "IdentityRecord",
    "KeyFileError",
    "NodeIdentity",
    "OnionAddressError",
    "PassphraseRequired",
    "RecordCache",
    "RecordError",
    "RecordKind",
    "Revoked",
    "WrongPassphrase",
    "atomic_write",
    "bind_i2p_destination",
    "create",
    "exists",
    "expanded_secret_key",
    "is_encrypted",
    "is_onion_v3",
    "load",
    "load_or_create",
    "onion_address_from_public_key",
    "parse_record",
    "public_key_from_onion_address",
    "refresh",
    "revoke",
    "rotate",
    "sign_record",
    "tor_public_key_file",
    "tor_secret_key_file",
    "verify_record",
]
