"""The capture check: TLS vs obfs4-looking tor connections in a pcap (built in memory)."""

from __future__ import annotations

import ipaddress
import json
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.audit import (
    CaptureError,
    TransportLook,
    classify,
    read_pcap,
    shannon_entropy,
    tcp_connections,
    transport_report,
)
from aegis_hidden.audit.__main__ import main

CLIENT_HELLO = bytes.fromhex("160301020001000200") + b"\x03\x03" + bytes(500)
SERVER_HELLO = bytes.fromhex("160303007a020000760303") + bytes(200)


def _ip4(src: str, dst: str, tcp: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr + tcp


def _ip6(src: str, dst: str, tcp: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + tcp


def _tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


class Capture:
    """A pcap being written: ``linktype`` 1 (Ethernet, as tcpdump -i lo), 113 or 101."""

    def __init__(self, linktype: int = 1) -> None:
        self.linktype = linktype
        self.frames: list[bytes] = []

    def packet(self, ip: bytes, v6: bool = False) -> None:
        etype = b"\x86\xdd" if v6 else b"\x08\x00"
        if self.linktype == 1:
            frame = bytes(12) + etype + ip
        elif self.linktype == 113:
            frame = bytes(14) + etype + ip
        else:
            frame = ip
        self.frames.append(frame)

    def connection(self, client: tuple[str, int], server: tuple[str, int], up: bytes,
                   down: bytes, *, syn: bool = True, mss: int = 1000,
                   shuffle: random.Random | None = None) -> None:
        v6 = ":" in client[0]
        ip = _ip6 if v6 else _ip4
        cs, ss = 1000, 5_000_000
        if syn:
            self.packet(ip(client[0], server[0], _tcp(client[1], server[1], cs, 0x02)), v6)
            self.packet(ip(server[0], client[0], _tcp(server[1], client[1], ss, 0x12)), v6)
        segs = []
        for data, (a, b, isn) in ((up, (client, server, cs)), (down, (server, client, ss))):
            for off in range(0, len(data), mss):
                segs.append(ip(a[0], b[0], _tcp(a[1], b[1], (isn + 1 + off) & 0xFFFFFFFF, 0x18,
                                                data[off:off + mss])))
        if shuffle is not None:
            segs += segs[:3]  # retransmissions
            shuffle.shuffle(segs)
        for s in segs:
            self.packet(s, v6)

    def bytes(self) -> bytes:
        out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, self.linktype)
        for f in self.frames:
            out += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
        return out


def rand(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


BRIDGE = ("127.0.0.1", 40001)
RELAY = ("127.0.0.1", 40002)


def sample() -> bytes:
    cap = Capture()
    cap.connection(("127.0.0.1", 50001), BRIDGE, rand(6000, 1), rand(9000, 2),
                   shuffle=random.Random(3))
    cap.connection(("127.0.0.1", 50002), RELAY, CLIENT_HELLO + rand(3000), SERVER_HELLO)
    cap.connection(("127.0.0.1", 50003), ("127.0.0.1", 40003), rand(8000), rand(8000),
                   syn=False)
    cap.connection(("127.0.0.1", 50004), ("127.0.0.1", 40004), b"GET / HTTP/1.1\r\n" * 400,
                   b"")
    return cap.bytes()


def test_entropy_figures() -> None:
    assert shannon_entropy(b"") == 0.0
    assert shannon_entropy(bytes(4096)) == 0.0
    assert shannon_entropy(bytes(range(256)) * 16) == pytest.approx(8.0)
    assert 7.9 < shannon_entropy(rand(4096)) < 8.0


def test_bridge_stream_is_obfs4_and_relay_stream_is_tls() -> None:
    reports = {r.server: r for r in transport_report(sample())}
    bridge, relay = reports[BRIDGE], reports[RELAY]
    assert bridge.look is TransportLook.OBFS4 and not bridge.tls_header
    assert bridge.bytes_to_server == 6000 and bridge.bytes_to_client == 9000  # reassembled
    assert bridge.entropy_to_server is not None and bridge.entropy_to_server >= 7.9
    assert bridge.head_to_server == rand(6000, 1)[:8].hex(" ")
    assert relay.look is TransportLook.TLS and relay.tls_header
    assert relay.head_to_server.startswith("16 03 01")
    assert relay.head_to_client.startswith("16 03 03")
    mid = reports[("127.0.0.1", 40003)]
    assert mid.look is TransportLook.UNKNOWN and "mid-connection" in mid.why
    plain = reports[("127.0.0.1", 40004)]
    assert plain.look is TransportLook.UNKNOWN and "not random-looking" in plain.why


def test_port_filter_and_client_side() -> None:
    (only,) = transport_report(sample(), [BRIDGE[1]])
    assert only.client == ("127.0.0.1", 50001) and only.server == BRIDGE


@pytest.mark.parametrize("linktype", [1, 113, 101])
def test_link_types_and_ipv6(linktype: int) -> None:
    cap = Capture(linktype)
    cap.connection(("::1", 50001), ("::1", 443), rand(5000), rand(5000))
    cap.connection(("127.0.0.1", 50002), RELAY, CLIENT_HELLO, SERVER_HELLO)
    looks = {r.server: r.look for r in transport_report(cap.bytes())}
    assert looks == {("::1", 443): TransportLook.OBFS4, RELAY: TransportLook.TLS}


def test_a_tls_header_anywhere_at_the_start_is_tls_and_short_streams_are_not_judged() -> None:
    assert classify(rand(5000), SERVER_HELLO)[0] is TransportLook.TLS  # server answers TLS
    look, why = classify(rand(100), rand(100))
    assert look is TransportLook.UNKNOWN and "too little to judge" in why
    # random-looking up but a low-entropy answer: not obfs4
    assert classify(rand(5000), bytes(5000))[0] is TransportLook.UNKNOWN


def test_lost_segment_stops_the_stream_at_the_gap() -> None:
    cap = Capture()
    cap.connection(("127.0.0.1", 50001), BRIDGE, rand(5000), b"")
    del cap.frames[3]  # the second data segment of the client
    (c,) = tcp_connections(read_pcap(cap.bytes()))
    assert c.to_server == rand(5000)[:1000]


def test_not_a_pcap() -> None:
    with pytest.raises(CaptureError, match="neither a pcap nor a pcapng"):
        list(read_pcap(b"GIF89a" + bytes(40)))
    with pytest.raises(CaptureError, match="byte-order magic"):
        list(read_pcap(b"\x0a\x0d\x0d\x0a" + bytes(40)))


def _pcapng(frames: list[bytes], linktype: int, order: str = "<", simple: bool = False) -> bytes:
    """A pcapng file written by hand: section header, one interface, the packets
    (enhanced packet blocks, or simple ones), a statistics block to skip."""
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = len(body) + 12
        return struct.pack(order + "II", kind, n) + body + struct.pack(order + "I", n)

    out = block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack(order + "HHI", linktype, 0, 0))
    for f in frames:
        if simple:
            out += block(3, struct.pack(order + "I", len(f)) + f)
        else:
            out += block(6, struct.pack(order + "IIIII", 0, 0, 0, len(f), len(f)) + f)
    return out + block(5, struct.pack(order + "III", 0, 0, 0))


@pytest.mark.parametrize(("order", "simple"), [("<", False), (">", False), ("<", True)])
def test_pcapng_reads_as_the_same_packets(order: str, simple: bool) -> None:
    cap = Capture()
    cap.connection(("127.0.0.1", 50001), BRIDGE, rand(3000), rand(2000))
    data = _pcapng(cap.frames, 1, order, simple)
    assert list(read_pcap(data)) == list(read_pcap(cap.bytes()))
    assert [r.to_json() for r in transport_report(data)] == \
        [r.to_json() for r in transport_report(cap.bytes())]


def test_pcapng_written_by_dpkt() -> None:
    """An independent writer (dpkt's) gives the same packets."""
    import io

    import dpkt

    cap = Capture()
    cap.connection(("127.0.0.1", 50001), BRIDGE, rand(3000), b"")
    out = io.BytesIO()
    writer = dpkt.pcapng.Writer(out, linktype=1)
    for i, f in enumerate(cap.frames):
        writer.writepkt(f, ts=1.0 + i)
    assert list(read_pcap(out.getvalue())) == [(1, f) for f in cap.frames]


def test_pcapng_cut_short_keeps_whole_packets_and_bad_blocks_are_refused() -> None:
    cap = Capture()
    cap.connection(("127.0.0.1", 50001), BRIDGE, rand(3000), b"")
    data = _pcapng(cap.frames, 1)
    whole = list(read_pcap(data))
    assert list(read_pcap(data[:-10])) == whole  # only the statistics block cut
    stats_len = 24
    cut = data[:len(data) - stats_len - 7]  # the last packet block cut in the middle
    assert list(read_pcap(cut)) == whole[:-1]
    bad = bytearray(data)
    bad[-stats_len + 4:-stats_len + 8] = struct.pack("<I", 13)  # not a multiple of 4
    with pytest.raises(CaptureError, match="bad length"):
        list(read_pcap(bytes(bad)))


def test_truncated_capture_keeps_whole_packets() -> None:
    data = sample()
    assert len(list(read_pcap(data[:-5]))) == len(list(read_pcap(data))) - 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(blob: bytes) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    try:
        transport_report(header + blob)
        transport_report(blob)
    except CaptureError:
        pass


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(sample())
    assert main(["transport", str(path), "--port", str(BRIDGE[1]), "--expect", "obfs4"]) == 0
    assert "obfs4" in capsys.readouterr().out
    assert main(["transport", str(path), "--port", str(RELAY[1]), "--expect", "obfs4"]) == 1
    capsys.readouterr()
    assert main(["transport", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["look"] for c in doc["connections"]} == {"obfs4", "tls", "unknown"}
    (tmp_path / "bad").write_bytes(b"nope")
    assert main(["transport", str(tmp_path / "bad")]) == 2
