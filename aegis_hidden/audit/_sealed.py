"""The leak trap: run a whole program in a network namespace whose only way out is watched.

``aegis-hidden audit sealed -- COMMAND...`` (root only) creates a network
namespace holding a loopback interface (up, so tor, i2pd and the node still talk
to each other on 127.0.0.1) and one end of a veth pair. The namespace's default
routes (IPv4 and IPv6) point at a gateway on that veth whose link-layer address
is fixed to one no host has (:data:`GATEWAY_MAC`), so every packet the program
sends towards anything but loopback really leaves on the veth (nothing waits
for ARP), and the far end, in the parent namespace, is captured with tcpdump.
The parent end has no address, forwarding is off on it, and frames addressed to
a link-layer address not its own are dropped by the parent's stack: what tries
to leave is seen and goes nowhere.

Every frame of that capture is a packet that tried to leave: UDP, TCP, ICMP,
DNS queries (by port 53: the namespace keeps the host's resolv.conf, so a
lookup goes to the host's resolver through the gateway), ARP for an on-link
address. One kind is left out and listed separately: the MLD reports the
kernel sends by itself when the veth comes up, for the solicited-node group of
the trap's own IPv6 address (interface housekeeping, not the program).

Exit status: the command's own status when nothing tried to leave,
:data:`EXIT_LEAKED` when something did, :data:`EXIT_UNAVAILABLE` when the trap
cannot be built here (not root, no ``ip``/``tcpdump``, namespaces refused), in
which case the command is not run.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import dpkt

#: The command ran and something tried to leave the namespace.
EXIT_LEAKED = 76
#: The trap could not be built (not root, tools missing, namespaces refused); nothing ran.
EXIT_UNAVAILABLE = 77

INNER_IPV4 = "10.199.0.2"
GATEWAY_IPV4 = "10.199.0.1"
INNER_IPV6 = "fd5e:a1ed::2"
GATEWAY_IPV6 = "fd5e:a1ed::1"
#: The gateway's link-layer address inside the namespace: locally administered and
#: owned by no interface, so the parent's stack drops the frames it captures.
GATEWAY_MAC = "02:00:5e:10:00:01"
#: Time given to the last packets to reach the capture after the command exits.
SETTLE_SECONDS = 0.5
#: How long tcpdump may take to say it is listening.
CAPTURE_START_TIMEOUT = 10.0
#: The packets printed in the report (the count is always exact).
MAX_LISTED = 50

_TOOLS = ("ip", "tcpdump")
_MLD_REPORTS = (131, 143)  # MLDv1 and MLDv2 listener reports


class SealUnavailable(Exception):
    """The trap cannot be built here; the message says why and what would fix it."""


@dataclass(frozen=True)
class SealPlan:
    """The names of one trap and the commands that build, watch and remove it."""

    namespace: str
    outer: str  # veth end in the parent namespace, captured
    inner: str  # veth end inside, the namespace's only way out

    @classmethod
    def for_pid(cls, pid: int) -> SealPlan:
        # interface names are at most 15 bytes; a pid has at most 7 digits
        return cls(f"aegis-sealed-{pid}", f"aeS{pid}", f"aeI{pid}")

    def setup_commands(self) -> list[list[str]]:
        ns, inner, outer = self.namespace, self.inner, self.outer
        inside = ["ip", "netns", "exec", ns]
        return [
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", ns],
            ["sysctl", "-qw", f"net.ipv4.conf.{outer}.forwarding=0",
             f"net.ipv6.conf.{outer}.disable_ipv6=1"],
            ["ip", "link", "set", outer, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            # no link-local address, no router solicitation, no duplicate-address probe:
            # the veth says nothing by itself (bar the MLD reports, see the module doc)
            [*inside, "sysctl", "-qw", f"net.ipv6.conf.{inner}.addr_gen_mode=1",
             f"net.ipv6.conf.{inner}.accept_ra=0",
             f"net.ipv6.conf.{inner}.router_solicitations=0",
             f"net.ipv6.conf.{inner}.dad_transmits=0"],
            ["ip", "-n", ns, "addr", "add", f"{INNER_IPV4}/24", "dev", inner],
            ["ip", "-n", ns, "link", "set", inner, "up"],
            ["ip", "-n", ns, "addr", "add", f"{INNER_IPV6}/64", "dev", inner, "nodad"],
            ["ip", "-n", ns, "neigh", "add", GATEWAY_IPV4, "lladdr", GATEWAY_MAC,
             "nud", "permanent", "dev", inner],
            ["ip", "-n", ns, "neigh", "add", GATEWAY_IPV6, "lladdr", GATEWAY_MAC,
             "nud", "permanent", "dev", inner],
            ["ip", "-n", ns, "route", "add", "default", "via", GATEWAY_IPV4, "dev", inner],
            ["ip", "-n", ns, "-6", "route", "add", "default", "via", GATEWAY_IPV6, "dev", inner],
        ]

    def capture_command(self, pcap: Path) -> list[str]:
        # -p: no promiscuous mode needed (a veth hands every frame to the capture);
        # --immediate-mode: each packet read as it arrives (else the kernel holds it in a
        # buffer block for up to a second, and the packets of a short command are still
        # there, never read, when tcpdump is stopped); -U: each packet written at once,
        # so a killed trap still leaves a readable file
        return ["tcpdump", "-i", self.outer, "-n", "-p", "--immediate-mode", "-U",
                "-s", "262144", "-w", str(pcap)]

    def exec_command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def teardown_commands(self) -> list[list[str]]:
        # deleting the namespace destroys the inner end, and with it the pair
        return [["ip", "netns", "delete", self.namespace],
                ["ip", "link", "delete", self.outer]]


@dataclass(frozen=True)
class Escape:
    """One frame seen on the namespace's way out."""

    at: float  # seconds since the command started (negative: during set-up)
    kind: str  # ipv4, ipv6, arp, other
    protocol: str  # udp, tcp, icmp, icmpv6, arp, or the ethertype / IP protocol number
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    size: int = 0  # bytes of the frame
    dns: str | None = None  # "A? example.com." for a DNS query
    note: str = ""

    def line(self) -> str:
        def ep(host: str, port: int | None) -> str:
            if port is None:
                return host
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        text = (f"{self.at:+9.3f}s  {self.protocol:6} {ep(self.src, self.sport)} -> "
                f"{ep(self.dst, self.dport)}  ({self.size} bytes)")
        if self.dns:
            text += f"  DNS query {self.dns}"
        if self.note:
            text += f"  {self.note}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 6), "kind": self.kind, "protocol": self.protocol,
                "src": self.src, "dst": self.dst, "sport": self.sport, "dport": self.dport,
                "size": self.size, "dns": self.dns, "note": self.note}


@dataclass
class SealResult:
    """What one run of the trap saw."""

    command_status: int | None  # None: the command never ran
    escapes: list[Escape] = field(default_factory=list)
    housekeeping: list[Escape] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> int:
        return exit_status(self.command_status, self.escapes)

    def summary(self) -> str:
        n = len(self.escapes)
        text = f"{n} packet{'' if n == 1 else 's'} tried to leave"
        if self.housekeeping:
            text += (f" ({len(self.housekeeping)} MLD report"
                     f"{'' if len(self.housekeeping) == 1 else 's'} of the trap's own "
                     "interface not counted)")
        return text

    def report_lines(self) -> list[str]:
        lines = [f"leak trap: {self.summary()}; the command ran {self.seconds:.1f} s and "
                 f"exited {self.command_status}"]
        for escape in self.escapes[:MAX_LISTED]:
            lines.append("  " + escape.line())
        if len(self.escapes) > MAX_LISTED:
            lines.append(f"  ... and {len(self.escapes) - MAX_LISTED} more")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"packets_tried_to_leave": len(self.escapes),
                "command_status": self.command_status, "status": self.status,
                "seconds": round(self.seconds, 3),
                "escapes": [e.to_json() for e in self.escapes],
                "housekeeping": [e.to_json() for e in self.housekeeping]}


def exit_status(command_status: int | None, escapes: Sequence[Escape]) -> int:
    """:data:`EXIT_LEAKED` if anything tried to leave, else the command's status."""
    if escapes:
        return EXIT_LEAKED
    if command_status is None:
        return EXIT_UNAVAILABLE
    return command_status


def check_available(geteuid: Callable[[], int] | None = None,
                    which: Callable[[str], str | None] = shutil.which) -> None:
    """Raise :class:`SealUnavailable` unless this process could build the trap."""
    if (geteuid or os.geteuid)() != 0:
        raise SealUnavailable("the leak trap needs root (it creates a network namespace "
                              "and a veth pair); run it as root, or run the command "
                              "without the trap")
    missing = [tool for tool in (*_TOOLS, "sysctl") if which(tool) is None]
    if missing:
        raise SealUnavailable(f"the leak trap needs {', '.join(missing)} (Debian: iproute2, "
                              "tcpdump, procps)")


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _solicited_node_groups(payload: bytes) -> list[str] | None:
    """The group addresses of an MLD report (None when it cannot be parsed)."""
    if len(payload) < 4:
        return None
    groups = []
    count = int.from_bytes(payload[2:4], "big")
    pos = 4
    for _ in range(count):
        if pos + 20 > len(payload):
            return None
        aux, sources = payload[pos + 1], int.from_bytes(payload[pos + 2:pos + 4], "big")
        groups.append(_address(payload[pos + 4:pos + 20]))
        pos += 20 + 16 * sources + 4 * aux
    return groups


def _own_solicited_node_group() -> str:
    low = ipaddress.IPv6Address(INNER_IPV6).packed[-3:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low))


def _is_housekeeping(ip6: Any) -> bool:
    """An MLD report of the trap's own solicited-node group (the kernel's, at link-up)."""
    icmp = ip6.data
    if not isinstance(icmp, dpkt.icmp6.ICMP6) or icmp.type not in _MLD_REPORTS:
        return False
    if icmp.type == 131:  # MLDv1: the group follows max delay and reserved
        raw = bytes(icmp.data)
        groups = [_address(raw[4:20])] if len(raw) >= 20 else None
    else:
        groups = _solicited_node_groups(bytes(icmp.data))
    return bool(groups) and all(g == _own_solicited_node_group() for g in groups or [])


def _dns_question(payload: bytes) -> str | None:
    try:
        msg = dpkt.dns.DNS(payload)
    except (dpkt.UnpackError, IndexError, ValueError):
        return "(not parseable as DNS)"
    if msg.qr != dpkt.dns.DNS_Q or not msg.qd:
        return None
    names = {1: "A", 28: "AAAA", 33: "SRV", 16: "TXT", 12: "PTR", 5: "CNAME", 15: "MX"}
    return ", ".join(f"{names.get(q.type, q.type)}? {q.name}." for q in msg.qd)


def describe(at: float, frame: bytes) -> tuple[Escape, bool]:
    """The escape one Ethernet frame is, and whether it is the trap's own housekeeping."""
    size = len(frame)
    try:
        eth = dpkt.ethernet.Ethernet(frame)
    except (dpkt.UnpackError, IndexError, ValueError):
        return Escape(at, "other", "?", "?", "?", size=size, note="not an Ethernet frame"), \
            False
    net = eth.data
    if isinstance(net, dpkt.arp.ARP):
        what = "who-has" if net.op == dpkt.arp.ARP_OP_REQUEST else f"op {net.op}"
        return Escape(at, "arp", "arp", _address(net.spa), _address(net.tpa), size=size,
                      note=what), False
    if isinstance(net, dpkt.ip.IP | dpkt.ip6.IP6):
        kind = "ipv4" if isinstance(net, dpkt.ip.IP) else "ipv6"
        src, dst = _address(net.src), _address(net.dst)
        transport = net.data
        sport = dport = None
        dns = None
        if isinstance(transport, dpkt.udp.UDP | dpkt.tcp.TCP):
            protocol = "udp" if isinstance(transport, dpkt.udp.UDP) else "tcp"
            sport, dport = transport.sport, transport.dport
            payload = bytes(transport.data)
            if 53 in (dport, 5353) and payload:
                dns = _dns_question(payload[2:] if protocol == "tcp" else payload)
        elif isinstance(transport, dpkt.icmp.ICMP):
            protocol = "icmp"
        elif isinstance(transport, dpkt.icmp6.ICMP6):
            protocol = "icmpv6"
        else:
            protocol = str(net.p if kind == "ipv4" else net.nxt)
        housekeeping = kind == "ipv6" and _is_housekeeping(net)
        return Escape(at, kind, protocol, src, dst, sport, dport, size, dns), housekeeping
    return Escape(at, "other", f"0x{eth.type:04x}", eth.src.hex(":"), eth.dst.hex(":"),
                  size=size), False


def read_capture(data: bytes, start: float = 0.0) -> tuple[list[Escape], list[Escape]]:
    """(escapes, housekeeping) of a pcap of the trap's veth; times relative to ``start``."""
    escapes: list[Escape] = []
    housekeeping: list[Escape] = []
    if not data:
        return escapes, housekeeping
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(data))
        packets = list(_whole_packets(reader))
    except (ValueError, dpkt.NeedData) as e:
        raise SealUnavailable(f"the trap's capture cannot be read: {e}") from None
    for ts, frame in packets:
        escape, own = describe(float(ts) - start, frame)
        (housekeeping if own else escapes).append(escape)
    return escapes, housekeeping


def _whole_packets(reader: Any) -> Iterator[tuple[float, bytes]]:
    it = iter(reader)
    while True:
        try:
            ts, frame = next(it)
        except StopIteration:
            return
        except dpkt.NeedData:  # a record header cut short (tcpdump killed): nothing more
            return
        yield ts, frame


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SealUnavailable(f"cannot build the trap: {' '.join(cmd)} failed: "
                              f"{(done.stderr or done.stdout).strip() or done.returncode}")


def _wait_listening(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once tcpdump says it is listening (its first stderr line)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if b"listening on" in seen:
                return
        elif proc.poll() is not None:
            break
    proc.kill()
    raise SealUnavailable("tcpdump did not start capturing the trap's interface: "
                          + seen.decode("utf-8", "replace").strip())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # tcpdump flushes and closes the file
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def probe() -> None:
    """Build an empty trap and remove it: :class:`SealUnavailable` if that fails."""
    check_available()
    plan = SealPlan.for_pid(os.getpid())
    try:
        for cmd in plan.setup_commands():
            _run(cmd)
    finally:
        _teardown(plan)


def _teardown(plan: SealPlan) -> None:
    for cmd in plan.teardown_commands():
        subprocess.run(cmd, capture_output=True, check=False)


def run_sealed(argv: Sequence[str], *, pcap: Path | None = None,
               settle: float = SETTLE_SECONDS) -> SealResult:
    """Run ``argv`` in a fresh trap and say what tried to leave.

    ``pcap``: keep the veth capture there (else it is deleted). The command's
    standard input, output and error are this process's. Raises
    :class:`SealUnavailable` (before running anything) when the trap cannot be built.
    """
    if not argv:
        raise ValueError("no command to run in the trap")
    check_available()
    plan = SealPlan.for_pid(os.getpid())
    with tempfile.TemporaryDirectory(prefix="aegis-sealed-") as tmp:
        capture = pcap if pcap is not None else Path(tmp) / "veth.pcap"
        tcpdump: subprocess.Popen[bytes] | None = None
        status: int | None = None
        start = time.time()
        try:
            for cmd in plan.setup_commands():
                _run(cmd)
            tcpdump = subprocess.Popen(plan.capture_command(capture),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _wait_listening(tcpdump, CAPTURE_START_TIMEOUT)
            start = time.time()
            child = subprocess.Popen(plan.exec_command(argv))
            while True:
                try:
                    status = child.wait()
                    break
                except KeyboardInterrupt:  # the child got the same SIGINT: wait for it
                    continue
            seconds = time.time() - start
            time.sleep(settle)
        finally:
            if tcpdump is not None:
                _stop(tcpdump)
            _teardown(plan)
        escapes, housekeeping = read_capture(capture.read_bytes() if capture.exists()
                                             else b"", start)
    return SealResult(status, escapes, housekeeping, seconds)


def main_sealed(argv: Sequence[str], *, pcap: Path | None = None, json_out: Path | None = None,
                out: IO[str] | None = None) -> int:
    """What the CLI runs: the trap, its report on ``out`` (stderr), the exit status."""
    stream = out if out is not None else sys.stderr
    try:
        result = run_sealed(argv, pcap=pcap)
    except SealUnavailable as e:
        print(f"leak trap unavailable: {e}. The command was NOT run.", file=stream)
        return EXIT_UNAVAILABLE
    for line in result.report_lines():
        print(line, file=stream)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(result.to_json(), allow_nan=False, indent=2) + "\n",
                                encoding="utf-8")
        except OSError as e:
            print(f"leak trap: cannot write {json_out}: {e}", file=stream)
    return result.status
