"""``i2p:`` endpoint strings and the shared lazy session behind them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor

from aegis_hidden.config import PrivacyError
from aegis_hidden.i2p import PrivateKey, SAMStreamClientEndpoint, SAMStreamServerEndpoint
from aegis_hidden.i2p._strports import LazySession
from aegis_hidden.testing import FakeSAMBridge, result_of

B32 = "a" * 52 + ".b32.i2p"


def test_client_string_makes_a_sam_stream_client_endpoint() -> None:
    ep = clientFromString(MemoryReactor(), f"i2p:{B32}:port=80:samPort=7000:tunnelLength=1")
    assert isinstance(ep, SAMStreamClientEndpoint)


def test_server_string_makes_a_sam_stream_server_endpoint(tmp_path: Path) -> None:
    ep = serverFromString(MemoryReactor(), f"i2p:keyfile={tmp_path / 'k'}:samPort=7000")
    assert isinstance(ep, SAMStreamServerEndpoint)


@pytest.mark.parametrize("text", ["i2p:example.com", "i2p:127.0.0.1:port=80",
                                  "i2p:" + "a" * 56 + ".onion",
                                  f"i2p:{B32}:samHost=10.0.0.1", f"i2p:{B32}:samHost=sam.example"])
def test_leaky_client_strings_are_refused(text: str) -> None:
    with pytest.raises(PrivacyError):
        clientFromString(MemoryReactor(), text)


def test_bad_strings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown i2p endpoint option"):
        clientFromString(MemoryReactor(), f"i2p:{B32}:colour=blue")
    with pytest.raises(ValueError, match="keyfile"):
        serverFromString(MemoryReactor(), "i2p:samPort=7000")


def test_lazy_session_stores_its_key_and_comes_back_after_a_restart(tmp_path: Path) -> None:
    bridge = FakeSAMBridge()
    key_file = tmp_path / "dest.key"
    lazy = LazySession(bridge.endpoint(), key_file)
    first = result_of(Deferred.fromCoroutine(lazy()))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert PrivateKey.from_base64(key_file.read_text().strip()) == first.key
    assert result_of(Deferred.fromCoroutine(lazy())) is first
    bridge.restart()
    second = result_of(Deferred.fromCoroutine(lazy()))
    assert second is not first and second.destination == first.destination


def test_concurrent_callers_share_one_session_creation() -> None:
    clock = Clock()
    bridge = FakeSAMBridge(clock=clock, ready_delay=20)
    lazy = LazySession(bridge.endpoint(), None)
    d1, d2 = Deferred.fromCoroutine(lazy()), Deferred.fromCoroutine(lazy())
    assert not d1.called and not d2.called
    clock.advance(20)
    assert result_of(d1) is result_of(d2)
    assert sum(c.startswith("SESSION CREATE") for c in bridge.commands) == 1
