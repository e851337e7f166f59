"""/network under a burst: readers are never cut off, ``seq`` and ``?since=`` replay,
and the seed spec's field names."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock

from aegis_hidden.api._events import HISTORY_EVENTS

from .test_api_events import TOKEN, Harness, reactor

__all__ = ["reactor"]  # the fixture, shared with test_api_events
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIG = "m" * 900_000


def burst(ws: Harness, n: int = 10) -> None:
    for i in range(n):
        ws.bus.emit("message_received", peer="p.onion", id=f"{i:032x}",
                    message={"type": "chat", "data": BIG})


def test_reading_clients_survive_a_burst_of_ten_900kb_messages(
        reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    clients = [ws.connect(AUTH) for _ in range(3)]
    servers = list(ws.factory.clients)
    burst(ws)  # 9 MB queued to each client before it can read any of it
    for _ in range(3 * ws.factory.max_strikes):
        reactor.advance(ws.factory.check_interval)
        ws.flush()  # the clients read
    transports: list[Any] = [s.transport for s in servers]
    assert not any(t.disconnecting or t.disconnected for t in transports)
    assert len(ws.factory.clients) == 3
    for c in clients:
        got = [m for m in c.messages if m["type"] == "message_received"]
        assert len(got) == 10
        assert [m["seq"] for m in got] == list(range(1, 11))
        assert all(m["message"]["data"] == BIG for m in got)


def test_a_client_resumes_with_since(reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    first = ws.connect(AUTH)
    ws.bus.emit("peer_connected", peer="p.onion", transport="memory")
    ws.flush()
    last = first.messages[-1]["seq"]
    first.sendClose()
    ws.flush()
    burst(ws)  # missed while away
    again = ws.connect(query=f"?access_token={TOKEN}&since={last}")
    assert again.opened
    assert again.messages[0] == {"type": "hello", "node": "node.onion", "seq": last + 10}
    replayed = again.messages[1:]
    assert [m["seq"] for m in replayed] == list(range(last + 1, last + 11))
    assert all(m["type"] == "message_received" and m["message"]["data"] == BIG
               for m in replayed)
    ws.bus.emit("peer_disconnected", peer="p.onion")
    ws.flush()
    assert again.messages[-1]["seq"] == last + 11  # then live, in order


def test_since_older_than_the_ring_reports_the_gap(reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    for i in range(HISTORY_EVENTS + 5):
        ws.bus.emit("delivery_state", id=str(i), state="sent")
    client = ws.connect(AUTH, query="?since=0")
    gap = client.messages[1]
    assert gap == {"type": "history_gap", "since": 0, "oldest": 6, "lost": 5}
    assert [m["seq"] for m in client.messages[2:]] == list(range(6, HISTORY_EVENTS + 6))


def test_history_is_bounded_in_bytes(reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    ws.factory.history_bytes = 3_000_000
    burst(ws)
    assert sum(len(t) for _, t in ws.factory.history) <= 3_000_000
    assert [s for s, _ in ws.factory.history] == [8, 9, 10]


def test_bad_since_is_refused(reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    assert not ws.connect(AUTH, query="?since=-1").opened


def test_events_carry_the_seed_field_names(reactor: MemoryReactorClock) -> None:
    ws = Harness(reactor)
    client = ws.connect(query=f"?access_token={TOKEN}")
    ws.bus.emit("peer_connected", peer="p.onion", transport="memory")
    ws.bus.emit("message_received", peer="p.onion", id="0" * 32,
                message={"type": "chat", "data": "hi"})
    ws.flush()
    connected, received = client.messages[1:]
    assert connected["peer_id"] == connected["peer"] == "p.onion"
    assert received["peer_id"] == "p.onion"
    assert received["message"] == {"type": "chat", "data": "hi"}
    event: dict[str, Any] = {}
    ws.bus.subscribe(lambda e: event.update(e))
    ws.bus.emit("peer_connected", peer="q.onion")
    assert "seq" not in event  # the bus's own events are not changed for other layers
