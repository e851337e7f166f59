"""I2P destinations and private-key blobs, and the ``.b32.i2p`` address.

Pure code. Formats (I2P common structures specification):

* I2P base64 is standard base64 with ``-`` and ``~`` in place of ``+`` and ``/``.
* A destination is a 256-byte public (encryption) key, a 128-byte signing public
  key field and a certificate (type: 1 byte, length: 2 bytes, payload). A KEY
  certificate (type 5) carries the signing and crypto key types (2 bytes each)
  and any signing-key bytes that do not fit in the 128-byte field.
* The private-key blob that SAM returns (``DEST GENERATE`` ``PRIV=``, ``SESSION
  CREATE`` ``DESTINATION=``) is the destination, a 256-byte private key and
  the signing private key, whose length depends on the signature type.
* ``<base32 of SHA-256(destination), lower case, no padding>.b32.i2p``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..addresses import b32_i2p_address, is_b32_i2p_name
from ._errors import DestinationError

SIGNATURE_TYPE_EDDSA_SHA512_ED25519 = 7

# signature type -> (public key length, private key length)
SIGNING_KEY_LENGTHS: dict[int, tuple[int, int]] = {
    0: (128, 20),  # DSA_SHA1
    1: (64, 32),  # ECDSA_SHA256_P256
    2: (96, 48),  # ECDSA_SHA384_P384
    3: (132, 66),  # ECDSA_SHA512_P521
    4: (256, 512),  # RSA_SHA256_2048
    5: (384, 768),  # RSA_SHA384_3072
    6: (512, 1024),  # RSA_SHA512_4096
    7: (32, 32),  # EdDSA_SHA512_Ed25519
    8: (32, 32),  # EdDSA_SHA512_Ed25519ph
    9: (64, 32),  # GOST R 34.10-2012 256
    10: (128, 64),  # GOST R 34.10-2012 512
    11: (32, 32),  # RedDSA_SHA512_Ed25519
}

PUBLIC_KEY_LENGTH = 256
SIGNING_FIELD_LENGTH = 128
PRIVATE_KEY_LENGTH = 256
CERT_NULL = 0
CERT_KEY = 5
MIN_DESTINATION_LENGTH = PUBLIC_KEY_LENGTH + SIGNING_FIELD_LENGTH + 3
MAX_DESTINATION_LENGTH = 1024  # far above any real one; bounds hostile input
_B64_CHARS = re.compile(r"[A-Za-z0-9\-~]*\Z")


def b64encode(data: bytes) -> str:
    """I2P base64 (alphabet ``A-Za-z0-9-~``, ``=`` padding)."""
    return base64.b64encode(data, altchars=b"-~").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode I2P base64; padding may be omitted. Raises :class:`DestinationError`."""
    if not isinstance(text, str) or not text.isascii():
        raise DestinationError("I2P base64 must be ASCII text")
    stripped = text.rstrip("=")
    if not _B64_CHARS.match(stripped) or len(text) - len(stripped) > 2:
        raise DestinationError("not I2P base64 (alphabet A-Z a-z 0-9 - ~, then up to two '=')")
    if len(stripped) % 4 == 1:
        raise DestinationError(f"I2P base64 of impossible length {len(stripped)}")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-~", validate=True)
    except (binascii.Error, ValueError) as e:
        raise DestinationError(f"not I2P base64 (alphabet A-Z a-z 0-9 - ~): {e}") from None


def b32_address(destination: bytes) -> str:
    """The ``.b32.i2p`` address of a destination given as bytes."""
    return b32_i2p_address(destination)


def is_b32_address(name: str) -> bool:
    """A standard (52-character) or extended (56+) ``.b32.i2p`` name."""
    return is_b32_i2p_name(name)


def is_i2p_name(name: str) -> bool:
    """A name only I2P can resolve: ``*.b32.i2p`` or an ``*.i2p`` host name."""
    lowered = name.lower()
    if lowered.endswith(".b32.i2p"):
        return is_b32_address(name)
    if not lowered.endswith(".i2p") or len(lowered) <= 4 or len(lowered) > 67:
        return False
    return all((c.isalnum() and c.isascii()) or c in "-." for c in lowered) and ".." not in lowered


@dataclass(frozen=True)
class Destination:
    """A public I2P destination."""

    raw: bytes
    signature_type: int
    crypto_type: int

    @classmethod
    def parse(cls, data: bytes) -> tuple[Destination, int]:
        """Parse a destination at the start of ``data``: (destination, bytes used)."""
        if len(data) < MIN_DESTINATION_LENGTH:
            raise DestinationError(
                f"a destination is at least {MIN_DESTINATION_LENGTH} bytes, got {len(data)}")
        offset = PUBLIC_KEY_LENGTH + SIGNING_FIELD_LENGTH
        cert_type = data[offset]
        cert_len = int.from_bytes(data[offset + 1 : offset + 3], "big")
        end = offset + 3 + cert_len
        if end > len(data):
            raise DestinationError(
                f"certificate of {cert_len} bytes runs past the end ({len(data)} bytes)")
        if end > MAX_DESTINATION_LENGTH:
            raise DestinationError(f"destination of {end} bytes is implausibly long")
        payload = data[offset + 3 : end]
        sig_type, crypto_type = 0, 0
        if cert_type == CERT_KEY:
            if cert_len < 4:
                raise DestinationError(f"KEY certificate of {cert_len} bytes (needs 4 or more)")
            sig_type = int.from_bytes(payload[0:2], "big")
            crypto_type = int.from_bytes(payload[2:4], "big")
            lengths = SIGNING_KEY_LENGTHS.get(sig_type)
            if lengths is None:
                raise DestinationError(f"unknown signature type {sig_type}")
            excess = max(0, lengths[0] - SIGNING_FIELD_LENGTH)
            if cert_len - 4 != excess:
                raise DestinationError(
                    f"KEY certificate for signature type {sig_type} must carry {excess} "
                    f"excess key bytes, carries {cert_len - 4}")
        elif cert_type == CERT_NULL and cert_len != 0:
            raise DestinationError(f"NULL certificate with {cert_len} bytes of payload")
        return cls(bytes(data[:end]), sig_type, crypto_type), end

    @classmethod
    def from_bytes(cls, data: bytes) -> Destination:
        dest, used = cls.parse(data)
        if used != len(data):
            raise DestinationError(f"{len(data) - used} bytes after the destination")
        return dest

    @classmethod
    def from_base64(cls, text: str) -> Destination:
        return cls.from_bytes(b64decode(text))

    @property
    def base64(self) -> str:
        return b64encode(self.raw)

    @property
    def b32(self) -> str:
        return b32_address(self.raw)


@dataclass(frozen=True, repr=False)
class PrivateKey:
    """A destination's private-key blob, as SAM hands it out (secret: never logged)."""

    raw: bytes
    destination: Destination

    def __repr__(self) -> str:
        return f"PrivateKey(destination={self.destination.b32})"

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        dest, used = Destination.parse(data)
        lengths = SIGNING_KEY_LENGTHS.get(dest.signature_type)
        if lengths is None:  # pragma: no cover - parse() already refused it
            raise DestinationError(f"unknown signature type {dest.signature_type}")
        expected = used + PRIVATE_KEY_LENGTH + lengths[1]
        if len(data) != expected:
            raise DestinationError(
                f"private-key blob for signature type {dest.signature_type} must be "
                f"{expected} bytes, got {len(data)} (offline-signed keys are not supported)")
        if not any(data[used + PRIVATE_KEY_LENGTH :]):
            raise DestinationError("offline-signed keys (zero signing key) are not supported")
        return cls(bytes(data), dest)

    @classmethod
    def from_base64(cls, text: str) -> PrivateKey:
        return cls.from_bytes(b64decode(text))

    @property
    def base64(self) -> str:
        return b64encode(self.raw)
