"""The configuration schema: typed sections, defaults, validation, leak refusal.

The section and key names of the original AEGIS network spec are kept
(``network``, ``security``, ``performance``); ``tor``, ``i2p``, ``mixing`` and
``api`` are this node's own. ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..addresses import OnionAddressError, canonical_address, split_optional_port, strip_port
from . import _checks as c
from ._bridges import BridgeLineError, parse_bridge_line, parse_transport
from ._errors import ConfigError, PrivacyError, raise_problems
from ._seed import SEED_KEY_HINTS


def _f(default: Any, check: c.Check, doc: str) -> Any:
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"check": check, "doc": doc})


MiB = 1024 * 1024


def _peer_address(path: str, value: Any) -> str:
    """A peer given as a canonical v3 onion or .b32.i2p address, with an optional ``:port``.

    Returned in canonical form (lower case); aliases such as ``www.<onion>.onion``
    are refused (:func:`aegis_hidden.identity.canonical_address`).
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(path, value, "expected an address such as \"<56 chars>.onion\"")
    host, port = split_optional_port(value)
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ConfigError(path, value, "the port after ':' must be from 1 to 65535")
    try:
        canonical = canonical_address(host)
    except OnionAddressError as e:
        if host.isascii() and host.lower().rstrip(".").endswith((".onion", ".b32.i2p")):
            raise ConfigError(path, value, f"expected a valid v3 onion (or .b32.i2p) address "
                              f"in canonical form ({e})") from None
        raise PrivacyError(
            path, value, "is not an anonymous address: looking it up and dialing it would "
            "reveal this node's IP",
            "list peers only by their v3 .onion or .b32.i2p address (a peer's operator "
            "prints it with: aegis-hidden identity show)",
        ) from None
    return f"{canonical}:{port}" if port else canonical


@dataclass(frozen=True)
class NetworkConfig:
    listen_address: str = _f(
        "127.0.0.1:7701", c.host_port_check(),
        "Local target of the identity onion service (and I2P server tunnel): where peer "
        "connections arrive. Loopback or unix socket only.")
    external_address: str | None = _f(
        None, c.optional(c.text(max_len=600)),
        "Kept for configurations written from the seed spec; must stay null. Peers reach "
        "the node at its onion (and I2P) address, derived from its identity; a node "
        "refuses to start with any other value rather than advertise something it ignores.")
    bootstrap_nodes: tuple[str, ...] = _f(
        [], c.string_list(_peer_address),
        "Peers to contact first, by v3 .onion or .b32.i2p address (optional :port).")
    max_connections: int = _f(50, c.integer(1, 10000), "Most peer sessions at once.")
    connection_timeout: float = _f(
        60.0, c.number(1, 600, unit="seconds"),
        "Give up on a connection (circuit, stream and handshake) after this long.")


@dataclass(frozen=True)
class SecurityConfig:
    encryption: str = _f("AES-256-GCM", c.choice("AES-256-GCM", "ChaCha20-Poly1305"),
                         "AEAD for session cells.")
    key_exchange: str = _f("X-Wing", c.only(
                               "X-Wing",
                               "every session uses the hybrid X-Wing handshake (X25519 + "
                               "ML-KEM-768); a classical ECDH exchange alone would let a "
                               "future quantum computer decrypt recorded traffic; remove the "
                               "key or set it to X-Wing"),
                           "Session key agreement: X-Wing (X25519 + ML-KEM-768), hybrid "
                           "post-quantum. There is no classical-only mode.")
    signature_algorithm: str = _f(
        "Ed25519+ML-DSA-65", c.only(
            "Ed25519+ML-DSA-65",
            "protocol version 1 always signs records and handshakes with both Ed25519 and "
            "ML-DSA-65 (hybrid authentication); remove the key or set it to "
            "Ed25519+ML-DSA-65"),
        "Identity signatures: the only value. Records and handshakes always carry both "
        "an Ed25519 and an ML-DSA-65 signature (hybrid authentication).")
    private_key_file: str = _f(
        "identity/master_key.json", c.text(),
        "Master Ed25519 key file, relative to the data dir. The identity's other files "
        "(subkeys.json, record.bin) live beside it. The file name must be master_key.json.")
    enable_tor: bool = _f(True, c.boolean(), "Publish and dial over Tor.")
    key_passphrase_file: str | None = _f(
        None, c.optional(c.text()),
        "File holding the passphrase that seals the key files (scrypt + "
        "ChaCha20-Poly1305). The AEGIS_HIDDEN_PASSPHRASE environment variable also works. "
        "The same passphrase seals the state database's key (SQLCipher).")
    allow_core_dumps: bool = _f(
        False, c.boolean(),
        "Let the node process write core dumps. Off: RLIMIT_CORE is set to 0 at start, "
        "so a crash never puts keys or message plaintext in a core file.")
    handshake_rate: float = _f(
        10.0, c.number(0.1, 10000, unit="handshakes per second"),
        "Incoming handshakes accepted per second, on average, across all peers (a token "
        "bucket: each one costs a signature). Streams over the limit are closed at once, "
        "before any work, and counted.")
    handshake_burst: int = _f(
        50, c.integer(1, 100000),
        "Incoming handshakes accepted at once after a quiet spell (the token bucket's "
        "size); with handshake_rate it bounds the signing work an anonymous flood can cause.")


@dataclass(frozen=True)
class PerformanceConfig:
    message_batch_size: int = _f(10, c.integer(1, 1000),
                                 "Cells a session seals and writes per transport write "
                                 "(the default scheduler).")
    # Off by default: compression before padding makes the cell count reveal the
    # compressed size, which leaks content (CRIME-style) when a message mixes data an
    # attacker chooses with a secret. 64 MiB is the largest max_message_size: never.
    compression_threshold: int = _f(
        64 * MiB, c.integer(0, 64 * MiB),
        "Compress (zstd) messages larger than this many bytes. The default, 67108864 "
        "(the largest allowed message), means never: compressed sizes show through the "
        "cell count (see docs/configuration.md). Lower it only for traffic that never "
        "mixes secrets with data someone else chooses.")
    connection_pool_size: int = _f(10, c.integer(1, 1000),
                                   "Idle sessions kept open for reuse.")
    max_message_size: int = _f(MiB, c.integer(1024, 64 * MiB),
                               "Largest message accepted or sent, in bytes.")


def _bridge_line(path: str, value: Any) -> str:
    try:
        return parse_bridge_line(value).torrc_value()
    except BridgeLineError as e:
        raise ConfigError(path, value, str(e)) from None


def _transport(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, value, "expected \"NAME\" or \"NAME=/path/to/binary\"")
    try:
        name, binary = parse_transport(value)
    except BridgeLineError as e:
        raise ConfigError(path, value, str(e)) from None
    return name if binary is None else f"{name}={binary}"


@dataclass(frozen=True)
class TorConfig:
    mode: str = _f("launch", c.choice("launch", "connect"),
                   "launch: start our own tor; connect: use a running tor's control port.")
    tor_binary: str | None = _f(None, c.optional(c.text()),
                                "tor executable for launch mode (null: search PATH).")
    control_port: str | None = _f(
        None, c.optional(c.host_port_check()),
        "connect mode: \"127.0.0.1:PORT\" or \"unix:/path\" of tor's control port.")
    control_password_file: str | None = _f(
        None, c.optional(c.text()),
        "connect mode: file with the control password (null: cookie authentication).")
    socks_port: str | None = _f(
        None, c.optional(c.host_port_check()),
        "SOCKS port to dial through (null: ask tor).")
    data_directory: str | None = _f(
        None, c.optional(c.text()),
        "launch mode: tor's DataDirectory (null: <data-dir>/tor).")
    bootstrap_timeout: float = _f(300.0, c.number(5, 3600, unit="seconds"),
                                  "Fail start-up if tor has not bootstrapped by then.")
    onion_virtual_port: int = _f(7701, c.integer(1, 65535),
                                 "Port of the identity onion service that peers dial.")
    persist_onion: bool = _f(False, c.boolean(),
                             "Keep the onion service published after the node stops.")
    dir_authorities: tuple[str, ...] = _f(
        [], c.string_list(c.text(max_len=400)),
        "DirAuthority lines for a private Tor network (aegis-hidden devnet prints them).")
    testing_network: bool = _f(False, c.boolean(),
                               "Set TestingTorNetwork 1 (private test networks only).")
    torrc_lines: tuple[str, ...] = _f([], c.string_list(c.text(max_len=400)),
                                      "Extra torrc lines for launch mode.")
    bridges: tuple[str, ...] = _f(
        [], c.string_list(_bridge_line, max_items=100),
        "Bridge lines as Tor prints them (\"obfs4 IP:PORT FINGERPRINT cert=... iat-mode=0\"): "
        "launch mode reaches Tor only through them; connect mode warns if the running tor "
        "uses none. The node never fetches bridges itself (docs/tor.md).")
    transports: tuple[str, ...] = _f(
        [], c.string_list(_transport, max_items=10),
        "Pluggable-transport clients: NAME (obfs4, meek_lite, snowflake, webtunnel; binary "
        "found on PATH) or NAME=/absolute/path. Empty: whatever tor.bridges need, on PATH.")


@dataclass(frozen=True)
class I2PConfig:
    enabled: bool = _f(False, c.boolean(), "Publish and dial over I2P (SAM v3).")
    sam_address: str = _f("127.0.0.1:7656", c.host_port_check(allow_unix=False),
                          "SAM v3 bridge of the i2p router. Loopback only.")
    launch: bool = _f(False, c.boolean(),
                      "Start our own i2pd if nothing answers at sam_address.")
    i2pd_binary: str | None = _f(None, c.optional(c.text()), "i2pd executable for launch.")
    tunnel_length: int = _f(3, c.integer(0, 7), "Hops per tunnel (inbound and outbound).")
    tunnel_quantity: int = _f(3, c.integer(1, 16), "Tunnels per direction.")


@dataclass(frozen=True)
class MixingConfig:
    # docs/mixing.md: what each profile costs, hides and does not hide.
    cell_size: int = _f(996, c.integer(256, 65535),
                        "Bytes per cell on the wire; every frame is exactly this size (996 = two Tor "
                        "RELAY_DATA payloads; see docs/protocol.md §3.1).")
    padding: bool = _f(True, c.boolean(), "Pad every cell to cell_size.")
    profile: str = _f(
        "balanced", c.choice("off", "low-data", "balanced", "paranoid"),
        "Mixing profile (docs/mixing.md): off (no cover, no delays: tests and trusted links), "
        "low-data (~0.5 kB/s per link), balanced (~2 kB/s per link), paranoid (constant "
        "~10 kB/s per link); each also sets λ_L and μ.")
    cover_rate: float | None = _f(
        None, c.optional(c.number(0, 1000, unit="cells per second")),
        "λ: Poisson slots per second on each link, each one cell (real or cover); 0: no "
        "schedule, cells leave at once. Null: the profile's.")
    loop_rate: float | None = _f(
        None, c.optional(c.number(0, 100, unit="loops per second")),
        "λ_L: loop messages per second, node-wide, sent through connected peers that "
        "return them, to detect peers that drop (a lost loop counts against the peer). "
        "0: no loops. Null: the profile's.")
    mix_rate: float | None = _f(
        None, c.optional(c.number(0, 1000, unit="per second")),
        "μ: traffic relayed for others (rpc answers, pub/sub forwards) waits Exp(μ), "
        "mean 1/μ seconds, in the node's mix pool; the node's own messages never do. 0: "
        "no delay. Null: the profile's.")
    burst: int | None = _f(
        None, c.optional(c.integer(1, 1024)),
        "Most real cells one slot may carry (1: strictly one; more leaks queue depth in "
        "write sizes). Null: the profile's.")
    batch_interval: float = _f(
        0.0, c.number(0, 60, unit="seconds"),
        "Timed batches for forwarded traffic: items whose mix delay ended leave together "
        "at the next multiple of this. 0: no batches (each leaves when its delay ends).")
    batch_size: int = _f(
        8, c.integer(1, 10000),
        "With batch_interval > 0: a batch also leaves as soon as this many items wait.")
    trace_file: str | None = _f(
        None, c.optional(c.text()),
        "Write one JSON line per cell sent or received (time, salted link hash, direction, "
        "size, real/cover/loop) to this file, relative to the data dir (created 0600). For tests "
        "and the privacy audit: the trace is as sensitive as the node. Null: no trace.")


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = _f(True, c.boolean(), "Serve the management API.")
    listen_address: str = _f("127.0.0.1:8470", c.host_port_check(),
                             "Where the REST/WebSocket API listens. Loopback only.")
    onion: bool = _f(False, c.boolean(),
                     "Also serve the API as a client-authorized v3 onion service.")
    onion_virtual_port: int = _f(80, c.integer(1, 65535), "Port of the API onion service.")
    authorized_clients: tuple[str, ...] = _f(
        [], c.string_list(c.text(max_len=200)),
        "descriptor:x25519:<base32> public keys of operators allowed to reach the onion.")
    token_file: str = _f("api_token", c.text(),
                         "Bearer token file, relative to the data dir (created 0600).")
    max_body_size: int = _f(MiB, c.integer(1024, 64 * MiB), "Largest request body accepted.")


@dataclass(frozen=True)
class LoggingConfig:
    max_bytes: int = _f(
        MiB, c.integer(4096, 1024 * MiB),
        "The node log (twistd --logfile, created 0600) is rotated when it reaches this size.")
    max_files: int = _f(
        5, c.integer(1, 1000),
        "Rotated node log files kept (FILE.1 ... FILE.N); older ones are deleted, so the "
        "log never takes more than (max_files + 1) * max_bytes.")
    status_peers: bool = _f(
        False, c.boolean(),
        "List each peer reached in DATA_DIR/status.json (for tests and debugging). Off, "
        "status.json holds counts only: the peer list is the contact graph, and the API "
        "has it.")


@dataclass(frozen=True)
class DhtConfig:
    # docs/dht.md: the parameters, why these defaults, and the threat model.
    enabled: bool = _f(
        True, c.boolean(),
        "Run the Kademlia DHT on the rpc channel (only ever through sessions over Tor or "
        "I2P): publish this node's identity record, find peers by onion address.")
    k: int = _f(20, c.integer(2, 20), "Contacts per k-bucket and holders per record.")
    alpha: int = _f(3, c.integer(1, 16), "Parallel queries per lookup path.")
    disjoint_paths: int = _f(
        4, c.integer(1, 8),
        "d: disjoint lookup paths (S/Kademlia); 1 is plain Kademlia. 4 kept every "
        "simulated lookup against 30 % eclipsing Sybils, at about 4x the messages.")
    quorum: int = _f(
        3, c.integer(1, 20),
        "A value lookup waits for this many holders' answers and keeps the newest "
        "sequence (outvotes a holder replaying an old record).")
    request_timeout: float = _f(
        30.0, c.number(1, 600, unit="seconds"),
        "Give up on one DHT request (including dialling the contact) after this long.")
    refresh_interval: float = _f(
        3600.0, c.number(60, 86400, unit="seconds"),
        "Look up a random id in every k-bucket not used for this long.")
    republish_interval: float = _f(
        3600.0, c.number(60, 86400, unit="seconds"),
        "Store the records held (and this node's own) again at the k closest this often.")
    maintenance_interval: float = _f(
        60.0, c.number(1, 3600, unit="seconds"),
        "How often the node checks what refresh, republish or bootstrap is due, and saves "
        "the routing table and records.")
    record_lifetime: float = _f(
        86400.0, c.number(600, 7 * 86400, unit="seconds"),
        "Expiry of this node's own identity record in the DHT (re-signed at each republish).")
    max_records: int = _f(10000, c.integer(1, 1_000_000), "Most records this node holds.")
    max_records_per_publisher: int = _f(
        64, c.integer(1, 100_000), "Most records held for any one publisher.")
    store_rate: float = _f(
        0.2, c.number(0.001, 1000, unit="STOREs per second"),
        "STOREs accepted per peer per second, on average (a token bucket per peer).")
    store_burst: int = _f(10, c.integer(1, 100_000),
                          "STOREs accepted from one peer at once (the bucket's size).")
    puzzle_bits: int = _f(
        16, c.integer(0, 24),
        "S/Kademlia's puzzle: a contact enters the routing table, is asked in lookups and "
        "may STORE only with a nonce whose SHA-256 with its id starts with this many zero "
        "bits (about 2^bits hashes per id: 16 took 0.16 s on average on the test machine, "
        "20 about 4 s; benchmarks/dht_puzzle.py). Every node of a network needs the same "
        "value; 0: no puzzle.")
    mailbox_after: float = _f(
        600.0, c.number(0, 86400, unit="seconds"),
        "A message its peer has not acknowledged this long after it was queued is, at its "
        "next failed attempt, also left in the peer's DHT mailbox, sealed to the peer's "
        "X-Wing key (it stays in the outbox too; messages up to 16 KiB). 0: never.")
    mailbox_ttl: float = _f(
        172800.0, c.number(3600, 7 * 86400, unit="seconds"),
        "How long this node holds letters left in other nodes' mailboxes. Longer than the "
        "de-duplication window (2 days) brings nothing: an older message is dropped.")
    mailbox_quota: int = _f(
        262144, c.integer(32768, 16 * MiB),
        "Bytes of letters this node holds for one mailbox key (one recipient, one day).")
    mailbox_days: int = _f(
        2, c.integer(0, 7),
        "At start-up the node collects today's mailbox and this many days before; at "
        "every maintenance tick, today's and yesterday's.")
    exchange_i2p: bool = _f(
        False, c.boolean(),
        "Offer this node's I2P binding (its I2P destination) in DHT peer exchange, so peers "
        "pass it on with its record and strangers can reach it over I2P; it links the "
        "node's Tor and I2P presences for anyone it reaches (docs/identity.md). Bindings "
        "other nodes offered this way are passed on whatever this says.")


@dataclass(frozen=True)
class PubSubConfig:
    # docs/pubsub.md: the protocol, its parameters and how the node runs it.
    enabled: bool = _f(
        True, c.boolean(),
        "Run topic pub/sub on the pubsub channel of every live session (gossipsub-style mesh; "
        "normal topics signed by this node's Ed25519 + ML-DSA-65 identity).")
    d: int = _f(6, c.integer(1, 64), "Mesh degree D: peers per topic mesh.")
    d_lo: int = _f(4, c.integer(1, 64), "Below this many mesh peers, the heartbeat grafts up to D.")
    d_hi: int = _f(9, c.integer(1, 128), "Above this many mesh peers, the heartbeat prunes to D "
                   "(and a GRAFT from a peer this node did not dial is refused at this many).")
    heartbeat: float = _f(1.0, c.number(0.1, 60, unit="seconds"),
                          "Mesh upkeep, gossip and timers run this often.")
    history: float = _f(
        600.0, c.number(10, 86400, unit="seconds"),
        "Messages kept per topic for IWANT and catch-up (also how long ids are remembered: "
        "1.5x this).")
    max_topics: int = _f(64, c.integer(1, 10_000),
                         "Most topics this node subscribes to; as many again may be hosted "
                         "as a rendezvous point for others.")
    rendezvous: int = _f(
        3, c.integer(1, 20),
        "Rendezvous points per topic: a subscriber dials the nodes this many closest to the "
        "topic's DHT id, and such a node relays the topic for them (docs/pubsub.md).")
    broadcast: bool = _f(
        True, c.boolean(),
        "Subscribe to the network-wide broadcast topic (pubsub.broadcast_topic) and relay it, "
        "within the rate limits below; its messages arrive as message_received events with "
        "\"broadcast\": true.")
    broadcast_topic: str = _f("aegis-hidden/broadcast", c.text(max_len=128),
                              "The broadcast topic's name (every node of one network must "
                              "use the same).")
    broadcast_rate: float = _f(
        1.0, c.number(0.01, 600, unit="messages per minute"),
        "Broadcasts one publisher may send (token bucket, refilled at this rate); a relayed "
        "message over it is dropped and its forwarding peer gets a behaviour penalty.")
    broadcast_burst: int = _f(3, c.integer(1, 1000),
                              "Broadcasts one publisher may send at once (the bucket's size).")
    broadcast_peer_rate: float = _f(
        30.0, c.number(0.1, 6000, unit="messages per minute"),
        "Broadcast messages taken from one forwarding peer (token bucket, burst of "
        "pubsub.broadcast_peer_burst); over it: dropped, behaviour penalty.")
    broadcast_peer_burst: int = _f(10, c.integer(1, 10_000),
                                   "Broadcast messages one forwarding peer may send at once.")
    broadcast_max_bytes: int = _f(
        2048, c.integer(64, 65536),
        "Largest broadcast payload (bytes of JSON); larger ones are refused when published "
        "and dropped with a behaviour penalty when relayed.")


@dataclass(frozen=True)
class StreamsConfig:
    # docs/streams.md: flow control, and what each limit bounds.
    window: int = _f(
        256 * 1024, c.integer(1024, 64 * MiB),
        "Bytes a peer may send on one stream ahead of this node's reading (the credit "
        "window): at most one window per stream is in flight, so window x "
        "max_streams_per_peer bounds what one peer can make this node hold. At least "
        "streams.chunk.")
    send_buffer: int = _f(
        256 * 1024, c.integer(0, 64 * MiB),
        "Bytes a stream takes from the application beyond the peer's credit before "
        "writes return 0 (backpressure).")
    chunk: int = _f(
        8192, c.integer(512, 65536),
        "Largest DATA payload: one bulk message on the session, so the most a small "
        "message waits behind stream data (8192: 9 cells of 996 bytes).")
    max_streams_per_peer: int = _f(
        16, c.integer(1, 1024),
        "Open streams per peer, both directions together; an OPEN beyond it is reset "
        "(\"too many streams\") and POST /api/network/streams answers 429.")


@dataclass(frozen=True)
class Config:
    data_dir: str | None = _f(None, c.optional(c.text()),
                              "Where the node keeps its state (null: ~/.aegis-hidden).")
    log_level: str = _f("info", c.choice("debug", "info", "warn", "error"), "Log level.")
    network: NetworkConfig = field(default_factory=NetworkConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    tor: TorConfig = field(default_factory=TorConfig)
    i2p: I2PConfig = field(default_factory=I2PConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    dht: DhtConfig = field(default_factory=DhtConfig)
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)

    def resolve_data_dir(self, override: str | None = None) -> Path:
        chosen = override or self.data_dir
        return Path(chosen).expanduser() if chosen else Path.home() / ".aegis-hidden"

    def identity_dir(self, data_dir: Path) -> Path:
        return (data_dir / self.security.private_key_file).parent

    def to_dict(self) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            return v

        return conv(self)  # type: ignore[no-any-return]


SECTIONS = {"network": NetworkConfig, "security": SecurityConfig,
            "performance": PerformanceConfig, "tor": TorConfig, "i2p": I2PConfig,
            "mixing": MixingConfig, "api": ApiConfig, "logging": LoggingConfig,
            "dht": DhtConfig, "pubsub": PubSubConfig, "streams": StreamsConfig}


def _build(cls: type[Any], path: str, raw: Any, problems: list[ConfigError],
           failed: set[str]) -> Any:
    """``cls`` from ``raw``: every bad value is added to ``problems`` (its key to
    ``failed``) and left at its default, so one pass finds them all."""
    known = [f.name for f in dataclasses.fields(cls)]
    values, unknown = c.mapping_keys(path, raw, known)
    problems += [_with_hint(e) for e in unknown]
    if raw is not None and not isinstance(raw, dict):
        failed.add(path)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        key = f"{path}.{f.name}" if path else f.name
        sub = SECTIONS.get(f.name) if not path else None
        if sub is not None:
            kwargs[f.name] = _build(sub, key, values[f.name], problems, failed)
            continue
        try:
            kwargs[f.name] = f.metadata["check"](key, values[f.name])
        except ConfigError as e:
            problems.extend(e.problems)
            failed.add(key)
    return cls(**kwargs)


def _with_hint(e: ConfigError) -> ConfigError:
    """An unknown key with the seed spec's meaning gets the hint for what it became."""
    hint = SEED_KEY_HINTS.get(e.path)
    return e if hint is None else ConfigError(e.path, e.value, f"unknown key: {hint}")


def _cross_checks(cfg: Config, failed: set[str]) -> Iterator[ConfigError]:
    """Checks across keys; one is skipped when a key it reads already failed alone
    (it would see the default in its place)."""

    def ok(*keys: str) -> bool:
        return not any(k in failed or k.split(".")[0] in failed for k in keys)

    if ok("network.listen_address"):
        host, _ = c.split_host_port("network.listen_address", cfg.network.listen_address)
        if not c.is_loopback(host):
            yield PrivacyError(
                "network.listen_address", cfg.network.listen_address,
                "listens on a clearnet interface, so anyone on that network could reach the "
                "node directly and learn who runs it",
                "use a loopback address such as \"127.0.0.1:7701\" (peers reach the node "
                "through its onion service) or a \"unix:/path\" socket")
    ext = cfg.network.external_address
    if ext is not None and ok("network.external_address"):
        bare = strip_port(ext)
        if not bare.lower().endswith((".onion", ".i2p")):
            yield PrivacyError(
                "network.external_address", ext,
                "is not an anonymous address: advertising it would tell peers where the "
                "node is", "remove the key or set it to null: the node's .onion address, derived "
                "from its identity, is its only address")
        else:
            yield ConfigError(
                "network.external_address", ext,
                "does nothing: peers reach this node at the onion (and I2P) address derived "
                "from its identity, which it proves in every handshake; remove the key or "
                "set it to null")
    if ok("security.enable_tor", "i2p.enabled") and (
            not cfg.security.enable_tor and not cfg.i2p.enabled):
        yield PrivacyError(
            "security.enable_tor", False,
            "with i2p.enabled also false leaves no anonymous network, so every peer "
            "connection would be in the clear",
            "set security.enable_tor: true or i2p.enabled: true")
    if ok("api.listen_address"):
        api_host, _ = c.split_host_port("api.listen_address", cfg.api.listen_address)
        if not c.is_loopback(api_host):
            yield PrivacyError(
                "api.listen_address", cfg.api.listen_address,
                "exposes the management API on a clearnet interface",
                "bind it to 127.0.0.1 and set api.onion: true to reach it remotely through a "
                "client-authorized onion service")
    for key, value in (("tor.control_port", cfg.tor.control_port),
                       ("tor.socks_port", cfg.tor.socks_port),
                       ("i2p.sam_address", cfg.i2p.sam_address)):
        if value is None or not ok(key):
            continue
        h, _ = c.split_host_port(key, value)
        if not c.is_loopback(h):
            yield PrivacyError(
                key, value,
                "is not on this machine: the traffic to it (and its authentication) "
                "crosses the network unencrypted",
                "run the daemon locally and give a 127.0.0.1 address or a unix socket")
    if ok("pubsub.d", "pubsub.d_lo", "pubsub.d_hi") and not (
            cfg.pubsub.d_lo <= cfg.pubsub.d <= cfg.pubsub.d_hi):
        yield ConfigError("pubsub.d", cfg.pubsub.d,
                          f"the mesh degrees must satisfy d_lo <= d <= d_hi (here "
                          f"{cfg.pubsub.d_lo}, {cfg.pubsub.d}, {cfg.pubsub.d_hi})")
    if ok("streams.window", "streams.chunk") and cfg.streams.window < cfg.streams.chunk:
        yield ConfigError("streams.window", cfg.streams.window,
                          f"expected at least one chunk (streams.chunk: {cfg.streams.chunk} "
                          "bytes)")
    if ok("tor.mode", "tor.control_port", "security.enable_tor") and (
            cfg.tor.mode == "connect" and cfg.tor.control_port is None
            and cfg.security.enable_tor):
        yield ConfigError("tor.control_port", None,
                          "tor.mode \"connect\" needs the control port of a running tor")
    if ok("tor.transports", "tor.bridges"):
        listed = {parse_transport(t)[0] for t in cfg.tor.transports}
        for i, line in enumerate(cfg.tor.bridges):
            used = parse_bridge_line(line).transport
            if listed and used is not None and used not in listed:
                yield ConfigError(f"tor.bridges[{i}]", line,
                                  f"its transport {used!r} is not in tor.transports; add it "
                                  "there")
    if ok("i2p.enabled", "network.listen_address") and (
            cfg.i2p.enabled and cfg.network.listen_address.startswith("unix:")):
        yield ConfigError("network.listen_address", cfg.network.listen_address,
                          "with i2p.enabled the I2P router forwards peer streams over TCP "
                          "(SAM STREAM FORWARD): use a loopback \"127.0.0.1:PORT\"")
    if ok("security.private_key_file") and (
            Path(cfg.security.private_key_file).name != "master_key.json"):
        yield ConfigError("security.private_key_file", cfg.security.private_key_file,
                          "the file name must be master_key.json (the directory is free); "
                          "it is the node's Ed25519 identity key, which aegis-hidden creates "
                          "itself: a TLS key such as key.pem has no use here")


def parse_config(raw: Any, source: str = "") -> Config:
    """Validate a mapping (parsed YAML) into a :class:`Config`.

    Every problem is found in one pass: one raises itself (a :class:`ConfigError`
    or :class:`PrivacyError`), several raise one :class:`ConfigProblems` listing
    them all, each with its key path and fix.
    """
    problems: list[ConfigError] = []
    failed: set[str] = set()
    cfg = _build(Config, "", raw, problems, failed)
    if not (raw is not None and not isinstance(raw, dict)):
        problems += _cross_checks(cfg, failed)
    raise_problems(sorted(problems, key=_schema_order), source)
    return cfg  # type: ignore[no-any-return]


def _schema_order(problem: ConfigError) -> tuple[int, int, str]:
    """Problems listed in the order of the documented keys (unknown keys last in
    their section)."""
    head, _, rest = problem.path.partition(".")
    names = [f.name for f in dataclasses.fields(Config)]
    if head not in names:
        return (len(names), 0, problem.path)
    sub = SECTIONS.get(head)
    if sub is None or not rest:
        return (names.index(head), -1, problem.path)
    keys = [f.name for f in dataclasses.fields(sub)]
    name = rest.split("[", 1)[0]
    return (names.index(head), keys.index(name) if name in keys else len(keys), problem.path)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML file (or nothing: all defaults), apply dotted-path overrides, validate."""
    raw: Any = {}
    source = ""
    if path is not None:
        source = str(path)
        raw = read_yaml(path)
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError("(top level)", raw, "expected a mapping of keys to values", source)
        raw = _apply_overrides(raw, overrides)
    return parse_config(raw, source)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a configuration file ({} for an empty one), or a
    :class:`ConfigError` saying why it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("(file)", str(path), "the configuration file does not exist"
                          ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("(file)", str(path), f"cannot read it: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError("(file)", str(path), "it is nested too deeply to be a "
                          "configuration file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError("(file)", str(path),
                          f"it is not valid YAML ({where}: {getattr(e, 'problem', e)})"
                          ) from None
    return {} if raw is None else raw


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return out


def describe() -> list[tuple[str, Any, str]]:
    """(key path, default, doc) of every setting, for docs and ``config defaults``."""
    rows: list[tuple[str, Any, str]] = []
    defaults = Config().to_dict()
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            for g in dataclasses.fields(SECTIONS[f.name]):
                rows.append((f"{f.name}.{g.name}", defaults[f.name][g.name], g.metadata["doc"]))
        else:
            rows.append((f.name, defaults[f.name], f.metadata["doc"]))
    return rows
