"""What both sides of a session must agree on, plus local limits (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..crypto import AEADS

__all__ = ["PROTOCOL_VERSIONS", "SessionParams"]

#: Protocol versions this code speaks, most preferred first.
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class SessionParams:
    """Everything both sides must agree on, plus local limits."""

    cell_size: int = 996
    encryption: str = "AES-256-GCM"
    max_message_size: int = 1024 * 1024
    compression_threshold: int = 1024
    rekey_cells: int = 1 << 20
    rekey_seconds: float = 600.0
    handshake_timeout: float = 60.0
    versions: tuple[int, ...] = PROTOCOL_VERSIONS

    def __post_init__(self) -> None:
        if self.encryption not in AEADS:
            raise ValueError(f"unknown encryption {self.encryption!r}; one of {sorted(AEADS)}")
        if not 256 <= self.cell_size <= 65535:
            raise ValueError(f"cell_size must be from 256 to 65535, got {self.cell_size}")
        if self.rekey_cells < 1 or self.rekey_seconds <= 0:
            raise ValueError("rekey_cells must be at least 1 and rekey_seconds positive")
        if not self.versions:
            raise ValueError("at least one protocol version is needed")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> SessionParams:
        """From a :class:`aegis_hidden.config.Config` (mixing, security, performance, network)."""
        values: dict[str, Any] = {
            "cell_size": config.mixing.cell_size,
            "encryption": config.security.encryption,
            "max_message_size": config.performance.max_message_size,
            "compression_threshold": config.performance.compression_threshold,
            "handshake_timeout": config.network.connection_timeout,
        }
        values.update(overrides)
        return cls(**values)
