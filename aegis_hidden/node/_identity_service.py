"""The one owner of this node's identity: keys, the current record, refresh, bindings.

:class:`IdentityService` holds the node's :class:`~aegis_hidden.identity.NodeIdentity`.
Everything else holds the service (:class:`~aegis_hidden.interfaces.IIdentityService`)
and reads :attr:`IdentityService.identity` when it needs the keys or the record,
or subscribes to hear of a new record:

* on its injected clock it re-signs the record once half its lifetime has passed
  (:func:`~aegis_hidden.identity.refresh_due`), so it never lapses;
* transports ask it to bind their addresses (the I2P provider's destination:
  :meth:`IdentityService.bind_i2p_destination`) instead of re-signing from below;
* every change (refresh, binding, an adopted rotation) goes to the subscribers:
  the record keeper pushes the new record to connected peers.

The identity package stays pure (files and signatures, no reactor); this service
is the timed, stateful part around it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ..identity import (
    IdentityError,
    NodeIdentity,
    RecordError,
    bind_i2p_destination,
    refresh,
    refresh_due,
)
from ..interfaces import IIdentityService

#: What a subscriber is told: the new identity and why it changed
#: ("refresh", "i2p-binding" or "adopted").
IdentityCallback = Callable[[NodeIdentity], None]


@implementer(IIdentityService)
class IdentityService(Service):
    """Holds the current identity; refreshes and binds it; tells subscribers."""

    log = Logger()
    name = "identity"

    def __init__(self, identity: NodeIdentity, clock: IReactorTime, *,
                 check_interval: float = 600.0) -> None:
        if check_interval <= 0:
            raise ValueError("check_interval must be > 0")
        self._identity = identity
        self.clock = clock
        self.check_interval = check_interval
        self._subscribers: list[IdentityCallback] = []
        self._loop: LoopingCall | None = None
        #: Records re-signed by the refresh timer, and changes of any kind.
        self.refreshed = 0
        self.changes = 0
        #: Why the last change happened ("refresh", "i2p-binding", "adopted").
        self.last_reason = ""

    @property
    def identity(self) -> NodeIdentity:
        return self._identity

    @property
    def onion(self) -> str:
        return self._identity.onion

    # -- subscribers ------------------------------------------------------------------
    def subscribe(self, callback: IdentityCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _changed(self, identity: NodeIdentity, reason: str) -> None:
        self._identity = identity
        self.changes += 1
        self.last_reason = reason
        for callback in list(self._subscribers):
            try:
                callback(identity)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not starve the rest
                self.log.failure("identity subscriber failed")

    # -- changes ------------------------------------------------------------------------
    def adopt(self, identity: NodeIdentity, reason: str = "adopted") -> None:
        """Take a new identity of the same node (a rotation done elsewhere)."""
        if identity.onion != self._identity.onion:
            raise ValueError("the node's master key cannot change while it runs")
        current = self._identity
        if identity.record == current.record and identity.i2p_binding == current.i2p_binding:
            self._identity = identity
            return
        self._changed(identity, reason)

    def bind_i2p_destination(self, destination: str) -> NodeIdentity:
        """Commit the record to ``destination`` (I2P base64): a transport's request.

        Nothing changes when the record already commits to it. Raises what the
        identity package raises when the new record cannot be written.
        """
        bound = self._identity.i2p_binding
        if bound is not None and bound.destination == destination:
            return self._identity
        new = bind_i2p_destination(self._identity, destination, self.clock.seconds())
        self.log.info("I2P destination bound into identity record {sequence}",
                      sequence=new.record.sequence)
        self._changed(new, "i2p-binding")
        return new

    def refresh_if_due(self) -> bool:
        """Re-sign the record when half its lifetime has passed; True if it did."""
        now = self.clock.seconds()
        if not refresh_due(self._identity, now):
            return False
        try:
            new = refresh(self._identity, now)
        except (IdentityError, RecordError, OSError) as e:
            self.log.error("cannot re-sign this node's record: {error}; trying again in "
                           "{seconds:g}s", error=str(e), seconds=self.check_interval)
            return False
        self.refreshed += 1
        self.log.info("re-signed this node's record: sequence {sequence}, expires {expires}",
                      sequence=new.record.sequence, expires=new.record.expires)
        self._changed(new, "refresh")
        return True

    # -- lifecycle ----------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        if self._loop is None or not self._loop.running:
            self._loop = LoopingCall(self.refresh_if_due)
            self._loop.clock = self.clock
            self._loop.start(self.check_interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
