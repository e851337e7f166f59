"""The emergency endpoints under ``/api/node`` (routed by ``_web.ApiResource``).

* ``GET  /api/node/emergency``: isolated (since when, why), the bandwidth cap;
* ``POST /api/node/isolate`` ``{"reason"?}``: close every session, refuse new
  ones both ways, keep the outbox; kept across restarts;
* ``POST /api/node/resume`` ``{}``: lift the isolation, send the outbox now;
* ``POST /api/node/throttle`` ``{"bytes_per_second": N | 0 | null}``: the
  node-wide cap on what the cell scheduler sends (0 or null lifts it);
* ``POST /api/node/transports/{tor|i2p}/restart`` ``{}``: restart one transport.

Blocking a peer is ``POST /api/network/peers`` ``{"action": "block"}``.
Errors are the resource's own ``ApiError`` (handed in, so this module does not
import ``_web``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.web.server import Request

from ..node import EmergencyError, NotSupported, UnknownTransport

JSON = dict[str, Any]
TRANSPORTS = ("tor", "i2p")
MAX_REASON = 200
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class EmergencyEndpoints:
    def __init__(self, core: Any, read_body: Callable[[Request], JSON],
                 error: Callable[..., Exception]) -> None:
        self._core = core
        self._read_body = read_body
        self._error = error

    def _body(self, request: Request, allowed: set[str]) -> JSON:
        body = self._read_body(request)
        extra = sorted(set(body) - allowed)
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        return body

    def _state(self) -> JSON:
        out: JSON = self._core.emergency.status()
        return out

    async def status(self, request: Request) -> tuple[int, JSON]:
        return 200, self._state()

    async def isolate(self, request: Request) -> tuple[int, JSON]:
        body = self._body(request, {"reason"})
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON or _CONTROL.search(reason):
            raise self._error(400, f"\"reason\" must be a string of at most {MAX_REASON} "
                              "characters, none of them a control character", "reason")
        changed = self._core.emergency.isolate(reason)
        return 200, {"changed": changed, **self._state()}

    async def resume(self, request: Request) -> tuple[int, JSON]:
        self._body(request, set())
        changed = self._core.emergency.resume()
        return 200, {"changed": changed, **self._state()}

    async def throttle(self, request: Request) -> tuple[int, JSON]:
        body = self._body(request, {"bytes_per_second"})
        if "bytes_per_second" not in body:
            raise self._error(400, "missing field \"bytes_per_second\" (an integer, or 0 or "
                              "null to lift the cap)", "bytes_per_second")
        try:
            self._core.emergency.set_throttle(body["bytes_per_second"])
        except ValueError as e:
            raise self._error(400, str(e), "bytes_per_second") from None
        except NotSupported as e:
            raise self._error(409, str(e)) from None
        return 200, self._state()

    async def restart_transport(self, request: Request, name: str) -> tuple[int, JSON]:
        if name not in TRANSPORTS:
            raise self._error(404, f"no transport {name[:20]!r}: tor or i2p", "transport")
        self._body(request, set())
        try:
            await self._core.emergency.restart_transport(name)
        except UnknownTransport as e:
            raise self._error(404, str(e), "transport") from None
        except EmergencyError as e:
            raise self._error(409, str(e), "transport") from None
        return 202, {"transport": name, "restarting": True}
