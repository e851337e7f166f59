"""v3 onion client authorization: x25519 keys and the formats tor uses.

Pure code: the Tor provider hands these lines to tor, the API keeps the public
halves of its operators' keys (so neither has to import the other).

- service side: ``authorized_clients/<name>.auth`` holds ``descriptor:x25519:<pub>``;
  over the control port, ``ADD_ONION ... ClientAuthV3=<pub>``;
- client side: ``<ClientOnionAuthDir>/<name>.auth_private`` holds
  ``<56-char address>:descriptor:x25519:<priv>``; over the control port,
  ``ONION_CLIENT_AUTH_ADD <address> x25519:<base64 priv>``.

``<pub>``/``<priv>`` are the raw 32-byte keys in unpadded upper-case base32.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..addresses import OnionAddressError, onion_service_id

__all__ = [
    "ClientAuthError",
    "ClientAuthKey",
    "ClientAuthPublicKey",
    "parse_auth_private",
    "parse_public_key",
]

_PREFIX = "descriptor:x25519:"


class ClientAuthError(ValueError):
    """A v3 client-authorization key or line is malformed."""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def _unb32(text: str, what: str) -> bytes:
    clean = text.strip().upper()
    try:
        raw = base64.b32decode(clean + "=" * (-len(clean) % 8))
    except (binascii.Error, ValueError):
        raise ClientAuthError(f"{what} is not base32: {text[:12]!r}...") from None
    if len(raw) != 32:
        raise ClientAuthError(f"{what} must decode to 32 bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class ClientAuthPublicKey:
    """What the service is configured with for one authorized client."""

    raw: bytes

    def base32(self) -> str:
        return _b32(self.raw)

    def descriptor_line(self) -> str:
        """Contents of an ``authorized_clients/<name>.auth`` file."""
        return _PREFIX + self.base32()


@dataclass(frozen=True)
class ClientAuthKey:
    """A client's x25519 key pair (the private half is a secret: never log it)."""

    private: bytes

    def __repr__(self) -> str:
        return f"ClientAuthKey(public={self.public.base32()})"

    @classmethod
    def generate(cls) -> ClientAuthKey:
        return cls(X25519PrivateKey.generate().private_bytes_raw())

    @property
    def public(self) -> ClientAuthPublicKey:
        key = X25519PrivateKey.from_private_bytes(self.private)
        return ClientAuthPublicKey(key.public_key().public_bytes_raw())

    def auth_private_line(self, onion: str) -> str:
        """Contents of a ``<name>.auth_private`` file for the service ``onion``."""
        return f"{_checked_id(onion)}:{_PREFIX}{_b32(self.private)}"

    def client_auth_add_command(self, onion: str, name: str | None = None,
                                permanent: bool = False) -> str:
        """``ONION_CLIENT_AUTH_ADD`` (carries the private key: never log it)."""
        parts = ["ONION_CLIENT_AUTH_ADD", _checked_id(onion),
                 "x25519:" + base64.b64encode(self.private).decode()]
        if name:
            if not name.isalnum() or len(name) > 16:
                raise ClientAuthError("ClientName must be 1-16 letters or digits")
            parts.append(f"ClientName={name}")
        if permanent:
            parts.append("Flags=Permanent")
        return " ".join(parts)


def _checked_id(onion: str) -> str:
    name = onion if onion.lower().endswith(".onion") else onion + ".onion"
    try:
        return onion_service_id(name)
    except OnionAddressError as e:
        raise ClientAuthError(f"not a v3 onion address: {e}") from None


def parse_public_key(text: str) -> ClientAuthPublicKey:
    """``descriptor:x25519:<base32>`` (or the bare base32) -> public key."""
    body = text.strip()
    if body.startswith(_PREFIX):
        body = body[len(_PREFIX):]
    elif ":" in body:
        raise ClientAuthError(f"expected 'descriptor:x25519:<base32>', got {text[:30]!r}")
    return ClientAuthPublicKey(_unb32(body, "x25519 public key"))


def parse_auth_private(text: str) -> tuple[str, ClientAuthKey]:
    """``<address>:descriptor:x25519:<base32 private>`` -> (onion address, key)."""
    address, sep, rest = text.strip().partition(":")
    if not sep or not rest.startswith(_PREFIX):
        raise ClientAuthError("expected '<onion address>:descriptor:x25519:<base32 key>'")
    onion = _checked_id(address) + ".onion"
    return onion, ClientAuthKey(_unb32(rest[len(_PREFIX):], "x25519 private key"))
