"""I2PProvider against the in-memory SAM bridge, with the clock injected."""

from __future__ import annotations

import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import MultiService
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from aegis_hidden.config import PrivacyError, load_config
from aegis_hidden.events import EventBus
from aegis_hidden.i2p import PrivateKey
from aegis_hidden.i2p._launch import I2pdProcess
from aegis_hidden.i2p._provider import BOOTSTRAP_STEPS, I2PProvider, bootstrap_state
from aegis_hidden.i2p._sam import DatagramReceived, RawReceived
from aegis_hidden.identity import NodeIdentity, create, load, verify_binding, verify_record
from aegis_hidden.interfaces import ITransportProvider
from aegis_hidden.testing import FakeI2PNetwork, FakeSAMBridge, result_of

V31 = ("3.0", "3.1")
V33 = ("3.0", "3.1", "3.2", "3.3")


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.factory is not None and getattr(self.factory, "echo", False):
            assert self.transport is not None
            self.transport.write(data.upper())


class Collect(Factory):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        p = Recorder()
        p.factory = self
        self.built.append(p)
        return p


def wall_clock() -> Clock:
    """A test clock that starts at the current time (records are signed with it)."""
    clock = Clock()
    clock.advance(time.time())
    return clock


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two identities created once (ML-DSA keys take a moment); tests copy them."""
    base = tmp_path_factory.mktemp("ids")
    dirs = []
    for i in range(2):
        d = base / f"id{i}"
        create(d, time.time())
        dirs.append(d)
    return dirs


def make(tmp_path: Path, ident_dir: Path, bridge: FakeSAMBridge, clock: Clock, name: str = "n",
         events: EventBus | None = None) -> tuple[I2PProvider, list[NodeIdentity]]:
    data = tmp_path / name
    if not (data / "identity").exists():
        shutil.copytree(ident_dir, data / "identity")
    ident = load(data / "identity", clock.seconds())
    cfg = load_config(None, {"i2p.enabled": True, "i2p.tunnel_length": 1})
    seen: list[NodeIdentity] = []
    provider = I2PProvider(object(), cfg, ident, data, events, clock=clock, sam=bridge.endpoint(),
                           on_identity=seen.append)
    return provider, seen


def test_provider_is_a_transport_provider(tmp_path: Path, identities: list[Path]) -> None:
    provider, _ = make(tmp_path, identities[0], FakeSAMBridge(), wall_clock())
    assert ITransportProvider.providedBy(provider)
    assert provider.name == "i2p" and provider.state()["state"] == "stopped"


@pytest.mark.parametrize("versions", [V31, V33])
def test_start_generates_stores_and_binds_the_destination(
        tmp_path: Path, identities: list[Path], versions: tuple[str, ...]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge(versions=versions)
    events = EventBus()
    got: list[dict[str, Any]] = []
    events.subscribe(got.append)
    provider, seen = make(tmp_path, identities[0], bridge, clock, events=events)
    provider.startService()
    result_of(provider.when_ready())
    state = provider.state()
    assert state["ready"] and state["sam_version"] == versions[-1]
    key_file = tmp_path / "n" / "i2p" / "destination.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = PrivateKey.from_base64(key_file.read_text().strip())
    assert state["address"] == key.destination.b32
    assert bridge.session_by_b32(key.destination.b32) is not None
    # bound into the signed record, which verifies from the onion address alone
    [ident] = seen
    # (only a salted commitment is in the record; the binding opens it)
    assert ident.i2p_binding is not None
    assert ident.i2p_binding.destination == key.destination.base64
    assert key.destination.base64 not in ident.record.to_bytes().decode("latin-1")
    verify_record(ident.record, ident.onion, now=clock.seconds())
    assert verify_binding(ident.record, ident.i2p_binding) == key.destination.b32
    reloaded = load(tmp_path / "n" / "identity", clock.seconds())
    assert reloaded.record == ident.record and reloaded.i2p_binding == ident.i2p_binding
    assert [e["type"] for e in got] == ["i2p_ready"]
    assert got[0]["address"] == key.destination.b32
    result_of(provider.stopService())
    assert bridge.sessions == {}


def test_second_start_reuses_the_key_and_does_not_resign(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    first, seen = make(tmp_path, identities[0], bridge, clock)
    first.startService()
    result_of(first.when_ready())
    address = first.state()["address"]
    result_of(first.stopService())
    second, seen2 = make(tmp_path, identities[0], bridge, clock)
    second.startService()
    result_of(second.when_ready())
    assert second.state()["address"] == address
    assert seen2 == [] and second.identity.record == seen[0].record
    assert sum(c.startswith("DEST GENERATE") for c in bridge.commands) == 2  # stream + datagram, once
    result_of(second.stopService())


def test_router_restart_brings_the_same_destination_back(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    events = EventBus()
    got: list[dict[str, Any]] = []
    events.subscribe(got.append)
    provider, _ = make(tmp_path, identities[0], bridge, clock, events=events)
    provider.startService()
    result_of(provider.when_ready())
    address = provider.state()["address"]
    bridge.stop()  # i2pd killed: sockets closed, sessions gone, connections refused
    assert provider.state()["state"] == "reconnecting"
    waiting = provider.when_ready()
    assert not waiting.called
    clock.advance(2)  # first retry: refused
    assert provider.state()["state"] == "reconnecting" and provider.state()["error"]
    bridge.start()
    clock.advance(4)  # second retry after doubling
    result_of(waiting)
    assert provider.state()["address"] == address and provider.sessions_created == 2
    assert bridge.session_by_b32(address) is not None
    assert [e["type"] for e in got] == ["i2p_ready", "i2p_session_lost", "i2p_session_lost",
                                       "i2p_ready"]
    result_of(provider.stopService())


def test_stop_during_session_creation_leaves_nothing_behind(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge(clock=clock, ready_delay=20)
    provider, _ = make(tmp_path, identities[0], bridge, clock)
    provider.startService()
    assert provider.state()["state"] == "creating-session"
    result_of(provider.stopService())
    clock.advance(30)
    assert bridge.sessions == {} and bridge.sockets == []


def test_corrupt_key_file_is_reported_and_kept(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    key_file = tmp_path / "n" / "i2p" / "destination.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not a key")
    provider, _ = make(tmp_path, identities[0], FakeSAMBridge(), clock)
    provider.startService()
    state = provider.state()
    assert state["state"] == "reconnecting" and "not an I2P private key" in state["error"]
    assert key_file.read_text() == "not a key"
    result_of(provider.stopService())


def test_only_i2p_names_are_dialed(tmp_path: Path, identities: list[Path]) -> None:
    provider, _ = make(tmp_path, identities[0], FakeSAMBridge(), wall_clock())
    assert provider.handles("stats.i2p") and provider.handles("a" * 52 + ".b32.i2p")
    for bad in ["example.com", "127.0.0.1", "a" * 56 + ".onion", "10.0.0.1:80"]:
        assert not provider.handles(bad)
        with pytest.raises(PrivacyError):
            provider.client_endpoint(bad, 80)
    with pytest.raises(PrivacyError):
        result_of(provider.send_datagram("example.com", b"x"))


@pytest.mark.parametrize("versions", [V31, V33])
def test_two_providers_stream_and_datagram(tmp_path: Path, identities: list[Path],
                                           versions: tuple[str, ...]) -> None:
    clock = wall_clock()
    net = FakeI2PNetwork()
    a, _ = make(tmp_path, identities[0], FakeSAMBridge(net, versions=versions), clock, "a")
    b, _ = make(tmp_path, identities[1], FakeSAMBridge(net, versions=versions), clock, "b")
    a.startService()
    b.startService()
    result_of(a.when_ready())
    result_of(b.when_ready())
    server_factory = Collect(echo=True)
    port = result_of(a.server_endpoint().listen(server_factory))
    client = result_of(b.client_endpoint(a.state()["address"], 80).connect(Collect()))
    client.transport.write(b"hello")
    assert server_factory.built[0].data == b"hello" and client.data == b"HELLO"
    got: list[DatagramReceived | RawReceived] = []
    a.on_datagram(got.append)
    result_of(b.send_datagram(a.state()["datagram_address"], b"dg"))
    assert [g.payload for g in got] == [b"dg"]
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_server_endpoint_survives_a_router_restart(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    net = FakeI2PNetwork()
    bridge_a = FakeSAMBridge(net)
    a, _ = make(tmp_path, identities[0], bridge_a, clock, "a")
    b, _ = make(tmp_path, identities[1], FakeSAMBridge(net), clock, "b")
    a.startService()
    b.startService()
    factory = Collect(echo=True)
    port = result_of(a.server_endpoint().listen(factory))
    bridge_a.restart()
    clock.advance(2)  # provider re-creates the session
    clock.advance(5)  # acceptor re-arms on the new session
    assert a.state()["ready"]
    client = result_of(b.client_endpoint(a.state()["address"], 0).connect(Collect()))
    client.transport.write(b"again")
    assert client.data == b"AGAIN"
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_forward_to_the_listen_address_is_renewed_after_a_restart(
        tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    data = tmp_path / "n"
    shutil.copytree(identities[0], data / "identity")
    cfg = load_config(None, {"i2p.enabled": True})
    provider = I2PProvider(object(), cfg, load(data / "identity", clock.seconds()), data,
                           clock=clock, sam=bridge.endpoint(), forward_to="127.0.0.1:7701")
    provider.startService()
    result_of(provider.when_ready())

    def forwards() -> list[str]:
        return [c for c in bridge.commands if c.startswith("STREAM FORWARD")]

    [first] = forwards()
    assert first.endswith("PORT=7701 HOST=127.0.0.1 SILENT=true")
    forward_socket = [s for s in bridge.sockets if s.session is None and s.version]
    assert forward_socket  # kept open: the forwarding lasts as long as the socket
    bridge.restart()
    clock.advance(2)
    assert provider.state()["ready"] and len(forwards()) == 2
    result_of(provider.stopService())
    assert bridge.sockets == []


def test_tap_adds_the_i2p_provider_for_i2p_only_nodes(tmp_path: Path) -> None:
    from aegis_hidden import tap

    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path), "--no-tor", "--i2p", "--no-api"])
    node = tap.makeService(opts)
    assert isinstance(node, MultiService)
    provider = node.getServiceNamed("i2p")
    assert isinstance(provider, I2PProvider) and "tor" not in node.namedServices
    assert provider.state()["sam_address"] == "127.0.0.1:7656"


def test_tap_has_no_i2p_provider_unless_enabled(tmp_path: Path) -> None:
    from aegis_hidden import tap

    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path), "--no-api"])
    assert isinstance(node := tap.makeService(opts), MultiService)
    assert "i2p" not in node.namedServices


class FakeProcess:
    """What spawnProcess returns: signals end the fake i2pd (its SAM bridge stops)."""

    def __init__(self, reactor: FakeProcessReactor, proto: Any) -> None:
        self.reactor = reactor
        self.proto = proto
        self.signals: list[str] = []

    def signalProcess(self, sig: str) -> None:
        self.signals.append(sig)
        if sig == "TERM" and self.reactor.ignore_term:
            return
        self.reactor.bridge.stop()
        self.proto.processEnded(Failure(ProcessDone(0)))


class FakeProcessReactor:
    def __init__(self, bridge: FakeSAMBridge, *, starts: bool = True, ignore_term: bool = False
                 ) -> None:
        self.bridge = bridge
        self.starts = starts
        self.ignore_term = ignore_term
        self.spawned: list[tuple[str, list[str], str]] = []
        self.processes: list[FakeProcess] = []

    def spawnProcess(self, proto: Any, binary: str, args: list[str], env: Any = None,
                     path: str | None = None) -> FakeProcess:
        self.spawned.append((binary, args, path or ""))
        proc = FakeProcess(self, proto)
        self.processes.append(proc)
        proto.makeConnection(proc)
        if self.starts:
            self.bridge.start()
        else:
            proto.processEnded(Failure(ProcessTerminated(1)))
        return proc


def _launching(tmp_path: Path, identities: list[Path], reactor: FakeProcessReactor,
               clock: Clock) -> I2PProvider:
    data = tmp_path / "n"
    shutil.copytree(identities[0], data / "identity")
    cfg = load_config(None, {"i2p.enabled": True, "i2p.launch": True,
                             "i2p.sam_address": "127.0.0.1:17656"})
    launcher = I2pdProcess(reactor, clock, data / "i2pd", "127.0.0.1", 17656, "/usr/sbin/i2pd",
                           kill_after=10)
    return I2PProvider(reactor, cfg, load(data / "identity", clock.seconds()), data, clock=clock,
                       sam=reactor.bridge.endpoint(), launcher=launcher)


def test_launch_starts_our_own_i2pd_when_nothing_answers(tmp_path: Path,
                                                          identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    bridge.stop()
    reactor = FakeProcessReactor(bridge)
    provider = _launching(tmp_path, identities, reactor, clock)
    provider.startService()
    [(binary, args, path)] = reactor.spawned
    assert binary == "/usr/sbin/i2pd" and path == str(tmp_path / "n" / "i2pd")
    assert f"--datadir={tmp_path / 'n' / 'i2pd'}" in args
    assert "--sam.port=17656" in args and "--sam.address=127.0.0.1" in args
    assert "--httpproxy.enabled=false" in args and "--socksproxy.enabled=false" in args
    result_of(provider.when_ready())
    assert provider.state()["launched_i2pd"]
    result_of(provider.stopService())
    assert reactor.processes[0].signals == ["TERM"]


def test_launch_is_skipped_when_a_router_answers(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    reactor = FakeProcessReactor(FakeSAMBridge())
    provider = _launching(tmp_path, identities, reactor, clock)
    provider.startService()
    result_of(provider.when_ready())
    assert reactor.spawned == [] and not provider.state()["launched_i2pd"]
    result_of(provider.stopService())


def test_launched_i2pd_that_exits_is_reported(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    bridge.stop()
    reactor = FakeProcessReactor(bridge, starts=False)
    provider = _launching(tmp_path, identities, reactor, clock)
    provider.startService()
    assert "exited at once" in provider.state()["error"]
    result_of(provider.stopService())


def test_launched_i2pd_that_ignores_term_is_killed(tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    bridge = FakeSAMBridge()
    bridge.stop()
    reactor = FakeProcessReactor(bridge, ignore_term=True)
    provider = _launching(tmp_path, identities, reactor, clock)
    provider.startService()
    result_of(provider.when_ready())
    stopped = provider.stopService()
    done: list[object] = []
    stopped.addBoth(done.append)
    assert done == []  # waits for the process
    clock.advance(10)
    assert done == [None]
    assert reactor.processes[0].signals == ["TERM", "KILL"]


def test_bootstrap_progress_is_in_the_state(tmp_path: Path, identities: list[Path]) -> None:
    provider, _ = make(tmp_path, identities[0], FakeSAMBridge(), wall_clock())
    assert provider.state()["bootstrap"] == {
        "step": 0, "steps": BOOTSTRAP_STEPS, "progress": 0, "tag": "stopped",
        "summary": "not started"}
    provider.startService()
    result_of(provider.when_ready())
    boot = provider.state()["bootstrap"]
    assert boot["progress"] == 100 and boot["step"] == BOOTSTRAP_STEPS and boot["tag"] == "ready"
    result_of(provider.stopService())


def test_every_provider_state_has_a_bootstrap_step() -> None:
    source = (Path(__file__).resolve().parents[2] / "aegis_hidden" / "i2p" /
              "_provider.py").read_text()
    states = set(re.findall(r'_set_state\("([a-z-]+)"\)', source)) | {"stopped"}
    assert len(states) >= 6
    progress = {s: bootstrap_state(s)["progress"] for s in states}
    assert progress["stopped"] == 0 and progress["ready"] == 100
    assert all(0 < progress[s] < 100 for s in states - {"stopped", "ready"}), progress
    assert progress["launching"] < progress["connecting"] < progress["creating-session"]
    assert bootstrap_state("something new")["summary"] == "something new"
