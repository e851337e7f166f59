"""Blocking, short-timeout probes of a tor for ``aegis-hidden doctor``.

The node itself talks to tor through txtorcon on the reactor; a diagnostic
command wants one answer within seconds and nothing left running, so these
open a plain loopback socket, ask, and close it. Each failure is a
:class:`ProbeError` whose ``kind`` says which step failed.
"""

from __future__ import annotations

import calendar
import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..addresses import HostPortError, split_host_port
from ._control import BootstrapStatus, parse_bootstrap, parse_keywords, parse_listeners
from ._errors import ControlReplyError, SocksError, TorError
from ._socks import Socks5Client

MAX_REPLY = 256 * 1024  # a GETINFO of the few keys asked is far below this


class ProbeError(TorError):
    """A probe failed: ``kind`` is ``unreachable``, ``auth`` or ``protocol``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ControlReport:
    """What a tor's control port said, after authenticating."""

    version: str
    auth_method: str
    bootstrap: BootstrapStatus | None
    valid_after: float | None  # the live consensus's times, POSIX seconds (None: none yet)
    valid_until: float | None
    socks: tuple[str, ...]


def _connect(address: str, timeout: float) -> socket.socket:
    try:
        if address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(address[5:])
            except BaseException:
                sock.close()
                raise
            return sock
        host, port = split_host_port(address, allow_unix=False)
        return socket.create_connection((host, port), timeout=timeout)
    except HostPortError as e:
        raise ProbeError("unreachable", f"{address!r} is not HOST:PORT or unix:/path ({e})"
                         ) from None
    except OSError as e:
        raise ProbeError("unreachable", f"nothing answers at {address} ({e.strerror or e})"
                         ) from None


class _ControlConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                raise ProbeError("unreachable", "tor did not answer in time") from None
            except OSError as e:
                raise ProbeError("unreachable", f"the connection failed ({e})") from None
            if not chunk:
                raise ProbeError("protocol", "the control port closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_REPLY:
                raise ProbeError("protocol", "the control port sent an over-long reply")
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def command(self, text: str) -> tuple[int, list[str]]:
        """Send one command; (status code, reply lines without their code prefix)."""
        try:
            self._sock.sendall(text.encode() + b"\r\n")
        except OSError as e:
            raise ProbeError("unreachable", f"the connection failed ({e})") from None
        lines: list[str] = []
        while True:
            line = self._line()
            if len(line) < 4 or not line[:3].isdigit():
                raise ProbeError("protocol", f"not a tor control reply: {line[:80]!r}")
            code, sep, rest = int(line[:3]), line[3], line[4:]
            if sep == "+":  # a data block up to a lone "."
                data = []
                while (more := self._line()) != ".":
                    data.append(more.removeprefix("."))
                lines.append(rest + "\n".join(data))
                continue
            lines.append(rest)
            if sep == " ":
                return code, lines


def _cookie_hex(path: str) -> str:
    try:
        return Path(path).read_bytes().hex()
    except OSError as e:
        raise ProbeError("auth", f"cannot read tor's cookie file {path} ({e.strerror or e}); "
                         "run as a user in tor's group (Debian: debian-tor)") from None


def _consensus_time(value: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")))
    except ValueError:
        return None


def query_control(address: str, *, password_file: str | None = None,
                  timeout: float = 5.0) -> ControlReport:
    """Connect to tor's control port, authenticate as the node would, ask what the
    doctor needs. Raises :class:`ProbeError`."""
    sock = _connect(address, timeout)
    try:
        conn = _ControlConnection(sock)
        code, lines = conn.command("PROTOCOLINFO 1")
        if code != 250:
            raise ProbeError("protocol", f"PROTOCOLINFO answered {code} {' '.join(lines)}")
        auth = next((ln for ln in lines if ln.startswith("AUTH ")), "")
        methods = parse_keywords(auth).get("METHODS", "").split(",")
        if password_file is not None:
            try:
                secret = Path(password_file).read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ProbeError("auth", f"cannot read tor.control_password_file "
                                 f"{password_file} ({e.strerror or e})") from None
            method, arg = "password", '"' + secret.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif "NULL" in methods:
            method, arg = "none", ""
        elif "COOKIE" in methods:
            method, arg = "cookie", _cookie_hex(parse_keywords(auth).get("COOKIEFILE", ""))
        else:
            raise ProbeError("auth", f"tor offers {','.join(methods) or 'no'} authentication; "
                             "a password is needed: set tor.control_password_file")
        code, lines = conn.command(f"AUTHENTICATE {arg}".rstrip())
        if code != 250:
            raise ProbeError("auth", f"tor refused the {method} authentication: "
                             f"{code} {' '.join(lines)}")
        code, lines = conn.command("GETINFO version status/bootstrap-phase net/listeners/socks")
        if code != 250:
            raise ProbeError("protocol", f"GETINFO answered {code} {' '.join(lines)}")
        info = dict(ln.split("=", 1) for ln in lines if "=" in ln)
        after = until = None
        code, times = conn.command("GETINFO consensus/valid-after consensus/valid-until")
        if code == 250:  # 551 while tor has no consensus yet
            got = dict(ln.split("=", 1) for ln in times if "=" in ln)
            after = _consensus_time(got.get("consensus/valid-after", ""))
            until = _consensus_time(got.get("consensus/valid-until", ""))
        try:
            bootstrap = parse_bootstrap(info.get("status/bootstrap-phase", ""))
        except ControlReplyError:
            bootstrap = None
        with contextlib.suppress(ProbeError):  # all answered; how it hangs up does not matter
            conn.command("QUIT")
        return ControlReport(info.get("version", "?").split()[0], method, bootstrap, after,
                             until, tuple(parse_listeners(info.get("net/listeners/socks", ""))))
    finally:
        sock.close()


def reach_onion(socks: str, onion: str, port: int, *, timeout: float = 60.0) -> float:
    """Open a stream to ``onion:port`` through tor's SOCKS port (its own circuit,
    by a fresh SOCKS username); the seconds it took. Raises :class:`ProbeError`
    (kind ``unreachable``) with tor's reason."""
    started = time.monotonic()
    sock = _connect(socks, timeout)
    try:
        client = Socks5Client(onion, port, "aegis-doctor", f"{time.time_ns()}")
        out, done = client.start(), None
        while done is None:
            if out:
                sock.sendall(out)
            chunk = sock.recv(4096)
            if not chunk:
                raise ProbeError("unreachable", "tor closed the SOCKS connection")
            out, done = client.feed(chunk)
        return time.monotonic() - started
    except SocksError as e:
        raise ProbeError("unreachable", f"tor could not reach {onion}:{port}: {e}") from None
    except TimeoutError:
        raise ProbeError("unreachable", f"no answer from {onion}:{port} within "
                         f"{timeout:.0f}s") from None
    except OSError as e:
        raise ProbeError("unreachable", f"the SOCKS connection failed ({e})") from None
    finally:
        sock.close()
