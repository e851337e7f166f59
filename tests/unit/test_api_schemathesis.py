"""schemathesis against the served OpenAPI document, in memory (the unit ring).

The same check as ``tests/integration/test_api_schemathesis.py`` without tor: the
real resource tree (``build_root``) over a node core on a fake network, driven
through StubTreq. The document is the one ``GET /api/openapi.json`` serves;
every generated request's response is validated by schemathesis' default
checks (no 5xx, status code, content type, headers and body conform; valid data
accepted, invalid data refused). Bounded: a few examples per operation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import ignored_auth
from treq.testing import StubTreq
from twisted.internet.task import Clock

from aegis_hidden import identity
from aegis_hidden.api import TokenChecker, build_root, load_or_create_token, openapi_json
from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore, PubSubService, StreamService
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeDHT, FakeNetwork, result_of

BASE = "http://127.0.0.1:8470"
EXAMPLES = 10


def _b32_i2p(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").lower().rstrip("=") + ".b32.i2p"


#: The document's address format names what a pattern cannot say (the onion's
#: checksum and version byte): schemathesis draws real addresses for it.
schemathesis.openapi.format("aegis-peer-address", st.one_of(
    st.builds(onion_address_from_public_key, st.binary(min_size=32, max_size=32)),
    st.builds(_b32_i2p, st.binary(min_size=32, max_size=32))))


class MemoryApi:
    def __init__(self, root: Path) -> None:
        clock = Clock()
        address = onion_address_from_public_key(bytes(range(32)))
        self.core = NodeCore(Config(), None, str(root), EventBus(now=clock.seconds), clock,
                             db=InlineSQLite(str(root / "a.db")), local_address=address)
        self.core.attach_session_factory(FakeNetwork().node(address))
        self.core.attach_dht(FakeDHT())  # the DHT endpoints answer from the fake
        self.core.startService()
        result_of(self.core.when_ready())
        # the topic endpoints run the real pub/sub service (no peers: nothing leaves)
        PubSubService(self.core, Config().pubsub, identity.create(root / "identity", 0),
                      clock).startService()
        StreamService(self.core)  # the stream endpoints (no peers: opens fail with 502)
        token, _ = load_or_create_token(root / "api_token")
        self.auth = {"Authorization": f"Bearer {token}"}
        self.stub = StubTreq(build_root(self.core, TokenChecker(root / "api_token"), 4096))

    def send(self, prepared: requests.PreparedRequest) -> schemathesis.Response:
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        d = self.stub.request(prepared.method, prepared.url,  # type: ignore[attr-defined]
                              headers={k: v for k, v in prepared.headers.items()
                                       if k.lower() != "content-length"},  # treq sets it
                              data=body)
        self.stub.flush()
        response = result_of(d)
        d2 = response.content()
        self.stub.flush()
        content = result_of(d2)
        headers = {k.decode().lower(): [v.decode("latin-1") for v in vs]
                   for k, vs in response.headers.getAllRawHeaders()}
        return schemathesis.Response(status_code=response.code, headers=headers, content=content,
                                     request=prepared, elapsed=0.0, verify=False)


@pytest.fixture(scope="module")
def memory_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryApi]:
    api = MemoryApi(tmp_path_factory.mktemp("schemathesis-memory"))
    yield api
    api.core.stopService()


@pytest.fixture(scope="module")
def memory_schema(memory_api: MemoryApi) -> Any:
    prepared = requests.Request("GET", BASE + "/api/openapi.json",
                                headers=memory_api.auth).prepare()
    served = memory_api.send(prepared)
    assert served.status_code == 200
    assert json.loads(served.content) == json.loads(openapi_json())
    return schemathesis.openapi.from_dict(json.loads(served.content))


def _check(api: MemoryApi, case: schemathesis.Case[Any]) -> None:
    kwargs = case.as_transport_kwargs(base_url=BASE, headers=api.auth)
    request = requests.Request(
        method=kwargs["method"], url=kwargs["url"], headers=kwargs.get("headers"),
        params=kwargs.get("params"), json=kwargs.get("json"), data=kwargs.get("data"),
        cookies=kwargs.get("cookies")).prepare()
    response = api.send(request)
    # ignored_auth sends its own probe over the network: the token check has its own
    # tests (test_api.py, every endpoint without / with a wrong token), and the
    # integration test runs this check against a real node.
    case.validate_response(response, headers=api.auth, transport_kwargs=kwargs,
                           excluded_checks=[ignored_auth])


#: Every operation of the document the code serves (the fixture checks the node
#: serves exactly this one), one test each.
LABELS = [cast(Any, r).ok().label for r in schemathesis.openapi.from_dict(
    json.loads(openapi_json())).get_all_operations()]
#: Operations the in-memory ring cannot drive (the integration test does).
NOT_IN_MEMORY = {
    "GET /network": "a WebSocket upgrade needs a real connection; StubTreq cannot hold one",
    "GET /network/streams/{id}": "a WebSocket too (tests/integration/test_streams.py)",
}


@pytest.mark.parametrize("label", LABELS)
def test_served_openapi_document_holds_in_memory(memory_schema: Any, memory_api: MemoryApi,
                                                 label: str) -> None:
    # One operation per test (schemathesis.pytest.from_fixture does not run under
    # pytest 9: it reads a private attribute of the test item).
    if label in NOT_IN_MEMORY:
        pytest.skip(NOT_IN_MEMORY[label])
    operation = memory_schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case[Any]) -> None:
        _check(memory_api, case)

    run()
