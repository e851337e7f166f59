"""What a capture's tor connections look like on the wire: Tor's TLS, or obfs4.

Pure functions over the bytes of a pcap or pcapng file (``tcpdump -w``,
Wireshark, ``dumpcap``): no capture library, no sockets. Each TCP connection is
reassembled per direction from its SYN on (a connection the capture joined
mid-stream is reported but not judged), and its first bytes are judged:

- **tls**: the client's first bytes are a TLS record header, ``16 03`` (a
  handshake record, TLS 1.x): what a censor's DPI matches for Tor's relay links.
- **obfs4**: neither direction starts with a TLS header and the first
  :data:`ENTROPY_WINDOW` bytes of each direction that has that many are close to
  uniformly random (Shannon entropy at least :data:`OBFS4_MIN_ENTROPY` bits per
  byte; random data measures about 7.95 over 4 KiB). obfs4's handshake and
  frames are meant to be indistinguishable from random bytes.
- **unknown**: anything else (too few bytes to judge, plaintext, another protocol).
"""

from __future__ import annotations

import enum
import ipaddress
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Bytes of each direction the entropy is measured over.
ENTROPY_WINDOW = 4096
#: obfs4 verdict needs at least this many bits per byte over the window.
OBFS4_MIN_ENTROPY = 7.5
#: Bytes kept per direction (enough for the window and the headers).
KEEP = 64 * 1024

TLS_HEADER = b"\x16\x03"

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",  # microseconds
    b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">",  # nanoseconds
}
_ETHERNET, _NULL, _RAW, _RAW_BSD, _RAW_OPENBSD, _SLL, _SLL2 = 1, 0, 101, 12, 14, 113, 276
_SYN, _ACK = 0x02, 0x10


class CaptureError(ValueError):
    """The file is not a pcap or pcapng capture this reader understands."""


class TransportLook(enum.Enum):
    TLS = "tls"
    OBFS4 = "obfs4"
    UNKNOWN = "unknown"


Endpoint = tuple[str, int]


@dataclass
class _Direction:
    base: int | None = None  # sequence number of the first payload byte
    segments: dict[int, bytes] = field(default_factory=dict)

    def add(self, seq: int, payload: bytes) -> None:
        if not payload or self.base is None:
            return
        offset = (seq - self.base) & 0xFFFFFFFF
        if offset < KEEP and offset not in self.segments:
            self.segments[offset] = payload

    def stream(self) -> bytes:
        out = bytearray()
        for offset in sorted(self.segments):
            if offset > len(out):
                break  # a gap: the capture lost a segment; stop at what is contiguous
            out += self.segments[offset][len(out) - offset:]
            if len(out) >= KEEP:
                break
        return bytes(out[:KEEP])


@dataclass
class Connection:
    """One TCP connection: ``client`` sent the SYN; the first bytes of each direction."""

    client: Endpoint
    server: Endpoint
    to_server: bytes
    to_client: bytes
    from_start: bool  # the capture saw the SYN (else the bytes are not the stream start)


@dataclass(frozen=True)
class ConnectionReport:
    client: Endpoint
    server: Endpoint
    look: TransportLook
    bytes_to_server: int
    bytes_to_client: int
    head_to_server: str  # first 8 bytes, hex
    head_to_client: str
    tls_header: bool  # either direction starts with 16 03
    entropy_to_server: float | None  # over the first ENTROPY_WINDOW bytes (None: fewer)
    entropy_to_client: float | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"client": f"{self.client[0]}:{self.client[1]}",
                "server": f"{self.server[0]}:{self.server[1]}", "look": self.look.value,
                "bytes_to_server": self.bytes_to_server, "bytes_to_client": self.bytes_to_client,
                "head_to_server": self.head_to_server, "head_to_client": self.head_to_client,
                "tls_header": self.tls_header, "entropy_to_server": self.entropy_to_server,
                "entropy_to_client": self.entropy_to_client, "why": self.why}

    def line(self) -> str:
        def ent(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        return (f"{self.client[0]}:{self.client[1]} -> {self.server[0]}:{self.server[1]}  "
                f"{self.look.value:7}  first bytes {self.head_to_server or '-'} / "
                f"{self.head_to_client or '-'}  entropy {ent(self.entropy_to_server)} / "
                f"{ent(self.entropy_to_client)} bits/byte  ({self.bytes_to_server} / "
                f"{self.bytes_to_client} bytes; {self.why})")


def shannon_entropy(data: bytes) -> float:
    """Bits per byte of the byte distribution of ``data`` (0 for empty)."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def read_pcap(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(link type, frame) of every packet of a classic pcap or a pcapng file."""
    if data[:4] == _PCAPNG_SHB:
        yield from _read_pcapng(data)
        return
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise CaptureError("neither a pcap nor a pcapng file (capture with tcpdump -w)")
    order = _PCAP_MAGIC[data[:4]]
    (linktype,) = struct.unpack(order + "I", data[20:24])
    linktype &= 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack(order + "IIII", data[pos:pos + 16])
        pos += 16
        if pos + incl > len(data):
            return  # a capture cut short (tcpdump killed): keep what is whole
        yield linktype, data[pos:pos + incl]
        pos += incl


_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_PCAPNG_IDB, _PCAPNG_SPB, _PCAPNG_EPB = 1, 3, 6
_PCAPNG_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


def _read_pcapng(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The packets of a pcapng file: every section (its byte order from its
    header block), its interfaces' link types and snap lengths, enhanced and
    simple packet blocks; other blocks (statistics, name resolution) are skipped."""
    order = ""
    interfaces: list[tuple[int, int]] = []  # (link type, snap length) of this section
    pos = 0
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == _PCAPNG_SHB:
            magic = data[pos + 8:pos + 12]
            if magic not in _PCAPNG_ORDER:
                raise CaptureError(f"pcapng section at byte {pos}: bad byte-order magic")
            order, interfaces = _PCAPNG_ORDER[magic], []
        elif not order:
            raise CaptureError("a pcapng file must start with a section header block")
        kind, total = struct.unpack(order + "II", data[pos:pos + 8])
        if total < 12 or total % 4 or pos + total > len(data):
            if pos + total > len(data) and total >= 12:
                return  # a capture cut short: keep what is whole
            raise CaptureError(f"pcapng block at byte {pos}: bad length {total}")
        body = data[pos + 8:pos + total - 4]
        pos += total
        if kind == _PCAPNG_IDB and len(body) >= 8:
            linktype, _, snap = struct.unpack(order + "HHI", body[:8])
            interfaces.append((linktype, snap))
        elif kind == _PCAPNG_EPB and len(body) >= 20:
            iface, _, _, incl, _ = struct.unpack(order + "IIIII", body[:20])
            if iface >= len(interfaces) or 20 + incl > len(body):
                raise CaptureError(f"pcapng packet block before byte {pos}: interface "
                                   f"{iface} or length {incl} out of range")
            yield interfaces[iface][0], body[20:20 + incl]
        elif kind == _PCAPNG_SPB and len(body) >= 4 and interfaces:
            (orig,) = struct.unpack(order + "I", body[:4])
            snap = interfaces[0][1] or orig
            yield interfaces[0][0], body[4:4 + min(orig, snap)]


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    if linktype == _ETHERNET:
        etype, off = (struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0), 14
        if etype == 0x8100 and len(frame) >= 18:
            etype, off = struct.unpack("!H", frame[16:18])[0], 18
        return frame[off:] if etype in (0x0800, 0x86DD) else None
    if linktype == _SLL:
        return frame[16:] if len(frame) >= 16 and frame[14:16] in (b"\x08\x00", b"\x86\xdd") \
            else None
    if linktype == _SLL2:
        return frame[20:] if len(frame) >= 20 and frame[0:2] in (b"\x08\x00", b"\x86\xdd") \
            else None
    if linktype == _NULL:
        return frame[4:] if len(frame) >= 4 else None
    if linktype in (_RAW, _RAW_BSD, _RAW_OPENBSD):
        return frame
    return None


def _tcp(packet: bytes) -> tuple[Endpoint, Endpoint, int, int, bytes] | None:
    """(src, dst, seq, flags, payload) of a TCP segment in an IPv4/IPv6 packet."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        if packet[9] != 6 or ihl < 20:
            return None
        src, dst = str(ipaddress.IPv4Address(packet[12:16])), \
            str(ipaddress.IPv4Address(packet[16:20]))
        segment = packet[ihl:total] if total >= ihl else packet[ihl:]
    elif version == 6 and len(packet) >= 40:
        if packet[6] != 6:
            return None
        length = struct.unpack("!H", packet[4:6])[0]
        src, dst = str(ipaddress.IPv6Address(packet[8:24])), \
            str(ipaddress.IPv6Address(packet[24:40]))
        segment = packet[40:40 + length]
    else:
        return None
    if len(segment) < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", segment[:8])
    data_off = (segment[12] >> 4) * 4
    flags = segment[13]
    if data_off < 20:
        return None
    return (src, sport), (dst, dport), seq, flags, segment[data_off:]


def tcp_connections(packets: Iterable[tuple[int, bytes]]) -> list[Connection]:
    """Reassemble the first bytes of every TCP connection, in order of first packet."""
    conns: dict[frozenset[Endpoint], tuple[list[Endpoint | None], dict[Endpoint, _Direction]]] \
        = {}
    for linktype, frame in packets:
        ip = _network_layer(linktype, frame)
        seg = _tcp(ip) if ip is not None else None
        if seg is None:
            continue
        src, dst, seq, flags, payload = seg
        key = frozenset((src, dst))
        roles, dirs = conns.setdefault(key, ([None, None], {}))
        d = dirs.setdefault(src, _Direction())
        if flags & _SYN:
            d.base = (seq + 1) & 0xFFFFFFFF
            if not flags & _ACK and roles[0] is None:
                roles[0], roles[1] = src, dst
            continue
        if d.base is None and roles[0] is None:
            d.base = seq  # joined mid-stream: keep something to show, judged as such
        d.add(seq, payload)
    out = []
    for key, (roles, dirs) in conns.items():
        client, server = roles
        from_start = client is not None and server is not None
        if client is None or server is None:
            a, b = sorted(key)
            client, server = (b, a) if a[1] < b[1] else (a, b)  # guess: lower port = server
        out.append(Connection(
            client, server,
            dirs[client].stream() if client in dirs else b"",
            dirs[server].stream() if server in dirs else b"", from_start))
    return out


def classify(to_server: bytes, to_client: bytes, *, from_start: bool = True
             ) -> tuple[TransportLook, str]:
    """The verdict on one connection's first bytes, and why."""
    if not from_start:
        return TransportLook.UNKNOWN, "the capture started mid-connection"
    if to_server.startswith(TLS_HEADER):
        return TransportLook.TLS, "TLS handshake record header 16 03 at the stream start"
    if to_client.startswith(TLS_HEADER):
        return TransportLook.TLS, "the server answers with a TLS record header 16 03"
    windows = [d[:ENTROPY_WINDOW] for d in (to_server, to_client) if len(d) >= ENTROPY_WINDOW]
    if not windows:
        return TransportLook.UNKNOWN, (f"fewer than {ENTROPY_WINDOW} bytes in either "
                                       "direction: too little to judge")
    low = min(shannon_entropy(w) for w in windows)
    if low >= OBFS4_MIN_ENTROPY:
        return TransportLook.OBFS4, (f"no TLS header, >= {OBFS4_MIN_ENTROPY} bits/byte: "
                                     "looks uniformly random")
    return TransportLook.UNKNOWN, (f"no TLS header but only {low:.2f} bits/byte: not "
                                   "random-looking")


def transport_report(capture: bytes, ports: Sequence[int] = ()) -> list[ConnectionReport]:
    """Every TCP connection of a pcap (to one of ``ports`` if given), judged."""
    reports = []
    for c in tcp_connections(read_pcap(capture)):
        if ports and c.server[1] not in ports:
            continue
        look, why = classify(c.to_server, c.to_client, from_start=c.from_start)

        def entropy(d: bytes) -> float | None:
            return round(shannon_entropy(d[:ENTROPY_WINDOW]), 4) \
                if len(d) >= ENTROPY_WINDOW else None

        reports.append(ConnectionReport(
            c.client, c.server, look, len(c.to_server), len(c.to_client),
            c.to_server[:8].hex(" "), c.to_client[:8].hex(" "),
            c.to_server.startswith(TLS_HEADER) or c.to_client.startswith(TLS_HEADER),
            entropy(c.to_server), entropy(c.to_client), why))
    return reports
