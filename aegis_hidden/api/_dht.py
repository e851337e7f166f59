"""The DHT endpoints under ``/api/network/dht`` (routed by ``_web.ApiResource``).

* ``GET  /api/network/dht``: routing table (contacts, buckets), records held,
  lookups ok / failed, refusals, the contacts' onion addresses;
* ``GET  /api/network/dht/records/{key}``: the record at ``key`` (64 hex
  digits, or a peer's ``.onion`` for its identity record): the copy held
  here, else a lookup in the network;
* ``POST /api/network/dht/records``: sign a record of this node and STORE it;
* ``POST /api/network/dht/crawl``: walk the network, count reachable nodes.

Errors are the resource's own ``ApiError`` (handed in, so this module does not
import ``_web``), 503 when the node runs no DHT (``dht.enabled`` false).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from twisted.web.server import Request

from ..addresses import OnionAddressError, canonical_address
from ..dht import MAX_LIFETIME, MAX_NAME, MAX_VALUE, DhtRecordError, record_key
from ..node import identity_key, record_json

JSON = dict[str, Any]
MAX_CRAWL = 100_000
_NAME = re.compile(rf"^[ -~]{{1,{MAX_NAME}}}\Z")


class DhtEndpoints:
    def __init__(self, core: Any, read_body: Callable[[Request], JSON],
                 error: Callable[..., Exception]) -> None:
        self._core = core
        self._read_body = read_body
        self._error = error

    def _dht(self) -> Any:
        dht = getattr(self._core, "dht", None)
        if dht is None:
            raise self._error(503, "the DHT is not running on this node (dht.enabled)")
        return dht

    async def stats(self, request: Request) -> tuple[int, JSON]:
        return 200, self._dht().stats()

    def _query(self, request: Request) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, values in (request.args or {}).items():
            text = bytes(name).decode("utf-8", "replace")
            if text != "source" or len(values) != 1:
                raise self._error(400, f"unexpected query parameter \"{text[:50]}\"",
                                  text[:50])
            out[text] = bytes(values[0]).decode("utf-8", "replace")
        return out

    def _key(self, raw: str) -> bytes:
        if raw.lower().endswith(".b32.i2p"):
            raise self._error(404, "an I2P address has no identity record key: use the "
                              "peer's .onion", "key")
        if raw.lower().endswith(".onion"):
            try:
                return identity_key(canonical_address(raw))
            except (OnionAddressError, ValueError) as e:
                raise self._error(400, f"not a v3 onion address: {e}", "key") from None
        if len(raw) != 64 or not raw.isascii():
            raise self._error(400, "a key is 64 hex digits, or a peer's .onion address", "key")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise self._error(400, "a key is 64 hex digits, or a peer's .onion address",
                              "key") from None

    async def get_record(self, request: Request, raw: str) -> tuple[int, JSON]:
        """``?source=network`` skips the copy held here (a lookup in any case)."""
        key = self._key(raw)
        source = self._query(request).get("source", "any")
        if source not in ("any", "network"):
            raise self._error(400, "\"source\" must be any or network", "source")
        record = await self._dht().get(key, local=source == "any")
        if record is None:
            raise self._error(404, f"no record at {key.hex()} (held here or found)", "key")
        return 200, record_json(record)

    async def put_record(self, request: Request) -> tuple[int, JSON]:
        body = self._read_body(request)
        extra = sorted(set(body) - {"name", "value", "value_base64", "lifetime"})
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise self._error(400, f"\"name\" must be 1 to {MAX_NAME} printable ASCII "
                              "characters", "name")
        if ("value" in body) == ("value_base64" in body):
            raise self._error(400, "give exactly one of \"value\" (text) and \"value_base64\"",
                              "value")
        value = self._value(body)
        if len(value) > MAX_VALUE:
            raise self._error(413, f"value is {len(value)} bytes, at most {MAX_VALUE}", "value")
        lifetime = body.get("lifetime", 3600)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or \
                not 60 <= lifetime <= MAX_LIFETIME:
            raise self._error(400, f"\"lifetime\" must be seconds from 60 to {MAX_LIFETIME}",
                              "lifetime")
        dht = self._dht()
        try:
            stored = await dht.put(name.encode(), value, float(lifetime))
        except (ValueError, DhtRecordError) as e:
            raise self._error(400, str(e), "name") from None
        own = getattr(self._core, "identity", None)
        key = record_key(own.ed25519_public, name.encode()).hex() if own is not None else None
        return 200, {"stored_at": stored, "key": key}

    def _value(self, body: JSON) -> bytes:
        if "value" in body:
            text = body["value"]
            if not isinstance(text, str):
                raise self._error(400, "\"value\" must be a string", "value")
            return text.encode("utf-8")
        raw = body["value_base64"]
        if not isinstance(raw, str):
            raise self._error(400, "\"value_base64\" must be a base64 string", "value_base64")
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise self._error(400, "\"value_base64\" is not base64", "value_base64") from None

    async def crawl(self, request: Request) -> tuple[int, JSON]:
        body = self._read_body(request)
        extra = sorted(set(body) - {"max_nodes", "parallel"})
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        max_nodes = body.get("max_nodes", 1000)
        parallel = body.get("parallel", 8)
        checked = []
        for name, value, hi in (("max_nodes", max_nodes, MAX_CRAWL), ("parallel", parallel, 64)):
            if isinstance(value, float) and value.is_integer():  # JSON 14.0 is an integer
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise self._error(400, f"\"{name}\" must be an integer from 1 to {hi}", name)
            checked.append(value)
        return 200, await self._dht().crawl(*checked)
