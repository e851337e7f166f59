"""An in-memory SAM v3 bridge (and a tiny I2P network behind it) for unit tests.

:class:`FakeI2PNetwork` joins any number of :class:`FakeSAMBridge` objects;
each bridge hands out ``IStreamClientEndpoint`` s (:meth:`FakeSAMBridge.endpoint`)
whose connections are in-memory pipes to a fake bridge that speaks the subset
of SAM v3 that aegis-hidden uses, the way i2pd 2.45.1 does: versions 3.0/3.1 by
default (``versions=("3.0", "3.1", "3.2", "3.3")`` for a newer bridge, with
PING, PRIMARY and SESSION ADD), no quoting on input, sessions that live as long
as their control socket, STREAM CONNECT/ACCEPT between sessions of the same
network, DATAGRAM SEND / RECEIVED on control sockets, NAMING LOOKUP of ``ME``
and of ``.b32.i2p`` names of live sessions.

Bytes written to a pipe are delivered in order through one trampoline (no
re-entrancy, no reactor): a test sees the result of a command as soon as the
call that sent it returns. Session readiness can be delayed on an injected
clock (``ready_delay``), like i2pd's 20-second readiness poll.

Fault injection: :meth:`FakeSAMBridge.restart` (drop every socket and session,
like an i2pd restart), ``stop()``/``start()`` (refuse connections),
:meth:`FakeSAMBridge.fail_next` (answer the next command of a kind with a
given RESULT) and :meth:`FakeSAMBridge.hang_next` (never answer it). Commands
seen are recorded in ``bridge.commands``.

Destination linger (``reuse_window=5.0``, i2pd 2.45.1): a closed session's
destination stays for ``reuse_window`` seconds; a ``SESSION CREATE`` with the
same key in that time gets that destination back (its LeaseSet cache too,
``bridge.reused_destinations`` counts it), and when the window ends the
destination is stopped under the new session: every STREAM CONNECT/ACCEPT on
it is answered ``INVALID_ID`` although its control socket stays open.

LeaseSet cache (``lease_cache=True``): like i2pd, each session remembers the
LeaseSet of every destination it connected to; when that destination's session
was re-created since (its router restarted) or is gone, a STREAM CONNECT from
the remembering session still answers ``RESULT=OK`` but the stream is silent
(bytes go nowhere, nothing comes back), until the entry expires
(``lease_ttl`` on the injected clock) or the dialing session is re-created.
``bridge.silent_streams`` counts such streams.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..i2p import PrivateKey, b32_address, b64decode
from ..i2p._errors import DestinationError


def fake_private_key(signature_type: int = 7) -> PrivateKey:
    """A structurally valid type-7 private-key blob with random key material."""
    if signature_type != 7:
        raise ValueError("the fake bridge only makes signature type 7 keys")
    pub = os.urandom(256) + bytes(96) + os.urandom(32)
    cert = bytes([5]) + (4).to_bytes(2, "big") + (7).to_bytes(2, "big") + (0).to_bytes(2, "big")
    return PrivateKey.from_bytes(pub + cert + os.urandom(256) + os.urandom(32))


class _Pipe:
    """One direction-pair endpoint of an in-memory connection."""

    disconnecting = False

    def __init__(self, net: FakeI2PNetwork, port: int) -> None:
        self._net = net
        self.peer_pipe: _Pipe | None = None
        self.protocol: IProtocol | None = None
        self._port = port
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed or self.disconnecting or self.peer_pipe is None:
            return
        self._net.deliver(self.peer_pipe, bytes(data))

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.closed or self.disconnecting:
            return
        self.disconnecting = True
        self._net.close_pair(self)

    abortConnection = loseConnection

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 7656)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self._port)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()


@dataclass
class FakeSession:
    id: str
    style: str
    key: PrivateKey
    control: _FakeSAMServer
    subsessions: dict[str, str] = field(default_factory=dict)  # sub id -> style
    acceptors: deque[_FakeSAMServer] = field(default_factory=deque)
    ready: bool = False
    leases: dict[str, tuple[int, float]] = field(default_factory=dict)  # b32 -> (gen, when)
    stopped: bool = False  # its destination was stopped under it (reuse_window)

    @property
    def b32(self) -> str:
        return self.key.destination.b32


class FakeI2PNetwork:
    """Sessions of every bridge, by ``.b32.i2p``; the delivery trampoline."""

    def __init__(self) -> None:
        self.sessions: dict[str, FakeSession] = {}
        self.generations: dict[str, int] = {}  # b32 -> how many sessions it has had
        self._queue: deque[tuple[str, _Pipe, bytes]] = deque()
        self._pumping = False
        self._ports = 40000

    def find(self, name: str) -> FakeSession | None:
        """The live session of a ``.b32.i2p`` name or a base64 destination."""
        if name.lower().endswith(".b32.i2p"):
            return self.sessions.get(name.lower())
        try:
            return self.sessions.get(b32_address(b64decode(name)))
        except DestinationError:
            return None

    def next_port(self) -> int:
        self._ports += 1
        return self._ports

    def deliver(self, target: _Pipe, data: bytes) -> None:
        self._queue.append(("data", target, data))
        self._pump()

    def close_pair(self, pipe: _Pipe) -> None:
        self._queue.append(("close", pipe, b""))
        if pipe.peer_pipe is not None:
            self._queue.append(("close", pipe.peer_pipe, b""))
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue:
                kind, pipe, data = self._queue.popleft()
                if pipe.closed or pipe.protocol is None:
                    continue
                if kind == "data":
                    pipe.protocol.dataReceived(data)
                else:
                    pipe.closed = True
                    pipe.protocol.connectionLost(Failure(ConnectionDone()))
        finally:
            self._pumping = False


@implementer(IStreamClientEndpoint)
class _FakeSAMEndpoint:
    def __init__(self, bridge: FakeSAMBridge) -> None:
        self._bridge = bridge

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        bridge = self._bridge
        if not bridge.running:
            return fail(ConnectionRefusedError("fake SAM bridge is stopped"))
        net = bridge.network
        port = net.next_port()
        client_pipe, server_pipe = _Pipe(net, port), _Pipe(net, 7656)
        client_pipe.peer_pipe, server_pipe.peer_pipe = server_pipe, client_pipe
        client = protocolFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7656))
        if client is None:
            return fail(ConnectionRefusedError("factory refused"))
        server = _FakeSAMServer(bridge)
        client_pipe.protocol, server_pipe.protocol = client, server
        bridge.sockets.append(server)
        server.makeConnection(cast(ITransport, server_pipe))
        client.makeConnection(cast(ITransport, client_pipe))
        bridge.connections += 1
        return succeed(client)


def _params(text: str) -> dict[str, str]:
    """Split options the way i2pd 2.45.1 does: on single spaces, at the first '='."""
    out: dict[str, str] = {}
    for token in text.split(" "):
        key, eq, value = token.partition("=")
        if eq:
            out[key] = value
    return out


class _FakeSAMServer(Protocol):
    """The bridge's side of one SAM socket."""

    def __init__(self, bridge: FakeSAMBridge) -> None:
        self.bridge = bridge
        self.version: str | None = None
        self.buffer = b""
        self.session: FakeSession | None = None  # owned (control socket)
        self.stream_peer: _FakeSAMServer | None = None  # piped data socket
        self.accepting_for: FakeSession | None = None
        self.black_hole = False  # a stream to dead leases: bytes go nowhere

    # bytes in
    def dataReceived(self, data: bytes) -> None:
        if self.black_hole:
            return
        if self.stream_peer is not None:
            self.stream_peer.send(data)
            return
        self.buffer += data
        while b"\n" in self.buffer and not self.piped:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self._command(line.decode("utf-8", "replace").rstrip("\r"))
        peer = self.piped_to()
        if peer is not None and self.buffer:
            rest, self.buffer = self.buffer, b""
            peer.send(rest)

    @property
    def piped(self) -> bool:
        return self.stream_peer is not None

    def piped_to(self) -> _FakeSAMServer | None:
        return self.stream_peer

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def reply(self, text: str) -> None:
        if self.bridge.noisy:
            head, _, rest = text.partition(" RESULT=")
            text = f"{head}  RESULT={rest}\tX_UNKNOWN_KEY=1 X_FLAG" if rest else text
        self.send(text.encode("utf-8") + b"\n")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        if self in self.bridge.sockets:
            self.bridge.sockets.remove(self)
        if self.session is not None:
            self.bridge.drop_session(self.session)
        if self.accepting_for is not None and self in self.accepting_for.acceptors:
            self.accepting_for.acceptors.remove(self)
        if self.stream_peer is not None:
            peer, self.stream_peer = self.stream_peer, None
            peer.stream_peer = None
            peer.close()

    # commands
    def _command(self, line: str) -> None:
        parts = line.split(" ", 2)
        verb = parts[0]
        sub = parts[1] if len(parts) > 1 else ""
        params = _params(parts[2] if len(parts) > 2 else "")
        name = f"{verb} {sub}".strip()
        self.bridge.commands.append(line)
        if self.version is None:
            if name != "HELLO VERSION":
                self.close()
                return
            self._hello(params)
            return
        injected = self.bridge.take_failure(name)
        if injected == _NO_REPLY:
            return
        if injected is not None:
            reply_name = {"SESSION CREATE": "SESSION STATUS", "SESSION ADD": "SESSION STATUS",
                          "STREAM CONNECT": "STREAM STATUS", "STREAM ACCEPT": "STREAM STATUS",
                          "NAMING LOOKUP": "NAMING REPLY", "DEST GENERATE": "DEST REPLY"}
            self.reply(f"{reply_name.get(name, name)} RESULT={injected}")
            return
        handler = {
            "DEST GENERATE": self._dest_generate,
            "SESSION CREATE": self._session_create,
            "SESSION ADD": self._session_add,
            "STREAM CONNECT": self._stream_connect,
            "STREAM ACCEPT": self._stream_accept,
            "STREAM FORWARD": self._stream_forward,
            "NAMING LOOKUP": self._naming_lookup,
        }.get(name)
        if handler is not None:
            handler(params)
        elif verb == "PING" and self.bridge.at_least(self.version, (3, 2)):
            self.send(b"PONG" + line[4:].encode("utf-8") + b"\n")
        elif name == "DATAGRAM SEND":
            self._datagram_send(params)
        elif verb == "QUIT":
            self.close()
        else:  # i2pd: "SAM: unexpected message", and the socket is closed
            self.close()

    def _hello(self, params: dict[str, str]) -> None:
        lo = params.get("MIN", "3.0")
        hi = params.get("MAX", "3.1")
        chosen = None
        for v in reversed(self.bridge.versions):
            if _vt(lo) <= _vt(v) <= _vt(hi):
                chosen = v
                break
        if chosen is None:
            self.reply("HELLO REPLY RESULT=NOVERSION")
            self.close()
            return
        self.version = chosen
        self.reply(f"HELLO REPLY RESULT=OK VERSION={chosen}")

    def _dest_generate(self, params: dict[str, str]) -> None:
        sig = params.get("SIGNATURE_TYPE", "0")
        if sig not in ("7", "EdDSA_SHA512_Ed25519"):
            self.reply('DEST REPLY RESULT=I2P_ERROR MESSAGE="fake bridge makes only type 7"')
            return
        key = fake_private_key()
        self.reply(f"DEST REPLY PUB={key.destination.base64} PRIV={key.base64}")

    def _session_create(self, params: dict[str, str]) -> None:
        style, sid, dest = params.get("STYLE", ""), params.get("ID", ""), params.get("DESTINATION", "")
        if not sid:
            self.reply("SESSION STATUS RESULT=INVALID_ID")
            return
        if sid in self.bridge.sessions:
            self.reply("SESSION STATUS RESULT=DUPLICATED_ID")
            return
        styles = ["STREAM", "DATAGRAM", "RAW"]
        if self.bridge.at_least(self.version, (3, 3)):
            styles.append("PRIMARY")
        if style not in styles:
            self.reply('SESSION STATUS RESULT=I2P_ERROR MESSAGE="Unknown STYLE"')
            return
        if not dest:
            self.reply("SESSION STATUS RESULT=INVALID_KEY")
            return
        if dest == "TRANSIENT":
            key = fake_private_key()
        else:
            try:
                key = PrivateKey.from_base64(dest)
            except DestinationError:
                self.reply("SESSION STATUS RESULT=INVALID_KEY")
                return
        if key.destination.b32 in self.bridge.network.sessions:
            self.reply("SESSION STATUS RESULT=DUPLICATED_DEST")
            return
        session = FakeSession(sid, style, key, self)
        self.bridge.reuse_lingering(session)
        self.session = session
        self.bridge.sessions[sid] = session
        self.bridge.network.sessions[session.b32] = session
        gens = self.bridge.network.generations
        gens[session.b32] = gens.get(session.b32, 0) + 1

        def ready() -> None:
            if self.session is session and sid in self.bridge.sessions:
                session.ready = True
                self.reply(f"SESSION STATUS RESULT=OK DESTINATION={key.base64}")

        if self.bridge.ready_delay and self.bridge.clock is not None:
            self.bridge.clock.callLater(self.bridge.ready_delay, ready)
        else:
            ready()

    def _session_add(self, params: dict[str, str]) -> None:
        session = self.session
        if session is None or session.style != "PRIMARY" or not self.bridge.at_least(
                self.version, (3, 3)):
            self.close()
            return
        sid, style = params.get("ID", ""), params.get("STYLE", "")
        if not sid or sid in self.bridge.sessions:
            self.reply("SESSION STATUS RESULT=DUPLICATED_ID")
            return
        session.subsessions[sid] = style
        self.bridge.sessions[sid] = session
        self.reply(f"SESSION STATUS RESULT=OK ID={sid} MESSAGE=ADDED")

    def _stream_session(self, sid: str) -> FakeSession | None:
        session = self.bridge.sessions.get(sid)
        if session is None:
            return None
        if session.style == "STREAM" or session.subsessions.get(sid) == "STREAM":
            return session
        return None

    def _stream_connect(self, params: dict[str, str]) -> None:
        session = self._stream_session(params.get("ID", ""))
        if session is None or session.stopped:
            self.reply("STREAM STATUS RESULT=INVALID_ID")
            return
        name = params.get("DESTINATION", "")
        target = self.bridge.network.find(name)
        if self.bridge.lease_cache and self._stale_lease(session, name, target):
            self.reply("STREAM STATUS RESULT=OK")
            self.black_hole = True
            self.bridge.silent_streams += 1
            return
        if target is None:
            self.reply("STREAM STATUS RESULT=CANT_REACH_PEER")
            return
        if not target.acceptors:
            self.reply("STREAM STATUS RESULT=CANT_REACH_PEER")
            return
        acceptor = target.acceptors.popleft()
        acceptor.accepting_for = None
        self.reply("STREAM STATUS RESULT=OK")
        self.stream_peer, acceptor.stream_peer = acceptor, self
        peer_line = session.key.destination.base64
        if self.bridge.at_least(acceptor.version, (3, 2)):
            peer_line += f" FROM_PORT={params.get('FROM_PORT', '0')} TO_PORT={params.get('TO_PORT', '0')}"
        acceptor.send(peer_line.encode("ascii") + b"\n")

    def _stale_lease(self, session: FakeSession, name: str, target: FakeSession | None) -> bool:
        """Whether ``session`` would send to dead leases of ``name`` (and cache it if not)."""
        if name.lower().endswith(".b32.i2p"):
            b32 = name.lower()
        else:
            try:
                b32 = b32_address(b64decode(name))
            except DestinationError:
                return False
        clock = self.bridge.clock
        now = clock.seconds() if clock is not None else 0.0
        cached = session.leases.get(b32)
        if cached is not None and clock is not None and now - cached[1] > self.bridge.lease_ttl:
            del session.leases[b32]
            cached = None
        current = self.bridge.network.generations.get(b32) if target is not None else None
        if cached is not None and cached[0] != current:
            return True
        if current is not None and cached is None:
            session.leases[b32] = (current, now)
        return False

    def _stream_accept(self, params: dict[str, str]) -> None:
        session = self._stream_session(params.get("ID", ""))
        if session is None or session.stopped:
            self.reply("STREAM STATUS RESULT=INVALID_ID")
            return
        if session.acceptors and not self.bridge.at_least(self.version, (3, 2)):
            self.reply('STREAM STATUS RESULT=I2P_ERROR MESSAGE="Already accepting"')
            return
        session.acceptors.append(self)
        self.accepting_for = session
        self.reply("STREAM STATUS RESULT=OK")

    def _stream_forward(self, params: dict[str, str]) -> None:
        session = self._stream_session(params.get("ID", ""))
        if session is None:
            self.reply("STREAM STATUS RESULT=INVALID_ID")
            return
        self.reply("STREAM STATUS RESULT=OK")

    def _naming_lookup(self, params: dict[str, str]) -> None:
        name = params.get("NAME", "")
        if name == "ME":
            if self.session is None:
                self.reply("NAMING REPLY RESULT=INVALID_KEY NAME=ME")
                return
            found: FakeSession | None = self.session
        else:
            found = self.bridge.network.find(name)
        if found is None:  # i2pd 2.45.1's answer when no LeaseSet is found (Java I2P: KEY_NOT_FOUND)
            self.reply(f"NAMING REPLY RESULT=INVALID_KEY NAME={name}")
            return
        self.reply(f"NAMING REPLY RESULT=OK NAME={name} VALUE={found.key.destination.base64}")

    def _datagram_send(self, params: dict[str, str]) -> None:
        size = int(params.get("SIZE", "0"))
        payload, self.buffer = self.buffer[:size], self.buffer[size:]
        sender = self.session
        if sender is None or sender.style not in ("DATAGRAM", "RAW"):
            return
        target = self.bridge.network.find(params.get("DESTINATION", ""))
        if target is None or target.style != "DATAGRAM" or not target.ready:
            self.bridge.dropped_datagrams += 1
            return
        header = f"DATAGRAM RECEIVED DESTINATION={sender.key.destination.base64} SIZE={len(payload)}"
        if self.bridge.at_least(target.control.version, (3, 2)):
            header += " FROM_PORT=0 TO_PORT=0"
        target.control.send(header.encode("ascii") + b"\n" + payload)


_NO_REPLY = ""  # hang_next: the command gets no reply at all


def _vt(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (0, 0)


class FakeSAMBridge:
    """One fake router's SAM bridge (see the module docstring)."""

    def __init__(self, network: FakeI2PNetwork | None = None, *,
                 versions: tuple[str, ...] = ("3.0", "3.1"),
                 clock: IReactorTime | None = None, ready_delay: float = 0.0,
                 noisy: bool = False, lease_cache: bool = False,
                 lease_ttl: float = 600.0, reuse_window: float = 0.0) -> None:
        self.network = network if network is not None else FakeI2PNetwork()
        self.versions = versions
        self.clock = clock
        self.ready_delay = ready_delay
        self.noisy = noisy
        self.lease_cache = lease_cache
        self.lease_ttl = lease_ttl
        self.silent_streams = 0
        self.reuse_window = reuse_window
        self.reused_destinations = 0
        # b32 -> (closed at, its LeaseSet cache): destinations lingering after their session
        self._lingering: dict[str, tuple[float, dict[str, tuple[int, float]]]] = {}
        self.running = True
        self.sessions: dict[str, FakeSession] = {}
        self.sockets: list[_FakeSAMServer] = []
        self.commands: list[str] = []
        self.connections = 0
        self.dropped_datagrams = 0
        self._failures: dict[str, deque[str]] = {}

    def endpoint(self) -> IStreamClientEndpoint:
        return _FakeSAMEndpoint(self)

    @staticmethod
    def at_least(version: str | None, wanted: tuple[int, int]) -> bool:
        return version is not None and _vt(version) >= wanted

    def fail_next(self, command: str, result: str, times: int = 1) -> None:
        """Answer the next ``times`` commands named ``command`` with ``RESULT=result``."""
        self._failures.setdefault(command, deque()).extend([result] * times)

    def hang_next(self, command: str, times: int = 1) -> None:
        """Never answer the next ``times`` commands named ``command`` (the socket stays open)."""
        self._failures.setdefault(command, deque()).extend([_NO_REPLY] * times)

    def take_failure(self, command: str) -> str | None:
        queue = self._failures.get(command)
        return queue.popleft() if queue else None

    def drop_session(self, session: FakeSession) -> None:
        if (self.reuse_window > 0 and self.clock is not None and session.id in self.sessions
                and not session.stopped):  # a stopped destination was removed already
            self._lingering[session.b32] = (self.clock.seconds(), session.leases)
        for sid in [session.id, *session.subsessions]:
            self.sessions.pop(sid, None)
        if self.network.sessions.get(session.b32) is session:
            del self.network.sessions[session.b32]
        for acceptor in list(session.acceptors):
            acceptor.close()

    def reuse_lingering(self, session: FakeSession) -> None:
        """SESSION CREATE: hand over the key's lingering destination (reuse_window)."""
        lingering = self._lingering.pop(session.b32, None)
        if lingering is None or self.clock is None:
            return
        closed_at, leases = lingering
        left = closed_at + self.reuse_window - self.clock.seconds()
        if left <= 0:
            return
        self.reused_destinations += 1
        session.leases = leases

        def stop() -> None:  # the old session's clean-up stops the shared destination
            session.stopped = True

        self.clock.callLater(left, stop)

    def restart(self) -> None:
        """Like an i2pd restart: every socket closed, every session gone."""
        for sock in list(self.sockets):
            sock.close()
        for session in list(self.sessions.values()):
            self.drop_session(session)
        self._lingering.clear()  # a new router process: nothing lingers

    def stop(self) -> None:
        self.running = False
        self.restart()

    def start(self) -> None:
        self.running = True

    def session_by_b32(self, b32: str) -> FakeSession | None:
        return self.network.sessions.get(b32.lower())
