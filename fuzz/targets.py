"""One fuzz target per decoder: bytes in, a value or the decoder's typed error out.

Each target is ``run(data: bytes) -> None``. It feeds ``data`` to a decoder the
way the node receives it, swallows only the error(s) that decoder documents,
and checks what comes back. Anything else that escapes (``RecursionError``,
``KeyError``, an ``AssertionError`` from a broken invariant, ...) is a crash.

The same targets run under atheris (``make fuzz``, :mod:`fuzz.run`) and under
hypothesis in the unit suite (``tests/unit/test_fuzz_decoders.py``), so a
reproducer found by one replays in the other.

Where one input drives several decoders or modes, the first byte picks the
mode and the rest is the payload (seeds carry the right first byte).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from google.protobuf.message import DecodeError
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from aegis_hidden.api._token import TokenChecker, load_or_create_token
from aegis_hidden.api._web import ApiResource, Authorizer
from aegis_hidden.config import ConfigError, load_config
from aegis_hidden.events import EventBus
from aegis_hidden.i2p import DestinationError, SAMError
from aegis_hidden.i2p._destination import Destination, PrivateKey, b64decode
from aegis_hidden.i2p._sam import Reply, SAMReader, parse_line
from aegis_hidden.identity import (
    I2PBinding,
    NodeIdentity,
    PinMismatch,
    RecordCache,
    RecordError,
    check_mldsa_change,
    parse_record,
    verify_binding,
    verify_record,
)
from aegis_hidden.identity._keyfile import KeyFileError, encode_key_file, read_key_file
from aegis_hidden.node import EnvelopeError
from aegis_hidden.node._control import ControlError, RecordPush, decode_control, parse_record_push
from aegis_hidden.node._envelope import Ack, Message, decode
from aegis_hidden.session import Closed, CloseReason, IdentityKeys, Session, SessionParams
from aegis_hidden.testing import fake_private_key
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.tor import ClientAuthError, ControlReplyError, SocksError, parse_auth_private
from aegis_hidden.tor import parse_public_key as parse_client_auth_key
from aegis_hidden.tor._control import (
    parse_add_onion_reply,
    parse_bootstrap,
    parse_getinfo_value,
    parse_keywords,
    parse_listeners,
    progress_bar,
)
from aegis_hidden.tor._socks import Socks5Client
from aegis_hidden.wire import (
    CellError,
    Reassembler,
    clear_body_capacity,
    decode_clear,
    decode_inner,
    encode_clear,
    encode_inner,
    fragment,
    handshake_pb2,
)

NOW = 1_800_000_000.0
CELL_SIZES = (256, 514, 996, 1024, 2048)
SESSION_CELL = 256
ENVELOPE_LIMIT = 64 * 1024
#: A seed for every JSON / YAML decoder: nesting deeper than Python's recursion limit.
DEEP = b"[" * 1500


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: The decoder(s) and the only errors they may raise (for the docs and reports).
    contract: str
    max_len: int = 4096


def _strict_json(value: Any, what: str) -> None:
    """``value`` must serialise as standard JSON (no NaN/Infinity)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as e:
        raise AssertionError(f"{what} is not valid JSON once decoded: {e}") from None


def _mode(data: bytes, n: int) -> tuple[int, bytes]:
    return (data[0] % n, data[1:]) if data else (0, b"")


# -------------------------------------------------------------------- cells / frames
def cells(data: bytes) -> None:
    mode, rest = _mode(data, 3)
    size = CELL_SIZES[(rest[0] if rest else 0) % len(CELL_SIZES)]
    body = rest[1:]
    if mode == 0:
        with contextlib.suppress(CellError):
            flags, piece = decode_clear(body, size)
            assert flags in (0, 1) and len(piece) <= clear_body_capacity(size)
    elif mode == 1:
        with contextlib.suppress(CellError):
            _ctype, flags, out = decode_inner(body)
            assert 0 <= flags <= 3 and len(out) <= len(body)
    else:  # frames: [flags][u16 length][piece]... into a reassembler
        r = Reassembler(4096)
        pos = 0
        with contextlib.suppress(CellError):
            while pos + 3 <= len(body):
                flags = body[pos] & 3
                (n,) = struct.unpack_from(">H", body, pos + 1)
                piece = body[pos + 3: pos + 3 + n]
                pos += 3 + n
                whole = r.feed(flags, piece)
                assert whole is None or len(whole) <= 4096


def _cell_seeds() -> list[bytes]:
    import zstandard

    packed = zstandard.ZstdCompressor().compress(b"hello " * 40)
    frames = b"".join(bytes([f]) + struct.pack(">H", len(p)) + p
                      for f, p in fragment(packed, 50, 2))
    return [b"\x00\x00" + encode_clear(256, 1, b"abc"),
            b"\x01\x00" + encode_inner(256, 1, 0, b"hello"),
            b"\x02\x00" + bytes([1]) + struct.pack(">H", 3) + b"abc" + bytes([0, 0, 1]) + b"d",
            b"\x02\x00" + frames]


# -------------------------------------------------------------------- handshake protobuf
_MESSAGES = [handshake_pb2.ClientHello, handshake_pb2.ServerHello, handshake_pb2.Auth,
             handshake_pb2.Finished, handshake_pb2.Close]


def handshake_messages(data: bytes) -> None:
    mode, rest = _mode(data, len(_MESSAGES))
    msg = _MESSAGES[mode]()
    with contextlib.suppress(DecodeError):
        msg.ParseFromString(rest)
        msg.SerializeToString()


@cache
def _pair() -> tuple[NodeIdentity, NodeIdentity]:
    return (memory_identity(NOW, seed=b"\x01" * 32, mldsa_seed=b"\x02" * 32),
            memory_identity(NOW, seed=b"\x03" * 32, mldsa_seed=b"\x04" * 32))


def _handshake_seeds() -> list[bytes]:
    initiator, _ = _session(True)
    hello = initiator.data_to_send()
    clear = decode_clear(hello[:SESSION_CELL], SESSION_CELL)[1]
    return [b"\x00" + clear, b"\x04" + handshake_pb2.Close(version=1, reason=3).SerializeToString()]


# -------------------------------------------------------------------- Session.receive_data
@implementer(ILogObserver)
class _Internal:
    """Catches the traceback Session logs when a bug was turned into PROTOCOL_ERROR."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.failures.append(event["log_failure"].getTraceback())


@cache
def _keys() -> tuple[IdentityKeys, IdentityKeys]:
    """Derived once, as a SessionFactory shares them between its sessions."""
    a, b = _pair()
    return IdentityKeys.of(a), IdentityKeys.of(b)


def _session(initiator: bool) -> tuple[Session, _Internal]:
    a, b = _pair()
    ka, kb = _keys()
    params = SessionParams(cell_size=SESSION_CELL)
    if initiator:
        s = Session(a, params, initiator=True, clock=lambda: NOW, peer_address=b.onion, keys=ka)
    else:
        s = Session(b, params, initiator=False, clock=lambda: NOW, keys=kb)
    seen = _Internal()
    s.log = Logger(observer=seen)
    if initiator:
        s.start()
    return s, seen


def session_receive(data: bytes) -> None:
    """Mode: 0/1 responder, 2/3 initiator; even = raw bytes, odd = framed in clear cells."""
    mode, rest = _mode(data, 4)
    s, seen = _session(initiator=mode >= 2)
    s.data_to_send()
    if mode % 2:
        rest = b"".join(encode_clear(SESSION_CELL, f, p)
                        for f, p in fragment(rest, clear_body_capacity(SESSION_CELL)))
    s.receive_data(rest)
    s.data_to_send()
    events = s.events()
    if seen.failures:
        raise AssertionError("Session turned an internal error into PROTOCOL_ERROR:\n"
                             + seen.failures[0])
    if s.closed:
        assert s.close_reason is not None and isinstance(s.close_reason.reason, CloseReason)
        assert events and isinstance(events[-1], Closed)
    else:
        assert not s.established
    s.connection_lost()
    assert s.closed


def _session_seeds() -> list[bytes]:
    initiator, _ = _session(True)
    hello = initiator.data_to_send()
    responder, _ = _session(False)
    responder.receive_data(hello)
    reply = responder.data_to_send()
    clear_hello = b"".join(decode_clear(hello[i:i + SESSION_CELL], SESSION_CELL)[1]
                           for i in range(0, len(hello), SESSION_CELL))
    return [b"\x00" + hello, b"\x01" + clear_hello, b"\x02" + reply, b"\x02" + reply[:SESSION_CELL]]


# -------------------------------------------------------------------- envelopes
def envelopes(data: bytes) -> None:
    try:
        out = decode(data, ENVELOPE_LIMIT)
    except EnvelopeError:
        return
    assert isinstance(out, Message | Ack)
    if isinstance(out, Message):
        _strict_json(out.body, "envelope body")
        assert math.isfinite(out.created)
    out.encode()


def _envelope_seeds() -> list[bytes]:
    return [Message("0" * 32, NOW, {"type": "chat", "data": {"x": [1, 2.5, "y"]}}, True,
                    "f" * 32).encode(),
            Ack("a" * 32).encode(), DEEP]


# -------------------------------------------------------------------- control messages
def control_messages(data: bytes) -> None:
    """A control message as it arrives in a session (record push), down to its parts."""
    try:
        _kind, payload = decode_control(data)
        push = parse_record_push(payload)
    except ControlError:
        return
    a, _ = _pair()
    cache_ = RecordCache()
    try:
        rec = cache_.accept(push.record, a.onion, NOW)
    except RecordError:
        with contextlib.suppress(RecordError):
            parse_record(push.record)
        return
    if push.binding:
        with contextlib.suppress(RecordError):
            verify_binding(rec, I2PBinding.parse(push.binding))


def _control_seeds() -> list[bytes]:
    a, _ = _pair()
    return [RecordPush(a.record.to_bytes()).encode(),
            RecordPush(a.record.to_bytes(), bytes(32) + b"A" * 520).encode()]


# -------------------------------------------------------------------- SAM
def sam_replies(data: bytes) -> None:
    """Mode 0: one reply line; 1-3: a byte stream (chunks split at 0xFF) in a stream
    mode; 4: an I2P destination / private key blob; 5: I2P base64 text."""
    mode, rest = _mode(data, 6)
    try:
        if mode == 0:
            parse_line(rest.replace(b"\n", b" ")).raise_for_result()
        elif mode <= 3:
            reader = SAMReader()
            if mode > 1:
                reader.stream_pending("CONNECT" if mode == 2 else "ACCEPT")
            for chunk in rest.split(b"\xff"):
                for event in reader.feed(chunk):
                    if isinstance(event, Reply):
                        event.raise_for_result()
        elif mode == 4:
            with contextlib.suppress(DestinationError):
                dest, n = Destination.parse(rest)
                assert 0 < n <= len(rest)
                assert Destination.from_base64(dest.base64) == dest
            PrivateKey.from_bytes(rest)
        else:
            b64decode(rest.decode("latin-1"))
    except SAMError:
        pass


def _sam_seeds() -> list[bytes]:
    key = fake_private_key()
    return [b"\x00HELLO REPLY RESULT=OK VERSION=3.3",
            b"\x00SESSION STATUS RESULT=DUPLICATED_ID MESSAGE=\"already \\\"used\\\"\"",
            b"\x01DATAGRAM RECEIVED DESTINATION=abc SIZE=3\nxyz\xffPING hi\n",
            b"\x02STREAM STATUS RESULT=OK\nhello",
            b"\x03STREAM STATUS RESULT=OK\n" + key.destination.base64.encode() + b" FROM_PORT=1\n",
            b"\x04" + key.destination.raw, b"\x04" + key.raw,
            b"\x05" + key.destination.base64.encode()]


# -------------------------------------------------------------------- Tor control
def tor_control(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(ControlReplyError):
        status = parse_bootstrap(text)
        if status is not None:
            assert 0 <= status.progress <= 100
            progress_bar(status)
            progress_bar(status.to_json())
    with contextlib.suppress(ControlReplyError):
        assert len(parse_add_onion_reply(text)) == 56
    with contextlib.suppress(ControlReplyError):
        parse_listeners(parse_getinfo_value(text, "net/listeners/socks"))
    parse_keywords(text)
    with contextlib.suppress(ClientAuthError):
        parse_client_auth_key(text)
    with contextlib.suppress(ClientAuthError):
        parse_auth_private(text)


def _tor_seeds() -> list[bytes]:
    a, _ = _pair()
    sid = a.onion.removesuffix(".onion")
    return [b'NOTICE BOOTSTRAP PROGRESS=85 TAG=ap_conn SUMMARY="Connecting \\"x\\"" WARNING=w',
            f"ServiceID={sid}\nPrivateKey=ED25519-V3:abc\nOK".encode(),
            b'net/listeners/socks="127.0.0.1:9050" "unix:/run/tor/socks"\nOK',
            b"descriptor:x25519:" + b"A" * 52,
            f"{sid}:descriptor:x25519:{'B' * 52}".encode()]


# -------------------------------------------------------------------- SOCKS
def socks(data: bytes) -> None:
    """Server bytes, cut into chunks at every 0xFE (a server may split anywhere)."""
    m = Socks5Client("x" * 56 + ".onion", 80, "peer", "pwd")
    m.start()
    with contextlib.suppress(SocksError):
        for chunk in data.split(b"\xfe"):
            _, done = m.feed(chunk)
            if done is not None:
                assert isinstance(done.leftover, bytes)
                return


def _socks_seeds() -> list[bytes]:
    return [b"\x05\x02\xfe\x01\x00\x05\x00\x00\x01" + bytes(6) + b"app",
            b"\x05\x02\x01\x00\x05\x00\x00\x03\x05hello\x00\x50",
            b"\x05\x02\x01\x00\x05\xf1\x00\x01", b"\x05\xff"]


# -------------------------------------------------------------------- API bodies
@dataclass
class _Api:
    resource: ApiResource
    token: str


@cache
def _api() -> _Api:
    from aegis_hidden.config import Config
    from aegis_hidden.node import NodeCore
    from aegis_hidden.peers import InlineSQLite
    from aegis_hidden.testing import FakeNetwork, result_of

    root = _scratch() / "api"
    root.mkdir()
    clock = Clock()
    bus = EventBus(now=clock.seconds)
    a, _ = _pair()
    core = NodeCore(Config(), None, str(root), bus, clock, db=InlineSQLite(str(root / "a.db")),
                    local_address=a.onion)
    core.attach_session_factory(FakeNetwork().node(a.onion))
    core.startService()
    result_of(core.when_ready())
    token, _ = load_or_create_token(root / "api_token")
    auth = Authorizer(TokenChecker(root / "api_token"), lambda: None)
    return _Api(ApiResource(core, auth, 4096), token)


_API_ROUTES = [(b"POST", [b"network", b"peers"]), (b"POST", [b"network", b"send"])]


def api_bodies(data: bytes) -> None:
    """A request body to POST /api/network/peers or /send, through the real resource.

    The reply must be a 2xx/4xx (never 5xx) whose body is standard JSON.
    """
    mode, body = _mode(data, len(_API_ROUTES))
    api = _api()
    method, postpath = _API_ROUTES[mode]
    request = DummyRequest(list(postpath))
    request.method = method
    request.path = b"/api/" + b"/".join(postpath)  # type: ignore[attr-defined]
    request.content = io.BytesIO(body)  # type: ignore[attr-defined]
    request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + api.token.encode()])
    request.requestHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    out = api.resource.render(cast(Request, request))
    assert out is NOT_DONE_YET and request.finished, "the API did not answer synchronously"
    code = request.responseCode or 200
    payload = b"".join(request.written)
    assert code < 500, f"HTTP {code}: {payload[:300]!r}"
    try:
        json.loads(payload, parse_constant=_no_constant)
    except ValueError as e:
        raise AssertionError(f"HTTP {code} body is not standard JSON: {e}: {payload[:300]!r}"
                             ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _api_seeds() -> list[bytes]:
    _, b = _pair()
    return [b"\x00" + json.dumps({"action": "add", "peer_address": b.onion}).encode(),
            b"\x00" + json.dumps({"action": "block", "peer_id": b.onion, "duration": 5}).encode(),
            b"\x01" + json.dumps({"target": b.onion, "message": {"type": "t", "data": [1]}}
                                 ).encode(),
            b"\x00" + DEEP, b"\x01" + DEEP]


# -------------------------------------------------------------------- config YAML
@cache
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="aegis-fuzz-"))  # private (0700), one per process
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def config_yaml(data: bytes) -> None:
    path = _scratch() / "config.yaml"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        cfg = load_config(path)
        cfg.to_dict()


def _config_seeds() -> list[bytes]:
    return [b"network:\n  max_connections: 50\n  listen_address: \"127.0.0.1:7701\"\n"
            b"tor:\n  mode: launch\nsecurity:\n  enable_tor: true\n",
            b"i2p:\n  enabled: true\napi:\n  enabled: false\n", b"{}", b"- 1\n- 2\n", DEEP]


# -------------------------------------------------------------------- identity records
def identity_records(data: bytes) -> None:
    """parse_record, verify_record against the real onion, RecordCache, ML-DSA pin check."""
    a, _ = _pair()
    try:
        rec = parse_record(data)
    except RecordError:
        rec = None
    if rec is not None:
        assert rec.to_bytes() == data
        rec.to_json()
        with contextlib.suppress(PinMismatch):
            check_mldsa_change(a.record.mldsa_public, rec)
    try:
        verify_record(data, a.onion, NOW, min_sequence=1)
    except RecordError:
        return
    # Only a record that verifies can get further (accept verifies it again first).
    cache_ = RecordCache()
    first = cache_.accept(data, a.onion, NOW)
    assert cache_.accept(data, a.onion.upper(), NOW) == first


def _record_seeds() -> list[bytes]:
    a, b = _pair()
    return [a.record.to_bytes(), b.record.to_bytes()]


def i2p_bindings(data: bytes) -> None:
    a, _ = _pair()
    try:
        binding = I2PBinding.parse(data)
    except RecordError:
        return
    assert binding.to_bytes() == data
    assert binding.b32.endswith(".b32.i2p")
    with contextlib.suppress(RecordError):
        verify_binding(a.record, binding)


def _binding_seeds() -> list[bytes]:
    return [I2PBinding(fake_private_key().destination.base64, bytes(range(32))).to_bytes()]


# -------------------------------------------------------------------- key files
def key_files(data: bytes) -> None:
    """A key file as found on disk, opened without a passphrase (scrypt is not fuzzed:
    its cost parameters are read from the file and bounded by the reader)."""
    path = _scratch() / "master_key.json"
    path.write_bytes(data)
    with contextlib.suppress(KeyFileError):
        label, secrets = read_key_file(path)
        assert isinstance(label, str)
        assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in secrets.items())


def _keyfile_seeds() -> list[bytes]:
    return [encode_key_file({"ed25519": bytes(32), "mldsa65": bytes(range(32))}, "x.onion"), DEEP]


# -------------------------------------------------------------------- pub/sub RPCs
@cache
def _pubsub() -> tuple[Any, Any]:
    import random

    from aegis_hidden.pubsub import Ed25519Signer, PubSubCore

    rng = random.Random(7)
    clock = [NOW]
    core = PubSubCore(clock=lambda: clock[0], rng=rng, send=lambda *_: None,
                      on_event=lambda _: None, signer=Ed25519Signer.from_rng(rng))
    core.add_peer("peer", outbound=True)
    core.subscribe("t")
    core.subscribe("anon", anonymous=True)
    return core, clock


def pubsub_rpcs(data: bytes) -> None:
    """pubsub.decode, then the decoded RPC through a subscribed PubSubCore (which never raises)."""
    from aegis_hidden.pubsub import PubSubMessageError, decode, encode

    try:
        rpc = decode(data)
    except PubSubMessageError:
        rpc = None
    if rpc is not None:
        assert decode(encode(rpc)) == rpc, "a decoded RPC does not survive a round trip"
    core, clock = _pubsub()
    if "peer" not in core.peers:
        core.add_peer("peer", outbound=True)
    core.receive("peer", data)
    clock[0] += 1.0
    core.heartbeat()


def _pubsub_seeds() -> list[bytes]:
    import random

    from aegis_hidden.pubsub import (
        Ack,
        CatchUp,
        Ed25519Signer,
        Graft,
        IHave,
        IWant,
        Message,
        PeerInfo,
        Prune,
        Rpc,
        Subscription,
        encode,
        signed_body,
    )

    signer = Ed25519Signer.from_rng(random.Random(1))
    body = signed_body("t", bytes(16), b"hello", False, signer.identity, ())
    m = Message("t", b"hello", bytes(16), False, signer.identity, signer.sign(body))
    return [encode(Rpc(subscriptions=(Subscription("t", True),), publish=(m,))),
            encode(Rpc(ihave=(IHave("t", (m.id,)),), iwant=(IWant((m.id,)),),
                       graft=(Graft("t"),), prune=(Prune("t", (PeerInfo("p", b"r"),), 60),))),
            encode(Rpc(stem=(Message("anon", b"x", bytes(16), True, bytes(32), bytes(64)),),
                       acks=(Ack(m.id, signer.identity, bytes(64)),),
                       catch_up=CatchUp("t", 600)))]


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("cells", cells, _cell_seeds,
           "wire.decode_clear / decode_inner / Reassembler.feed -> CellError (MessageTooLarge)"),
    Target("handshake_messages", handshake_messages, _handshake_seeds,
           "handshake_pb2.{ClientHello,ServerHello,Auth,Finished,Close}.ParseFromString "
           "-> DecodeError"),
    Target("session", session_receive, _session_seeds,
           "Session.receive_data never raises; ends open or closed with a CloseReason, "
           "never via an internal error"),
    Target("envelopes", envelopes, _envelope_seeds,
           "node._envelope.decode -> EnvelopeError; a decoded body is standard JSON"),
    Target("control_messages", control_messages, _control_seeds,
           "node._control.decode_control / parse_record_push -> ControlError, then "
           "RecordCache.accept / I2PBinding.parse / verify_binding -> RecordError"),
    Target("sam_replies", sam_replies, _sam_seeds,
           "i2p parse_line / SAMReader.feed / Destination / PrivateKey / b64decode -> SAMError"),
    Target("tor_control", tor_control, _tor_seeds,
           "tor parse_bootstrap / parse_add_onion_reply / parse_getinfo_value -> "
           "ControlReplyError; client-auth parse_public_key / parse_auth_private -> "
           "ClientAuthError"),
    Target("socks", socks, _socks_seeds, "tor Socks5Client.feed -> SocksError"),
    Target("api_bodies", api_bodies, _api_seeds,
           "POST /api/network/peers and /send bodies -> 2xx/4xx with a standard JSON body"),
    Target("config_yaml", config_yaml, _config_seeds, "config.load_config -> ConfigError"),
    Target("identity_records", identity_records, _record_seeds,
           "identity parse_record / verify_record / RecordCache.accept -> RecordError; "
           "check_mldsa_change -> PinMismatch", max_len=12000),
    Target("i2p_bindings", i2p_bindings, _binding_seeds,
           "identity I2PBinding.parse / verify_binding -> RecordError"),
    Target("key_files", key_files, _keyfile_seeds,
           "identity._keyfile.read_key_file -> KeyFileError"),
    Target("pubsub_rpcs", pubsub_rpcs, _pubsub_seeds,
           "pubsub.decode -> PubSubMessageError; PubSubCore.receive never raises"),
]}
