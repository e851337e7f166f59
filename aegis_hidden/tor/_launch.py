"""Starting or reaching a tor: a :class:`TorSession` per process / control connection.

Launch mode spawns ``tor`` with a torrc written into its DataDirectory (under the
node's data dir), waits for the control port file, then talks to it through
txtorcon's ``TorControlProtocol`` with cookie authentication and takes
ownership (tor exits if the node goes away). Connect mode opens the configured
control port or socket (cookie or password).
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectError, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorProcess, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..addresses import split_host_port
from ._control import parse_getinfo_value, parse_listeners
from ._errors import ControlReplyError, TorNotFound, TorStartError


class ControlProtocol(Protocol):
    """The part of txtorcon's ``TorControlProtocol`` the provider uses."""

    def queue_command(self, cmd: str) -> Deferred[Any]: ...

    def add_event_listener(self, evt: str, callback: Callable[[str], None]) -> Any: ...

    def remove_event_listener(self, evt: str, callback: Callable[[str], None]) -> Any: ...

    def when_disconnected(self) -> Deferred[Any]: ...


class TorProcess(Protocol):
    """A tor process we started (absent in connect mode)."""

    pid: int | None

    def ended(self) -> Deferred[None]: ...

    def signal(self, name: str) -> None: ...

    def output_tail(self) -> str: ...


@dataclass
class TorSession:
    """One live tor: its control connection, SOCKS port and (launch mode) process."""

    control: ControlProtocol
    socks: str
    process: TorProcess | None = None
    lost: Deferred[str] = field(default_factory=Deferred)


def endpoint_for(reactor: Any, address: str) -> IStreamClientEndpoint:
    """``127.0.0.1:PORT`` or ``unix:/path`` -> a client endpoint (loopback only)."""
    if address.startswith("unix:"):
        return UNIXClientEndpoint(reactor, address[5:])
    host, port = split_host_port(address, allow_unix=False)
    return TCP4ClientEndpoint(reactor, host, port)


class _TorProcessProtocol(ProcessProtocol):
    log = Logger()

    def __init__(self) -> None:
        self._tail: deque[str] = deque(maxlen=20)
        self._ended: list[Deferred[None]] = []
        self.exit: Failure | None = None
        self.pid: int | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self._tail.append(line)

    def processEnded(self, reason: Failure) -> None:
        self.exit = reason
        waiters, self._ended = self._ended, []
        for d in waiters:
            d.callback(None)

    # TorProcess
    def ended(self) -> Deferred[None]:
        if self.exit is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ended.append(d)
        return d

    def signal(self, name: str) -> None:
        if self.exit is None and self.transport is not None:
            self.transport.signalProcess(name)

    def output_tail(self) -> str:
        return "\n".join(self._tail)

    def exit_text(self) -> str:
        if self.exit is None:
            return "running"
        value = self.exit.value
        if isinstance(value, ProcessDone):
            return "exited with code 0"
        if isinstance(value, ProcessTerminated):
            if value.signal is not None:
                return f"killed by signal {value.signal}"
            return f"exited with code {value.exitCode}"
        return str(value)


def find_tor(binary: str | None) -> str:
    found = shutil.which(binary or "tor")
    if found is None:
        raise TorNotFound(
            f"tor executable {binary or 'tor'!r} not found: install the Debian package 'tor', "
            "set tor.tor_binary to its path, or use tor.mode: connect with a running tor")
    return found


def write_torrc(data_dir: Path, lines: Sequence[str], owner_pid: int,
                socks: str | None = None) -> Path:
    """The torrc of a launched tor: control (and SOCKS unless given) on automatic
    loopback ports."""
    torrc = data_dir / "torrc"
    body = [
        "# written by aegis-hidden at each launch; edit tor.torrc_lines instead",
        f"DataDirectory {data_dir}",
        "ControlPort auto",
        f"ControlPortWriteToFile {data_dir / 'control_port'}",
        "CookieAuthentication 1",
        f"SocksPort {socks or '127.0.0.1:auto'} ExtendedErrors IsolateSOCKSAuth",
        f"Log notice file {data_dir / 'notice.log'}",
        "RunAsDaemon 0",
        f"__OwningControllerProcess {owner_pid}",
        *lines,
    ]
    torrc.write_text("\n".join(body) + "\n", encoding="utf-8")
    return torrc


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _attach(reactor: Any, endpoint: IStreamClientEndpoint,
                  password: Callable[[], str | None] | None = None) -> ControlProtocol:
    import txtorcon  # lazy: importing txtorcon installs the global reactor

    factory = txtorcon.TorProtocolFactory(password_function=password or (lambda: None))
    proto: Any = await endpoint.connect(factory)
    await proto.post_bootstrap
    return proto  # type: ignore[no-any-return]


async def socks_address(control: ControlProtocol) -> str:
    reply = await control.queue_command("GETINFO net/listeners/socks")
    listeners = parse_listeners(parse_getinfo_value(str(reply), "net/listeners/socks"))
    if not listeners:
        raise ControlReplyError("tor has no SocksPort open (net/listeners/socks is empty)")
    return listeners[0]


async def _wait_for_port_file(clock: IReactorTime, proto: _TorProcessProtocol, port_file: Path,
                              data_dir: Path, start_timeout: float) -> str:
    waited = 0.0
    while not port_file.exists() or not port_file.read_text().startswith("PORT="):
        if proto.exit is not None:
            raise TorStartError(
                f"tor {proto.exit_text()} before opening its control port. Its log "
                f"({data_dir / 'notice.log'}):\n{_log_tail(data_dir / 'notice.log')}\n"
                f"{proto.output_tail()}")
        if waited > start_timeout:
            raise TorStartError(f"tor did not open its control port within {start_timeout:.0f}s"
                                f"; see {data_dir / 'notice.log'}")
        await deferLater(clock, 0.1, lambda: None)
        waited += 0.1
    return port_file.read_text().strip().removeprefix("PORT=")


async def launch_tor(reactor: Any, clock: IReactorTime, *, binary: str | None,
                     data_dir: Path, torrc_lines: Sequence[str], socks_port: str | None = None,
                     start_timeout: float = 60.0) -> TorSession:
    """Spawn a tor in ``data_dir`` and attach to it; fails with a clear TorError."""
    exe = find_tor(binary)
    # tor runs in data_dir: a relative path would name a torrc that is not there.
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    port_file = data_dir / "control_port"
    port_file.unlink(missing_ok=True)
    torrc = write_torrc(data_dir, torrc_lines, os.getpid(), socks_port)
    proto = _TorProcessProtocol()
    assert IReactorProcess.providedBy(reactor)
    # No --ignore-missing-torrc: without its torrc, tor must refuse to start rather
    # than run on its defaults (SOCKS on 9050, the public network).
    reactor.spawnProcess(proto, exe, [exe, "-f", str(torrc)],
                         env={"HOME": str(data_dir), "PATH": os.environ.get("PATH", "")},
                         path=str(data_dir))
    try:
        address = await _wait_for_port_file(clock, proto, port_file, data_dir, start_timeout)
        control = await _attach(reactor, endpoint_for(reactor, address))
        await control.queue_command("TAKEOWNERSHIP")
        await control.queue_command("RESETCONF __OwningControllerProcess")
        socks = await socks_address(control)
    except BaseException:  # includes cancellation (the node stopping): never leave it running
        proto.signal("KILL")
        raise
    return TorSession(control, socks, proto)


async def connect_tor(reactor: Any, control_port: str, *, password_file: str | None,
                      socks_port: str | None) -> TorSession:
    """Attach to a running tor's control port (cookie, or the password in a file)."""
    def password() -> str | None:
        if password_file is None:
            return None
        try:
            return Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise TorStartError(f"cannot read tor.control_password_file: {e}") from None

    try:
        control = await _attach(reactor, endpoint_for(reactor, control_port), password)
    except (OSError, ConnectError) as e:
        raise TorStartError(f"cannot reach tor's control port {control_port}: {e}") from None
    socks = socks_port or await socks_address(control)
    return TorSession(control, socks, None)
