"""``twistd aegis-hidden``: command-line options and the service tree.

``Options`` parses the command line, loads and validates the configuration and
loads (or, on first start, creates) the node identity, so every problem is a
one-line usage error before anything starts. ``makeService`` builds the tree.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path
from random import Random
from typing import IO, Any, cast

import txaio
from twisted.application.service import IService
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from ._secrets import PassphraseSourceError, read_passphrase
from .api import (
    ClientKeyError,
    TokenFileError,
    api_onion_address,
    load_or_create_api_onion_key,
    make_api_service,
)
from .config import Config, ConfigError, PrivacyError, load_config
from .i2p import I2PProvider
from .identity import IdentityError, KeyFileError, NodeIdentity, load_or_create
from .mixing import MixingLayer, MixingService
from .node import (
    DhtService,
    IdentityService,
    NodeCore,
    NodeService,
    PeerRedactingObserver,
    PubSubService,
    StreamService,
    disable_core_dumps,
    is_duress_passphrase,
    loop_trace_kind,
    wipe,
)
from .node._peering import PeeringService
from .peers import DB_FILE_NAME, DatabaseError, check_database, load_database_key
from .session.twisted import SessionFactory
from .tor import TorProvider


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run an aegis-hidden node. With no --config it starts on safe defaults: "
        "state under ~/.aegis-hidden, its own tor, API on 127.0.0.1 only."
    )
    optParameters = [
        ["config", "c", None, "YAML configuration file (default: built-in defaults)."],
        ["data-dir", "d", None, "Directory for the node's state (overrides data_dir)."],
        ["passphrase-file", None, None,
         "File holding the key-file passphrase (or set AEGIS_HIDDEN_PASSPHRASE)."],
        ["log-level", None, None, "debug, info, warn or error (overrides log_level)."],
        ["tor-control-port", None, None,
         "Use a running tor: \"127.0.0.1:PORT\" or \"unix:/path\" (sets tor.mode connect)."],
        ["tor-socks-port", None, None, "SOCKS port of that tor (default: ask tor)."],
        ["listen-address", None, None, "Local target of the onion service (network.*)."],
        ["api-listen", None, None, "Where the management API listens (api.listen_address)."],
    ]
    optFlags = [
        ["no-tor", None, "Do not use Tor (needs I2P enabled in the config)."],
        ["i2p", None, "Enable I2P (i2p.enabled)."],
        ["no-api", None, "Do not serve the management API."],
    ]

    config: Config
    identity: NodeIdentity
    data_dir: Path
    created: bool
    db_key: bytes | None  # the state database's SQLCipher key, handed to the core once

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        mapping = {
            "log-level": "log_level",
            "tor-socks-port": "tor.socks_port",
            "listen-address": "network.listen_address",
            "api-listen": "api.listen_address",
        }
        for opt, key in mapping.items():
            if self[opt] is not None:
                out[key] = self[opt]
        if self["tor-control-port"] is not None:
            out["tor.mode"] = "connect"
            out["tor.control_port"] = self["tor-control-port"]
        if self["no-tor"]:
            out["security.enable_tor"] = False
        if self["i2p"]:
            out["i2p.enabled"] = True
        if self["no-api"]:
            out["api.enabled"] = False
        return out

    def postOptions(self) -> None:
        path = Path(self["config"]) if self["config"] else None
        try:
            self.config = load_config(path, self.overrides())
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.data_dir = self.config.resolve_data_dir(self["data-dir"])
        try:
            passphrase = read_passphrase(
                self["passphrase-file"] or self.config.security.key_passphrase_file
            )
            # The state database is SQLCipher; its key is sealed with the same
            # passphrase. A wrong passphrase, or a damaged, empty or
            # foreign database stops the node here; the file is only read.
            db_path = self.data_dir / DB_FILE_NAME
            if is_duress_passphrase(self.data_dir, passphrase):  # wipe, start as new
                wipe(self.data_dir, self.config.identity_dir(self.data_dir))
            self.db_key = load_database_key(db_path, passphrase)
            check_database(str(db_path), self.db_key)
        except DatabaseError as e:
            raise usage.UsageError(str(e)) from e
        except PassphraseSourceError as e:
            raise usage.UsageError(f"identity: {e}") from None
        try:
            self.identity, self.created = load_or_create(
                self.config.identity_dir(self.data_dir), time.time(), passphrase=passphrase
            )
        except (IdentityError, KeyFileError, OSError) as e:
            raise usage.UsageError(f"identity: {e}") from None


def makeService(options: Options) -> IService:
    """Build the node's service tree from validated options."""
    from twisted.internet import reactor  # the entry point may use the global reactor

    _quiet_libraries(options.config.log_level)
    disable_core_dumps(options.config.security.allow_core_dumps)  # no keys in core files
    # The one owner of the identity (keys, record, refresh, bindings): every layer
    # below gets this service, never a copy of the identity.
    identity = IdentityService(options.identity, reactor)
    node = NodeService(options.config, identity, str(options.data_dir))
    # twistd asks the application for an ILogObserver before using its own file
    # observer (0644, unbounded rotation, every level): the node offers one.
    node.log_observer = node_log_observer(options)
    _add_tor(node, options, reactor)
    # mixing.profile: one cell scheduler for every session (Poisson slots with cover
    # cells, or at once for ``off``), cell counters and the optional trace. In the
    # tree before the core, so it stops after the core has closed the sessions.
    mixing = build_mixing(options.config, options.data_dir, reactor)
    MixingService(mixing).setServiceParent(node)
    core = _add_core_and_api(node, options, reactor)
    _add_sessions(node, core, options, reactor, mixing)
    _add_dht(node, core, options, reactor)
    StreamService(core).setServiceParent(node)  # byte streams on the stream channel
    if options.config.pubsub.enabled:  # topic pub/sub on the pubsub channel of every session
        PubSubService(core, options.config.pubsub, node.identity_service,
                      reactor).setServiceParent(node)
    return node


def _add_dht(node: NodeService, core: NodeCore, options: Options, reactor: Any) -> None:
    """The DHT on the core's rpc channel (``dht.enabled``), its state in the node's
    database, bootstrapped from the onion entries of ``network.bootstrap_nodes``.
    After the core in the tree: it starts once the core is ready."""
    cfg = options.config
    if cfg.dht.enabled:
        DhtService(core, cfg.dht, node.identity_service, reactor,
                   bootstrap=cfg.network.bootstrap_nodes).setServiceParent(node)


def _add_core_and_api(node: NodeService, options: Options, reactor: Any) -> NodeCore:
    """The node core (peers, outbox, messaging) and the management API.

    The session layer plugs in with ``core.attach_session_factory(factory)``;
    until then messages wait in the outbox.
    """
    cfg = options.config
    # The core holds the identity service: its record keeper subscribes to it and
    # pushes every new record (refresh, I2P bind) to connected peers.
    # on_fatal: a core that cannot load its state (damaged database...) stops the node
    # rather than run with no peers and a silently undelivered outbox.
    core = NodeCore(cfg, node.identity_service, str(options.data_dir), node.events, reactor,
                    on_fatal=lambda failure: _fatal(reactor, failure), db_key=options.db_key)
    options.db_key = None  # one holder of the key: the database, until it has opened
    tor = node.namedServices.get("tor")
    for name in ("tor", "i2p"):  # transports added to the tree before us show in /status
        provider = node.namedServices.get(name)
        if provider is not None:
            core.add_transport(provider)
    core.setServiceParent(node)
    if cfg.api.enabled:
        try:
            api = make_api_service(reactor, cfg, core, options.data_dir, tor=tor)
        except (PrivacyError, ClientKeyError, TokenFileError, ValueError, OSError) as e:
            raise SystemExit(f"aegis-hidden: api: {e}") from None
        api.setServiceParent(node)
    return core


def _add_tor(node: NodeService, options: Options, reactor: Any) -> None:
    """The Tor and I2P providers; each serves the sessions on its own listener."""
    cfg = options.config
    if cfg.security.enable_tor:
        # tor uses the master key only (the onion), which never changes while the node runs
        tor = TorProvider(reactor, cfg, node.identity, options.data_dir, node.events,
                          on_fatal=lambda failure: _fatal(reactor, failure))
        tor.setServiceParent(node)
    _add_i2p(node, options, reactor)


def _add_i2p(node: NodeService, options: Options, reactor: Any) -> Any:
    """The I2P provider when ``i2p.enabled``.

    It asks the identity service to bind its destination into the record; the
    router forwards incoming I2P streams to a loopback listener of the provider's
    own (see ``_add_sessions``).
    """
    cfg = options.config
    if not cfg.i2p.enabled:
        return None
    i2p = I2PProvider(reactor, cfg, node.identity_service, options.data_dir, node.events)
    i2p.setServiceParent(node)
    return i2p


def _add_sessions(node: NodeService, core: NodeCore, options: Options, reactor: Any,
                  mixing: MixingLayer) -> None:
    """Post-quantum sessions on network.listen_address, used by the core.

    Every peer connection, in or out, is an authenticated X-Wing session; the
    peering service keeps sessions with the bootstrap peers and writes status.json.
    """
    cfg = options.config
    # The core's transports (tor, i2p). No events=: the core emits peer_connected /
    # peer_disconnected itself. Every session checks peers' records against the
    # core's one record cache and their ML-DSA keys against its pins.
    # Sessions read the identity service's current record (new sessions send it;
    # connected peers get it in a record push from the core).
    sessions = SessionFactory(node.identity_service, core.transports, cfg, reactor,
                              record_cache=core.record_cache, mldsa_pin=core.mldsa_pin,
                              scheduler=mixing.scheduler, trace=mixing.trace,
                              trace_kind=loop_trace_kind)
    core.attach_session_factory(sessions)
    core.attach_mixing(mixing)
    # Transports own their listeners: each serves a server factory made for it, so
    # every accepted session knows the transport it came through (tor: the onion's
    # target at network.listen_address; i2p: a loopback port the router forwards to).
    for provider in core.transports:
        provider.serve(sessions.server_factory(str(provider.name)))
    PeeringService(core, cfg.network.bootstrap_nodes, options.data_dir,
                   reactor).setServiceParent(node)


def build_mixing(cfg: Config, data_dir: Path, clock: Any,
                 random: Random | None = None) -> MixingLayer:
    """The mixing layer ``cfg`` asks for, on ``clock``, drawing from ``random``
    (the system's CSPRNG unless a test passes a seeded one).

    ``mixing.trace_file`` (relative to the data dir) is created 0600 and
    line-buffered, so a test or audit can read it while the node runs.
    """
    stream: IO[str] | None = None
    if cfg.mixing.trace_file:
        path = data_dir / cfg.mixing.trace_file
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            stream = open(fd, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - the layer closes it
        except OSError as e:
            raise SystemExit(f"aegis-hidden: mixing.trace_file: cannot write {path}: {e}") \
                from None
    return MixingLayer.from_config(cfg, clock, random if random is not None else
                                   secrets.SystemRandom(), trace_stream=stream)


def node_log_observer(options: Options) -> ILogObserver | None:
    """The node log as twistd's ``--logfile`` asks, but private, bounded and filtered.

    The file is created (or re-moded) 0600, rotated at ``logging.max_bytes`` with at
    most ``logging.max_files`` old files kept, and events below ``log_level`` are
    dropped before they reach it. ``None`` (twistd's own observer) when there is no
    twistd command line (tests) or when logging to syslog.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return None
    try:
        logfile, nodaemon, syslog = parent["logfile"], parent["nodaemon"], parent.get("syslog")
    except (KeyError, TypeError):
        return None
    if syslog or (logfile == "-" and not nodaemon):  # twistd refuses the latter itself
        return None
    out: IO[Any]
    if logfile == "-" or (nodaemon and not logfile):
        out = sys.stdout
    else:
        cfg = options.config.logging
        log_file = LogFile.fromFullPath(
            logfile or "twistd.log", rotateLength=cfg.max_bytes,
            maxRotatedFiles=cfg.max_files, defaultMode=0o600)
        reopen_on_sigusr1(log_file)
        out = cast(IO[Any], log_file)
    level = LogLevel.levelWithName(options.config.log_level)
    # Peers are named only at debug level: above it, salted hashes. The node's own
    # addresses stay readable (the operator needs the API onion to reach the API).
    own = [options.identity.onion]
    if options.config.api.enabled and options.config.api.onion:
        own.append(api_onion_address(load_or_create_api_onion_key(options.data_dir)))
    return FilteringLogObserver(PeerRedactingObserver(textFileLogObserver(out), own),
                                [LogLevelFilterPredicate(defaultLogLevel=level)])


def reopen_on_sigusr1(log_file: LogFile, schedule: Any = None) -> None:
    """SIGUSR1 reopens the node log at its path (after logrotate moved it away).

    twistd installs its own SIGUSR1 handler (rotate) only for its own log
    observer; without this one, SIGUSR1 would kill the node. ``schedule``: how
    the reopen is run from the signal handler (default: the reactor's
    ``callFromThread``, so it happens between two log writes).
    """
    def handler(signum: int, frame: object) -> None:
        if schedule is not None:
            schedule(log_file.reopen)
            return
        from twisted.internet import reactor  # the entry point's reactor
        reactor.callFromThread(log_file.reopen)  # type: ignore[attr-defined]

    signal.signal(signal.SIGUSR1, handler)


def _quiet_libraries(level: str) -> None:
    """autobahn logs every WebSocket frame at debug through txaio: honour log_level there."""
    txaio.use_twisted()
    txaio.set_global_log_level(level)  # type: ignore[attr-defined]  # set by use_twisted()


def _fatal(reactor: Any, failure: Failure) -> None:
    """A transport that cannot start stops the node with exit status 1 (already logged)."""
    reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
    if reactor.running:
        reactor.stop()
    else:  # failed during start-up, before the reactor runs
        reactor.callWhenRunning(reactor.stop)
