"""The emergency endpoints (/api/node/...) and the send path's backpressure answer."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

from aegis_hidden.mixing import PoissonScheduler

from .test_api import Api


@pytest.fixture
def api(tmp_path: Path) -> Api:
    a = Api(tmp_path)
    a.call("POST", "/api/network/peers", {"action": "add", "peer_address": a.b.local_address})
    return a


def types(api: Api) -> list[str]:
    return [e["type"] for e in api.a_events]


def test_isolate_resume_round_trip(api: Api) -> None:
    b = api.b.local_address
    assert api.call("POST", "/api/network/send", {"target": b, "message": {"type": "x"}}
                    )[1]["state"] == "acknowledged"
    code, reply, _ = api.call("POST", "/api/node/isolate", {"reason": "under attack"})
    assert code == 200 and reply["changed"] is True and reply["isolated"] is True
    assert reply["isolation_reason"] == "under attack" and "node_isolated" in types(api)
    assert api.call("GET", "/api/network/status")[1]["emergency"]["isolated"] is True
    assert api.call("GET", "/api/node/emergency")[1]["isolated"] is True
    code, sent, _ = api.call("POST", "/api/network/send", {"target": b, "message": {"type": "y"}})
    assert code == 202 and sent["state"] == "queued"  # kept in the outbox, not refused
    assert api.call("POST", "/api/node/isolate", {})[1]["changed"] is False
    code, reply, _ = api.call("POST", "/api/node/resume", {})
    assert code == 200 and reply["changed"] is True and reply["isolated"] is False
    assert api.call("GET", f"/api/network/messages/{sent['id']}")[1]["state"] == "acknowledged"


def test_throttle_sets_and_lifts_the_cap(api: Api) -> None:
    code, reply, _ = api.call("POST", "/api/node/throttle", {"bytes_per_second": 8192})
    assert code == 409  # no cell scheduler in this node
    sched = PoissonScheduler(api.clock, random.Random(3), rate=5.0)
    api.a.emergency.attach_scheduler(sched, 996)
    code, reply, _ = api.call("POST", "/api/node/throttle", {"bytes_per_second": 8192})
    assert code == 200 and reply["throttle"]["bytes_per_second"] == 8192
    assert sched.throttle is not None and sched.throttle.rate == 8192
    assert api.a_events[-1] == {"type": "node_throttled", "time": 0.0, "bytes_per_second": 8192}
    code, reply, _ = api.call("POST", "/api/node/throttle", {"bytes_per_second": None})
    assert code == 200 and reply["throttle"]["bytes_per_second"] is None


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/node/throttle", {}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": -5}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": "fast"}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": 2.5}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": True}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": 100}, "bytes_per_second"),
    ("/api/node/throttle", {"bytes_per_second": 8192, "burst": 1}, "burst"),
    ("/api/node/isolate", {"reason": 5}, "reason"),
    ("/api/node/isolate", {"reason": "x" * 201}, "reason"),
    ("/api/node/isolate", {"reason": "a\nb"}, "reason"),
    ("/api/node/isolate", {"why": "x"}, "why"),
    ("/api/node/resume", {"now": True}, "now"),
    ("/api/node/transports/tor/restart", {"hard": True}, "hard"),
])
def test_bad_bodies_are_typed_400(api: Api, path: str, body: dict[str, Any],
                                  field: str) -> None:
    api.a.emergency.attach_scheduler(PoissonScheduler(api.clock, random.Random(1), 5.0), 996)
    code, reply, _ = api.call("POST", path, body)
    assert code == 400 and reply["field"] == field, reply
    assert api.a.emergency.isolated is False
    assert api.a.emergency.status()["throttle"]["bytes_per_second"] is None


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b'{"bytes_per_second": NaN}'])
def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    code, reply, _ = api.call("POST", "/api/node/throttle", raw=raw)
    assert code == 400 and "error" in reply


class Provider:
    def __init__(self, name: str) -> None:
        self.name = name
        self.restarted: list[str] = []

    def restart(self, why: str) -> bool:
        self.restarted.append(why)
        return True

    def when_ready(self) -> Deferred[None]:
        return succeed(None)

    def state(self) -> Mapping[str, Any]:
        return {"ready": True}


def test_restart_transport(api: Api) -> None:
    code, reply, _ = api.call("POST", "/api/node/transports/i2p/restart", {})
    assert code == 404 and "running: none" in reply["error"]
    code, reply, _ = api.call("POST", "/api/node/transports/loki/restart", {})
    assert code == 404 and reply["field"] == "transport"
    tor = Provider("tor")
    api.a.add_transport(tor)  # type: ignore[arg-type]
    code, reply, _ = api.call("POST", "/api/node/transports/tor/restart", {})
    assert (code, reply) == (202, {"transport": "tor", "restarting": True})
    assert tor.restarted and "transport_restarting" in types(api)
    code, _, headers = api.call("GET", "/api/node/transports/tor/restart")
    assert code == 405 and headers.getRawHeaders("allow") == ["POST"]


def test_send_over_a_full_queue_is_503_with_retry_after(api: Api) -> None:
    b = api.b.local_address
    api.call("POST", "/api/network/send", {"target": b, "message": {"type": "x"}})
    link = api.a.pool.link(b)
    assert link is not None
    link.raw.queued = lambda: 10_000  # type: ignore[attr-defined]  # our backlog
    api.a.messenger.link_rate = lambda: 2.0  # cells/s, as a balanced link
    before = api.a.messenger.outbox_size()
    code, reply, headers = api.call("POST", "/api/network/send",
                                    {"target": b, "message": {"type": "y"}})
    assert code == 503 and reply["field"] == "target" and "send queue" in reply["error"]
    retry = int(headers.getRawHeaders("retry-after")[0])
    assert 1 <= retry <= 300
    assert api.a.messenger.outbox_size() == before  # nothing stored
    assert api.a.metrics.counters["sends_refused_backpressure"] == 1
    assert api.a.store.require(b).reputation >= 0.5  # and the peer was not charged


def test_cli_node_commands(api: Api, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from aegis_hidden.cli import main
    from aegis_hidden.cli._api import ApiClient

    from .test_api_cli import StubClient

    monkeypatch.setattr(ApiClient, "from_args", classmethod(lambda cls, args: StubClient(api)))
    assert main(["node", "isolate", "--reason", "drill"]) == 0
    assert capsys.readouterr().out.strip() == ("node isolated: isolated (drill); "
                                               "bandwidth cap: none")
    assert api.a.emergency.isolated
    assert main(["node", "emergency"]) == 0
    assert capsys.readouterr().out.startswith("isolated (drill)")
    assert main(["node", "resume"]) == 0
    assert capsys.readouterr().out.startswith("node resumed: not isolated")
    assert main(["node", "throttle", "50k"]) == 1  # no cell scheduler: the API's 409
    assert "API said 409" in capsys.readouterr().err
    api.a.emergency.attach_scheduler(PoissonScheduler(api.clock, random.Random(2), 5.0), 996)
    assert main(["node", "throttle", "50k"]) == 0
    assert capsys.readouterr().out.strip() == "not isolated; bandwidth cap: 50000 bytes/s"
    assert main(["node", "throttle", "0"]) == 0
    assert capsys.readouterr().out.strip().endswith("bandwidth cap: none")
    with pytest.raises(SystemExit):
        main(["node", "throttle", "fast"])
    assert "not a whole number" in capsys.readouterr().err
    assert main(["node", "restart-transport", "tor"]) == 1
    assert "API said 404" in capsys.readouterr().err
    api.a.add_transport(Provider("tor"))  # type: ignore[arg-type]
    assert main(["node", "restart-transport", "tor"]) == 0
    assert capsys.readouterr().out.startswith("tor restarting")
