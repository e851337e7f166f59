"""TorProvider.restart(): the operator's transport restart, on fake tors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_hidden.identity import NodeIdentity, create

from .test_tor_provider import Harness, fired


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> NodeIdentity:
    return create(tmp_path_factory.mktemp("ident"), time.time())


@pytest.fixture
def tor(ident: NodeIdentity, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(ident, tmp_path)
    yield h
    h.provider.stopService()


def test_restart_kills_our_tor_starts_another_and_republishes(tor: Harness) -> None:
    assert tor.provider.restart("test") is False  # not started: nothing to restart
    tor.bring_up()
    assert tor.provider.state()["ready"]
    tor.now += 120
    old = tor.processes[-1]
    assert tor.provider.restart("asked") is True
    assert "KILL" in old.signals and len(tor.controls) == 2
    assert not tor.provider.state()["ready"]
    assert tor.provider.restart("again") is False  # already restarting
    waiting = tor.provider.when_ready()
    for p in (50, 100):
        tor.control.set_bootstrap(p)
    assert fired(waiting)
    assert tor.types().count("onion_published") == 2 and "tor_restarted" in tor.types()
    assert tor.provider.state()["restarts"] == 1 and not tor.fatal
