"""Operators allowed to reach the API onion service (Tor v3 client authorization).

``aegis-hidden api client-key add NAME`` makes an x25519 key pair, stores only
the public half here (``api_client_keys.json`` in the data dir, 0600) and prints
the private half once, in the line format tor's ``ClientOnionAuthDir`` expects.
The Tor provider reads :func:`authorized_client_keys` when it publishes the API
onion service.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..identity import ClientAuthKey, atomic_write

CLIENTS_FILE = "api_client_keys.json"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PUBLIC = re.compile(r"^descriptor:x25519:[A-Z2-7]{52}$")


class ClientKeyError(ValueError):
    """A bad name, a duplicate, an unknown key, or an unreadable keys file."""


@dataclass(frozen=True)
class ClientKey:
    name: str
    public: str  # "descriptor:x25519:<base32>" as tor's authorized_clients wants


def new_client_key(name: str) -> tuple[ClientKey, ClientAuthKey]:
    """(public entry, key pair) for a new operator key; the private half is never stored."""
    if not _NAME.match(name):
        raise ClientKeyError(f"client name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
    key = ClientAuthKey.generate()
    return ClientKey(name, key.public.descriptor_line()), key


def load_client_keys(data_dir: Path) -> list[ClientKey]:
    path = data_dir / CLIENTS_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        keys = [ClientKey(str(e["name"]), str(e["public"])) for e in raw["clients"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClientKeyError(f"cannot read {path}: {e}") from None
    for key in keys:
        if not _PUBLIC.match(key.public):
            raise ClientKeyError(f"{path}: client {key.name!r} has a malformed public key")
    return keys


def _save(data_dir: Path, keys: list[ClientKey]) -> None:
    body = {"clients": [{"name": k.name, "public": k.public} for k in keys]}
    atomic_write(data_dir / CLIENTS_FILE, json.dumps(body, indent=2).encode(), mode=0o600)


def add_client_key(data_dir: Path, name: str) -> tuple[ClientKey, ClientAuthKey]:
    keys = load_client_keys(data_dir)
    if any(k.name == name for k in keys):
        raise ClientKeyError(f"a client key named {name!r} exists; remove it first")
    key, private = new_client_key(name)
    _save(data_dir, [*keys, key])
    return key, private


def remove_client_key(data_dir: Path, name: str) -> ClientKey:
    keys = load_client_keys(data_dir)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        raise ClientKeyError(f"no client key named {name!r}")
    _save(data_dir, kept)
    return next(k for k in keys if k.name == name)


def authorized_client_keys(config: Config, data_dir: Path) -> list[str]:
    """Every public key allowed to reach the API onion: config plus the CLI-managed file.

    This is the hook for the Tor provider: publish the API onion with exactly
    these keys (and refuse to publish it with none: an onion without client
    authorization would be reachable by anyone who learns its address).
    """
    out = list(config.api.authorized_clients)
    out += [k.public for k in load_client_keys(data_dir) if k.public not in out]
    return out
