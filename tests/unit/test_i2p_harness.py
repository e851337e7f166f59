"""The private I2P network harness, without starting i2pd: config files and state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aegis_hidden.i2p import is_b32_address
from aegis_hidden.testing._i2pnet import PATCH, I2PNetwork, I2PNetworkError, Router


def _net(tmp_path: Path) -> I2PNetwork:
    net = I2PNetwork(tmp_path / "net", binary=Path("/nonexistent/i2pd"))
    net.directory.mkdir()
    for i in range(4):
        router = Router(i, net.directory / f"router{i}", 20000 + i, 21000 + i)
        router.directory.mkdir()
        net.routers.append(router)
    return net


def _conf(router: Router) -> dict[str, str]:
    out: dict[str, str] = {}
    section = ""
    for line in (router.directory / "i2pd.conf").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[section + key.strip()] = value.strip()
    return out


def test_config_is_a_private_loopback_network(tmp_path: Path) -> None:
    net = _net(tmp_path)
    for router in net.routers:
        net._write_config(router, reseed=True)
    confs = [_conf(r) for r in net.routers]
    for router, conf in zip(net.routers, confs, strict=True):
        assert conf["netid"] == "37" and conf["reservedrange"] == "false"
        assert conf["host"] == conf["address4"] == "127.0.0.1" and conf["ipv6"] == "false"
        assert conf["ntcp2.port"] == conf["ssu2.port"] == str(router.port)
        assert conf["sam.enabled"] == "true" and conf["sam.address"] == "127.0.0.1"
        assert conf["sam.port"] == str(router.sam_port)
        assert conf["reseed.urls"] == "" and conf["reseed.zipfile"] == str(net.zip_path)
        for off in ("http", "httpproxy", "socksproxy", "bob", "i2cp", "i2pcontrol", "upnp",
                    "nettime"):
            assert conf[f"{off}.enabled"] == "false", off
        url = conf["addressbook.subscriptions"]
        assert conf["addressbook.enabled"] == "true"
        assert is_b32_address(url.removeprefix("http://").removesuffix("/hosts.txt"))
        assert conf["exploratory.inbound.length"] == "1"
    assert [c["floodfill"] for c in confs] == ["true", "true", "false", "false"]
    assert net.client_routers == [2, 3]


def test_first_start_config_has_no_reseed_zip(tmp_path: Path) -> None:
    net = _net(tmp_path)
    net._write_config(net.routers[0], reseed=False)
    assert _conf(net.routers[0])["reseed.zipfile"] == ""


def test_state_round_trip_and_stale_pids_are_not_running(tmp_path: Path) -> None:
    net = _net(tmp_path)
    net.routers[0].pid = os.getpid()  # alive, but not an i2pd of this data dir
    net.save()
    again = I2PNetwork.load(net.directory)
    assert [(r.port, r.sam_port) for r in again.routers] == [(r.port, r.sam_port)
                                                            for r in net.routers]
    assert again.netid == 37 and again.floodfills == 2
    assert not again.is_running(0)
    again.stop()  # nothing of ours is running: nothing is killed
    with pytest.raises(I2PNetworkError, match="no usable"):
        I2PNetwork.load(tmp_path / "elsewhere")


def test_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="netid 2"):
        I2PNetwork(Path("x"), netid=2)
    with pytest.raises(ValueError, match="2 or more"):
        I2PNetwork(Path("x"), routers=1)
    with pytest.raises(ValueError, match="floodfill"):
        I2PNetwork(Path("x"), routers=4, floodfills=4)


def test_patch_says_why_and_touches_only_the_reserved_range_checks() -> None:
    text = PATCH.read_text()
    assert "reservedrange" in text and "2.51.0" in text
    changed = [line for line in text.splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert changed and all("IsInReservedRange" in line for line in changed)
