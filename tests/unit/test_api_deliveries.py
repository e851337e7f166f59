"""GET /api/network/messages/{id} after a restart: settled states are kept, bounded
by age."""

from __future__ import annotations

from pathlib import Path

from treq.testing import StubTreq

from aegis_hidden.api import TokenChecker, build_root
from aegis_hidden.api._deliveries import KEEP_SECONDS
from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import result_of

from .test_api import Api


def _restart_a(api: Api, tmp_path: Path) -> None:
    """A new node core (and API tree) on A's database: nothing kept in memory."""
    api.a.stopService()
    bus = EventBus(now=api.clock.seconds)
    core = NodeCore(Config(), None, str(tmp_path), bus, api.clock,
                    db=InlineSQLite(str(tmp_path / "a.db")), local_address=api.a.local_address)
    core.attach_session_factory(api.net.node(api.a.local_address + ".restarted"))
    core.startService()
    result_of(core.when_ready())
    api.a = core
    api.stub = StubTreq(build_root(core, TokenChecker(api.token_path), api.max_body))


def _send(api: Api) -> str:
    b = api.b.local_address
    assert api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})[0] == 200
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": b, "message": {"type": "chat", "data": 1}})
    assert code == 202 and reply["state"] == "acknowledged"
    msg_id: str = reply["id"]
    return msg_id


def test_acknowledged_state_survives_a_restart(tmp_path: Path) -> None:
    api = Api(tmp_path)
    msg_id = _send(api)
    _restart_a(api, tmp_path)
    assert api.a.messenger.state(msg_id) is None  # the messenger forgot it
    code, reply, _ = api.call("GET", f"/api/network/messages/{msg_id}")
    assert (code, reply) == (200, {"id": msg_id, "state": "acknowledged"})


def test_kept_states_are_bounded_by_age(tmp_path: Path) -> None:
    api = Api(tmp_path)
    msg_id = _send(api)
    _restart_a(api, tmp_path)
    api.clock.advance(KEEP_SECONDS + 1)
    assert api.call("GET", f"/api/network/messages/{msg_id}")[0] == 404
    second = "e" * 32  # writing a new state deletes rows past the bound
    api.a.events.emit("delivery_state", id=second, peer=api.b.local_address,
                      state="expired", attempts=3)
    assert api.call("GET", f"/api/network/messages/{second}")[1]["state"] == "expired"
    import sqlite3
    conn = sqlite3.connect(tmp_path / "a.db")
    ids = {row[0] for row in conn.execute("SELECT msg_id FROM api_delivery_states")}
    conn.close()
    assert ids == {second}


def test_unknown_message_is_still_404(tmp_path: Path) -> None:
    api = Api(tmp_path)
    assert api.call("GET", "/api/network/messages/" + "f" * 32)[0] == 404
    assert api.call("GET", "/api/network/messages/not-an-id")[0] == 404
