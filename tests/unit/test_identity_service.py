"""The one owner of the identity (IdentityService): refresh on the clock, binding
requests from transports, subscribers, and no layer keeping a stale copy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from aegis_hidden import identity as ident
from aegis_hidden.config import Config, load_config
from aegis_hidden.events import EventBus
from aegis_hidden.i2p._provider import I2PProvider
from aegis_hidden.identity import NodeIdentity, verify_binding, verify_record
from aegis_hidden.interfaces import IIdentityService
from aegis_hidden.node import IdentityService, NodeCore, NodeService
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.session.twisted import PeerLink, SessionFactory
from aegis_hidden.testing import FakeNetwork, FakeSAMBridge, memory_identity, result_of
from aegis_hidden.testing._sessions import MemoryTransportProvider

START = 1_700_000_000.0
DAY = 86400.0
PORT = 7701


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(START)
    return c


def core_of(net: FakeNetwork, clock: Clock, path: Path, identity: NodeIdentity | IdentityService,
            address: str, record: object) -> NodeCore:
    core = NodeCore(Config(), identity, str(path.parent), EventBus(now=clock.seconds), clock,
                    db=InlineSQLite(str(path)), idle_timeout=1e9)
    core.attach_session_factory(net.node(address, record=record))
    core.startService()
    result_of(core.when_ready())
    return core


def test_service_provides_the_interface(clock: Clock) -> None:
    service = IdentityService(memory_identity(START), clock)
    assert verifyObject(IIdentityService, service)


def test_record_is_refreshed_on_the_clock_over_60_days_and_peers_get_it(
        clock: Clock, tmp_path: Path) -> None:
    identity = ident.create(tmp_path / "b-identity", clock.seconds())
    service = IdentityService(identity, clock, check_interval=600.0)
    heard: list[NodeIdentity] = []
    service.subscribe(heard.append)
    net = FakeNetwork()
    other = memory_identity(START)
    a = core_of(net, clock, tmp_path / "a.db", other, other.onion, other.record)
    b = core_of(net, clock, tmp_path / "b.db", service, identity.onion, identity.record)
    service.startService()
    result_of(a.store.add(identity.onion))
    result_of(a.pool.get(identity.onion))
    for _ in range(int(60 * DAY / 3600)):
        clock.advance(3600)
        now = clock.seconds()
        assert service.identity.record.expires > now + 14 * DAY
        seen = a.record_cache.get(identity.onion)  # pushed by b's record keeper
        assert seen is not None and seen.expires > now + 14 * DAY
        assert seen == service.identity.record
    assert service.refreshed >= 3
    assert [i.record.sequence for i in heard] == list(range(2, 2 + service.refreshed))
    assert heard[-1] is service.identity
    assert b.identity is service.identity and b.records.identity is service.identity
    assert b.metrics.counters["records_refreshed"] == service.refreshed
    # the re-signed record is on disk: a restart loads it
    assert ident.load(tmp_path / "b-identity", clock.seconds()).record == service.identity.record
    service.stopService()
    clock.advance(40 * DAY)  # stopped: no timer left re-signing
    assert service.identity.record.sequence == 1 + service.refreshed
    a.stopService()
    b.stopService()


def test_refresh_only_when_due_and_unsubscribe(clock: Clock, tmp_path: Path) -> None:
    identity = ident.create(tmp_path / "id", clock.seconds())
    service = IdentityService(identity, clock, check_interval=3600.0)
    heard: list[NodeIdentity] = []
    unsubscribe = service.subscribe(heard.append)
    service.startService()
    clock.advance(14 * DAY)
    assert heard == [] and service.identity is identity  # half of 30 days not yet passed
    clock.advance(1 * DAY + 3600)
    assert len(heard) == 1 and service.last_reason == "refresh"
    unsubscribe()
    clock.advance(16 * DAY)
    assert len(heard) == 1 and service.refreshed == 2
    service.stopService()


def test_an_i2p_binding_request_goes_through_the_service(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(time.time())
    identity = ident.create(tmp_path / "identity", clock.seconds())
    service = IdentityService(identity, clock)
    heard: list[NodeIdentity] = []
    service.subscribe(heard.append)
    cfg = load_config(None, {"i2p.enabled": True, "i2p.tunnel_length": 1})
    provider = I2PProvider(object(), cfg, service, tmp_path, clock=clock,
                           sam=FakeSAMBridge().endpoint())
    provider.startService()
    result_of(provider.when_ready())
    # the service re-signed (once) and told its subscribers; the provider holds no copy
    assert len(heard) == 1 and service.last_reason == "i2p-binding"
    current = service.identity
    assert provider.identity is current and current.record.sequence == 2
    assert current.i2p_binding is not None
    assert verify_binding(current.record, current.i2p_binding) == provider.state()["address"]
    verify_record(current.record.to_bytes(), current.onion, clock.seconds())
    # the same destination again (a reconnect): no new record
    assert service.bind_i2p_destination(current.i2p_binding.destination) is current
    assert len(heard) == 1
    result_of(provider.stopService())


def test_sessions_sign_with_the_current_record_after_a_change(clock: Clock) -> None:
    """No stale copy: the session factory holds the service and every new session
    presents (and signs with the keys of) the service's current identity."""
    provider = MemoryTransportProvider()
    bob_identity = memory_identity(START)
    bob = SessionFactory(bob_identity, [provider], Config(), clock)
    incoming: list[PeerLink] = []
    bob.on_incoming(incoming.append)  # type: ignore[arg-type]
    provider.listen(bob_identity.onion, PORT, bob.server_factory())
    first = memory_identity(START, seed=b"\x01" * 32)
    service = IdentityService(first, clock)
    alice = SessionFactory(service, [provider], Config(), clock)
    link = result_of(alice.connect(bob_identity.onion))
    assert isinstance(link, PeerLink)
    assert incoming[-1].record == first.record
    # a rotated identity (same master key, new ML-DSA key and record) adopted by the service
    rotated = memory_identity(START, seed=b"\x01" * 32, sequence=2)
    assert rotated.mldsa_public != first.mldsa_public
    service.adopt(rotated)
    assert alice.identity is rotated
    link = result_of(alice.connect(bob_identity.onion))
    assert isinstance(link, PeerLink)
    assert incoming[-1].record == rotated.record and incoming[-1].record.sequence == 2


def test_node_service_holds_the_identity_service(clock: Clock) -> None:
    identity = memory_identity(START)
    service = IdentityService(identity, clock)
    node = NodeService(Config(), service, "/nonexistent")
    assert node.getServiceNamed("identity") is service
    heard: list[NodeIdentity] = []
    node.on_identity(heard.append)
    newer = memory_identity(START, seed=identity.master.private_bytes_raw(), sequence=3)
    service.adopt(newer)
    assert node.identity is newer and heard == [newer]
    with pytest.raises(ValueError, match="master key"):
        service.adopt(memory_identity(START))
