"""Errors of the SAM v3 client.

Everything the codec raises derives from :class:`SAMError`. A reply whose
``RESULT`` is not ``OK`` becomes a :class:`SAMResultError` subclass named after
the result, carrying the router's ``MESSAGE`` (when it sent one).
"""

from __future__ import annotations


class SAMError(Exception):
    """Base of every error of the SAM client."""


class SAMProtocolError(SAMError):
    """The bridge sent something that is not valid SAM (or not what was expected)."""


class DestinationError(SAMError):
    """A destination or private-key blob (or its base64) is malformed."""


class SAMResultError(SAMError):
    """A reply with ``RESULT`` other than ``OK``.

    ``result`` is the router's result code, ``message`` its ``MESSAGE`` (may be
    empty), ``reply`` the verb and subverb of the reply (``"SESSION STATUS"``).
    """

    result = "UNKNOWN"

    def __init__(self, result: str, message: str = "", reply: str = "") -> None:
        self.result = result
        self.message = message
        self.reply = reply
        text = f"{reply + ': ' if reply else ''}RESULT={result}"
        if message:
            text += f" ({message})"
        super().__init__(text)


class CantReachPeer(SAMResultError):
    """The peer's destination could not be reached (no LeaseSet yet, or it is down)."""


class DuplicatedId(SAMResultError):
    """A session with that ID already exists on the bridge."""


class DuplicatedDest(SAMResultError):
    """The destination is already in use by another session."""


class InvalidId(SAMResultError):
    """No session with that ID (or the ID is not acceptable)."""


class InvalidKey(SAMResultError):
    """The destination or private key given to the bridge is not valid."""


class KeyNotFound(SAMResultError):
    """A NAMING LOOKUP found nothing."""


class PeerNotFound(SAMResultError):
    """The peer's destination is unknown."""


class SAMTimeout(SAMResultError):
    """The router timed out (connecting to a peer, or building tunnels)."""


class ConnectTimeout(SAMTimeout):
    """``STREAM CONNECT`` got no reply within the client's own limit (the socket is closed).

    i2pd answers a CONNECT at once for a cached LeaseSet and after at most ~40 s
    of LeaseSet lookups otherwise; a router whose destination was stopped under
    a live session never answers at all.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__("TIMEOUT", f"no reply to STREAM CONNECT in {seconds:g}s",
                         "STREAM STATUS")
        self.seconds = seconds


class I2PError(SAMResultError):
    """A generic router error; ``message`` says what."""


class NoVersion(SAMResultError):
    """HELLO: the bridge supports none of the versions offered."""


class AlreadyAccepting(SAMResultError):
    """STREAM ACCEPT: another socket is already accepting for the session (SAM < 3.2)."""


class UnknownResult(SAMResultError):
    """A result code this client does not know."""


RESULT_ERRORS: dict[str, type[SAMResultError]] = {
    "CANT_REACH_PEER": CantReachPeer,
    "DUPLICATED_ID": DuplicatedId,
    "DUPLICATED_DEST": DuplicatedDest,
    "INVALID_ID": InvalidId,
    "INVALID_KEY": InvalidKey,
    "KEY_NOT_FOUND": KeyNotFound,
    "PEER_NOT_FOUND": PeerNotFound,
    "TIMEOUT": SAMTimeout,
    "I2P_ERROR": I2PError,
    "NOVERSION": NoVersion,
    "ALREADY_ACCEPTING": AlreadyAccepting,
}


def result_error(result: str, message: str = "", reply: str = "") -> SAMResultError:
    """The typed exception for a non-OK ``RESULT``."""
    return RESULT_ERRORS.get(result, UnknownResult)(result, message, reply)
