"""The sans-I/O handshake (docs/protocol.md §2) and the established session (§3, §4)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import (
    Closed,
    CloseReason,
    Established,
    HandshakeError,
    IdentityKeys,
    MessageReceived,
    ReplayCache,
    Session,
    SessionError,
    SessionParams,
    State,
    b32_address_of_destination,
)
from aegis_hidden.session._handshake import Handshake
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
        "carol": memory_identity(NOW),
        "dave": memory_identity(NOW),
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


class MemoSigner:
    """ML-DSA-65 signing that gives the same signature for the same message.

    The library's ML-DSA signing is randomised; tests that rebuild a session to
    replay recorded flights into it need the rebuilt side to sign identically.
    """

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

        self._key = MLDSA65PrivateKey.from_seed_bytes(seed)
        self._memo: dict[bytes, bytes] = {}

    def sign(self, data: bytes) -> bytes:
        if data not in self._memo:
            self._memo[data] = self._key.sign(data)
        return self._memo[data]


_SIGNERS: dict[bytes, MemoSigner] = {}


def memo_keys(ident: NodeIdentity) -> IdentityKeys:
    signer = _SIGNERS.setdefault(ident.mldsa_seed, MemoSigner(ident.mldsa_seed))
    return IdentityKeys(ident.master, signer)


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
                peer_address=dial or ids[responder].onion, random=det_random(b"i" + seed),
                keys=memo_keys(ids[initiator]))
    r = responder_cls(ids[responder], r_params, initiator=False, clock=clock,
                      random=det_random(b"r" + seed), replay_cache=replay_cache,
                      encapsulate=encapsulate or xwing.encapsulate, keys=memo_keys(ids[responder]))
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


def _session_with(handshake: type[Handshake]) -> type[Session]:
    """A Session class that runs ``handshake`` (a Handshake that misbehaves)."""
    return type(f"SessionWith{handshake.__name__}", (Session,), {"handshake_class": handshake})


class _RecordsAuthHandshake(Handshake):
    """Keeps the Auth messages it sends."""

    sent: list[handshake_pb2.Auth]

    def _make_auth(self, *, responder: bool) -> bytes:
        data = super()._make_auth(responder=responder)
        auth = handshake_pb2.Auth()
        auth.ParseFromString(data)
        self.__dict__.setdefault("sent", []).append(auth)
        return data


class _RecordsAuth(Session):
    handshake_class = _RecordsAuthHandshake

    @property
    def sent(self) -> list[handshake_pb2.Auth]:
        return list(self._hs.__dict__.get("sent", []))


def test_both_roles_always_send_and_verify_mldsa_signatures(ids: dict[str, NodeIdentity]) -> None:
    clock = Clock()
    i = _RecordsAuth(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=ids["bob"].onion)
    r = _RecordsAuth(ids["bob"], PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    assert i.established and r.established
    for s in (i, r):
        (auth,) = s.sent
        assert len(auth.mldsa_signature) == 3309 and len(auth.ed25519_signature) == 64
        assert auth.i2p_binding == b""


class _NoMLDSAHandshake(Handshake):
    """Sends an Auth without its ML-DSA-65 signature (an Ed25519-only forger)."""

    def _make_auth(self, *, responder: bool) -> bytes:
        data = super()._make_auth(responder=responder)
        auth = handshake_pb2.Auth()
        auth.ParseFromString(data)
        auth.mldsa_signature = b""
        return auth.SerializeToString(deterministic=True)


_NoMLDSA = _session_with(_NoMLDSAHandshake)


@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_auth_without_mldsa_signature_is_refused(ids: dict[str, NodeIdentity], side: str) -> None:
    clock = Clock()
    i = (_NoMLDSA if side == "initiator" else Session)(
        ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=ids["bob"].onion)
    r = (_NoMLDSA if side == "responder" else Session)(ids["bob"], PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    victim = i if side == "responder" else r
    err = failure(victim)
    assert err.reason is CloseReason.AUTH_FAILED and "ML-DSA-65" in err.detail
    assert not i.established and not r.established


def _without_mldsa(ident: NodeIdentity) -> NodeIdentity:
    """``ident`` with a record that has no ML-DSA key, validly signed by Ed25519 alone:
    what someone who broke only the Ed25519 key could make."""
    import dataclasses

    rec = dataclasses.replace(ident.record, mldsa_public=b"", mldsa_signature=b"")
    rec = dataclasses.replace(rec, signature=ident.master.sign(rec.signed_message()))
    return dataclasses.replace(ident, record=rec)


@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_record_without_mldsa_key_is_wrong_identity(ids: dict[str, NodeIdentity], side: str) -> None:
    stripped = {**ids, "x": _without_mldsa(ids["carol"])}
    a, b = ("alice", "x") if side == "responder" else ("x", "bob")
    i, r = make_pair(stripped, a, b)
    handshake(i, r)
    victim = i if side == "responder" else r
    err = failure(victim)
    assert err.reason is CloseReason.WRONG_IDENTITY and "ML-DSA" in err.detail
    assert not i.established and not r.established


def test_chacha20_poly1305_sessions(ids: dict[str, NodeIdentity]) -> None:
    p = SessionParams(encryption="ChaCha20-Poly1305")
    i, r = make_pair(ids, i_params=p, r_params=p)
    handshake(i, r)
    assert i.established and r.established
    i.send_message(b"x")
    r.receive_data(i.data_to_send())
    assert r.events()[-1] == MessageReceived(b"x")


def test_i2p_address_is_proven_through_the_binding(ids: dict[str, NodeIdentity]) -> None:
    ivy = ids["ivy"]
    assert ivy.i2p_binding is not None
    b32 = ivy.i2p_binding.b32
    assert b32 == b32_address_of_destination(ivy.i2p_binding.destination)
    clock = Clock()
    i = _RecordsAuth(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=b32)
    r = _RecordsAuth(ivy, PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    assert i.established and r.established
    assert i.events()[0] == Established(b32, ivy.record, 1)
    assert r.local_address == b32
    assert i.peer_i2p_binding == ivy.i2p_binding
    assert r.sent[0].i2p_binding == ivy.i2p_binding.to_bytes()
    assert i.sent[0].i2p_binding == b""  # the initiator never sends one


def test_i2p_binding_is_never_sent_to_an_onion_dialer(ids: dict[str, NodeIdentity]) -> None:
    # Whoever knows only the onion must not learn the I2P destination.
    clock = Clock()
    i = Session(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=ids["ivy"].onion)
    r = _RecordsAuth(ids["ivy"], PARAMS, initiator=False, clock=clock)
    wire = handshake(i, r)
    assert i.established and r.established
    assert r.sent[0].i2p_binding == b"" and i.peer_i2p_binding is None
    assert ids["ivy"].i2p_binding is not None
    destination = ids["ivy"].i2p_binding.destination.encode()
    assert all(destination not in data for _, data in wire.flights)
    assert r.local_address == ids["ivy"].onion


class _SendsBinding(Handshake):
    """Puts ``binding`` into its Auth whatever address was dialed."""

    binding = b""

    def _make_auth(self, *, responder: bool) -> bytes:
        data = super()._make_auth(responder=responder)
        auth = handshake_pb2.Auth()
        auth.ParseFromString(data)
        auth.i2p_binding = self.binding
        return auth.SerializeToString(deterministic=True)


def _binding_of(ident: NodeIdentity) -> bytes:
    assert ident.i2p_binding is not None
    return ident.i2p_binding.to_bytes()


def test_unasked_i2p_binding_is_refused(ids: dict[str, NodeIdentity]) -> None:
    cls = _session_with(type("B", (_SendsBinding,), {"binding": _binding_of(ids["ivy"])}))
    clock = Clock()
    # Responder dialed at its onion, volunteering the binding.
    i = Session(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=ids["ivy"].onion)
    r = cls(ids["ivy"], PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.PROTOCOL_ERROR and "I2P binding" in err.detail
    # An initiator sending one.
    i = cls(ids["ivy"], PARAMS, initiator=True, clock=clock, peer_address=ids["bob"].onion)
    r = Session(ids["bob"], PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    err = failure(r)
    assert err.reason is CloseReason.PROTOCOL_ERROR and "I2P binding" in err.detail


def test_wrong_or_missing_i2p_binding_is_wrong_identity(ids: dict[str, NodeIdentity]) -> None:
    ivy = ids["ivy"]
    assert ivy.i2p_binding is not None
    b32 = ivy.i2p_binding.b32
    from aegis_hidden.identity import I2PBinding

    other = I2PBinding(ivy.i2p_binding.destination, bytes(32))  # wrong salt
    for binding, words in ((b"", "binding"), (other.to_bytes(), "does not match"),
                           (b"\xff" * 600, "binding")):
        cls = _session_with(type("B", (_SendsBinding,), {"binding": binding}))
        clock = Clock()
        i = Session(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=b32)
        r = cls(ivy, PARAMS, initiator=False, clock=clock)
        handshake(i, r)
        err = failure(i)
        assert err.reason is CloseReason.WRONG_IDENTITY and words in err.detail, err.detail
        assert i.peer_i2p_binding is None


def test_binding_must_prove_the_dialed_b32(ids: dict[str, NodeIdentity]) -> None:
    # A node whose record commits to destination D, dialed at another b32 that it
    # also claims (impostor), cannot pass: the binding proves b32(D) only.
    ivy, bob = ids["ivy"], ids["bob"]
    assert ivy.i2p_binding is not None
    other_b32 = "a" * 52 + ".b32.i2p"
    i, r = make_pair(ids, "alice", "ivy", dial=other_b32, responder_cls=_impostor(other_b32))
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and other_b32 in err.detail
    assert bob  # (fixture used)


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


class _Impostor(Handshake):
    """A responder that answers for an address it does not own (Bob's)."""

    claimed = ""

    def _own_addresses(self) -> list[str]:
        return [self.claimed]


def _impostor(claimed: str) -> type[Session]:
    return _session_with(type("Impostor", (_Impostor,), {"claimed": claimed}))


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
    # Rebuilding gives byte-identical flights (deterministic randomness, Ed25519,
    # ML-DSA-65 signatures replayed), so a recorded flight fits a rebuilt session.
    i2, r2 = build()
    assert [data for _, data in handshake(i2, r2).flights] == flights
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
def test_truncated_at_sampled_byte_positions(ids: dict[str, NodeIdentity], flight: int) -> None:
    # Every byte of the first 64 and around every cell boundary, every 41st elsewhere.
    flights, build = _recorded(ids, "carol", "dave")
    data = flights[flight]
    n = PARAMS.cell_size
    cuts = set(range(min(len(data), 64))) | set(range(0, len(data), 41))
    cuts |= {c + k for c in range(0, len(data), n) for k in range(-3, 4) if 0 <= c + k < len(data)}
    for cut in sorted(cuts):
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
def test_corrupted_at_sampled_byte_positions(ids: dict[str, NodeIdentity], flight: int) -> None:
    # The first 64 bytes, every cell header and tag, every 29th byte elsewhere.
    flights, build = _recorded(ids, "carol", "dave")
    size, n = len(flights[flight]), PARAMS.cell_size
    positions = set(range(min(size, 64))) | set(range(0, size, 29))
    positions |= {c + k for c in range(0, size, n) for k in (*range(8), *range(n - 16, n))}
    for pos in sorted(positions):
        i, r = _corrupt_and_finish(build, flights, flight, pos)
        if flight == 3:
            # The last flight (Finished) only reaches the initiator: it must refuse it.
            assert not i.established and failure(i).reason is not None, pos
        else:
            _assert_failed(i, r, f"flight {flight} byte {pos}")


@pytest.mark.parametrize("flight", [0, 1, 2, 3])
def test_corrupted_hybrid_flights_sampled(ids: dict[str, NodeIdentity], flight: int) -> None:
    # Another pair (ML-DSA signatures replayed by MemoSigner, so every flight can be
    # replayed into a rebuilt session): every 37th byte plus every cell header.
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
    from aegis_hidden.wire import CellType, encode_inner

    i, r, _ = _established(ids)
    data = i.seal_queued(0, cover=1)  # cover cells come from a cell scheduler's slots
    i.send_message(b"real")
    data += i.data_to_send()
    assert i._tx is not None
    data += i._tx.seal(encode_inner(PARAMS.cell_size, CellType.PADDING, 0, b""))
    assert len(data) == 3 * PARAMS.cell_size
    r.receive_data(data)
    assert r.events() == [MessageReceived(b"real")]


def test_multi_cell_messages_with_cover_cells_and_rekeys_between_fragments(
        ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, encode_inner

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
    wire = i.seal_queued(1, cover=1)  # the DATA cell, then a cover cell
    assert i._tx is not None
    wire += i._tx.seal(encode_inner(n, CellType.PADDING, 0, b""))
    i.send_message(big[: n * 2])
    r.receive_data(wire + i.data_to_send())
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
    room = PARAMS.cell_size - 20
    first = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, int(Flags.MORE), b"x" * room))
    second = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, int(Flags.ZSTD), b"y" * 10))
    r.receive_data(first + second)
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "compression flag" in err.detail


def test_revocation_record_is_not_an_identity(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import IdentityRecord, RecordKind, sign_record

    dave = ids["dave"]
    revoked = sign_record(IdentityRecord(kind=RecordKind.REVOCATION,
                                         ed25519_public=dave.ed25519_public, sequence=2,
                                         created=int(NOW), expires=0, reason="stolen",
                                         mldsa_public=dave.mldsa_public),
                          dave.master, dave.mldsa)
    gone = NodeIdentity(dave.directory, dave.master_seed, dave.xwing_secret, dave.mldsa_seed, revoked)
    i, r = make_pair({**ids, "gone": gone}, "alice", "gone")
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.REVOKED and "revocation" in err.detail


# -- canonical addresses, no exception escapes -------------------------------------------

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


class _FoldedAddress(Handshake):
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
    cls = _session_with(type("Folded", (_FoldedAddress,), {"swap": swap}))
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

    monkeypatch.setattr(r._hs, "_on_client_hello", boom)
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

    def boom(*args: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(r._reader, "_other", boom)  # the reader's path for non-DATA cells
    with capturedLogs():
        r.receive_data(i.seal_queued(0, cover=1))
    assert failure(r).reason is CloseReason.PROTOCOL_ERROR
    i.receive_data(r.data_to_send())  # the peer is told, in a sealed CLOSE
    assert failure(i).reason is CloseReason.PROTOCOL_ERROR and i.events()[-1].by_peer  # type: ignore[union-attr]


# -- fragment limits -------------------------------------------------------------------

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


# -- ML-DSA pinning and the shared record cache ------------------------------------------

def _rotated(ident: NodeIdentity, sequence: int = 2, proof_by: bytes | None = None) -> NodeIdentity:
    """``ident`` after an ML-DSA-65 rotation, the proof signed by ``proof_by`` (seed;
    default: the identity's own previous key)."""
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

    from aegis_hidden.identity import IdentityRecord, make_rotation_proof, sign_record

    new_seed = os.urandom(32)
    new = MLDSA65PrivateKey.from_seed_bytes(new_seed)
    new_pub = new.public_key().public_bytes_raw()
    previous = MLDSA65PrivateKey.from_seed_bytes(proof_by or ident.mldsa_seed)
    rec = ident.record
    record = sign_record(IdentityRecord(
        kind=rec.kind, ed25519_public=rec.ed25519_public, sequence=sequence, created=rec.created,
        expires=rec.expires, xwing_public=rec.xwing_public, mldsa_public=new_pub,
        i2p_commitment=rec.i2p_commitment,
        rotation_proof=make_rotation_proof(previous, rec.ed25519_public, new_pub, sequence)),
        ident.master, new)
    return NodeIdentity(ident.directory, ident.master_seed, ident.xwing_secret, new_seed, record,
                        ident.i2p_binding)


def _pinned_pair(ids: dict[str, NodeIdentity], a: str, b: str,
                 pins: dict[str, bytes], **kw: object) -> tuple[Session, Session]:
    clock = Clock()
    i = Session(ids[a], PARAMS, initiator=True, clock=clock, peer_address=ids[b].onion,
                mldsa_pin=pins.get, **kw)  # type: ignore[arg-type]
    r = Session(ids[b], PARAMS, initiator=False, clock=clock, mldsa_pin=pins.get,
                **kw)  # type: ignore[arg-type]
    return i, r


def test_pinned_mldsa_key_is_required(ids: dict[str, NodeIdentity]) -> None:
    alice, bob, mallory = ids["alice"], ids["bob"], ids["mallory"]
    # The pinned keys: the handshake passes.
    i, r = _pinned_pair(ids, "alice", "bob", {bob.onion: bob.mldsa_public,
                                              alice.onion: alice.mldsa_public})
    handshake(i, r)
    assert i.established and r.established
    # The initiator pinned another key for Bob: a record with a new key and no
    # rotation proof (what an Ed25519-only forger makes) is refused.
    i, r = _pinned_pair(ids, "alice", "bob", {bob.onion: mallory.mldsa_public})
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "pinned" in err.detail
    # Same on the responder's side, for the initiator's key.
    i, r = _pinned_pair(ids, "alice", "bob", {alice.onion: mallory.mldsa_public})
    handshake(i, r)
    err = failure(r)
    assert err.reason is CloseReason.WRONG_IDENTITY and "pinned" in err.detail


def test_mldsa_rotation_signed_by_the_pinned_key_is_accepted(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import RecordCache

    bob = ids["bob"]
    ids2 = {**ids, "bob2": _rotated(bob), "forged": _rotated(bob, proof_by=ids["mallory"].mldsa_seed)}
    i, r = _pinned_pair(ids2, "alice", "bob2", {bob.onion: bob.mldsa_public})
    handshake(i, r)
    assert i.established and r.established
    # A rotation "proof" by some other key: refused, and never cached.
    cache = RecordCache()
    i, r = _pinned_pair(ids2, "alice", "forged", {bob.onion: bob.mldsa_public}, record_cache=cache)
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "pinned" in err.detail
    assert cache.get(bob.onion) is None


def test_record_rollback_is_refused(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import RecordCache

    bob = ids["bob"]
    cache = RecordCache()
    cache.accept(_rotated(bob, sequence=5).record, bob.onion, NOW)
    clock = Clock()
    i = Session(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=bob.onion,
                record_cache=cache)
    r = Session(bob, PARAMS, initiator=False, clock=clock)  # still sends its sequence-1 record
    handshake(i, r)
    err = failure(i)
    assert err.reason is CloseReason.WRONG_IDENTITY and "lower" in err.detail


def test_revoked_identity_is_refused_and_revocations_are_learnt(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import IdentityRecord, RecordCache, RecordKind, sign_record

    dave, alice = ids["dave"], ids["alice"]
    revocation = sign_record(IdentityRecord(
        kind=RecordKind.REVOCATION, ed25519_public=dave.ed25519_public, sequence=2,
        created=int(NOW), expires=0, reason="key lost", mldsa_public=dave.mldsa_public),
        dave.master, dave.mldsa)
    # A cache that knows the revocation refuses the identity, both roles.
    cache = RecordCache()
    cache.accept(revocation, dave.onion, NOW)
    clock = Clock()
    i = Session(alice, PARAMS, initiator=True, clock=clock, peer_address=dave.onion, record_cache=cache)
    r = Session(dave, PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    assert failure(i).reason is CloseReason.REVOKED
    i = Session(dave, PARAMS, initiator=True, clock=clock, peer_address=alice.onion)
    r = Session(alice, PARAMS, initiator=False, clock=clock, record_cache=cache)
    handshake(i, r)
    assert failure(r).reason is CloseReason.REVOKED
    # A node that presents its own revocation: refused, and the cache keeps it for good.
    cache2 = RecordCache()
    gone = NodeIdentity(dave.directory, dave.master_seed, dave.xwing_secret, dave.mldsa_seed, revocation)
    i = Session(alice, PARAMS, initiator=True, clock=clock, peer_address=dave.onion, record_cache=cache2)
    r = Session(gone, PARAMS, initiator=False, clock=clock)
    handshake(i, r)
    assert failure(i).reason is CloseReason.REVOKED
    assert cache2.is_revoked(dave.onion)


def test_verified_records_go_through_the_cache(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.identity import RecordCache

    ci, cr = RecordCache(), RecordCache()
    clock = Clock()
    i = Session(ids["alice"], PARAMS, initiator=True, clock=clock, peer_address=ids["bob"].onion,
                record_cache=ci)
    r = Session(ids["bob"], PARAMS, initiator=False, clock=clock, record_cache=cr)
    handshake(i, r)
    assert i.established and r.established
    assert ci.get(ids["bob"].onion) == ids["bob"].record
    assert cr.get(ids["alice"].onion) == ids["alice"].record


def test_unknown_close_reason_maps_to_protocol_error(ids: dict[str, NodeIdentity]) -> None:
    i, r, _ = _established(ids)
    assert i._tx is not None
    from aegis_hidden.wire import CellType, encode_inner

    body = handshake_pb2.Close(version=1, reason=4242, detail="?").SerializeToString()
    r.receive_data(i._tx.seal(encode_inner(PARAMS.cell_size, CellType.CLOSE, 0, body)))
    assert r.events() == [Closed(CloseReason.PROTOCOL_ERROR, "peer closed: ?", True)]


# -- rules the specification states, enforced --------------------------------------------

def test_non_final_fragments_must_fill_their_cell(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, Flags, encode_inner

    for flags in (int(Flags.MORE), int(Flags.MORE | Flags.ZSTD)):
        i, r, _ = _established(ids)
        assert i._tx is not None
        short = i._tx.seal(encode_inner(PARAMS.cell_size, CellType.DATA, flags, b"x" * 100))
        r.receive_data(short)
        err = failure(r)
        assert err.reason is CloseReason.BAD_CELL and "must fill" in err.detail
    # Clear handshake cells too.
    _, r = make_pair(ids)
    r.receive_data(encode_clear(PARAMS.cell_size, 1, b"x" * 10))
    err = failure(r)
    assert err.reason is CloseReason.BAD_CELL and "must fill" in err.detail


@pytest.mark.parametrize(("kind", "flags", "body"), [
    ("CLOSE", 1, None), ("COVER", 1, b""), ("PADDING", 2, b""), ("REKEY", 1, b""),
    ("COVER", 0, b"x"), ("REKEY", 0, b"x"), ("PADDING", 0, b"\x01"),
])
def test_control_cells_carry_no_flags_and_no_body(ids: dict[str, NodeIdentity], kind: str,
                                                  flags: int, body: bytes | None) -> None:
    from aegis_hidden.wire import CellType, encode_inner

    i, r, _ = _established(ids)
    assert i._tx is not None
    if body is None:
        body = handshake_pb2.Close(version=1, reason=0, detail="bye").SerializeToString()
    r.receive_data(i._tx.seal(encode_inner(PARAMS.cell_size, CellType[kind], flags, body)))
    err = failure(r)
    assert err.reason is CloseReason.PROTOCOL_ERROR and kind in err.detail


def test_close_fits_one_cell_whatever_the_detail(ids: dict[str, NodeIdentity]) -> None:
    small = SessionParams(cell_size=256)
    i, r, _ = _established(ids, i_params=small, r_params=small)
    i.close(CloseReason.NORMAL, "\u00e9" * 500)  # 1000 UTF-8 bytes asked for
    data = i.data_to_send()
    assert len(data) == 256
    r.receive_data(data)
    (ev,) = r.events()
    assert isinstance(ev, Closed) and ev.reason is CloseReason.NORMAL and ev.by_peer
    assert 0 < len(ev.detail) < 200


def test_close_of_another_version_or_a_local_only_reason(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, encode_inner

    i, r, _ = _established(ids)
    assert i._tx is not None
    body = handshake_pb2.Close(version=2, reason=0, detail="x").SerializeToString()
    r.receive_data(i._tx.seal(encode_inner(PARAMS.cell_size, CellType.CLOSE, 0, body)))
    assert failure(r).reason is CloseReason.PROTOCOL_ERROR
    i, r, _ = _established(ids)
    assert i._tx is not None
    body = handshake_pb2.Close(version=1, reason=int(CloseReason.CONNECTION_LOST)).SerializeToString()
    r.receive_data(i._tx.seal(encode_inner(PARAMS.cell_size, CellType.CLOSE, 0, body)))
    assert failure(r).reason is CloseReason.PROTOCOL_ERROR


def test_cover_cell_during_the_handshake_is_refused(ids: dict[str, NodeIdentity]) -> None:
    from aegis_hidden.wire import CellType, encode_inner

    i, r = make_pair(ids)
    i.start()
    r.receive_data(i.data_to_send())
    assert r.state is State.WAIT_CLIENT_AUTH and r._rx is not None
    # A COVER cell sealed with the right handshake key, before ClientAuth.
    from aegis_hidden.session._aead import Direction

    rx = r._rx
    sealer = Direction(rx.aead_id, rx._secret, rx._label, NOW)
    r.receive_data(sealer.seal(encode_inner(PARAMS.cell_size, CellType.COVER, 0, b"")))
    err = failure(r)
    assert err.reason is CloseReason.PROTOCOL_ERROR and "COVER" in err.detail
