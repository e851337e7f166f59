"""The stream endpoints (/api/network/streams) through StubTreq: open, list with
backpressure, one stream, bad input; and the WebSocket path's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis_hidden.node import StreamService
from aegis_hidden.streams import Limits
from aegis_hidden.testing import result_of

from .test_api import Api

LIMITS = Limits(window=16 * 1024, send_buffer=8 * 1024, chunk=4096, max_streams=2)


@pytest.fixture
def api(tmp_path: Path) -> Api:
    a = Api(tmp_path)
    a.clock.advance(1_800_000_000)
    StreamService(a.a, LIMITS)
    StreamService(a.b, LIMITS)
    result_of(a.a.store.add(a.b.local_address))
    return a


def test_open_list_and_backpressure(api: Api) -> None:
    peer = api.b.local_address
    code, body, _ = api.call("POST", "/api/network/streams", {"peer": peer, "label": "f"})
    assert code == 201, body
    sid = body["id"]
    assert body["websocket"] == f"/network/streams/{sid}"
    assert body["peer"] == peer and body["label"] == "f" and body["outgoing"] is True
    # nobody reads at b: the sender's credit runs out and its buffer fills
    service = api.a.streams
    offered = 0
    for _ in range(10):
        offered += service.write(sid, b"x" * 10_000)
        api.clock.advance(0.1)
    code, listed, _ = api.call("GET", "/api/network/streams")
    assert code == 200
    (s,) = listed["streams"]
    assert s["credit"] == 0 and s["room"] == 0
    assert s["bytes_sent"] == LIMITS.window and s["send_buffered"] == LIMITS.send_buffer
    assert listed["buffered"] == LIMITS.send_buffer
    assert listed["limits"] == {"window": LIMITS.window, "send_buffer": LIMITS.send_buffer,
                                "chunk": LIMITS.chunk, "max_streams": LIMITS.max_streams}
    code, one, _ = api.call("GET", f"/api/network/streams/{sid}")
    assert code == 200 and one["id"] == sid and one["attached"] is False
    assert offered == LIMITS.window + LIMITS.send_buffer
    (incoming,) = [e for e in api.b_events if e["type"] == "stream_opened"]
    assert incoming["peer"] == api.a.local_address


def test_too_many_streams_is_429(api: Api) -> None:
    peer = api.b.local_address
    for _ in range(LIMITS.max_streams):
        assert api.call("POST", "/api/network/streams", {"peer": peer})[0] == 201
    code, body, _ = api.call("POST", "/api/network/streams", {"peer": peer})
    assert code == 429 and "open streams" in body["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "peer"), ({"peer": 5}, "peer"), ({"peer": "nope"}, "peer"),
    ({"peer": "x", "extra": 1}, "extra"),
])
def test_bad_open_bodies(api: Api, body: dict[str, object], field: str) -> None:
    code, answer, _ = api.call("POST", "/api/network/streams", body)
    assert code == 400 and answer["field"] == field


def test_bad_label(api: Api) -> None:
    code, answer, _ = api.call("POST", "/api/network/streams",
                               {"peer": api.b.local_address, "label": "x" * 201})
    assert code == 400 and answer["field"] == "label"


def test_unknown_stream_is_404(api: Api) -> None:
    assert api.call("GET", "/api/network/streams/99")[0] == 404


def test_stream_socket_needs_token_and_upgrade(api: Api) -> None:
    assert api.call("GET", "/network/streams/1", token=None)[0] == 401
    assert api.call("GET", "/network/streams/1")[0] == 426
    assert api.call("POST", "/network/streams/1")[0] == 405


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_stream_socket_refuses_an_unknown_or_taken_stream_with_json(api: Api) -> None:
    """A valid upgrade to a stream that does not exist is a JSON 404 (as the document
    says), one to a stream that has its reader a JSON 409, before any handshake."""
    code, body, _ = api.call("GET", "/network/streams/nope", headers=UPGRADE)
    assert code == 404 and body["error"].startswith("no such stream"), body
    code, opened, _ = api.call("POST", "/api/network/streams", {"peer": api.b.local_address})
    assert code == 201
    api.a.streams.attach(opened["id"], object())
    code, body, _ = api.call("GET", f"/network/streams/{opened['id']}", headers=UPGRADE)
    assert code == 409 and "already has a reader" in body["error"], body
