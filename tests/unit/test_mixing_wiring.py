"""mixing.profile in the running node: the tap builds one cell scheduler for every
session, idle sessions send cover on a Poisson schedule (``off``: none), and the
profile, its rates and the counters show in status, /metrics and ``aegis-hidden status``."""

from __future__ import annotations

import itertools
import json
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from scipy import stats
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aegis_hidden import tap
from aegis_hidden.cli._status import render
from aegis_hidden.config import Config, parse_config
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.interfaces import ITraceSink
from aegis_hidden.mixing import (
    DRAIN_SECONDS,
    CellCounter,
    ImmediateScheduler,
    MixingLayer,
    MixingService,
    PoissonScheduler,
    read_trace,
)
from aegis_hidden.node import NodeService
from aegis_hidden.node._metrics import Metrics
from aegis_hidden.session import SessionParams
from aegis_hidden.session.twisted import PeerLink, SessionFactory
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity

NOW = 1_800_000_000.0
PORT = 7701
CELL = SessionParams().cell_size


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def _options(tmp_path: Path, mixing: dict[str, Any] | None = None) -> tap.Options:
    argv = ["--data-dir", str(tmp_path / "node"), "--no-api"]
    if mixing is not None:
        path = tmp_path / "config.yaml"
        path.write_text(json.dumps({"mixing": mixing}))  # JSON is YAML
        argv += ["--config", str(path)]
    opts = tap.Options()
    opts.parseOptions(argv)
    return opts


# -- the tap --------------------------------------------------------------------------

def test_the_tap_gives_every_session_the_profiles_scheduler(tmp_path: Path) -> None:
    service = tap.makeService(_options(tmp_path))  # defaults: balanced
    assert isinstance(service, NodeService)
    core = service.getServiceNamed("core")
    mixing = service.getServiceNamed("mixing")
    assert isinstance(mixing, MixingService)
    layer = mixing.layer
    sessions = core.session_factory
    assert isinstance(sessions, SessionFactory)
    scheduler: Any = layer.scheduler
    assert isinstance(scheduler, PoissonScheduler) and scheduler.rate == 2.0
    trace: Any = sessions.trace
    assert sessions.scheduler is layer.scheduler and trace is layer.trace
    assert layer.trace.inner is None  # no trace file unless mixing.trace_file asks
    assert core.mixing is layer


def test_the_off_profile_keeps_the_immediate_scheduler(tmp_path: Path) -> None:
    service = tap.makeService(_options(tmp_path, {"profile": "off"}))
    assert isinstance(service, NodeService)
    sessions = service.getServiceNamed("core").session_factory
    assert isinstance(sessions.scheduler, ImmediateScheduler)
    # performance.message_batch_size is still the cells per write
    assert sessions.scheduler.batch_size == Config().performance.message_batch_size


def test_loop_rate_mix_rate_and_batches_are_applied(tmp_path: Path) -> None:
    opts = _options(tmp_path, {"loop_rate": 0.1, "mix_rate": 4.0, "batch_interval": 0.5,
                               "batch_size": 3})
    service = tap.makeService(opts)
    assert isinstance(service, NodeService)
    core = service.getServiceNamed("core")
    layer = service.getServiceNamed("mixing").layer
    assert layer.loop_cover is not None and layer.loop_cover.rate == 0.1
    assert layer.pool is not None and layer.pool.rate == 4.0
    assert (layer.pool.batch_interval, layer.pool.batch_size) == (0.5, 3)
    assert core.rpc.forwarder == layer.forward and core.pubsub.forwarder == layer.forward
    st = core.status()["mixing"]
    assert st["loop_cover"] and st["loop_rate"] == 0.1
    assert st["mix_pool"] and st["mix_rate"] == 4.0
    assert (st["batch_interval"], st["batch_size"]) == (0.5, 3)


def test_the_trace_file_is_private_and_only_made_when_asked(tmp_path: Path) -> None:
    cfg = parse_config({"mixing": {"trace_file": "cells.jsonl"}})
    layer = tap.build_mixing(cfg, tmp_path, Clock())
    path = tmp_path / "cells.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert layer.trace.inner is not None and layer.status()["trace"]
    layer.stop()
    assert not tap.build_mixing(Config(), tmp_path / "none", Clock()).status()["trace"]
    assert not (tmp_path / "none").exists()


# -- on the wire (in memory, task.Clock) ----------------------------------------------

@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def _idle_pair(tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity],
               mixing: dict[str, Any], seconds: float,
               ) -> tuple[MixingLayer, MixingLayer, PeerLink, list[bytes]]:
    """Two nodes' session layers built as the tap builds them, one idle session
    between them, run for ``seconds`` on a task.Clock (stepping to each timer)."""
    clock = Clock()
    clock.advance(NOW)
    cfg = parse_config({"mixing": mixing})
    provider = MemoryTransportProvider()
    layers = []
    factories = []
    for n, ident in enumerate(identities):
        layer = tap.build_mixing(cfg, tmp_path / f"n{n}", clock, random.Random(90 + n)) \
            if "trace_file" not in mixing else _traced(cfg, tmp_path / f"n{n}", clock, n)
        layers.append(layer)
        factories.append(SessionFactory(ident, [provider], cfg, clock,
                                        scheduler=layer.scheduler, trace=layer.trace))
    got: list[bytes] = []
    incoming: list[Any] = []
    factories[1].on_incoming(incoming.append)
    provider.listen(identities[1].onion, PORT, factories[1].server_factory())
    link = outcome(factories[0].connect(identities[1].onion))
    assert isinstance(link, PeerLink)
    provider.flush()
    (theirs,) = incoming
    theirs.set_receiver(got.append)
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        calls = [c.getTime() for c in clock.getDelayedCalls()]
        step = min([*calls, end]) - clock.seconds()
        clock.advance(max(step, 0.0))
        provider.flush()
    return layers[0], layers[1], link, got


def _traced(cfg: Config, data_dir: Path, clock: Clock, n: int) -> MixingLayer:
    data_dir.mkdir(parents=True, exist_ok=True)
    return tap.build_mixing(cfg, data_dir, clock, random.Random(90 + n))


def test_balanced_sends_poisson_cover_on_an_idle_session_and_the_peer_counts_it(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    seconds = 600.0
    alice, bob, _, got = _idle_pair(
        tmp_path, identities, {"profile": "balanced", "trace_file": "trace.jsonl"}, seconds)
    sent = alice.trace.count("out", "cover")
    assert 0.8 * 2.0 * seconds < sent < 1.2 * 2.0 * seconds  # λ = 2 cells/s
    # every cover cell reached the peer and was counted there as cover
    assert bob.trace.count("in", "cover") == sent
    assert bob.trace.count("out", "cover") > 0  # both ends of a link send cover
    assert got == []  # cover is never delivered as a message
    # the trace file: one line per cell, every one a whole cell, gaps Exp(λ)
    alice.stop()
    with open(tmp_path / "n0" / "trace.jsonl", encoding="utf-8") as f:
        rows = read_trace(f)
    out = [r for r in rows if r["dir"] == "out"]
    assert all(r["size"] == CELL for r in rows)
    assert {r["kind"] for r in out} >= {"cover"}
    times = sorted({float(r["t"]) for r in out if r["kind"] == "cover"})  # type: ignore[arg-type]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert stats.kstest(gaps, "expon", args=(0, 1 / 2.0)).pvalue >= 0.01
    snap = alice.snapshot()
    assert snap["profile"] == "balanced" and snap["cover_cells_sent"] == sent
    assert snap["slots"] >= sent


def test_off_sends_no_cover_on_an_idle_session(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    alice, bob, _, _ = _idle_pair(tmp_path, identities, {"profile": "off"}, 600.0)
    assert alice.trace.count("out", "cover") == bob.trace.count("out", "cover") == 0
    assert bob.trace.count("in", "cover") == 0
    assert not alice.status()["cover_traffic"]


def test_balanced_still_delivers_messages_in_order(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    clock = Clock()
    clock.advance(NOW)
    cfg = parse_config({})
    provider = MemoryTransportProvider()
    a_layer = tap.build_mixing(cfg, tmp_path, clock, random.Random(1))
    b_layer = tap.build_mixing(cfg, tmp_path, clock, random.Random(2))
    alice = SessionFactory(identities[0], [provider], cfg, clock,
                           scheduler=a_layer.scheduler, trace=a_layer.trace)
    bob = SessionFactory(identities[1], [provider], cfg, clock,
                         scheduler=b_layer.scheduler, trace=b_layer.trace)
    incoming: list[Any] = []
    bob.on_incoming(incoming.append)
    provider.listen(identities[1].onion, PORT, bob.server_factory())
    link = outcome(alice.connect(identities[1].onion))
    provider.flush()
    got: list[bytes] = []
    incoming[0].set_receiver(got.append)
    for n in range(20):
        link.send_message(f"m{n}".encode())
    provider.flush()
    assert got == []  # nothing leaves before its slot
    for _ in range(2000):
        clock.advance(0.05)
        provider.flush()
    assert got == [f"m{n}".encode() for n in range(20)]
    assert a_layer.snapshot()["queue_delay_count"] >= 20


# -- status, /metrics, aegis-hidden status --------------------------------------------

def test_status_metrics_and_cli_show_the_profile_and_counters(tmp_path: Path) -> None:
    layer = tap.build_mixing(Config(), tmp_path, Clock(), random.Random(3))
    assert ITraceSink.providedBy(layer.trace)
    layer.trace.record(0.0, "l", "out", CELL, "cover")
    layer.trace.record(0.0, "l", "in", CELL, "cover")
    layer.trace.record(0.0, "l", "in", CELL, "real")
    st = layer.status()
    assert st["profile"] == "balanced" and st["cover_rate"] == 2.0 and st["cover_traffic"]
    assert st["burst"] == 4 and st["bytes_per_second_per_link"] == pytest.approx(1992.0)
    # no node core attached the loop message: no loops; μ of the profile: the pool
    assert st["loop_cover"] is False and st["loop_rate"] == 0.0
    assert st["mix_pool"] is True and st["mix_rate"] == 1.0
    assert st["batch_interval"] == 0.0 and st["batch_size"] is None

    metrics = Metrics()
    metrics.mixing = layer.snapshot
    text = metrics.render()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines['aegis_mixing_profile_info{profile="balanced"}'] == "1"
    assert lines["aegis_mixing_cover_rate"] == "2"
    assert lines["aegis_mixing_cover_cells_sent_total"] == "1"
    assert lines["aegis_mixing_cover_cells_received_total"] == "1"
    assert lines["aegis_mixing_cells_received_total"] == "2"
    assert lines['aegis_mixing_queue_delay_seconds_bucket{le="+Inf"}'] == "0"
    assert "aegis_mixing_queue_delay_seconds_count 0" in text

    out = render("api", {"identity": {"onion": "x.onion"}, "mixing": st})
    mix = [line for line in out if line.startswith("mix:")]
    assert mix == ["mix:   balanced: Poisson cover 2 cells/s per link (~2.0 kB/s each way), "
                   "burst 4; no loop cover; forwarded traffic waits Exp(1/s), mean 1 s"]
    off = tap.build_mixing(parse_config({"mixing": {"profile": "off"}}), tmp_path, Clock())
    assert render("api", {"mixing": off.status()})[-1] == \
        "mix:   off: no cover traffic, cells leave at once; no loop cover; no mix delays"
    running = {**st, "loop_cover": True, "loop_rate": 1 / 30, "batch_interval": 0.5,
               "batch_size": 8}
    assert render("status.json", {"mixing": running})[-1] == \
        "mix:   balanced: Poisson cover 2 cells/s per link (~2.0 kB/s each way), burst 4; " \
        "loops 0.0333333/s through peers; forwarded traffic waits Exp(1/s), mean 1 s, " \
        "in batches every 0.5 s (or of 8)"


def test_the_core_serves_the_layer_in_status_and_metrics(tmp_path: Path) -> None:
    service = tap.makeService(_options(tmp_path))
    assert isinstance(service, NodeService)
    core = service.getServiceNamed("core")
    assert "aegis_mixing_profile_info" in core.metrics.render()
    assert core.mixing.status()["profile"] == "balanced"


def test_cell_counter_refuses_an_unknown_kind() -> None:
    counter = CellCounter()
    with pytest.raises(ValueError, match="direction/kind"):
        counter.record(0.0, "l", "out", CELL, "bogus")


def test_the_layer_stops_after_the_core_and_takes_its_timer_and_trace_with_it(
        tmp_path: Path, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    service = tap.makeService(_options(tmp_path))
    assert isinstance(service, NodeService)
    names = [child.name for child in service]
    # children stop in reverse order: the core closes the sessions before the
    # scheduler goes
    assert names.index("mixing") < names.index("core")

    cfg = parse_config({"mixing": {"trace_file": "t.jsonl"}})
    clock = Clock()
    clock.advance(NOW)
    layer = tap.build_mixing(cfg, tmp_path, clock, random.Random(5))
    provider = MemoryTransportProvider()
    alice = SessionFactory(identities[0], [provider], cfg, clock,
                           scheduler=layer.scheduler, trace=layer.trace)
    bob = SessionFactory(identities[1], [provider], cfg, clock)
    provider.listen(identities[1].onion, PORT, bob.server_factory())
    incoming: list[Any] = []
    bob.on_incoming(incoming.append)
    link = outcome(alice.connect(identities[1].onion))
    second = outcome(alice.connect(identities[1].onion))
    provider.flush()
    assert clock.getDelayedCalls()  # the scheduler's one timer (and the session's)
    got: list[bytes] = []
    incoming[0].set_receiver(got.append)
    mixing = MixingService(layer)
    mixing.startService()
    messages = [b"%d" % k * 50 for k in range(6)]
    for m in messages:
        link.send_message(m)
    link.close("node stopping")  # as the core does before the layer stops
    scheduler: Any = layer.scheduler
    stopped = mixing.stopService()
    assert not stopped.called and scheduler._call is not None  # the backlog's slots run on
    start = clock.seconds()
    while not link.is_closed:
        clock.advance(0.05)
        provider.flush()
    assert got == messages and clock.seconds() - start < DRAIN_SECONDS
    # the other session is never closed: the layer stops DRAIN_SECONDS after it was asked
    assert not stopped.called and not second.is_closed
    clock.advance(start + DRAIN_SECONDS - clock.seconds())
    assert outcome(stopped) is None
    assert scheduler.links == 0 and scheduler._call is None  # its timer is cancelled
    assert layer.trace.inner is None  # the trace file is flushed and closed
    assert (tmp_path / "t.jsonl").read_text().count("\n") > 0


def test_status_json_shows_the_mixing_line_without_the_api(tmp_path: Path) -> None:
    from aegis_hidden.node._peering import PeeringService

    service = tap.makeService(_options(tmp_path))
    assert isinstance(service, NodeService)
    (peering,) = [s for s in service if isinstance(s, PeeringService)]
    doc = json.loads(json.dumps(peering.status()))  # as written to status.json
    assert doc["mixing"] == service.getServiceNamed("core").status()["mixing"]
    assert doc["mixing"]["loop_cover"] and doc["mixing"]["mix_pool"]
    mix = [line for line in render("status.json", doc) if line.startswith("mix:")]
    assert mix and "loops 0.0333333/s through peers" in mix[0]
