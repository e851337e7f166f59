"""Configuration: defaults, every class of bad value, and every refused leak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_hidden.config import (
    Config,
    ConfigError,
    PrivacyError,
    describe,
    load_config,
    parse_config,
)
from aegis_hidden.identity import onion_address_from_public_key

ROOT = Path(__file__).resolve().parents[2]
ONION = onion_address_from_public_key(bytes(range(32)))
B32 = "a" * 52 + ".b32.i2p"


def test_no_file_means_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.network.listen_address == "127.0.0.1:7701"
    assert cfg.security.encryption == "AES-256-GCM"
    assert cfg.security.enable_tor is True
    assert cfg.api.listen_address.startswith("127.0.0.1:")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("# nothing\n")
    assert load_config(p) == Config()


def test_example_file_is_valid_and_lists_every_default() -> None:
    example = ROOT / "docs" / "aegis-hidden.example.yaml"
    assert load_config(example) == Config()
    raw = yaml.safe_load(example.read_text())
    for key, _default, _doc in describe():
        node: Any = raw
        for part in key.split("."):
            assert part in node, f"{key} missing from the example file"
            node = node[part]


def test_configuration_doc_lists_every_key() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for key, _default, _doc in describe():
        assert f"`{key}`" in doc, f"{key} is not documented in docs/configuration.md"


def test_seed_spec_names_are_kept() -> None:
    cfg = parse_config({
        "network": {"listen_address": "127.0.0.1:9000", "external_address": None,
                    "bootstrap_nodes": [ONION, f"{ONION}:7701", B32],
                    "max_connections": 10, "connection_timeout": 5},
        "security": {"encryption": "ChaCha20-Poly1305", "key_exchange": "X-Wing",
                     "signature_algorithm": "Ed25519+ML-DSA-65", "private_key_file": "k/master_key.json",
                     "enable_tor": True},
        "performance": {"message_batch_size": 5, "compression_threshold": 0,
                        "connection_pool_size": 3, "max_message_size": 2048},
    })
    assert cfg.network.bootstrap_nodes == (ONION, f"{ONION}:7701", B32)
    assert cfg.network.connection_timeout == 5.0
    assert cfg.security.encryption == "ChaCha20-Poly1305"
    assert cfg.performance.max_message_size == 2048


# Each bad value class: (raw config, key path named, words of the "allowed" part)
BAD_VALUES = [
    ({"network": {"max_connections": 0}}, "network.max_connections", "integer from 1"),
    ({"network": {"max_connections": "many"}}, "network.max_connections", "integer"),
    ({"network": {"max_connections": True}}, "network.max_connections", "integer"),
    ({"network": {"connection_timeout": -1}}, "network.connection_timeout", "number from"),
    ({"network": {"listen_address": "nonsense"}}, "network.listen_address", "HOST:PORT"),
    ({"network": {"listen_address": "127.0.0.1:99999"}}, "network.listen_address", "port"),
    ({"network": {"listen_address": "unix:relative"}}, "network.listen_address", "absolute"),
    ({"network": {"bootstrap_nodes": "x.onion"}}, "network.bootstrap_nodes", "list"),
    ({"network": {"bootstrap_nodes": ["a" * 56 + ".onion"]}}, "network.bootstrap_nodes[0]",
     "valid v3 onion"),
    ({"network": {"bootstrap_nodes": [f"{ONION}:0"]}}, "network.bootstrap_nodes[0]", "port"),
    ({"security": {"encryption": "DES"}}, "security.encryption", "AES-256-GCM"),
    ({"security": {"key_exchange": "ECDH"}}, "security.key_exchange", "X-Wing"),
    ({"security": {"signature_algorithm": "RSA"}}, "security.signature_algorithm", "Ed25519"),
    ({"security": {"signature_algorithm": "Ed25519"}}, "security.signature_algorithm",
     "only allowed value is 'Ed25519+ML-DSA-65'"),
    ({"security": {"enable_tor": "yes"}}, "security.enable_tor", "true or false"),
    ({"security": {"private_key_file": "keys/other.pem"}}, "security.private_key_file",
     "master_key.json"),
    ({"performance": {"max_message_size": 10}}, "performance.max_message_size", "from 1024"),
    ({"performance": {"compression_threshold": -5}}, "performance.compression_threshold", "from 0"),
    ({"tor": {"mode": "embedded"}}, "tor.mode", "launch, connect"),
    ({"tor": {"mode": "connect"}}, "tor.control_port", "control port"),
    ({"tor": {"dir_authorities": ["ok", 5]}}, "tor.dir_authorities[1]", "string"),
    ({"tor": {"torrc_lines": ["a\nb"]}}, "tor.torrc_lines[0]", "single line"),
    ({"mixing": {"cell_size": 16}}, "mixing.cell_size", "from 256"),
    ({"api": {"enabled": 1}}, "api.enabled", "true or false"),
    ({"network": {"bogus": 1}}, "network.bogus", "unknown key"),
    ({"nope": {}}, "nope", "unknown key"),
    ({"network": [1, 2]}, "network", "mapping"),
    ([1, 2], "(top level)", "mapping"),
    ({"log_level": "loud"}, "log_level", "debug, info"),
    ({"streams": {"window": 100}}, "streams.window", "integer from 1024"),
    ({"streams": {"window": 4096, "chunk": 8192}}, "streams.window", "at least one chunk"),
    ({"streams": {"chunk": 70000}}, "streams.chunk", "integer from 512 to 65536"),
    ({"streams": {"send_buffer": -1}}, "streams.send_buffer", "integer from 0"),
    ({"streams": {"max_streams_per_peer": 0}}, "streams.max_streams_per_peer", "integer from 1"),
    ({"streams": {"max_streams_per_peer": "16"}}, "streams.max_streams_per_peer", "integer"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), BAD_VALUES,
                         ids=[p + ":" + repr(r)[:30] for r, p, _ in BAD_VALUES])
def test_bad_values_name_path_value_and_allowed(raw: Any, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "node.yaml")
    err = info.value
    assert not isinstance(err, PrivacyError)
    assert err.path == path
    message = str(err)
    assert message.startswith("node.yaml: ")
    assert path in message
    assert allowed in message
    assert "\n" not in message


LEAKS = [
    ({"network": {"listen_address": "0.0.0.0:7701"}}, "network.listen_address", "loopback"),
    ({"network": {"listen_address": "192.168.1.5:7701"}}, "network.listen_address", "loopback"),
    ({"network": {"listen_address": "[::]:7701"}}, "network.listen_address", "loopback"),
    ({"network": {"listen_address": "example.org:7701"}}, "network.listen_address", "loopback"),
    ({"network": {"external_address": "203.0.113.7"}}, "network.external_address", ".onion"),
    ({"network": {"external_address": "node.example.org:443"}}, "network.external_address",
     ".onion"),
    ({"security": {"enable_tor": False}}, "security.enable_tor", "i2p.enabled: true"),
    ({"security": {"enable_tor": False}, "i2p": {"enabled": False}}, "security.enable_tor",
     "i2p.enabled"),
    ({"api": {"listen_address": "0.0.0.0:8470"}}, "api.listen_address", "127.0.0.1"),
    ({"api": {"listen_address": "10.1.2.3:80"}}, "api.listen_address", "client-authorized"),
    ({"network": {"bootstrap_nodes": ["198.51.100.1:7701"]}}, "network.bootstrap_nodes[0]",
     ".onion or .b32.i2p"),
    ({"network": {"bootstrap_nodes": [ONION, "peer.example.com"]}},
     "network.bootstrap_nodes[1]", ".onion"),
    ({"network": {"bootstrap_nodes": ["something.i2p"]}}, "network.bootstrap_nodes[0]",
     ".b32.i2p"),
    ({"tor": {"mode": "connect", "control_port": "10.0.0.2:9051"}}, "tor.control_port",
     "127.0.0.1"),
    ({"i2p": {"sam_address": "192.0.2.9:7656"}}, "i2p.sam_address", "127.0.0.1"),
]


@pytest.mark.parametrize(("raw", "path", "fix"), LEAKS,
                         ids=[p + ":" + repr(r)[:40] for r, p, _ in LEAKS])
def test_leaky_configurations_are_refused(raw: Any, path: str, fix: str) -> None:
    with pytest.raises(PrivacyError) as info:
        parse_config(raw, "node.yaml")
    assert info.value.path == path
    message = str(info.value)
    assert "privacy" in message and path in message and "Fix:" in message
    assert fix in message.split("Fix:", 1)[1]


def test_safe_alternatives_are_accepted() -> None:
    parse_config({"network": {"listen_address": "unix:/run/aegis/peer.sock"}})
    parse_config({"network": {"listen_address": "[::1]:7701", "external_address": None}})
    parse_config({"security": {"enable_tor": False}, "i2p": {"enabled": True}})
    parse_config({"api": {"listen_address": "localhost:8470", "onion": True}})
    parse_config({"tor": {"mode": "connect", "control_port": "unix:/run/tor/control"}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("network:\n  max_connections: [1,\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line \d+"):
        load_config(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_overrides_are_validated_too() -> None:
    assert load_config(None, {"tor.socks_port": "127.0.0.1:9999"}).tor.socks_port == \
        "127.0.0.1:9999"
    with pytest.raises(PrivacyError, match=r"api\.listen_address"):
        load_config(None, {"api.listen_address": "0.0.0.0:1"})


def test_data_dir_resolution(tmp_path: Path) -> None:
    cfg = Config()
    assert cfg.resolve_data_dir(str(tmp_path)) == tmp_path
    assert cfg.resolve_data_dir(None).name == ".aegis-hidden"
    assert cfg.identity_dir(tmp_path) == tmp_path / "identity"


def test_i2p_needs_a_tcp_listen_address() -> None:
    """SAM STREAM FORWARD can only reach host:port, so a unix listen socket cannot
    receive I2P streams: refused at start-up rather than failing inside the provider."""
    with pytest.raises(ConfigError, match=r"network\.listen_address.*STREAM FORWARD"):
        parse_config({"network": {"listen_address": "unix:/run/aegis/peer.sock"},
                      "i2p": {"enabled": True}})
    parse_config({"network": {"listen_address": "127.0.0.1:7701"}, "i2p": {"enabled": True}})


@pytest.mark.parametrize("value", [ONION, B32, f"{ONION}:7701"])
def test_external_address_does_nothing_so_any_value_is_refused(value: str) -> None:
    """The node's address is its identity's onion: a set external_address would be
    a promise the node does not keep (it advertises nothing else)."""
    with pytest.raises(ConfigError) as info:
        parse_config({"network": {"external_address": value}}, "node.yaml")
    assert not isinstance(info.value, PrivacyError)
    assert info.value.path == "network.external_address" and "does nothing" in str(info.value)
    assert parse_config({"network": {"external_address": None}}).network.external_address is None
