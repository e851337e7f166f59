"""``TorProvider``: the node's Tor, its identity onion service, and dialing by onion.

A ``MultiService`` child of the node. ``startService`` launches (or connects to)
tor in the background; :meth:`TorProvider.when_ready` fires once tor has
bootstrapped and the identity onion service is published. If tor dies or the
control connection drops, the provider starts a new session (with backoff, so a
tor that keeps dying is not restarted in a tight loop), republishes the same
address and emits ``tor_restarted`` and ``onion_published``; dialers wait for
readiness in the meantime.

The identity onion asks tor for the onion-service proof-of-work defence
(``PoWDefensesEnabled=1``). Whether this tor has it is found out once, on the
first publication: a tor that refuses the keyword (older than 0.4.9, or built
without the ``pow`` module) gets the same ADD_ONION without it, a warning in the
log and ``"pow": "unsupported"`` in :meth:`TorProvider.state`.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._listen import LocalListener, local_server_endpoint
from ..addresses import strip_port
from ..config import Config
from ..identity import ClientAuthKey, NodeIdentity
from ..interfaces import IEventSink, ITransportProvider
from ._backoff import Backoff
from ._bridges import bridge_summary, launch_bridge_lines, parse_getconf
from ._control import (
    BootstrapStatus,
    add_onion_command,
    del_onion_command,
    parse_add_onion_reply,
    parse_bootstrap,
    parse_getinfo_value,
)
from ._dialer import OnionEndpoint
from ._errors import (
    BootstrapTimeout,
    ControlReplyError,
    OnionMismatch,
    TorError,
    TorNotReady,
    TorStartError,
)
from ._launch import TorSession, connect_tor, endpoint_for, launch_tor

Starter = Callable[[], Awaitable[TorSession]]

#: torrc lines a node's own tor needs to be a client of a private test network.
TESTING_CLIENT_LINES = (
    "TestingTorNetwork 1",
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.25",
    "GeoIPFile /nonexistent",
    "GeoIPv6File /nonexistent",
)


def launch_torrc_lines(config: Config,
                       which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The config-derived torrc lines of launch mode (private network, bridges, extra lines).

    Raises :class:`TransportNotFound` when a bridge's transport binary is missing.
    """
    lines: list[str] = []
    if config.tor.testing_network:
        lines += TESTING_CLIENT_LINES
    lines += [f"DirAuthority {line}" for line in config.tor.dir_authorities]
    lines += launch_bridge_lines(config, which)
    lines += list(config.tor.torrc_lines)
    return lines


@implementer(ITransportProvider)
class TorProvider(MultiService):
    """Tor for one node (see the module docstring)."""

    name = "tor"
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: Config,
        identity: NodeIdentity,
        data_dir: Path,
        events: IEventSink,
        *,
        clock: IReactorTime | None = None,
        starter: Starter | None = None,
        on_fatal: Callable[[Failure], None] | None = None,
        restart_backoff: Backoff | None = None,
        stable_after: float = 60.0,
        upload_timeout: float = 30.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.setName("tor")
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self.config = config
        self.identity = identity
        self.data_dir = Path(data_dir)
        self.events = events
        self._starter = starter or self._default_starter
        self._on_fatal = on_fatal
        self._restart_backoff = restart_backoff or Backoff(base=1.0, cap=60.0)
        self._stable_after = stable_after
        self._upload_timeout = upload_timeout
        self._wall = wall
        self._isolation_password = secrets.token_hex(8)
        self._session: TorSession | None = None
        self._waiters: list[Deferred[None]] = []
        self._ready = False
        self._stopping = False
        self._running_task: Deferred[None] | None = None
        self.phase = "stopped"
        self.bootstrap: BootstrapStatus | None = None
        self.error: str | None = None
        self.restarts = 0
        self.published_service_id: str | None = None
        self.published_at: float | None = None
        self._bootstrap_waiter: Deferred[None] | None = None
        self._quick_deaths = 0
        self._extra_onions: dict[str, str] = {}  # service id -> ADD_ONION (holds a key)
        self._client_auth: dict[str, str] = {}  # onion -> ONION_CLIENT_AUTH_ADD (holds a key)
        #: Does this tor take PoWDefensesEnabled on ADD_ONION? None until the first try.
        self.pow_supported: bool | None = None
        #: The identity onion's proof-of-work defence: "enabled", "unsupported" (tor
        #: refused it: published without) or "unknown" (not published yet, or a detached
        #: service from an earlier run was found in place).
        self.pow = "unknown"
        self.pow_refusal: str | None = None  # tor's answer when it refused the keyword
        #: Bridges in use (count and transports only, never addresses): see _bridges.py.
        self.bridges: dict[str, Any] = bridge_summary(config, use_bridges=None)

    # -- ITransportProvider -------------------------------------------------------
    def handles(self, address: str) -> bool:
        return strip_port(address).lower().endswith(".onion")

    def client_endpoint(self, address: str, port: int, *, isolation: str | None = None,
                        attempts: int = 6) -> IStreamClientEndpoint:
        return OnionEndpoint(self._clock, self, address, port, isolation=isolation,
                             timeout=self.config.network.connection_timeout,
                             attempts=attempts)

    def when_ready(self) -> Deferred[None]:
        if self._ready:
            return succeed(None)
        if self.phase == "failed":
            return fail(TorNotReady(f"tor could not start: {self.error}"))
        d: Deferred[None] = Deferred(lambda d: self._waiters.remove(d)
                                     if d in self._waiters else None)
        self._waiters.append(d)
        return d

    def state(self) -> Mapping[str, Any]:
        return {
            "name": "tor",
            "mode": self.config.tor.mode,
            "phase": self.phase,
            "ready": self._ready,
            "bootstrap": self.bootstrap.to_json() if self.bootstrap else None,
            "onion": self.identity.onion,
            "published": self.published_service_id is not None and self._ready,
            "published_service_id": self.published_service_id,
            "published_at": self.published_at,
            "restarts": self.restarts,
            "pow": self.pow,
            "pow_refusal": self.pow_refusal,
            "bridges": self.bridges,
            "socks": self._session.socks if self._session else None,
            "pid": (self._session.process.pid
                    if self._session and self._session.process else None),
            "error": self.error,
        }

    def serve(self, factory: IProtocolFactory) -> IService:
        """Serve ``factory`` on the identity onion's target (``network.listen_address``).

        The listener is this provider's child: it listens while the provider runs.
        Every stream arriving there came through the onion service.
        """
        listener = LocalListener(
            local_server_endpoint(self._reactor, self.config.network.listen_address),
            factory, name="listener")
        listener.setServiceParent(self)
        return listener

    # -- DialContext -------------------------------------------------------------------
    def socks_endpoint(self) -> IStreamClientEndpoint:
        if self._session is None:
            raise TorNotReady("tor is not running")
        return endpoint_for(self._reactor, self._session.socks)

    @property
    def isolation_password(self) -> str:
        return self._isolation_password

    # -- control commands for other services (API onion, tests) ----------------------
    async def command(self, line: str) -> str:
        """Send one control command; a 5xx reply raises :class:`ControlReplyError`."""
        if self._session is None:
            raise TorNotReady("tor is not running")
        from txtorcon import TorProtocolError  # lazy: importing txtorcon installs the reactor

        try:
            reply = await self._session.control.queue_command(line)
        except TorProtocolError as e:
            verb = line.split(" ", 1)[0]  # never echo arguments: they may hold keys
            raise ControlReplyError(f"tor refused {verb}: {e}") from None
        return str(reply)

    async def add_onion(self, expanded_key: bytes, virtual_port: int, target: str, *,
                        client_auth: Sequence[str] = (), detach: bool = False) -> str:
        """Publish another onion service (the API's) from a 64-byte expanded key.

        ``client_auth``: ``descriptor:x25519:`` public keys of the only clients
        allowed. Returns the service id. The service is published again after tor
        restarts, until :meth:`remove_onion`.
        """
        cmd = add_onion_command(expanded_key, virtual_port, target, client_auth=client_auth,
                                detach=detach)
        service_id = parse_add_onion_reply(await self.command(cmd))
        self._extra_onions[service_id] = cmd
        return service_id

    async def remove_onion(self, onion: str) -> None:
        self._extra_onions.pop(onion.lower().removesuffix(".onion"), None)
        await self.command(del_onion_command(onion))

    async def add_client_auth(self, onion: str, key: ClientAuthKey) -> None:
        """Let this tor reach the client-authorized service ``onion`` (client side).

        Added again after tor restarts.
        """
        cmd = key.client_auth_add_command(onion)
        await self.command(cmd)
        self._client_auth[onion.lower()] = cmd

    async def _restore_extras(self) -> None:
        """After a restart: the other onions and client keys this provider had added."""
        for cmd in self._client_auth.values():
            await self.command(cmd)
        for service_id, cmd in list(self._extra_onions.items()):
            try:
                await self.command(cmd)
            except ControlReplyError as e:
                if "collision" not in str(e).lower():  # a detached one survived
                    raise
            self.log.info("onion service {sid}.onion published again", sid=service_id)

    # -- service lifecycle --------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._running_task = Deferred.fromCoroutine(self._first_start())

    async def _default_starter(self) -> TorSession:
        tor = self.config.tor
        if tor.mode == "connect":
            assert tor.control_port is not None
            return await connect_tor(self._reactor, tor.control_port,
                                     password_file=tor.control_password_file,
                                     socks_port=tor.socks_port)
        data = Path(tor.data_directory) if tor.data_directory else self.data_dir / "tor"
        if not data.is_absolute():
            data = self.data_dir / data
        return await launch_tor(self._reactor, self._clock, binary=tor.tor_binary,
                                data_dir=data, torrc_lines=launch_torrc_lines(self.config),
                                socks_port=tor.socks_port)

    async def _first_start(self) -> None:
        try:
            await self._bring_up()
        except CancelledError:
            return
        except TorError as e:
            self._fail(Failure(e))
            return
        except Exception:  # noqa: BLE001 - reported as a fatal start-up error, not swallowed
            self._fail(Failure())
            return

    def _fail(self, failure: Failure) -> None:
        self.phase = "failed"
        session, self._session = self._session, None
        if session is not None and session.process is not None:
            session.process.signal("KILL")
        self.error = failure.getErrorMessage()
        self.log.critical("tor could not start: {error}", error=self.error)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(TorNotReady(f"tor could not start: {self.error}"))
        self.events.emit("tor_failed", error=self.error)
        if self._on_fatal is not None:
            self._on_fatal(failure)

    async def _bring_up(self, lost_at: float | None = None) -> None:
        started = self._wall()
        self.phase = "starting"
        self.bootstrap = None
        session = await self._starter()
        self._session = session
        if self._stopping:
            raise CancelledError()
        self._watch(session)
        if self.config.tor.mode == "connect":
            await self._check_bridges(session)
        self.phase = "bootstrapping"
        await self._wait_bootstrapped(session)
        self.phase = "publishing"
        await self._publish()
        await self._restore_extras()
        self.phase = "ready"
        self.error = None
        self._ready = True
        if lost_at is not None:
            self.restarts += 1
            self.events.emit("tor_restarted", restarts=self.restarts,
                             downtime=round(self._wall() - lost_at, 3),
                             address=self.identity.onion)
        self.log.info("tor ready: onion {onion} published {seconds:.1f}s after start",
                      onion=self.identity.onion, seconds=self._wall() - started)
        self.events.emit("onion_published", address=self.identity.onion,
                         service_id=self.published_service_id, restarts=self.restarts)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _watch(self, session: TorSession) -> None:
        lost = session.lost

        def on_lost(why: str) -> None:
            if self._session is not session:
                return
            if self._ready:
                self._session_lost(why)
                return
            # lost while starting: the start fails (fatal at first, retried on restarts)
            waiter = self._bootstrap_waiter
            if waiter is not None and not waiter.called:
                waiter.errback(TorStartError(f"tor lost while bootstrapping ({why})"))

        lost.addCallback(on_lost)

        def disconnected(_: object) -> None:
            if not lost.called:
                lost.callback("control connection closed")

        session.control.when_disconnected().addBoth(disconnected)
        if session.process is not None:
            process = session.process

            def ended(_: object) -> None:
                if not lost.called:
                    lost.callback("tor process exited")

            process.ended().addCallback(ended)

    def restart(self, why: str = "restart asked") -> bool:
        """Restart tor now, as after a loss: the tor we launched is killed and
        started again (connect mode: our control connection is closed and made
        again, which removes and re-adds a non-detached onion); the identity onion
        is published again, ``tor_restarted`` follows. False (nothing done) while
        tor is not ready: it is already starting or restarting, or has failed.
        """
        if not self._ready or self._stopping or self.phase == "failed":
            return False
        session = self._session
        self._session_lost(why)
        if session is not None and session.process is None:  # connect mode
            transport = getattr(session.control, "transport", None)
            if transport is not None:
                transport.loseConnection()
        return True

    def _session_lost(self, why: str) -> None:
        if self._stopping or self.phase == "failed":
            return
        was_ready = self._ready
        lived = self._wall() - (self.published_at or 0.0)
        self._ready = False
        self.published_service_id = None
        old, self._session = self._session, None
        if old is not None and old.process is not None:
            old.process.signal("KILL")  # control gone but process alive: start afresh
        self.phase = "restarting"
        if was_ready and lived >= self._stable_after:
            self._quick_deaths = 0
        else:
            self._quick_deaths += 1
        self.log.warn("tor lost ({why}); restarting (restart {n})", why=why, n=self.restarts + 1)
        self._running_task = Deferred.fromCoroutine(self._restart())

    async def _restart(self) -> None:
        lost_at = self._wall()
        attempt = 0
        while not self._stopping:
            if self._quick_deaths or attempt:
                delay = self._restart_backoff.delay(self._quick_deaths + attempt - 1)
                self.log.info("waiting {delay:.1f}s before starting tor again", delay=delay)
                try:
                    await deferLater(self._clock, delay, lambda: None)
                except CancelledError:
                    return
            try:
                await self._bring_up(lost_at)
            except CancelledError:
                return
            except Exception as e:  # noqa: BLE001 - logged; the loop must outlive any failure
                self.error = str(e) or type(e).__name__
                self.phase = "restarting"
                self.log.error("tor restart failed: {error}", error=self.error)
                if self._session is not None and self._session.process is not None:
                    self._session.process.signal("KILL")
                self._session = None
                attempt += 1
                continue
            return

    async def _check_bridges(self, session: TorSession) -> None:
        """Connect mode: does the running tor use bridges? Warn if the config wants them."""
        from txtorcon import TorProtocolError  # lazy: importing txtorcon installs the reactor

        try:
            use = parse_getconf(str(await session.control.queue_command("GETCONF UseBridges")),
                                "UseBridges")
            lines = parse_getconf(str(await session.control.queue_command("GETCONF Bridge")),
                                  "Bridge")
        except (TorProtocolError, ControlReplyError) as e:
            self.log.warn("could not ask tor whether it uses bridges: {error}", error=str(e))
            self.bridges = bridge_summary(self.config, use_bridges=None)
            return
        self.bridges = bridge_summary(self.config, use_bridges=bool(use) and use[0] == "1",
                                      running_bridges=lines)
        if self.bridges["warning"]:
            self.log.warn("{warning}", warning=self.bridges["warning"])
            self.events.emit("tor_bridges_unused", configured=self.bridges["configured"])

    async def _wait_bootstrapped(self, session: TorSession) -> None:
        done: Deferred[None] = Deferred()
        self._bootstrap_waiter = done

        def on_status(line: str) -> None:
            try:
                status = parse_bootstrap(line)
            except ControlReplyError as e:
                self.log.warn("ignored a bad status event: {error}", error=str(e))
                return
            if status is not None:
                self._bootstrap_update(status, done)

        _quiet(session.control.add_event_listener("STATUS_CLIENT", on_status))
        reply = await session.control.queue_command("GETINFO status/bootstrap-phase")
        status = parse_bootstrap(parse_getinfo_value(str(reply), "status/bootstrap-phase"))
        if status is None:
            raise ControlReplyError(f"status/bootstrap-phase is not a BOOTSTRAP line: {reply!r}")
        self._bootstrap_update(status, done)
        timeout = self.config.tor.bootstrap_timeout
        done.addTimeout(timeout, self._clock)
        try:
            await done
        except TimeoutError:
            b = self.bootstrap
            where = f"stuck at {b.progress}% ({b.tag}: {b.summary})" if b else "no progress"
            if b is not None and b.warning:
                where += f"; last warning: {b.warning}"
            self._session = None  # its death is expected now: not a restart
            if session.process is not None:
                session.process.signal("KILL")
            raise BootstrapTimeout(
                f"tor did not bootstrap within {timeout:.0f}s, {where}. Check that it can "
                "reach the Tor network (tor.dir_authorities for a private one) or raise "
                "tor.bootstrap_timeout") from None
        finally:
            self._bootstrap_waiter = None

    def _bootstrap_update(self, status: BootstrapStatus, done: Deferred[None]) -> None:
        previous = self.bootstrap
        self.bootstrap = status
        if previous is None or previous.progress != status.progress or status.warning:
            if status.warning:
                self.log.warn("tor bootstrap {progress}% ({tag}): {summary}; warning: {warning}",
                              progress=status.progress, tag=status.tag,
                              summary=status.summary, warning=status.warning)
            else:
                self.log.info("tor bootstrap {progress}% ({tag}): {summary}",
                              progress=status.progress, tag=status.tag,
                              summary=status.summary)
            self.events.emit("tor_bootstrap", progress=status.progress, tag=status.tag,
                             summary=status.summary)
        if status.done and not done.called:
            done.callback(None)

    async def _publish(self) -> None:
        tor = self.config.tor
        target = self.config.network.listen_address
        wanted = self.identity.onion.removesuffix(".onion")
        assert self._session is not None
        control = self._session.control
        uploaded: Deferred[None] = Deferred()

        def on_desc(line: str) -> None:
            words = line.split()
            if words and words[0] == "HS_DESC":
                words = words[1:]
            if len(words) >= 2 and words[0] == "UPLOADED" and words[1] == wanted \
                    and not uploaded.called:
                uploaded.callback(None)

        _quiet(control.add_event_listener("HS_DESC", on_desc))
        try:
            try:
                got = parse_add_onion_reply(await self._add_identity_onion())
            except ControlReplyError as e:
                if tor.persist_onion and "collision" in str(e).lower():
                    got = wanted  # our detached service from an earlier run is still there
                    self.pow = "unknown"  # it keeps whatever that run asked for
                    uploaded.callback(None)
                else:
                    raise
            if got != wanted:
                raise OnionMismatch(f"tor published {got}.onion, expected {self.identity.onion}")
            # Ready means peers can find it: wait for the first descriptor upload.
            uploaded.addTimeout(self._upload_timeout, self._clock)
            try:
                await uploaded
            except TimeoutError:
                self.log.warn("no descriptor upload of {onion} confirmed within {t:.0f}s; "
                              "peers may need a few retries", onion=self.identity.onion,
                              t=self._upload_timeout)
        finally:
            _quiet(control.remove_event_listener("HS_DESC", on_desc))
        self.published_service_id = got
        self.published_at = self._wall()
        self.log.info("onion service {onion} published (virtual port {port} -> {target})",
                      onion=self.identity.onion, port=tor.onion_virtual_port, target=target)

    async def _add_identity_onion(self) -> str:
        """ADD_ONION for the identity onion, with proof-of-work if this tor takes it.

        The first publication tries ``PoWDefensesEnabled=1``; if tor refuses that
        command but takes the same one without the keyword, PoW is unsupported
        here and later publications (restarts) no longer ask. A refusal of both
        is a real error and raises the second one.
        """
        tor = self.config.tor

        def command(pow_defenses: bool) -> str:
            return add_onion_command(self.identity.expanded_secret_key(),
                                     tor.onion_virtual_port, self.config.network.listen_address,
                                     detach=tor.persist_onion, pow_defenses=pow_defenses)

        refusal: ControlReplyError | None = None
        if self.pow_supported is not False:
            try:
                reply = await self.command(command(True))
            except ControlReplyError as e:
                if self.pow_supported or "collision" in str(e).lower():
                    raise
                refusal = e
            else:
                if self.pow_supported is None:
                    self.log.info("onion-service proof-of-work defence enabled on {onion}",
                                  onion=self.identity.onion)
                self.pow_supported = True
                self.pow = "enabled"
                return reply
        reply = await self.command(command(False))
        if refusal is not None:
            self.pow_supported = False
            self.pow_refusal = str(refusal)
            self.log.warn(
                "this tor does not support onion-service proof-of-work ({error}); {onion} is "
                "published without it. It needs tor 0.4.9 or later built with the pow module "
                "(`tor --list-modules` shows `pow: yes`); see docs/tor.md",
                error=self.pow_refusal, onion=self.identity.onion)
        self.pow = "unsupported"
        return reply

    def stopService(self) -> Deferred[None]:
        self._stopping = True
        d: Deferred[Any] | None = super().stopService()
        task = self._running_task
        if task is not None and not task.called:
            task.cancel()
        return Deferred.fromCoroutine(self._shutdown(d))

    async def _shutdown(self, children: Deferred[Any] | None) -> None:
        if children is not None:
            await children
        session, self._session = self._session, None
        self._ready = False
        self.phase = "stopped"
        if session is None:
            return
        if self.published_service_id and not self.config.tor.persist_onion:
            removed = session.control.queue_command(del_onion_command(self.identity.onion))
            removed.addTimeout(5, self._clock)
            from txtorcon import TorProtocolError  # lazy: importing txtorcon installs the reactor
            from txtorcon.torcontrolprotocol import TorDisconnectError

            try:
                await removed
                self.log.info("onion service {onion} removed", onion=self.identity.onion)
            except (TorProtocolError, TorDisconnectError, TimeoutError) as e:
                self.log.warn("could not remove the onion service: {error}",
                              error=str(e) or type(e).__name__)
        self.published_service_id = None
        if session.process is not None:
            ended = session.process.ended()
            session.process.signal("TERM")
            ended.addTimeout(10, self._clock)
            try:
                await ended
            except TimeoutError:
                self.log.warn("tor did not exit on SIGTERM within 10s: killing it")
                session.process.signal("KILL")


def _quiet(result: object) -> None:
    """SETEVENTS replies: a tor that dies meanwhile is handled by the loss watcher."""
    if isinstance(result, Deferred):
        result.addErrback(lambda f: TorProvider.log.debug(
            "event subscription failed: {error}", error=f.getErrorMessage()))

