"""``/api/network/audit``: recording the node's own cell traces on a Clock, then the audit.

The engine is replaced by a recorder of what it was given (the real engine is
tested on its own and, through this API, in ``tests/integration/test_audit.py``);
the analysis runs at once instead of in a thread.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from random import Random
from typing import Any

import pytest
from twisted.web.resource import Resource
from zope.interface import implementer

from aegis_hidden.api import _audit
from aegis_hidden.api._audit import MAX_KEPT, MAX_SECONDS, NodeAudits, immediate
from aegis_hidden.config import Config
from aegis_hidden.interfaces import ITraceSink
from aegis_hidden.mixing import MixingLayer, read_trace

from .test_api import Api


@implementer(ITraceSink)
class ListSink:
    def __init__(self) -> None:
        self.cells: list[tuple[float, str, str, int, str]] = []

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        self.cells.append((at, link, direction, size, kind))


class Engine:
    def __init__(self, passed: bool = True, error: Exception | None = None) -> None:
        self.calls: list[tuple[bytes, dict[str, Any]]] = []
        self.passed = passed
        self.error = error

    def __call__(self, trace: bytes, parameters: dict[str, Any]
                 ) -> tuple[dict[str, Any], str]:
        self.calls.append((trace, parameters))
        if self.error is not None:
            raise self.error
        lines = len(read_trace(io.StringIO(trace.decode())))
        return ({"passed": self.passed, "failed": [] if self.passed else ["timing"],
                 "checks": [], "lines": lines}, f"<html><body>{lines} cells</body></html>")


class AuditApi(Api):
    def __init__(self, tmp_path: Path, engine: Engine, *, mixing: bool = True) -> None:
        super().__init__(tmp_path)
        self.engine = engine
        self.node_sink = ListSink()
        if mixing:
            layer = MixingLayer.from_config(Config(), self.clock, Random(1))
            layer.trace.inner = self.node_sink  # the node's own trace file, say
            self.a.attach_mixing(layer)
        self.audits = NodeAudits(self.a, self.clock, engine=engine, offload=immediate,
                                 random=Random(7), max_body_size=self.max_body)
        api = self.root.children[b"api"]
        assert isinstance(api, Resource)
        api.audits = self.audits  # type: ignore[attr-defined]

    def cell(self, link: str = "peer-one.onion", direction: str = "out",
             kind: str = "cover") -> None:
        self.a.mixing.trace.record(self.clock.seconds(), link, direction, 996, kind)


@pytest.fixture
def audit_api(tmp_path: Path) -> AuditApi:
    return AuditApi(tmp_path, Engine())


def test_record_for_n_seconds_then_audit(audit_api: AuditApi) -> None:
    api = audit_api
    code, started, _ = api.call("POST", "/api/network/audit", {"seconds": 10})
    assert code == 202
    assert started["state"] == "recording" and started["seconds"] == 10
    audit_id = started["id"]
    for i in range(20):
        api.clock.advance(0.4)
        api.cell(direction="out" if i % 2 else "in", kind="real" if i % 5 == 0 else "cover")
    assert api.call("GET", f"/api/network/audit/{audit_id}")[1]["cells"] == 20
    api.clock.advance(2.0)  # 10 s are over: recording stops, the engine runs
    api.cell()  # after the recording: not in the audit
    code, state, _ = api.call("GET", f"/api/network/audit/{audit_id}")
    assert code == 200
    assert state["state"] == "done" and state["cells"] == 20 and not state["truncated"]
    assert state["report"]["lines"] == 20
    assert state["report_html"] == f"/api/network/audit/{audit_id}/report.html"
    trace, parameters = api.engine.calls[0]
    records = read_trace(io.StringIO(trace.decode()))
    # the trace format of the mixing layer's sink: relative times, salted link ids
    assert records[0]["t"] == pytest.approx(0.4) and records[-1]["t"] == pytest.approx(8.0)
    assert {r["link"] for r in records} != {"peer-one.onion"}
    assert "peer-one.onion" not in trace.decode()
    assert parameters["profile"] == "balanced" and parameters["rate"] > 0
    assert parameters["cell_size"] == 996
    # the node's own sink saw every cell, during and after, and is back in place
    assert len(api.node_sink.cells) == 21
    assert api.a.mixing.trace.inner is api.node_sink


def test_html_report(audit_api: AuditApi) -> None:
    api = audit_api
    audit_id = api.call("POST", "/api/network/audit", {"seconds": 1})[1]["id"]
    code, body, _ = api.call("GET", f"/api/network/audit/{audit_id}/report.html")
    assert code == 409 and "recording" in body["error"]
    api.cell()
    api.clock.advance(1)
    code, html, headers = api.call("GET", f"/api/network/audit/{audit_id}/report.html")
    assert code == 200 and html == "<html><body>1 cells</body></html>"
    assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert "default-src 'none'" in headers.getRawHeaders("content-security-policy")[0]
    assert api.call("GET", "/api/network/audit/0123/report.html")[0] == 404
    assert api.call("GET", f"/api/network/audit/{audit_id}/other")[0] == 404


def test_one_recording_at_a_time(audit_api: AuditApi) -> None:
    api = audit_api
    first = api.call("POST", "/api/network/audit", {"seconds": 5})[1]["id"]
    code, body, _ = api.call("POST", "/api/network/audit", {"seconds": 5})
    assert code == 409 and first in body["error"]
    api.clock.advance(5)
    code, body, _ = api.call("POST", "/api/network/audit", {})
    assert code == 202 and body["seconds"] == _audit.DEFAULT_SECONDS
    api.clock.advance(_audit.DEFAULT_SECONDS)
    code, body, _ = api.call("POST", "/api/network/audit", {"seconds": 30.0})
    assert code == 202 and body["seconds"] == 30  # an integer to JSON Schema


@pytest.mark.parametrize(("body", "field"), [
    ({"seconds": 0}, "seconds"),
    ({"seconds": MAX_SECONDS + 1}, "seconds"),
    ({"seconds": "5"}, "seconds"),
    ({"seconds": True}, "seconds"),
    ({"seconds": 1.5}, "seconds"),
    ({"seconds": 600.5}, "seconds"),
    ({"seconds": 601.0}, "seconds"),
    ({"seconds": None}, "seconds"),
    ({"second": 5}, "second"),
    ({"seconds": 5, "thresholds": {"correlation.bin": 1e-9}}, "thresholds"),
])
def test_bad_bodies_are_typed_400s(audit_api: AuditApi, body: dict[str, Any],
                                   field: str) -> None:
    code, reply, _ = audit_api.call("POST", "/api/network/audit", body)
    assert code == 400, reply
    assert reply["field"] == field
    assert audit_api.a.mixing.trace.inner is audit_api.node_sink  # nothing started


def test_malformed_json_and_wrong_method(audit_api: AuditApi) -> None:
    code, reply, _ = audit_api.call("POST", "/api/network/audit", raw=b"{nope")
    assert code == 400 and "not valid JSON" in reply["error"]
    code, _, headers = audit_api.call("GET", "/api/network/audit")
    assert code == 405 and headers.getRawHeaders("allow") == ["POST"]
    assert audit_api.call("POST", "/api/network/audit/abc")[0] == 405


def test_a_failed_analysis_says_why(tmp_path: Path) -> None:
    api = AuditApi(tmp_path, Engine(error=ValueError("trace unreadable")))
    audit_id = api.call("POST", "/api/network/audit", {"seconds": 1})[1]["id"]
    api.clock.advance(1)
    state = api.call("GET", f"/api/network/audit/{audit_id}")[1]
    assert state["state"] == "failed" and state["error"] == "ValueError: trace unreadable"
    code, body, _ = api.call("GET", f"/api/network/audit/{audit_id}/report.html")
    assert code == 409 and "trace unreadable" in body["error"]


def test_no_mixing_layer_is_409(tmp_path: Path) -> None:
    api = AuditApi(tmp_path, Engine(), mixing=False)
    code, body, _ = api.call("POST", "/api/network/audit", {"seconds": 1})
    assert code == 409 and "mixing" in body["error"]


def test_recording_is_bounded(audit_api: AuditApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_audit, "MAX_RECORDS", 5)
    api = audit_api
    audit_id = api.call("POST", "/api/network/audit", {"seconds": 1})[1]["id"]
    for _ in range(8):
        api.cell()
    api.clock.advance(1)
    state = api.call("GET", f"/api/network/audit/{audit_id}")[1]
    assert state["cells"] == 5 and state["truncated"] is True
    assert state["report"]["lines"] == 5
    assert len(api.node_sink.cells) == 8  # the node's own sink lost nothing


def test_only_the_last_audits_are_kept(audit_api: AuditApi) -> None:
    api = audit_api
    ids = []
    for _ in range(MAX_KEPT + 2):
        ids.append(api.call("POST", "/api/network/audit", {"seconds": 1})[1]["id"])
        api.clock.advance(1)
    assert len(set(ids)) == len(ids)
    assert api.call("GET", f"/api/network/audit/{ids[0]}")[0] == 404
    assert api.call("GET", f"/api/network/audit/{ids[1]}")[0] == 404
    assert all(api.call("GET", f"/api/network/audit/{i}")[0] == 200 for i in ids[2:])
    assert len(api.audits.audits) == MAX_KEPT


def test_the_access_log_keeps_no_audit_id() -> None:
    from aegis_hidden.api._web import access_log_path

    assert access_log_path(b"/api/network/audit/0123abcd") == "/api/network/audit/{id}"
    assert "0123abcd" not in access_log_path(b"/api/network/audit/0123abcd/report.html")


def test_state_documents_are_json(audit_api: AuditApi) -> None:
    api = audit_api
    started = api.call("POST", "/api/network/audit", {"seconds": 1})[1]
    json.dumps(started, allow_nan=False)
    assert set(started) == {"id", "state", "seconds", "cells", "truncated"}


def test_the_openapi_document_describes_what_the_handlers_answer(
        audit_api: AuditApi) -> None:
    from aegis_hidden.api import DOCUMENT

    paths = DOCUMENT["paths"]
    assert set(paths["/api/network/audit"]) == {"post"}
    assert set(paths["/api/network/audit/{audit_id}"]) == {"get"}
    assert "text/html" in paths["/api/network/audit/{audit_id}/report.html"]["get"][
        "responses"]["200"]["content"]
    schemas = DOCUMENT["components"]["schemas"]
    request = schemas["AuditRequest"]
    assert request["properties"]["seconds"]["maximum"] == MAX_SECONDS
    assert request["additionalProperties"] is False
    audit = schemas["Audit"]
    api = audit_api
    started = api.call("POST", "/api/network/audit", {"seconds": 1})[1]
    assert set(audit["required"]) == set(started)
    api.clock.advance(1)
    done = api.call("GET", f"/api/network/audit/{started['id']}")[1]
    assert set(done) <= set(audit["properties"])
    assert done["state"] in audit["properties"]["state"]["enum"]


def test_audit_outcomes_are_counted_in_metrics(tmp_path: Path) -> None:
    def counters(api: AuditApi) -> tuple[int, int, int]:
        c = api.a.metrics.counters
        return c["audits_passed"], c["audits_failed"], c["audits_incomplete"]

    for i, (engine, expected) in enumerate((
            (Engine(), (1, 0, 0)), (Engine(passed=False), (0, 1, 0)),
            (Engine(error=ValueError("no")), (0, 0, 1)))):
        (tmp_path / str(i)).mkdir()
        api = AuditApi(tmp_path / str(i), engine)
        assert counters(api) == (0, 0, 0)
        api.call("POST", "/api/network/audit", {"seconds": 1})
        api.clock.advance(1)
        assert counters(api) == expected
        text = api.a.metrics.render()
        assert f"aegis_audits_failed_total {expected[1]}" in text
