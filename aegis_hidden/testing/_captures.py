"""Synthetic packet captures for the audit's tests and benchmark, written with dpkt.

:class:`SyntheticCapture` collects TCP streams (SYN, SYN-ACK, then data
segments with correct sequence numbers and PSH set, one segment per write)
and UDP datagrams, and writes them, in time order, as a pcap or pcapng file on
Ethernet (as ``tcpdump -i lo`` writes), loopback DLT_NULL or Linux cooked SLL.
Nothing is sent anywhere: the packets exist only in the file.
"""

from __future__ import annotations

import io
import ipaddress
import struct
from collections.abc import Iterator
from random import Random
from typing import IO

import dpkt

DLT_NULL, DLT_EN10MB, DLT_LINUX_SLL = 0, 1, 113
_SYN, _ACK, _PSH = 0x02, 0x10, 0x08

Endpoint = tuple[str, int]


def _ip_header(src: str, dst: str, proto: int, payload_len: int) -> tuple[bytes, bool]:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, 64, proto, 0,
                           s.packed, d.packed), False
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, proto, 64, s.packed,
                       d.packed), True


def link_frame(linktype: int, ip: bytes, v6: bool) -> bytes:
    """An IP packet wrapped for ``linktype``."""
    if linktype == DLT_EN10MB:
        return bytes(12) + (b"\x86\xdd" if v6 else b"\x08\x00") + ip
    if linktype == DLT_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, bytes(8), 0x86DD if v6 else 0x0800) + ip
    if linktype == DLT_NULL:
        return struct.pack("<I", 30 if v6 else 2) + ip
    raise ValueError(f"link type {linktype} is not one the synthetic captures write")


def tcp_packet(src: Endpoint, dst: Endpoint, seq: int, flags: int, payload: bytes = b"",
               ack: int = 0) -> tuple[bytes, bool]:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0) + payload
    hdr, v6 = _ip_header(src[0], dst[0], 6, len(tcp))
    return hdr + tcp, v6


def udp_packet(src: Endpoint, dst: Endpoint, payload: bytes) -> tuple[bytes, bool]:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    hdr, v6 = _ip_header(src[0], dst[0], 17, len(udp))
    return hdr + udp, v6


class SyntheticStream:
    """One TCP connection being written; :meth:`send` adds one write (one segment)."""

    def __init__(self, capture: SyntheticCapture, client: Endpoint, server: Endpoint,
                 at: float, handshake: bool = True) -> None:
        self.capture = capture
        self.client = client
        self.server = server
        self.seq = {True: 1000, False: 7_000_000}
        if handshake:
            capture.add(at, *tcp_packet(client, server, self.seq[True] - 1, _SYN))
            capture.add(at, *tcp_packet(server, client, self.seq[False] - 1, _SYN | _ACK,
                                        ack=self.seq[True]))

    def send(self, at: float, from_client: bool, payload: bytes, psh: bool = True) -> None:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        flags = _ACK | (_PSH if psh else 0)
        self.capture.add(at, *tcp_packet(src, dst, self.seq[from_client], flags, payload,
                                         ack=self.seq[not from_client]))
        self.seq[from_client] += len(payload)


class SyntheticCapture:
    def __init__(self, linktype: int = DLT_EN10MB) -> None:
        self.linktype = linktype
        self.packets: list[tuple[float, bytes]] = []

    def add(self, at: float, ip: bytes, v6: bool) -> None:
        self.packets.append((at, link_frame(self.linktype, ip, v6)))

    def tcp(self, client: Endpoint, server: Endpoint, at: float = 0.0, *,
            handshake: bool = True) -> SyntheticStream:
        return SyntheticStream(self, client, server, at, handshake)

    def udp(self, at: float, src: Endpoint, dst: Endpoint, payload: bytes) -> None:
        self.add(at, *udp_packet(src, dst, payload))

    def sorted_packets(self) -> Iterator[tuple[float, bytes]]:
        return iter(sorted(self.packets, key=lambda p: p[0]))  # stable: same-time order kept

    def write(self, out: IO[bytes], *, pcapng: bool = False) -> None:
        writer = (dpkt.pcapng.Writer(out, linktype=self.linktype) if pcapng
                  else dpkt.pcap.Writer(out, linktype=self.linktype))
        for at, frame in self.sorted_packets():
            writer.writepkt(frame, ts=at)

    def to_bytes(self, *, pcapng: bool = False) -> bytes:
        buf = io.BytesIO()
        self.write(buf, pcapng=pcapng)
        return buf.getvalue()


def poisson_times(rng: Random, rate: float, start: float, end: float) -> list[float]:
    """Event times of a Poisson process of ``rate`` per second in [start, end)."""
    out = []
    t = start + rng.expovariate(rate)
    while t < end:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def dns_query(name: str, ident: int = 0x1234) -> bytes:
    """The bytes of a DNS A query for ``name``."""
    q = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)])
    return bytes(q)
