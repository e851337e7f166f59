"""GET /api/network/peers in pages, with filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.testing import result_of

from .test_api import Api, onion


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def _all_pages(api: Api, query: str) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        q = query + (f"&cursor={cursor}" if cursor else "")
        code, reply, _ = api.call("GET", f"/api/network/peers?{q}")
        assert code == 200, reply
        pages += 1
        ids += [p["id"] for p in reply["peers"]]
        cursor = reply["next_cursor"]
        if cursor is None:
            return ids, pages


def test_pages_cover_every_peer_once_in_order(api: Api) -> None:
    peers = sorted(onion() for _ in range(25))
    for p in peers:
        result_of(api.a.store.add(p))
    code, first, _ = api.call("GET", "/api/network/peers?limit=10")
    assert code == 200 and len(first["peers"]) == 10
    assert first["next_cursor"] == first["peers"][-1]["id"]
    ids, pages = _all_pages(api, "limit=10")
    assert ids == peers and pages == 3


def test_default_page_is_bounded(api: Api) -> None:
    from aegis_hidden.api._web import DEFAULT_PAGE
    for _ in range(DEFAULT_PAGE + 3):
        result_of(api.a.store.add(onion()))
    code, reply, _ = api.call("GET", "/api/network/peers")
    assert code == 200 and len(reply["peers"]) == DEFAULT_PAGE
    assert reply["next_cursor"] is not None


def test_filters_status_and_transport(api: Api) -> None:
    blocked = onion()
    plain = [onion() for _ in range(3)]
    with_i2p = onion()
    for p in plain:
        result_of(api.a.store.add(p))
    result_of(api.a.store.add(with_i2p, i2p_destination="a" * 51 + "q.b32.i2p"))
    result_of(api.a.store.block(blocked, "spam", None))
    ids, _ = _all_pages(api, "status=blocked&limit=1")
    assert ids == [blocked]
    ids, _ = _all_pages(api, "status=new")
    assert sorted(ids) == sorted([*plain, with_i2p])
    ids, _ = _all_pages(api, "transport=i2p")
    assert ids == [with_i2p]
    ids, _ = _all_pages(api, "transport=tor&status=new&limit=2")
    assert sorted(ids) == sorted([*plain, with_i2p])


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
    ("limit=-1", "limit"), ("status=gone", "status"), ("transport=smtp", "transport"),
    ("cursor=", "cursor"), ("colour=red", "colour"), ("limit=1&limit=2", "limit")])
def test_bad_paging_parameters_are_400(api: Api, query: str, field: str) -> None:
    code, reply, _ = api.call("GET", f"/api/network/peers?{query}")
    assert code == 400 and reply["field"] == field, reply


def test_document_describes_paging() -> None:
    from aegis_hidden.api import DOCUMENT
    op: dict[str, Any] = DOCUMENT["paths"]["/api/network/peers"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"limit", "cursor", "status",
                                                     "transport"}
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert "next_cursor" in schema["required"]
