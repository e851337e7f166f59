"""The private-network harnesses without starting tor or i2pd: torrc, state file, logs, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from aegis_hidden.cli import _devnet, main
from aegis_hidden.testing import I2PNetwork, I2PNetworkError, TorNetwork, TorNetworkError, free_ports
from aegis_hidden.testing._i2pnet import Router, find_patched_i2pd
from aegis_hidden.testing._tornet import Instance, bootstrap_percent


def network(tmp_path: Path) -> TorNetwork:
    net = TorNetwork(tmp_path)
    net.instances = [
        Instance("auth0", "authority", str(tmp_path / "auth0"), or_port=5000, dir_port=5001,
                 fingerprint="F" * 40, v3ident="A" * 40),
        Instance("relay0", "relay", str(tmp_path / "relay0"), or_port=5002, dir_port=5003),
        Instance("client0", "client", str(tmp_path / "client0"), socks_port=5004,
                 control_port=5005),
    ]
    return net


def test_dir_authority_line(tmp_path: Path) -> None:
    net = network(tmp_path)
    assert net.dir_authority_lines() == [
        f"auth0 orport=5000 no-v2 v3ident={'A' * 40} 127.0.0.1:5001 {'F' * 40}"]
    assert net.node_tor_config() == {"testing_network": True,
                                     "dir_authorities": net.dir_authority_lines()}


def test_torrc_per_role(tmp_path: Path) -> None:
    net = network(tmp_path)
    auth, relay, client = (net._torrc(i).splitlines() for i in net.instances)
    for lines in (auth, relay, client):
        assert "TestingTorNetwork 1" in lines and "GeoIPFile /nonexistent" in lines
        assert f"DirAuthority {net.dir_authority_lines()[0]}" in lines
    assert "V3AuthoritativeDirectory 1" in auth and "V3AuthVotingInterval 10" in auth
    assert "V3AuthoritativeDirectory 1" not in relay
    assert "ExitPolicy reject *:*" in relay and "ORPort 127.0.0.1:5002" in relay
    assert "SocksPort 127.0.0.1:5004 ExtendedErrors" in client
    assert "ControlPort 127.0.0.1:5005" in client and "CookieAuthentication 1" in client
    assert not any(line.startswith("ORPort") for line in client)


def test_state_round_trip(tmp_path: Path) -> None:
    net = network(tmp_path)
    net.save()
    again = TorNetwork.load(tmp_path)
    assert again.instances == net.instances
    assert again.client.socks_port == 5004
    with pytest.raises(TorNetworkError, match="no private network"):
        TorNetwork.load(tmp_path / "elsewhere")


def test_bootstrap_percent(tmp_path: Path) -> None:
    log = tmp_path / "notice.log"
    assert bootstrap_percent(log) == 0
    log.write_text("[notice] Bootstrapped 5% (conn): x\n[notice] Bootstrapped 85% (ap): y\n")
    assert bootstrap_percent(log) == 85


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5, avoid=(9050, 9051))
    assert len(set(ports)) == 5 and not {9050, 9051} & set(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_too_small_a_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TorNetworkError, match="3 authorities"):
        TorNetwork(tmp_path, authorities=3, relays=1).setup()


def test_cli_status_and_down_without_a_network(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 1
    assert "no private network" in capsys.readouterr().err
    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 1


def test_cli_status_of_a_stopped_network(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    network(tmp_path).save()
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 3  # not running
    out = capsys.readouterr().out
    assert "client0" in out and "stopped" in out and "DirAuthority auth0" in out
    assert "SOCKS 127.0.0.1:5004" in out


# -- devnet with a private I2P network (--i2p, --i2p-only): every process faked ----------

class FakeProcesses:
    """Stands in for the tor and i2pd processes: pids alive until a signal reaches them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, binary: Path) -> None:
        self.alive: set[int] = set()
        self.signals: list[tuple[int, int]] = []
        self.next_pid = 90000
        self.tor_setups = 0
        self.i2p_fail: str | None = None
        procs = self

        def kill(pid: int, sig: int) -> None:
            if pid not in procs.alive:
                raise ProcessLookupError(pid)
            if sig:
                procs.signals.append((pid, sig))
                procs.alive.discard(pid)

        def tor_setup(net: TorNetwork) -> None:
            procs.tor_setups += 1
            net.directory = Path(net.directory).resolve()
            net.directory.mkdir(parents=True, exist_ok=True)
            net.instances = network(net.directory).instances
            net.save()

        def tor_start(net: TorNetwork) -> None:
            for inst in net.instances:
                inst.pid = procs.spawn()
            net.save()

        def i2p_setup(net: I2PNetwork) -> None:
            assert net.binary == binary
            net.directory.mkdir(parents=True, exist_ok=True)
            for i in range(net.count):
                net.routers.append(Router(i, net.directory / f"router{i}", 7000 + i, 7100 + 2 * i))

        def i2p_start(net: I2PNetwork) -> None:
            for r in net.routers:
                r.pid = procs.spawn()
            net.save()

        def i2p_wait_ready(net: I2PNetwork, timeout: float = 180) -> float:
            if procs.i2p_fail:
                raise I2PNetworkError(procs.i2p_fail)
            return 20.5

        monkeypatch.setattr(os, "kill", kill)  # the one of _tornet and _i2pnet
        monkeypatch.setattr(TorNetwork, "setup", tor_setup)
        monkeypatch.setattr(TorNetwork, "start", tor_start)
        monkeypatch.setattr(TorNetwork, "wait_bootstrapped", lambda net, timeout=180.0: 30.0)
        monkeypatch.setattr(TorNetwork, "is_running", lambda net, inst: inst.pid in procs.alive)
        monkeypatch.setattr(I2PNetwork, "setup", i2p_setup)
        monkeypatch.setattr(I2PNetwork, "start", i2p_start)
        monkeypatch.setattr(I2PNetwork, "wait_ready", i2p_wait_ready)
        monkeypatch.setattr(I2PNetwork, "_is_our_i2pd", lambda net, r: r.pid in procs.alive)
        monkeypatch.setattr(_devnet, "find_patched_i2pd", lambda build=True: binary)

    def spawn(self) -> int:
        self.next_pid += 1
        self.alive.add(self.next_pid)
        return self.next_pid


@pytest.fixture
def procs(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
          ) -> FakeProcesses:
    binary = tmp_path_factory.mktemp("bin") / "i2pd"
    binary.write_text("never run\n")
    return FakeProcesses(monkeypatch, binary)


def test_cli_up_i2p_only_starts_no_tor(tmp_path: Path, procs: FakeProcesses,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert procs.tor_setups == 0 and not (tmp_path / "network.json").exists()
    assert "tor processes" not in out and "DirAuthority" not in out
    assert f"started 4 i2pd routers in {tmp_path / 'i2p'}" in out
    assert "I2P tunnels ready on every router in 20.5s" in out
    for i in range(4):
        assert f"router{i}: SAM 127.0.0.1:{7100 + 2 * i}" in out
    assert "router0: SAM 127.0.0.1:7100  (floodfill)" in out
    assert "router2: SAM 127.0.0.1:7104  (for nodes)" in out
    # The node's config section: on router2, the first router that is not a floodfill.
    assert "  i2p:\n    enabled: true\n    sam_address: 127.0.0.1:7104\n" in out
    assert len(procs.alive) == 4
    assert I2PNetwork.load(tmp_path / "i2p").routers[3].sam_port == 7106


def test_cli_up_i2p_with_tor(tmp_path: Path, procs: FakeProcesses,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert procs.tor_setups == 1 and len(procs.alive) == 3 + 4
    assert "started 3 tor processes" in out and "bootstrapped in 30.0s" in out
    assert "DirAuthority auth0" in out and "sam_address: 127.0.0.1:7104" in out
    assert out.index("DirAuthority lines:") < out.index("I2P routers")


def test_cli_up_without_i2p_is_unchanged(tmp_path: Path, procs: FakeProcesses,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"started 3 tor processes in {tmp_path}\nbootstrapped in 30.0s\n"
                          "DirAuthority lines:\n")
    assert "I2P" not in out and "i2p:" not in out and not (tmp_path / "i2p").exists()


def test_cli_i2p_flags_exclude_each_other(tmp_path: Path, procs: FakeProcesses,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["devnet", "up", "--i2p", "--i2p-only", "--dir", str(tmp_path)])
    assert "not allowed with" in capsys.readouterr().err


def test_cli_up_i2p_without_the_patched_i2pd(tmp_path: Path, procs: FakeProcesses,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AEGIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AEGIS_I2PD", raising=False)
    monkeypatch.setattr("aegis_hidden.testing._i2pnet.installed_i2pd_version", lambda: "2.45.1-1")
    monkeypatch.setattr(_devnet, "find_patched_i2pd", find_patched_i2pd)
    assert main(["devnet", "up", "--i2p", "--dir", str(tmp_path / "net")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run .ci/build-i2pd.sh (make setup)" in err
    assert procs.tor_setups == 0 and not procs.alive  # checked before tor starts
    # No Debian i2pd package at all: still one line, still saying what to run.
    def no_package() -> str:
        raise I2PNetworkError("cannot find the installed i2pd Debian package: not installed")

    monkeypatch.setattr("aegis_hidden.testing._i2pnet.installed_i2pd_version", no_package)
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path / "net")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run .ci/build-i2pd.sh or make setup" in err


def test_cli_up_i2p_failure_is_one_line_and_stops_both(
        tmp_path: Path, procs: FakeProcesses, capsys: pytest.CaptureFixture[str]) -> None:
    procs.i2p_fail = "routers [2, 3] built no tunnels in 180s:\n--- router 0\nlog line\nmore"
    assert main(["devnet", "up", "--i2p", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "routers [2, 3] built no tunnels in 180s (logs: " in err and "log line" not in err
    assert not procs.alive and len(procs.signals) == 3 + 4


def test_cli_up_refuses_a_running_i2p_network(tmp_path: Path, procs: FakeProcesses,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["devnet", "up", "--i2p", "--dir", str(tmp_path)]) == 1
    assert "an I2P network is already running" in capsys.readouterr().err
    assert procs.tor_setups == 0 and len(procs.alive) == 4


def test_cli_up_i2p_again_after_down_starts_fresh(tmp_path: Path, procs: FakeProcesses,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path)]) == 0
    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 0
    stale = tmp_path / "i2p" / "router0" / "router.info"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"old ports")
    (tmp_path / "i2p" / "router0" / "i2pd.log").write_text("old log")
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path)]) == 0
    assert not stale.exists()  # a router.info with the old ports would go into the reseed zip
    assert len(procs.alive) == 4


def test_cli_status_and_down_of_tor_and_i2p(tmp_path: Path, procs: FakeProcesses,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "client0" in out and "DirAuthority auth0" in out
    assert "router0  floodfill pid 90004   running  SAM 127.0.0.1:7100" in out
    assert "router3  router    pid 90007   running  SAM 127.0.0.1:7106" in out
    assert "sam_address: 127.0.0.1:7104" in out

    assert main(["devnet", "status", "--json", "--dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["clients"][0]["socks_port"] == 5004
    assert [r["sam_address"] for r in data["i2p"]["routers"]] == [
        f"127.0.0.1:{7100 + 2 * i}" for i in range(4)]
    assert [r["floodfill"] for r in data["i2p"]["routers"]] == [True, True, False, False]
    assert data["i2p"]["node_config"]["i2p"]["sam_address"] == "127.0.0.1:7104"
    assert data["i2p"]["node_config"]["i2p"]["enabled"] is True

    procs.alive.discard(90006)  # router2 died
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 3
    assert "router2  router    pid 90006   stopped" in capsys.readouterr().out

    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"stopped the I2P network in {tmp_path / 'i2p'} (logs kept)" in out
    assert f"stopped the network in {tmp_path} (logs kept)" in out
    assert not procs.alive
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 3
    assert "running" not in capsys.readouterr().out


def test_cli_status_and_down_of_an_i2p_only_network(tmp_path: Path, procs: FakeProcesses,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--i2p-only", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DirAuthority" not in out and out.count("running") == 4
    assert main(["devnet", "status", "--json", "--dir", str(tmp_path)]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["i2p"]
    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == f"stopped the I2P network in {tmp_path / 'i2p'} (logs kept)\n"
    assert not procs.alive and {sig for _, sig in procs.signals} == {signal.SIGTERM}


def test_cli_down_of_a_tor_network_leaves_no_i2p_message(
        tmp_path: Path, procs: FakeProcesses, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"stopped the network in {tmp_path} (logs kept)\n"


def test_cli_corrupt_i2p_state_is_one_line(tmp_path: Path, procs: FakeProcesses,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "up", "--dir", str(tmp_path)]) == 0
    (tmp_path / "i2p").mkdir()
    (tmp_path / "i2p" / "network.json").write_text("{not json")
    capsys.readouterr()
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable I2P network state" in err
    assert main(["devnet", "down", "--dir", str(tmp_path)]) == 1  # tor is stopped anyway
    captured = capsys.readouterr()
    assert f"stopped the network in {tmp_path}" in captured.out
    assert "no usable I2P network state" in captured.err and not procs.alive
