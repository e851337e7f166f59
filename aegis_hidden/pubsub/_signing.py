"""Who signs a message: the publisher's identity, or a per-topic ephemeral key (pure).

A normal topic's messages are signed by the publisher's identity through a
:class:`Signer` and checked by a :class:`Verifier`; both are injected, so the
node can pass its hybrid Ed25519 + ML-DSA-65 identity while tests and the
simulation use :class:`Ed25519Signer` / :class:`Ed25519Verifier`. The core
never looks inside an identity: it is an opaque byte string the verifier
understands.

An anonymous topic's messages are signed by an Ed25519 key made for that
topic and thrown away after ``lifetime`` seconds (:class:`EphemeralKeys`): the
signature lets every relay check that the message was not altered, and binds
nothing to the publisher. Messages signed under one key are linkable to each
other (the price of de-duplicating and rate-limiting per key); a shorter
lifetime links fewer of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

_MESSAGE_DOMAIN = b"aegis-hidden pubsub message\x00"
_ACK_DOMAIN = b"aegis-hidden pubsub ack\x00"


class Signer(Protocol):
    """Signs for this node's identity (what the core calls when it publishes or acks)."""

    @property
    def identity(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    """Checks a signature made for ``identity`` (an opaque blob the signer handed out)."""

    def verify(self, identity: bytes, data: bytes, signature: bytes) -> bool: ...


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def signed_body(topic: str, nonce: bytes, data: bytes, anonymous: bool, key: bytes,
                ack_from: tuple[bytes, ...]) -> bytes:
    """The bytes a message's signature covers: every field but the signature."""
    parts = [_MESSAGE_DOMAIN, _field(topic.encode()), _field(nonce), _field(data),
             b"\x01" if anonymous else b"\x00", _field(key),
             len(ack_from).to_bytes(2, "big"), *(_field(a) for a in ack_from)]
    return b"".join(parts)


def ack_body(message_id: bytes, subscriber: bytes) -> bytes:
    return _ACK_DOMAIN + _field(message_id) + _field(subscriber)


class Ed25519Signer:
    """A :class:`Signer` whose identity is a raw 32-byte Ed25519 public key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._identity = key.public_key().public_bytes_raw()

    @classmethod
    def from_rng(cls, rng: random.Random) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))

    @property
    def identity(self) -> bytes:
        return self._identity

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


_P = 2**255 - 19
#: y-coordinates of the eight points of small order (identity, order 2, 4 and 8)
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1,
                            0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
                            _P - 0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826})


def weak_ed25519_key(key: bytes) -> bool:
    """A key of small order, or not canonically encoded.

    Under such a key, signatures can be made without any private key (OpenSSL
    does not refuse them), and an ephemeral key is whatever its sender says.
    """
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    return y >= _P or y in _SMALL_ORDER_Y


def verify_ed25519(key: bytes, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``key``'s Ed25519 signature of ``data`` (any bad input: False)."""
    if len(key) != 32 or len(signature) != 64 or weak_ed25519_key(key):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


class Ed25519Verifier:
    """A :class:`Verifier` for :class:`Ed25519Signer` identities."""

    def verify(self, identity: bytes, data: bytes, signature: bytes) -> bool:
        return verify_ed25519(identity, data, signature)


class EphemeralKeys:
    """One Ed25519 key per anonymous topic, replaced after ``lifetime`` seconds.

    Keys are made from ``rng`` (``secrets.SystemRandom()`` in the node, a seeded
    ``random.Random`` in tests) and never leave this object.
    """

    def __init__(self, rng: random.Random, clock: Callable[[], float],
                 lifetime: float = 600.0) -> None:
        if lifetime <= 0:
            raise ValueError("an ephemeral key lives a positive number of seconds")
        self._rng = rng
        self._clock = clock
        self.lifetime = lifetime
        self._keys: dict[str, tuple[Ed25519PrivateKey, bytes, float]] = {}

    def key(self, topic: str) -> tuple[Ed25519PrivateKey, bytes]:
        now = self._clock()
        held = self._keys.get(topic)
        if held is None or now >= held[2]:
            private = Ed25519PrivateKey.from_private_bytes(self._rng.randbytes(32))
            held = (private, private.public_key().public_bytes_raw(), now + self.lifetime)
            self._keys[topic] = held
        return held[0], held[1]

    def forget(self, topic: str) -> None:
        self._keys.pop(topic, None)
