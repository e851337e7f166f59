"""Tor bridge lines and pluggable-transport binaries (``tor.bridges``, ``tor.transports``).

Pure parsing, no I/O: a bridge line as Tor (or BridgeDB, or a bridge operator)
prints it, ``[Bridge] [TRANSPORT] IP:PORT FINGERPRINT [KEY=VALUE ...]``, becomes a
:class:`BridgeLine`; anything Tor would refuse, or would accept but use unsafely
(no fingerprint, an obfs4 line without its ``cert``), is refused with a
:class:`BridgeLineError` that names what is wrong. The node never fetches bridge
lines itself: the operator pastes them into the config.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Transports a bridge line may name -> the client binary that speaks it.
#: obfs4proxy (Debian ``obfs4proxy``) also speaks meek_lite.
TRANSPORT_BINARIES: Mapping[str, str] = {
    "obfs4": "obfs4proxy",
    "meek_lite": "obfs4proxy",
    "snowflake": "snowflake-client",
    "webtunnel": "webtunnel-client",
}

#: ``KEY=VALUE`` arguments each transport cannot work without.
REQUIRED_ARGS: Mapping[str, tuple[str, ...]] = {
    "obfs4": ("cert", "iat-mode"),
    "meek_lite": ("url",),
    "snowflake": ("url",),
    "webtunnel": ("url",),
}

_TRANSPORT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FINGERPRINT = re.compile(r"\$?[0-9A-Fa-f]{40}\Z")
_ARG_KEY = re.compile(r"[A-Za-z0-9_.-]+\Z")


class BridgeLineError(ValueError):
    """A bridge line (or a transport setting) that cannot be used; the message says why."""


@dataclass(frozen=True)
class BridgeLine:
    """One parsed bridge: ``transport`` is ``None`` for a plain (vanilla) bridge."""

    transport: str | None
    host: str  # an IP address (IPv6 without brackets)
    port: int
    fingerprint: str  # 40 upper-case hex digits
    args: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def arg(self, key: str) -> str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None

    def torrc_value(self) -> str:
        """The value of tor's ``Bridge`` option (without the word ``Bridge``)."""
        words = ([self.transport] if self.transport else []) + [self.address, self.fingerprint]
        words += [f"{k}={v}" for k, v in self.args]
        return " ".join(words)

    def describe(self) -> str:
        """For logs and status: transport and address only (never the cert or url)."""
        return f"{self.transport or 'vanilla'} {self.address}"


def _address(word: str, line: str) -> tuple[str, int]:
    if word.startswith("["):
        host, sep, port = word[1:].partition("]:")
        if not sep:
            raise BridgeLineError(f"bridge line {line!r}: {word!r} is not [IPv6]:PORT")
    else:
        host, sep, port = word.rpartition(":")
        if not sep:
            raise BridgeLineError(f"bridge line {line!r}: {word!r} has no :PORT")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise BridgeLineError(
            f"bridge line {line!r}: {host!r} is not an IP address (tor needs the bridge's "
            "IP address; a host name would have to be resolved in the clear)") from None
    if word.startswith("[") != (ip.version == 6):
        raise BridgeLineError(f"bridge line {line!r}: write IPv6 addresses as [ADDRESS]:PORT")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BridgeLineError(f"bridge line {line!r}: port {port!r} is not from 1 to 65535")
    return str(ip), int(port)


def _check_cert(cert: str, line: str) -> None:
    # obfs4's cert: the bridge's node id (20 bytes) and its public key (32), base64, unpadded
    try:
        raw = base64.b64decode(cert + "=" * (-len(cert) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 52:
        raise BridgeLineError(f"bridge line {line!r}: cert= is not an obfs4 certificate "
                              "(70 base64 characters, as the bridge's obfs4_bridgeline.txt "
                              "prints it)")


def parse_bridge_line(line: str) -> BridgeLine:
    """Parse one bridge line; :class:`BridgeLineError` names the line and the problem."""
    if not isinstance(line, str):
        raise BridgeLineError(f"bridge line {line!r} is not a string")
    if any(ch not in string.printable or ch in "\r\n\x0b\x0c" for ch in line):
        raise BridgeLineError(f"bridge line {line!r}: only printable ASCII on one line")
    words = line.split()
    if words and words[0].lower() == "bridge":
        words = words[1:]
    if not words:
        raise BridgeLineError(f"bridge line {line!r} is empty")
    transport: str | None = None
    if ":" not in words[0] and not words[0].startswith("["):
        transport = words.pop(0)
        if not _TRANSPORT_NAME.match(transport):
            raise BridgeLineError(f"bridge line {line!r}: {transport!r} is not a transport name")
        if transport not in TRANSPORT_BINARIES:
            raise BridgeLineError(
                f"bridge line {line!r}: transport {transport!r} is not supported; use one of "
                + ", ".join(sorted(TRANSPORT_BINARIES)) + " (or a plain IP:PORT bridge)")
    if not words:
        raise BridgeLineError(f"bridge line {line!r}: the IP:PORT of the bridge is missing")
    host, port = _address(words.pop(0), line)
    if not words or not _FINGERPRINT.match(words[0]):
        raise BridgeLineError(
            f"bridge line {line!r}: the bridge's fingerprint (40 hex digits after IP:PORT) is "
            "missing; without it tor cannot tell the bridge from an impostor")
    fingerprint = words.pop(0).lstrip("$").upper()
    args: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _ARG_KEY.match(key) or not value:
            raise BridgeLineError(f"bridge line {line!r}: {word!r} is not KEY=VALUE")
        if any(k == key for k, _ in args):
            raise BridgeLineError(f"bridge line {line!r}: {key}= is given twice")
        args.append((key, value))
    if transport is None and args:
        raise BridgeLineError(f"bridge line {line!r}: KEY=VALUE arguments need a transport "
                              "name before the address (e.g. obfs4)")
    bridge = BridgeLine(transport, host, port, fingerprint, tuple(args))
    if transport is not None:
        for key in REQUIRED_ARGS.get(transport, ()):
            if bridge.arg(key) is None:
                raise BridgeLineError(f"bridge line {line!r}: a {transport} bridge needs "
                                      f"{key}=")
    if transport == "obfs4":
        _check_cert(bridge.arg("cert") or "", line)
        if bridge.arg("iat-mode") not in ("0", "1", "2"):
            raise BridgeLineError(f"bridge line {line!r}: iat-mode= must be 0, 1 or 2")
    url = bridge.arg("url")
    if transport in ("webtunnel", "meek_lite", "snowflake") and url is not None \
            and not url.startswith("https://"):
        raise BridgeLineError(f"bridge line {line!r}: url= must be an https:// URL")
    return bridge


def parse_transport(item: str) -> tuple[str, str | None]:
    """``tor.transports`` item: ``NAME`` (binary found on PATH) or ``NAME=/abs/path``."""
    name, sep, path = item.partition("=")
    name = name.strip()
    if name not in TRANSPORT_BINARIES:
        raise BridgeLineError(f"transport {name!r} is not supported; use one of "
                              + ", ".join(sorted(TRANSPORT_BINARIES)))
    if not sep:
        return name, None
    path = path.strip()
    if not path.startswith("/"):
        raise BridgeLineError(f"transport {item!r}: the binary must be an absolute path")
    return name, path


def transport_plugins(bridges: Sequence[BridgeLine], transports: Iterable[str],
                      which: Callable[[str], str | None]) -> dict[str, str]:
    """transport -> client binary for every transport ``bridges`` use.

    ``transports`` (the config's list) may name a binary; otherwise the default
    binary is looked up with ``which`` (``shutil.which``). A transport the bridges
    need but whose binary is nowhere raises :class:`BridgeLineError` saying what to
    install or set.
    """
    configured = dict(parse_transport(t) for t in transports)
    needed = sorted({b.transport for b in bridges if b.transport is not None})
    out: dict[str, str] = {}
    for name in needed:
        if configured and name not in configured:
            raise BridgeLineError(
                f"a bridge uses transport {name!r} but tor.transports does not list it")
        path = configured.get(name)
        if path is None:
            found = which(TRANSPORT_BINARIES[name])
            if found is None:
                package = TRANSPORT_BINARIES[name]
                raise BridgeLineError(
                    f"transport {name!r} needs {package!r}, which is not on PATH: install it "
                    f"(Debian package {package!r}) or set tor.transports: [\"{name}=/path\"]")
            path = found
        out[name] = path
    return out


def bridge_torrc_lines(bridges: Sequence[BridgeLine], plugins: Mapping[str, str]) -> list[str]:
    """``UseBridges 1``, one ``ClientTransportPlugin`` per binary, one ``Bridge`` per line."""
    if not bridges:
        return []
    lines = ["UseBridges 1"]
    by_binary: dict[str, list[str]] = {}
    for name, path in plugins.items():
        by_binary.setdefault(path, []).append(name)
    for path, names in by_binary.items():
        lines.append(f"ClientTransportPlugin {','.join(sorted(names))} exec {path}")
    lines += [f"Bridge {b.torrc_value()}" for b in bridges]
    return lines
