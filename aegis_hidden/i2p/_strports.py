"""``i2p:`` endpoint strings for ``clientFromString`` / ``serverFromString``.

Client: ``i2p:<name>.b32.i2p[:port=N][:samHost=127.0.0.1][:samPort=7656][:keyfile=PATH]``
dials a ``.b32.i2p`` / ``.i2p`` name (nothing else) from a STREAM session that
is created on first use (TRANSIENT, or with the key in ``keyfile``).

Server: ``i2p:keyfile=PATH[:samHost=...][:samPort=...]`` accepts streams to
the destination whose private key is in ``keyfile`` (generated and stored 0600
on first use), so the address survives restarts.

Sessions are shared by every endpoint with the same SAM address and key file,
and re-created if the router closes them. The SAM bridge must be on loopback.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint

from ..config import PrivacyError
from ._endpoints import SAMStreamClientEndpoint, SAMStreamServerEndpoint
from ._provider import load_or_generate_key_file
from ._session import SAMSession, create_session, generate_destination

DEFAULT_SAM_HOST = "127.0.0.1"
DEFAULT_SAM_PORT = 7656


class LazySession:
    """A STREAM session made on first use and re-made after the router closed it."""

    def __init__(self, sam: IStreamClientEndpoint, key_file: Path | None,
                 options: dict[str, str | int] | None = None) -> None:
        self.sam = sam
        self._key_file = key_file
        self._options = options
        self._session: SAMSession | None = None
        self._waiters: list[Deferred[SAMSession]] = []
        self._creating = False

    async def __call__(self) -> SAMSession:
        if self._session is not None and not self._session.closed:
            return self._session
        if self._creating:
            d: Deferred[SAMSession] = Deferred()
            self._waiters.append(d)
            return await d
        self._creating = True
        try:
            key = None
            if self._key_file is not None:
                key = load_or_generate_key_file(self._key_file, None)
                if key is None:
                    key = load_or_generate_key_file(self._key_file,
                                                    await generate_destination(self.sam))
            session = await create_session(self.sam, "STREAM", key, options=self._options)
        except BaseException as e:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.errback(e)
            raise
        finally:
            self._creating = False
        self._session = session
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(session)
        return session


_sessions: dict[tuple[str, int, str], LazySession] = {}


def _sam_endpoint(reactor: Any, kwargs: dict[str, str]) -> tuple[IStreamClientEndpoint, str, int]:
    host = kwargs.pop("samHost", DEFAULT_SAM_HOST)
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(host)
    except ValueError:
        raise PrivacyError("samHost", host, "is not a loopback address: SAM carries keys and "
                           "traffic in the clear", "run the SAM bridge on 127.0.0.1") from None
    port = int(kwargs.pop("samPort", DEFAULT_SAM_PORT))
    return TCP4ClientEndpoint(reactor, host, port, timeout=10), host, port


def _session(reactor: Any, kwargs: dict[str, str]) -> LazySession:
    sam, host, port = _sam_endpoint(reactor, kwargs)
    key_file = kwargs.pop("keyfile", "")
    options: dict[str, str | int] = {}
    if "tunnelLength" in kwargs:
        length = int(kwargs.pop("tunnelLength"))
        options = {"inbound.length": length, "outbound.length": length}
    key = (host, port, str(Path(key_file).resolve()) if key_file else "")
    if key not in _sessions or not key_file:
        _sessions[key] = LazySession(sam, Path(key_file) if key_file else None, options or None)
    return _sessions[key]


def _no_leftovers(kwargs: dict[str, str]) -> None:
    if kwargs:
        raise ValueError(f"unknown i2p endpoint option(s): {', '.join(sorted(kwargs))}")


def client_from_string(reactor: Any, *args: str, **kwargs: str) -> SAMStreamClientEndpoint:
    if len(args) != 1 and "host" not in kwargs:
        raise ValueError("i2p client endpoint needs a destination: i2p:<name>.b32.i2p")
    host = args[0] if args else kwargs.pop("host")
    port = int(kwargs.pop("port", "0"))
    session = _session(reactor, kwargs)
    _no_leftovers(kwargs)
    return SAMStreamClientEndpoint(session.sam, session, host, port)


def server_from_string(reactor: Any, *args: str, **kwargs: str) -> SAMStreamServerEndpoint:
    if args:
        raise ValueError("i2p server endpoint takes only key=value options (keyfile=PATH)")
    if "keyfile" not in kwargs:
        raise ValueError("i2p server endpoint needs keyfile=PATH (the destination's key)")
    session = _session(reactor, kwargs)
    _no_leftovers(kwargs)
    return SAMStreamServerEndpoint(reactor, session.sam, session)
