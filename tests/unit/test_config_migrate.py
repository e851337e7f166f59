"""``aegis-hidden config migrate``: the seed spec's example becomes a configuration
that passes ``config check``, with a comment on each changed or dropped line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_hidden.cli._main import main
from aegis_hidden.config import Config, ConfigError, load_config, parse_config
from aegis_hidden.config._migrate import migrate
from aegis_hidden.identity import onion_address_from_public_key

SEED = Path(__file__).resolve().parent / "data" / "seed-example.yaml"
ONION = onion_address_from_public_key(bytes(range(32)))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _comment_above(text: str, line_start: str) -> str:
    """The comment block right above the first line that starts with ``line_start``."""
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith(line_start))
    block = []
    for ln in reversed(lines[:at]):
        if not ln.strip().startswith("#"):
            break
        block.append(ln.strip().removeprefix("# "))
    return " ".join(reversed(block))


def test_seed_example_migrates_to_a_file_that_passes_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "node.yaml"
    code, stdout, err = run(capsys, "config", "migrate", str(SEED), "-o", str(out))
    assert code == 0 and stdout == "" and "7 change(s)" in err
    assert run(capsys, "config", "check", str(out)) == (0, f"{out}: OK\n", "")
    cfg = load_config(out)
    text = out.read_text()
    # each of the six problems: changed or dropped, with its reason above the line
    assert cfg.network.listen_address == "127.0.0.1:8080"
    assert "loopback" in _comment_above(text, "listen_address:")
    assert cfg.network.external_address is None and "external_address:" not in text
    assert "only address" in _comment_above(text, "bootstrap_nodes:")
    assert cfg.network.bootstrap_nodes == ()
    why = _comment_above(text, "bootstrap_nodes:")
    assert "bootstrap1.aegis-network.example:8080" in why
    assert "bootstrap2.aegis-network.example:8080" in why
    assert "a host name cannot be a bootstrap peer" in why and ".onion" in why
    assert cfg.security.key_exchange == "X-Wing"
    assert "hybrid X-Wing handshake" in _comment_above(text, "key_exchange:")
    assert "not configurable" in _comment_above(text, "key_exchange:")
    assert cfg.security.private_key_file == Config().security.private_key_file
    why = _comment_above(text, "private_key_file:")
    assert "dropped certificate_file" in why and "onion address" in why
    assert "key.pem" in why and "identity" in why
    assert "certificate_file:" not in text.replace("# dropped certificate_file:", "")
    # what was fine is kept as it was
    assert cfg.network.max_connections == 100 and cfg.network.connection_timeout == 30
    assert cfg.performance.message_batch_size == 100
    assert cfg.performance.connection_pool_size == 20
    assert cfg.log_level == "info"
    # nothing of the old TLS files was read or carried over beyond their names
    assert "cert.pem" not in yaml.safe_load(text).get("security", {}).values()


def test_printed_when_no_output_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "config", "migrate", str(SEED))
    assert code == 0
    parse_config(yaml.safe_load(stdout))
    assert stdout.startswith("# aegis-hidden configuration migrated from")


def test_refuses_to_overwrite_without_force(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "node.yaml"
    out.write_text("mine: true\n")
    code, _, err = run(capsys, "config", "migrate", str(SEED), "-o", str(out))
    assert code == 1 and "--force" in err
    assert out.read_text() == "mine: true\n"
    assert [p.name for p in tmp_path.iterdir()] == ["node.yaml"]  # no temporary left
    assert run(capsys, "config", "migrate", str(SEED), "-o", str(out), "--force")[0] == 0
    load_config(out)


def test_never_replaces_its_own_input(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_bytes(SEED.read_bytes())
    code, _, err = run(capsys, "config", "migrate", str(seed), "-o", str(seed), "--force")
    assert code == 1 and "replace the configuration it came from" in err
    assert seed.read_bytes() == SEED.read_bytes()


def test_secrets_are_never_written(tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "api:\n  auth_token: tok-s3cret-1\n  listen_address: 0.0.0.0:8470\n"
        "security:\n  key_password: hunter2-s3cret\n"
        "database_password: pw-s3cret-3\n"
        "tls:\n  private_key: KEY-s3cret-4\n")
    code, stdout, _ = run(capsys, "config", "migrate", str(seed))
    assert code == 0
    assert "s3cret" not in stdout
    assert "dropped auth_token, not copied" in stdout
    cfg = parse_config(yaml.safe_load(stdout))
    assert cfg.api.listen_address == "127.0.0.1:8470"


RULES: list[tuple[dict[str, Any], str, Any, str]] = [
    ({"security": {"enable_tor": False}}, "security.enable_tor", True, "in the clear"),
    ({"tor": {"mode": "connect", "control_port": "10.0.0.2:9051"}}, "tor.mode", "launch",
     "launches its own tor"),
    ({"tor": {"mode": "connect"}}, "tor.mode", "launch", "launches its own tor"),
    ({"i2p": {"sam_address": "192.0.2.1:7656"}}, "i2p.sam_address", "127.0.0.1:7656",
     "unencrypted"),
    ({"network": {"max_connections": -3}}, "network.max_connections", 50, "integer from 1"),
    ({"network": {"bootstrap_nodes": [ONION, "peer.example:1"]}}, "network.bootstrap_nodes",
     (ONION,), "cannot be a bootstrap peer"),
    ({"logging": {"level": "warning", "file": "/var/log/aegis.log"}}, "log_level", "warn",
     "moved here"),
    ({"network": "not a section"}, "network.max_connections", 50, "mapping"),
]


@pytest.mark.parametrize(("raw", "key", "expected", "why"), RULES,
                         ids=[r[1] for r in RULES])
def test_rules(raw: dict[str, Any], key: str, expected: Any, why: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw)
    m = migrate(raw)
    text = m.to_yaml("seed.yaml")
    cfg = parse_config(yaml.safe_load(text))
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    assert node == expected
    assert why in " ".join(text.split()).replace("# ", "")


def test_keys_that_are_not_strings_are_dropped() -> None:
    m = migrate({1: "x", "network": {True: 2, "max_connections": 4}})
    assert m.raw == {"network": {"max_connections": 4}}
    parse_config(yaml.safe_load(m.to_yaml("seed.yaml")))


def test_a_valid_file_comes_back_unchanged() -> None:
    raw = {"network": {"max_connections": 7, "bootstrap_nodes": [ONION]},
           "api": {"onion": True}}
    m = migrate(raw)
    assert m.changed == 0 and m.raw == raw
    text = m.to_yaml("node.yaml")
    assert yaml.safe_load(text) == raw and "Nothing needed changing" in text


def test_not_a_mapping_cannot_be_migrated(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("- a\n- b\n")
    code, _, err = run(capsys, "config", "migrate", str(seed))
    assert code == 2 and "nothing to migrate" in err
