"""Configuration errors: one message naming the key path, the value and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value.

    ``path`` is the dotted key path (``network.max_connections``), ``value`` the
    offending value, ``allowed`` a description of what would be accepted.
    """

    def __init__(self, path: str, value: object, allowed: str, source: str = "") -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {value!r} is not allowed; {allowed}")


class PrivacyError(ConfigError):
    """A configuration that would expose the node in the clear.

    Refused at start-up; ``fix`` says how to make the configuration safe.
    """

    def __init__(self, path: str, value: object, problem: str, fix: str,
                 source: str = "") -> None:
        self.problem = problem
        self.fix = fix
        ValueError.__init__(
            self,
            f"{source + ': ' if source else ''}privacy: {path}: {value!r} {problem}. "
            f"Fix: {fix}",
        )
        self.path = path
        self.value = value
        self.allowed = fix
        self.source = source
