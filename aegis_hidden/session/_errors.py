"""Typed reasons a session ends, and the exceptions that carry them."""

from __future__ import annotations

import enum


class CloseReason(enum.IntEnum):
    """Why a session ended; sent in CLOSE cells and given to ``when_closed``."""

    NORMAL = 0              # a side closed it on purpose
    PROTOCOL_ERROR = 1      # a message that does not parse, or is out of place
    BAD_CELL = 2            # a cell that does not parse (size, magic, padding...)
    TAMPERED = 3            # a sealed cell failed authentication: tampered, replayed,
                            # reordered, or keys disagree (transcript mismatch, downgrade)
    AUTH_FAILED = 4         # a signature or key-confirmation MAC does not verify
    WRONG_IDENTITY = 5      # the peer's record is not the identity that was dialed
    ADDRESS_MISMATCH = 6    # the initiator dialed an address the responder does not own
    VERSION_MISMATCH = 7    # no protocol version in common
    CELL_SIZE_MISMATCH = 8  # the two sides use different cell sizes
    REPLAY = 9              # a ClientHello seen before
    TIMEOUT = 10            # the handshake took longer than allowed
    TRUNCATED = 11          # the stream ended without a CLOSE cell (or inside a cell)
    MESSAGE_TOO_LARGE = 12  # over performance.max_message_size
    CONNECTION_LOST = 13    # the transport went away (reported locally only)
    REVOKED = 14            # the peer's identity is revoked (its revocation was seen)


class SessionError(Exception):
    """A session failed or was closed; ``reason`` says why in a typed way."""

    def __init__(self, reason: CloseReason, detail: str) -> None:
        super().__init__(f"{reason.name.lower()}: {detail}")
        self.reason = reason
        self.detail = detail


class HandshakeError(SessionError):
    """The handshake failed; no session exists and nothing was sent in the clear about why."""


class PinRefused(HandshakeError):
    """The peer's ML-DSA-65 key is not the one pinned for it, and no rotation signed
    by the pinned key vouches for the new one (closes with WRONG_IDENTITY)."""
