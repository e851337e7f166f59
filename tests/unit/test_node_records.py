"""The node's identity checks: ML-DSA pins, record cache, record push, refresh.

Nodes are NodeCores on the fake session network whose links carry real signed
records (the records the handshake would have verified).
"""

from __future__ import annotations

import base64
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from twisted.internet.task import Clock

from aegis_hidden import identity as ident
from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import (
    IdentityRecord,
    NodeIdentity,
    RecordKind,
    make_rotation_proof,
    sign_record,
)
from aegis_hidden.node import DialFailed, NodeCore
from aegis_hidden.node._channels import Channel
from aegis_hidden.node._control import ControlKind, RecordPush
from aegis_hidden.node._pool import PeerRevoked
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, memory_identity, result_of

START = 1_700_000_000.0
DAY = 86400.0


def destination() -> str:
    return base64.b64encode(os.urandom(387)).decode().replace("+", "-").replace("/", "~")


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, path: Path,
                 identity: NodeIdentity | None = None, **kw: Any) -> None:
        self.net, self.clock, self.path = net, clock, path
        self.identity = identity or memory_identity(clock.seconds())
        self.address = self.identity.onion
        self.events: list[dict[str, Any]] = []
        self.identities: list[NodeIdentity] = []
        self.kw = kw
        self.factory = net.node(self.address, record=self.identity.record)
        self.start()

    def start(self) -> None:
        bus = EventBus(now=self.clock.seconds)
        bus.subscribe(self.events.append)
        self.db = InlineSQLite(str(self.path))
        self.core = NodeCore(Config(), self.identity, str(self.path.parent), bus, self.clock,
                             db=self.db, idle_timeout=1e9, on_identity=self.identities.append,
                             **self.kw)
        self.core.attach_session_factory(self.factory)
        self.core.startService()
        result_of(self.core.when_ready())

    def restart(self) -> None:
        self.core.stopService()
        result_of(self.db.close())
        self.factory = self.net.node(self.address, record=self.identity.record)
        self.start()

    def use_record(self, record: IdentityRecord, mldsa_seed: bytes) -> None:
        """Use another record from now on (a new key, a forged one...), in sessions and pushes."""
        self.factory.record = record
        self.identity = replace(self.identity, record=record, mldsa_seed=mldsa_seed)
        self.core.records.identity = self.identity

    def errors(self, error: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "network_error" and e["error"] == error]

    def counter(self, name: str) -> int:
        return int(self.core.metrics.counters[name])


def link_of(node: Node, peer: str) -> Any:
    link = node.core.pool.link(peer)
    assert link is not None
    return link


def push(link: Any, message: RecordPush) -> None:
    """Send ``message`` on the control channel of ``link`` (a record push, forged or not)."""
    link.send_frame(Channel.CONTROL, message.encode())


def cached(node: Node, peer: str) -> IdentityRecord:
    rec = node.core.record_cache.get(peer)
    assert rec is not None
    return rec


def own(node: Node) -> NodeIdentity:
    assert node.core.identity is not None
    return node.core.identity


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(START)
    return c


@pytest.fixture
def net() -> FakeNetwork:
    return FakeNetwork()


def resign(node: NodeIdentity, now: float, *, mldsa_seed: bytes | None = None,
           proof_from: NodeIdentity | None = None, sequence: int | None = None,
           ) -> tuple[IdentityRecord, bytes]:
    """A record of ``node``'s onion, optionally with another ML-DSA key (and proof)."""
    seed = mldsa_seed if mldsa_seed is not None else node.mldsa_seed
    mldsa = MLDSA65PrivateKey.from_seed_bytes(seed)
    public = mldsa.public_key().public_bytes_raw()
    seq = sequence if sequence is not None else node.record.sequence + 1
    proof = b""
    if proof_from is not None:
        proof = make_rotation_proof(proof_from.mldsa, node.ed25519_public, public, seq)
    rec = sign_record(replace(node.record, sequence=seq, created=int(now),
                              expires=int(now) + 30 * 86400, mldsa_public=public,
                              rotation_proof=proof, signature=b"", mldsa_signature=b""),
                      node.master, mldsa)
    return rec, seed


# -- ML-DSA pinning -------------------------------------------------------------------


def test_first_contact_pins_and_a_changed_key_is_refused_and_reported(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    assert a.core.mldsa_pin(b.address) == b.identity.record.mldsa_public
    # Someone who forged b's Ed25519 key signs a record with an ML-DSA key of their own.
    forged, seed = resign(b.identity, clock.seconds(), mldsa_seed=os.urandom(32))
    real = b.identity.record
    net.cut(a.address, b.address)
    b.use_record(forged, seed)
    with pytest.raises(DialFailed, match="ML-DSA key mismatch"):
        result_of(a.core.pool.get(b.address))
    assert a.counter("mldsa_pin_mismatches") == 1
    assert a.errors("ML-DSA key mismatch")[0]["peer"] == b.address
    assert a.core.mldsa_pin(b.address) == real.mldsa_public  # not re-pinned
    # the refused record did not enter the cache (it would turn b's real records into
    # rollbacks)
    cached = a.core.record_cache.get(b.address)
    assert cached is not None and cached.sequence == real.sequence
    # the pin survives a restart
    a.restart()
    with pytest.raises(DialFailed, match="ML-DSA key mismatch"):
        result_of(a.core.pool.get(b.address))
    # and an incoming session with the forged record is refused too
    result_of(b.core.store.add(a.address))
    with pytest.raises(Exception, match="closed"):
        result_of(b.factory.connect(a.address)).send_message(b"{}")
    assert not a.core.pool.connected(b.address)


def test_rotation_signed_by_the_pinned_key_is_accepted_and_repinned(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    rotated, seed = resign(b.identity, clock.seconds(), mldsa_seed=os.urandom(32),
                           proof_from=b.identity)
    net.cut(a.address, b.address)
    b.use_record(rotated, seed)
    result_of(a.core.pool.get(b.address))
    assert a.core.mldsa_pin(b.address) == rotated.mldsa_public
    assert a.counter("mldsa_pin_mismatches") == 0
    a.restart()
    assert a.core.mldsa_pin(b.address) == rotated.mldsa_public  # the new pin is on disk
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("SELECT mldsa_public FROM mldsa_pins").fetchall() == [
        (rotated.mldsa_public,)]


def test_removing_a_peer_forgets_its_pin(net: FakeNetwork, clock: Clock,
                                         tmp_path: Path) -> None:
    """docs/identity.md: after two rotations the operator removes and re-adds the peer."""
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    net.cut(a.address, b.address)
    result_of(a.core.store.remove(b.address))
    assert a.core.mldsa_pin(b.address) is None
    new, seed = resign(b.identity, clock.seconds(), mldsa_seed=os.urandom(32))
    b.use_record(new, seed)
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))  # a first contact again
    assert a.core.mldsa_pin(b.address) == new.mldsa_public
    a.restart()
    assert a.core.mldsa_pin(b.address) == new.mldsa_public


def test_pushed_record_with_an_unproven_key_is_refused(net: FakeNetwork, clock: Clock,
                                                       tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    forged, _ = resign(b.identity, clock.seconds(), mldsa_seed=os.urandom(32))
    push(link_of(b, a.address), RecordPush(forged.to_bytes()))
    assert a.counter("mldsa_pin_mismatches") == 1
    assert not a.core.pool.connected(b.address)
    assert cached(a, b.address).sequence == b.identity.record.sequence


# -- the record push and the I2P binding ------------------------------------------------


def test_binding_goes_only_to_peers_the_operator_added_or_the_node_dialled(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db",
             memory_identity(clock.seconds(), i2p_destination=destination()))
    b = Node(net, clock, tmp_path / "b.db",
             memory_identity(clock.seconds(), i2p_destination=destination()))
    c = Node(net, clock, tmp_path / "c.db")
    assert a.identity.i2p_binding is not None and b.identity.i2p_binding is not None
    # a dials b: a sends b its binding, b (dialled by a stranger) does not send its own
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    learnt = b.core.store.require(a.address)
    assert learnt.i2p_destination == a.identity.i2p_binding.b32
    assert learnt.addresses() == [a.address, a.identity.i2p_binding.b32]
    assert a.core.store.require(b.address).i2p_destination is None
    assert b.counter("records_received") == 1 and a.counter("records_received") == 1
    # c, unknown to b, dials b: b's binding is not revealed to it either
    result_of(c.core.store.add(b.address))
    result_of(c.core.pool.get(b.address))
    assert c.core.store.require(b.address).i2p_destination is None
    # once b's operator adds c, c gets b's binding with the next session
    result_of(b.core.store.add(c.address))
    net.cut(b.address, c.address)
    result_of(c.core.pool.get(b.address))
    assert c.core.store.require(b.address).i2p_destination == b.identity.i2p_binding.b32


def test_binding_that_does_not_open_the_commitment_is_refused(net: FakeNetwork, clock: Clock,
                                                              tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db",
             memory_identity(clock.seconds(), i2p_destination=destination()))
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    # a "binding" to another destination (say, an attacker's): the commitment says no
    other = ident.I2PBinding(destination(), os.urandom(32))
    push(link_of(a, b.address), RecordPush(a.identity.record.to_bytes(), other.to_bytes()))
    assert a.identity.i2p_binding is not None
    assert b.core.store.require(a.address).i2p_destination == a.identity.i2p_binding.b32
    assert b.errors("record refused")


def test_control_messages_are_never_user_messages(net: FakeNetwork, clock: Clock,
                                                  tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    link = result_of(a.core.pool.get(b.address))
    link.send_frame(Channel.CONTROL, b"\x7f" + b'{"k":"msg"}')  # an unknown kind
    link.send_frame(Channel.CONTROL, bytes([ControlKind.RECORD_PUSH]) + b"\x00")  # truncated
    assert b.counter("control_unknown") == 1
    assert b.counter("protocol_errors") == 1
    assert not [e for e in b.events if e["type"] == "message_received"]
    # the record push has its own channel: a user message starting with 0x00 is a message
    result_of(a.core.send(b.address, {"type": "chat", "data": "\u0000hello"}))
    assert [e["message"]["data"] for e in b.events if e["type"] == "message_received"] == [
        "\u0000hello"]
    assert b.counter("records_received") == 1  # only the push after establishment


def test_record_of_another_onion_or_an_older_one_is_refused(net: FakeNetwork, clock: Clock,
                                                            tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    link = link_of(b, a.address)
    push(link, RecordPush(memory_identity(clock.seconds()).record.to_bytes()))
    newer, _ = resign(b.identity, clock.seconds(), sequence=5)
    push(link, RecordPush(newer.to_bytes()))
    assert cached(a, b.address).sequence == 5
    older, _ = resign(b.identity, clock.seconds(), sequence=4)
    push(link, RecordPush(older.to_bytes()))
    assert cached(a, b.address).sequence == 5
    assert a.counter("records_refused") == 2
    assert a.core.store.require(b.address).record == newer.to_bytes()


# -- revocation --------------------------------------------------------------------------


def test_revocation_reaches_connected_peers_and_whoever_dials_and_is_kept_for_ever(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    identity = ident.create(tmp_path / "b-identity", clock.seconds())
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db", identity)
    c = Node(net, clock, tmp_path / "c.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    # `aegis-hidden identity revoke` on b's data dir while b runs
    revocation = ident.revoke(identity, clock.seconds(), "key compromised")
    clock.advance(10)
    assert b.core.records.revocation == revocation
    assert a.core.record_cache.is_revoked(b.address)
    assert not a.core.pool.connected(b.address)
    assert a.errors("peer revoked")[0]["detail"] == "key compromised"
    with pytest.raises(PeerRevoked):
        result_of(a.core.pool.get(b.address))
    with pytest.raises(PeerRevoked):  # and no message is queued for it
        result_of(a.core.send(b.address, {"type": "chat", "data": "hello?"}))
    # b refuses to dial, and answers whoever dials it with the revocation
    with pytest.raises(DialFailed, match="revoked"):
        result_of(b.core.pool.get(c.address))
    result_of(c.core.store.add(b.address))
    with pytest.raises(DialFailed):
        result_of(c.core.pool.get(b.address))
    assert c.core.record_cache.is_revoked(b.address)
    # kept for ever: after a restart a still refuses b, at dial and at accept
    a.restart()
    assert a.core.record_cache.is_revoked(b.address)
    assert a.core.peer_json(a.core.store.require(b.address))["revoked"] is True
    with pytest.raises(PeerRevoked):
        result_of(a.core.pool.get(b.address))
    b.core.records.revocation = None  # even if b kept going as if nothing happened
    result_of(b.core.store.add(a.address))
    with pytest.raises(Exception, match="closed"):
        result_of(b.core.pool.get(a.address)).send_message(b"{}")
    assert a.counter("revoked_refused") >= 1
    assert not a.core.pool.connected(b.address)


# -- the record never lapses ---------------------------------------------------------------


def test_record_is_resigned_and_pushed_and_never_lapses_over_60_days(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    identity = ident.create(tmp_path / "b-identity", clock.seconds())
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db", identity, record_check_interval=600.0)
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    for _ in range(int(60 * DAY / 3600)):
        clock.advance(3600)
        now = clock.seconds()
        assert own(b).record.expires > now + 14 * DAY
        seen = a.core.record_cache.get(b.address)
        assert seen is not None and seen.expires > now + 14 * DAY
        assert a.core.pool.connected(b.address)
    assert b.counter("records_refreshed") >= 3
    assert [i.record.sequence for i in b.identities] == list(
        range(2, 2 + b.counter("records_refreshed")))
    # the re-signed record is on disk: a restart loads it
    assert ident.load(tmp_path / "b-identity", clock.seconds()).record == own(b).record
    assert a.core.store.require(b.address).record == own(b).record.to_bytes()
    assert cached(a, b.address).kind is RecordKind.IDENTITY
