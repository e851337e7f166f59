"""docker-compose.yml is written and validated here (no Docker engine on these machines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aegis_hidden.config import is_loopback, load_config

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_services_and_shared_namespace() -> None:
    services = _compose()["services"]
    assert set(services) == {"node", "tor", "i2pd"}
    # node and i2pd live in tor's network namespace: loopback is shared.
    assert services["node"]["network_mode"] == "service:tor"
    assert services["i2pd"]["network_mode"] == "service:tor"
    assert (ROOT / "Dockerfile").exists()


def test_nothing_published_off_loopback() -> None:
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            host = str(port).split(":")[0]
            assert is_loopback(host), f"{name} publishes {port} on a non-loopback address"


def test_mounted_files_exist_and_node_config_is_valid() -> None:
    for svc in _compose()["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"
    cfg = load_config(ROOT / "docs" / "compose-node.yaml")
    assert cfg.tor.mode == "connect" and cfg.i2p.enabled
    torrc = (ROOT / "torrc.d" / "compose.torrc").read_text().splitlines()
    ports = [line.split()[1] for line in torrc if line.split()[:1] in (["SocksPort"], ["ControlPort"])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)
    assert cfg.tor.control_port in ports and cfg.tor.socks_port in ports
