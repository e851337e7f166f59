"""Configuration: YAML schema, defaults, validation and refusal of leaky settings."""

from ._checks import is_loopback, split_host_port
from ._errors import ConfigError, PrivacyError
from ._schema import (
    ApiConfig,
    Config,
    I2PConfig,
    MixingConfig,
    NetworkConfig,
    PerformanceConfig,
    SecurityConfig,
    TorConfig,
    describe,
    load_config,
    parse_config,
)

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "I2PConfig",
    "MixingConfig",
    "NetworkConfig",
    "PerformanceConfig",
    "PrivacyError",
    "SecurityConfig",
    "TorConfig",
    "describe",
    "is_loopback",
    "load_config",
    "parse_config",
    "split_host_port",
]
