"""Hostile bodies and headers get a 400 naming the field, never a 500.

Non-finite numbers (NaN, Infinity, 1e400), nesting 1,000+ deep, lone surrogates,
invalid UTF-8 in ``Authorization``; and nothing the API writes is invalid JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import txaio
from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock, StringTransport

from aegis_hidden import _json
from aegis_hidden.api import TokenChecker, build_root, build_site

from .test_api import Api
from .test_api_events import TOKEN, Harness


@pytest.fixture
def api(tmp_path: Path) -> Api:
    a = Api(tmp_path)
    a.call("POST", "/api/network/peers", {"action": "add", "peer_address": a.b.local_address})
    return a


def raw_body(template: str, api: Api) -> bytes:
    return template.replace("B", api.b.local_address).encode()


def send_body(data: str) -> str:
    return '{"target": "B", "message": {"type": "x", "data": ' + data + "}}"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_duration_is_400(api: Api, number: str) -> None:
    raw = raw_body('{"action": "block", "peer_id": "B", "duration": ' + number + "}", api)
    code, reply, _ = api.call("POST", "/api/network/peers", raw=raw)
    assert code == 400, reply
    assert reply["field"] == "duration" and "finite" in reply["error"]
    peer = api.call("GET", f"/api/network/peers/{api.b.local_address}")[1]
    assert peer["status"] != "blocked"


def test_huge_integer_duration_is_400(api: Api) -> None:
    raw = raw_body('{"action": "block", "peer_id": "B", "duration": 1' + "0" * 400 + "}", api)
    code, reply, _ = api.call("POST", "/api/network/peers", raw=raw)
    assert code == 400 and reply["field"] == "duration"


@pytest.mark.parametrize(("data", "field"), [
    ("NaN", "message.data"), ('{"x": [1, Infinity]}', "message.data.x[1]"),
    ('{"n": 1e999}', "message.data.n"),
])
def test_non_finite_message_data_is_400_and_not_sent(api: Api, data: str, field: str) -> None:
    raw = raw_body(send_body(data), api)
    code, reply, _ = api.call("POST", "/api/network/send", raw=raw)
    assert code == 400 and reply["field"] == field, reply
    assert api.a.messenger.outbox_size() == 0
    assert not [e for e in api.b_events if e["type"] == "message_received"]


@pytest.mark.parametrize("depth", [65, 1000, 1500])
def test_deep_nesting_is_400(tmp_path: Path, depth: int) -> None:
    api = Api(tmp_path)
    api.root = build_root(api.a, TokenChecker(api.token_path), 1 << 20)
    api.stub = StubTreq(api.root)
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": api.b.local_address})
    data = "[" * depth + "]" * depth
    raw = raw_body(send_body(data), api)
    code, reply, _ = api.call("POST", "/api/network/send", raw=raw)
    assert code == 400, reply
    assert "nested deeper than" in reply["error"]
    assert api.a.messenger.outbox_size() == 0


def test_nesting_within_the_limit_is_fine(api: Api) -> None:
    data = "[" * 60 + "]" * 60
    raw = raw_body(send_body(data), api)
    assert api.call("POST", "/api/network/send", raw=raw)[0] == 202


@pytest.mark.parametrize(("path", "template", "field"), [
    ("/api/network/send", '{"target": "B", "message": {"type": "\\ud800"}}', "message.type"),
    ("/api/network/send", '{"target": "B", "message": {"type": "x", "data": {"k": "a\\udc00"}}}',
     "message.data.k"),
    ("/api/network/send", '{"target": "B", "message": {"type": "x", "data": {"\\ud83d": 1}}}',
     "message.data.?"),
    ("/api/network/peers", '{"action": "block", "peer_id": "B", "reason": "\\udfff"}', "reason"),
])
def test_lone_surrogate_is_400(api: Api, path: str, template: str, field: str) -> None:
    code, reply, _ = api.call("POST", path, raw=raw_body(template, api))
    assert code == 400 and reply["field"] == field, reply
    assert "Unicode" in reply["error"]
    assert api.a.messenger.outbox_size() == 0


def test_surrogate_pairs_are_fine(api: Api) -> None:
    raw = raw_body('{"target": "B", "message": {"type": "\\ud83d\\ude00", "data": "ok"}}', api)
    assert api.call("POST", "/api/network/send", raw=raw)[0] == 202


def _raw_request(api: Api, head: bytes) -> bytes:
    site = build_site(api.a, TokenChecker(api.token_path), 4096, MemoryReactorClock())
    proto = site.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(head)
    return bytes(transport.value())


@pytest.mark.parametrize("path", [b"/api/network/peers", b"/metrics", b"/network",
                                  b"/nothing"])
@pytest.mark.parametrize("value", [b"Bearer \xff\xfe\xfd", b"\xc3\x28 token",
                                   b"Bearer tok\xe9n"])
def test_authorization_that_is_not_ascii_is_400(api: Api, path: bytes, value: bytes) -> None:
    out = _raw_request(api, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
                       + value + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["field"] == "Authorization" and "ASCII" in body["error"]


def test_events_with_non_finite_numbers_stay_valid_json(tmp_path: Path) -> None:
    """An event holding NaN is replaced by an error event, never sent as invalid JSON."""
    clock = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous, config.loop = config.loop, clock
    try:
        ws = Harness(clock)
        client = ws.connect({"Authorization": f"Bearer {TOKEN}"})
        ws.bus.emit("delivery_state", id="x", latency=float("nan"))
        ws.bus.emit("peer_connected", peer="p.onion")
        ws.flush()
        types = [m["type"] for m in client.messages]
        assert types == ["hello", "error", "peer_connected"]
        assert "delivery_state" in client.messages[1]["error"]
    finally:
        config.loop = previous


def test_strict_json_module() -> None:
    for bad in (b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b'"\\ud800"',
                b"[" * 100 + b"]" * 100, b"\xff"):
        with pytest.raises(_json.JSONValueError):
            _json.loads(bad)
    assert _json.loads(b'{"a": [1.5, "\\ud83d\\ude00", null]}') == {"a": [1.5, "\U0001F600",
                                                                          None]}
    with pytest.raises(ValueError, match="not JSON compliant"):
        _json.dumps({"x": float("inf")})
