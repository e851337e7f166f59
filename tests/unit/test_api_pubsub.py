"""The topic endpoints (/api/network/topics, send to ``topic:NAME``) through StubTreq,
over two in-memory nodes running the real PubSubService."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aegis_hidden import identity
from aegis_hidden.cli import main
from aegis_hidden.cli._api import ApiClient
from aegis_hidden.config import Config, parse_config
from aegis_hidden.node import NodeCore, PubSubService
from aegis_hidden.testing import result_of

from .test_api import Api, onion
from .test_api_cli import StubClient


def _pubsub(core: NodeCore, tmp: Path, name: str, seed: int, cfg: Config) -> PubSubService:
    ident = identity.create(tmp / f"id-{name}", 1_700_000_000)
    service = PubSubService(core, cfg.pubsub, ident, core.reactor, rng=random.Random(seed))
    service.startService()
    return service


@pytest.fixture
def api(tmp_path: Path) -> Api:
    cfg = parse_config({"pubsub": {"max_topics": 2, "broadcast": False}})
    a = Api(tmp_path, cfg)
    a.clock.advance(1_800_000_000)
    _pubsub(a.a, tmp_path, "a", 1, cfg)
    _pubsub(a.b, tmp_path, "b", 2, cfg)
    result_of(a.a.store.add(a.b.local_address))
    result_of(a.a.pool.get(a.b.local_address))
    return a


def test_subscribe_publish_and_list(api: Api) -> None:
    code, body, _ = api.call("POST", "/api/network/topics",
                             {"action": "subscribe", "topic": "news"})
    assert code == 200 and body == {"ok": True, "action": "subscribe", "topic": "news",
                                    "anonymous": False, "changed": True, "private": False,
                                    "key_id": None, "accepted": False, "created": False}
    api.b.topics.subscribe("news")
    for _ in range(6):
        api.clock.advance(0.5)
    code, body, _ = api.call("POST", "/api/network/send",
                             {"target": "topic:news", "message": {"type": "t", "data": [1]}})
    assert code == 202 and body["state"] == "published" and body["target"] == "topic:news"
    assert len(body["id"]) == 40
    api.clock.advance(1)
    got = [e for e in api.b_events if e["type"] == "message_received"]
    assert [(e["topic"], e["id"], e["message"]) for e in got] == [
        ("news", body["id"], {"type": "t", "data": [1]})]
    assert "peer" not in got[0]
    code, listed, _ = api.call("GET", "/api/network/topics")
    assert code == 200
    [news] = listed["topics"]
    assert news["messages_out"] == 1 and news["messages_in"] == 0
    assert [m["peer"] for m in news["mesh"]] == [api.b.local_address]
    code, body, _ = api.call("POST", "/api/network/topics",
                             {"action": "unsubscribe", "topic": "news"})
    assert code == 200 and body["changed"] is True
    code, listed, _ = api.call("GET", "/api/network/topics")
    assert listed == {"topics": [], "invitations": [], "broadcast": None}


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "join", "topic": "x"}, "action"),
    ({"action": "subscribe"}, "topic"),
    ({"action": "subscribe", "topic": ""}, "topic"),
    ({"action": "subscribe", "topic": "x" * 129}, "topic"),
    ({"action": "subscribe", "topic": 5}, "topic"),
    ({"action": "subscribe", "topic": "x", "anonymous": "yes"}, "anonymous"),
    ({"action": "unsubscribe", "topic": "x", "anonymous": True}, "anonymous"),
    ({"action": "subscribe", "topic": "x", "key": "k"}, "key"),
])
def test_bad_topic_bodies_are_400(api: Api, body: dict[str, object], field: str) -> None:
    code, answer, _ = api.call("POST", "/api/network/topics", body)
    assert code == 400 and answer["field"] == field
    assert api.a.topics.topics() == []


def test_conflicts_are_409_and_bad_targets_400(api: Api) -> None:
    api.call("POST", "/api/network/topics",
             {"action": "subscribe", "topic": "quiet", "anonymous": True})
    code, body, _ = api.call("POST", "/api/network/topics",
                             {"action": "subscribe", "topic": "quiet"})
    assert code == 409 and body["field"] == "topic"
    api.call("POST", "/api/network/topics", {"action": "subscribe", "topic": "second"})
    code, body, _ = api.call("POST", "/api/network/topics",
                             {"action": "subscribe", "topic": "third"})
    assert code == 409 and "max_topics" in body["error"]
    code, body, _ = api.call("POST", "/api/network/send",
                             {"target": "topic:", "message": {"type": "t"}})
    assert code == 400 and body["field"] == "target"
    code, body, _ = api.call("POST", "/api/network/send",
                             {"target": "topic:a\nb", "message": {"type": "t"}})
    assert code == 400 and body["field"] == "target"


def test_no_pubsub_is_503(tmp_path: Path) -> None:
    a = Api(tmp_path)
    code, body, _ = a.call("GET", "/api/network/topics")
    assert code == 503 and "pubsub.enabled" in body["error"]
    code, body, _ = a.call("POST", "/api/network/send",
                           {"target": "topic:x", "message": {"type": "t"}})
    assert code == 503


def test_cli_sub_pub_topics(api: Api, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ApiClient, "from_args",
                        classmethod(lambda cls, args: StubClient(api)))
    assert main(["pubsub", "topics"]) == 0
    assert capsys.readouterr().out.strip() == "no topics"
    assert main(["pubsub", "sub", "chat"]) == 0
    assert capsys.readouterr().out.strip() == "subscribed to chat"
    api.b.topics.subscribe("chat")
    api.clock.advance(1)
    assert main(["pubsub", "pub", "chat", "plain words"]) == 0
    assert capsys.readouterr().out.strip().endswith(": published")
    api.clock.advance(1)
    got = [e["message"] for e in api.b_events if e.get("topic") == "chat"]
    assert got == [{"type": "text", "data": "plain words"}]
    assert main(["pubsub", "topics"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("chat (normal): 1 in the mesh of 1 topic peers; 0 in, 1 out")
    assert api.b.local_address in out
    assert main(["pubsub", "topics", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["topics"][0]["topic"] == "chat"
    assert main(["pubsub", "unsub", "chat"]) == 0
    assert capsys.readouterr().out.strip() == "unsubscribed from chat"
    assert main(["pubsub", "sub", ""]) == 1
    assert "API said 400" in capsys.readouterr().err


def test_private_topics_rotate_and_invite_through_the_api(api: Api) -> None:
    code, body, _ = api.call("POST", "/api/network/topics",
                             {"action": "subscribe", "topic": "club", "private": True})
    assert code == 200 and body["private"] and body["created"] and len(body["key_id"]) == 16
    assert "key" not in body and "keys" not in json.dumps(body)
    code, listed, _ = api.call("GET", "/api/network/topics")
    [club] = listed["topics"]
    assert (club["private"], club["key_id"], listed["invitations"]) == (True, body["key_id"], [])
    code, rotated, _ = api.call("POST", "/api/network/topics",
                                {"action": "rotate", "topic": "club"})
    assert code == 200 and rotated["key_id"] not in (None, body["key_id"])
    code, err, _ = api.call("POST", "/api/network/topics", {"action": "rotate", "topic": "x"})
    assert code == 409 and "not a private topic" in err["error"]
    # b's identity record never reached a here: the invitation cannot be sealed to it
    code, err, _ = api.call("POST", "/api/network/topics",
                            {"action": "invite", "topic": "club",
                             "peer": api.b.local_address})
    assert code == 409 and "no identity record" in err["error"]
    code, err, _ = api.call("POST", "/api/network/topics",
                            {"action": "invite", "topic": "club", "peer": onion()})
    assert code == 404 and err["field"] == "peer"
    key = "A" * 43 + "="
    code, shared, _ = api.call("POST", "/api/network/topics",
                               {"action": "subscribe", "topic": "shared", "key": key})
    assert code == 200 and shared["private"] and not shared["created"]


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "invite", "topic": "club"}, "peer"),
    ({"action": "invite", "topic": "club", "peer": "nope"}, "peer"),
    ({"action": "invite", "topic": "club", "peer": "a" * 52 + ".b32.i2p"}, "peer"),
    ({"action": "unsubscribe", "topic": "club", "peer": onion()}, "peer"),
    ({"action": "rotate", "topic": "club", "private": True}, "private"),
    ({"action": "subscribe", "topic": "club", "private": "yes"}, "private"),
    ({"action": "subscribe", "topic": "club", "key": 5}, "key"),
    ({"action": "subscribe", "topic": "club", "key": "A" * 43 + "=", "private": False},
     "private"),
])
def test_bad_private_topic_bodies_are_400(api: Api, body: dict[str, object],
                                          field: str) -> None:
    code, answer, _ = api.call("POST", "/api/network/topics", body)
    assert code == 400 and answer["field"] == field


def test_confirm_from_is_checked(api: Api) -> None:
    api.call("POST", "/api/network/topics", {"action": "subscribe", "topic": "news"})
    for confirm, code_wanted in ((["nope"], 400), ([], 400), ("x", 400),
                                 ([onion() for _ in range(17)], 400),
                                 ([api.b.local_address], 409)):
        code, body, _ = api.call("POST", "/api/network/send", {
            "target": "topic:news", "message": {"type": "t"}, "confirm_from": confirm})
        assert (code, body["field"]) == (code_wanted, "confirm_from" if code == 400
                                         else "target"), (confirm, body)
    code, body, _ = api.call("POST", "/api/network/send", {
        "target": api.b.local_address, "message": {"type": "t"},
        "confirm_from": [api.b.local_address]})
    assert code == 400 and body["field"] == "confirm_from"


def test_broadcast_over_the_rate_is_429(tmp_path: Path) -> None:
    cfg = parse_config({"pubsub": {"broadcast_burst": 1}})
    a = Api(tmp_path, cfg)
    a.clock.advance(1_800_000_000)
    _pubsub(a.a, tmp_path, "a", 1, cfg)
    code, listed, _ = a.call("GET", "/api/network/topics")
    assert listed["broadcast"] == "aegis-hidden/broadcast"
    assert [t["broadcast"] for t in listed["topics"]] == [True]
    send = {"target": "topic:aegis-hidden/broadcast", "message": {"type": "news"}}
    code, body, _ = a.call("POST", "/api/network/send", send)
    assert code == 202
    code, body, headers = a.call("POST", "/api/network/send", send)
    assert code == 429 and "broadcast_rate" in body["error"]
    assert int(headers.getRawHeaders("retry-after")[0]) == 60
    code, body, _ = a.call("POST", "/api/network/send",
                           {**send, "message": {"type": "news", "data": "x" * 3000}})
    assert code == 413


def test_cli_private_rotate_and_broadcast(api: Api, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ApiClient, "from_args",
                        classmethod(lambda cls, args: StubClient(api)))
    assert main(["pubsub", "sub", "--private", "club"]) == 0
    out = capsys.readouterr().out.strip()
    kid = api.a.topics.topics()[0]["key_id"]
    assert out == f"subscribed to club (private); new key, key id {kid}"
    assert main(["pubsub", "rotate", "club"]) == 0
    new = api.a.topics.topics()[0]["key_id"]
    assert capsys.readouterr().out.strip() == f"club: new key id {new} (invite the members again)"
    assert main(["pubsub", "topics"]) == 0
    assert f"club (normal, private, key id {new})" in capsys.readouterr().out
    assert main(["pubsub", "broadcast", "hello"]) == 1  # broadcast off in this fixture
    assert "no broadcast topic" in capsys.readouterr().err
