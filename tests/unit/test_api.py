"""The REST API through StubTreq against the real resource tree, over fake sessions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport

from aegis_hidden.api import (
    DOCUMENT,
    TokenChecker,
    build_root,
    build_site,
    load_or_create_token,
    openapi_json,
    rotate_token,
)
from aegis_hidden.config import Config, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of

REPO = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:8470"
OWN_TOKEN = object()


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


class Api:
    """Node A (with the API) and node B, joined by a fake network."""

    def __init__(self, tmp_path: Path, config: Config | None = None) -> None:
        self.clock = Clock()
        self.net = FakeNetwork()
        self.a_events: list[dict[str, Any]] = []
        self.b_events: list[dict[str, Any]] = []
        self.a = self._core(tmp_path / "a.db", self.a_events, config)
        self.b = self._core(tmp_path / "b.db", self.b_events, None)
        self.token_path = tmp_path / "api_token"
        self.token, created = load_or_create_token(self.token_path)
        assert created
        self.max_body = 4096
        self.root = build_root(self.a, TokenChecker(self.token_path), self.max_body)
        self.stub = StubTreq(self.root)

    def _core(self, path: Path, sink: list[dict[str, Any]], config: Config | None) -> NodeCore:
        bus = EventBus(now=self.clock.seconds)
        bus.subscribe(sink.append)
        address = onion()
        core = NodeCore(config or Config(), None, str(path.parent), bus, self.clock,
                        db=InlineSQLite(str(path)), local_address=address)
        core.attach_session_factory(self.net.node(address))
        core.startService()
        result_of(core.when_ready())
        return core

    def call(self, method: str, path: str, body: Any = None, *, token: object = OWN_TOKEN,
             raw: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any, Any]:
        hdrs = dict(headers or {})
        if token is OWN_TOKEN:
            token = self.token
        if isinstance(token, str):
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        request = self.stub.request  # type: ignore[attr-defined]
        d = request(method, BASE + path, headers=hdrs, data=data)
        self.stub.flush()
        response = result_of(d)
        d2 = response.content()
        self.stub.flush()
        content = result_of(d2)
        ctype = response.headers.getRawHeaders("content-type", [""])[0]
        parsed = json.loads(content) if "json" in ctype else content.decode()
        return response.code, parsed, response.headers


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


ENDPOINTS = [("GET", "/api/network/peers"), ("POST", "/api/network/peers"),
             ("POST", "/api/network/send"), ("GET", "/api/network/status"),
             ("GET", "/metrics"), ("GET", "/api/openapi.json"), ("GET", "/network"),
             ("GET", "/api/network/peers/x"), ("GET", "/nope")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", ""])
def test_every_endpoint_needs_the_token(api: Api, method: str, path: str,
                                        token: str | None) -> None:
    code, body, headers = api.call(method, path, {"action": "add"}, token=token)
    assert code == 401
    assert body == {"error": "missing or wrong bearer token", "field": None}
    assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="aegis-hidden"']
    assert api.a.metrics.counters["auth_failures"] == 1


def test_other_auth_schemes_refused(api: Api) -> None:
    code, _, _ = api.call("GET", "/api/network/peers", token=None,
                          headers={"Authorization": f"Basic {api.token}"})
    assert code == 401


def test_token_file_is_private_and_rotation_applies_at_once(api: Api) -> None:
    assert api.token_path.stat().st_mode & 0o777 == 0o600
    assert api.call("GET", "/api/network/peers")[0] == 200
    old = api.token
    new = rotate_token(api.token_path)
    assert new != old
    assert api.call("GET", "/api/network/peers", token=old)[0] == 401
    assert api.call("GET", "/api/network/peers", token=new)[0] == 200
    os.chmod(api.token_path, 0o644)  # a leaky token file locks the API
    assert api.call("GET", "/api/network/peers", token=new)[0] == 401


def test_peers_add_list_get_block_unblock_remove(api: Api) -> None:
    assert api.call("GET", "/api/network/peers")[:2] == (200, {"peers": [], "next_cursor": None})
    b = api.b.local_address
    code, body, _ = api.call("POST", "/api/network/peers",
                             {"action": "add", "peer_address": b.upper()})
    assert code == 200 and body["ok"] and body["peer"]["id"] == b
    code, body, _ = api.call("GET", "/api/network/peers")
    (peer,) = body["peers"]
    assert set(peer) >= {"id", "address", "status", "last_seen", "reputation"}
    assert peer["status"] == "new" and peer["reputation"] == 0.5
    assert api.call("GET", f"/api/network/peers/{b}")[1]["id"] == b
    code, body, _ = api.call("POST", "/api/network/peers",
                             {"action": "block", "peer_id": b, "reason": "spam",
                              "duration": 60})
    assert code == 200 and body["peer"]["status"] == "blocked"
    assert body["peer"]["blocked"] == {"reason": "spam", "until": 60.0}
    code, body, _ = api.call("POST", "/api/network/peers", {"action": "unblock", "peer_id": b})
    assert code == 200 and body["peer"]["status"] == "new"
    code, body, _ = api.call("POST", "/api/network/peers", {"action": "remove", "peer_id": b})
    assert code == 200
    assert api.call("GET", "/api/network/peers")[1] == {"peers": [], "next_cursor": None}
    assert [e["action"] for e in api.a_events if e["type"] == "peer_changed"] == [
        "add", "block", "unblock", "remove"]


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"action": "add"}, "peer_address", "missing field"),
    ({"action": "add", "peer_address": "example.com"}, "peer_address", "not a v3 .onion"),
    ({"action": "add", "peer_address": "1.2.3.4:80"}, "peer_address", "clearnet"),
    ({"action": "fly", "peer_address": "x"}, "action", "one of add"),
    ({"peer_address": "x"}, "action", "one of add"),
    ({"action": "add", "peer_address": 5}, "peer_address", "non-empty string"),
    ({"action": "add", "peer_address": "PLACEHOLDER", "colour": 1}, "colour", "unknown field"),
    ({"action": "block", "peer_id": "PLACEHOLDER", "duration": -1}, "duration", "positive"),
    ({"action": "block", "peer_id": "PLACEHOLDER", "duration": True}, "duration", "positive"),
    ({"action": "add", "peer_address": "PLACEHOLDER", "i2p_destination": "x.i2p"},
     "i2p_destination", "not a v3 .onion or .b32.i2p"),
])
def test_peer_body_validation(api: Api, body: dict[str, Any], field: str,
                              fragment: str) -> None:
    body = {k: (api.b.local_address if v == "PLACEHOLDER" else v) for k, v in body.items()}
    code, reply, _ = api.call("POST", "/api/network/peers", body)
    assert code == 400
    assert reply["field"] == field and fragment in reply["error"]
    assert len(api.a.store) == 0


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "JSON"),
    (b"", "not valid JSON")])
def test_malformed_json_is_400(api: Api, raw: bytes, fragment: str) -> None:
    for path in ("/api/network/peers", "/api/network/send"):
        code, reply, _ = api.call("POST", path, raw=raw)
        assert code == 400 and fragment in reply["error"] and reply["field"] is None


def test_unknown_peers_are_404(api: Api) -> None:
    ghost = onion()
    for action in ("remove", "unblock"):
        code, reply, _ = api.call("POST", "/api/network/peers",
                                  {"action": action, "peer_id": ghost})
        assert code == 404 and ghost in reply["error"] and reply["field"] == "peer_id"
    assert api.call("GET", f"/api/network/peers/{ghost}")[0] == 404
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": ghost, "message": {"type": "chat", "data": 1}})
    assert code == 404 and reply["field"] == "target"
    assert api.call("GET", "/api/network/messages/" + "0" * 32)[0] == 404


def test_oversize_body_is_413(api: Api) -> None:
    big = {"target": api.b.local_address, "message": {"type": "x", "data": "a" * 5000}}
    code, reply, _ = api.call("POST", "/api/network/send", big)
    assert code == 413 and "4096" in reply["error"]


def test_send_delivers_and_reports_state(api: Api) -> None:
    b = api.b.local_address
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": b, "message": {"type": "chat", "data": {"x": [1]}}})
    assert code == 202
    assert reply["state"] == "acknowledged" and reply["target"] == b
    (got,) = [e for e in api.b_events if e["type"] == "message_received"]
    assert got["message"] == {"type": "chat", "data": {"x": [1]}}
    assert got["id"] == reply["id"] and got["peer"] == api.a.local_address
    code, state, _ = api.call("GET", f"/api/network/messages/{reply['id']}")
    assert (code, state) == (200, {"id": reply["id"], "state": "acknowledged"})
    peers = api.call("GET", "/api/network/peers")[1]["peers"]
    assert peers[0]["status"] == "connected" and peers[0]["reputation"] > 0.5
    assert peers[0]["last_seen"] == 0.0


@pytest.mark.parametrize(("body", "field"), [
    ({"message": {"type": "x"}}, "target"),
    ({"target": "evil.example.com", "message": {"type": "x"}}, "target"),
    ({"target": "B"}, "message"),
    ({"target": "B", "message": "hi"}, "message"),
    ({"target": "B", "message": {"data": 1}}, "message.type"),
    ({"target": "B", "message": {"type": ""}}, "message.type"),
    ({"target": "B", "message": {"type": "x", "extra": 1}}, "message.extra"),
    ({"target": "B", "message": {"type": "x"}, "priority": 1}, "priority"),
])
def test_send_body_validation(api: Api, body: dict[str, Any], field: str) -> None:
    b = api.b.local_address
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})
    body = {k: (b if v == "B" else v) for k, v in body.items()}
    code, reply, _ = api.call("POST", "/api/network/send", body)
    assert code == 400 and reply["field"] == field
    assert api.a.messenger.outbox_size() == 0


def test_send_to_blocked_peer_is_409_and_too_large_message_413(tmp_path: Path) -> None:
    api = Api(tmp_path, parse_config({"performance": {"max_message_size": 1024}}))
    b = api.b.local_address
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": b, "message": {"type": "x", "data": "y" * 2000}})
    assert code == 413 and "max_message_size" in reply["error"]
    api.call("POST", "/api/network/peers", {"action": "block", "peer_id": b})
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": b, "message": {"type": "x"}})
    assert code == 409 and reply["field"] == "target"


def test_status(api: Api) -> None:
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": api.b.local_address})
    code, status, _ = api.call("GET", "/api/network/status")
    assert code == 200
    assert status["identity"] == {"onion": api.a.local_address}
    assert status["counts"] == {"peers": 1, "connected": 0, "blacklisted": 0, "outbox": 0}
    assert status["session_layer"] is True and status["transports"] == {}


def test_metrics(api: Api) -> None:
    b = api.b.local_address
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})
    api.call("POST", "/api/network/send", {"target": b, "message": {"type": "x"}})
    api.call("GET", "/metrics", token="bad-token-bad-token")
    code, text, headers = api.call("GET", "/metrics")
    assert code == 200
    assert headers.getRawHeaders("content-type")[0].startswith("text/plain; version=0.0.4")
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines["aegis_active_connections"] == "1"
    assert lines["aegis_connection_attempts_ok_total"] == "1"
    assert lines["aegis_peers"] == "1"
    assert lines["aegis_auth_failures_total"] == "1"
    assert float(lines["aegis_mean_reputation"]) > 0.5
    assert int(lines["aegis_bytes_out_total"]) > 0 and int(lines["aegis_bytes_in_total"]) > 0
    assert lines["aegis_message_ack_latency_seconds_count"] == "1"
    assert lines['aegis_message_ack_latency_seconds_bucket{le="+Inf"}'] == "1"
    assert int(lines["aegis_peer_churn_total"]) == 1


def test_openapi_served_equals_docs(api: Api) -> None:
    code, doc, _ = api.call("GET", "/api/openapi.json")
    assert code == 200 and doc == DOCUMENT | doc  # same keys
    assert json.dumps(doc, sort_keys=True) == json.dumps(DOCUMENT, sort_keys=True)
    assert (REPO / "docs" / "openapi.json").read_text() == openapi_json(), (
        "docs/openapi.json is stale: aegis-hidden api openapi > docs/openapi.json")
    assert doc["openapi"].startswith("3.1")
    for path in ("/api/network/peers", "/api/network/send", "/api/network/status",
                 "/metrics", "/network"):
        assert path in doc["paths"]


def test_unknown_path_404_and_wrong_method_405(api: Api) -> None:
    code, reply, _ = api.call("GET", "/api/network/nothing")
    assert code == 404 and "no such endpoint" in reply["error"]
    code, reply, _ = api.call("GET", "/nothing/here")
    assert code == 404 and "no such endpoint" in reply["error"]
    code, reply, headers = api.call("DELETE", "/api/network/peers")
    assert code == 405 and headers.getRawHeaders("allow") == ["GET, POST"]


def test_websocket_path_without_upgrade_passes_auth_then_refuses(api: Api) -> None:
    code, _, _ = api.call("GET", "/network")  # a plain GET with the right token
    assert code != 401


def test_body_limit_enforced_while_reading(tmp_path: Path) -> None:
    """On a real Site the body past api.max_body_size is discarded, not buffered."""
    api = Api(tmp_path)
    site = build_site(api.a, TokenChecker(api.token_path), 1024, MemoryReactorClock())
    for length, chunked in ((5000, False), (None, True)):
        proto = site.buildProtocol(None)  # a declared 413 closes its connection
        transport = StringTransport()
        proto.makeConnection(transport)
        head = (f"POST /api/network/send HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {api.token}\r\n")
        if chunked:
            body = b"".join(b"%x\r\n%s\r\n" % (500, b"a" * 500) for _ in range(10)) + b"0\r\n\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n"
        else:
            body = b"a" * (length or 0)
            head += f"Content-Length: {length}\r\n\r\n"
        proto.dataReceived(head.encode() + body)
        out = transport.value()
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert b"max_body_size (1024)" in out
