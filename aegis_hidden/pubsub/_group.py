"""Private topics: a group key, payloads sealed to it, invitations sealed to one member (pure).

A private topic's messages carry, as their payload, an envelope that only
holders of the topic's group key can open::

    "AHG1" | key id (8) | nonce (12) | ChaCha20-Poly1305(padded plaintext) + tag (16)

* the group key is 32 random bytes, created by one member; the key id is a
  hash of it (:func:`key_id`), so a member holding several keys (after a
  rotation) knows which one opens an envelope, and a relay learns nothing but
  which key it is;
* the AEAD key is derived from the group key with HKDF (never the raw key);
  the associated data binds the magic, the key id and the topic's name, so an
  envelope moved to another topic does not open;
* the nonce is random (96 bits: far below the 2**32 messages per key at which
  random nonces would start to matter);
* the plaintext is prefixed with its length and padded with zeros to a length
  class (:func:`envelope_size`): powers of two from 256 bytes, then the
  largest size a pub/sub message may have, so an envelope tells a relay only
  its class.

The pub/sub message around the envelope is signed as any other (by the
publisher's identity, or the topic's ephemeral key on an anonymous topic), so
relays that are not members still check signatures and ids and forward what
they cannot read.

An invitation hands the group key to one peer over the reliable messaging
path: a message ``{"type": "pubsub_invite", "data": {...}}`` whose ``sealed``
field is the key sealed (HPKE-shaped, :mod:`aegis_hidden.crypto`) to the
invitee's X-Wing key, with the invitee's onion and the topic in the sealing
context and the inviter's onion as associated data: it opens only for that
invitee, for that topic, coming from that inviter. :func:`read_invitation`
refuses anything else with an :class:`InvitationError` saying what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..crypto import SealError, hkdf_expand, hkdf_extract, open_sealed, seal
from ._messages import MAX_DATA, MAX_TOPIC

GROUP_KEY_BYTES = 32
KEY_ID_BYTES = 8
MAGIC = b"AHG1"
_NONCE = 12
_TAG = 16
_LENGTH = 4
_HEADER = len(MAGIC) + KEY_ID_BYTES + _NONCE
#: bytes an envelope adds to the plaintext, at least (before padding)
OVERHEAD = _HEADER + _TAG + _LENGTH
#: the smallest length class of an envelope
MIN_ENVELOPE = 256
#: the largest plaintext a private topic's message may carry
MAX_PLAINTEXT = MAX_DATA - OVERHEAD
#: the ``type`` of an invitation sent over the messaging path
INVITE_TYPE = "pubsub_invite"
INVITE_VERSION = 1

_KEY_ID_LABEL = b"aegis-hidden pubsub group key id\x00"
_SALT = b"aegis-hidden pubsub group"
_MESSAGE_LABEL = b"message key v1"
_INVITE_INFO = b"aegis-hidden pubsub invite v1\x00"


class GroupError(ValueError):
    """A group key, envelope or invitation refused; the subclass says which."""


class GroupKeyError(GroupError):
    """Not a usable group key (32 bytes; base64 when given as text)."""


class PrivateMessageError(GroupError):
    """Bytes that are no private-topic envelope, or one that does not open."""


class UnknownKey(PrivateMessageError):
    """An envelope sealed to a key this node does not hold."""


class InvitationError(GroupError):
    """An invitation that is malformed, not for this node or topic, or does not open."""


def check_key(key: object) -> bytes:
    """``key`` as 32 bytes: bytes as they are, text as (standard or URL-safe) base64."""
    if isinstance(key, str):
        text = key.strip()
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/")
                                   + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise GroupKeyError("a group key is base64 text") from None
        key = raw
    if not isinstance(key, bytes | bytearray):
        raise GroupKeyError("a group key is bytes or base64 text")
    if len(key) != GROUP_KEY_BYTES:
        raise GroupKeyError(f"a group key is {GROUP_KEY_BYTES} bytes, not {len(key)}")
    return bytes(key)


def new_key(random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh group key (``random_bytes`` injected for tests)."""
    return check_key(random_bytes(GROUP_KEY_BYTES))


def key_id(key: bytes) -> bytes:
    """The key's public name: a hash of it, :data:`KEY_ID_BYTES` long."""
    return hashlib.sha256(_KEY_ID_LABEL + check_key(key)).digest()[:KEY_ID_BYTES]


def envelope_size(plaintext: int) -> int:
    """The length class of an envelope holding ``plaintext`` bytes."""
    if plaintext < 0 or plaintext > MAX_PLAINTEXT:
        raise PrivateMessageError(f"a private message holds at most {MAX_PLAINTEXT} bytes, "
                            f"not {plaintext}")
    need = plaintext + OVERHEAD
    size = MIN_ENVELOPE
    while size < need:
        size *= 2
    return min(size, MAX_DATA)


def is_envelope(data: bytes) -> bool:
    """Whether ``data`` has the shape of an envelope (magic and a length class)."""
    return len(data) >= MIN_ENVELOPE and data[:len(MAGIC)] == MAGIC


def envelope_key_id(data: bytes) -> bytes:
    if not is_envelope(data):
        raise PrivateMessageError("not a private-topic envelope")
    return data[len(MAGIC):len(MAGIC) + KEY_ID_BYTES]


def _aead(key: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf_expand(hkdf_extract(_SALT, key), _MESSAGE_LABEL))


def _aad(kid: bytes, topic: str) -> bytes:
    return MAGIC + kid + topic.encode("utf-8")


def seal_message(key: bytes, topic: str, plaintext: bytes, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """``plaintext`` sealed to ``key`` for ``topic``, padded to its length class."""
    key = check_key(key)
    size = envelope_size(len(plaintext))
    inner = len(plaintext).to_bytes(_LENGTH, "big") + plaintext
    inner += bytes(size - _HEADER - _TAG - len(inner))
    kid = key_id(key)
    nonce = random_bytes(_NONCE)
    sealed = _aead(key).encrypt(nonce, inner, _aad(kid, topic))
    out = MAGIC + kid + nonce + sealed
    assert len(out) == size
    return out


def open_message(keys: Mapping[bytes, bytes], topic: str, data: bytes) -> bytes:
    """The plaintext of an envelope, opened with the key of its id in ``keys`` (id -> key).

    :class:`UnknownKey` when no key of that id is held, :class:`PrivateMessageError`
    for bytes that are no envelope or do not open (tampered, another topic).
    """
    kid = envelope_key_id(data)
    key = keys.get(kid)
    if key is None:
        raise UnknownKey(f"sealed to key {kid.hex()}, not held here")
    nonce = data[len(MAGIC) + KEY_ID_BYTES:_HEADER]
    try:
        inner = _aead(key).decrypt(nonce, data[_HEADER:], _aad(kid, topic))
    except InvalidTag:
        raise PrivateMessageError("the envelope does not open (tampered, or another topic)") from None
    length = int.from_bytes(inner[:_LENGTH], "big")
    if length > len(inner) - _LENGTH or any(inner[_LENGTH + length:]):
        raise PrivateMessageError("the envelope's padding is not as sealed")
    return inner[_LENGTH:_LENGTH + length]


# -- invitations ------------------------------------------------------------------------
@dataclass(frozen=True)
class Invitation:
    """An invitation read and opened: the topic, its kind and its group key."""

    topic: str
    anonymous: bool
    key: bytes = field(default=b"", repr=False)

    @property
    def key_id(self) -> bytes:
        return key_id(self.key)


def _context(invitee: str, topic: str) -> bytes:
    return _INVITE_INFO + invitee.encode() + b"\x00" + topic.encode("utf-8")


def make_invitation(key: bytes, topic: str, anonymous: bool, *, inviter: str, invitee: str,
                    invitee_xwing: bytes) -> dict[str, Any]:
    """The message body that invites ``invitee`` (its X-Wing public key given) to ``topic``."""
    key = check_key(key)
    try:
        sealed = seal(invitee_xwing, key, info=_context(invitee, topic), aad=inviter.encode())
    except SealError as e:
        raise InvitationError(f"the invitee's key: {e}") from None
    return {"type": INVITE_TYPE, "data": {
        "v": INVITE_VERSION, "topic": topic, "anonymous": bool(anonymous),
        "key_id": key_id(key).hex(), "sealed": base64.b64encode(sealed).decode("ascii")}}


def read_invitation(body: object, *, inviter: str, invitee: str,
                    xwing_secret: bytes) -> Invitation:
    """The invitation in a message body from ``inviter``, opened with this node's X-Wing
    secret key; :class:`InvitationError` naming the field for anything else."""
    if not isinstance(body, dict) or body.get("type") != INVITE_TYPE:
        raise InvitationError(f"not a {INVITE_TYPE} message")
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvitationError("data: expected an object")
    extra = sorted(set(data) - {"v", "topic", "anonymous", "key_id", "sealed"})
    if extra:
        raise InvitationError(f"data.{extra[0]}: unknown field")
    if data.get("v") != INVITE_VERSION:
        raise InvitationError(f"data.v: version {data.get('v')!r}, this node reads "
                              f"{INVITE_VERSION}")
    topic = data.get("topic")
    if (not isinstance(topic, str) or not topic or len(topic.encode("utf-8", "replace"))
            > MAX_TOPIC or any(ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF for ch in topic)):
        raise InvitationError(f"data.topic: a topic name of 1 to {MAX_TOPIC} bytes, "
                              "no control characters")
    anonymous = data.get("anonymous")
    if not isinstance(anonymous, bool):
        raise InvitationError("data.anonymous: true or false")
    kid = data.get("key_id")
    if not isinstance(kid, str) or len(kid) != 2 * KEY_ID_BYTES:
        raise InvitationError(f"data.key_id: {2 * KEY_ID_BYTES} hex digits")
    sealed = data.get("sealed")
    if not isinstance(sealed, str) or len(sealed) > 4096:
        raise InvitationError("data.sealed: base64 text")
    try:
        envelope = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise InvitationError("data.sealed: base64 text") from None
    try:
        key = open_sealed(xwing_secret, envelope, info=_context(invitee, topic),
                          aad=inviter.encode())
    except SealError:
        raise InvitationError("data.sealed: does not open for this node, topic and "
                              "inviter") from None
    if len(key) != GROUP_KEY_BYTES:
        raise InvitationError(f"data.sealed: holds {len(key)} bytes, not a group key")
    if key_id(key).hex() != kid.lower():
        raise InvitationError("data.key_id: not the id of the key sealed")
    return Invitation(topic, anonymous, key)
