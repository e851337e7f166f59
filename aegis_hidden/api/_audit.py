"""``/api/network/audit``: the node records its own cell traces for N seconds and audits them.

``POST /api/network/audit`` ``{"seconds": N}`` starts a recording: for N
seconds (1..:data:`MAX_SECONDS`) every cell the node's sessions send or
receive is written, as the mixing layer's trace sink writes it (time since the
start, per-recording salted link id, direction, size, kind), to a buffer in
memory, through a sink put beside the node's own in the mixing layer's
:class:`~aegis_hidden.interfaces.ITraceSink` chain. Then the audit engine
(:mod:`aegis_hidden.audit`) judges the trace in a worker thread, against the
node's mixing profile, with the engine's default thresholds (per-check
thresholds are set with ``aegis-hidden audit report`` on a trace file: a bin
width or a lag range from a request could make the node's analysis arbitrarily
large). The answer is 202 with the audit's id; ``GET /api/network/audit/{id}``
says ``recording``, ``analysing``, ``done`` (with the JSON report) or
``failed`` (with why); ``GET /api/network/audit/{id}/report.html`` is the HTML
report.

Bounds: one recording at a time (a second POST is a 409), at most
:data:`MAX_RECORDS` cells per recording (then it stops recording and says
so), the last :data:`MAX_KEPT` audits kept; older ones are forgotten.
The trace never leaves memory, and is dropped once it has been audited.
"""

from __future__ import annotations

import io
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from random import Random
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from ..interfaces import ITraceSink
from ..mixing import JsonLinesTraceSink
from ._web import JSON, ApiError, RawBody, _unknown_fields, read_json_body

MIN_SECONDS = 1
MAX_SECONDS = 600
DEFAULT_SECONDS = 60
#: Cells one recording keeps (about 80 bytes each in memory); then it stops.
MAX_RECORDS = 500_000
#: Audits kept (finished or not); the oldest finished one goes first.
MAX_KEPT = 8
#: The report page may show its own inline styles and data: images, nothing else.
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

#: (trace bytes, parameters) -> (JSON report, HTML report); runs in a thread.
Engine = Callable[[bytes, dict[str, Any]], tuple[JSON, str]]
#: Runs a blocking callable off the reactor thread.
Offload = Callable[[Callable[[], tuple[JSON, str]]], "Deferred[tuple[JSON, str]]"]
Handler = Callable[..., Awaitable[tuple[int, Any]]]


def audit_trace(trace: bytes, parameters: dict[str, Any]) -> tuple[JSON, str]:
    """The audit engine on one JSON-lines trace: (JSON report, HTML report)."""
    from .. import audit  # the analysis libraries load on the first audit, not at start-up

    report = audit.run_audit([audit.AuditInput.from_bytes("node trace", trace)],
                             rate=parameters.get("rate") or None,
                             constant=bool(parameters.get("constant")),
                             cell_size=int(parameters.get("cell_size") or
                                           audit.DEFAULT_CELL_SIZE))
    return report.to_json(), audit.render_html(report)


@implementer(ITraceSink)
class _Recorder:
    """Passes every cell to the sink that was there before, and records it too."""

    def __init__(self, previous: ITraceSink | None, sink: JsonLinesTraceSink,
                 limit: int) -> None:
        self.previous = previous
        self.sink = sink
        self.limit = limit
        self.full = False

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        if self.previous is not None:
            self.previous.record(at, link, direction, size, kind)
        if self.sink.records < self.limit:
            self.sink.record(at, link, direction, size, kind)
        else:
            self.full = True


class _Audit:
    def __init__(self, audit_id: str, seconds: int) -> None:
        self.id = audit_id
        self.seconds = seconds
        self.state = "recording"
        self.records = 0
        self.truncated = False
        self.report: JSON | None = None
        self.html: str | None = None
        self.error: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {"id": self.id, "state": self.state, "seconds": self.seconds,
                     "cells": self.records, "truncated": self.truncated}
        if self.state == "done":
            out["report"] = self.report
            out["report_html"] = f"/api/network/audit/{self.id}/report.html"
        if self.state == "failed":
            out["error"] = self.error
        return out


class NodeAudits:
    """The audits of one node: start a recording, then audit it; the routes."""

    log = Logger()

    def __init__(self, core: Any, reactor: Any, *, engine: Engine = audit_trace,
                 offload: Offload | None = None, random: Random | None = None,
                 max_body_size: int = 64 * 1024) -> None:
        self.core = core
        self.reactor = reactor
        self.engine = engine
        self.offload: Offload = offload if offload is not None else self._in_thread
        self.random = random if random is not None else secrets.SystemRandom()
        self.max_body_size = max_body_size
        self.audits: OrderedDict[str, _Audit] = OrderedDict()
        self._running: tuple[_Audit, _Recorder, IDelayedCall] | None = None

    def _in_thread(self, work: Callable[[], tuple[JSON, str]]) -> Deferred[tuple[JSON, str]]:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work)

    def route(self, rest: list[str]) -> tuple[dict[str, Handler], tuple[str, ...]] | None:
        """Handlers by method for ``/api/network/audit/...rest`` (None: no such path)."""
        if not rest:
            return {"POST": self.start}, ()
        if len(rest) == 1:
            return {"GET": self.get}, (rest[0],)
        if len(rest) == 2 and rest[1] == "report.html":
            return {"GET": self.html}, (rest[0],)
        return None

    # -- handlers -----------------------------------------------------------
    async def start(self, request: Request) -> tuple[int, JSON]:
        body = read_json_body(request, self.max_body_size)
        seconds = self.parse_body(body)
        mixing = getattr(self.core, "mixing", None)
        counter = getattr(mixing, "trace", None)
        if counter is None or not hasattr(counter, "inner"):
            raise ApiError(409, "the node has no mixing layer: there are no cell traces to "
                           "record")
        if self._running is not None:
            raise ApiError(409, f"audit {self._running[0].id} is recording; one at a time "
                           f"(ask GET /api/network/audit/{self._running[0].id})")
        audit = _Audit(f"{self.random.getrandbits(64):016x}", seconds)
        self._forget_old()
        self.audits[audit.id] = audit
        buffer = io.StringIO()
        sink = JsonLinesTraceSink(buffer, self.reactor, self.random)
        recorder = _Recorder(counter.inner, sink, MAX_RECORDS)
        counter.inner = recorder
        call = self.reactor.callLater(seconds, self._stop, audit, counter, buffer,
                                      self._parameters(mixing))
        self._running = (audit, recorder, call)
        self.log.info("audit {id}: recording the node's cell traces for {seconds} s",
                      id=audit.id, seconds=seconds)
        return 202, audit.to_json()

    async def get(self, request: Request, audit_id: str) -> tuple[int, JSON]:
        audit = self._find(audit_id)
        if self._running is not None and self._running[0] is audit:
            audit.records = self._running[1].sink.records
        return 200, audit.to_json()

    async def html(self, request: Request, audit_id: str) -> tuple[int, RawBody]:
        audit = self._find(audit_id)
        if audit.html is None:
            raise ApiError(409, f"audit {audit.id} is {audit.state}: no report"
                           + (f" ({audit.error})" if audit.error else " yet"), "id")
        request.setHeader("content-security-policy", REPORT_CSP)
        request.setHeader("x-content-type-options", "nosniff")
        return 200, RawBody("text/html; charset=utf-8", audit.html.encode("utf-8"))

    # -- the work -----------------------------------------------------------
    @staticmethod
    def parse_body(body: JSON) -> int:
        """The seconds of a POST body, or a 400 naming the field."""
        _unknown_fields(body, {"seconds"})
        seconds = body.get("seconds", DEFAULT_SECONDS)
        if isinstance(seconds, float) and seconds.is_integer():
            seconds = int(seconds)  # 30.0 is an integer to JSON Schema (and to the document)
        if isinstance(seconds, bool) or not isinstance(seconds, int) \
                or not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ApiError(400, f"\"seconds\" must be an integer from {MIN_SECONDS} to "
                           f"{MAX_SECONDS}", "seconds")
        return int(seconds)

    @staticmethod
    def _parameters(mixing: Any) -> dict[str, Any]:
        """What the engine judges the trace against: the node's applied profile."""
        status = mixing.status() if callable(getattr(mixing, "status", None)) else {}
        return {"profile": str(status.get("profile", "")),
                "rate": float(status.get("cover_rate") or 0.0),
                "constant": bool(status.get("constant_rate")),
                "cell_size": int(getattr(mixing, "cell_size", 0) or 0) or None}

    def _stop(self, audit: _Audit, counter: Any, buffer: io.StringIO,
              parameters: dict[str, Any]) -> None:
        assert self._running is not None
        _, recorder, _ = self._running
        self._running = None
        if counter.inner is recorder:
            counter.inner = recorder.previous
        else:  # the layer stopped (and dropped its sinks) while we recorded
            recorder.previous = None
        audit.records = recorder.sink.records
        audit.truncated = recorder.full
        audit.state = "analysing"
        trace = buffer.getvalue().encode("utf-8")
        buffer.close()
        self.log.info("audit {id}: {cells} cells recorded; analysing", id=audit.id,
                      cells=audit.records)
        d = self.offload(lambda: self.engine(trace, parameters))
        d.addCallbacks(lambda result: self._done(audit, result),
                       lambda failure: self._failed(audit, failure))

    def _done(self, audit: _Audit, result: tuple[JSON, str]) -> None:
        audit.report, audit.html = result
        audit.state = "done"
        self.core.metrics.inc("audits_passed" if audit.report.get("passed") is True
                              else "audits_failed")
        self.log.info("audit {id}: {verdict}", id=audit.id,
                      verdict="passed" if audit.report.get("passed") else
                      "FAILED: " + ", ".join(map(str, audit.report.get("failed", []))))

    def _failed(self, audit: _Audit, failure: Failure) -> None:
        audit.state = "failed"
        audit.error = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"[:500]
        self.core.metrics.inc("audits_incomplete")
        self.log.failure("audit {id} could not be completed", failure, id=audit.id)

    def _find(self, audit_id: str) -> _Audit:
        audit = self.audits.get(audit_id)
        if audit is None:
            raise ApiError(404, f"unknown audit {audit_id[:64]} (the node keeps the last "
                           f"{MAX_KEPT})", "id")
        return audit

    def _forget_old(self) -> None:
        while len(self.audits) >= MAX_KEPT:
            oldest = next((a for a in self.audits.values()
                           if a.state in ("done", "failed")), None)
            if oldest is None:
                break
            del self.audits[oldest.id]


def immediate(work: Callable[[], tuple[JSON, str]]) -> Deferred[tuple[JSON, str]]:
    """An :data:`Offload` that runs the work at once (tests on a task.Clock)."""
    return maybeDeferred(work)
