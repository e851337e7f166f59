"""Private topics' envelopes and invitations (pure: pubsub/_group.py)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.crypto import xwing
from aegis_hidden.pubsub import (
    MAX_DATA,
    MAX_PLAINTEXT,
    GroupKeyError,
    InvitationError,
    PrivateMessageError,
    UnknownKey,
    check_key,
    envelope_size,
    is_envelope,
    key_id,
    make_invitation,
    new_key,
    open_message,
    read_invitation,
    seal_message,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


@given(st.binary(max_size=5000))
def test_envelopes_open_with_the_key_and_hide_the_length_class(data: bytes) -> None:
    sealed = seal_message(KEY, "club", data)
    assert is_envelope(sealed) and len(sealed) == envelope_size(len(data))
    assert len(sealed) in {256 << i for i in range(8)}  # 256 .. 32768 for this size
    assert open_message({key_id(KEY): KEY}, "club", sealed) == data


def test_length_classes() -> None:
    assert [envelope_size(n) for n in (0, 212, 213, 980, 981, MAX_PLAINTEXT)] == [
        256, 256, 512, 1024, 2048, MAX_DATA]
    with pytest.raises(PrivateMessageError):
        envelope_size(MAX_PLAINTEXT + 1)


def test_envelopes_refused() -> None:
    sealed = seal_message(KEY, "club", b"secret")
    keys = {key_id(KEY): KEY}
    assert b"secret" not in sealed
    with pytest.raises(UnknownKey):
        open_message({key_id(OTHER): OTHER}, "club", sealed)
    with pytest.raises(PrivateMessageError, match="does not open"):
        open_message(keys, "other topic", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PrivateMessageError, match="does not open"):
        open_message(keys, "club", tampered)
    with pytest.raises(PrivateMessageError):
        open_message(keys, "club", b'{"type": "text"}')
    # two sealings of one message differ (random nonce)
    assert seal_message(KEY, "club", b"x") != seal_message(KEY, "club", b"x")


def test_keys() -> None:
    assert check_key(base64.b64encode(KEY).decode()) == KEY
    assert check_key(base64.urlsafe_b64encode(KEY).decode().rstrip("=")) == KEY
    for bad in ("", "****", base64.b64encode(KEY[:31]).decode(), 5, KEY + b"x"):
        with pytest.raises(GroupKeyError):
            check_key(bad)
    assert len(new_key()) == 32 and new_key() != new_key()
    assert key_id(KEY) != key_id(OTHER) and len(key_id(KEY)) == 8


def test_invitations_open_only_for_the_invitee_topic_and_inviter() -> None:
    secret, public = xwing.generate_keypair()
    other_secret, _ = xwing.generate_keypair()
    inviter, invitee = "a" * 56 + ".onion", "b" * 56 + ".onion"
    body = make_invitation(KEY, "club", True, inviter=inviter, invitee=invitee,
                           invitee_xwing=public)
    assert base64.b64encode(KEY).decode() not in str(body)
    got = read_invitation(body, inviter=inviter, invitee=invitee, xwing_secret=secret)
    assert (got.topic, got.anonymous, got.key, got.key_id) == ("club", True, KEY, key_id(KEY))
    assert KEY.hex() not in repr(got) and str(list(KEY)) not in repr(got)
    data = body["data"]
    cases: list[tuple[object, str, str, bytes, str]] = [
        (body, "c" * 56 + ".onion", invitee, secret, "does not open"),  # another inviter
        (body, inviter, "c" * 56 + ".onion", secret, "does not open"),  # another invitee
        (body, inviter, invitee, other_secret, "does not open"),
        ({**body, "data": {**data, "topic": "other"}}, inviter, invitee, secret,
         "does not open"),
        ({**body, "data": {**data, "key_id": "00" * 8}}, inviter, invitee, secret, "key_id"),
        ({**body, "data": {**data, "v": 2}}, inviter, invitee, secret, "data.v"),
        ({**body, "data": {**data, "extra": 1}}, inviter, invitee, secret, "data.extra"),
        ({**body, "data": {**data, "sealed": "!!"}}, inviter, invitee, secret, "data.sealed"),
        ({**body, "data": {**data, "anonymous": "yes"}}, inviter, invitee, secret,
         "data.anonymous"),
        ({**body, "data": {**data, "topic": "a\nb"}}, inviter, invitee, secret, "data.topic"),
        ({"type": "text", "data": data}, inviter, invitee, secret, "not a pubsub_invite"),
        ({"type": "pubsub_invite", "data": []}, inviter, invitee, secret, "data:"),
    ]
    for case, who, whom, key, match in cases:
        with pytest.raises(InvitationError, match=match):
            read_invitation(case, inviter=who, invitee=whom, xwing_secret=key)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["v", "topic", "anonymous", "key_id", "sealed", "x"]),
                       _JSON, max_size=6), st.sampled_from(["pubsub_invite", "other"]))
def test_any_body_is_an_invitation_or_an_invitation_error(data: dict[str, object],
                                                          kind: str) -> None:
    secret, _ = xwing.generate_keypair()
    with pytest.raises(InvitationError):
        read_invitation({"type": kind, "data": data}, inviter="a" * 56 + ".onion",
                        invitee="b" * 56 + ".onion", xwing_secret=secret)


@given(st.binary(max_size=600))
def test_any_bytes_open_or_raise_a_private_message_error(data: bytes) -> None:
    for candidate in (data, b"AHG1" + key_id(KEY) + data):
        try:
            open_message({key_id(KEY): KEY}, "club", candidate)
        except PrivateMessageError:
            continue
        raise AssertionError("forged bytes opened")
