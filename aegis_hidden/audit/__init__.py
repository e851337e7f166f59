"""Privacy audit checks an operator can run on what the network sees.

``transport``: which transport a packet capture's tor connections look like
(Tor's TLS, or obfs4's uniformly random bytes), so an operator can check that a
censor watching the link sees what they expect. Run it as
``python -m aegis_hidden.audit transport CAPTURE.pcap [--port PORT ...]``.
"""

from ._transport import (
    ENTROPY_WINDOW,
    OBFS4_MIN_ENTROPY,
    CaptureError,
    Connection,
    ConnectionReport,
    TransportLook,
    classify,
    read_pcap,
    shannon_entropy,
    tcp_connections,
    transport_report,
)

__all__ = [
    "ENTROPY_WINDOW",
    "OBFS4_MIN_ENTROPY",
    "CaptureError",
    "Connection",
    "ConnectionReport",
    "TransportLook",
    "classify",
    "read_pcap",
    "shannon_entropy",
    "tcp_connections",
    "transport_report",
]
