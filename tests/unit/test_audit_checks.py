"""Known-answer tests of the privacy audit: each planted fault is flagged by its check alone.

A clean synthetic capture of one node (a SOCKS stream to tor carrying cells at
Poisson times, an incoming stream on its listen port, its control
connection) passes every check; the same capture with one fault planted fails
exactly the check meant for it and no other.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from random import Random

import dpkt
import pytest
from dpkt.pcap import DLT_EN10MB, DLT_LINUX_SLL, DLT_NULL
from twisted.internet.task import Clock

from aegis_hidden.audit import (
    CHECK_NAMES,
    THRESHOLDS,
    AuditError,
    AuditInput,
    AuditReport,
    Thresholds,
    Topology,
    load_input,
    mutual_information,
    run_audit,
    sender_entropy,
)
from aegis_hidden.mixing import JsonLinesTraceSink
from aegis_hidden.testing import SyntheticCapture, poisson_times
from aegis_hidden.testing import dns_query as make_dns_query
from aegis_hidden.testing._captures import SyntheticStream
from aegis_hidden.tor import Socks5Client

CELL = 996
RATE = 2.0
SECONDS = 300.0
NODE = "127.0.0.1"
SOCKS, CONTROL, LISTEN = 19150, 19151, 15001
#: Cells the node writes on its SOCKS stream before the first scheduled one
#: (ClientHello, ClientAuth + Finished).
HANDSHAKE_OUT = 2 + 12
OWN = "a" * 52 + "qd.onion"
PEER = "b" * 52 + "qd.onion"
TOPOLOGY = Topology(socks=[SOCKS], control=[CONTROL], listen=[LISTEN],
                    nodes=[[SOCKS, LISTEN]])
CANARY = bytes.fromhex("8f3e2a91c4d07b65e1f29a3c5d7e8b10")


def hello(rng: Random) -> bytes:
    """A clear hello cell: magic, cell size, then bytes (padding is not judged)."""
    return b"AH" + CELL.to_bytes(2, "big") + rng.randbytes(CELL - 4)


def cell(rng: Random) -> bytes:
    return rng.randbytes(CELL)


Fault = Callable[["Scenario"], None]


class Scenario:
    """One node's loopback capture, built step by step so a test can plant one fault."""

    def __init__(self, seed: int = 7, linktype: int = DLT_EN10MB,
                 seconds: float = SECONDS) -> None:
        self.rng = Random(seed)
        #: tor writes what arrives for the node as its relay cells arrive: 498 bytes each
        self.tor_chunk = 498
        self.cap = SyntheticCapture(linktype)
        self.out_socks: list[float] = poisson_times(self.rng, RATE, 1.0, seconds)
        self.in_socks: list[float] = poisson_times(self.rng, RATE, 1.0, seconds)
        self.in_listen: list[float] = poisson_times(self.rng, RATE, 1.0, seconds)
        self.out_listen: list[float] = poisson_times(self.rng, RATE, 1.0, seconds)
        self.out_payload: dict[int, bytes] = {}  # departure index -> bytes instead of a cell

    def build(self) -> bytes:
        rng, cap = self.rng, self.cap
        # the node dials its peer through tor's SOCKS port
        s = cap.tcp((NODE, 40001), (NODE, SOCKS), 0.1)
        # the node's own SOCKS machine (username/password: stream isolation)
        socks = Socks5Client(PEER, 9000, "isolation-user", "isolation-password")
        s.send(0.2, True, socks.start())
        for t, answer in ((0.21, b"\x05\x02"), (0.22, b"\x01\x00"),
                          (0.5, b"\x05\x00\x00\x01" + bytes(6))):
            s.send(t, False, answer)
            request, connected = socks.feed(answer)
            if request:
                s.send(t + 0.001, True, request)
        assert connected is not None
        # the handshake flights (docs/protocol.md §6), written at once, not scheduled:
        # ClientHello 2 cells, ServerHello + ServerAuth 13, ClientAuth + Finished 12
        s.send(0.6, True, hello(rng) + hello(rng))
        self.write(s, 0.8, False, hello(rng) + hello(rng) + rng.randbytes(11 * CELL),
                   node_is_client=True)
        s.send(0.9, True, rng.randbytes(HANDSHAKE_OUT * CELL - 2 * CELL))
        events = [(t, True, self.out_payload.get(i) or cell(rng))
                  for i, t in enumerate(self.out_socks)]
        events += [(t, False, cell(rng)) for t in self.in_socks]
        for t, up, data in sorted(events, key=lambda e: e[0]):
            self.write(s, t, up, data, node_is_client=True)
        # tor delivers a peer on the node's listen port
        li = cap.tcp((NODE, 40002), (NODE, LISTEN), 0.3)
        self.write(li, 0.4, True, hello(rng) + hello(rng), node_is_client=False)
        li.send(0.45, False, hello(rng) + hello(rng) + rng.randbytes(11 * CELL))
        self.write(li, 0.55, True, rng.randbytes(12 * CELL), node_is_client=False)
        events = [(t, True, cell(rng)) for t in self.in_listen]
        events += [(t, False, cell(rng)) for t in self.out_listen]
        for t, up, data in sorted(events, key=lambda e: e[0]):
            self.write(li, t, up, data, node_is_client=False)
        # the control connection names the node's own onion service
        c = cap.tcp((NODE, 40003), (NODE, CONTROL), 0.05)
        c.send(0.06, True, b"AUTHENTICATE\r\n")
        c.send(0.07, False, b"250 OK\r\n")
        c.send(0.08, True, b"ADD_ONION ED25519-V3:" + b"k" * 86 + b" Port=9000\r\n")
        c.send(0.09, False, b"250-ServiceID=" + OWN.removesuffix(".onion").encode()
               + b"\r\n250 OK\r\n")
        return cap.to_bytes()

    def write(self, stream: SyntheticStream, t: float, from_client: bool, data: bytes, *,
              node_is_client: bool) -> None:
        if from_client == node_is_client or not self.tor_chunk:
            stream.send(t, from_client, data)
            return
        for i in range(0, len(data), self.tor_chunk):
            stream.send(t + i * 1e-6, from_client, data[i:i + self.tor_chunk])


def audit(data: bytes, *, traces: list[AuditInput] | None = None, **kw: object
          ) -> AuditReport:
    args: dict[str, object] = {"topology": TOPOLOGY, "canaries": [CANARY],
                               "node_addresses": [OWN, PEER], "rate": RATE}
    args.update(kw)
    return run_audit([AuditInput.from_bytes("capture.pcap", data), *(traces or [])],
                     **args)  # type: ignore[arg-type]


def ground_truth_trace(seed: int = 3, senders: int = 16, seconds: float = SECONDS
                       ) -> AuditInput:
    """A node's cell trace (the mixing layer's own sink) plus ground-truth lines."""
    rng = Random(seed)
    clock = Clock()
    out = io.StringIO()
    sink = JsonLinesTraceSink(out, clock, Random(seed))
    events = []
    for link in ("peer-1", "peer-2"):
        for t in poisson_times(rng, RATE, 0.0, seconds):
            events.append((t, link, "out", "cover" if rng.random() < 0.7 else "real"))
        for t in poisson_times(rng, RATE, 0.0, seconds):
            events.append((t, link, "in", "cover"))
    for t, link, direction, kind in sorted(events):
        clock.advance(t - clock.seconds())
        sink.record(clock.seconds(), link, direction, CELL, kind)
    for i in range(200):
        weights = [rng.random() for _ in range(senders)]
        total = sum(weights)
        out.write(json.dumps({"t": i * seconds / 200, "dist": [w / total for w in weights]})
                  + "\n")
    return AuditInput.from_bytes("node.trace", out.getvalue().encode())


def statuses(report: AuditReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


# -- the clean capture ---------------------------------------------------------


def test_clean_capture_and_trace_pass_every_check() -> None:
    sc = Scenario()
    trace = ground_truth_trace()
    report = audit(sc.build(), traces=[trace])
    assert statuses(report) == {name: "pass" for name in CHECK_NAMES}, \
        {c.name: c.summary for c in report.checks}
    assert report.passed and report.failed == []
    doc = report.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["passed"] is True
    cells = report.check("cells")
    assert cells.figures["cell_sizes"] == [CELL]
    # the node's own writes (two hellos, then one cell a slot) and every traced cell;
    # tor's writes to the node (cut into 498-byte pieces) are not judged
    assert trace.data is not None
    traced = trace.data.count(b'"size"')
    assert cells.figures["frames"] == len(sc.out_socks) + len(sc.out_listen) + 3 + traced
    # the peer's address in the SOCKS request and ours on the control port belong there
    assert report.check("canary").figures["addresses_where_they_belong"] == 2
    timing = report.check("timing")
    assert timing.figures["links_tested"] == 2 + 2  # two capture links out, two traced
    anon = report.check("anonymity").figures
    assert anon["messages"] == 200 and 0.5 < anon["degree"] <= 1.0
    volume = report.check("volume").figures
    assert volume["real_cells"] > 0 and volume["cover_overhead"] == pytest.approx(
        volume["cover_cells"] / volume["real_cells"], rel=1e-3)


@pytest.mark.parametrize(("linktype", "form"), [(DLT_NULL, "pcapng"),
                                                (DLT_LINUX_SLL, "pcapng"),
                                                (DLT_EN10MB, "nanoseconds")])
def test_other_link_types_and_formats_read_the_same(linktype: int, form: str) -> None:
    sc = Scenario(linktype=linktype)
    sc.build()
    if form == "pcapng":
        data = sc.cap.to_bytes(pcapng=True)
    else:
        buf = io.BytesIO()
        writer = dpkt.pcap.Writer(buf, linktype=linktype, nano=True)
        for at, frame in sc.cap.sorted_packets():
            writer.writepkt(frame, ts=at)
        data = buf.getvalue()
    report = audit(data)
    assert report.passed, report.failed
    assert report.check("cells").figures["frames"] > 1000


# -- one fault, one check --------------------------------------------------------


def only_failure(report: AuditReport) -> str:
    failed = report.failed
    assert len(failed) == 1, {c.name: c.summary for c in report.checks if c.status == "fail"}
    return failed[0]


def test_a_dns_query_fails_the_dns_check_only() -> None:
    sc = Scenario()
    sc.cap.udp(50.0, (NODE, 53000), ("127.0.0.53", 53), make_dns_query("example.com"))
    report = audit(sc.build())
    assert only_failure(report) == "leak_dns"
    c = report.check("leak_dns")
    assert c.figures["queries"] == 1 and c.figures["names"] == ["example.com"]


def test_a_clearnet_connection_fails_the_loopback_check_only() -> None:
    sc = Scenario()
    s = sc.cap.tcp(("10.0.2.15", 44321), ("93.184.216.34", 443), 10.0)
    s.send(10.1, True, b"\x16\x03\x01" + bytes(200))
    report = audit(sc.build())
    assert only_failure(report) == "leak_off_loopback"
    c = report.check("leak_off_loopback")
    assert c.figures["packets"] == 3 and c.findings[0]["to"] == "93.184.216.34:443"


def test_a_connection_to_a_port_not_allowed_fails_the_connections_check_only() -> None:
    sc = Scenario()
    s = sc.cap.tcp((NODE, 40009), (NODE, 8080), 10.0)
    s.send(10.1, True, b"GET / HTTP/1.1\r\n\r\n")
    report = audit(sc.build())
    assert only_failure(report) == "leak_connections"
    assert report.check("leak_connections").figures["disallowed_ports"] == [8080]


def test_a_frame_of_the_wrong_size_fails_the_cells_check_only() -> None:
    sc = Scenario()
    sc.out_payload[100] = sc.rng.randbytes(CELL // 2)
    report = audit(sc.build())
    assert only_failure(report) == "cells"
    first = report.check("cells").findings[0]
    assert first["bytes"] == CELL // 2 and first["offset"] == (100 + HANDSHAKE_OUT) * CELL


def test_a_schedule_that_is_not_poisson_fails_the_timing_check_only() -> None:
    sc = Scenario()
    sc.out_socks = [1.0 + i / RATE for i in range(int((SECONDS - 1) * RATE))]
    report = audit(sc.build())
    assert only_failure(report) == "timing"
    bad = report.check("timing").findings
    assert len(bad) == 1 and f":{SOCKS} out" in bad[0]["link"] and bad[0]["p"] < 1e-6


def test_a_canary_in_the_clear_fails_the_canary_check_only() -> None:
    sc = Scenario()
    body = bytearray(sc.rng.randbytes(CELL))
    body[300:300 + len(CANARY)] = CANARY
    sc.out_payload[50] = bytes(body)
    report = audit(sc.build())
    assert only_failure(report) == "canary"
    hit = report.check("canary").findings
    assert [h["label"] for h in hit] == ["canary 0"]


@pytest.mark.parametrize("form", ["hex", "base64", "address"])
def test_canary_encodings_and_an_address_in_a_cell_are_found(form: str) -> None:
    import base64
    sc = Scenario()
    body = bytearray(sc.rng.randbytes(CELL))
    needle = {"hex": CANARY.hex().encode(),
              "base64": base64.b64encode(b"xx" + CANARY + b"y"),
              "address": PEER.encode()}[form]
    body[401:401 + len(needle)] = needle
    sc.out_payload[20] = bytes(body)
    report = audit(sc.build())
    assert only_failure(report) == "canary"


def test_a_needle_cut_by_a_segment_boundary_is_found() -> None:
    sc = Scenario()
    a = bytearray(sc.rng.randbytes(CELL))
    b = bytearray(sc.rng.randbytes(CELL))
    a[-5:] = CANARY[:5]
    b[:len(CANARY) - 5] = CANARY[5:]
    sc.out_payload[10] = bytes(a)
    sc.out_payload[11] = bytes(b)
    report = audit(sc.build())
    assert only_failure(report) == "canary"
    socks_bytes = 3 + (3 + len("isolation-user") + len("isolation-password")) + 5 + len(PEER) + 2
    assert report.check("canary").findings[0]["offset"] == (10 + 1 + HANDSHAKE_OUT) * CELL - 5 + \
        socks_bytes


def test_correlated_in_and_out_counts_fail_the_correlation_check_only() -> None:
    sc = Scenario()
    # every cell arriving on the listen stream leaves on the SOCKS stream 50 ms later
    sc.out_socks = [t + 0.05 for t in sc.in_listen]
    report = audit(sc.build())
    assert only_failure(report) == "correlation"
    node = report.check("correlation").findings[0]
    assert node["r"] > 0.3 and node["best_lag_bins"] in (0, 1) and node["p"] < 1e-6
    # each node is judged at alpha / nodes (Bonferroni over the capture's nodes)
    nodes = report.check("correlation").figures["nodes"]
    assert node["alpha"] == pytest.approx(0.01 / nodes)


def test_bursts_fail_the_burst_check() -> None:
    sc = Scenario()
    for i in range(0, 400, 40):
        sc.out_payload[i] = sc.rng.randbytes(CELL * 8)
    report = audit(sc.build())
    assert "bursts" in report.failed
    assert report.check("bursts").figures["max_cells_per_write"] == 8


def test_low_anonymity_fails_the_anonymity_check() -> None:
    lines = "".join(json.dumps({"t": i, "dist": [0.97, 0.01, 0.01, 0.01]}) + "\n"
                    for i in range(50))
    report = run_audit([AuditInput.from_bytes("sim.jsonl", lines.encode())])
    assert report.failed == ["anonymity"]
    f = report.check("anonymity").figures
    assert f["entropy_mean"] == pytest.approx(sender_entropy([0.97, 0.01, 0.01, 0.01]), abs=1e-4)
    assert f["anonymity_set"] < 2 and f["degree"] < 0.5


# -- the figures the checks rest on ------------------------------------------------


def test_entropy_and_mutual_information_known_answers() -> None:
    import numpy as np
    assert sender_entropy([0.25] * 4) == 2.0
    assert sender_entropy([1.0, 0.0]) == 0.0
    a = np.array([0, 1] * 50)
    assert mutual_information(a, a) == pytest.approx(1.0)
    assert mutual_information(a, np.zeros(100, dtype=np.int64)) == 0.0


def test_thresholds_parse_and_refuse() -> None:
    th = Thresholds.parse(["timing.alpha=0.05", "volume.max_cover_overhead=3"])
    assert th["timing.alpha"] == 0.05 and th["volume.max_cover_overhead"] == 3.0
    assert th.of("timing") == {"alpha": 0.05, "min_intervals": 30, "constant_max_cv": 0.1,
                               "constant_max_rate_error": 0.1}
    assert Thresholds.parse(["volume.max_cover_overhead=none"])["volume.max_cover_overhead"] \
        is None
    for bad in (["nope.x=1"], ["timing.alpha"], ["timing.alpha=abc"], ["timing.alpha=-1"],
                ["timing.alpha=nan"], ["timing.alpha=2"], ["bursts.bin=0"],
                ["timing.alpha=none"]):
        with pytest.raises(AuditError):
            Thresholds.parse(bad)
    assert set(THRESHOLDS) >= {f"{c}.{k}" for c in CHECK_NAMES
                              for k in Thresholds().of(c)}


def test_a_threshold_changes_the_verdict() -> None:
    sc = Scenario()
    sc.cap.udp(50.0, (NODE, 53000), ("127.0.0.53", 53), make_dns_query("example.com"))
    report = audit(sc.build(), thresholds=Thresholds.parse(["leak_dns.max_queries=1"]))
    assert report.passed
    assert report.check("leak_dns").thresholds == {"max_queries": 1.0}


# -- bad input --------------------------------------------------------------------


def test_bad_inputs_are_typed_errors(tmp_path: object) -> None:
    with pytest.raises(AuditError, match="neither a pcap"):
        AuditInput.from_bytes("x.bin", b"\x00\x01\x02\x03garbage")
    with pytest.raises(AuditError, match="line 2"):
        run_audit([AuditInput.from_bytes("t.jsonl", b'{"t": 1, "link": "a", "dir": "out", '
                                          b'"size": 996, "kind": "real"}\n{"t": NaN}\n')])
    with pytest.raises(AuditError, match="sums to"):
        run_audit([AuditInput.from_bytes("t.jsonl", b'{"t": 1, "dist": [0.5, 0.2]}\n')])
    with pytest.raises(AuditError, match="'dir'"):
        run_audit([AuditInput.from_bytes("t.jsonl", b'{"t": 1, "link": "a", "dir": "up", '
                                          b'"size": 996, "kind": "real"}\n')])
    with pytest.raises(AuditError, match="cannot read"):
        load_input("/nonexistent/capture.pcap")
    with pytest.raises(AuditError, match="8 random bytes"):
        run_audit([AuditInput.from_bytes("t.jsonl", b"")], canaries=[b"abc"])
    with pytest.raises(AuditError, match="nothing to audit"):
        run_audit([])


def test_a_truncated_capture_keeps_what_is_whole() -> None:
    data = Scenario().build()
    report = audit(data[:len(data) // 2 + 37])
    assert report.inputs[0]["records"] > 1000
    assert "cells" not in report.failed  # the write cut by the end is not a misaligned frame


def test_out_of_order_and_retransmitted_segments_are_reassembled() -> None:
    sc = Scenario()
    sc.build()
    pk = sc.cap.packets
    rng = random.Random(1)
    # swap some neighbouring data segments and repeat a few (retransmissions)
    for i in range(20, len(pk) - 2, 97):
        pk[i], pk[i + 1] = (pk[i + 1][0], pk[i][1]), (pk[i][0], pk[i + 1][1])
    pk += [pk[rng.randrange(20, len(pk))] for _ in range(10)]
    report = audit(sc.cap.to_bytes())
    assert "cells" not in report.failed and "canary" not in report.failed


def test_ground_truth_from_the_mixing_simulation_gives_the_simulations_figures() -> None:
    from aegis_hidden.mixing import PROFILES
    from aegis_hidden.sim import MixnetScenario, simulate

    out = io.StringIO()
    sc = MixnetScenario(PROFILES["balanced"], senders=20, burn_in=10.0, measure=30.0,
                        drain=30.0, message_rate=0.5)
    result = simulate(sc, seed=4, ground_truth=out)
    assert simulate(sc, seed=4).entropy_mean == result.entropy_mean  # the sink changes nothing
    report = run_audit([AuditInput.from_bytes("mixsim.jsonl", out.getvalue().encode())])
    anon = report.check("anonymity")
    assert anon.figures["messages"] == result.measured > 50
    assert anon.figures["entropy_mean"] == pytest.approx(result.entropy_mean, abs=1e-4)
    assert anon.figures["anonymity_set"] == pytest.approx(result.anonymity_set, rel=1e-3)
    assert anon.figures["senders_median"] == 20
    assert anon.plots["series"]


API = 18080
B32 = "c" * 52 + ".b32.i2p"


def test_the_api_port_carries_plaintext_by_design_and_is_not_searched() -> None:
    sc = Scenario()
    s = sc.cap.tcp((NODE, 40010), (NODE, API), 5.0)
    s.send(5.1, True, b"POST /api/network/send HTTP/1.1\r\n\r\n{\"peer\": \"" + PEER.encode()
           + b"\", \"body\": \"" + CANARY.hex().encode() + b"\"}")
    data = sc.build()
    topo = Topology(socks=[SOCKS], control=[CONTROL], listen=[LISTEN], api=[API],
                    nodes=[[SOCKS, LISTEN]])
    assert audit(data, topology=topo).passed
    without = audit(data, topology=Topology(socks=[SOCKS], control=[CONTROL], listen=[LISTEN],
                                            other=[API], nodes=[[SOCKS, LISTEN]]))
    assert without.failed == ["canary"]
    assert {h["label"] for h in without.check("canary").findings} == {"canary 0 (hex)", PEER}


def sam_stream(sc: Scenario, *, status: bytes = b"RESULT=OK", cells: int = 40,
               bad_at: int | None = None) -> None:
    s = sc.cap.tcp((NODE, 40020), (NODE, 17656), 2.0)
    s.send(2.1, True, b"HELLO VERSION MIN=3.1 MAX=3.3\n")
    s.send(2.11, False, b"HELLO REPLY RESULT=OK VERSION=3.3\n")
    s.send(2.12, True, b"STREAM CONNECT ID=aegis DESTINATION=" + B32.encode()
           + b" SILENT=false\n")
    s.send(2.5, False, b"STREAM STATUS " + status + b"\n")
    s.send(2.6, True, hello(sc.rng))
    s.send(2.7, False, hello(sc.rng))
    for i, t in enumerate(poisson_times(sc.rng, RATE, 3.0, 3.0 + cells / RATE)):
        s.send(t, True, sc.rng.randbytes(CELL + 10 if i == bad_at else CELL))


def test_a_sam_stream_is_read_as_cells_after_stream_status() -> None:
    sc = Scenario()
    sam_stream(sc)
    topo = Topology(socks=[SOCKS], control=[CONTROL], listen=[LISTEN], sam=[17656],
                    nodes=[[SOCKS, LISTEN]])
    report = audit(sc.build(), topology=topo, node_addresses=[OWN, PEER, B32])
    assert report.passed, report.failed
    # the peer's .b32.i2p name in STREAM CONNECT belongs there
    assert report.check("canary").figures["addresses_where_they_belong"] == 3
    assert report.inputs[0]["streams"]["tcp sam"] == 1

    sc = Scenario()
    sam_stream(sc, bad_at=7)
    report = audit(sc.build(), topology=topo)
    assert report.failed == ["cells"]
    assert ":17656 out" in report.check("cells").findings[0]["where"]


def test_a_refused_sam_stream_carries_no_cells() -> None:
    sc = Scenario()
    sam_stream(sc, status=b"RESULT=CANT_REACH_PEER", cells=0)
    report = audit(sc.build(), topology=Topology(socks=[SOCKS], control=[CONTROL],
                                                 listen=[LISTEN], sam=[17656],
                                                 nodes=[[SOCKS, LISTEN]]))
    assert report.passed
    assert not any(":17656" in lk["link"] for lk in report.check("bursts").plots["links"])


def test_i2pd_forwarding_with_a_destination_line_is_read_as_cells() -> None:
    sc = Scenario()
    s = sc.cap.tcp((NODE, 40030), (NODE, LISTEN), 3.0)
    s.send(3.1, True, b"A" * 516 + b"\n" + hello(sc.rng))  # i2pd names the peer first
    s.send(3.2, False, hello(sc.rng))
    s.send(3.3, False, sc.rng.randbytes(CELL - 1))  # the node writes a short frame
    report = audit(sc.build())
    assert report.failed == ["cells"]
    assert report.check("cells").findings[0]["where"].startswith("127.0.0.1:40030 ->")


def test_a_constant_rate_profile_is_judged_by_its_spacing() -> None:
    sc = Scenario()
    sc.out_socks = [1.0 + i / RATE for i in range(int((SECONDS - 1) * RATE))]
    sc.out_listen = [1.3 + i / RATE for i in range(int((SECONDS - 1) * RATE))]
    report = audit(sc.build(), constant=True)
    timing = report.check("timing")
    assert timing.status == "pass" and timing.figures["schedule"] == "constant"
    # Poisson departures are not a constant rate
    report = audit(Scenario().build(), constant=True)
    assert report.check("timing").status == "fail"
    assert all(r["cv"] > 0.5 for r in report.check("timing").findings)


def test_handshake_flights_are_left_out_of_the_traffic_checks() -> None:
    # a minute: the flights at the start of both streams, in and out in the same
    # second, would outweigh the rest of a short capture
    data = Scenario(seconds=60.0).build()
    report = audit(data)
    assert report.passed, {c.name: c.summary for c in report.checks if c.status == "fail"}
    assert report.check("bursts").figures["max_cells_per_write"] == 1
    counted = audit(data, skip_first=0)
    assert {"bursts", "correlation"} <= set(counted.failed)
    assert counted.check("bursts").figures["max_cells_per_write"] == 13


def test_timing_with_a_fitted_rate_uses_the_lilliefors_null() -> None:
    """With no expected rate the audit fits λ to the same gaps; the plain KS p-value
    is then far too large (an off node's own trace passed at p 0.012). The
    Lilliefors p-value is calibrated under the null and separates the steady pace."""
    import numpy as np
    from scipy import stats

    from aegis_hidden.audit._checks import _lilliefors_exp_p

    rng = np.random.default_rng(11)
    null = []
    for _ in range(200):
        gaps = rng.exponential(0.5, 112)
        d = float(stats.kstest(gaps, "expon", args=(0, gaps.mean())).statistic)
        null.append(_lilliefors_exp_p(d, gaps.size))
    assert np.mean(np.asarray(null) < 0.01) <= 0.03  # about 1 % under the null
    assert np.mean(np.asarray(null) < 0.5) == pytest.approx(0.5, abs=0.1)
    # two steady paces superposed (a node's own messages and its acks), 75 s
    times = np.sort(np.concatenate([np.arange(0, 75, 1.2) + 0.3, np.arange(0, 75, 1.37) + 0.9]))
    gaps = np.diff(times)
    res = stats.kstest(gaps, "expon", args=(0, gaps.mean()))
    assert _lilliefors_exp_p(float(res.statistic), gaps.size) < 0.01 / 3 < res.pvalue
