"""The node core over the *real* session layer (X-Wing handshake, AEAD cells), in memory.

``SessionFactory`` from :mod:`aegis_hidden.session.twisted` runs end to end over
``MemoryTransportProvider`` (no Tor): this is how the core plugs into real sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import IdentityRecord, NodeIdentity, RecordKind, sign_record
from aegis_hidden.node import DeliveryState, DialFailed, NodeCore, PeerRevoked
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.session.twisted import SessionFactory
from aegis_hidden.testing import result_of
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity

NOW = 1_800_000_000.0
PORT = Config().tor.onion_virtual_port


class RealNode:
    def __init__(self, identity: NodeIdentity, provider: MemoryTransportProvider, clock: Clock,
                 db_path: Path) -> None:
        self.identity = identity
        self.provider = provider
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.db = InlineSQLite(str(db_path))
        self.core = NodeCore(Config(), identity, str(db_path.parent), bus, clock, db=self.db,
                             messenger_options={"retry_base": 1.0, "ack_timeout": 10.0})
        # as tap.py wires it: the sessions check records against the core's cache and pins
        self.sessions = SessionFactory(identity, [provider], Config(), clock,
                                       record_cache=self.core.record_cache,
                                       mldsa_pin=self.core.mldsa_pin)
        provider.listen(identity.onion, PORT, self.sessions.server_factory())
        self.core.attach_session_factory(self.sessions)
        self.core.startService()
        result_of(self.core.when_ready())

    def stop(self) -> None:
        self.provider.servers.pop((self.identity.onion, PORT), None)
        self.core.stopService()
        self.provider.flush()
        result_of(self.db.close())

    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message_received"]


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def run(clock: Clock, provider: MemoryTransportProvider, seconds: int) -> None:
    for _ in range(seconds):
        provider.flush()
        clock.advance(1)
        provider.flush()


def test_send_over_real_sessions_and_survive_receiver_restart(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(identities[0], provider, clock, tmp_path / "a.db")
    b = RealNode(identities[1], provider, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.identity.onion))

    msg_id, _ = result_of(a.core.send(b.identity.onion, {"type": "chat", "data": "over X-Wing"}))
    run(clock, provider, 2)
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    (got,) = b.received()
    assert got["peer"] == a.identity.onion and got["message"]["data"] == "over X-Wing"
    # B learnt A from the verified identity record the handshake carried
    assert b.core.store.require(a.identity.onion).record == a.identity.record.to_bytes()

    # stop B, send, restart B: the message arrives exactly once
    b.stop()
    run(clock, provider, 1)
    second, _ = result_of(a.core.send(b.identity.onion, {"type": "chat", "data": "later"}))
    run(clock, provider, 20)
    assert a.core.messenger.state(second) is not DeliveryState.ACKNOWLEDGED
    b2 = RealNode(identities[1], provider, clock, tmp_path / "b.db")
    run(clock, provider, 400)
    assert a.core.messenger.state(second) is DeliveryState.ACKNOWLEDGED
    assert [e["message"]["data"] for e in b2.received()] == ["later"]
    assert a.core.messenger.outbox_size() == 0


def test_request_response_over_real_sessions(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(identities[0], provider, clock, tmp_path / "a.db")
    RealNode(identities[1], provider, clock, tmp_path / "b.db")
    result_of(a.core.store.add(identities[1].onion))
    d = Deferred.fromCoroutine(a.core.messenger.request(identities[1].onion,
                                                        {"type": "ping", "data": 42}))
    run(clock, provider, 3)
    assert result_of(d) == {"type": "pong", "data": 42}


def test_handshake_refuses_a_changed_ml_dsa_key_and_the_node_reports_it(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """Item 1: first contact pins b's ML-DSA key; a record with another key (Ed25519
    forged, say) fails the handshake itself, and the node reports it."""
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(identities[0], provider, clock, tmp_path / "a.db")
    b = RealNode(identities[1], provider, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.identity.onion))
    d = Deferred.fromCoroutine(a.core.messenger.request(b.identity.onion, {"type": "ping"}))
    run(clock, provider, 3)
    result_of(d)
    assert a.core.mldsa_pin(b.identity.onion) == b.identity.record.mldsa_public
    assert b.core.mldsa_pin(a.identity.onion) == a.identity.record.mldsa_public
    # the record pushes went both ways, over the session, without reaching the application
    assert a.core.metrics.counters["records_received"] == 1
    assert b.core.metrics.counters["records_received"] == 1
    assert [e["message"]["type"] for e in b.received()] == ["ping"]
    b.stop()
    forged = memory_identity(NOW, seed=identities[1].master_seed, sequence=2)
    assert forged.onion == b.identity.onion and forged.mldsa_public != b.identity.mldsa_public
    RealNode(forged, provider, clock, tmp_path / "forged.db")
    with pytest.raises(DialFailed):
        result_of(a.core.pool.get(b.identity.onion))
    assert a.core.metrics.counters["mldsa_pin_mismatches"] == 1
    assert [e["peer"] for e in a.events if e["type"] == "network_error"
            and e["error"] == "ML-DSA key mismatch"] == [b.identity.onion]
    assert a.core.mldsa_pin(b.identity.onion) == b.identity.record.mldsa_public


def test_session_layer_counters_show_in_node_metrics(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(NOW)
    a = RealNode(memory_identity(NOW), MemoryTransportProvider(), clock, tmp_path / "a.db")
    a.sessions.handshakes_rate_limited = 3
    text = a.core.metrics.render()
    assert "aegis_handshakes_rate_limited 3" in text
    assert "aegis_revoked_refused_handshakes 0" in text


def test_a_revoked_node_serves_its_revocation_over_real_sessions(tmp_path: Path) -> None:
    """Item 2: whoever dials a revoked node (still running) gets the revocation, keeps
    it for good, and refuses the onion from then on, in the handshake too."""
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a = RealNode(memory_identity(NOW), provider, clock, tmp_path / "a.db")
    b_identity = memory_identity(NOW)
    b = RealNode(b_identity, provider, clock, tmp_path / "b.db")
    revocation = sign_record(IdentityRecord(
        kind=RecordKind.REVOCATION, ed25519_public=b_identity.ed25519_public,
        sequence=b_identity.record.sequence + 1, created=int(NOW), expires=0,
        mldsa_public=b_identity.mldsa_public, reason="retired"),
        b_identity.master, b_identity.mldsa)
    b.core.records.revoke(revocation)
    result_of(a.core.store.add(b_identity.onion))
    Deferred.fromCoroutine(a.core.pool._get(b_identity.onion)).addErrback(lambda f: None)
    run(clock, provider, 2)
    assert a.core.record_cache.is_revoked(b_identity.onion)
    assert not a.core.pool.connected(b_identity.onion)
    with pytest.raises(PeerRevoked):
        result_of(a.core.pool.get(b_identity.onion))
    # even dialled directly, the session layer refuses the revoked onion in the handshake
    failed: list[Any] = []
    a.sessions.connect(b_identity.onion).addErrback(failed.append)
    run(clock, provider, 2)
    assert failed and "revoked" in str(failed[0].value).lower()
