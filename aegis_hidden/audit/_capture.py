"""One pass over a pcap/pcapng capture: leaks, canaries, and the node's cell streams.

dpkt reads the file (pcap with micro- or nanosecond stamps, pcapng; Ethernet,
loopback DLT_NULL, Linux cooked SLL/SLL2, raw IP); the headers are parsed
here with ``struct``, which is several times faster than building dpkt's
objects for every packet. TCP is reassembled per direction in sequence order
(retransmissions trimmed, early segments held until the gap fills; a gap that
never fills is skipped and the stream's cell checks stop there).

A stream is recognised by its first bytes (or its server port): a SOCKS5
client (tor's SOCKS port), a SAM v3 client (``HELLO VERSION``), tor's control
protocol, or a stream that opens with a clear hello cell (``AH`` + cell size:
tor or i2pd delivering a peer to the node's listen port). Past the SOCKS/SAM
preamble such a stream carries only cells, and each write (TCP segments up to
one with PSH) must end on a cell boundary.

Memory stays bounded by the number of streams, not the capture's size: every
byte is searched for the needles as it goes by, with a short overlap kept so
a needle cut by a segment boundary is still found.
"""

from __future__ import annotations

import base64
import functools
import io
import ipaddress
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import dpkt

from ..wire import MAGIC, MAX_CELL_SIZE, MIN_CELL_SIZE
from ._facts import Facts, Link
from ._model import MAX_FINDINGS, AuditError, AuditInput, Topology
from ._transport import _network_layer

_SYN, _FIN, _RST, _PSH, _ACK = 0x02, 0x01, 0x04, 0x08, 0x10
_V6_LOOPBACK = bytes(15) + b"\x01"
_DNS_PORTS = {53: "dns", 5353: "mdns", 5355: "llmnr"}
#: Bytes of a stream's start kept to recognise it and find its preamble's end.
_HEAD_MAX = 4096
#: Incoming writes closer than this (seconds) are one arrival: tor hands a flight
#: or a slot of the peer over in relay-cell pieces microseconds apart, while two
#: slots of a Poisson schedule at λ = 2 fall this close only 1 % of the time.
_JOIN = 0.005
#: Early segments held per direction before a gap is taken as lost.
_PENDING_MAX = 256
_SAM_OPEN = (b"STREAM CONNECT", b"STREAM ACCEPT")
_CONTROL_OPEN = (b"AUTHENTICATE", b"PROTOCOLINFO", b"AUTHCHALLENGE")

# Stream kinds (per connection) and the states of one direction.
_SOCKS, _SAM, _CONTROL, _CELLS, _OTHER = "socks", "sam", "control", "cells", "other"
_API = "api"  # the node's own API: plaintext by design, not searched
_HEAD, _IN_CELLS, _DONE = 0, 1, 2


@dataclass(frozen=True)
class Needle:
    data: bytes
    label: str  # what it stands for (never the secret itself)
    kind: str  # "canary" (never allowed) or "address" (allowed in SOCKS/SAM/control)


def canary_needles(canaries: Sequence[bytes], addresses: Sequence[str]) -> list[Needle]:
    """The byte strings searched for: each canary raw, in hex and in base64; each address."""
    out: list[Needle] = []
    for i, c in enumerate(canaries):
        if len(c) < 8:
            raise AuditError(f"canary {i} is {len(c)} bytes; at least 8 random bytes are "
                             "needed for a search without false hits")
        label = f"canary {i}"
        out.append(Needle(bytes(c), label, "canary"))
        out.append(Needle(c.hex().encode(), label + " (hex)", "canary"))
        out.append(Needle(c.hex().upper().encode(), label + " (HEX)", "canary"))
        for shift in range(3):  # base64 of the canary at any offset in a longer body
            # the characters made of the canary's bits only, whatever surrounds it
            enc = base64.b64encode(bytes(shift) + c)
            core = enc[(8 * shift + 5) // 6:(8 * (shift + len(c))) // 6]
            if len(core) >= 8:
                out.append(Needle(core, label + f" (base64+{shift})", "canary"))
    for a in addresses:
        name = a.strip().lower()
        service = name.removesuffix(".onion").removesuffix(".b32.i2p")
        if len(service) < 16:
            raise AuditError(f"address {a!r} is not a .onion or .b32.i2p name")
        out.append(Needle(service.encode(), name, "address"))
        out.append(Needle(service.upper().encode(), name + " (upper case)", "address"))
    return out


def iter_frames(inp: AuditInput) -> Iterator[tuple[int, float, bytes]]:
    """(link type, timestamp, frame) of every packet of a capture input."""
    with ExitStack() as stack:
        f: IO[bytes]
        if inp.data is not None:
            f = io.BytesIO(inp.data)
        elif inp.path is not None:
            try:
                f = stack.enter_context(inp.path.open("rb"))
            except OSError as e:
                raise AuditError(f"{inp.name}: cannot read: {e.strerror or e}") from None
        else:
            raise AuditError(f"{inp.name}: no data")
        head = f.read(4)
        f.seek(0)
        try:
            reader: Any = (dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a"
                           else dpkt.pcap.Reader(f))
        except (ValueError, dpkt.dpkt.Error) as e:
            raise AuditError(f"{inp.name}: not a capture dpkt can read: {e}") from None
        linktype = int(reader.datalink()) & 0x0FFFFFFF
        try:
            for ts, frame in reader:
                yield linktype, float(ts), frame
        except (struct.error, dpkt.dpkt.Error):
            return  # a capture cut short (tcpdump killed): keep what was whole


@functools.lru_cache(maxsize=4096)
def _ip_text(addr: bytes) -> str:
    return str(ipaddress.ip_address(addr))


class _Conn:
    __slots__ = ("client", "group", "halves", "kind", "loopback", "server", "where")

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int],
                 loopback: bool) -> None:
        self.client = client
        self.server = server
        self.kind: str | None = None
        self.loopback = loopback
        self.halves: list[_Half] = []
        self.where = (f"{_ip_text(client[0])}:{client[1]} -> "
                      f"{_ip_text(server[0])}:{server[1]}")
        self.group = ""


class _Half:
    __slots__ = (
        "cell_size",
        "conn",
        "from_client",
        "head",
        "hits",
        "last_ts",
        "link",
        "metas",
        "next_seq",
        "offset",
        "pending",
        "start",
        "state",
        "tail",
        "write_from",
        "write_ts",
    )

    def __init__(self, conn: _Conn, from_client: bool) -> None:
        self.conn = conn
        self.from_client = from_client
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[float, bytes, int]] = {}
        self.offset = 0
        self.head = bytearray()
        self.metas: list[tuple[float, int, int, int]] = []  # ts, start, end, psh
        self.tail = b""
        self.state = _HEAD
        self.start = 0  # stream offset where the cells begin
        self.cell_size = 0
        self.link: Link | None = None
        self.write_ts: float | None = None
        self.last_ts: float | None = None  # the previous write (incoming pieces join up)
        self.write_from = 0
        self.hits: list[tuple[Needle, int]] = []


def _socks_client_end(h: bytes) -> int | None:
    """Offset after a SOCKS5 greeting (+ user/password) and request; -1 if not SOCKS5."""
    if len(h) < 2:
        return None
    if h[0] != 5 or not 1 <= h[1] <= 16:
        return -1
    pos = 2 + h[1]
    if len(h) < pos:
        return None
    if 2 in h[2:pos] and len(h) > pos and h[pos] == 1:  # RFC 1929 user/password
        if len(h) < pos + 2:
            return None
        ulen = h[pos + 1]
        if len(h) < pos + 3 + ulen:
            return None
        pos += 3 + ulen + h[pos + 2 + ulen]
    return _socks_address_end(h, pos, request=True)


def _socks_address_end(h: bytes, pos: int, *, request: bool) -> int | None:
    if len(h) < pos + 5:
        return None
    if h[pos] != 5 or (request and h[pos + 1] not in (1, 2, 3)):
        return -1
    if not request and h[pos + 1] != 0:
        return -1  # the connection was refused: no cells follow
    atyp = h[pos + 3]
    if atyp == 1:
        end = pos + 4 + 4 + 2
    elif atyp == 4:
        end = pos + 4 + 16 + 2
    elif atyp == 3:
        end = pos + 5 + h[pos + 4] + 2
    else:
        return -1
    return end if len(h) >= end else None


def _socks_server_end(h: bytes) -> int | None:
    if len(h) < 2:
        return None
    if h[0] != 5:
        return -1
    pos = 2
    if h[1] == 2:  # user/password sub-negotiation answer
        if len(h) < 4:
            return None
        pos = 4
    elif h[1] != 0:
        return -1
    return _socks_address_end(h, pos, request=False)


def _lines_until(h: bytes, prefixes: tuple[bytes, ...]) -> int | None:
    """Offset after the first line starting with one of ``prefixes``."""
    pos = 0
    while True:
        nl = h.find(b"\n", pos)
        if nl < 0:
            return None
        if h[pos:nl].lstrip().startswith(prefixes):
            return nl + 1
        pos = nl + 1


def _cells_at(h: bytes, pos: int) -> int | None:
    """``pos`` if a clear hello starts there, else after one line (i2pd's destination
    line) if one does; None if more bytes are needed; -1 if neither."""
    if len(h) < pos + 4:
        return None
    if h[pos:pos + 2] == MAGIC:
        return pos
    nl = h.find(b"\n", pos, pos + 1024)
    if nl < 0:
        return None if len(h) < pos + 1024 else -1
    if len(h) < nl + 3:
        return None
    return nl + 1 if h[nl + 1:nl + 3] == MAGIC else -1


class CaptureReader:
    """Feeds on packets; :meth:`finish` returns the :class:`Facts` of the capture."""

    def __init__(self, name: str, topology: Topology | None, needles: Sequence[Needle],
                 cell_size: int) -> None:
        self.topology = topology or Topology()
        self.allowed = self.topology.allowed_ports
        self.relays = {(h, p) for h, p in self.topology.relays}
        self.needles = list(needles)
        self.overlap = max((len(n.data) for n in self.needles), default=1) - 1
        self.cell_size = cell_size
        self.facts = Facts(name, "capture", off_loopback=[], dns=[], connections=[], hits=[])
        self.halves: dict[tuple[bytes, int, bytes, int], _Half] = {}
        self.conns: list[_Conn] = []
        self.off: Counter[tuple[str, str, int, str, int]] = Counter()
        self.udp_flows: dict[tuple[bytes, int, bytes, int], int] = {}
        self.udp_hits: list[dict[str, Any]] = []
        self.dns_count = 0

    # -- packets -----------------------------------------------------------

    def feed_all(self, frames: Iterator[tuple[int, float, bytes]]) -> None:
        unpack = struct.unpack_from
        halves = self.halves
        facts = self.facts
        packets = 0
        first = last = None
        network_layer = _network_layer
        for linktype, ts, frame in frames:
            packets += 1
            if first is None:
                first = ts
            last = ts
            ip = network_layer(linktype, frame)
            if not ip:
                self._non_ip(linktype, frame)
                continue
            v = ip[0] >> 4
            if v == 4 and len(ip) >= 20:
                ihl = (ip[0] & 15) * 4
                total = (ip[2] << 8) | ip[3]
                proto = ip[9]
                src = ip[12:16]
                dst = ip[16:20]
                loop = ip[12] == 127 and ip[16] == 127
                if (ip[6] & 0x1F) or ip[7]:  # a later fragment: no transport header
                    if not loop:
                        self._off(src, dst, proto, 0, 0)
                    continue
                l4 = ip[ihl:total] if total >= ihl else ip[ihl:]
                cut = total - ihl - len(l4)  # bytes the capture did not keep (snap length)
            elif v == 6 and len(ip) >= 40:
                proto = ip[6]
                src = ip[8:24]
                dst = ip[24:40]
                loop = src == _V6_LOOPBACK and dst == _V6_LOOPBACK
                plen = (ip[4] << 8) | ip[5]
                l4 = ip[40:40 + plen]
                cut = plen - len(l4)
            else:
                self._non_ip(linktype, frame)
                continue
            if proto == 6 and len(l4) >= 20:
                sport, dport, seq = unpack("!HHI", l4)
                flags = l4[13]
                payload = l4[(l4[12] >> 4) * 4:]
                if not loop:
                    self._off(src, dst, 6, sport, dport)
                if dport in _DNS_PORTS and payload and not flags & _SYN:
                    self._dns(ts, src, sport, dst, dport, payload[2:], "tcp")
                key = (src, sport, dst, dport)
                half = halves.get(key)
                if half is None:
                    half = self._new_half(key, flags, loop)
                if flags & _SYN:
                    half.next_seq = (seq + 1) & 0xFFFFFFFF
                    continue
                if cut > 0:
                    self._truncated(half, seq, payload, cut)
                elif payload:
                    self._segment(half, seq, payload, ts, flags & _PSH)
            elif proto == 17 and len(l4) >= 8:
                sport, dport = unpack("!HH", l4)
                payload = l4[8:]
                if not loop:
                    self._off(src, dst, 17, sport, dport)
                if dport in _DNS_PORTS:
                    self._dns(ts, src, sport, dst, dport, payload, "udp")
                elif loop:
                    self.udp_flows.setdefault((src, sport, dst, dport), 0)
                if self.needles and payload:
                    for n in self.needles:
                        if n.data in payload:
                            self.udp_hits.append({
                                "what": n.kind, "label": n.label, "offset": payload.find(n.data),
                                "where": f"udp {_ip_text(src)}:{sport} -> {_ip_text(dst)}:{dport}",
                                "at": ts})
            elif not loop:
                self._off(src, dst, proto, 0, 0)
        facts.records += packets
        if first is not None:
            facts.start = first if facts.start is None else min(facts.start, first)
            facts.end = last if facts.end is None else max(facts.end or 0.0, last or 0.0)

    def _non_ip(self, linktype: int, frame: bytes) -> None:
        etype = -1
        if linktype == 1 and len(frame) >= 14:
            etype = (frame[12] << 8) | frame[13]
        elif linktype == 113 and len(frame) >= 16:
            etype = (frame[14] << 8) | frame[15]
        elif linktype == 276 and len(frame) >= 2:
            etype = (frame[0] << 8) | frame[1]
        self.off[("non-ip", f"ethertype 0x{etype:04x}" if etype >= 0 else f"dlt {linktype}",
                  0, "", 0)] += 1

    def _off(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> None:
        s, d = _ip_text(src), _ip_text(dst)
        if (s, sport) in self.relays or (d, dport) in self.relays:
            return
        name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.get(proto, f"ip proto {proto}")
        self.off[(name, s, sport, d, dport)] += 1

    def _dns(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes,
             proto: str) -> None:
        self.dns_count += 1
        if len(self.facts.dns or []) >= MAX_FINDINGS:
            return
        names: list[str] = []
        try:
            msg = dpkt.dns.DNS(payload)
            if msg.qr != dpkt.dns.DNS_Q:
                self.dns_count -= 1
                return  # an answer, not a query from this side
            names = [str(q.name) for q in msg.qd]
        except (dpkt.dpkt.Error, struct.error, IndexError, ValueError, UnicodeDecodeError):
            pass
        assert self.facts.dns is not None
        self.facts.dns.append({"at": ts, "protocol": _DNS_PORTS[dport], "transport": proto,
                               "from": f"{_ip_text(src)}:{sport}",
                               "to": f"{_ip_text(dst)}:{dport}", "names": names})

    # -- TCP ---------------------------------------------------------------

    def _new_half(self, key: tuple[bytes, int, bytes, int], flags: int, loop: bool) -> _Half:
        src, sport, dst, dport = key
        rev = self.halves.get((dst, dport, src, sport))
        if rev is not None:
            conn = rev.conn
        else:
            if flags & _SYN and not flags & _ACK:
                client, server = (src, sport), (dst, dport)
            elif flags & _SYN:  # SYN-ACK first: the sender is the server
                client, server = (dst, dport), (src, sport)
            elif (sport in self.allowed) != (dport in self.allowed):
                client, server = ((dst, dport), (src, sport)) if sport in self.allowed \
                    else ((src, sport), (dst, dport))
            else:  # joined mid-stream: guess the lower port is the server's
                client, server = ((src, sport), (dst, dport)) if dport <= sport \
                    else ((dst, dport), (src, sport))
            conn = _Conn(client, server, loop)
            if loop and server[1] in self.topology.api:
                conn.kind = _API
            self.conns.append(conn)
        half = _Half(conn, (src, sport) == conn.client)
        conn.halves.append(half)
        self.halves[key] = half
        return half

    def _segment(self, half: _Half, seq: int, payload: bytes, ts: float, psh: int) -> None:
        if half.next_seq is None:
            half.next_seq = seq
        d = (seq - half.next_seq) & 0xFFFFFFFF
        if d == 0:
            self._deliver(half, payload, ts, psh)
        elif d < 0x80000000:  # early: hold it until the gap fills
            if seq not in half.pending:
                half.pending[seq] = (ts, payload, psh)
            if len(half.pending) > _PENDING_MAX:
                self._skip_gap(half)
            return
        else:  # a retransmission, or overlapping what was delivered
            back = 0x100000000 - d
            if back >= len(payload):
                return
            self._deliver(half, payload[back:], ts, psh)
        while half.pending:
            nxt = half.next_seq
            item = half.pending.pop(nxt, None)
            if item is None:
                # drop held segments now wholly behind, keep the rest waiting
                for s in [s for s in half.pending if (s - nxt) & 0xFFFFFFFF >= 0x80000000]:
                    t, p, f = half.pending.pop(s)
                    back = (nxt - s) & 0xFFFFFFFF
                    if back < len(p):
                        half.pending[nxt] = (t, p[back:], f)
                if nxt not in half.pending:
                    return
                continue
            self._deliver(half, item[1], item[0], item[2])

    def _truncated(self, half: _Half, seq: int, payload: bytes, cut: int) -> None:
        """A segment the capture kept only part of: the stream's cells cannot be judged on."""
        self.facts.streams["truncated packets"] += 1
        if half.next_seq is None or seq == half.next_seq:
            half.next_seq = (seq + len(payload) + cut) & 0xFFFFFFFF
            half.offset += len(payload) + cut
            half.tail = b""
        self._stop(half, "truncated packet: cell checks stopped")

    def _stop(self, half: _Half, why: str) -> None:
        if half.state != _DONE:
            if half.state == _IN_CELLS:
                half.write_ts = None  # the write it was in cannot be judged
            half.state = _DONE
            half.conn.kind = half.conn.kind or _OTHER
            self.facts.streams[why] += 1

    def _skip_gap(self, half: _Half) -> None:
        """A segment never arrived: stop judging cells on this direction, go on searching."""
        assert half.next_seq is not None
        nxt = half.next_seq
        first = min(half.pending, key=lambda s: (s - nxt) & 0xFFFFFFFF)
        lost = (first - nxt) & 0xFFFFFFFF
        half.next_seq = first
        half.offset += lost
        half.tail = b""
        self._stop(half, "gap (lost segments): cell checks stopped")

    def _deliver(self, half: _Half, data: bytes, ts: float, psh: int) -> None:
        assert half.next_seq is not None
        half.next_seq = (half.next_seq + len(data)) & 0xFFFFFFFF
        start = half.offset
        end = start + len(data)
        half.offset = end
        if self.needles and half.conn.kind != _API:
            buf = half.tail + data if half.tail else data
            skip = len(half.tail)
            for n in self.needles:
                pos = buf.find(n.data)
                while pos >= 0:
                    if pos + len(n.data) > skip:
                        half.hits.append((n, start - skip + pos))
                    pos = buf.find(n.data, pos + 1)
            if self.overlap:
                half.tail = buf[-self.overlap:]
        state = half.state
        if state == _IN_CELLS:
            self._cells(half, ts, start, end, psh)
        elif state == _HEAD:
            if len(half.head) < _HEAD_MAX:
                half.head += data[:_HEAD_MAX - len(half.head)]
            half.metas.append((ts, start, end, psh))
            self._resolve(half)

    # -- recognising streams -----------------------------------------------

    def _resolve(self, half: _Half) -> None:
        conn = half.conn
        h = bytes(half.head)
        if half.from_client and conn.kind is None:
            conn.kind = self._kind(conn, h)
            if conn.kind is None:
                return self._give_up_if_full(half)
            for other in conn.halves:
                if other is not half and other.state == _HEAD:
                    self._resolve(other)
        kind = conn.kind
        if kind is None:
            return self._give_up_if_full(half)
        if kind in (_CONTROL, _OTHER):
            return self._done(half)
        end: int | None
        if kind == _SOCKS:
            pre = _socks_client_end(h) if half.from_client else _socks_server_end(h)
            end = pre if pre is None or pre < 0 else _cells_at(h, pre)
        elif kind == _SAM:
            pre = _lines_until(h, _SAM_OPEN if half.from_client else (b"STREAM STATUS",))
            if pre is not None and not half.from_client:
                status = h[:pre].rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
                if b"RESULT=OK" not in status:
                    pre = -1  # the peer was not reached: no cells follow
            end = pre if pre is None or pre < 0 else _cells_at(h, pre)
        else:  # _CELLS
            end = _cells_at(h, 0)
        if end is None:
            return self._give_up_if_full(half)
        if end < 0:
            return self._done(half)
        size = (h[end + 2] << 8) | h[end + 3]
        half.cell_size = size if MIN_CELL_SIZE <= size <= MAX_CELL_SIZE else self.cell_size
        half.start = end
        half.state = _IN_CELLS
        node_is_client = kind in (_SOCKS, _SAM)
        port = conn.server[1]
        if not conn.group:
            conn.group = self.topology.node_of(port)
        direction = "out" if half.from_client == node_is_client else "in"
        half.link = Link(f"{conn.where} {direction}", conn.group, direction, half.cell_size)
        self.facts.links.append(half.link)
        self.facts.streams[f"{kind} cell stream direction"] += 1
        metas, half.metas = half.metas, []
        half.head = bytearray()
        for ts, start, stop, psh in metas:
            self._cells(half, ts, start, stop, psh)

    def _kind(self, conn: _Conn, h: bytes) -> str | None:
        port = conn.server[1]
        topo = self.topology
        if port in topo.control or h.startswith(_CONTROL_OPEN):
            return _CONTROL
        if h.startswith(b"HELLO VERSION") or port in topo.sam:
            return _SAM
        if len(h) >= 2 and h[0] == 5 and 1 <= h[1] <= 16:
            if len(h) < 2 + h[1]:
                return None
            if all(m in (0, 2) for m in h[2:2 + h[1]]):
                return _SOCKS
        if len(h) < 4:
            return None
        if port in topo.socks:
            return _SOCKS
        if h[:2] == MAGIC or port in topo.listen:
            return _CELLS
        at = _cells_at(h, 0)
        if at is None:
            return None
        return _CELLS if at >= 0 else _OTHER

    def _give_up_if_full(self, half: _Half) -> None:
        if len(half.head) >= _HEAD_MAX:
            if half.from_client and half.conn.kind is None:
                half.conn.kind = _OTHER
            self._done(half)

    def _done(self, half: _Half) -> None:
        half.state = _DONE
        half.metas = []
        half.head = bytearray()

    # -- cells -------------------------------------------------------------

    def _cells(self, half: _Half, ts: float, start: int, end: int, psh: int) -> None:
        s = half.start
        if end <= s:
            return
        if half.write_ts is None:
            half.write_ts = ts
            half.write_from = max(start, s)
        if psh:
            self._write_done(half, end)

    def _write_done(self, half: _Half, end: int, *, judge: bool = True) -> None:
        """One write on a cell stream: a departure; the node's own writes are judged.

        Only what the node writes (``out``) must be whole cells: what tor or i2pd
        write to the node is cut as their own cells arrive (tor: 498 bytes of
        stream data per relay cell), which says nothing about the node. A write
        counts the cell boundaries it completes, so cut-up incoming cells still
        add up to the cells that arrived, and incoming writes less than
        :data:`_JOIN` apart are one arrival (one flight or slot of the peer).
        """
        link = half.link
        assert link is not None and half.write_ts is not None
        start = half.write_from - half.start
        stop = end - half.start
        cs = half.cell_size
        cells = stop // cs - start // cs
        if (link.direction == "in" and half.last_ts is not None
                and half.write_ts - half.last_ts < _JOIN):
            link.cells[-1] += cells  # the next piece of what arrived together
        else:
            link.times.append(half.write_ts)
            link.cells.append(cells)
        half.last_ts = half.write_ts
        if link.direction == "out":
            size = stop - start
            link.sizes[size] += 1
            self.facts.frames_checked += 1
            if judge and (stop % cs or start % cs):
                f = self.facts
                if len(f.misaligned) < MAX_FINDINGS:
                    f.misaligned.append({"where": link.name, "at": half.write_ts,
                                         "offset": start, "bytes": size, "cell_size": cs})
                else:
                    f.streams["misaligned beyond the findings kept"] += 1
        half.write_ts = None

    # -- the end -----------------------------------------------------------

    def finish(self) -> Facts:
        facts = self.facts
        assert facts.off_loopback is not None and facts.connections is not None
        assert facts.hits is not None
        for (proto, s, sport, d, dport), count in self.off.most_common():
            facts.off_loopback.append({"protocol": proto, "from": f"{s}:{sport}" if sport else s,
                                       "to": f"{d}:{dport}" if dport else d, "packets": count})
        for conn in self.conns:
            for half in conn.halves:
                if half.state == _IN_CELLS and half.write_ts is not None:
                    # a write the capture ended in: counted, not judged
                    self._write_done(half, half.offset, judge=False)
                for needle, offset in half.hits:
                    if needle.kind == "address" and self._address_belongs(half, offset):
                        facts.hits_allowed += 1
                        continue
                    facts.hits.append({"what": needle.kind, "label": needle.label,
                                       "offset": offset, "where": "tcp " + conn.where +
                                       (" (client to server)" if half.from_client
                                        else " (server to client)"),
                                       "stream": conn.kind or _OTHER})
            if conn.loopback and conn.server[1] not in _DNS_PORTS:
                facts.connections.append({"protocol": "tcp", "where": conn.where,
                                          "port": conn.server[1], "stream": conn.kind or _OTHER})
            facts.streams[f"tcp {conn.kind or _OTHER}"] += 1
        for (src, sport, dst, dport) in self.udp_flows:
            facts.connections.append({"protocol": "udp", "port": dport, "stream": "udp",
                                      "where": f"{_ip_text(src)}:{sport} -> "
                                               f"{_ip_text(dst)}:{dport}"})
        facts.hits.extend(self.udp_hits)
        facts.streams["dns queries"] = self.dns_count
        return facts

    def _address_belongs(self, half: _Half, offset: int) -> bool:
        """An address inside the SOCKS request, SAM commands, or tor's control protocol."""
        kind = half.conn.kind
        if kind == _CONTROL:
            return True
        if kind == _SAM or (kind == _SOCKS and half.from_client):
            return half.link is None or offset < half.start  # before the cells begin
        return False


def read_capture(inp: AuditInput, topology: Topology | None, needles: Sequence[Needle],
                 cell_size: int) -> Facts:
    reader = CaptureReader(inp.name, topology, needles, cell_size)
    reader.feed_all(iter_frames(inp))
    return reader.finish()
