"""Configuration: YAML schema, defaults, validation and refusal of leaky settings."""

from ._bridges import (
    TRANSPORT_BINARIES,
    BridgeLine,
    BridgeLineError,
    bridge_torrc_lines,
    parse_bridge_line,
    transport_plugins,
)
from ._checks import is_loopback, split_host_port
from ._errors import ConfigError, ConfigProblems, PrivacyError
from ._migrate import Migration, migrate
from ._schema import (
    ApiConfig,
    Config,
    DhtConfig,
    I2PConfig,
    MixingConfig,
    NetworkConfig,
    PerformanceConfig,
    PubSubConfig,
    SecurityConfig,
    TorConfig,
    describe,
    load_config,
    parse_config,
    read_yaml,
)

__all__ = [
    "TRANSPORT_BINARIES",
    "ApiConfig",
    "BridgeLine",
    "BridgeLineError",
    "Config",
    "ConfigError",
    "ConfigProblems",
    "DhtConfig",
    "I2PConfig",
    "Migration",
    "MixingConfig",
    "NetworkConfig",
    "PerformanceConfig",
    "PrivacyError",
    "PubSubConfig",
    "SecurityConfig",
    "TorConfig",
    "bridge_torrc_lines",
    "describe",
    "is_loopback",
    "load_config",
    "migrate",
    "parse_bridge_line",
    "parse_config",
    "read_yaml",
    "split_host_port",
    "transport_plugins",
]
