"""A blocking, short-timeout SAM probe for ``aegis-hidden doctor``: HELLO, then QUIT.

The node's own SAM client runs on the reactor; a diagnostic wants one answer
within seconds and nothing left open. Failures are :class:`SAMError` subclasses
(:class:`SAMProbeError` when nothing usable answered).
"""

from __future__ import annotations

import contextlib
import socket

from ..config import split_host_port
from ._errors import SAMError
from ._sam import hello, parse_line, quit_

MAX_LINE = 4096


class SAMProbeError(SAMError):
    """Nothing answers at the SAM address, or what answers is not a SAM bridge."""


def sam_hello(address: str, *, timeout: float = 5.0) -> str:
    """The SAM version the bridge at ``address`` agrees to speak (``"3.1"``)."""
    host, port = split_host_port("i2p.sam_address", address, allow_unix=False)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise SAMProbeError(f"nothing answers at {address} ({e.strerror or e})") from None
    try:
        sock.sendall(hello())
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(1024)
            if not chunk:
                raise SAMProbeError(f"{address} closed the connection without a HELLO reply")
            buf += chunk
            if len(buf) > MAX_LINE:
                raise SAMProbeError(f"{address} is not a SAM bridge (no reply line)")
        reply = parse_line(buf.split(b"\n", 1)[0])
        if reply.name != "HELLO REPLY":
            raise SAMProbeError(f"{address} answered {reply.name!r}, not a SAM HELLO REPLY")
        reply.raise_for_result()
        version = reply.require("VERSION")
        with contextlib.suppress(OSError):  # the answer is in; how it hangs up does not matter
            sock.sendall(quit_())
        return version
    except TimeoutError:
        raise SAMProbeError(f"{address} did not answer HELLO within {timeout:.0f}s") from None
    except OSError as e:
        raise SAMProbeError(f"the connection to {address} failed ({e})") from None
    finally:
        sock.close()
