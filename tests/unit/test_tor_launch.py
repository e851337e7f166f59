"""launch_tor up to the control connection, with a fake process reactor and a Clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from aegis_hidden.tor import TorNotFound, TorStartError, launch_tor


class FakeProcessTransport:
    def __init__(self) -> None:
        self.pid = 999
        self.signals: list[str] = []

    def closeStdin(self) -> None:
        pass

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


@implementer(IReactorProcess)
class FakeProcessReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str]]] = []
        self.transport = FakeProcessTransport()

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (),
                     env: Any = None, path: Any = None, uid: Any = None, gid: Any = None,
                     usePTY: Any = False, childFDs: Any = None) -> Any:
        self.spawned.append((processProtocol, list(args)))
        processProtocol.makeConnection(self.transport)
        return self.transport


def start(reactor: FakeProcessReactor, tmp_path: Path, **kw: Any
          ) -> tuple[Deferred[Any], list[Any]]:
    out: list[Any] = []
    d = Deferred.fromCoroutine(launch_tor(reactor, reactor, binary="tor",
                                          data_dir=tmp_path / "tor", torrc_lines=[], **kw))
    d.addBoth(out.append)
    return d, out


def test_spawns_tor_on_its_torrc(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    start(reactor, tmp_path)
    (_, args), = reactor.spawned
    assert args[1:] == ["-f", str(tmp_path / "tor" / "torrc")]
    assert (tmp_path / "tor").stat().st_mode & 0o777 == 0o700


def test_a_relative_data_dir_still_names_the_torrc(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """tor runs in its data dir: a relative ``-f`` would miss the torrc there."""
    monkeypatch.chdir(tmp_path)
    reactor = FakeProcessReactor()
    out: list[Any] = []
    Deferred.fromCoroutine(launch_tor(reactor, reactor, binary="tor",
                                      data_dir=Path("node") / "tor", torrc_lines=[])
                           ).addBoth(out.append)
    (_, args), = reactor.spawned
    torrc = Path(args[args.index("-f") + 1])
    assert torrc.is_absolute() and torrc == tmp_path / "node" / "tor" / "torrc"
    assert torrc.is_file() and "--ignore-missing-torrc" not in args


def test_tor_exiting_early_is_reported_with_its_output(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    _, out = start(reactor, tmp_path)
    proto = reactor.spawned[0][0]
    proto.childDataReceived(1, b"[warn] Failed to parse/validate config: Unknown option 'X'\n")
    proto.processEnded(Failure(ProcessTerminated(exitCode=1)))
    reactor.advance(0.1)
    failure = out[0]
    assert isinstance(failure, Failure) and failure.check(TorStartError)
    msg = failure.getErrorMessage()
    assert "exited with code 1 before opening its control port" in msg
    assert "Unknown option 'X'" in msg


def test_no_control_port_in_time(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    _, out = start(reactor, tmp_path, start_timeout=2.0)
    reactor.pump([0.1] * 25)
    assert out[0].check(TorStartError) and "within 2s" in out[0].getErrorMessage()
    assert reactor.transport.signals == ["KILL"]


def test_cancelled_start_kills_tor(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    d, _ = start(reactor, tmp_path)
    reactor.advance(0.1)
    d.cancel()
    assert reactor.transport.signals == ["KILL"]


def test_missing_binary(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    d = Deferred.fromCoroutine(launch_tor(reactor, reactor, binary="/no/such/tor",
                                          data_dir=tmp_path, torrc_lines=[]))
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures[0].check(TorNotFound)
    assert reactor.spawned == []
    with pytest.raises(TorNotFound):
        failures[0].raiseException()
