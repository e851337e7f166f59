"""deploy/systemd: the unit passes ``systemd-analyze verify`` and keeps its sandbox, its
command parses as the node's own options, its config is valid, and the logrotate file
works with how the node writes its log."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aegis_hidden import tap
from aegis_hidden.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "aegis-hidden.service"
INSTALLED_TWISTD = "/opt/aegis-hidden/bin/twistd"


def _unit() -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}`` (a key may repeat in a unit file)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def _service(key: str) -> str:
    return " ".join(_unit()["Service"][key])


def _verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # verify wants ExecStart's binary to exist: the unit runs this venv's twistd here.
    path = tmp_path / UNIT.name
    path.write_text(text.replace(INSTALLED_TWISTD, str(Path(sys.executable).with_name("twistd"))))
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze not installed (systemd)")


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert INSTALLED_TWISTD in UNIT.read_text()
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


@needs_systemd_analyze
def test_verify_catches_mistakes(tmp_path: Path) -> None:
    text = UNIT.read_text()
    misspelled = _verify(text.replace("ProtectSystem=strict", "ProtectSystm=strict"), tmp_path)
    assert "Unknown key" in misspelled.stderr
    bad_value = _verify(text.replace("ProtectSystem=strict", "ProtectSystem=stric"), tmp_path)
    assert "ProtectSystem" in bad_value.stderr or "protect system" in bad_value.stderr
    missing = _verify(text.replace(INSTALLED_TWISTD, "/nonexistent/twistd"), tmp_path)
    assert missing.returncode != 0 and "not executable" in missing.stderr


def test_sandbox() -> None:
    expected = {
        "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
        "NoNewPrivileges": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        # Loopback only: tor and i2pd are other services of this machine.
        "IPAddressDeny": "any", "IPAddressAllow": "localhost",
        "RestrictSUIDSGID": "yes", "UMask": "0077", "User": "aegis-hidden",
    }
    for key, value in expected.items():
        assert _service(key) == value, key
    assert "@system-service" in _service("SystemCallFilter")


def test_command_is_the_nodes_and_its_config_is_valid(tmp_path: Path) -> None:
    argv = shlex.split(_service("ExecStart"))
    assert argv[0] == INSTALLED_TWISTD and argv[1] == "-n" and "--pidfile=" in argv
    node_args = argv[argv.index("aegis-hidden") + 1:]
    config, data_dir = (node_args[node_args.index(o) + 1] for o in ("--config", "--data-dir"))
    # Where the unit lets the node write: its state, logs and configuration directories.
    assert data_dir == "/var/lib/" + _service("StateDirectory")
    assert config.startswith("/etc/" + _service("ConfigurationDirectory") + "/")
    log_file = next(a for a in argv if a.startswith("--logfile=")).split("=", 1)[1]
    assert log_file.startswith("/var/log/" + _service("LogsDirectory") + "/")
    cfg = load_config(SYSTEMD / "node.yaml")
    assert cfg.tor.mode == "connect" and cfg.tor.control_port == "unix:/run/tor/control"
    assert cfg.i2p.enabled and cfg.api.listen_address.startswith("127.0.0.1:")
    node_args[node_args.index("--config") + 1] = str(SYSTEMD / "node.yaml")
    node_args[node_args.index("--data-dir") + 1] = str(tmp_path)
    tap.Options().parseOptions(node_args)  # every option exists and the config loads
    assert "debian-tor" in _service("SupplementaryGroups")  # tor's control socket group
    assert _service("ExecReload") == "/bin/kill -USR1 $MAINPID"  # reopens the log


def test_logrotate_moves_and_signals_never_truncates() -> None:
    text = (SYSTEMD / "aegis-hidden.logrotate").read_text()
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    log_file = next(a for a in shlex.split(_service("ExecStart")) if a.startswith("--logfile="))
    assert lines[0] == log_file.split("=", 1)[1] + " {"
    assert "copytruncate" not in lines and "nocreate" in lines
    assert "systemctl reload aegis-hidden.service >/dev/null 2>&1 || true" in lines
    # Compressed, dated names: never FILE.N, which the node's own rotation uses.
    assert "dateext" in lines and "compress" in lines
