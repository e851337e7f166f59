"""Whatever bytes a peer sends, a session only ever ends with a typed reason."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import Closed, CloseReason, Session, SessionParams, State
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import encode_clear

NOW = 1_800_000_000.0
P = SessionParams(cell_size=256)


@pytest.fixture(scope="module")
def pair_ids() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW, with_mldsa=False), memory_identity(NOW, with_mldsa=False)


def _check(s: Session) -> None:
    events = s.events()
    if s.closed:
        assert s.close_reason is not None and isinstance(s.close_reason.reason, CloseReason)
        assert isinstance(events[-1], Closed)
    else:
        assert s.state is not State.ESTABLISHED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=600), max_size=4))
def test_responder_survives_arbitrary_bytes(pair_ids: tuple[NodeIdentity, NodeIdentity],
                                            chunks: list[bytes]) -> None:
    r = Session(pair_ids[1], P, initiator=False, clock=lambda: NOW)
    for chunk in chunks:
        r.receive_data(chunk)
    _check(r)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=248), more=st.booleans())
def test_responder_survives_well_framed_garbage(pair_ids: tuple[NodeIdentity, NodeIdentity],
                                                body: bytes, more: bool) -> None:
    # Valid clear cells carrying garbage reach the protobuf and field checks.
    r = Session(pair_ids[1], P, initiator=False, clock=lambda: NOW)
    r.receive_data(encode_clear(256, int(more), body))
    _check(r)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=1200))
def test_initiator_survives_arbitrary_replies(pair_ids: tuple[NodeIdentity, NodeIdentity],
                                              garbage: bytes) -> None:
    i = Session(pair_ids[0], P, initiator=True, clock=lambda: NOW, peer_address=pair_ids[1].onion)
    i.start()
    i.data_to_send()
    i.receive_data(garbage)
    _check(i)
    i.connection_lost()
    assert i.closed and i.close_reason is not None
