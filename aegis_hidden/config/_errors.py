"""Configuration errors: each problem names the key path, the value and how to fix it.

Loading collects every problem of a file before it gives up; more than one
comes back as one :class:`ConfigProblems`, whose ``problems`` lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """An invalid configuration value.

    ``path`` is the dotted key path (``network.max_connections``), ``value`` the
    offending value, ``allowed`` a description of what would be accepted (the fix).
    ``problems`` is every problem this error stands for: itself, for one.
    """

    privacy = False

    def __init__(self, path: str, value: object, allowed: str, source: str = "") -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {value!r} is not allowed; {allowed}")

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        return (self,)

    def with_source(self, source: str) -> ConfigError:
        """The same problem, its message naming the file ``source``."""
        if self.source or not source:
            return self
        return ConfigError(self.path, self.value, self.allowed, source)


class PrivacyError(ConfigError):
    """A configuration that would expose the node in the clear.

    Refused at start-up; ``fix`` says how to make the configuration safe.
    """

    privacy = True

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

    def with_source(self, source: str) -> ConfigError:
        if self.source or not source:
            return self
        return PrivacyError(self.path, self.value, self.problem, self.fix, source)


class ConfigProblems(ConfigError):
    """Several problems found in one pass over a configuration.

    ``problems`` lists each one (a :class:`ConfigError` or :class:`PrivacyError`)
    in file order; ``path``, ``value`` and ``allowed`` are the first one's, and
    ``privacy`` is true when any of them is a leak. The message has one line per
    problem.
    """

    def __init__(self, problems: Sequence[ConfigError], source: str = "") -> None:
        flat = [p for problem in problems for p in problem.problems]
        if not flat:
            raise ValueError("ConfigProblems needs at least one problem")
        self._problems = tuple(p.with_source(source) for p in flat)
        first = self._problems[0]
        self.path = first.path
        self.value = first.value
        self.allowed = first.allowed
        self.source = source
        self.privacy = any(p.privacy for p in self._problems)
        where = f"{source}: " if source else ""
        lines = [f"{where}{len(self._problems)} problems; fix them all, then check again:"]
        lines += [f"  - {_strip_source(p)}" for p in self._problems]
        ValueError.__init__(self, "\n".join(lines))

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        return self._problems

    def with_source(self, source: str) -> ConfigError:
        if self.source or not source:
            return self
        return ConfigProblems(self._problems, source)


def _strip_source(problem: ConfigError) -> str:
    text = str(problem)
    prefix = f"{problem.source}: " if problem.source else ""
    return text.removeprefix(prefix)


def raise_problems(problems: Sequence[ConfigError], source: str = "") -> None:
    """Raise nothing for no problems, the problem itself for one, else :class:`ConfigProblems`."""
    flat = [p for problem in problems for p in problem.problems]
    if len(flat) == 1:
        raise flat[0].with_source(source)
    if flat:
        raise ConfigProblems(flat, source)
