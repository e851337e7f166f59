"""The sans-I/O handshake (docs/protocol.md §2) and the established session (§3, §4)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import (
    Closed,
    CloseReason,
    Established,
    HandshakeError,
    MessageReceived,
    ReplayCache,
    Session,
    SessionError,
    SessionParams,
    State,
    b32_address_of_destination,
    xwing,
)
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import decode_clear, encode_clear, handshake_pb2

NOW = 1_800_000_000.0
PARAMS = SessionParams()


@pytest.fixture(scope="module")
def ids() -> dict[str, NodeIdentity]:
    dest = base64.b64encode(os.urandom(391)).decode().replace("+", "-").replace("/", "~")
    return {
        "alice": memory_identity(NOW),
        "bob": memory_identity(NOW),
        "carol": memory_identity(NOW, with_mldsa=False),
        "dave": memory_identity(NOW, with_mldsa=False),
        "mallory": memory_identity(NOW),
        "ivy": memory_identity(NOW, i2p_destination=dest),
    }


def det_random(seed: bytes) -> Callable[[int], bytes]:
    """Deterministic 'randomness', so a session can be rebuilt in the same state."""
    counter = [0]

    def rand(n: int) -> bytes:
        counter[0] += 1
        return hashlib.shake_256(seed + counter[0].to_bytes(4, "big")).digest(n)

    return rand


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Wire:
    """Moves bytes between two sessions, recording each flight; ``tamper`` may rewrite one."""

    i: Session
    r: Session
    flights: list[tuple[str, bytes]] = field(default_factory=list)
    tamper: Callable[[int, str, bytes], bytes] | None = None

    def run(self, limit: int = 10) -> None:
        for _ in range(limit):
            moved = False
            for src, dst, name in ((self.i, self.r, "i2r"), (self.r, self.i, "r2i")):
                data = src.data_to_send()
                if data:
                    if self.tamper is not None:
                        data = self.tamper(len(self.flights), name, data)
                    self.flights.append((name, data))
                    dst.receive_data(data)
                    moved = True
            if not moved:
                return


def make_pair(ids: dict[str, NodeIdentity], initiator: str = "alice", responder: str = "bob",
              *, dial: str | None = None, i_params: SessionParams = PARAMS,
              r_params: SessionParams = PARAMS, clock: Clock | None = None,
              seed: bytes = b"seed", encapsulate: Callable[[bytes], tuple[bytes, bytes]] | None = None,
              replay_cache: ReplayCache | None = None, responder_cls: type[Session] = Session,
              ) -> tuple[Session, Session]:
    clock = clock or Clock()
    i = Session(ids[initiator], i_params, initiator=True, clock=clock,
                peer_address=dial or ids[responder].onion, random=det_random(b"i" + seed))
    r = responder_cls(ids[responder], r_params, initiator=False, clock=clock,
                      random=det_random(b"r" + seed), replay_cache=replay_cache,
                      encapsulate=encapsulate or xwing.encapsulate)
    return i, r


def handshake(i: Session, r: Session, tamper: Callable[[int, str, bytes], bytes] | None = None
              ) -> Wire:
    wire = Wire(i, r, tamper=tamper)
    i.start()
    wire.run()
    return wire


def failure(s: Session) -> SessionError:
    assert s.close_reason is not None, f"session is {s.state}"
    return s.close_reason


# -- success ---------------------------------------------------------------------------

@pytest.mark.parametrize(("initiator", "responder"),
                         [("alice", "bob"), ("carol", "dave"), ("alice", "carol"), ("carol", "bob")])
def test_mutual_handshake(ids: dict[str, NodeIdentity], initiator: str, responder: str) -> None:
    i, r = make_pair(ids, initiator, responder)
    wire = handshake(i, r)
    assert i.state is State.ESTABLISHED and r.state is State.ESTABLISHED
    (ei,) = i.events()
    (er,) = r.events()
    assert isinstance(ei, Established) and isinstance(er, Established)
    assert ei.peer == ids[responder].onion and ei.record == ids[responder].record
    assert er.peer == ids[initiator].onion and er.record == ids[initiator].record
    assert ei.version == er.version == 1
    # Four flights, every one made of whole cells.
    assert [name for name, _ in wire.flights] == ["i2r", "r2i", "i2r", "r2i"]
    assert all(len(data) % PARAMS.cell_size == 0 for _, data in wire.flights)
    i.send_message(b"ping")
    r.receive_data(i.data_to_send())
    r.send_message(b"pong" * 3000)
    i.receive_data(r.data_to_send())
    assert r.events() == [MessageReceived(b"ping")]
    assert i.events() == [MessageReceived(b"pong" * 3000)]


def test_hybrid_signatures_only_when_both_records_have_mldsa(ids: dict[str, NodeIdentity]) -> None:
    sizes = {}
    for a, b in (("alice", "bob"), ("alice", "carol"), ("carol", "bob")):
        i, r = make_pair(ids, a, b)
        w = handshake(i, r)
        assert i.established and r.established
        sizes[a, b] = (len(w.flights[1][1]), len(w.flights[2][1]))
    # The responder signs with ML-DSA-65 whenever it has a key (3309 more bytes)...
    assert sizes["alice", "bob"][0] > sizes["alice", "carol"][0] + 3000
    # ...the initiator only when both records carry one.
    assert sizes["alice", "bob"][1] > sizes["carol", "bob"][1] + 3000
    assert sizes["alice", "carol"][1] < sizes["alice", "bob"][1] - 3000


def test_chacha20_poly1305_sessions(ids: dict[str, NodeIdentity]) -> None:
    p = SessionParams(encryption="ChaCha20-Poly1305")
    i, r = make_pair(ids, i_params=p, r_params=p)
    handshake(i, r)
    assert i.established and r.established
    i.send_message(b"x")
    r.receive_data(i.data_to_send())
    assert r.events()[-1] == MessageReceived(b"x")


def test_i2p_address_is_proven_through_the_record(ids: dict[str, NodeIdentity]) -> None:
    b32 = b32_address_of_destination(ids["ivy"].record.i2p_destination)
    i, r = make_pair(ids, "alice", "ivy", dial=b32)
    handshake(i, r)
    assert i.established and r.established
    assert i.events()[0] == Established(b32, ids["ivy"].record, 1)
    assert r.local_address == b32


# -- identity and address --------------------------------------------------------------

def test_mismatched_address_is_refused_by_the_responder(ids: dict[str, NodeIdentity]) -> None:
    # Alice dials Carol's address but the stream reaches Bob (misrouted or relayed).
    i, r = make_pair(ids, "alice", "bob", dial=ids["carol"].onion)
    handshake(i, r)
    assert failure(r).reason is CloseReason.ADDRESS_MISMATCH
    assert isinstance(failure(r), HandshakeError)
    assert r.data_to_send() == b""  # nothing sent back, nothing learned
    i.connection_lost()
    assert failure(i).reason is CloseReason.TRUNCATED and not i.established


class _Impostor(Session):
    """A responder that answers for an address it does not own (Bob's)."""

    claimed = ""

    def _own_addresses(self) -> list[str]:
        return [self.claimed]


def _impostor(claimed: str) -> type[Session]:
    return type("Impostor", (_Impostor,), {"claimed": claimed})


def test_wrong_identity_key_fails_authentication(ids: dict[str, NodeIdentity]) -> None:
    # Mallory replays Bob's (public, validly signed) record but can only sign with her key.
    bob, mallory = ids["bob"], ids["mallory"]
    fake = NodeIdentity(mallory.directory, mallory.master_seed, mallory.xwing_secret,
                        mallory.mldsa_seed, bob.record)
    ids2 = {**ids, "fake": fake}
    i, r = make_pair(ids2, "alice", "fake", dial=bob.onion, responder_cls=_impostor(bob.onion))
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.AUTH_FAILED and "Ed25519" in err.detail
    assert not i.established and not r.established


def test_record_of_another_key_is_refused(ids: dict[str, NodeIdentity]) -> None:
    # Mallory signs correctly with her own key and record, but Alice dialed Bob.
    i, r = make_pair(ids, "alice", "mallory", dial=ids["bob"].onion,
                     responder_cls=_impostor(ids["bob"].onion))
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "another key" in err.detail


def test_forged_mldsa_half_fails_hybrid_authentication(ids: dict[str, NodeIdentity]) -> None:
    # Someone with Bob's Ed25519 key but not his ML-DSA-65 key cannot pass.
    bob = ids["bob"]
    half = NodeIdentity(bob.directory, bob.master_seed, bob.xwing_secret, os.urandom(32), bob.record)
    i, r = make_pair({**ids, "half": half}, "alice", "half", dial=bob.onion)
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.AUTH_FAILED and "ML-DSA-65" in err.detail


def test_initiator_with_wrong_key_is_refused_by_responder(ids: dict[str, NodeIdentity]) -> None:
    alice, mallory = ids["alice"], ids["mallory"]
    fake = NodeIdentity(mallory.directory, mallory.master_seed, mallory.xwing_secret,
                        mallory.mldsa_seed, alice.record)
    i, r = make_pair({**ids, "fake": fake}, "fake", "bob")
    handshake(i, r)
    assert failure(r).reason in (CloseReason.WRONG_IDENTITY, CloseReason.AUTH_FAILED)
    assert not r.established
    i.connection_lost()
    assert not i.established  # no Finished: the initiator never reports success


def test_expired_record_is_refused(ids: dict[str, NodeIdentity]) -> None:
    old = memory_identity(NOW - 100 * 24 * 3600, lifetime=3600)
    i, r = make_pair({**ids, "old": old}, "alice", "old")
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "expired" in err.detail


# -- versions and downgrade ------------------------------------------------------------

def _rewrite_hello(data: bytes, edit: Callable[[handshake_pb2.ClientHello], None],
                   cell_size: int = PARAMS.cell_size) -> bytes:
    pieces = [decode_clear(data[k:k + cell_size], cell_size)[1]
              for k in range(0, len(data), cell_size)]
    hello = handshake_pb2.ClientHello()
    hello.ParseFromString(b"".join(pieces))
    edit(hello)
    raw = hello.SerializeToString()
    room = cell_size - 8
    chunks = [raw[k:k + room] for k in range(0, len(raw), room)]
    return b"".join(encode_clear(cell_size, int(n < len(chunks) - 1), c)
                    for n, c in enumerate(chunks, start=0))


def test_highest_common_version_is_chosen(ids: dict[str, NodeIdentity]) -> None:
    p2 = SessionParams(versions=(2, 1))
    i, r = make_pair(ids, i_params=p2, r_params=p2)
    handshake(i, r)
    assert i.version == r.version == 2 and i.established
    i, r = make_pair(ids, i_params=p2, r_params=PARAMS)
    handshake(i, r)
    assert i.version == r.version == 1 and i.established


def test_downgrade_attempt_is_detected(ids: dict[str, NodeIdentity]) -> None:
    p2 = SessionParams(versions=(2, 1))
    i, r = make_pair(ids, i_params=p2, r_params=p2)

    def only_v1(hello: handshake_pb2.ClientHello) -> None:
        del hello.versions[:]
        hello.versions.append(1)

    def strip_v2(n: int, direction: str, data: bytes) -> bytes:
        return _rewrite_hello(data, only_v1) if n == 0 else data

    handshake(i, r, tamper=strip_v2)
    assert r.version == 1  # the responder was fooled into version 1...
    err = failure(i)  # ...but the transcripts differ, so the initiator cannot even open ServerAuth
    assert err.reason is CloseReason.TAMPERED
    assert not i.established and not r.established


def test_rewritten_version_choice_is_detected(ids: dict[str, NodeIdentity]) -> None:
    p2 = SessionParams(versions=(2, 1))
    i, r = make_pair(ids, i_params=p2, r_params=p2)
    n = PARAMS.cell_size

    def lower_choice(k: int, direction: str, data: bytes) -> bytes:
        if k != 1:
            return data
        first = decode_clear(data[:n], n)[1]
        # ServerHello starts with field 1 (version): 0x08 0x02 -> 0x08 0x01.
        assert first[:2] == b"\x08\x02"
        return encode_clear(n, 1, b"\x08\x01" + first[2:]) + data[n:]

    handshake(i, r, tamper=lower_choice)
    assert failure(i).reason is CloseReason.TAMPERED and not i.established


def test_no_common_version(ids: dict[str, NodeIdentity]) -> None:
    i, r = make_pair(ids, i_params=SessionParams(versions=(2,)))
    handshake(i, r)
    assert failure(r).reason is CloseReason.VERSION_MISMATCH


def test_cell_size_mismatch_fails_at_the_first_bytes(ids: dict[str, NodeIdentity]) -> None:
    i, r = make_pair(ids, i_params=SessionParams(cell_size=1024))
    i.start()
    r.receive_data(i.data_to_send()[:4])
    assert failure(r).reason is CloseReason.CELL_SIZE_MISMATCH


# -- replay ----------------------------------------------------------------------------

def test_replayed_first_message(ids: dict[str, NodeIdentity]) -> None:
    clock = Clock()
    cache = ReplayCache(clock)
    i, r = make_pair(ids, clock=clock, replay_cache=cache)
    wire = handshake(i, r)
    assert r.established
    first, third = wire.flights[0][1], wire.flights[2][1]
    # 1. The responder remembers the nonce and refuses the replay at once.
    _, r2 = make_pair(ids, clock=clock, replay_cache=cache, seed=b"other")
    r2.receive_data(first)
    assert failure(r2).reason is CloseReason.REPLAY and r2.data_to_send() == b""
    # 2. Without the cache (or after it forgot), the replayer gets a fresh
    #    encapsulation it cannot open, so the old third flight does not fit.
    _, r3 = make_pair(ids, clock=clock, seed=b"other")
    r3.receive_data(first)
    assert r3.state is State.WAIT_CLIENT_AUTH
    r3.receive_data(third)
    assert failure(r3).reason is CloseReason.TAMPERED and not r3.established
    _, r4 = make_pair(ids, clock=clock, seed=b"third")
    r4.receive_data(first)
    r4.timeout()
    assert failure(r4).reason is CloseReason.TIMEOUT
    # 3. The cache forgets after its window, and keeps only recent nonces.
    clock.now += 601
    assert cache.fresh(b"n" * 32) and not cache.fresh(b"n" * 32)


def test_handshake_timeout(ids: dict[str, NodeIdentity]) -> None:
    i, _ = make_pair(ids)
    i.start()
    i.timeout()
    err = failure(i)
    assert err.reason is CloseReason.TIMEOUT and "wait-server-hello" in err.detail
    assert i.events() == [Closed(CloseReason.TIMEOUT, err.detail, False)]


# -- truncation and corruption at every byte position -----------------------------------

def _recorded(ids: dict[str, NodeIdentity], a: str, b: str
              ) -> tuple[list[bytes], Callable[[], tuple[Session, Session]]]:
    """Flights of one handshake and a factory for sessions that reproduce it exactly."""
    fixed: dict[bytes, tuple[bytes, bytes]] = {}

    def encapsulate(pk: bytes) -> tuple[bytes, bytes]:
        if pk not in fixed:
            fixed[pk] = xwing.encapsulate(pk)
        return fixed[pk]

    def build() -> tuple[Session, Session]:
        return make_pair(ids, a, b, encapsulate=encapsulate)

    i, r = build()
    wire = handshake(i, r)
    assert i.established and r.established
    flights = [data for _, data in wire.flights]
    # Rebuilding gives byte-identical flights (deterministic randomness, Ed25519).
    i2, _ = build()
    i2.start()
    assert i2.data_to_send() == flights[0]
    return flights, build


def _to_state(build: Callable[[], tuple[Session, Session]], flights: list[bytes], k: int
              ) -> tuple[Session, Session]:
    """Fresh sessions with flights[:k] delivered."""
    i, r = build()
    i.start()
    i.data_to_send()
    for n in range(k):
        (r if n % 2 == 0 else i).receive_data(flights[n])
        if n % 2 == 0:
            r.data_to_send()
        else:
            i.data_to_send()
    return i, r


@pytest.mark.parametrize("flight", [0, 1, 2, 3])
def test_truncated_at_every_byte_position(ids: dict[str, NodeIdentity], flight: int) -> None:
    flights, build = _recorded(ids, "carol", "dave")
    data = flights[flight]
    for cut in range(len(data)):
        i, r = _to_state(build, flights, flight)
        receiver = r if flight % 2 == 0 else i
        receiver.receive_data(data[:cut])
        receiver.connection_lost()
        err = failure(receiver)
        assert isinstance(err, HandshakeError) and err.reason is CloseReason.TRUNCATED, cut
        assert not receiver.established


def _corrupt_and_finish(build: Callable[[], tuple[Session, Session]], flights: list[bytes],
                        flight: int, pos: int) -> tuple[Session, Session]:
    i, r = _to_state(build, flights, flight)
    data = bytearray(flights[flight])
    data[pos] ^= 0x5A
    receiver = r if flight % 2 == 0 else i
    receiver.receive_data(bytes(data))
    Wire(i, r).run()
    return i, r


def _assert_failed(i: Session, r: Session, where: str) -> None:
    assert not (i.established and r.established), where
    assert not i.established, where  # the initiator never reports a session that is not whole
    for s in (i, r):
        if s.close_reason is not None:
            assert isinstance(s.close_reason.reason, CloseReason), where
    assert i.close_reason is not None or r.close_reason is not None, where


@pytest.mark.parametrize("flight", [0, 1, 2, 3])
def test_corrupted_at_every_byte_position(ids: dict[str, NodeIdentity], flight: int) -> None:
    flights, build = _recorded(ids, "carol", "dave")
    for pos in range(len(flights[flight])):
        i, r = _corrupt_and_finish(build, flights, flight, pos)
        if flight == 3:
            # The last flight (Finished) only reaches the initiator: it must refuse it.
            assert not i.established and failure(i).reason is not None, pos
        else:
            _assert_failed(i, r, f"flight {flight} byte {pos}")


@pytest.mark.parametrize("flight", [0, 1])
def test_corrupted_hybrid_flights_sampled(ids: dict[str, NodeIdentity], flight: int) -> None:
    # With ML-DSA-65 (bigger flights; ML-DSA signing is randomised so flight 2 cannot
    # be replayed into a rebuilt responder): every 37th byte plus every cell header.
    flights, build = _recorded(ids, "alice", "bob")
    n = PARAMS.cell_size
    positions = set(range(0, len(flights[flight]), 37))
    positions |= {c + k for c in range(0, len(flights[flight]), n) for k in range(8)}
    for pos in sorted(positions):
        i, r = _corrupt_and_finish(build, flights, flight, pos)
        _assert_failed(i, r, f"flight {flight} byte {pos}")


# -- privacy ---------------------------------------------------------------------------

def test_initiator_identity_never_in_cleartext(ids: dict[str, NodeIdentity]) -> None:
    alice, bob = ids["alice"], ids["bob"]
    i, r = make_pair(ids, "alice", "bob")
    wire = handshake(i, r)
    i.send_message(b"hello")
    r.receive_data(i.data_to_send())
    everything = b"".join(data for _, data in wire.flights)
    # The clear cells' payloads joined up, so nothing hides across a cell boundary.
    n = PARAMS.cell_size
    clear_by_flight = []
    for _, data in wire.flights:
        clear_by_flight.append(b"".join(decode_clear(data[k:k + n], n)[1]
                                        for k in range(0, len(data), n) if data[k:k + 2] == b"AH"))
    clear = b"".join(clear_by_flight)
    secrets = {
        "onion": alice.onion.encode(),
        "ONION": alice.onion.upper().encode(),
        "onion label": alice.onion.removesuffix(".onion").encode(),
        "ed25519 public": alice.ed25519_public,
        "x-wing public": alice.xwing_public[:32],
        "ml-dsa public": alice.record.mldsa_public[:32],
        "record signature": alice.record.signature,
        "record": alice.record.to_bytes()[:64],
    }
    for name, value in secrets.items():
        assert value not in everything, name
        assert value not in clear, name
    # Control: the search does find what *is* sent in clear (the ephemeral key).
    hello = handshake_pb2.ClientHello()
    hello.ParseFromString(clear_by_flight[0])
    assert len(hello.ephemeral_public) == xwing.PUBLIC_KEY_SIZE
    assert hello.ephemeral_public in clear
    assert hello.ephemeral_public not in everything  # it spans a cell boundary on the wire
    # The responder's identity is not in clear either (it is sealed too).
    assert bob.onion.encode() not in everything and bob.ed25519_public not in clear


# -- established session: tamper, replay, truncation, rekey, limits ---------------------

def _established(ids: dict[str, NodeIdentity], **kw: object) -> tuple[Session, Session, Clock]:
    clock = Clock()
    i, r = make_pair(ids, "carol", "dave", clock=clock, **kw)  # type: ignore[arg-type]
    handshake(i, r)
    assert i.established and r.established
    i.events()
    r.events()
    return i, r, clock


def test_tampered_cell_closes_both_sides_with_a_reason(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    i.send_message(b"secret")
    cell = bytearray(i.data_to_send())
    cell[100] ^= 1
    r.receive_data(bytes(cell))
    assert failure(r).reason is CloseReason.TAMPERED
    (ev,) = r.events()
    assert isinstance(ev, Closed) and not ev.by_peer
    i.receive_data(r.data_to_send())  # the sealed CLOSE tells the initiator why
    (ev,) = i.events()
    assert isinstance(ev, Closed)
    assert ev.reason is CloseReason.TAMPERED and ev.by_peer and i.closed


def test_replayed_and_reordered_cells_close_the_session(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    i.send_message(b"one")
    one = i.data_to_send()
    i.send_message(b"two")
    two = i.data_to_send()
    r.receive_data(one)
    r.receive_data(one)  # replay
    assert failure(r).reason is CloseReason.TAMPERED
    i, r, _ = _established(ids)
    i.send_message(b"one")
    one = i.data_to_send()
    i.send_message(b"two")
    two = i.data_to_send()
    r.receive_data(two + one)  # reordered
    assert failure(r).reason is CloseReason.TAMPERED
    assert not any(isinstance(e, MessageReceived) for e in r.events())


def test_truncation_without_close_is_reported(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    i.send_message(os.urandom(3000))  # incompressible: 4 cells
    data = i.data_to_send()
    r.receive_data(data[: PARAMS.cell_size + 10])
    r.connection_lost()
    err = failure(r)
    assert err.reason is CloseReason.TRUNCATED and "partial cell" in err.detail
    assert not isinstance(err, HandshakeError)


def test_close_is_clean(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    i.close(CloseReason.NORMAL, "bye")
    r.receive_data(i.data_to_send())
    assert r.events() == [Closed(CloseReason.NORMAL, "peer closed: bye", True)]
    r.connection_lost()  # after CLOSE, the end of the stream is not truncation
    assert r.events() == []
    with pytest.raises(SessionError):
        i.send_message(b"late")


def test_rekey_after_n_cells(ids: dict[str, NodeIdentity]) -> None:
    p = SessionParams(rekey_cells=3)
    i, r, _ = _established(ids, i_params=p, r_params=p)
    for k in range(20):
        i.send_message(b"m%d" % k)
    r.receive_data(i.data_to_send())
    assert [e.data for e in r.events() if isinstance(e, MessageReceived)] == [
        b"m%d" % k for k in range(20)]
    assert i._tx is not None and i._tx.generation >= 6
    assert r._rx is not None and r._rx.generation == i._tx.generation


def test_rekey_after_t_seconds(ids: dict[str, NodeIdentity]) -> None:
    p = SessionParams(rekey_seconds=60)
    i, r, clock = _established(ids, i_params=p, r_params=p)
    i.send_message(b"before")
    clock.now += 61
    i.send_message(b"after")
    r.receive_data(i.data_to_send())
    assert [e.data for e in r.events() if isinstance(e, MessageReceived)] == [b"before", b"after"]
    assert i._tx is not None and i._tx.generation == 1


def test_message_limit_is_enforced_by_the_receiver(ids: dict[str, NodeIdentity]) -> None:
    big = SessionParams(max_message_size=100_000, compression_threshold=10**6)
    small = SessionParams(max_message_size=10_000)
    i, r, _ = _established(ids, i_params=big, r_params=small)
    i.send_message(os.urandom(20_000))
    r.receive_data(i.data_to_send())
    assert failure(r).reason is CloseReason.MESSAGE_TOO_LARGE


def test_compression_before_padding_saves_cells(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    text = b"all work and no play makes jack a dull boy. " * 500
    i.send_message(text)
    wire = i.data_to_send()
    assert len(wire) % PARAMS.cell_size == 0
    assert len(wire) < len(text) // 10
    r.receive_data(wire)
    assert r.events() == [MessageReceived(text)]


def test_cover_and_padding_cells_are_dropped_silently(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    i.send_cover()
    i.send_message(b"real")
    from aegis_hidden.wire import CellType

    i.send_cover(CellType.PADDING)
    data = i.data_to_send()
    assert len(data) == 3 * PARAMS.cell_size
    r.receive_data(data)
    assert r.events() == [MessageReceived(b"real")]


def test_multi_cell_messages_with_cover_cells_and_rekeys_between_fragments(
        ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType

    p = SessionParams(rekey_cells=5, compression_threshold=10**6)
    i, r, _ = _established(ids, i_params=p, r_params=p)
    big = os.urandom(PARAMS.cell_size * 7)
    i.send_message(big)
    wire = i.data_to_send()
    n = PARAMS.cell_size
    assert len(wire) == 8 * n + n  # 8 DATA cells and one REKEY cell after the 5th
    r.receive_data(wire)
    assert r.events() == [MessageReceived(big)]
    i.send_message(b"a" * 10)
    i.send_cover()
    i.send_cover(CellType.PADDING)
    i.send_message(big[: n * 2])
    r.receive_data(i.data_to_send())
    assert r.events() == [MessageReceived(b"a" * 10), MessageReceived(big[: n * 2])]
    # 14 DATA/cover cells with a rekey every 5: two rekeys, both sides in step.
    assert i._tx is not None and r._rx is not None
    assert i._tx.generation == r._rx.generation == 2


def test_fragments_arrive_in_any_chunking(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    msgs = [os.urandom(k) for k in (0, 1, 975, 976, 977, 5000)]
    msgs.append(b"compressible " * 400)
    for m in msgs:
        i.send_message(m)
    wire = i.data_to_send()
    for k in range(0, len(wire), 333):
        r.receive_data(wire[k:k + 333])
    assert r.events() == [MessageReceived(m) for m in msgs]


def test_uncompressed_then_compressed_fragment_is_refused(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, Flags, encode_inner

    i, r, _ = _established(ids)
    assert i._tx is not None
    first = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, int(Flags.MORE), b"x" * 10))
    second = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, int(Flags.ZSTD), b"y" * 10))
    r.receive_data(first + second)
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "compression flag" in err.detail


class _AlwaysSignsMLDSA(Session):
    def _make_auth(self, *, responder: bool, peer_has_mldsa: bool) -> bytes:
        return super()._make_auth(responder=responder, peer_has_mldsa=True)


class _NeverSignsMLDSA(Session):
    def _make_auth(self, *, responder: bool, peer_has_mldsa: bool) -> bytes:
        return super()._make_auth(responder=responder, peer_has_mldsa=False)


def test_responder_that_skips_its_mldsa_signature_is_refused(ids: dict[str, NodeIdentity]) -> None:
    # Bob's record lists an ML-DSA key, so an Ed25519-only proof is a downgrade.
    i, r = make_pair(ids, "carol", "bob", responder_cls=_NeverSignsMLDSA)
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.AUTH_FAILED and "ML-DSA-65" in err.detail


def test_unrequested_mldsa_signature_is_refused(ids: dict[str, NodeIdentity]) -> None:
    # Alice has ML-DSA but Carol does not: Alice must not sign with it, and Carol refuses
    # a proof that does not follow the rule (the transcript shape is fixed by the records).
    clock = Clock()
    i = _AlwaysSignsMLDSA(ids["alice"], PARAMS, initiator=True, clock=clock,
                          peer_address=ids["carol"].onion)
    r = Session(ids["carol"], PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    err = failure(r)
    assert err.reason is CloseReason.PROTOCOL_ERROR and "nobody asked for" in err.detail


def test_revocation_record_is_not_an_identity(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import IdentityRecord, RecordKind, sign_record

    dave = ids["dave"]
    revoked = sign_record(IdentityRecord(kind=RecordKind.REVOCATION,
                                         ed25519_public=dave.ed25519_public, sequence=2,
                                         created=int(NOW), expires=0, reason="stolen"),
                          dave.master)
    gone = NodeIdentity(dave.directory, dave.master_seed, dave.xwing_secret, None, revoked)
    i, r = make_pair({**ids, "gone": gone}, "alice", "gone")
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "revocation" in err.detail


# -- issue 9 item 4: canonical addresses, no exception escapes ---------------------------

@pytest.mark.parametrize("address", [
    "\u212a" * 56 + ".onion",                       # KELVIN SIGN lower-cases to "k"
    "\u017f" * 56 + ".onion",                       # LONG S upper-cases to "S"
    "A" * 56 + ".onion",
    "www." + "a" * 56 + ".onion",
    "a" * 56 + ".onion\n",
    "a" * 56 + ".onion:80",
    "a" * 52 + "====.b32.i2p",
    "a" * 51 + "b.b32.i2p",                          # non-zero unused trailing bits
    "A" * 52 + ".b32.i2p",
    "a" * 52 + ".B32.I2P",
    "x.b32.i2p",
    "",
], ids=ascii)
def test_only_canonical_ascii_addresses_are_accepted(address: str) -> None:
    from aegis_hidden.session import is_canonical_address

    assert not is_canonical_address(address)
    with pytest.raises(ValueError, match="canonical"):
        dialed_hint_of(address)


def dialed_hint_of(address: str) -> bytes:
    from aegis_hidden.session import dialed_hint

    return dialed_hint(b"n" * 32, address)


def test_canonical_addresses_pass(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.session import is_canonical_address

    assert is_canonical_address(ids["bob"].onion)
    assert is_canonical_address("a" * 51 + "q.b32.i2p") and is_canonical_address("a" * 52 + ".b32.i2p")
    assert not is_canonical_address(ids["bob"].onion[:-7] + "x.onion")  # checksum
    with pytest.raises(ValueError, match="canonical"):
        Session(ids["alice"], PARAMS, initiator=True, clock=Clock(),
                peer_address=ids["bob"].onion.upper())


def _with_letters(*letters: str) -> NodeIdentity:
    while True:
        ident = memory_identity(NOW)
        if all(ch in ident.onion.removesuffix(".onion") for ch in letters):
            return ident


class _FoldedAddress(Session):
    """Sends its Auth with one letter of its address replaced by a look-alike."""

    swap = ("k", "\u212a")

    def _make_auth(self, **kw: bool) -> bytes:
        data = super()._make_auth(**kw)
        auth = handshake_pb2.Auth()
        auth.ParseFromString(data)
        auth.address = auth.address.replace(self.swap[0], self.swap[1], 1)
        return auth.SerializeToString(deterministic=True)


@pytest.mark.parametrize("swap", [("k", "\u212a"), ("s", "\u017f")])
@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_look_alike_address_in_auth_is_refused_not_a_crash(swap: tuple[str, str], side: str) -> None:
    a, b = _with_letters("k", "s"), _with_letters("k", "s")
    cls = type("Folded", (_FoldedAddress,), {"swap": swap})
    clock = Clock()
    i = (cls if side == "initiator" else Session)(a, PARAMS, initiator=True, clock=clock,
                                                  peer_address=b.onion)
    r = (cls if side == "responder" else Session)(b, PARAMS, initiator=False, clock=clock)
    handshake(i, r)  # old code: UnicodeEncodeError out of receive_data
    victim = i if side == "responder" else r
    err = failure(victim)
    expected = CloseReason.ADDRESS_MISMATCH if side == "responder" else CloseReason.WRONG_IDENTITY
    assert err.reason is expected
    assert not i.established and not r.established


def test_unexpected_exception_becomes_protocol_error(ids: dict[str, NodeIdentity],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.logger import capturedLogs

    i, r = make_pair(ids)

    def boom(data: bytes) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(r, "_on_client_hello", boom)
    i.start()
    with capturedLogs() as logged:
        r.receive_data(i.data_to_send())  # must not raise
    err = failure(r)
    assert err.reason is CloseReason.PROTOCOL_ERROR and "KeyError" in err.detail
    assert isinstance(err, HandshakeError)
    assert [e for e in r.events() if isinstance(e, Closed)] == [
        Closed(CloseReason.PROTOCOL_ERROR, err.detail, False)]
    assert logged and logged[0].get("log_failure") is not None  # with its traceback


def test_unexpected_exception_after_the_handshake_is_reported_sealed(
        ids: dict[str, NodeIdentity], monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.logger import capturedLogs

    i, r, _ = _established(ids)

    def boom(plain: bytes) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(r, "_on_established_cell", boom)
    i.send_cover()
    with capturedLogs():
        r.receive_data(i.data_to_send())
    assert failure(r).reason is CloseReason.PROTOCOL_ERROR
    i.receive_data(r.data_to_send())  # the peer is told, in a sealed CLOSE
    assert failure(i).reason is CloseReason.PROTOCOL_ERROR and i.events()[-1].by_peer  # type: ignore[union-attr]


# -- issue 9 item 5: fragment limits ---------------------------------------------------

@pytest.mark.parametrize("size", [100, 5000])
def test_message_of_max_plus_one_bytes_is_refused(ids: dict[str, NodeIdentity], size: int) -> None:
    loose = SessionParams(max_message_size=10 * size, compression_threshold=10**6)
    strict = SessionParams(max_message_size=size, compression_threshold=10**6)
    i, r, _ = _established(ids, i_params=loose, r_params=strict)
    exact = os.urandom(size)
    i.send_message(exact)
    r.receive_data(i.data_to_send())
    assert r.events() == [MessageReceived(exact)]
    i.send_message(os.urandom(size + 1))  # the last fragment is what tips it over
    r.receive_data(i.data_to_send())
    assert failure(r).reason is CloseReason.MESSAGE_TOO_LARGE
    assert not any(isinstance(e, MessageReceived) for e in r.events())


def test_empty_non_final_fragments_are_refused(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, Flags, encode_inner

    i, r, _ = _established(ids)
    assert i._tx is not None
    empty = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, int(Flags.MORE), b""))
    r.receive_data(empty)
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "empty fragment" in err.detail
    # The same through the general reassembler (a compressed message).
    i, r, _ = _established(ids)
    assert i._tx is not None
    empty = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA,
                                    int(Flags.MORE | Flags.ZSTD), b""))
    r.receive_data(empty)
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "empty fragment" in err.detail


def test_empty_non_final_handshake_fragment_is_refused(ids: dict[str, NodeIdentity]) -> None:
    _, r = make_pair(ids)
    r.receive_data(encode_clear(PARAMS.cell_size, 1, b"") * 3)
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "empty fragment" in err.detail
