"""schemathesis against the OpenAPI document a running node serves (real tor).

One node joins the private Tor network with its management API on; schemathesis
loads ``/api/openapi.json`` from it (the served document, not docs/openapi.json)
and sends a bounded number of generated requests per operation, valid and
invalid, with the node's bearer token. Every response must be free of 5xx and
conform to the document (status code, content type, headers, body schema), and
schema-valid requests must not be refused nor invalid ones accepted: 0 failures.
Driven with blocking HTTP (no reactor in this file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from aegis_hidden.api import openapi_json
from aegis_hidden.testing import NodeProcess, TorNetwork, free_ports, prepare_node, start_node, wait_for

from ..unit.test_api_schemathesis import LABELS
from .test_api_tor import _api_port, api_up

pytestmark = pytest.mark.integration

#: generated requests per operation (bounded, so the run's time is too)
EXAMPLES = 25
#: the WebSockets (the event stream, a stream's bytes): a valid request upgrades
WEBSOCKETS = {"GET /network", "GET /network/streams/{id}"}
#: operations that dial the peer named in the body and answer a documented 502 when
#: tor cannot reach it (a generated onion is nobody's): a 5xx schemathesis would count
#: as a server error, so such an answer is checked against the document without that
UNREACHABLE = {"POST /api/network/streams"}


@pytest.fixture(scope="module")
def api_node(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[NodeProcess]:
    root: Path = tmp_path_factory.mktemp("schemathesis-node")
    port = free_ports(1)[0]
    node = prepare_node(tor_network, "s", root / "s",
                        extra={"api": {"enabled": True, "listen_address": f"127.0.0.1:{port}"}})
    start_node(node, api=True)
    try:
        wait_for(lambda: node.tor_state().get("ready"), 240, "the node ready", [node])
        wait_for(lambda: api_up(node), 60, "the node's API", [node])
        yield node
    finally:
        node.stop()


def _base_url(node: NodeProcess) -> str:
    return f"http://127.0.0.1:{_api_port(node)}"


def _auth(node: NodeProcess) -> dict[str, str]:
    token = (node.data_dir / "api_token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served_schema(api_node: NodeProcess) -> Any:
    """The OpenAPI document exactly as the node serves it."""
    schema = schemathesis.openapi.from_url(_base_url(api_node) + "/api/openapi.json",
                                           headers=_auth(api_node), timeout=30)
    assert schema.raw_schema == json.loads(openapi_json())
    return schema


@pytest.mark.parametrize("label", LABELS)
def test_served_openapi_document_holds(served_schema: Any, api_node: NodeProcess,
                                       label: str) -> None:
    # One operation per test (schemathesis.pytest.from_fixture does not run under
    # pytest 9: it reads a private attribute of the test item). schemathesis' default
    # checks: no 5xx, status code / content type / headers / body conform to the
    # document, valid data accepted and invalid data refused, the token not ignored.
    operation = served_schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case[Any]) -> None:
        if label in UNREACHABLE:
            response = case.call(base_url=_base_url(api_node), headers=_auth(api_node),
                                 timeout=60)
            if response.status_code == 502:
                assert response.json()["error"].startswith("could not reach"), response.text
                case.validate_response(response, excluded_checks=[not_a_server_error])
            else:
                case.validate_response(response)
            return
        if label not in WEBSOCKETS:
            case.call_and_validate(base_url=_base_url(api_node), headers=_auth(api_node),
                                   timeout=30)
            return
        # A valid upgrade is answered 101 Switching Protocols, which schemathesis'
        # checks read as neither success nor refusal: check the handshake itself, and
        # every other answer (401, 400, 426...) with the document as usual.
        response = case.call(base_url=_base_url(api_node), headers=_auth(api_node), timeout=30)
        if response.status_code == 101:
            headers = {k.lower(): v for k, v in response.headers.items()}
            assert headers["upgrade"][0].lower() == "websocket"
            assert headers.get("sec-websocket-accept"), headers
            return
        case.validate_response(response)

    run()
