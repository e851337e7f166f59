"""The private-network harness without starting tor: torrc, state file, log parsing, CLI."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aegis_hidden.cli import main
from aegis_hidden.testing import TorNetwork, TorNetworkError, free_ports
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
