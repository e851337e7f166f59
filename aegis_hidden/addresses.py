"""Peer and local addresses, parsed in one place: v3 ``.onion``, ``.b32.i2p``, ``host:port``.

A leaf module: every layer may import it, it imports nothing of aegis_hidden
(checked by the import-linter contracts in setup.cfg). Pure code, no reactor.

v3 onion addresses are exactly as rend-spec-v3 section 6 defines them::

    onion_address = base32(PUBKEY | CHECKSUM | VERSION) + ".onion"
    CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]
    VERSION = 0x03

A ``.b32.i2p`` address is base32 (lower case, no padding) of SHA-256 of the
raw destination bytes: 52 characters, the last one encoding zero bits.
"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = [
    "B32_I2P_SUFFIX",
    "ONION_VERSION",
    "SUFFIX",
    "HostPortError",
    "OnionAddressError",
    "b32_i2p_address",
    "canonical_address",
    "is_b32_i2p",
    "is_b32_i2p_name",
    "is_canonical_address",
    "is_onion_v3",
    "onion_address_from_public_key",
    "onion_service_id",
    "public_key_from_onion_address",
    "split_host_port",
    "split_optional_port",
    "strip_port",
]

ONION_VERSION = 3
_CHECKSUM_PREFIX = b".onion checksum"
_ADDRESS_CHARS = 56  # 35 bytes of base32, no padding
SUFFIX = ".onion"
_BASE32_LABEL = re.compile(r"[a-z2-7]{56}")


class OnionAddressError(ValueError):
    """An onion address that is not a valid v3 address; the message says why."""


def _checksum(public_key: bytes, version: int) -> bytes:
    return hashlib.sha3_256(_CHECKSUM_PREFIX + public_key + bytes([version])).digest()[:2]


def onion_address_from_public_key(public_key: bytes) -> str:
    """The v3 onion address (with ``.onion``) of a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise OnionAddressError(
            f"an Ed25519 public key is 32 bytes, got {len(public_key)}"
        )
    raw = public_key + _checksum(public_key, ONION_VERSION) + bytes([ONION_VERSION])
    return base64.b32encode(raw).decode("ascii").lower() + SUFFIX


def public_key_from_onion_address(address: str) -> bytes:
    """Parse a v3 onion address back to its Ed25519 public key.

    Accepts the address with or without ``.onion`` and in any letter case; rejects
    a wrong length, characters outside base32, an unknown version and a bad
    checksum, each with its own message.
    """
    if not isinstance(address, str):
        raise OnionAddressError(f"an onion address is a string, got {type(address).__name__}")
    label = address.strip().lower()
    if label.endswith(SUFFIX):
        label = label[: -len(SUFFIX)]
    # A subdomain ("www.<addr>.onion") names the same service.
    label = label.rsplit(".", 1)[-1]
    if len(label) != _ADDRESS_CHARS:
        raise OnionAddressError(
            f"{address!r}: a v3 onion address has {_ADDRESS_CHARS} characters before "
            f"'.onion', this one has {len(label)}"
        )
    if not _BASE32_LABEL.fullmatch(label):  # '=' padding would decode to fewer bytes
        raise OnionAddressError(f"{address!r}: not base32 (only a-z and 2-7, no padding)")
    raw = base64.b32decode(label.upper(), casefold=False)
    public_key, checksum, version = raw[:32], raw[32:34], raw[34]
    if version != ONION_VERSION:
        raise OnionAddressError(f"{address!r}: version byte is {version}, only 3 is supported")
    if checksum != _checksum(public_key, version):
        raise OnionAddressError(f"{address!r}: checksum does not match (mistyped address?)")
    return public_key


def onion_service_id(onion: str) -> str:
    """The 56-character service id of ``xxx.onion`` (validated: :class:`OnionAddressError`)."""
    public_key_from_onion_address(onion)
    return onion.lower().removesuffix(SUFFIX)


def is_onion_v3(address: str) -> bool:
    """True when ``address`` is a well-formed v3 onion address."""
    try:
        public_key_from_onion_address(address)
    except OnionAddressError:
        return False
    return True


_ONION_FORM = re.compile(r"[a-z2-7]{56}\.onion")
_B32_I2P_FORM = re.compile(r"[a-z2-7]{52}\.b32\.i2p")
_B32_I2P_CHARS = 52
B32_I2P_SUFFIX = ".b32.i2p"


def is_canonical_address(address: object) -> bool:
    """True for an address already in its one accepted form.

    That is exactly ``<56 base32>.onion`` (a valid v3 address: version and
    checksum) or ``<52 base32>.b32.i2p`` (32 bytes, unused trailing bits zero),
    in lower-case ASCII: no port, no ``www.`` or other label in front, no ``=``
    padding, no upper case and nothing that only *folds* to ASCII (U+212A
    KELVIN SIGN lower-cases to ``k``, U+017F LONG S upper-cases to ``S``).
    """
    if not isinstance(address, str) or not address.isascii():
        return False
    if _ONION_FORM.fullmatch(address):
        return is_onion_v3(address)
    if _B32_I2P_FORM.fullmatch(address):
        label = address[:_B32_I2P_CHARS].upper()
        raw = base64.b32decode(label + "====")
        return base64.b32encode(raw).decode("ascii").rstrip("=") == label
    return False


def canonical_address(address: object) -> str:
    """``address`` in its canonical form (:func:`is_canonical_address`), or an error.

    The only normalisation is ASCII upper case to lower case (base32 is
    case-blind and people copy addresses in upper case). Everything else that
    could make two spellings of one peer is refused, each with its own message:
    non-ASCII characters (U+212A KELVIN SIGN, U+017F LONG S... which Python's
    ``lower()`` would fold to ASCII), a label in front (``www.<onion>.onion``,
    ``192.168.1.100.<onion>.onion``), a port, ``=`` padding, white space, a
    trailing dot, a wrong length or checksum.
    """
    if not isinstance(address, str) or not address:
        raise OnionAddressError("expected a v3 .onion or .b32.i2p address as a string")
    shown = repr(address[:100])
    if not address.isascii():
        raise OnionAddressError(
            f"{shown} contains non-ASCII characters: an address is lower-case ASCII "
            "letters a-z, digits 2-7 and the suffix only")
    lowered = address.lower()
    if is_canonical_address(lowered):
        return lowered
    if lowered.endswith(SUFFIX):
        label = lowered[: -len(SUFFIX)]
        if "." in label:
            raise OnionAddressError(
                f"{shown} has a label in front of the onion address: use exactly the "
                f"{_ADDRESS_CHARS} characters before '.onion', nothing else")
        if not _ONION_FORM.fullmatch(lowered):
            raise OnionAddressError(
                f"{shown}: a v3 onion address is exactly {_ADDRESS_CHARS} base32 characters "
                "(a-z, 2-7) then '.onion'; no padding, spaces or other characters")
        public_key_from_onion_address(lowered)  # raises with the version/checksum message
    if lowered.endswith(B32_I2P_SUFFIX):
        label = lowered[: -len(B32_I2P_SUFFIX)]
        if "." in label:
            raise OnionAddressError(
                f"{shown} has a label in front of the I2P address: use exactly the "
                f"{_B32_I2P_CHARS} characters before '.b32.i2p', nothing else")
        raise OnionAddressError(
            f"{shown}: a .b32.i2p address is exactly {_B32_I2P_CHARS} base32 characters "
            "(a-z, 2-7, the last one encoding zero bits) then '.b32.i2p'")
    raise OnionAddressError(
        f"{shown} is not a v3 .onion or .b32.i2p address (no port, no trailing dot; "
        "clearnet hosts are refused: dialing them would reveal this node's IP)")


def b32_i2p_address(raw_destination: bytes) -> str:
    """The ``<52 base32>.b32.i2p`` address of an I2P destination given as raw bytes."""
    digest = hashlib.sha256(raw_destination).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower() + B32_I2P_SUFFIX


def is_b32_i2p(address: object) -> bool:
    """True for a canonical ``<52 base32>.b32.i2p`` address (the form peers are named by)."""
    return isinstance(address, str) and address.endswith(B32_I2P_SUFFIX) and is_canonical_address(address)


def is_b32_i2p_name(name: str) -> bool:
    """A name I2P's naming service resolves as a hash: ``.b32.i2p``, any case.

    Standard (52 characters) or extended (56 and more, encrypted LeaseSets);
    looser than :func:`is_b32_i2p`, which is the one form a *peer* is named by.
    """
    if not name.lower().endswith(B32_I2P_SUFFIX):
        return False
    label = name[: -len(B32_I2P_SUFFIX)].lower()
    return len(label) >= _B32_I2P_CHARS and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in label)


class HostPortError(ValueError):
    """Not ``HOST:PORT`` (or ``unix:/path``); the message says what is expected."""


def split_host_port(value: object, *, allow_unix: bool = True) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` / ``"unix:/path"`` -> ``(host, port)``.

    A unix socket comes back whole with port 0. Brackets around an IPv6 host are
    removed. Raises :class:`HostPortError`.
    """
    if not isinstance(value, str) or not value:
        raise HostPortError("expected \"HOST:PORT\"" +
                            (" or \"unix:/path/to/socket\"" if allow_unix else ""))
    if value.startswith("unix:"):
        if not allow_unix or not value[5:].startswith("/"):
            raise HostPortError("a unix socket is given as \"unix:/absolute/path\"")
        return value, 0
    host, sep, port_s = value.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise HostPortError("expected \"HOST:PORT\", e.g. \"127.0.0.1:7701\"")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise HostPortError("the port must be from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def split_optional_port(address: str) -> tuple[str, str]:
    """``"name:port"`` -> ``("name", "port")``; ``"name"`` -> ``("name", "")``.

    For peer names (``.onion`` / ``.b32.i2p``) that may carry a port: only a
    single ``:`` separates one, so anything else is returned whole for the
    caller's own check to refuse. The port is not checked here.
    """
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, port
    return address, ""


def strip_port(address: str) -> str:
    """The name in ``"name:port"`` (or ``address`` itself): see :func:`split_optional_port`."""
    return split_optional_port(address)[0]
