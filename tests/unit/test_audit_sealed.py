"""The leak trap's pieces that need no namespace: its commands, its reading of the capture.

The captures are built in memory with dpkt, as tcpdump writes them on the
trap's veth (Ethernet frames); the real trap runs in
``tests/integration/test_audit.py``.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.audit import _sealed as sealed
from aegis_hidden.audit._sealed import (
    EXIT_LEAKED,
    EXIT_UNAVAILABLE,
    GATEWAY_IPV4,
    GATEWAY_MAC,
    INNER_IPV4,
    INNER_IPV6,
    SealPlan,
    SealResult,
    SealUnavailable,
    check_available,
    describe,
    exit_status,
    main_sealed,
    read_capture,
)

INNER_MAC = bytes.fromhex("aa0000000002")
GW_MAC = bytes.fromhex(GATEWAY_MAC.replace(":", ""))


def _eth(data: dpkt.Packet, etype: int) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=INNER_MAC, dst=GW_MAC, type=etype, data=data))


def _udp4(dst: str, dport: int, payload: bytes = b"x") -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=ipaddress.IPv4Address(INNER_IPV4).packed,
                    dst=ipaddress.IPv4Address(dst).packed, p=dpkt.ip.IP_PROTO_UDP, data=udp)
    return _eth(ip, dpkt.ethernet.ETH_TYPE_IP)


def _tcp6(dst: str, dport: int) -> bytes:
    tcp = dpkt.tcp.TCP(sport=50000, dport=dport, flags=dpkt.tcp.TH_SYN)
    ip = dpkt.ip6.IP6(src=ipaddress.IPv6Address(INNER_IPV6).packed,
                      dst=ipaddress.IPv6Address(dst).packed, nxt=dpkt.ip.IP_PROTO_TCP,
                      hlim=64, data=tcp, plen=len(tcp))
    return _eth(ip, dpkt.ethernet.ETH_TYPE_IP6)


def _dns_query(name: str) -> bytes:
    q = dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)])
    return bytes(q)


def _arp_who_has(target: str) -> bytes:
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=INNER_MAC,
                       spa=ipaddress.IPv4Address(INNER_IPV4).packed, tha=b"\0" * 6,
                       tpa=ipaddress.IPv4Address(target).packed)
    return _eth(arp, dpkt.ethernet.ETH_TYPE_ARP)


def _mld2(group: str) -> bytes:
    record = bytes([4, 0, 0, 0]) + ipaddress.IPv6Address(group).packed
    icmp = dpkt.icmp6.ICMP6(type=143, code=0, data=b"\0\0\0\x01" + record)
    ip = dpkt.ip6.IP6(src=bytes(16), dst=ipaddress.IPv6Address("ff02::16").packed,
                      nxt=dpkt.ip.IP_PROTO_ICMP6, hlim=1, data=icmp, plen=len(bytes(icmp)))
    return _eth(ip, dpkt.ethernet.ETH_TYPE_IP6)


def _pcap(frames: list[tuple[float, bytes]]) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
    for ts, frame in frames:
        writer.writepkt(frame, ts=ts)
    return out.getvalue()


# -- the plan ---------------------------------------------------------------

def test_plan_names_fit_interface_limits() -> None:
    plan = SealPlan.for_pid(4194304)  # the largest pid Linux hands out
    assert len(plan.outer) <= 15 and len(plan.inner) <= 15
    assert plan.outer != plan.inner
    assert plan.namespace == "aegis-sealed-4194304"


def test_plan_keeps_loopback_and_routes_everything_else_to_the_watched_veth() -> None:
    plan = SealPlan.for_pid(42)
    cmds = [" ".join(c) for c in plan.setup_commands()]
    assert "ip netns add aegis-sealed-42" in cmds
    assert "ip -n aegis-sealed-42 link set lo up" in cmds
    assert f"ip -n aegis-sealed-42 route add default via {GATEWAY_IPV4} dev aeI42" in cmds
    assert any("-6 route add default" in c for c in cmds)
    # the gateway's address is fixed (no ARP wait) to one no host owns
    neigh = [c for c in cmds if " neigh add " in c]
    assert len(neigh) == 2 and all(GATEWAY_MAC in c and "permanent" in c for c in neigh)
    # the parent end forwards nothing
    assert any("net.ipv4.conf.aeS42.forwarding=0" in c for c in cmds)
    # the veth is moved in before it is configured inside
    move = cmds.index("ip link set aeI42 netns aegis-sealed-42")
    assert all(cmds.index(c) > move for c in cmds if "-n aegis-sealed-42" in c)


def test_capture_exec_and_teardown_commands() -> None:
    plan = SealPlan.for_pid(42)
    cap = plan.capture_command(Path("/tmp/x.pcap"))
    assert cap[:3] == ["tcpdump", "-i", "aeS42"] and cap[-2:] == ["-w", "/tmp/x.pcap"]
    assert "-U" in cap  # a killed trap still leaves whole packets
    # read at once: without it the last packets wait in a kernel buffer block and are
    # lost when tcpdump is stopped (seen: "0 packets captured, 2 received by filter")
    assert "--immediate-mode" in cap
    assert plan.exec_command(["python", "-m", "pytest", "-q"]) == [
        "ip", "netns", "exec", "aegis-sealed-42", "python", "-m", "pytest", "-q"]
    assert plan.teardown_commands()[0] == ["ip", "netns", "delete", "aegis-sealed-42"]


def test_not_root_is_unavailable() -> None:
    with pytest.raises(SealUnavailable, match="needs root"):
        check_available(geteuid=lambda: 1000, which=lambda tool: f"/usr/bin/{tool}")


def test_missing_tools_are_named() -> None:
    with pytest.raises(SealUnavailable, match="tcpdump"):
        check_available(geteuid=lambda: 0,
                        which=lambda tool: None if tool == "tcpdump" else f"/sbin/{tool}")
    check_available(geteuid=lambda: 0, which=lambda tool: f"/sbin/{tool}")


def test_unavailable_trap_runs_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ran: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: ran.append(a))
    out = io.StringIO()
    assert main_sealed(["true"], out=out) == EXIT_UNAVAILABLE
    assert "NOT run" in out.getvalue() and "root" in out.getvalue()
    assert ran == []


def test_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="no command"):
        sealed.run_sealed([])


# -- reading the capture -----------------------------------------------------

def test_udp_dns_tcp6_and_arp_are_each_reported() -> None:
    data = _pcap([
        (100.25, _udp4("192.0.2.1", 9)),
        (100.5, _udp4("10.255.255.53", 53, _dns_query("example.com"))),
        (101.0, _tcp6("2001:db8::1", 443)),
        (102.0, _arp_who_has("10.199.0.7")),
    ])
    escapes, housekeeping = read_capture(data, start=100.0)
    assert housekeeping == []
    udp, dns, tcp, arp = escapes
    assert (udp.kind, udp.protocol, udp.dst, udp.dport, udp.dns) == \
        ("ipv4", "udp", "192.0.2.1", 9, None)
    assert udp.at == pytest.approx(0.25)
    assert dns.dns == "A? example.com." and dns.dport == 53
    assert (tcp.kind, tcp.protocol, tcp.src, tcp.dst, tcp.dport) == \
        ("ipv6", "tcp", INNER_IPV6, "2001:db8::1", 443)
    assert (arp.kind, arp.dst, arp.note) == ("arp", "10.199.0.7", "who-has")
    assert "[2001:db8::1]:443" in tcp.line() and "DNS query A? example.com." in dns.line()


def test_the_trap_interfaces_own_mld_report_is_housekeeping_not_a_leak() -> None:
    data = _pcap([(1.0, _mld2("ff02::1:ff00:2")), (2.0, _mld2("ff02::fb"))])
    escapes, housekeeping = read_capture(data, start=0.0)
    assert len(housekeeping) == 1 and housekeeping[0].protocol == "icmpv6"
    # joining another group (mDNS here) is the program's doing: counted
    assert len(escapes) == 1 and escapes[0].dst == "ff02::16"


def test_a_capture_cut_short_still_counts_every_packet_begun() -> None:
    data = _pcap([(1.0, _udp4("192.0.2.1", 9)), (2.0, _udp4("192.0.2.2", 9))])
    escapes, _ = read_capture(data[:-5])  # the last frame lost its end: it still tried
    assert len(escapes) == 2 and escapes[0].dst == "192.0.2.1"
    escapes, _ = read_capture(data[:len(data) - len(_udp4("192.0.2.2", 9)) - 4])
    assert len(escapes) == 1  # only part of the last record's header: no packet


def test_empty_and_broken_captures() -> None:
    assert read_capture(b"") == ([], [])
    with pytest.raises(SealUnavailable, match="cannot be read"):
        read_capture(b"not a pcap at all, not even close")


def test_a_frame_that_is_not_ethernet_is_still_counted() -> None:
    escape, own = describe(0.0, b"\x01\x02")
    assert escape.kind == "other" and not own


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_frame_is_described_without_raising(frame: bytes) -> None:
    escape, _ = describe(0.0, frame)
    assert escape.size == len(frame)
    json.dumps(escape.to_json(), allow_nan=False)


# -- the verdict --------------------------------------------------------------

def test_exit_status() -> None:
    escape, _ = describe(0.0, _udp4("192.0.2.1", 9))
    assert exit_status(0, []) == 0
    assert exit_status(3, []) == 3
    assert exit_status(0, [escape]) == EXIT_LEAKED
    assert exit_status(3, [escape]) == EXIT_LEAKED
    assert exit_status(None, []) == EXIT_UNAVAILABLE


def test_report_says_how_many_tried_to_leave() -> None:
    clean = SealResult(0, [], [], 1.5)
    assert clean.summary() == "0 packets tried to leave"
    assert clean.report_lines()[0].startswith("leak trap: 0 packets tried to leave")
    escapes = [describe(float(i), _udp4("192.0.2.1", 9))[0] for i in range(sealed.MAX_LISTED + 3)]
    noisy = SealResult(0, escapes, [describe(0.0, _mld2("ff02::1:ff00:2"))[0]], 2.0)
    lines = noisy.report_lines()
    assert f"{sealed.MAX_LISTED + 3} packets tried to leave" in lines[0]
    assert "1 MLD report" in lines[0]
    assert lines[-1] == "  ... and 3 more"
    doc = noisy.to_json()
    assert doc["packets_tried_to_leave"] == sealed.MAX_LISTED + 3
    assert doc["status"] == EXIT_LEAKED
    json.dumps(doc, allow_nan=False)
