"""Strict JSON for everything that arrives from outside (API bodies, peer envelopes).

:func:`loads` accepts only what every JSON parser agrees on and what the node can
store: no ``NaN`` / ``Infinity`` / ``-Infinity`` (Python's ``json`` accepts them,
SQLite turns NaN into NULL, JavaScript's ``JSON.parse`` throws on them), no number
that only fits as an infinite float (``1e400``), no nesting deeper than
``max_depth``, and no string (or key) holding a lone UTF-16 surrogate, which is
not a Unicode scalar value and which UTF-8 (hence SQLite) cannot encode. Every
refusal is a :class:`JSONValueError` naming the path of the offending value
(``message.data.items[3]``) where there is one. :func:`dumps` never writes NaN or
Infinity either.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # containers inside containers; far beyond any real message
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONValueError(ValueError):
    """Input that is not strict JSON; ``path`` names the value when there is one."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


class _NonFinite:
    """Stands in for NaN / Infinity / an overflowing number until the walk names its path."""

    def __init__(self, text: str) -> None:
        self.text = text


def _constant(text: str) -> _NonFinite:
    return _NonFinite(text)


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _short(path: str) -> str:
    return path if len(path) <= 200 else path[:197] + "..."


def check_value(value: Any, max_depth: int = MAX_DEPTH, path: str = "") -> None:
    """Refuse non-finite numbers, lone surrogates and nesting deeper than ``max_depth``.

    Iterative, so a deep value cannot exhaust the stack here.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, path)]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise JSONValueError(f"nested deeper than {max_depth} levels",
                                     _short(where) or None)
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise JSONValueError("object keys must be strings", _short(where) or None)
                    if _SURROGATE.search(key):
                        raise JSONValueError("key is not valid Unicode (a lone surrogate)",
                                             _short(_join(where, key.encode("utf-8", "replace")
                                                          .decode())) or None)
                    stack.append((child, depth + 1, _join(where, key)))
            else:
                for index, child in enumerate(item):
                    stack.append((child, depth + 1, _join(where, index)))
        elif isinstance(item, _NonFinite):
            raise JSONValueError(f"{item.text[:40]} is not a finite number (NaN, Infinity "
                                 "and numbers too large for a double are refused)",
                                 _short(where) or None)
        elif isinstance(item, float) and not math.isfinite(item):
            raise JSONValueError(f"{item} is not a finite number", _short(where) or None)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise JSONValueError("string is not valid Unicode (a lone surrogate)",
                                 _short(where) or None)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON (see the module docstring); :class:`JSONValueError` otherwise."""
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise JSONValueError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as e:
        raise JSONValueError(f"not UTF-8: {e}") from None
    except ValueError as e:  # JSONDecodeError, or an integer with too many digits
        raise JSONValueError(f"not valid JSON: {e}") from None
    check_value(value, max_depth)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that raises ValueError rather than write NaN or Infinity."""
    return json.dumps(value, allow_nan=False, **kwargs)
