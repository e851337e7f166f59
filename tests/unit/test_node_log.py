"""The node log: 0600, bounded rotation, nothing below log_level."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.application import service
from twisted.logger import ILogObserver, Logger
from twisted.python.logfile import LogFile
from twisted.scripts._twistd_unix import ServerOptions

from aegis_hidden import tap
from aegis_hidden.config import ConfigError, parse_config


def twistd(logfile: str | None, *, nodaemon: bool = True, syslog: bool = False
           ) -> ServerOptions:
    """twistd's own options, as the parent of the plugin's (what twistd sets)."""
    server = ServerOptions()
    server["logfile"], server["nodaemon"], server["syslog"] = logfile, nodaemon, syslog
    return server


def _observer(tmp_path: Path, log_file: Path, *argv: str,
              config: str = "") -> ILogObserver:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(config or "{}\n")
    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path / "data"), "-c", str(cfg), "--no-api", *argv])
    opts.parent = twistd(str(log_file))
    node = tap.makeService(opts)
    application = service.Application("aegis-hidden")
    node.setServiceParent(application)  # what twistd does before starting its logger
    observer = application.getComponent(ILogObserver, None)
    assert observer is not None and observer is node.log_observer  # type: ignore[attr-defined]
    return observer  # type: ignore[no-any-return]


def test_log_file_is_created_0600(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    old = os.umask(0o022)
    try:
        observer = _observer(tmp_path, log_file)
    finally:
        os.umask(old)
    Logger(observer=observer).info("hello {who}", who="world")
    assert log_file.stat().st_mode & 0o777 == 0o600
    assert "hello world" in log_file.read_text()


def test_an_existing_0644_log_becomes_0600(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    log_file.write_text("old\n")
    log_file.chmod(0o644)
    Logger(observer=_observer(tmp_path, log_file)).warn("x")
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_events_below_log_level_do_not_reach_the_file(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    log = Logger(namespace="aegis_hidden.node", observer=_observer(
        tmp_path, log_file, "--log-level", "warn"))
    log.debug("debug-line")
    log.info("info-line")
    log.warn("warn-line")
    log.error("error-line")
    text = log_file.read_text()
    assert "debug-line" not in text and "info-line" not in text
    assert "warn-line" in text and "error-line" in text


def test_info_level_drops_debug(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    log = Logger(observer=_observer(tmp_path, log_file))
    log.debug("debug-line")
    log.info("info-line")
    text = log_file.read_text()
    assert "debug-line" not in text and "info-line" in text


def test_rotation_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log_file = logs / "node.log"
    log = Logger(observer=_observer(
        tmp_path, log_file, config="logging:\n  max_bytes: 4096\n  max_files: 3\n"))
    for i in range(2000):
        log.warn("line {i} " + "x" * 100, i=i)
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["node.log", "node.log.1", "node.log.2", "node.log.3"]
    for p in logs.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
        assert p.stat().st_size <= 4096 + 1024
    assert "line 1999" in log_file.read_text()


def test_stdout_when_twistd_logs_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("{}\n")
    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path / "data"), "--no-api", "--log-level", "error"])
    opts.parent = twistd(None)
    observer = tap.node_log_observer(opts)
    assert observer is not None
    Logger(observer=observer).warn("not-shown")
    Logger(observer=observer).error("shown")
    out = capsys.readouterr().out
    assert "shown" in out and "not-shown" not in out
    opts.parent = twistd(None, nodaemon=False, syslog=True)
    assert tap.node_log_observer(opts) is None


@pytest.mark.parametrize(("raw", "path"), [
    ({"logging": {"max_files": 0}}, "logging.max_files"),
    ({"logging": {"max_bytes": 10}}, "logging.max_bytes"),
    ({"logging": {"rotate": 1}}, "logging"),
])
def test_logging_keys_are_checked(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert path in str(info.value)


def test_logging_defaults() -> None:
    cfg = parse_config({})
    assert (cfg.logging.max_bytes, cfg.logging.max_files) == (1024 * 1024, 5)


def test_the_nodes_own_addresses_stay_readable_peers_are_hashed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator reads the API onion in the log; a peer's onion is a salted hash."""
    from aegis_hidden.api import api_onion_address, load_or_create_api_onion_key
    from aegis_hidden.identity import onion_address_from_public_key

    cfg = tmp_path / "node.yaml"
    cfg.write_text("api:\n  onion: true\n")
    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path / "data"), "-c", str(cfg)])
    opts.parent = twistd(None)
    observer = tap.node_log_observer(opts)
    assert observer is not None
    api_onion = api_onion_address(load_or_create_api_onion_key(opts.data_dir))
    peer = onion_address_from_public_key(bytes(32))
    Logger(observer=observer).info("API onion {a}, node {n}, peer {p}",
                                   a=api_onion, n=opts.identity.onion, p=peer)
    out = capsys.readouterr().out
    assert api_onion in out and opts.identity.onion in out
    assert peer not in out and "peer-" in out


@pytest.fixture
def sigusr1() -> Any:
    """Put back whatever SIGUSR1 did before the test."""
    before = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, before)


def test_sigusr1_reopens_the_log_after_logrotate_moved_it(tmp_path: Path, sigusr1: Any) -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    log_file = tmp_path / "node.log"
    log = Logger(observer=_observer(tmp_path, log_file))
    # A log file makes the node take SIGUSR1 (by default it would kill the process).
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    handler = signal.getsignal(signal.SIGUSR1)
    assert callable(handler) and handler.__qualname__.startswith("reopen_on_sigusr1")

    out = LogFile.fromFullPath(str(tmp_path / "other.log"), defaultMode=0o600)
    pending: list[Any] = []
    tap.reopen_on_sigusr1(out, schedule=pending.append)
    out.write("before rotation\n")
    os.rename(tmp_path / "other.log", tmp_path / "other.log.1")  # logrotate, nocreate
    out.write("still to the moved file\n")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert pending == [out.reopen]  # run from the reactor, not inside the handler
    pending.pop()()
    out.write("after reopen\n")
    out.flush()
    assert (tmp_path / "other.log.1").read_text() == "before rotation\nstill to the moved file\n"
    assert (tmp_path / "other.log").read_text() == "after reopen\n"
    assert (tmp_path / "other.log").stat().st_mode & 0o777 == 0o600
    log.warn("the node's own log still works")
    assert "the node's own log still works" in log_file.read_text()
