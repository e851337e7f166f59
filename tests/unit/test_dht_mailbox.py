"""Mailboxes, pure parts: keys, letters, the holder's store and the core's answers."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from aegis_hidden import identity
from aegis_hidden.dht import (
    BUCKETS,
    ENVELOPE_SIZES,
    MAX_LETTER,
    BadLetter,
    BadMailboxAuth,
    Collect,
    Contact,
    Deposit,
    DhtCore,
    DhtRequestRefused,
    Mail,
    MailboxFull,
    MailboxStore,
    MailNotPadded,
    MailStoreFull,
    MailTooLarge,
    Refused,
    StaleMailboxAuth,
    Stored,
    decode_response,
    encode,
    entry_id,
    mailbox_key,
    open_letter,
    seal_letter,
    sign_auth,
    utc_day,
    verify_auth,
)

NOW = 1_800_000_000
DAY = utc_day(NOW)


@pytest.fixture(scope="module")
def bob(tmp_path_factory: pytest.TempPathFactory) -> identity.NodeIdentity:
    return identity.create(Path(tmp_path_factory.mktemp("bob")), NOW - 100)


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> identity.NodeIdentity:
    return identity.create(Path(tmp_path_factory.mktemp("alice")), NOW - 100)


def letter(alice: identity.NodeIdentity, bob: identity.NodeIdentity, data: bytes,
           day: int = DAY) -> bytes:
    return seal_letter(bob.onion, bob.xwing_public, mailbox_key(bob.onion, day), alice.master,
                       data)


def auth(ident: identity.NodeIdentity, day: int = DAY, now: float = NOW,
         delete: tuple[bytes, ...] = ()) -> Collect:
    return Collect(sign_auth(ident.master, ident.mldsa, ident.record.to_bytes(), ident.onion,
                             day, now, delete), delete)


def test_the_key_is_a_hash_of_onion_and_day_and_rotates_daily(bob: identity.NodeIdentity) -> None:
    key = mailbox_key(bob.onion, DAY)
    assert key == hashlib.sha256(b"aegis-mailbox" + bob.onion.encode()
                                 + struct.pack(">I", DAY)).digest()
    assert mailbox_key(bob.onion.upper(), DAY) == key
    assert mailbox_key(bob.onion, DAY + 1) != key
    assert utc_day(NOW + 86400) == DAY + 1


def test_a_letter_opens_for_its_recipient_only(alice: identity.NodeIdentity,
                                               bob: identity.NodeIdentity) -> None:
    envelope = letter(alice, bob, b"hello bob")
    assert len(envelope) == min(ENVELOPE_SIZES)  # padded to the smallest bucket
    assert alice.onion.encode() not in envelope and b"hello" not in envelope
    opened = open_letter(bob.onion, bob.xwing_secret, mailbox_key(bob.onion, DAY), envelope)
    assert (opened.sender, opened.data) == (alice.onion, b"hello bob")
    with pytest.raises(BadLetter):  # wrong recipient key
        open_letter(bob.onion, alice.xwing_secret, mailbox_key(bob.onion, DAY), envelope)
    with pytest.raises(BadLetter):  # another day's key
        open_letter(bob.onion, bob.xwing_secret, mailbox_key(bob.onion, DAY + 1), envelope)
    tampered = envelope[:-1] + bytes([envelope[-1] ^ 1])
    with pytest.raises(BadLetter):
        open_letter(bob.onion, bob.xwing_secret, mailbox_key(bob.onion, DAY), tampered)


def test_letter_sizes_are_buckets(alice: identity.NodeIdentity, bob: identity.NodeIdentity) -> None:
    sizes = {len(letter(alice, bob, bytes(n))) for n in (0, 900, 1000, 4000, MAX_LETTER)}
    assert sizes == ENVELOPE_SIZES and len(BUCKETS) == 3
    with pytest.raises(MailTooLarge):
        letter(alice, bob, bytes(MAX_LETTER + 1))


def test_a_letter_whose_sender_signature_fails_is_refused(alice: identity.NodeIdentity,
                                                          bob: identity.NodeIdentity) -> None:
    # sealed to bob but signed for someone else: the signature covers the recipient
    key = mailbox_key(bob.onion, DAY)
    wrong = seal_letter(alice.onion, bob.xwing_public, key, alice.master, b"x")
    with pytest.raises(BadLetter):
        open_letter(bob.onion, bob.xwing_secret, key, wrong)


def test_only_the_owner_signs_a_collect(alice: identity.NodeIdentity,
                                        bob: identity.NodeIdentity) -> None:
    good = auth(bob).auth
    assert verify_auth(good, (), NOW) == bob.onion
    # alice signs for bob's key
    forged = sign_auth(alice.master, alice.mldsa, alice.record.to_bytes(), bob.onion, DAY, NOW)
    with pytest.raises(BadMailboxAuth, match="not this identity's mailbox"):
        verify_auth(forged, (), NOW)
    with pytest.raises(BadMailboxAuth, match="signature"):
        verify_auth(good, (bytes(16),), NOW)  # deleting ids the signature does not cover
    with pytest.raises(StaleMailboxAuth):
        verify_auth(good, (), NOW + 601)
    with pytest.raises(BadMailboxAuth, match="not signed"):
        verify_auth(type(good)(good.key, good.day, good.time, good.publisher_record), (), NOW)
    with pytest.raises(BadMailboxAuth, match="identity record"):
        verify_auth(type(good)(good.key, good.day, good.time, b"junk", good.signature,
                               good.mldsa_signature), (), NOW)


def test_the_store_refuses_with_typed_reasons(alice: identity.NodeIdentity,
                                              bob: identity.NodeIdentity) -> None:
    store = MailboxStore(ttl=3600, quota=2 * min(ENVELOPE_SIZES), total=3 * min(ENVELOPE_SIZES))
    key = mailbox_key(bob.onion, DAY)
    one, two, three = (letter(alice, bob, bytes([i])) for i in range(3))
    assert store.put(key, one, NOW) and not store.put(key, one, NOW)
    with pytest.raises(MailNotPadded):
        store.put(key, one[:-1], NOW)
    with pytest.raises(MailTooLarge):
        store.put(key, bytes(max(ENVELOPE_SIZES) + 1), NOW)
    store.put(key, two, NOW)
    with pytest.raises(MailboxFull):
        store.put(key, three, NOW)
    other = mailbox_key(bob.onion, DAY + 1)
    store.put(other, three, NOW)
    with pytest.raises(MailStoreFull):
        store.put(mailbox_key(alice.onion, DAY), letter(bob, alice, b"x"), NOW)
    assert store.collect(key, NOW) == ([one, two], False)
    assert store.collect(key, NOW, limit=len(one)) == ([one], True)
    assert store.delete(key, (entry_id(one), bytes(16))) == 1
    assert store.collect(key, NOW) == ([two], False)
    assert store.expire(NOW + 3600) == 2 and len(store) == 0 and store.size == 0


def _core(own: identity.NodeIdentity, k: int = 20) -> DhtCore:
    return DhtCore(Contact(own.ed25519_public), k=k)


def test_core_deposit_collect_delete(alice: identity.NodeIdentity,
                                     bob: identity.NodeIdentity,
                                     tmp_path: Path) -> None:
    holder = _core(identity.create(tmp_path / "h", NOW - 100))
    key = mailbox_key(bob.onion, DAY)
    envelope = letter(alice, bob, b"hi")
    sender, owner = Contact(alice.ed25519_public), Contact(bob.ed25519_public)
    assert holder.answer(Deposit(key, envelope), NOW, sender) == Stored()
    mail = holder.answer(auth(bob), NOW, owner)
    assert mail == Mail((envelope,), False, 0)
    mail = holder.answer(auth(bob, delete=(entry_id(envelope),)), NOW, owner)
    assert mail == Mail((), False, 1)
    assert len(holder.mailboxes) == 0


def test_core_refusals_are_counted_and_answered(alice: identity.NodeIdentity,
                                                bob: identity.NodeIdentity,
                                                tmp_path: Path) -> None:
    holder = _core(identity.create(tmp_path / "h", NOW - 100))
    seen: list[str] = []
    holder.on_record_refused = lambda reason, peer: seen.append(reason)
    key = mailbox_key(bob.onion, DAY)
    sender, owner = Contact(alice.ed25519_public), Contact(bob.ed25519_public)
    with pytest.raises(DhtRequestRefused, match="MailNotPadded"):
        holder.answer(Deposit(key, b"short"), NOW, sender)
    with pytest.raises(DhtRequestRefused, match="BadMailboxAuth"):
        holder.answer(auth(bob), NOW, sender)  # bob's proof, relayed by alice
    with pytest.raises(DhtRequestRefused, match="StaleMailboxAuth"):
        holder.answer(auth(bob, now=NOW - 3600), NOW, owner)
    wrong_day = auth(bob)
    wrong_day = Collect(type(wrong_day.auth)(mailbox_key(bob.onion, DAY + 1), DAY,
                                             wrong_day.auth.time, wrong_day.auth.publisher_record,
                                             wrong_day.auth.signature,
                                             wrong_day.auth.mldsa_signature))
    with pytest.raises(DhtRequestRefused, match="BadMailboxAuth"):
        holder.answer(wrong_day, NOW, owner)
    answer = holder.handle(sender, encode(Deposit(key, b"short")), NOW).answer
    assert isinstance(decode_response(answer), Refused)
    assert seen == ["MailNotPadded", "BadMailboxAuth", "StaleMailboxAuth", "BadMailboxAuth",
                    "MailNotPadded"]
    assert holder.refused["MailNotPadded"] == 2


def test_core_refuses_a_deposit_it_is_not_responsible_for(alice: identity.NodeIdentity,
                                                          bob: identity.NodeIdentity,
                                                          tmp_path: Path) -> None:
    holder = _core(identity.create(tmp_path / "h", NOW - 100), k=1)
    key = mailbox_key(bob.onion, DAY)
    # a contact closer to the key than the holder itself
    own = int.from_bytes(holder.own.id, "big") ^ int.from_bytes(key, "big")
    for i in range(100_000):
        closer = Contact(hashlib.sha256(i.to_bytes(4, "big")).digest())
        if int.from_bytes(closer.id, "big") ^ int.from_bytes(key, "big") < own:
            break
    holder.table.observe(closer, NOW)
    assert not holder.responsible_for(key)
    with pytest.raises(DhtRequestRefused, match="not among the k closest"):
        holder.answer(Deposit(key, letter(alice, bob, b"x")), NOW, Contact(alice.ed25519_public))


def test_letters_expire_at_the_ttl(alice: identity.NodeIdentity, bob: identity.NodeIdentity,
                                   tmp_path: Path) -> None:
    holder = DhtCore(Contact(identity.create(tmp_path / "h", NOW - 100).ed25519_public),
                     mailboxes=MailboxStore(ttl=7 * 86400))
    holder.answer(Deposit(mailbox_key(bob.onion, DAY), letter(alice, bob, b"x")), NOW,
                  Contact(alice.ed25519_public))
    holder.due_republish(NOW + 7 * 86400 - 1)
    assert len(holder.mailboxes) == 1
    holder.due_republish(NOW + 7 * 86400)
    assert len(holder.mailboxes) == 0
