"""The embedded default: the node's own ``i2pd`` when nothing answers at ``i2p.sam_address``.

Started with ``reactor.spawnProcess`` (injected reactor), its data dir under the
node's (``<data dir>/i2pd``, passed as ``--datadir``: i2pd ignores ``datadir`` in
its config file), every service but SAM switched off, SAM on loopback at the
configured port. It joins the real I2P network with the stock binary; nothing
of the node's identity is given to it. Stopped with SIGTERM (SIGKILL after
``kill_after`` seconds) when the provider stops.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._errors import SAMError


class I2pdLaunchError(SAMError):
    """Our own i2pd could not be started (no binary, or it exited at once)."""


def i2pd_arguments(binary: str, data_dir: Path, sam_host: str, sam_port: int) -> list[str]:
    d = Path(data_dir)
    return [
        binary, f"--datadir={d}", f"--conf={d / 'i2pd.conf'}", f"--tunconf={d / 'tunnels.conf'}",
        f"--tunnelsdir={d / 'tunnels.d'}", f"--pidfile={d / 'i2pd.pid'}",
        "--log=file", f"--logfile={d / 'i2pd.log'}", "--loglevel=warn",
        "--daemon=false", "--service=false",
        "--sam.enabled=true", f"--sam.address={sam_host}", f"--sam.port={sam_port}",
        "--http.enabled=false", "--httpproxy.enabled=false", "--socksproxy.enabled=false",
        "--bob.enabled=false", "--i2cp.enabled=false", "--i2pcontrol.enabled=false",
        "--upnp.enabled=false",
    ]


class _I2pdProtocol(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[int | None] = Deferred()
        self.running = True

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(0 if reason.check(ProcessDone) else code)


class I2pdProcess:
    """One i2pd child process of the node."""

    log = Logger()

    def __init__(self, reactor: Any, clock: IReactorTime, data_dir: Path, sam_host: str,
                 sam_port: int, binary: str | None = None, kill_after: float = 10.0) -> None:
        self._reactor = reactor
        self._clock = clock
        self.data_dir = Path(data_dir)
        self._sam_host = sam_host
        self._sam_port = sam_port
        self._binary = binary
        self._kill_after = kill_after
        self._proto: _I2pdProtocol | None = None
        self._transport: Any = None

    def is_running(self) -> bool:
        return self._proto is not None and self._proto.running

    def start(self) -> None:
        binary = self._binary or shutil.which("i2pd")
        if binary is None:
            raise I2pdLaunchError("i2p.launch is on but no i2pd was found: install the Debian "
                                  "package i2pd or set i2p.i2pd_binary")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ("i2pd.conf", "tunnels.conf"):
            (self.data_dir / name).touch(mode=0o600, exist_ok=True)
        self._proto = _I2pdProtocol()
        args = i2pd_arguments(binary, self.data_dir, self._sam_host, self._sam_port)
        self._transport = self._reactor.spawnProcess(
            self._proto, binary, args, env=None, path=str(self.data_dir))
        self.log.info("started our own i2pd (SAM {host}:{port}, data in {dir})",
                      host=self._sam_host, port=self._sam_port, dir=str(self.data_dir))

    def stop(self) -> Deferred[int | None]:
        proto = self._proto
        if proto is None or not proto.running:
            return succeed(None)
        try:
            self._transport.signalProcess("TERM")
        except ProcessExitedAlready:
            return succeed(None)
        timer = self._clock.callLater(self._kill_after, self._kill)

        def cancel_timer(code: int | None) -> int | None:
            if timer.active():
                timer.cancel()
            return code

        return proto.ended.addCallback(cancel_timer)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessExitedAlready):
            self._transport.signalProcess("KILL")
