"""Pin refusals are a typed signal on both sides: the accepting node reports them too
(network_error + mldsa_pin_mismatches), and nothing matches error text."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.node import DialFailed
from aegis_hidden.session import CloseReason, HandshakeError, PinRefused, SessionError
from aegis_hidden.session._twisted import HandshakeRefusal, is_pin_refusal
from aegis_hidden.session.twisted import SessionFactory
from aegis_hidden.testing import result_of
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity
from tests.unit.test_messaging_sessions import NOW, PORT, RealNode, run


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def test_is_pin_refusal_is_typed_not_textual() -> None:
    def handshake() -> None:
        raise PinRefused(CloseReason.WRONG_IDENTITY, "anything")

    with pytest.raises(HandshakeError) as info:
        handshake()
    assert is_pin_refusal(info.value)
    # the old text match would have taken this one for a pin refusal
    assert not is_pin_refusal(SessionError(CloseReason.WRONG_IDENTITY, "not the pinned one"))
    assert not is_pin_refusal(ValueError("x"))


def test_the_accepting_node_reports_a_changed_ml_dsa_key(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(identities[0], provider, clock, tmp_path / "a.db")
    b = RealNode(identities[1], provider, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.identity.onion))
    result_of(a.core.pool.get(b.identity.onion))
    run(clock, provider, 3)
    assert b.core.mldsa_pin(a.identity.onion) == a.identity.record.mldsa_public
    refusals: list[HandshakeRefusal] = []
    b.sessions.on_handshake_refused(refusals.append)
    a.stop()
    # a's onion (same Ed25519 master key) comes back with another ML-DSA key and dials b
    forged = memory_identity(NOW, seed=identities[0].master_seed, sequence=2)
    assert forged.onion == a.identity.onion and forged.mldsa_public != a.identity.mldsa_public
    f = RealNode(forged, provider, clock, tmp_path / "forged.db")
    result_of(f.core.store.add(b.identity.onion))
    with pytest.raises(DialFailed):
        result_of(f.core.pool.get(b.identity.onion))
    run(clock, provider, 2)
    (refusal,) = [r for r in refusals if r.incoming]
    assert refusal.pin_mismatch and refusal.peer == a.identity.onion
    assert refusal.reason is CloseReason.WRONG_IDENTITY
    assert b.sessions.pin_refusals == 1
    assert b.sessions.handshake_refusals[CloseReason.WRONG_IDENTITY] == 1
    assert b.core.metrics.counters["mldsa_pin_mismatches"] == 1
    assert [e["peer"] for e in b.events if e["type"] == "network_error"
            and e["error"] == "ML-DSA key mismatch"] == [a.identity.onion]
    assert b.core.mldsa_pin(a.identity.onion) == a.identity.record.mldsa_public  # kept


def test_other_refusals_are_counted_by_reason_but_not_as_pin_mismatches(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(identities[0], provider, clock, tmp_path / "a.db")
    refusals: list[HandshakeRefusal] = []
    a.sessions.on_handshake_refused(refusals.append)
    # another node answers at b's onion: its handshake fails, for another reason
    other = SessionFactory(memory_identity(NOW), [provider], Config(), clock)
    provider.listen(identities[1].onion, PORT, other.server_factory())
    result_of(a.core.store.add(identities[1].onion))
    with pytest.raises(DialFailed):
        result_of(a.core.pool.get(identities[1].onion))
    run(clock, provider, 2)
    assert refusals and not any(r.pin_mismatch for r in refusals)
    assert sum(a.sessions.handshake_refusals.values()) == len(refusals)
    assert all(not r.incoming and r.peer == identities[1].onion for r in refusals)
    assert a.core.metrics.counters["mldsa_pin_mismatches"] == 0
