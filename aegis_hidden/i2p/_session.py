"""SAM sessions: one control socket each, alive as long as that socket is open.

``SESSION CREATE`` with ``STYLE=STREAM`` (SAM 3.0/3.1) or, when the bridge
agreed to 3.3, ``STYLE=PRIMARY`` plus ``SESSION ADD`` of the subsessions.
Repliable datagrams travel on a DATAGRAM session's control socket
(``DATAGRAM SEND`` out, ``DATAGRAM RECEIVED`` in), so no UDP socket is needed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from . import _sam
from ._destination import (
    SIGNATURE_TYPE_EDDSA_SHA512_ED25519,
    Destination,
    PrivateKey,
    is_b32_address,
)
from ._errors import InvalidKey, KeyNotFound, SAMProtocolError
from ._protocol import SAMSocketProtocol, open_sam_socket
from ._sam import DatagramReceived, RawReceived


def new_session_id(prefix: str = "aegis") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def supports_primary(version: str | None) -> bool:
    return version is not None and _sam.version_tuple(version) >= (3, 3)


async def generate_destination(sam: IStreamClientEndpoint,
                               signature_type: int = SIGNATURE_TYPE_EDDSA_SHA512_ED25519,
                               ) -> PrivateKey:
    """``DEST GENERATE``: a new private key, checked against its public part."""
    proto = await open_sam_socket(sam)
    try:
        reply = await proto.command(_sam.dest_generate(signature_type))
    finally:
        proto.close()
    key = PrivateKey.from_base64(reply.require("PRIV"))
    pub = Destination.from_base64(reply.require("PUB"))
    if pub != key.destination:
        raise SAMProtocolError("DEST GENERATE: PUB is not the destination inside PRIV")
    if key.destination.signature_type != signature_type:
        raise SAMProtocolError(f"DEST GENERATE: asked for signature type {signature_type}, "
                               f"got {key.destination.signature_type}")
    return key


class SAMSession:
    """A live session. ``stream_id`` is the ID to name in STREAM commands."""

    log = Logger()

    def __init__(self, control: SAMSocketProtocol, session_id: str, style: str,
                 key: PrivateKey, stream_id: str | None = None) -> None:
        self.control = control
        self.id = session_id
        self.style = style
        self.key = key
        self.stream_id = stream_id or session_id
        self.version = control.version or _sam.MIN_VERSION
        self._receivers: list[Callable[[DatagramReceived | RawReceived], None]] = []
        self._names: dict[str, str] = {}
        control.on_datagram = self._datagram

    @property
    def destination(self) -> Destination:
        return self.key.destination

    @property
    def closed(self) -> bool:
        return self.control.closed

    def when_closed(self) -> Deferred[None]:
        return self.control.when_lost()

    def close(self) -> None:
        """Close the control socket: the router removes the session and its tunnels."""
        self.control.close()

    async def lookup(self, name: str) -> Destination:
        """``NAMING LOOKUP`` on this session (``ME`` is this session's destination).

        A ``.b32.i2p`` name is resolved by fetching its LeaseSet from the
        netDb, so it fails while the owner has not published one yet (or is
        gone). i2pd 2.45 answers that case ``INVALID_KEY``, Java I2P
        ``KEY_NOT_FOUND``; for a well-formed b32 name both raise
        :class:`KeyNotFound` here, which callers may retry, and
        :class:`InvalidKey` is left for names that are malformed.
        """
        try:
            reply = await self.control.command(_sam.naming_lookup(name))
        except InvalidKey as e:
            if not is_b32_address(name):
                raise
            raise KeyNotFound(
                "KEY_NOT_FOUND", f"no LeaseSet for {name} in the netDb yet (router said {e.result})",
                e.reply) from e
        return Destination.from_base64(reply.require("VALUE"))

    # ---------------------------------------------------------------- datagrams

    def on_datagram(self, receiver: Callable[[DatagramReceived | RawReceived], None]
                    ) -> Callable[[], None]:
        self._receivers.append(receiver)
        return lambda: self._receivers.remove(receiver) if receiver in self._receivers else None

    def _datagram(self, event: DatagramReceived | RawReceived) -> None:
        for receiver in list(self._receivers):
            receiver(event)

    async def send_datagram(self, destination: str, payload: bytes) -> None:
        """Send one repliable datagram to a destination (base64) or ``.b32.i2p`` name."""
        if self.style not in ("DATAGRAM", "RAW"):
            raise SAMProtocolError(f"a {self.style} session cannot send datagrams")
        if is_b32_address(destination) or destination.lower().endswith(".i2p"):
            cached = self._names.get(destination.lower())
            if cached is None:
                cached = (await self.lookup(destination)).base64
                self._names[destination.lower()] = cached
            destination = cached
        self.control.send_raw(_sam.datagram_send(destination, payload,
                                                 raw=self.style == "RAW"))


async def create_session(
    sam: IStreamClientEndpoint,
    style: str,
    key: PrivateKey | None,
    *,
    session_id: str | None = None,
    options: Mapping[str, str | int] | None = None,
    max_version: str = _sam.MAX_VERSION,
) -> SAMSession:
    """Open a control socket and create a session on it (see the module docstring).

    ``key`` None means TRANSIENT (the router makes a type-7 key). For STYLE=STREAM
    on a 3.3 bridge the session is a PRIMARY with one STREAM subsession. Fails
    with the typed error of the router's reply (DUPLICATED_DEST...).
    """
    session_id = session_id or new_session_id()
    control = await open_sam_socket(sam, max_version=max_version)
    try:
        dest = key.base64 if key is not None else "TRANSIENT"
        if style == "STREAM" and supports_primary(control.version):
            reply = await control.command(
                _sam.session_create("PRIMARY", session_id, dest, options=options))
            sub_id = f"{session_id}-s"
            await control.command(_sam.session_add("STREAM", sub_id, options=None))
            stream_id: str | None = sub_id
        else:
            reply = await control.command(
                _sam.session_create(style, session_id, dest, options=options))
            stream_id = None
        got = PrivateKey.from_base64(reply.require("DESTINATION"))
        if key is not None and got.destination != key.destination:
            raise SAMProtocolError("SESSION CREATE came back with another destination")
    except BaseException:
        control.close()
        raise
    return SAMSession(control, session_id, style, got, stream_id)
