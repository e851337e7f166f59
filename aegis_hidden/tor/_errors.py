"""Typed errors of the Tor transport: each names what went wrong and what to do."""

from __future__ import annotations


class TorError(Exception):
    """Base class of every error raised by :mod:`aegis_hidden.tor`."""


class TorNotFound(TorError):
    """No tor executable: launch mode cannot start."""


class TorStartError(TorError):
    """tor exited, or its control port never appeared, while starting."""


class BootstrapTimeout(TorError):
    """tor did not reach 100% bootstrap within ``tor.bootstrap_timeout``."""


class ControlReplyError(TorError):
    """tor's control port sent a reply we cannot use (malformed or an error code)."""


class OnionMismatch(TorError):
    """tor published a service whose address is not the identity's onion."""


class TorNotReady(TorError):
    """The provider is stopped or failed, so nothing can be dialed."""


class DialTimeout(TorError):
    """A connection through Tor did not complete within the connect timeout."""


class SocksError(TorError):
    """The SOCKS conversation with tor failed.

    ``retryable`` says whether trying again later can help (a descriptor not yet
    published can; a missing client-authorization key cannot).
    """

    code: int | None = None
    retryable = False
    meaning = "SOCKS protocol failure"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        text = self.meaning if self.code is None else f"{self.meaning} (SOCKS reply 0x{self.code:02X})"
        super().__init__(f"{text}: {detail}" if detail else text)


class SocksProtocolError(SocksError):
    """The SOCKS server's bytes do not follow RFC 1928/1929."""

    meaning = "malformed SOCKS reply"


class SocksAuthRejected(SocksError):
    """tor refused the username/password method used for stream isolation."""

    meaning = "SOCKS server refused username/password authentication (isolation)"


class SocksReplyError(SocksError):
    """A SOCKS5 CONNECT reply with a failure code; subclasses per code."""

    meaning = "SOCKS request failed"


class GeneralFailure(SocksReplyError):
    code = 0x01
    meaning = "general SOCKS server failure"
    retryable = True


class ConnectionNotAllowed(SocksReplyError):
    code = 0x02
    meaning = "connection not allowed by ruleset"
    retryable = False


class NetworkUnreachable(SocksReplyError):
    code = 0x03
    meaning = "network unreachable"
    retryable = True


class HostUnreachable(SocksReplyError):
    code = 0x04
    meaning = "host unreachable"
    retryable = True


class ConnectionRefused(SocksReplyError):
    code = 0x05
    meaning = "connection refused by the destination"
    retryable = True


class TtlExpired(SocksReplyError):
    code = 0x06
    meaning = "TTL expired (tor: the circuit timed out)"
    retryable = True


class CommandNotSupported(SocksReplyError):
    code = 0x07
    meaning = "command not supported"
    retryable = False


class AddressTypeNotSupported(SocksReplyError):
    code = 0x08
    meaning = "address type not supported"
    retryable = False


class OnionDescriptorNotFound(SocksReplyError):
    code = 0xF0
    meaning = "onion service descriptor not found (not published yet, or the service is offline)"
    retryable = True


class OnionDescriptorInvalid(SocksReplyError):
    code = 0xF1
    meaning = "onion service descriptor is invalid"
    retryable = True


class OnionIntroFailed(SocksReplyError):
    code = 0xF2
    meaning = "onion service introduction failed"
    retryable = True


class OnionRendezvousFailed(SocksReplyError):
    code = 0xF3
    meaning = "onion service rendezvous failed"
    retryable = True


class OnionClientAuthMissing(SocksReplyError):
    code = 0xF4
    meaning = "onion service needs client authorization and we have no key for it"
    retryable = False


class OnionClientAuthWrong(SocksReplyError):
    code = 0xF5
    meaning = "onion service client authorization key is wrong"
    retryable = False


class OnionAddressInvalid(SocksReplyError):
    code = 0xF6
    meaning = "invalid onion address"
    retryable = False


class OnionIntroTimeout(SocksReplyError):
    code = 0xF7
    meaning = "onion service introduction timed out"
    retryable = True


#: Every SOCKS5 reply code we know, to its exception class.
SOCKS_REPLY_ERRORS: dict[int, type[SocksReplyError]] = {
    cls.code: cls for cls in (
        GeneralFailure, ConnectionNotAllowed, NetworkUnreachable, HostUnreachable,
        ConnectionRefused, TtlExpired, CommandNotSupported, AddressTypeNotSupported,
        OnionDescriptorNotFound, OnionDescriptorInvalid, OnionIntroFailed,
        OnionRendezvousFailed, OnionClientAuthMissing, OnionClientAuthWrong,
        OnionAddressInvalid, OnionIntroTimeout)
    if cls.code is not None
}


def socks_reply_error(code: int) -> SocksReplyError:
    """The exception for a SOCKS5 reply ``code`` (an unknown code keeps its number)."""
    cls = SOCKS_REPLY_ERRORS.get(code)
    if cls is not None:
        return cls()
    err = SocksReplyError(f"unknown reply code 0x{code:02X}")
    err.code = code
    return err
