"""Bridge lines, tor.bridges / tor.transports, the generated torrc and the bridge status."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock

from aegis_hidden.config import ConfigError, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.testing import memory_identity
from aegis_hidden.testing._tornet import FakeTorControl
from aegis_hidden.tor import (
    BridgeLine,
    BridgeLineError,
    TorProvider,
    TorSession,
    TransportNotFound,
    bridge_summary,
    launch_torrc_lines,
    parse_bridge_line,
    plugin_binaries,
)
from aegis_hidden.tor._bridges import parse_getconf

FP = "A" * 38 + "0F"
CERT = base64.b64encode(bytes(range(52))).decode().rstrip("=")
OBFS4 = f"obfs4 192.0.2.1:443 {FP} cert={CERT} iat-mode=0"
SNOWFLAKE = (f"snowflake 192.0.2.3:80 {FP} fingerprint={FP} "
             "url=https://snowflake-broker.example/ fronts=cdn.example "
             "ice=stun:stun.example:3478 utls-imitate=hellorandomizedalpn")
WEBTUNNEL = f"webtunnel [2001:db8::1]:443 {FP} url=https://bridge.example/secretpath ver=0.0.1"
MEEK = f"meek_lite 192.0.2.18:80 {FP} url=https://meek.example/ front=cdn.example"
VANILLA = f"198.51.100.7:9001 {FP}"

BINARIES = {"obfs4proxy": "/usr/bin/obfs4proxy", "snowflake-client": "/usr/bin/snowflake-client",
            "webtunnel-client": "/usr/local/bin/webtunnel-client"}


def which(name: str) -> str | None:
    return BINARIES.get(name)


def nothing(name: str) -> str | None:
    return None


def cfg(**tor: Any) -> Any:
    return parse_config({"tor": tor})


# -- the parser ---------------------------------------------------------------------------

def test_obfs4_line_as_tor_prints_it() -> None:
    b = parse_bridge_line("Bridge " + OBFS4)
    assert b == BridgeLine("obfs4", "192.0.2.1", 443, FP,
                           (("cert", CERT), ("iat-mode", "0")))
    assert b.torrc_value() == OBFS4
    assert b.describe() == "obfs4 192.0.2.1:443"  # no cert in logs or status


@pytest.mark.parametrize("line", [OBFS4, SNOWFLAKE, WEBTUNNEL, MEEK, VANILLA])
def test_every_transport_round_trips(line: str) -> None:
    b = parse_bridge_line(line)
    assert parse_bridge_line(b.torrc_value()) == b
    assert b.torrc_value() == line


def test_ipv6_and_lower_case_fingerprint() -> None:
    b = parse_bridge_line(f"obfs4 [2001:DB8::5]:80 ${FP.lower()} cert={CERT} iat-mode=2")
    assert (b.host, b.port, b.fingerprint) == ("2001:db8::5", 80, FP)
    assert b.address == "[2001:db8::5]:80"


@pytest.mark.parametrize(("line", "problem"), [
    ("", "is empty"),
    ("Bridge", "is empty"),
    ("obfs4", "IP:PORT of the bridge is missing"),
    (f"obfs3 192.0.2.1:443 {FP}", "transport 'obfs3' is not supported"),
    (f"obfs-4 192.0.2.1:443 {FP}", "is not a transport name"),
    (f"obfs4 bridge.example:443 {FP} cert={CERT} iat-mode=0", "is not an IP address"),
    (f"obfs4 192.0.2.1 {FP} cert={CERT} iat-mode=0", "has no :PORT"),
    (f"obfs4 192.0.2.1:0 {FP} cert={CERT} iat-mode=0", "is not from 1 to 65535"),
    (f"obfs4 192.0.2.1:70000 {FP} cert={CERT} iat-mode=0", "is not from 1 to 65535"),
    (f"obfs4 2001:db8::1:443 {FP} cert={CERT} iat-mode=0", "[ADDRESS]:PORT"),
    (f"obfs4 [192.0.2.1]:443 {FP} cert={CERT} iat-mode=0", "[ADDRESS]:PORT"),
    (f"obfs4 192.0.2.1:443 cert={CERT} iat-mode=0", "fingerprint"),
    (f"obfs4 192.0.2.1:443 {FP[:-1]} cert={CERT} iat-mode=0", "fingerprint"),
    (f"obfs4 192.0.2.1:443 {FP} iat-mode=0", "needs cert="),
    (f"obfs4 192.0.2.1:443 {FP} cert={CERT}", "needs iat-mode="),
    (f"obfs4 192.0.2.1:443 {FP} cert=abc iat-mode=0", "not an obfs4 certificate"),
    (f"obfs4 192.0.2.1:443 {FP} cert={CERT} iat-mode=3", "iat-mode= must be 0, 1 or 2"),
    (f"obfs4 192.0.2.1:443 {FP} cert={CERT} iat-mode=0 iat-mode=1", "given twice"),
    (f"obfs4 192.0.2.1:443 {FP} cert={CERT} junk", "is not KEY=VALUE"),
    (f"snowflake 192.0.2.3:80 {FP} fronts=x", "needs url="),
    (f"webtunnel 192.0.2.3:443 {FP} url=http://bridge.example/", "https://"),
    (f"192.0.2.1:443 {FP} cert={CERT}", "need a transport name"),
    (f"obfs4 192.0.2.1:443 {FP} cert={CERT} iat-mode=0\nUseBridges 0", "one line"),
])
def test_bad_lines_are_refused_naming_line_and_problem(line: str, problem: str) -> None:
    with pytest.raises(BridgeLineError) as e:
        parse_bridge_line(line)
    assert problem in str(e.value)
    assert repr(line) in str(e.value)


@given(st.text(max_size=200))
def test_parser_never_fails_otherwise(line: str) -> None:
    try:
        b = parse_bridge_line(line)
    except BridgeLineError:
        return
    assert parse_bridge_line(b.torrc_value()) == b


# -- the config keys ------------------------------------------------------------------------

def test_config_keys_default_empty_and_normalise() -> None:
    assert parse_config({}).tor.bridges == () and parse_config({}).tor.transports == ()
    c = cfg(bridges=["Bridge " + OBFS4], transports=["obfs4", "snowflake=/opt/sf"])
    assert c.tor.bridges == (OBFS4,)
    assert c.tor.transports == ("obfs4", "snowflake=/opt/sf")


@pytest.mark.parametrize(("tor", "path", "problem"), [
    ({"bridges": [OBFS4, "obfs4 1.2.3.4:5"]}, "tor.bridges[1]", "fingerprint"),
    ({"bridges": "obfs4 x"}, "tor.bridges", "expected a list"),
    ({"bridges": [42]}, "tor.bridges[0]", "not a string"),
    ({"transports": ["obfs3"]}, "tor.transports[0]", "not supported"),
    ({"transports": ["obfs4=bin/obfs4proxy"]}, "tor.transports[0]", "absolute path"),
    ({"bridges": [SNOWFLAKE], "transports": ["obfs4"]}, "tor.bridges[0]",
     "'snowflake' is not in tor.transports"),
])
def test_config_refuses_bad_values_naming_the_key(tor: dict[str, Any], path: str,
                                                  problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(**tor)
    assert e.value.path == path
    assert problem in str(e.value)


# -- the generated torrc ----------------------------------------------------------------------

def test_torrc_for_every_transport() -> None:
    c = cfg(bridges=[OBFS4, MEEK, SNOWFLAKE, WEBTUNNEL, VANILLA])
    lines = launch_torrc_lines(c, which)
    assert lines == [
        "UseBridges 1",
        "ClientTransportPlugin meek_lite,obfs4 exec /usr/bin/obfs4proxy",
        "ClientTransportPlugin snowflake exec /usr/bin/snowflake-client",
        "ClientTransportPlugin webtunnel exec /usr/local/bin/webtunnel-client",
        f"Bridge {OBFS4}", f"Bridge {MEEK}", f"Bridge {SNOWFLAKE}", f"Bridge {WEBTUNNEL}",
        f"Bridge {VANILLA}",
    ]


def test_torrc_with_configured_binary_and_private_network() -> None:
    c = parse_config({"tor": {"bridges": [OBFS4], "transports": ["obfs4=/opt/obfs4proxy"],
                              "testing_network": True, "dir_authorities": ["a 1.2.3.4:5 x"],
                              "torrc_lines": ["Log debug stdout"]}})
    lines = launch_torrc_lines(c, nothing)
    assert lines[lines.index("UseBridges 1"):] == [
        "UseBridges 1", "ClientTransportPlugin obfs4 exec /opt/obfs4proxy", f"Bridge {OBFS4}",
        "Log debug stdout"]
    assert lines.index("DirAuthority a 1.2.3.4:5 x") < lines.index("UseBridges 1")


def test_no_bridges_no_bridge_lines() -> None:
    assert launch_torrc_lines(parse_config({}), which) == []
    assert launch_torrc_lines(cfg(transports=["obfs4"]), which) == []
    assert launch_torrc_lines(cfg(bridges=[VANILLA]), nothing) == ["UseBridges 1",
                                                                   f"Bridge {VANILLA}"]


def test_missing_transport_binary_is_a_clear_start_error() -> None:
    with pytest.raises(TransportNotFound) as e:
        launch_torrc_lines(cfg(bridges=[SNOWFLAKE]), nothing)
    assert "snowflake-client" in str(e.value) and "tor.transports" in str(e.value)
    assert plugin_binaries(cfg(bridges=[OBFS4, SNOWFLAKE]),
                           lambda n: BINARIES[n] if n == "obfs4proxy" else None) == {
        "obfs4": "/usr/bin/obfs4proxy", "snowflake": None}


# -- status and the connect-mode check --------------------------------------------------------

def test_summary_launch_mode_names_transports_not_addresses() -> None:
    s = bridge_summary(cfg(bridges=[OBFS4, SNOWFLAKE]), use_bridges=None)
    assert s == {"configured": 2, "in_use": True, "count": 2,
                 "transports": ["obfs4", "snowflake"], "warning": None}
    assert "192.0.2" not in repr(s) and CERT not in repr(s)
    assert bridge_summary(parse_config({}), use_bridges=None)["in_use"] is False


def test_parse_getconf() -> None:
    assert parse_getconf("UseBridges=1", "UseBridges") == ["1"]
    assert parse_getconf("Bridge", "Bridge") == []
    assert parse_getconf(f"Bridge={OBFS4}\nBridge={VANILLA}", "Bridge") == [OBFS4, VANILLA]


def _connect_provider(tor: dict[str, Any], replies: dict[str, str]
                      ) -> tuple[TorProvider, FakeTorControl, list[tuple[str, Any]]]:
    ident = memory_identity(1000.0)
    config = parse_config({"network": {"listen_address": "127.0.0.1:7801"},
                           "tor": {"mode": "connect", "control_port": "127.0.0.1:9999", **tor}})
    control = FakeTorControl(service_id=ident.onion.removesuffix(".onion"))
    control.replies.update(replies)
    control.bootstrap_line = 'NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"'
    bus = EventBus(now=lambda: 0.0)
    events: list[tuple[str, Any]] = []
    bus.subscribe(lambda e: events.append(
        (e["type"], {k: v for k, v in e.items() if k not in ("type", "time")})))

    async def starter() -> TorSession:
        return TorSession(control, control.socks)

    provider = TorProvider(MemoryReactorClock(), config, ident, Path("/nonexistent"), bus,
                           starter=starter)
    provider.startService()
    return provider, control, events


def test_connect_mode_warns_when_running_tor_uses_no_bridges() -> None:
    provider, control, events = _connect_provider(
        {"bridges": [OBFS4]}, {"GETCONF UseBridges": "UseBridges=0", "GETCONF Bridge": "Bridge"})
    assert provider.state()["ready"]
    assert control.sent("GETCONF") == ["GETCONF UseBridges", "GETCONF Bridge"]
    bridges = provider.state()["bridges"]
    assert bridges["in_use"] is False and bridges["configured"] == 1
    assert "does not use bridges" in bridges["warning"]
    assert ("tor_bridges_unused", {"configured": 1}) in events


def test_connect_mode_reports_the_running_tors_bridges() -> None:
    provider, _, events = _connect_provider(
        {"bridges": [OBFS4]},
        {"GETCONF UseBridges": "UseBridges=1", "GETCONF Bridge": f"Bridge={OBFS4}"})
    assert provider.state()["bridges"] == {"configured": 1, "in_use": True, "count": 1,
                                           "transports": ["obfs4"], "warning": None}
    assert not [e for e in events if e[0] == "tor_bridges_unused"]


def test_connect_mode_without_bridges_configured_still_reports() -> None:
    provider, _, _ = _connect_provider(
        {}, {"GETCONF UseBridges": "UseBridges=1", "GETCONF Bridge": f"Bridge={SNOWFLAKE}"})
    assert provider.state()["bridges"]["transports"] == ["snowflake"]
    assert provider.state()["bridges"]["warning"] is None


# -- the private bridge, devnet and status output ------------------------------------------

def _bridge_net(tmp_path: Path) -> tuple[Any, Any]:
    from aegis_hidden.testing import TorNetwork
    from aegis_hidden.testing._tornet import Instance

    net = TorNetwork(tmp_path)
    bridge = Instance("bridge0", "bridge", str(tmp_path / "bridge0"), or_port=5010,
                      pt_port=5011, fingerprint=FP)
    net.instances = [
        Instance("auth0", "authority", str(tmp_path / "auth0"), or_port=5000, dir_port=5001,
                 fingerprint="F" * 40, v3ident="A" * 40), bridge]
    return net, bridge


def test_private_bridge_torrc_and_line(tmp_path: Path) -> None:
    net, bridge = _bridge_net(tmp_path)
    torrc = net._torrc(bridge).splitlines()
    for line in ("BridgeRelay 1", "PublishServerDescriptor 0", "ORPort 127.0.0.1:5010",
                 "ServerTransportPlugin obfs4 exec /usr/bin/obfs4proxy",
                 "ServerTransportListenAddr obfs4 127.0.0.1:5011", "ExtORPort auto",
                 "TestingTorNetwork 1", "SocksPort 0"):
        assert line in torrc
    assert not any(line.startswith(("DirPort", "AuthoritativeDirectory")) for line in torrc)
    state = tmp_path / "bridge0" / "pt_state"
    state.mkdir(parents=True)
    (state / "obfs4_bridgeline.txt").write_text(
        "# comment\nBridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> "
        f"cert={CERT} iat-mode=0\n")
    line = net.bridge_line(bridge, 0)
    assert line == f"obfs4 127.0.0.1:5011 {FP} cert={CERT} iat-mode=0"
    assert parse_bridge_line(line).transport == "obfs4"
    tor = net.node_tor_config(bridge=bridge, timeout=0)
    assert tor["bridges"] == [line] and tor["transports"] == ["obfs4=/usr/bin/obfs4proxy"]
    # the node section a bridge-only node gets validates
    assert parse_config({"tor": tor}).tor.bridges == (line,)
    net.save()
    from aegis_hidden.testing import TorNetwork
    loaded = TorNetwork.load(tmp_path)
    assert loaded.bridges == 1 and loaded.by_role("bridge")[0].pt_port == 5011


def test_bridge_line_missing_is_a_clear_error(tmp_path: Path) -> None:
    from aegis_hidden.testing import TorNetworkError

    net, bridge = _bridge_net(tmp_path)
    with pytest.raises(TorNetworkError, match="wrote no obfs4 bridge line"):
        net.bridge_line(bridge, 0)


def test_devnet_describe_prints_the_bridge_line_and_a_bridge_only_config(
        tmp_path: Path) -> None:
    from aegis_hidden.cli._devnet import describe

    net, _ = _bridge_net(tmp_path)
    text = describe(net, [OBFS4])
    assert f"bridge line: {OBFS4}" in text
    assert f'    bridges:\n      - "{OBFS4}"' in text
    assert "obfs4=/usr/bin/obfs4proxy" in text
    assert "bridge" not in describe(net)


def test_status_shows_bridges_and_the_warning() -> None:
    from aegis_hidden.cli._status import render

    def state(bridges: dict[str, Any]) -> dict[str, Any]:
        return {"identity": {"onion": "x.onion"},
                "transports": {"tor": {"ready": True, "bootstrap": None,
                                       "bridges": bridges}}}

    used = bridge_summary(cfg(bridges=[OBFS4, SNOWFLAKE]), use_bridges=None)
    assert "       bridges: obfs4, snowflake (2)" in render("api", state(used))
    direct = bridge_summary(parse_config({}), use_bridges=None)
    assert any("bridges: none" in line for line in render("api", state(direct)))
    unused = bridge_summary(
        parse_config({"tor": {"mode": "connect", "control_port": "127.0.0.1:1",
                              "bridges": [OBFS4]}}), use_bridges=False)
    assert "warning: tor.bridges is set" in "\n".join(render("api", state(unused)))
