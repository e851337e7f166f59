"""The Tor transport: own or shared tor, the identity onion service, onion dialing.

Everything here talks to tor through its control port (txtorcon) and its SOCKS
port; nothing ever resolves or dials a clearnet address.
"""

# The client-authorization keys are pure (identity): re-exported for the provider's users.
from ..identity import (
    ClientAuthError,
    ClientAuthKey,
    ClientAuthPublicKey,
    parse_auth_private,
    parse_public_key,
)
from ._backoff import Backoff
from ._bridges import (
    TRANSPORT_BINARIES,
    BridgeLine,
    BridgeLineError,
    TransportNotFound,
    bridge_summary,
    bridge_torrc_lines,
    launch_bridge_lines,
    parse_bridge_line,
    plugin_binaries,
)
from ._control import (
    BootstrapStatus,
    add_onion_command,
    del_onion_command,
    parse_add_onion_reply,
    parse_bootstrap,
    progress_bar,
)
from ._dialer import OnionEndpoint, check_onion
from ._errors import (
    SOCKS_REPLY_ERRORS,
    BootstrapTimeout,
    ControlReplyError,
    DialTimeout,
    OnionClientAuthMissing,
    OnionClientAuthWrong,
    OnionDescriptorNotFound,
    OnionMismatch,
    SocksAuthRejected,
    SocksError,
    SocksProtocolError,
    SocksReplyError,
    TorError,
    TorNotFound,
    TorNotReady,
    TorStartError,
    socks_reply_error,
)
from ._launch import TorSession, connect_tor, launch_tor
from ._probe import ControlReport, ProbeError, query_control, reach_onion
from ._provider import TESTING_CLIENT_LINES, TorProvider, launch_torrc_lines
from ._socks import OnionAddress, Socks5Client

__all__ = [
    "SOCKS_REPLY_ERRORS",
    "TESTING_CLIENT_LINES",
    "TRANSPORT_BINARIES",
    "Backoff",
    "BootstrapStatus",
    "BootstrapTimeout",
    "BridgeLine",
    "BridgeLineError",
    "ClientAuthError",
    "ClientAuthKey",
    "ClientAuthPublicKey",
    "ControlReplyError",
    "ControlReport",
    "DialTimeout",
    "OnionAddress",
    "OnionClientAuthMissing",
    "OnionClientAuthWrong",
    "OnionDescriptorNotFound",
    "OnionEndpoint",
    "OnionMismatch",
    "ProbeError",
    "Socks5Client",
    "SocksAuthRejected",
    "SocksError",
    "SocksProtocolError",
    "SocksReplyError",
    "TorError",
    "TorNotFound",
    "TorNotReady",
    "TorProvider",
    "TorSession",
    "TorStartError",
    "TransportNotFound",
    "add_onion_command",
    "bridge_summary",
    "bridge_torrc_lines",
    "check_onion",
    "connect_tor",
    "del_onion_command",
    "launch_bridge_lines",
    "launch_tor",
    "launch_torrc_lines",
    "parse_add_onion_reply",
    "parse_auth_private",
    "parse_bootstrap",
    "parse_bridge_line",
    "parse_public_key",
    "plugin_binaries",
    "progress_bar",
    "query_control",
    "reach_onion",
    "socks_reply_error",
]
