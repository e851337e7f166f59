"""The demo's pieces, in memory: its plan, its lines, its WebSocket client."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from aegis_hidden.api import Authorizer, EventsFactory, TokenChecker
from aegis_hidden.cli import main
from aegis_hidden.cli._demo import (
    EventStream,
    StepFailed,
    _matrix,
    audit_line,
    bootstrap_plan,
    follower_factory,
    mixing_line,
    not_shown_line,
    parse_metrics,
)
from aegis_hidden.events import EventBus
from aegis_hidden.testing import NodeProcess

TOKEN = "t0ken-t0ken-t0ken-t0ken"


def test_bootstrap_plan_first_knows_nobody_others_only_the_first() -> None:
    plan = bootstrap_plan(["node-a", "node-b", "node-c", "node-d"])
    assert plan == {"node-a": [], "node-b": ["node-a"], "node-c": ["node-a"],
                    "node-d": ["node-a"]}


def test_parse_metrics_keeps_unlabelled_samples() -> None:
    text = ("# HELP aegis_mixing_cells_sent_total Cells sent.\n"
            "# TYPE aegis_mixing_cells_sent_total counter\n"
            "aegis_mixing_cells_sent_total 1234\n"
            "aegis_mixing_loop_rtt_seconds_bucket{le=\"1\"} 3\n"
            "aegis_mixing_loop_rtt_seconds_sum 2.5\n"
            "aegis_broken notanumber\n"
            "aegis_with_timestamp 7 1700000000\n\n")
    assert parse_metrics(text) == {"aegis_mixing_cells_sent_total": 1234.0,
                                   "aegis_mixing_loop_rtt_seconds_sum": 2.5,
                                   "aegis_with_timestamp": 7.0}


def test_mixing_line_reports_cover_per_link_and_loops() -> None:
    mixing = {"profile": "balanced", "cover_rate": 2.0, "bytes_per_second_per_link": 1992.0}
    metrics = {"aegis_mixing_cells_sent_total": 400, "aegis_mixing_cover_cells_sent_total": 300,
               "aegis_mixing_loops_sent_total": 5, "aegis_mixing_loops_returned_total": 4,
               "aegis_mixing_loops_lost_total": 0, "aegis_mixing_loop_rtt_seconds_sum": 4.8}
    line = mixing_line("node-a", mixing, metrics, 2)
    assert line == ("node-a: profile balanced (λ 2 cells/s per link, 1992 B/s): 300 cover "
                    "cells sent (75% of 400 cells), 150 per link on 2 links; loops 5 sent, "
                    "4 back, 0 lost, mean round trip 1.20s")


def test_mixing_line_before_any_cell_or_link() -> None:
    line = mixing_line("node-b", {}, {}, 0)
    assert "0 cover cells sent (no cells yet), - per link on 0 links" in line
    assert "round trip" not in line


def test_audit_line_passed_and_failed(tmp_path: Path) -> None:
    checks = [{"name": "cells", "status": "pass"}, {"name": "timing", "status": "fail"},
              {"name": "canary", "status": "skipped"}, {"name": "bursts", "status": "pass"}]
    failed = {"cells": 321, "seconds": 45,
              "report": {"passed": False, "failed": ["timing"], "checks": checks}}
    line = audit_line("node-a", failed, tmp_path / "audit-node-a.html")
    assert line == (f"privacy audit of node-a's own traffic (321 cells in 45s): FAILED "
                    f"(timing) (pass: cells, bursts; fail: timing; skipped: canary); "
                    f"report: {tmp_path}/audit-node-a.html")
    passed = {"cells": 9, "seconds": 10,
              "report": {"passed": True, "failed": [], "checks": checks[:1]}}
    assert ": PASSED (pass: cells);" in audit_line("node-a", passed, tmp_path / "r.html")


def test_not_shown_line_asks_the_node() -> None:
    line = not_shown_line(404, ["aegis_mixing_cells_sent_total"])
    assert line == ("topics (pub/sub) and offline mailboxes: not in the node yet (a message "
                    "to a node that is away waits in the sender's outbox and is retried)")
    # topics answered 200: the demo showed them
    line = not_shown_line(200, ["aegis_mailbox_deposited_total"])
    assert line == "offline mailboxes: in the node, not shown by this demo yet"
    assert not_shown_line(200, []).startswith("offline mailboxes: not in the node yet")
    line = not_shown_line(503, [])
    assert line.startswith("offline mailboxes: not in the node yet")
    assert line.endswith("; topics (pub/sub, off in this configuration): in the node, "
                         "not shown by this demo yet")


def test_matrix_from_the_nodes_status_files(tmp_path: Path) -> None:
    nodes = [NodeProcess(name, tmp_path / name, f"{name}.onion", 1) for name in "abc"]
    for n in nodes:
        n.data_dir.mkdir()
    peers_a = {"b.onion": {"reachable": True, "last_direction": None},
               "c.onion": {"reachable": True, "last_direction": "outbound", "rtt": 1.5}}
    nodes[0].status_file.write_text(json.dumps({"peers": peers_a}))
    nodes[1].status_file.write_text(json.dumps({"peers": {"a.onion": {"reachable": False}}}))
    lines, complete = _matrix(nodes)
    assert not complete
    assert lines == ["  a reached: b (it dialled), c (outbound, ping 1.50s)",
                     "  b reached: (nobody yet)", "  c reached: (nobody yet)"]


def test_demo_refuses_a_node_count_without_a_third_node(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--nodes", "2", "--dir", str(tmp_path)]) != 0
    assert "--nodes must be from 3 to 6" in capsys.readouterr().err
    assert main(["demo", "--audit-seconds", "5", "--dir", str(tmp_path)]) != 0
    assert "--audit-seconds" in capsys.readouterr().err
    assert not (tmp_path / "devnet").exists()  # nothing started


# -- the WebSocket client against the node's real /network resource, joined by iosim ------

@pytest.fixture
def reactor() -> Iterator[MemoryReactorClock]:
    """autobahn's timers go through txaio: point them at a memory reactor."""
    clock = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = clock
    yield clock
    config.loop = previous


def _connect(reactor: MemoryReactorClock, bus: EventBus, token: str,
             sink: queue.Queue[dict[str, Any]]) -> iosim.IOPump:
    auth = Authorizer(TokenChecker(token=TOKEN), lambda: None)
    server_factory = EventsFactory(bus, auth, "a.onion", reactor=reactor)
    server_factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    server = server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    factory = follower_factory("ws://127.0.0.1:8470/network", token, sink, reactor)
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8470))
    pump: iosim.IOPump = iosim.connect(server, iosim.makeFakeServer(server),
                                       client, iosim.makeFakeClient(client))
    pump.flush()
    return pump


def _stream(sink: queue.Queue[dict[str, Any]]) -> EventStream:
    stream = EventStream()
    stream.queue = sink
    return stream


def test_follower_receives_the_events_of_the_node(reactor: MemoryReactorClock) -> None:
    bus = EventBus(now=reactor.seconds)
    sink: queue.Queue[dict[str, Any]] = queue.Queue()
    pump = _connect(reactor, bus, TOKEN, sink)
    bus.emit("peer_connected", peer="b.onion", transport="tor")
    bus.emit("message_received", peer="b.onion", id="7" * 32,
             message={"type": "chat", "data": "hi"})
    pump.flush()
    stream = _stream(sink)
    assert stream.wait(lambda e: e["type"] == "hello", 0.1, "hello")["node"] == "a.onion"
    got = stream.wait(lambda e: e.get("id") == "7" * 32, 0.1, "the message")
    assert got["type"] == "message_received" and got["message"]["data"] == "hi"
    # events already taken from the queue are found again
    assert stream.wait(lambda e: e["type"] == "peer_connected", 0.1, "x")["peer"] == "b.onion"
    with pytest.raises(StepFailed, match="no another message on the WebSocket"):
        stream.wait(lambda e: e.get("id") == "8" * 32, 0.05, "another message")


def test_follower_with_a_wrong_token_reports_the_close(reactor: MemoryReactorClock) -> None:
    bus = EventBus(now=reactor.seconds)
    sink: queue.Queue[dict[str, Any]] = queue.Queue()
    pump = _connect(reactor, bus, "wrong-token-wrong-token", sink)
    pump.flush()
    with pytest.raises(StepFailed, match="the WebSocket closed before hello"):
        _stream(sink).wait(lambda e: e["type"] == "hello", 1, "hello")


def test_unreadable_event_is_kept_as_such(reactor: MemoryReactorClock) -> None:
    sink: queue.Queue[dict[str, Any]] = queue.Queue()
    factory = follower_factory("ws://127.0.0.1:8470/network", TOKEN, sink, reactor)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8470))
    proto.onMessage(b"not json", False)
    proto.onMessage(b"[1, 2]", False)
    assert [sink.get_nowait()["type"] for _ in range(2)] == ["unreadable", "unreadable"]


class _FakeNet:
    """A private network that never bootstraps (or is interrupted while it tries)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started = False
        self.stopped = False

    def setup(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def wait_bootstrapped(self, timeout: float) -> float:
        raise KeyboardInterrupt


def test_started_network_is_known_to_the_teardown_before_its_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis_hidden.cli import _demo

    monkeypatch.setattr(_demo, "TorNetwork", _FakeNet)
    started: list[Any] = []
    with pytest.raises(KeyboardInterrupt):
        _demo._start_network(tmp_path, 1.0, started)
    assert len(started) == 1 and started[0].started  # run() stops it in its finally
