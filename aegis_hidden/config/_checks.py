"""Value checkers for the configuration schema.

A checker is ``(path, value) -> converted value`` and raises :class:`ConfigError`
naming the key path, the value and what is allowed (a list checker raises every
bad item at once, as :class:`ConfigProblems`).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..addresses import HostPortError
from ..addresses import split_host_port as _split_host_port
from ._errors import ConfigError, raise_problems

T = TypeVar("T")
Check = Callable[[str, Any], Any]


def boolean() -> Check:
    def check(path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "expected true or false")
        return value

    return check


def integer(lo: int, hi: int) -> Check:
    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(path, value, f"expected an integer from {lo} to {hi}")
        return value

    return check


def number(lo: float, hi: float, *, unit: str = "") -> Check:
    suffix = f" ({unit})" if unit else ""

    def check(path: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            lo <= value <= hi
        ):
            raise ConfigError(path, value, f"expected a number from {lo} to {hi}{suffix}")
        return float(value)

    return check


def choice(*options: str) -> Check:
    def check(path: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(path, value, "expected one of " + ", ".join(options))
        return str(value)

    return check


def only(option: str, why: str) -> Check:
    """A setting with one allowed value; anything else is refused with ``why``."""

    def check(path: str, value: Any) -> str:
        if value != option:
            raise ConfigError(path, value, f"the only allowed value is {option!r}: {why}")
        return option

    return check


def text(*, max_len: int = 4096, allow_empty: bool = False) -> Check:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str) or (not value and not allow_empty) or len(value) > max_len:
            raise ConfigError(path, value, f"expected a non-empty string of at most "
                                           f"{max_len} characters")
        if "\n" in value or "\x00" in value:
            raise ConfigError(path, value, "expected a single line with no NUL bytes")
        return value

    return check


def optional(inner: Check) -> Check:
    def check(path: str, value: Any) -> Any:
        return None if value is None else inner(path, value)

    return check


def string_list(item: Check, *, max_items: int = 1000) -> Check:
    def check(path: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple) or len(value) > max_items:
            raise ConfigError(path, value, f"expected a list of at most {max_items} items")
        out: list[Any] = []
        problems: list[ConfigError] = []
        for i, v in enumerate(value):
            try:
                out.append(item(f"{path}[{i}]", v))
            except ConfigError as e:
                problems.append(e)
        raise_problems(problems)
        return tuple(out)

    return check


def split_host_port(path: str, value: Any, *, allow_unix: bool = True) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` / ``"unix:/path"`` (port 0 for unix): see
    :func:`aegis_hidden.addresses.split_host_port`, with the error as a :class:`ConfigError`."""
    try:
        return _split_host_port(value, allow_unix=allow_unix)
    except HostPortError as e:
        raise ConfigError(path, value, str(e)) from None


def is_loopback(host: str) -> bool:
    if host.startswith("unix:"):
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port_check(*, allow_unix: bool = True) -> Check:
    def check(path: str, value: Any) -> str:
        split_host_port(path, value, allow_unix=allow_unix)
        return str(value)

    return check


def mapping_keys(path: str, value: Any, known: Sequence[str]
                 ) -> tuple[dict[str, Any], list[ConfigError]]:
    """The known keys of a mapping, and one problem per unknown key (all of them)."""
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [ConfigError(path or "(top level)", value,
                                "expected a mapping of keys to values")]
    problems = [
        ConfigError(f"{path}.{key}" if path else str(key), value[key],
                    f"unknown key{_did_you_mean(key, known)}; known keys here are "
                    + ", ".join(known))
        for key in value if key not in known
    ]
    return {k: v for k, v in value.items() if k in known}, problems


def _did_you_mean(key: object, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
