"""Bridges and pluggable transports for the node's tor.

Launch mode: ``tor.bridges`` / ``tor.transports`` become ``UseBridges 1``, one
``ClientTransportPlugin`` per transport binary and one ``Bridge`` line each, so
the launched tor reaches the Tor network only through those bridges (the node
itself still dials nothing but tor's SOCKS port). Connect mode: the running tor
is asked (``GETCONF UseBridges`` / ``Bridge``) and a warning is logged and shown
in the status when the config asks for bridges but that tor uses none.

What the status shows is deliberately coarse: how many bridges and which
transports, never a bridge's address, cert or URL.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config import (
    TRANSPORT_BINARIES,
    BridgeLine,
    BridgeLineError,
    Config,
    bridge_torrc_lines,
    parse_bridge_line,
    transport_plugins,
)
from ._errors import TorStartError

__all__ = [
    "TRANSPORT_BINARIES",
    "BridgeLine",
    "BridgeLineError",
    "TransportNotFound",
    "bridge_summary",
    "bridge_torrc_lines",
    "configured_bridges",
    "launch_bridge_lines",
    "parse_bridge_line",
    "parse_getconf",
    "plugin_binaries",
    "transport_plugins",
]


class TransportNotFound(TorStartError):
    """A bridge needs a pluggable-transport binary that is not installed or configured."""


def configured_bridges(config: Config) -> list[BridgeLine]:
    return [parse_bridge_line(line) for line in config.tor.bridges]


def launch_bridge_lines(config: Config,
                        which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The torrc lines of the configured bridges (empty without bridges)."""
    bridges = configured_bridges(config)
    if not bridges:
        return []
    try:
        plugins = transport_plugins(bridges, config.tor.transports, which)
    except BridgeLineError as e:
        raise TransportNotFound(str(e)) from None
    return bridge_torrc_lines(bridges, plugins)


def parse_getconf(reply: str, key: str) -> list[str]:
    """Values of ``key`` in a GETCONF reply (``Key=value`` lines; a bare ``Key``: unset)."""
    values = []
    for line in reply.splitlines():
        name, sep, value = line.partition("=")
        if name.strip().lower() == key.lower() and sep:
            values.append(value.strip())
    return values


def bridge_summary(config: Config, *, use_bridges: bool | None,
                   running_bridges: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``bridges`` part of the Tor provider's state.

    ``use_bridges``/``running_bridges``: what the running tor reported (connect
    mode), or ``None`` when unknown. In launch mode the node wrote the torrc, so the
    configured bridges are the ones in use.
    """
    configured = configured_bridges(config)
    if config.tor.mode == "launch":
        use = bool(configured)
        lines = configured
    else:
        use = bool(use_bridges)
        lines = []
        for value in running_bridges or ():
            try:
                lines.append(parse_bridge_line(value))
            except BridgeLineError:
                continue  # a line tor takes but this parser does not: counted below
    transports = sorted({b.transport or "vanilla" for b in lines})
    warning = None
    if configured and config.tor.mode == "connect" and use_bridges is not None and not use:
        warning = ("tor.bridges is set but the running tor does not use bridges "
                   "(UseBridges 0): it connects to the Tor network directly. Configure "
                   "that tor with the bridges, or use tor.mode: launch")
    count = len(lines) if config.tor.mode == "launch" else len(running_bridges or ())
    return {"configured": len(configured), "in_use": use,
            "count": count if use else 0, "transports": transports if use else [],
            "warning": warning}


def plugin_binaries(config: Config,
                    which: Callable[[str], str | None] = shutil.which) -> Mapping[str, str | None]:
    """transport -> binary (or None if missing), for checks such as a ``doctor``."""
    out: dict[str, str | None] = {}
    for bridge in configured_bridges(config):
        if bridge.transport is None or bridge.transport in out:
            continue
        try:
            out.update(transport_plugins([bridge], config.tor.transports, which))
        except BridgeLineError:
            out[bridge.transport] = None
    return out
