"""Whatever bytes a peer sends, a session only ever ends with a typed reason.

Every state of both roles is fuzzed three ways: arbitrary bytes; well-framed
cells (clear cells before the keys exist, cells sealed with the session's own
current keys after) with arbitrary type, flags and body; and well-framed cells
carrying a protobuf message of the kind the state expects, with arbitrary
field values (odd addresses, records, signatures, versions). ``receive_data``
must never raise, and the session must either stay open (not established
unless it already was) or be closed with a :class:`CloseReason`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import Closed, CloseReason, Session, SessionParams, State
from aegis_hidden.session._aead import Direction
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import (
    CellType,
    Flags,
    clear_body_capacity,
    encode_clear,
    encode_inner,
    fragment,
    handshake_pb2,
    inner_body_capacity,
)

NOW = 1_800_000_000.0
N = 256
P = SessionParams(cell_size=N)
ROOM = inner_body_capacity(N)

#: (role of the session under test, the state it is driven to before fuzzing)
STAGES = [
    ("responder", State.WAIT_CLIENT_HELLO),
    ("initiator", State.WAIT_SERVER_HELLO),
    ("initiator", State.WAIT_SERVER_AUTH),
    ("responder", State.WAIT_CLIENT_AUTH),
    ("initiator", State.WAIT_FINISHED),
    ("initiator", State.ESTABLISHED),
    ("responder", State.ESTABLISHED),
    # An initiator that dialed the responder's .b32.i2p (the I2P binding path).
    ("initiator-i2p", State.WAIT_SERVER_AUTH),
    ("initiator-i2p", State.ESTABLISHED),
]
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pair_ids() -> tuple[NodeIdentity, NodeIdentity]:
    import base64
    import os

    dest = base64.b64encode(os.urandom(391), altchars=b"-~").decode()
    return memory_identity(NOW), memory_identity(NOW, i2p_destination=dest)


class _Target:
    """A session driven to one stage, plus a sealer in step with its receive keys."""

    def __init__(self, ids: tuple[NodeIdentity, NodeIdentity], role: str, state: State) -> None:
        dial = ids[1].onion
        if role == "initiator-i2p":
            assert ids[1].i2p_binding is not None
            dial = ids[1].i2p_binding.b32
        i = Session(ids[0], P, initiator=True, clock=lambda: NOW, peer_address=dial)
        r = Session(ids[1], P, initiator=False, clock=lambda: NOW)
        self.session = i if role.startswith("initiator") else r
        self.peer = r if role.startswith("initiator") else i
        i.start()
        pending = {id(i): b"", id(r): b""}
        while self.session.state is not state:
            moved = False
            for src, dst in ((i, r), (r, i)):
                pending[id(dst)] += src.data_to_send()
                # One cell at a time, so the stop is exact (e.g. between ServerHello
                # and ServerAuth, which arrive in one flight).
                while pending[id(dst)] and self.session.state is not state:
                    cell, pending[id(dst)] = pending[id(dst)][:N], pending[id(dst)][N:]
                    dst.receive_data(cell)
                    moved = True
                if self.session.state is state:
                    break
            assert moved, f"handshake stalled before {state}"
        self.session.events()
        self.was_established = self.session.established
        rx = self.session._rx
        self.sealer: Direction | None = None
        if rx is not None and not self.session._in_clear:
            self.sealer = Direction(rx.aead_id, rx._secret, rx._label, NOW)
            self.sealer.count, self.sealer.generation = rx.count, rx.generation

    @property
    def clear(self) -> bool:
        return self.sealer is None

    def cell(self, ctype: int, flags: int, body: bytes) -> bytes:
        """One well-framed cell: clear (HANDSHAKE only) or sealed with the live keys."""
        if self.sealer is None:
            return encode_clear(N, flags & 0xFF, body[:clear_body_capacity(N)])
        cell = self.sealer.seal(encode_inner(N, ctype & 0xFF, flags & 0xFF, body[:ROOM]))
        if ctype == CellType.REKEY:
            self.sealer.rekey(NOW)
        return cell

    def message(self, data: bytes) -> bytes:
        """A whole handshake message, fragmented the way a real peer would send it."""
        room = clear_body_capacity(N) if self.clear else ROOM
        return b"".join(self.cell(int(CellType.HANDSHAKE), f, piece) for f, piece in fragment(data, room))

    def check(self) -> None:
        s = self.session
        events = s.events()
        if s.closed:
            assert s.close_reason is not None and isinstance(s.close_reason.reason, CloseReason)
            assert isinstance(events[-1], Closed)
            assert isinstance(events[-1].reason, CloseReason)
        elif not self.was_established:
            assert s.state is not State.ESTABLISHED
        s.connection_lost()
        assert s.closed and s.close_reason is not None
        assert isinstance(s.close_reason.reason, CloseReason)


CELL_TYPES = st.one_of(st.sampled_from([int(t) for t in CellType]), st.integers(0, 255))
FLAGS = st.one_of(st.sampled_from([0, int(Flags.MORE), int(Flags.ZSTD), 3]), st.integers(0, 255))
CELLS = st.lists(st.tuples(CELL_TYPES, FLAGS, st.binary(max_size=ROOM)), min_size=1, max_size=6)


def _addresses(a: str) -> st.SearchStrategy[str]:
    """The sender's own address, as is and in look-alike forms, or any text."""
    variants = [a, a.upper(), "www." + a, a + ":80", a.replace("k", "\u212a", 1),
                a.replace("s", "\u017f", 1), a.replace("a", "\u0430", 1), a + "."]
    return st.one_of(st.sampled_from(variants), st.text(max_size=80))


def _sized(k: int) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(min_size=k, max_size=k), st.binary(max_size=64))


def _messages(sender: Session) -> dict[str, st.SearchStrategy[Any]]:
    """Each handshake message with arbitrary (often almost right) fields."""
    small = st.integers(0, 4)
    records = st.one_of(st.just(sender.identity.record.to_bytes()), st.binary(max_size=300))
    binding = sender.identity.i2p_binding
    real = binding.to_bytes() if binding is not None else b"\x00" * 600
    bindings = st.one_of(st.just(b""), st.just(real), st.binary(max_size=700),
                         st.builds(lambda k: real[:k] + bytes([real[k] ^ 1]) + real[k + 1:],
                                   st.integers(0, len(real) - 1)))
    return {
        "ClientHello": st.builds(
            handshake_pb2.ClientHello, version=small, versions=st.lists(small, max_size=3),
            cell_size=st.sampled_from([N, 996, 0]), ephemeral_public=_sized(1216),
            nonce=_sized(32), dialed=_sized(32), aead=small),
        "ServerHello": st.builds(handshake_pb2.ServerHello, version=small, ciphertext=_sized(1120),
                                 nonce=_sized(32), aead=small),
        "Auth": st.builds(handshake_pb2.Auth, version=st.one_of(st.just(1), small), record=records,
                          address=_addresses(sender.local_address), ed25519_signature=_sized(64),
                          mldsa_signature=_sized(3309), mac=_sized(32), i2p_binding=bindings),
        "Finished": st.builds(handshake_pb2.Finished, version=small, mac=_sized(32)),
        "Close": st.builds(handshake_pb2.Close, version=small, reason=st.integers(0, 2**32 - 1),
                           detail=st.text(max_size=300)),
    }


#: The message each state waits for (drawn more often than the others).
EXPECTED = {
    State.WAIT_CLIENT_HELLO: "ClientHello",
    State.WAIT_SERVER_HELLO: "ServerHello",
    State.WAIT_SERVER_AUTH: "Auth",
    State.WAIT_CLIENT_AUTH: "Auth",
    State.WAIT_FINISHED: "Finished",
    State.ESTABLISHED: "Close",
}


def _fuzz_tests(role: str, state: State) -> dict[str, Callable[..., None]]:
    """The three fuzz tests for one (role, state); one set per stage below."""

    @FUZZ
    @given(chunks=st.lists(st.binary(max_size=3 * N), max_size=4))
    def arbitrary_bytes(pair_ids: tuple[NodeIdentity, NodeIdentity], chunks: list[bytes]) -> None:
        t = _Target(pair_ids, role, state)
        for chunk in chunks:
            t.session.receive_data(chunk)
        t.check()

    @FUZZ
    @given(cells=CELLS, split=st.integers(1, 2 * N))
    def well_framed_cells(pair_ids: tuple[NodeIdentity, NodeIdentity],
                          cells: list[tuple[int, int, bytes]], split: int) -> None:
        t = _Target(pair_ids, role, state)
        wire = b"".join(t.cell(*c) for c in cells)
        for k in range(0, len(wire), split):
            t.session.receive_data(wire[k:k + split])
        t.check()

    @FUZZ
    @given(data=st.data())
    def well_framed_messages(pair_ids: tuple[NodeIdentity, NodeIdentity], data: st.DataObject) -> None:
        t = _Target(pair_ids, role, state)
        kinds = _messages(t.peer)
        name = data.draw(st.sampled_from([EXPECTED[state]] * 3 + sorted(kinds)))
        msg = data.draw(kinds[name])
        raw = msg.SerializeToString(deterministic=True)
        if state is State.ESTABLISHED:
            # After the handshake a message travels as DATA (delivered), CLOSE, or
            # (out of place) HANDSHAKE.
            kind = data.draw(st.sampled_from([CellType.DATA, CellType.CLOSE, CellType.HANDSHAKE]))
            wire = b"".join(t.cell(int(kind), f, piece) for f, piece in fragment(raw, ROOM))
        else:
            wire = t.message(raw)
        t.session.receive_data(wire)
        t.check()

    @FUZZ
    @given(data=st.data())
    def auth_address_forms(pair_ids: tuple[NodeIdentity, NodeIdentity], data: st.DataObject) -> None:
        # The sender's real record with its address in every odd form (look-alikes
        # that fold to it, upper case, prefixes, any text): refused with a reason.
        t = _Target(pair_ids, role, state)
        address = data.draw(_addresses(t.peer.local_address))
        auth = handshake_pb2.Auth(version=1, record=t.peer.identity.record.to_bytes(),
                                  address=address, ed25519_signature=bytes(64), mac=bytes(32))
        t.session.receive_data(t.message(auth.SerializeToString(deterministic=True)))
        if address != t.peer.local_address:
            assert t.session.closed
        t.check()

    name = f"{role.replace('-', '_')}_{state.name.lower()}"
    tests = {f"test_{name}_arbitrary_bytes": arbitrary_bytes,
             f"test_{name}_well_framed_cells_with_arbitrary_bodies": well_framed_cells,
             f"test_{name}_well_framed_messages_with_arbitrary_fields": well_framed_messages}
    if EXPECTED[state] == "Auth":
        tests[f"test_{name}_auth_address_forms"] = auth_address_forms
    return tests


# One named test per (stage, kind); pytest.mark.parametrize does not mix with
# hypothesis under pytest-twisted here.
for _role, _state in STAGES:
    globals().update(_fuzz_tests(_role, _state))


def test_a_real_close_is_read_in_every_established_role(
        pair_ids: tuple[NodeIdentity, NodeIdentity]) -> None:
    # The fuzz sealer really is in step with the session: a proper CLOSE is understood.
    for role in ("initiator", "responder"):
        t = _Target(pair_ids, role, State.ESTABLISHED)
        body = handshake_pb2.Close(version=1, reason=99, detail="x").SerializeToString()
        t.session.receive_data(t.cell(int(CellType.CLOSE), 0, body))
        (ev,) = t.session.events()
        # An unknown reason number maps to PROTOCOL_ERROR (§5).
        assert ev == Closed(CloseReason.PROTOCOL_ERROR, "peer closed: x", True)


def test_sealer_is_in_step_during_the_handshake(pair_ids: tuple[NodeIdentity, NodeIdentity]) -> None:
    # A sealed handshake message that does not parse is PROTOCOL_ERROR, not TAMPERED:
    # so the fuzz cells above really get past the AEAD.
    t = _Target(pair_ids, "responder", State.WAIT_CLIENT_AUTH)
    t.session.receive_data(t.message(os.urandom(8) + b"\xff" * 8))
    assert t.session.close_reason is not None
    assert t.session.close_reason.reason is not CloseReason.TAMPERED
