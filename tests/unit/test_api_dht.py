"""The DHT endpoints (/api/network/dht...) through StubTreq, over the fake IDHT."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from aegis_hidden.dht import SignedRecord, record_key
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.interfaces import IDHT
from aegis_hidden.node import DhtService, identity_key
from aegis_hidden.testing import FakeDHT

from .test_api import Api


@pytest.fixture
def api(tmp_path: Path) -> tuple[Api, FakeDHT]:
    a = Api(tmp_path)
    fake = FakeDHT()
    a.a.attach_dht(fake)
    return a, fake


def test_the_fake_and_the_service_provide_idht() -> None:
    assert verifyObject(IDHT, FakeDHT())
    assert IDHT.implementedBy(DhtService)


def test_stats(api: tuple[Api, FakeDHT]) -> None:
    a, fake = api
    fake.contact_list = ["x.onion"]
    fake.lookups_failed = 2
    code, body, _ = a.call("GET", "/api/network/dht")
    assert code == 200
    assert body["routing_table"]["contacts"] == 1 and body["lookups"]["failed"] == 2
    assert body["contacts"] == ["x.onion"]


def test_no_dht_is_503(tmp_path: Path) -> None:
    a = Api(tmp_path)
    code, body, _ = a.call("GET", "/api/network/dht")
    assert code == 503 and "dht.enabled" in body["error"]


def test_get_a_record_by_key_or_by_onion(api: tuple[Api, FakeDHT]) -> None:
    a, fake = api
    publisher = bytes(range(1, 33))
    onion = onion_address_from_public_key(publisher)
    record = SignedRecord(b"identity", b"", 7, 1_800_003_600, bytes(10) + publisher)
    fake.add(record)
    code, body, _ = a.call("GET", f"/api/network/dht/records/{record.key.hex()}")
    assert code == 200
    assert body == {"key": record.key.hex(), "name": "identity", "value": "", "sequence": 7,
                    "expires": 1_800_003_600, "publisher": onion}
    assert record.key == identity_key(onion)
    code, same, _ = a.call("GET", f"/api/network/dht/records/{onion}")
    assert code == 200 and same == body
    code, body, _ = a.call("GET", "/api/network/dht/records/" + "ab" * 32)
    assert code == 404 and body["field"] == "key"
    assert fake.calls[-1] == ("get", bytes.fromhex("ab" * 32))
    code, _, _ = a.call("GET", f"/api/network/dht/records/{onion}?source=network")
    assert code == 200 and fake.calls[-1] == ("get-network", record.key)
    code, body, _ = a.call("GET", f"/api/network/dht/records/{onion}?source=disk")
    assert code == 400 and body["field"] == "source"


@pytest.mark.parametrize("key", ["zz" * 32, "ab" * 31, "nothex.onion", "é" * 64])
def test_a_bad_key_is_400(api: tuple[Api, FakeDHT], key: str) -> None:
    a, _ = api
    code, body, _ = a.call("GET", f"/api/network/dht/records/{key}")
    assert code == 400 and body["field"] == "key"


def test_put_a_record(api: tuple[Api, FakeDHT]) -> None:
    a, fake = api
    code, body, _ = a.call("POST", "/api/network/dht/records",
                           {"name": "topic", "value": "hello", "lifetime": 600})
    assert code == 200 and body["stored_at"] == 1
    assert fake.calls[-1] == ("put", (b"topic", b"hello", 600.0))
    data = base64.b64encode(b"\x00\xff").decode()
    code, body, _ = a.call("POST", "/api/network/dht/records",
                           {"name": "bin", "value_base64": data})
    assert code == 200
    assert fake.records[record_key(fake.publisher, b"bin")].value == b"\x00\xff"


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"name": "identity", "value": "x"}, 400, "name"),
    ({"name": "", "value": "x"}, 400, "name"),
    ({"name": "n" * 65, "value": "x"}, 400, "name"),
    ({"name": "t"}, 400, "value"),
    ({"name": "t", "value": "x", "value_base64": "eA=="}, 400, "value"),
    ({"name": "t", "value_base64": "!!"}, 400, "value_base64"),
    ({"name": "t", "value": "x" * 9000}, 413, None),  # over api.max_body_size already
    ({"name": "t", "value": "x", "lifetime": 10}, 400, "lifetime"),
    ({"name": "t", "value": "x", "lifetime": True}, 400, "lifetime"),
    ({"name": "t", "value": "x", "extra": 1}, 400, "extra"),
])
def test_put_validation(api: tuple[Api, FakeDHT], body: dict[str, object], code: int,
                        field: str | None) -> None:
    a, fake = api
    before = dict(fake.records)
    got, answer, _ = a.call("POST", "/api/network/dht/records", body)
    assert (got, answer["field"]) == (code, field)
    assert fake.records == before  # nothing stored


def test_crawl(api: tuple[Api, FakeDHT]) -> None:
    a, fake = api
    fake.crawled = {"reachable": 3, "unreachable": 1, "seen": 4, "not_asked": 0,
                    "seconds": 1.5, "nodes": ["a", "b", "c"]}
    code, body, _ = a.call("POST", "/api/network/dht/crawl", {"max_nodes": 50})
    assert code == 200 and body["reachable"] == 3
    assert fake.calls[-1] == ("crawl", (50, 8))
    code, body, _ = a.call("POST", "/api/network/dht/crawl", {"max_nodes": 0})
    assert code == 400 and body["field"] == "max_nodes"


def test_send_to_a_peer_found_only_through_the_dht(api: tuple[Api, FakeDHT]) -> None:
    a, fake = api
    target = a.b.local_address

    def resolve(onion: str) -> object:
        from twisted.internet.defer import Deferred

        fake.calls.append(("resolve", onion))
        return Deferred.fromCoroutine(a.a.store.add(onion, origin="peer"))

    fake.resolve = resolve  # type: ignore[method-assign,assignment]
    code, body, _ = a.call("POST", "/api/network/send",
                           {"target": target, "message": {"type": "chat", "data": "hi"}})
    assert code == 202, body
    assert ("resolve", target) in fake.calls
