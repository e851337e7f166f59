"""TorProvider against a fake control protocol and a Clock: no tor, no reactor."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import NodeIdentity, create, onion_address_from_public_key
from aegis_hidden.testing import FakeTorControl, FakeTorProcess
from aegis_hidden.tor import (
    Backoff,
    BootstrapTimeout,
    OnionMismatch,
    TorNotFound,
    TorNotReady,
    TorProvider,
    TorSession,
    launch_torrc_lines,
)
from aegis_hidden.tor._launch import find_tor


def fired(d: Deferred[Any]) -> bool:
    return bool(d.called)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> NodeIdentity:
    return create(tmp_path_factory.mktemp("ident"), time.time())


class Harness:
    """A provider whose starter hands out fake tors, one per (re)start."""

    def __init__(self, identity: NodeIdentity, tmp: Path, raw: dict[str, Any] | None = None,
                 **kw: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.config = parse_config(raw or {"network": {"listen_address": "127.0.0.1:7801"}})
        self.events = EventBus(now=lambda: 0.0)
        self.seen: list[dict[str, Any]] = []
        self.events.subscribe(self.seen.append)
        self.controls: list[FakeTorControl] = []
        self.processes: list[FakeTorProcess] = []
        self.fatal: list[Failure] = []
        self.start_error: Exception | None = None
        self.sid = identity.onion.removesuffix(".onion")
        self.now = 1000.0
        self.provider = TorProvider(
            self.reactor, self.config, identity, tmp, self.events, starter=self.start,
            on_fatal=self.fatal.append, wall=lambda: self.now,
            restart_backoff=Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.0), **kw)

    async def start(self) -> TorSession:
        if self.start_error is not None:
            raise self.start_error
        control = FakeTorControl(service_id=self.sid)
        process = FakeTorProcess(pid=100 + len(self.processes))
        self.controls.append(control)
        self.processes.append(process)
        return TorSession(control, control.socks, process)

    @property
    def control(self) -> FakeTorControl:
        return self.controls[-1]

    def types(self) -> list[str]:
        return [e["type"] for e in self.seen]

    def bring_up(self) -> None:
        self.provider.startService()
        for p in (30, 75, 100):
            self.control.set_bootstrap(p, f"t{p}", f"summary {p}")


@pytest.fixture
def harness(identity: NodeIdentity, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(identity, tmp_path)
    yield h
    h.provider.stopService()


def test_bootstrap_progress_is_state_and_events(harness: Harness) -> None:
    harness.provider.startService()
    ready = harness.provider.when_ready()
    assert harness.provider.state()["phase"] == "bootstrapping"
    harness.control.set_bootstrap(45, "requesting_descriptors", "Asking for relay descriptors")
    st = harness.provider.state()
    assert st["bootstrap"]["progress"] == 45
    assert st["bootstrap"]["tag"] == "requesting_descriptors"
    assert not fired(ready) and not st["ready"]
    harness.control.emit("STATUS_CLIENT", "NOTICE CIRCUIT_ESTABLISHED")  # ignored
    harness.control.emit("STATUS_CLIENT", "NOTICE BOOTSTRAP PROGRESS=oops")  # logged, ignored
    harness.control.set_bootstrap(100, "done", "Done")
    assert fired(ready)
    assert [e["progress"] for e in harness.seen if e["type"] == "tor_bootstrap"] == [0, 45, 100]


def test_identity_onion_published_with_the_master_key(harness: Harness,
                                                      identity: NodeIdentity) -> None:
    harness.bring_up()
    (cmd,) = harness.control.sent("ADD_ONION")
    key = base64.b64encode(identity.expanded_secret_key()).decode()
    assert cmd == f"ADD_ONION ED25519-V3:{key} PoWDefensesEnabled=1 Port=7701,127.0.0.1:7801"
    st = harness.provider.state()
    assert st["published"] and st["published_service_id"] == harness.sid
    assert st["onion"] == identity.onion and st["socks"] == "127.0.0.1:9999"
    published = [e for e in harness.seen if e["type"] == "onion_published"]
    assert published[0]["address"] == identity.onion


def test_stop_removes_the_onion_and_stops_tor(harness: Harness) -> None:
    harness.bring_up()
    control, process = harness.control, harness.processes[-1]
    d = harness.provider.stopService()
    assert control.sent("DEL_ONION") == [f"DEL_ONION {harness.sid}"]
    assert process.signals == ["TERM"]
    assert d.called and harness.provider.state()["phase"] == "stopped"


def test_persist_onion_detaches_and_keeps_it(identity: NodeIdentity, tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, {"tor": {"persist_onion": True}})
    h.bring_up()
    assert " Flags=Detach " in h.control.sent("ADD_ONION")[0]
    h.provider.stopService()
    assert h.control.sent("DEL_ONION") == []


def test_persisted_onion_collision_counts_as_published(identity: NodeIdentity,
                                                       tmp_path: Path) -> None:
    from txtorcon import TorProtocolError

    h = Harness(identity, tmp_path, {"tor": {"persist_onion": True}})
    h.provider.startService()
    h.control.replies["ADD_ONION"] = TorProtocolError(550, "Onion address collision")
    h.control.set_bootstrap(100)
    assert h.provider.state()["ready"]


def test_wrong_address_from_tor_is_fatal(harness: Harness, identity: NodeIdentity) -> None:
    """tor publishes a valid onion that is not ours: OnionMismatch naming both, never ready."""
    other = onion_address_from_public_key(bytes(range(32)))
    assert other != identity.onion
    harness.provider.startService()
    harness.control.replies["ADD_ONION"] = f"ServiceID={other.removesuffix('.onion')}\nOK"
    ready = harness.provider.when_ready()
    failures: list[Failure] = []
    ready.addErrback(failures.append)
    harness.control.set_bootstrap(100)
    (fatal,) = harness.fatal
    assert fatal.check(OnionMismatch) is OnionMismatch, fatal
    assert fatal.getErrorMessage() == (f"tor published {other}, expected {identity.onion}")
    assert isinstance(failures[0].value, TorNotReady)
    assert harness.provider.state()["phase"] == "failed"
    assert not harness.provider.state()["published"]


def test_bootstrap_timeout_is_a_clear_fatal_error(identity: NodeIdentity,
                                                  tmp_path: Path) -> None:
    h = Harness(identity, tmp_path, {"tor": {"bootstrap_timeout": 30}})
    h.provider.startService()
    h.control.set_bootstrap(45, "requesting_descriptors", "Asking for relay descriptors")
    h.reactor.advance(29)
    assert not h.fatal
    h.reactor.advance(2)
    (failure,) = h.fatal
    assert failure.check(BootstrapTimeout)
    msg = failure.getErrorMessage()
    assert "within 30s" in msg and "45%" in msg and "requesting_descriptors" in msg
    assert h.processes[-1].signals == ["KILL"]
    assert h.provider.state()["error"] == msg
    assert "tor_failed" in h.types()
    failed = h.provider.when_ready()
    errors: list[Failure] = []
    failed.addErrback(errors.append)
    assert errors and errors[0].check(TorNotReady)


def test_tor_not_found_is_reported(identity: NodeIdentity, tmp_path: Path) -> None:
    with pytest.raises(TorNotFound, match=r"tor\.tor_binary"):
        find_tor("/nonexistent/tor")
    h = Harness(identity, tmp_path)
    h.start_error = TorNotFound("tor executable 'x' not found")
    h.provider.startService()
    assert h.fatal and h.fatal[0].check(TorNotFound)


def test_tor_death_restarts_and_republishes(harness: Harness, identity: NodeIdentity) -> None:
    harness.bring_up()
    harness.now += 120  # stable for long enough: restart at once
    harness.processes[-1].die()
    assert not harness.provider.state()["ready"]
    assert harness.provider.state()["phase"] == "bootstrapping"  # the new tor, at once
    waiting = harness.provider.when_ready()
    assert not fired(waiting)
    assert len(harness.controls) == 2
    for p in (50, 100):
        harness.control.set_bootstrap(p)
    assert fired(waiting)
    (cmd,) = harness.control.sent("ADD_ONION")
    assert cmd.startswith("ADD_ONION ED25519-V3:")
    assert harness.types().count("onion_published") == 2
    restarted = [e for e in harness.seen if e["type"] == "tor_restarted"]
    assert restarted[0]["restarts"] == 1 and restarted[0]["address"] == identity.onion
    assert harness.provider.state()["restarts"] == 1


def test_control_drop_kills_the_old_tor_and_restarts(harness: Harness) -> None:
    harness.bring_up()
    harness.now += 120
    old = harness.processes[-1]
    harness.control.disconnect()
    assert "KILL" in old.signals
    assert len(harness.controls) == 2


def test_crash_loop_backs_off(harness: Harness) -> None:
    """A tor that dies right after start is restarted after 1, 2, 4, 8 s, not at once."""
    harness.bring_up()
    starts = [len(harness.controls)]
    for expected_delay in (1.0, 2.0, 4.0, 8.0):
        harness.processes[-1].die()  # dies at once: never stable
        before = len(harness.controls)
        harness.reactor.advance(expected_delay - 0.01)
        assert len(harness.controls) == before, "restarted too early"
        harness.reactor.advance(0.02)
        assert len(harness.controls) == before + 1
        harness.control.set_bootstrap(100)
        starts.append(len(harness.controls))
    assert starts == [1, 2, 3, 4, 5]


def test_failed_restart_is_retried_with_backoff(harness: Harness) -> None:
    harness.bring_up()
    harness.now += 120
    harness.start_error = TorNotFound("gone")
    harness.processes[-1].die()
    assert harness.provider.state()["phase"] == "restarting"
    assert not harness.fatal  # a restart failure is not fatal: it is retried
    harness.start_error = None
    harness.reactor.advance(1.0)
    assert len(harness.controls) == 2
    harness.control.set_bootstrap(100)
    assert harness.provider.state()["ready"]


def test_launch_lines_for_a_private_network(identity: NodeIdentity) -> None:
    cfg = parse_config({"tor": {"testing_network": True, "dir_authorities": ["a orport=1 x"],
                                "torrc_lines": ["Log info file /tmp/x"]}})
    lines = launch_torrc_lines(cfg)
    assert lines[0] == "TestingTorNetwork 1"
    assert "DirAuthority a orport=1 x" in lines and lines[-1] == "Log info file /tmp/x"
    assert launch_torrc_lines(parse_config({})) == []


def test_handles_and_client_endpoint(harness: Harness) -> None:
    from aegis_hidden.config import PrivacyError

    p = harness.provider
    assert p.handles(harness.sid + ".onion") and p.handles(harness.sid + ".onion:7701")
    assert not p.handles("example.com") and not p.handles("x.b32.i2p")
    with pytest.raises(PrivacyError):
        p.client_endpoint("example.com", 80)
    with pytest.raises(PrivacyError):
        p.client_endpoint("127.0.0.1", 80)


def test_client_auth_and_extra_onions(harness: Harness, identity: NodeIdentity) -> None:
    from aegis_hidden.tor import ClientAuthKey

    harness.bring_up()
    key = ClientAuthKey.generate()
    done: list[object] = []
    Deferred.fromCoroutine(harness.provider.add_client_auth(identity.onion, key)).addCallback(
        done.append)
    assert done == [None]
    assert harness.control.sent("ONION_CLIENT_AUTH_ADD")[0].startswith(
        f"ONION_CLIENT_AUTH_ADD {harness.sid} x25519:")


def test_ready_waits_for_the_descriptor_upload(harness: Harness) -> None:
    harness.provider.startService()
    harness.control.auto_upload = False
    ready = harness.provider.when_ready()
    harness.control.set_bootstrap(100)
    assert harness.control.sent("ADD_ONION") and not fired(ready)
    harness.control.emit("HS_DESC", f"UPLOADED {'b' * 56} UNKNOWN $X~y")  # another service
    assert not fired(ready)
    harness.control.emit("HS_DESC", f"UPLOADED {harness.sid} UNKNOWN $X~y")
    assert fired(ready)
    assert harness.control.listeners["HS_DESC"] == []


def test_unconfirmed_upload_is_ready_after_a_timeout(harness: Harness) -> None:
    harness.provider.startService()
    harness.control.auto_upload = False
    ready = harness.provider.when_ready()
    harness.control.set_bootstrap(100)
    harness.reactor.advance(29)
    assert not fired(ready)
    harness.reactor.advance(1)
    assert fired(ready) and not harness.fatal


def test_other_onions_and_client_keys_come_back_after_a_restart(harness: Harness) -> None:
    from aegis_hidden.identity import expanded_secret_key
    from aegis_hidden.tor import ClientAuthKey

    harness.bring_up()
    auth = ClientAuthKey.generate()
    identity_cmd = harness.control.sent("ADD_ONION")[0]
    sids: list[str] = []
    Deferred.fromCoroutine(harness.provider.add_onion(
        expanded_secret_key(bytes(32)), 80, "127.0.0.1:8470",
        client_auth=[auth.public.descriptor_line()])).addCallback(sids.append)
    assert sids == [harness.sid]  # the fake answers with one id for every ADD_ONION
    Deferred.fromCoroutine(harness.provider.add_client_auth(harness.sid + ".onion", auth))
    api_cmd = harness.control.sent("ADD_ONION")[-1]
    assert "ClientAuthV3=" in api_cmd
    harness.now += 120
    harness.processes[-1].die()
    harness.control.set_bootstrap(100)
    assert harness.provider.state()["ready"]
    assert harness.control.sent("ADD_ONION") == [identity_cmd, api_cmd]
    assert len(harness.control.sent("ONION_CLIENT_AUTH_ADD")) == 1
    # removed services are not brought back
    Deferred.fromCoroutine(harness.provider.remove_onion(harness.sid + ".onion"))
    harness.now += 120
    harness.processes[-1].die()
    harness.control.set_bootstrap(100)
    assert harness.control.sent("ADD_ONION") == [identity_cmd]  # only the identity onion


def test_launch_torrc(tmp_path: Path) -> None:
    from aegis_hidden.tor._launch import write_torrc

    torrc = write_torrc(tmp_path, ["TestingTorNetwork 1"], 4321)
    lines = torrc.read_text().splitlines()
    assert f"DataDirectory {tmp_path}" in lines and "ControlPort auto" in lines
    assert "SocksPort 127.0.0.1:auto ExtendedErrors IsolateSOCKSAuth" in lines
    assert "__OwningControllerProcess 4321" in lines and lines[-1] == "TestingTorNetwork 1"
    fixed = write_torrc(tmp_path, [], 1, "127.0.0.1:9150").read_text()
    assert "SocksPort 127.0.0.1:9150 ExtendedErrors IsolateSOCKSAuth" in fixed


def test_tor_dying_while_bootstrapping_at_first_start_is_fatal(harness: Harness) -> None:
    harness.provider.startService()
    harness.control.set_bootstrap(40)
    harness.processes[-1].die()
    (failure,) = harness.fatal
    assert "lost while bootstrapping" in failure.getErrorMessage()
    assert len(harness.controls) == 1  # no restart racing the failed start


def test_tor_dying_while_bootstrapping_during_a_restart_is_retried(harness: Harness) -> None:
    harness.bring_up()
    harness.now += 120
    harness.processes[-1].die()  # restart 1 begins at once
    harness.control.set_bootstrap(40)
    harness.processes[-1].die()  # ...and that tor dies too
    assert not harness.fatal and len(harness.controls) == 2
    harness.reactor.advance(1.0)  # backoff, then a third tor
    assert len(harness.controls) == 3
    harness.control.set_bootstrap(100)
    assert harness.provider.state()["ready"] and harness.provider.state()["restarts"] == 1
