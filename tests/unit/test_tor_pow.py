"""Item 8: onion-service proof-of-work on the identity onion, against a fake tor.

A fake control protocol stands in for tors that take ``PoWDefensesEnabled=1``
on ADD_ONION (0.4.9+ with the pow module) and for tors that refuse it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from txtorcon import TorProtocolError

from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import NodeIdentity, create
from aegis_hidden.testing import FakeTorControl, FakeTorProcess
from aegis_hidden.tor import Backoff, TorProvider, TorSession, add_onion_command
from aegis_hidden.tor._control import POW_KEYWORD

KEY = bytes(range(64))


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> NodeIdentity:
    return create(tmp_path_factory.mktemp("ident"), time.time())


class OldTorControl(FakeTorControl):
    """A tor whose ADD_ONION does not know the PoW keyword (as tor < 0.4.9 answers)."""

    def queue_command(self, cmd: str | bytes) -> Any:
        from twisted.internet.defer import fail

        text = cmd.decode() if isinstance(cmd, bytes) else cmd
        if text.startswith("ADD_ONION") and f" {POW_KEYWORD}=" in text:
            self.commands.append(text)
            return fail(TorProtocolError(513, "Invalid argument"))
        return super().queue_command(cmd)


class Harness:
    def __init__(self, identity: NodeIdentity, tmp: Path, control_class: type[FakeTorControl],
                 raw: dict[str, Any] | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.config = parse_config(raw or {"network": {"listen_address": "127.0.0.1:7801"}})
        self.events = EventBus(now=lambda: 0.0)
        self.controls: list[FakeTorControl] = []
        self.processes: list[FakeTorProcess] = []
        self.fatal: list[Failure] = []
        self.sid = identity.onion.removesuffix(".onion")
        self.control_class = control_class
        self.now = 1000.0
        self.provider = TorProvider(
            self.reactor, self.config, identity, tmp, self.events, starter=self.start,
            on_fatal=self.fatal.append, wall=lambda: self.now,
            restart_backoff=Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.0))

    async def start(self) -> TorSession:
        control = self.control_class(service_id=self.sid)
        process = FakeTorProcess(pid=100 + len(self.processes))
        self.controls.append(control)
        self.processes.append(process)
        return TorSession(control, control.socks, process)

    @property
    def control(self) -> FakeTorControl:
        return self.controls[-1]

    def bring_up(self) -> None:
        self.provider.startService()
        self.control.set_bootstrap(100, "done", "Done")

    def restart(self) -> None:
        self.now += 120
        self.processes[-1].die()
        self.control.set_bootstrap(100, "done", "Done")


def test_add_onion_command_asks_for_pow_only_when_told() -> None:
    plain = add_onion_command(KEY, 7701, "127.0.0.1:7801")
    assert POW_KEYWORD not in plain
    cmd = add_onion_command(KEY, 7701, "127.0.0.1:7801", detach=True, pow_defenses=True)
    assert cmd.endswith(" Flags=Detach PoWDefensesEnabled=1 Port=7701,127.0.0.1:7801")


def test_a_pow_capable_tor_publishes_the_identity_onion_with_pow(
        identity: NodeIdentity, tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, FakeTorControl)
    assert h.provider.state()["pow"] == "unknown"
    with capturedLogs() as logs:
        h.bring_up()
    (cmd,) = h.control.sent("ADD_ONION")
    assert " PoWDefensesEnabled=1 Port=7701," in cmd
    st = h.provider.state()
    assert st["ready"] and st["pow"] == "enabled" and st["pow_refusal"] is None
    assert h.provider.pow_supported is True
    assert any("proof-of-work defence enabled" in str(e.get("log_format")) for e in logs)
    h.restart()  # a new tor, the same publication
    (again,) = h.control.sent("ADD_ONION")
    assert again == cmd and h.provider.state()["pow"] == "enabled"
    h.provider.stopService()


def test_a_tor_without_pow_gets_the_onion_without_it_and_a_warning(
        identity: NodeIdentity, tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, OldTorControl)
    with capturedLogs() as logs:
        h.bring_up()
    with_pow, without = h.control.sent("ADD_ONION")
    assert POW_KEYWORD in with_pow and POW_KEYWORD not in without
    assert without == with_pow.replace(" PoWDefensesEnabled=1", "")
    st = h.provider.state()
    assert st["ready"] and st["published"] and not h.fatal
    assert st["pow"] == "unsupported" and "Invalid argument" in st["pow_refusal"]
    assert h.provider.pow_supported is False
    warnings = [e for e in logs if "does not support onion-service proof-of-work"
                in str(e.get("log_format"))]
    assert len(warnings) == 1 and warnings[0]["log_level"].name == "warn"
    # detected once: after a restart tor is not asked again
    h.restart()
    (only,) = h.control.sent("ADD_ONION")
    assert POW_KEYWORD not in only and h.provider.state()["pow"] == "unsupported"
    h.provider.stopService()


def test_a_refusal_of_both_forms_is_a_real_error(identity: NodeIdentity,
                                                 tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, FakeTorControl)
    h.provider.startService()
    h.control.replies["ADD_ONION"] = TorProtocolError(512, "Invalid VIRTPORT/TARGET")
    h.control.set_bootstrap(100)
    assert len(h.control.sent("ADD_ONION")) == 2  # with PoW, then without
    assert h.fatal and "Invalid VIRTPORT/TARGET" in h.fatal[0].getErrorMessage()
    assert h.provider.pow_supported is None and h.provider.state()["pow"] == "unknown"
    h.provider.stopService()


def test_once_pow_is_known_to_work_a_later_failure_is_not_retried_without(
        identity: NodeIdentity, tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, FakeTorControl)
    h.bring_up()
    h.now += 120
    h.processes[-1].die()
    h.control.replies["ADD_ONION"] = TorProtocolError(551, "Failed to add Onion Service")
    h.control.set_bootstrap(100)
    (cmd,) = h.control.sent("ADD_ONION")
    assert POW_KEYWORD in cmd  # never silently downgraded to no PoW
    assert not h.provider.state()["ready"]
    h.provider.stopService()


def test_a_persisted_onion_found_in_place_reports_pow_unknown(identity: NodeIdentity,
                                                              tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, FakeTorControl, {"tor": {"persist_onion": True}})
    h.provider.startService()
    h.control.replies["ADD_ONION"] = TorProtocolError(550, "Onion address collision")
    h.control.set_bootstrap(100)
    assert len(h.control.sent("ADD_ONION")) == 1  # a collision is not a PoW refusal
    st = h.provider.state()
    assert st["ready"] and st["pow"] == "unknown"
    h.provider.stopService()
