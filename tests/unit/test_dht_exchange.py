"""Peer exchange and reachability checks in the sans-I/O core (aegis_hidden.dht)."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden import identity
from aegis_hidden.dht import (
    MAX_NONCE,
    MAX_OFFER,
    BadI2PBinding,
    Candidates,
    Contact,
    DhtCore,
    DhtMessageError,
    ForgedEntry,
    Offer,
    Offered,
    PexEntry,
    Ping,
    Pong,
    Refused,
    RevokedEntry,
    UnsolvedEntry,
    check_entry,
    check_puzzle,
    decode_request,
    decode_request_nonce,
    decode_response,
    encode,
    solve_puzzle,
)
from aegis_hidden.testing import fake_private_key

NOW = 1_800_000_000.0
BITS = 6


def solved(ident: identity.NodeIdentity, bits: int = BITS) -> Contact:
    c = Contact(ident.ed25519_public)
    return Contact(c.ed25519_public, nonce=solve_puzzle(c.id, bits))


def entry(ident: identity.NodeIdentity, bits: int = BITS, binding: bytes = b"") -> PexEntry:
    return PexEntry(ident.record.to_bytes(), solved(ident, bits).nonce, binding)


@pytest.fixture(scope="module")
def idents(tmp_path_factory: pytest.TempPathFactory) -> list[identity.NodeIdentity]:
    base = tmp_path_factory.mktemp("ids")
    return [identity.create(base / f"id{i}", NOW - 10) for i in range(4)]


# -- codec ----------------------------------------------------------------------------
entries = st.builds(PexEntry, st.binary(min_size=1, max_size=300),
                    st.integers(0, MAX_NONCE), st.binary(max_size=200))


@settings(max_examples=60)
@given(st.lists(entries, max_size=MAX_OFFER), st.integers(0, 2**62))
def test_offer_round_trips(items: list[PexEntry], nonce: int) -> None:
    offer = Offer(tuple(items))
    assert decode_request_nonce(encode(offer, nonce)) == (offer, nonce)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_offered_round_trips(accepted: int, refused: int) -> None:
    assert decode_response(encode(Offered(accepted, refused))) == Offered(accepted, refused)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_message_errors(blob: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(DhtMessageError):
            decode(blob)


def test_offers_over_the_limits_do_not_decode() -> None:
    one = PexEntry(b"r", 1)
    with pytest.raises(DhtMessageError, match="at most 3"):
        decode_request(encode(Offer((one,) * (MAX_OFFER + 1))))
    with pytest.raises(DhtMessageError, match="record of 8193 bytes"):
        decode_request(encode(Offer((PexEntry(b"r" * 8193),))))
    with pytest.raises(DhtMessageError, match="record of 0 bytes"):
        decode_request(encode(Offer((PexEntry(b""),))))
    with pytest.raises(DhtMessageError, match="I2P binding"):
        decode_request(encode(Offer((PexEntry(b"r", 0, b"b" * 1025),))))
    with pytest.raises(DhtMessageError, match="is a request"):
        decode_response(encode(Offer((one,))))
    with pytest.raises(DhtMessageError, match="is an answer"):
        decode_request(encode(Offered(1, 0)))


# -- checking an entry ------------------------------------------------------------------
def test_a_good_entry_gives_its_contact(idents: list[identity.NodeIdentity]) -> None:
    checked = check_entry(entry(idents[0]), NOW, BITS)
    assert checked.contact == Contact(idents[0].ed25519_public)
    assert checked.contact.nonce == solved(idents[0]).nonce
    assert checked.record.onion == idents[0].onion
    assert checked.i2p is None and checked.binding == b""


def test_forged_expired_revoked_and_unsolved_entries_are_refused(
        idents: list[identity.NodeIdentity]) -> None:
    good = entry(idents[0])
    tampered = bytearray(good.record)
    tampered[-5] ^= 1  # in the ML-DSA signature
    with pytest.raises(ForgedEntry):
        check_entry(dataclasses.replace(good, record=bytes(tampered)), NOW, BITS)
    with pytest.raises(ForgedEntry):
        check_entry(dataclasses.replace(good, record=b"not a record"), NOW, BITS)
    with pytest.raises(ForgedEntry, match="expired"):
        check_entry(good, idents[0].record.expires + 1, BITS)
    revocation = identity.revoke(idents[1], NOW, "lost")
    with pytest.raises(RevokedEntry):
        check_entry(PexEntry(revocation.to_bytes(), solved(idents[1]).nonce), NOW, BITS)
    contact = Contact(idents[0].ed25519_public)
    bad = next(n for n in range(1000) if not check_puzzle(contact.id, n, BITS))
    with pytest.raises(UnsolvedEntry):
        check_entry(dataclasses.replace(good, nonce=bad), NOW, BITS)
    assert check_entry(dataclasses.replace(good, nonce=bad), NOW, 0).contact == contact


def test_an_i2p_binding_must_open_the_records_commitment(tmp_path: Path) -> None:
    key = fake_private_key()
    bound = identity.bind_i2p_destination(identity.create(tmp_path / "b", NOW - 10),
                                          key.destination.base64, NOW - 5)
    assert bound.i2p_binding is not None
    binding = bound.i2p_binding.to_bytes()
    checked = check_entry(entry(bound, binding=binding), NOW, BITS)
    assert checked.i2p == key.destination.b32 and checked.binding == binding
    other = identity.I2PBinding(fake_private_key().destination.base64, bound.i2p_binding.salt)
    with pytest.raises(BadI2PBinding):
        check_entry(entry(bound, binding=other.to_bytes()), NOW, BITS)
    with pytest.raises(BadI2PBinding):
        check_entry(entry(bound, binding=b"short"), NOW, BITS)


# -- the candidate queue ------------------------------------------------------------------
def contacts(n: int, seed: int = 1) -> list[Contact]:
    rng = random.Random(seed)
    return [Contact(rng.randbytes(32)) for _ in range(n)]


def test_the_candidate_queue_is_bounded_and_hands_out_a_few_per_tick() -> None:
    queue = Candidates(max_size=3, per_tick=2)
    cs = contacts(5)
    assert [queue.add(c, 0.0) for c in cs[:4]] == [True] * 4
    assert len(queue) == 3 and cs[0] not in queue  # the oldest went
    assert queue.counts["dropped"] == 1
    assert not queue.add(cs[1], 0.0)  # queued already
    assert queue.take() == [cs[1], cs[2]]
    assert queue.checking == 2 and cs[1] in queue
    queue.answered(cs[1])
    queue.failed(cs[2], 10.0)
    assert queue.counts["trusted"] == 1 and queue.counts["unreachable"] == 1
    # a contact that did not answer is not queued again for retry_after
    assert not queue.add(cs[2], 10.0 + queue.retry_after - 1)
    assert queue.add(cs[2], 10.0 + queue.retry_after)
    queue.discard(cs[3])
    assert queue.counts["checked_by_lookup"] == 1 and cs[3] not in queue


# -- the core: requesters and offered contacts wait for a check -------------------------------
def core_of(ident: identity.NodeIdentity, **options: object) -> DhtCore:
    return DhtCore(solved(ident), puzzle_bits=BITS, candidates=Candidates(), now=NOW,
                   **options)  # type: ignore[arg-type]


def test_a_requester_is_a_candidate_until_it_answered(
        idents: list[identity.NodeIdentity]) -> None:
    core = core_of(idents[0])
    asker = solved(idents[1])
    handled = core.handle(asker, encode(Ping(), asker.nonce), NOW)
    assert isinstance(decode_response(handled.answer), Pong)  # it is answered
    assert asker not in core.table and not core.table.closest(asker.id)
    assert core.candidates is not None and asker in core.candidates
    assert core.candidates.take() == [asker]
    core.candidates.answered(asker)
    core.checked(asker, NOW + 1)
    assert asker in core.table
    # known now: its next request refreshes it in the table, it is no candidate again
    core.handle(asker, encode(Ping(), asker.nonce), NOW + 2)
    assert len(core.candidates) == 0


def test_without_a_candidate_queue_a_requester_enters_at_once(
        idents: list[identity.NodeIdentity]) -> None:
    core = DhtCore(solved(idents[0]), puzzle_bits=BITS, now=NOW)  # Kademlia's rule
    asker = solved(idents[1])
    core.handle(asker, encode(Ping(), asker.nonce), NOW)
    assert asker in core.table
    answer = decode_response(core.handle(asker, encode(Offer(()), asker.nonce), NOW).answer)
    assert answer == Refused("peer exchange not run here")


def test_an_offer_is_checked_entry_by_entry_and_limited_per_peer(
        idents: list[identity.NodeIdentity]) -> None:
    core = core_of(idents[0])
    refused: list[tuple[str, Contact | None]] = []
    core.on_record_refused = lambda reason, peer: refused.append((reason, peer))
    offerer = solved(idents[1])
    good = entry(idents[2])
    forged = dataclasses.replace(entry(idents[3]), record=entry(idents[3]).record[:-1] + b"x")
    answer = decode_response(core.handle(
        offerer, encode(Offer((good, forged)), offerer.nonce), NOW).answer)
    assert answer == Offered(1, 1)
    assert refused == [("ForgedEntry", offerer)]
    offered = Contact(idents[2].ed25519_public)
    assert core.candidates is not None and offered in core.candidates
    assert offered not in core.table  # a candidate, not trusted
    assert core.exchange["records_accepted"] == 1 and core.exchange["records_refused"] == 1
    # the burst is 3 offers; the 4th at once is refused, counted, with a reason
    for _ in range(2):
        core.handle(offerer, encode(Offer((good,)), offerer.nonce), NOW)
    over = decode_response(core.handle(offerer, encode(Offer((good,)), offerer.nonce),
                                       NOW).answer)
    assert over == Refused("offer rate exceeded")
    assert core.refused["offer rate"] == 1 and core.exchange["offers_over_rate"] == 1
    # the bucket refills: one offer a minute
    again = core.handle(offerer, encode(Offer((good,)), offerer.nonce), NOW + 61)
    assert isinstance(decode_response(again.answer), Offered)


def test_an_offer_from_an_unsolved_sender_is_refused(
        idents: list[identity.NodeIdentity]) -> None:
    core = core_of(idents[0])
    sender = Contact(idents[1].ed25519_public)
    nonce = next(n for n in range(1000) if not check_puzzle(sender.id, n, BITS))
    answer = decode_response(core.handle(sender, encode(Offer((entry(idents[2]),)), nonce),
                                         NOW).answer)
    assert answer == Refused("puzzle not solved")
    assert core.candidates is not None and len(core.candidates) == 0
