"""``config migrate``: the nearest safe configuration to one written for the seed spec.

Pure: a parsed YAML mapping in, a mapping plus one note per changed or dropped
key out, rendered as YAML with each note as a comment above its line. Values of
keys this node does not know are never copied, not even into a comment (a seed
configuration may hold a token or a password there); nothing is read from the
files it names.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..addresses import HostPortError
from ..addresses import split_host_port as _split_host_port
from ._errors import ConfigError, ConfigProblems
from ._schema import SECTIONS, Config, parse_config
from ._seed import SEED_KEY_HINTS

_DEFAULTS = Config().to_dict()
_SECRETISH = re.compile(r"token|password|passwd|secret|passphrase|credential|api_?key|"
                        r"private|cookie|seed_?phrase", re.IGNORECASE)
_MAX_ROUNDS = 8  # a fix may uncover a cross-key problem; each round settles some for good


@dataclass
class Migration:
    """The migrated mapping, and the notes (comments) for each key path it changed."""

    raw: dict[str, Any]
    notes: dict[str, list[str]] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)

    def note(self, path: str, text: str) -> None:
        self.notes.setdefault(path, []).append(text)

    @property
    def changed(self) -> int:
        return sum(len(v) for v in self.notes.values())

    def to_yaml(self, source: str) -> str:
        return _render(self, source)


def migrate(raw: Any) -> Migration:
    """The nearest configuration to ``raw`` that passes ``config check``.

    A :class:`ConfigError` when ``raw`` is not a mapping, or when a problem
    remains that no rule fixes (none does not, today: the last resort is the
    default).
    """
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", raw, "expected a mapping of keys to values; "
                          "there is nothing to migrate")
    out = copy.deepcopy(raw)
    m = Migration(out, order=_key_order(raw))
    for _ in range(_MAX_ROUNDS):
        try:
            parse_config(out)
        except ConfigError as e:
            problems = e.problems
        else:
            return m
        changed = False
        # list items go last to first, so earlier indices stay valid
        for problem in sorted(problems, key=_item_index, reverse=True):
            changed |= _fix(m, problem)
        if not changed:
            break
    try:
        parse_config(out)
    except ConfigError as e:
        raise ConfigProblems(e.problems, "(migrated)") from None
    return m


def _key_order(raw: dict[str, Any]) -> dict[str, list[str]]:
    order = {"": [str(k) for k in raw]}
    for k, v in raw.items():
        if isinstance(v, dict):
            order[str(k)] = [str(x) for x in v]
    return order


def _item_index(problem: ConfigError) -> int:
    found = re.search(r"\[(\d+)\]$", problem.path)
    return int(found.group(1)) if found else -1


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _port(value: Any) -> int:
    try:
        _, port = _split_host_port(value, allow_unix=False)
    except HostPortError:
        return 0
    return port


def _parts(path: str) -> tuple[str, str | None]:
    section, _, key = path.partition(".")
    return section, (key.split("[", 1)[0] if key else None)


def _get(out: dict[str, Any], path: str) -> Any:
    section, key = _parts(path)
    node = out.get(section)
    if key is None:
        return node
    return node.get(key) if isinstance(node, dict) else None


def _set(out: dict[str, Any], path: str, value: Any) -> None:
    section, key = _parts(path)
    if key is None:
        out[section] = value
        return
    node = out.get(section)
    if not isinstance(node, dict):
        node = {}
        out[section] = node
    node[key] = value


def _drop(out: dict[str, Any], path: str) -> bool:
    section, key = _parts(path)
    if key is None:
        return _pop_str_key(out, section)
    node = out.get(section)
    return isinstance(node, dict) and _pop_str_key(node, key)


def _pop_str_key(mapping: dict[Any, Any], name: str) -> bool:
    """Remove the key written as ``name`` (YAML keys may be numbers or booleans)."""
    for k in list(mapping):
        if str(k) == name:
            del mapping[k]
            return True
    return False


_MISSING = object()

LOOPBACK_LISTEN = (
    "listening on a clearnet interface would let anyone on that network reach the node "
    "and learn who runs it; peers arrive through the onion service, which tor forwards "
    "to this loopback port")


def _listen(m: Migration, p: ConfigError, default_port: int, why: str) -> bool:
    port = _port(p.value) or default_port
    _set(m.raw, p.path, f"127.0.0.1:{port}")
    m.note(p.path, f"changed from {_shown(p.value)}: {why}")
    return True


def _fix_listen(m: Migration, p: ConfigError) -> bool:
    if p.privacy:
        return _listen(m, p, 7701, LOOPBACK_LISTEN)
    if "STREAM FORWARD" in p.allowed:
        return _listen(m, p, 7701, "the I2P router forwards peer streams over TCP, so with "
                       "i2p.enabled the node listens on a loopback port, not a unix socket")
    return _reset(m, p)


def _fix_api_listen(m: Migration, p: ConfigError) -> bool:
    if p.privacy:
        return _listen(m, p, 8470, "the management API never listens outside this machine; "
                       "to reach it remotely set api.onion: true (a client-authorized "
                       "onion service)")
    return _reset(m, p)


def _fix_external(m: Migration, p: ConfigError) -> bool:
    _drop(m.raw, p.path)
    m.note(p.path, f"dropped external_address {_shown(p.value)}: the node's .onion address "
           "(and its I2P destination), derived from its identity key, is its only address; "
           "announcing a clearnet one would tell peers where the node is")
    return True


def _fix_bootstrap(m: Migration, p: ConfigError) -> bool:
    index = _item_index(p)
    nodes = _get(m.raw, "network.bootstrap_nodes")
    if index < 0 or not isinstance(nodes, list) or index >= len(nodes):
        return _reset(m, p)
    del nodes[index]
    if p.privacy:
        why = ("a host name cannot be a bootstrap peer: looking it up and dialing it happen "
               "outside Tor and reveal this node's IP, and nothing proves who answers. "
               "Bootstrap needs each peer's .onion or .b32.i2p address (its operator prints "
               "it with: aegis-hidden identity show); add them to this list")
    else:
        why = p.allowed
    # the notes are rendered above the list, in the order of the original entries
    m.notes.setdefault("network.bootstrap_nodes", []).insert(
        0, f"dropped {_shown(p.value)}: {why}")
    return True


def _fix_key_exchange(m: Migration, p: ConfigError) -> bool:
    _set(m.raw, p.path, "X-Wing")
    m.note(p.path, f"changed from {_shown(p.value)}: every session uses the hybrid X-Wing "
           "handshake (X25519 + ML-KEM-768), which is not configurable; a classical key "
           "exchange alone would let a future quantum computer decrypt recorded traffic")
    return True


def _fix_private_key(m: Migration, p: ConfigError) -> bool:
    _set(m.raw, p.path, _DEFAULTS["security"]["private_key_file"])
    m.note(p.path, f"changed from {_shown(p.value)}: a TLS private key has no use here. The "
           "node's identity is an Ed25519 master key that aegis-hidden creates in this file "
           "under the data dir (aegis-hidden identity init, or at first start); its .onion "
           "address is derived from it. The old key is not read or copied")
    return True


def _fix_no_network(m: Migration, p: ConfigError) -> bool:
    _set(m.raw, "security.enable_tor", True)
    m.note("security.enable_tor", "changed from false: with I2P off too, every peer "
           "connection would be in the clear; Tor is this node's default network")
    return True


def _fix_remote_daemon(m: Migration, p: ConfigError) -> bool:
    _drop(m.raw, p.path)
    what = {"tor.control_port": "tor's control port", "tor.socks_port": "tor's SOCKS port",
            "i2p.sam_address": "the SAM bridge"}.get(p.path, p.path)
    m.note(p.path, f"dropped {_shown(p.value)}: {what} on another machine would carry its "
           "traffic and authentication across the network unencrypted; the default (this "
           "machine) applies")
    return True


def _fix_control_port(m: Migration, p: ConfigError) -> bool:
    if p.privacy:
        _fix_remote_daemon(m, p)
    elif p.value is not None:
        return _reset(m, p)
    if _get(m.raw, "tor.mode") == "connect":
        _set(m.raw, "tor.mode", "launch")
        m.note("tor.mode", "changed from \"connect\": there is no local control port to "
               "connect to, so the node launches its own tor")
    return True


def _reset(m: Migration, p: ConfigError) -> bool:
    """The last resort: the key's default (a list loses the bad item)."""
    index = _item_index(p)
    if index >= 0:
        items = _get(m.raw, p.path)
        if isinstance(items, list) and index < len(items):
            del items[index]
            m.note(p.path.split("[", 1)[0], f"dropped {_shown(p.value)}: {p.allowed}")
            return True
    if not _drop(m.raw, p.path):
        return False
    if p.allowed.startswith("unknown key"):
        m.note(p.path, _unknown_note(p))
    else:
        m.note(p.path, f"dropped {p.path.rsplit('.', 1)[-1]} {_shown(p.value)}: "
               f"{p.allowed}; the default applies")
    return True


def _unknown_note(p: ConfigError) -> str:
    name = p.path.rsplit(".", 1)[-1]
    hint = SEED_KEY_HINTS.get(p.path)
    if hint is not None:
        return f"dropped {name}: {hint.removesuffix('; remove the key')}"
    if _SECRETISH.search(name):
        return (f"dropped {name}, not copied: secrets never go in this file (the API token "
                "is api.token_file, a key passphrase security.key_passphrase_file)")
    if p.path in SECTIONS or "." not in p.path:
        return f"dropped {name}: not a setting of aegis-hidden (aegis-hidden config defaults)"
    return f"dropped {name}: not a setting of aegis-hidden; {p.allowed.removeprefix('unknown key; ')}"


def _fix_logging_level(m: Migration, p: ConfigError) -> bool:
    value = _get(m.raw, p.path)
    _drop(m.raw, p.path)
    if "log_level" not in m.raw and isinstance(value, str):
        m.raw["log_level"] = {"warning": "warn", "critical": "error"}.get(value.lower(),
                                                                         value.lower())
        m.order[""].append("log_level")
        m.note("log_level", "moved here from logging.level")
    m.note(p.path, "dropped level: the log level is the top-level key log_level")
    return True


_FIXES: dict[str, Callable[[Migration, ConfigError], bool]] = {
    "network.listen_address": _fix_listen,
    "network.external_address": _fix_external,
    "network.bootstrap_nodes": _fix_bootstrap,
    "security.key_exchange": _fix_key_exchange,
    "security.private_key_file": _fix_private_key,
    "api.listen_address": _fix_api_listen,
    "tor.socks_port": _fix_remote_daemon,
    "i2p.sam_address": _fix_remote_daemon,
    "tor.control_port": _fix_control_port,
    "logging.level": _fix_logging_level,
}


def _fix(m: Migration, p: ConfigError) -> bool:
    key = p.path.split("[", 1)[0]
    if p.path == "security.enable_tor" and p.privacy:
        return _fix_no_network(m, p)
    if p.path == "(top level)":
        return False
    return _FIXES.get(key, _reset)(m, p)


def _comment(text: str, indent: str) -> list[str]:
    flat = " ".join(text.split())
    return [f"{indent}# {line}"
            for line in textwrap.wrap(flat, 88 - len(indent), break_on_hyphens=False)]


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=False)


def _value_lines(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, list | tuple):
        if not value:
            return [f"{indent}{key}: []"]
        return [f"{indent}{key}:"] + [f"{indent}  - {_scalar(v)}" for v in value]
    if isinstance(value, dict):  # an empty or emptied section
        return [f"{indent}{key}: {{}}"]
    return [f"{indent}{key}: {_scalar(value)}"]


def _render(m: Migration, source: str) -> str:
    out = [
        f"# aegis-hidden configuration migrated from {_shown(source)} by: aegis-hidden config migrate",
        "# Each changed or dropped line has a comment above it saying why. Keys not set here take",
        "# their defaults (aegis-hidden config defaults --example). Check it with:",
        "# aegis-hidden config check FILE",
        "",
    ]
    if not m.notes:
        out.append("# Nothing needed changing.")
    top_keys = list(dict.fromkeys(m.order[""] + [str(k) for k in m.raw]))
    for key in top_keys:
        value = m.raw.get(key, _MISSING)
        notes = m.notes.get(key, [])
        if isinstance(value, dict):
            out.append("")
            out += [line for n in notes for line in _comment(n, "")]
            out.append(f"{key}:" if value or _section_notes(m, key) else f"{key}: {{}}")
            sub_keys = list(dict.fromkeys(m.order.get(key, []) + [str(k) for k in value]))
            for sub in sub_keys:
                path = f"{key}.{sub}"
                out += [line for n in m.notes.get(path, []) for line in _comment(n, "  ")]
                if sub in value:
                    out += _value_lines(sub, value[sub], "  ")
            if not value and _section_notes(m, key):
                out.append("  {}")
        else:
            if isinstance(m.order.get(key), list):  # a section dropped whole or emptied
                out.append("")
                out += [line for n in notes for line in _comment(n, "")]
                for sub in m.order[key]:
                    out += [ln for n in m.notes.get(f"{key}.{sub}", []) for ln in _comment(n, "")]
                continue
            out += [line for n in notes for line in _comment(n, "")]
            if value is not _MISSING:
                out += _value_lines(key, value, "")
    return "\n".join(out) + "\n"


def _section_notes(m: Migration, section: str) -> bool:
    return any(path.startswith(section + ".") for path in m.notes)
