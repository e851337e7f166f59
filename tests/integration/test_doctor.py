"""``aegis-hidden doctor`` against the private Tor network's client tor.

A node runs in connect mode on the client tor (``twistd -n aegis-hidden``, a real
process): doctor, run as the command a person types, finds its control port,
authenticates with the cookie, reads bootstrap and the consensus times, reaches
the node's own onion through that tor, and exits 0. Pointed at a loopback port
where nothing listens, it says so with the fix and exits 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("aegis-hidden"))


def doctor(config: Path, data_dir: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    args = [CLI, "doctor", "-c", str(config), "-d", str(data_dir), "--timeout", "5", *extra]
    as_json = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=180)
    text = subprocess.run(args, capture_output=True, text=True, timeout=180)
    doc = json.loads(as_json.stdout) if as_json.stdout.strip() else {}
    assert as_json.returncode == text.returncode, (as_json.stderr, text.stdout)
    return text.returncode, doc, text.stdout


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["status"] for f in doc.get("findings", [])}


@pytest.fixture(scope="module")
def node(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[NodeProcess]:
    client = tor_network.client
    root = tmp_path_factory.mktemp("doctor")
    n = prepare_node(tor_network, "doc", root / "doc", extra={
        "tor": {"mode": "connect", "control_port": f"127.0.0.1:{client.control_port}"}})
    start_node(n)
    try:
        wait_for(lambda: n.tor_state().get("ready") and n.status().get("onion"), 180,
                 "the node to publish its onion", [n])
        yield n
    finally:
        n.stop()


def test_doctor_healthy_on_a_running_node(node: NodeProcess) -> None:
    config = node.data_dir / "node.yaml"
    result: dict[str, Any] = {}

    def healthy() -> bool:
        # a descriptor freshly uploaded may take a few seconds to be found
        result["run"] = doctor(config, node.data_dir, "--onion-timeout", "60")
        return bool(result["run"][0] == 0)

    wait_for(healthy, 240, "doctor to find the node healthy", [node], interval=5)
    code, doc, text = result["run"]
    got = statuses(doc)
    assert doc["ok"] is True and code == 0
    for check in ("tor installed", "tor control", "clock", "data dir", "key files",
                  "disk space", "tor bootstrap", "own onion"):
        assert got[check] == "ok", (check, text)
    assert node.onion in text and "authenticated (cookie)" in text
    assert "No problem found." in text


def test_doctor_fails_on_a_wrong_control_port(node: NodeProcess, tmp_path: Path) -> None:
    raw = yaml.safe_load((node.data_dir / "node.yaml").read_text())
    port = free_ports(1)[0]
    raw["tor"]["control_port"] = f"127.0.0.1:{port}"
    config = tmp_path / "wrong.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, doc, text = doctor(config, node.data_dir)
    assert code == 1 and doc["ok"] is False
    got = statuses(doc)
    assert got["tor control"] == "fail"
    assert got["tor bootstrap"] == "skip" and got["clock"] == "skip"
    assert f"127.0.0.1:{port}" in text and "Connection refused" in text
    assert f'fix: start tor with "ControlPort 127.0.0.1:{port}"' in text
    assert text.strip().endswith("1 check(s) failed.")
