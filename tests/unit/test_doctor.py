"""``aegis-hidden doctor``: each check over fake probes (tor missing, a wrong control
port, a healthy node, and each failure with its fix), the blocking control-port and
SAM probes over a socket pair, and the command against a port where nothing listens."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.cli import _doctor as d
from aegis_hidden.cli._main import main
from aegis_hidden.config import Config, parse_config
from aegis_hidden.i2p import SAMError
from aegis_hidden.i2p import _probe as sam_probe
from aegis_hidden.testing import free_ports
from aegis_hidden.tor import BootstrapStatus
from aegis_hidden.tor import _probe as tor_probe
from aegis_hidden.tor._probe import ControlReport, ProbeError

NOW = 1_800_000_000.0
ONION = "a" * 56 + ".onion"
DATA = Path("/srv/node")
DONE = BootstrapStatus(100, "done", "Done")


def healthy_report(**changes: Any) -> ControlReport:
    report = ControlReport("0.4.9.11", "cookie", DONE, NOW - 600, NOW + 3000,
                           ("127.0.0.1:9150",))
    return replace(report, **changes)


class FakeProbes:
    """A healthy machine unless told otherwise; records what was asked."""

    def __init__(self) -> None:
        self.binaries = {"tor": "/usr/sbin/tor", "i2pd": "/usr/sbin/i2pd"}
        self.versions = {"/usr/sbin/tor": "Tor version 0.4.9.11.",
                         "/usr/sbin/i2pd": "i2pd version 2.45.1 (0.9.57)"}
        self.report: ControlReport | ProbeError = healthy_report()
        self.sam_reply: str | SAMError = "3.1"
        self.modes: dict[Path, int] = {
            DATA: 0o700, DATA / "identity": 0o700,
            DATA / "identity" / "master_key.json": 0o600,
            DATA / "identity" / "subkeys.json": 0o600,
            DATA / "api_token": 0o600}
        self.files: dict[Path, str] = {DATA / "tor" / "control_port": "PORT=127.0.0.1:39051\n"}
        self.free = 50 * 1024 ** 3
        self.clock = NOW
        self.state: dict[str, Any] | None = {"onion": ONION, "running": True,
                                             "updated": NOW - 3}
        self.reach_result: float | ProbeError = 1.5
        self.asked: list[tuple[str, ...]] = []

    def which(self, name: str) -> str | None:
        return self.binaries.get(name)

    def version(self, exe: str) -> str:
        return self.versions[exe]

    def control(self, address: str, password_file: str | None) -> ControlReport:
        self.asked.append(("control", address, str(password_file)))
        if isinstance(self.report, ProbeError):
            raise self.report
        return self.report

    def sam(self, address: str) -> str:
        self.asked.append(("sam", address))
        if isinstance(self.sam_reply, SAMError):
            raise self.sam_reply
        return self.sam_reply

    def mode(self, path: Path) -> int | None:
        return self.modes.get(path)

    def listdir(self, path: Path) -> list[Path]:
        return sorted(p for p in self.modes if p.parent == path)

    def read_text(self, path: Path) -> str | None:
        return self.files.get(path)

    def free_bytes(self, path: Path) -> int:
        return self.free

    def now(self) -> float:
        return self.clock

    def node_state(self) -> dict[str, Any] | None:
        return self.state

    def reach(self, socks: str, onion: str, port: int) -> float:
        self.asked.append(("reach", socks, onion, str(port)))
        if isinstance(self.reach_result, ProbeError):
            raise self.reach_result
        return self.reach_result


def by_check(findings: list[d.Finding]) -> dict[str, d.Finding]:
    return {f.check: f for f in findings}


def failed(findings: list[d.Finding]) -> list[str]:
    return [f.check for f in findings if f.status == d.FAIL]


def test_healthy_node_in_launch_mode() -> None:
    probes = FakeProbes()
    findings = d.run_checks(Config(), DATA, probes)
    assert failed(findings) == []
    got = by_check(findings)
    assert got["tor installed"].text == "tor 0.4.9.11 at /usr/sbin/tor"
    assert got["tor control"].status == d.OK and "127.0.0.1:39051" in got["tor control"].text
    assert got["clock"].status == d.OK
    assert got["tor bootstrap"].status == d.OK and "100%" in got["tor bootstrap"].text
    assert got["key files"].status == d.OK and got["data dir"].status == d.OK
    assert got["own onion"].status == d.OK and ONION in got["own onion"].text
    # the launched tor's control port, no password; its SOCKS port for the onion
    assert ("control", "127.0.0.1:39051", "None") in probes.asked
    assert ("reach", "127.0.0.1:9150", ONION, "7701") in probes.asked
    assert d.render(findings)[-1] == "No problem found."


def test_healthy_node_in_connect_mode_with_i2p() -> None:
    cfg = parse_config({"tor": {"mode": "connect", "control_port": "127.0.0.1:39999",
                                "control_password_file": "/etc/pw"},
                        "i2p": {"enabled": True, "sam_address": "127.0.0.1:17656"}})
    probes = FakeProbes()
    findings = d.run_checks(cfg, DATA, probes)
    assert failed(findings) == []
    got = by_check(findings)
    assert got["i2pd installed"].text == "i2pd 2.45.1 at /usr/sbin/i2pd"
    assert got["i2p SAM"].status == d.OK and "SAM 3.1" in got["i2p SAM"].text
    assert ("control", "127.0.0.1:39999", "/etc/pw") in probes.asked
    assert ("sam", "127.0.0.1:17656") in probes.asked


def test_tor_missing() -> None:
    probes = FakeProbes()
    probes.binaries.pop("tor")
    probes.state = None  # nothing runs without it
    findings = d.run_checks(Config(), DATA, probes)
    assert failed(findings) == ["tor installed"]
    f = by_check(findings)["tor installed"]
    assert "not installed" in f.text and "apt install tor" in f.fix
    assert by_check(findings)["tor control"].status == d.SKIP
    lines = d.render(findings)
    assert "fix: install it (Debian: apt install tor)" in "\n".join(lines)
    assert lines[-1] == "1 check(s) failed."


def test_tor_missing_is_fine_in_connect_mode() -> None:
    cfg = parse_config({"tor": {"mode": "connect", "control_port": "127.0.0.1:39999"}})
    probes = FakeProbes()
    probes.binaries.pop("tor")
    assert by_check(d.run_checks(cfg, DATA, probes))["tor installed"].status == d.SKIP


def test_wrong_control_port_over_a_real_socket() -> None:
    """Nothing listens on a free loopback port: connection refused, said plainly, with
    the fix, and the checks that need tor are skipped rather than failed twice."""
    port = free_ports(1)[0]
    cfg = parse_config({"tor": {"mode": "connect", "control_port": f"127.0.0.1:{port}"}})
    probes = FakeProbes()
    real = d.SystemProbes(lambda: None, timeout=2.0)
    probes.control = real.control  # type: ignore[method-assign]
    probes.state = None
    started = time.monotonic()
    findings = d.run_checks(cfg, DATA, probes)
    assert time.monotonic() - started < 2.0
    assert failed(findings) == ["tor control"]
    f = by_check(findings)["tor control"]
    assert "refused" in f.text.lower() and f"127.0.0.1:{port}" in f.text
    assert f"ControlPort 127.0.0.1:{port}" in f.fix
    assert by_check(findings)["tor bootstrap"].status == d.SKIP
    assert by_check(findings)["clock"].status == d.SKIP


def test_doctor_command_exits_1_on_a_wrong_control_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_ports(1)[0]
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"tor:\n  mode: connect\n  control_port: 127.0.0.1:{port}\n"
                   "api:\n  enabled: false\n")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    assert main(["doctor", "-c", str(cfg), "-d", str(data), "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  tor control" in out and "Connection refused" in out
    assert main(["doctor", "-c", str(cfg), "-d", str(data), "--json"]) == 1
    doc = __import__("json").loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert {"check": "tor control", "status": "fail"}.items() <= next(
        f for f in doc["findings"] if f["check"] == "tor control").items()


@pytest.mark.parametrize(("kind", "words"), [
    ("auth", "cookie"), ("protocol", "not another service")])
def test_control_port_auth_and_protocol_failures(kind: str, words: str) -> None:
    probes = FakeProbes()
    probes.report = ProbeError(kind, "tor refused")
    f = by_check(d.run_checks(Config(), DATA, probes))["tor control"]
    assert f.status == d.FAIL and words in f.fix


@pytest.mark.parametrize(("offset", "status", "words"), [
    (0, d.OK, "within the validity"),
    (-600 - 4 * 60, d.OK, "within 5 min"),
    (-600 - 20 * 60, d.WARN, "20 min behind"),
    (-600 - 3 * 3600, d.FAIL, "3.0 h behind"),
    (3000 + 2 * 3600, d.FAIL, "ahead of"),
])
def test_clock_skew_against_the_consensus(offset: float, status: str, words: str) -> None:
    f = d.check_clock(healthy_report(), NOW + offset)
    assert f.status == status and words in f.text
    if status != d.OK:
        assert "timedatectl set-ntp true" in f.fix


def test_clock_without_consensus_cannot_be_checked() -> None:
    f = d.check_clock(healthy_report(valid_after=None, valid_until=None), NOW)
    assert f.status == d.SKIP and "cannot check" in f.text


def test_loose_key_permissions() -> None:
    probes = FakeProbes()
    probes.modes[DATA / "identity" / "master_key.json"] = 0o644
    probes.modes[DATA] = 0o755
    got = by_check(d.run_checks(Config(), DATA, probes))
    assert got["data dir"].status == d.FAIL and got["data dir"].fix == f"chmod 700 {DATA}"
    assert got["key files"].status == d.FAIL
    assert "master_key.json (0644)" in got["key files"].text
    assert "subkeys" not in got["key files"].text
    assert "chmod 600" in got["key files"].fix


def test_low_disk_space() -> None:
    probes = FakeProbes()
    probes.free = 50 * 1024 * 1024
    assert by_check(d.run_checks(Config(), DATA, probes))["disk space"].status == d.FAIL
    probes.free = 500 * 1024 * 1024
    assert by_check(d.run_checks(Config(), DATA, probes))["disk space"].status == d.WARN


def test_bootstrap_stuck_says_why() -> None:
    probes = FakeProbes()
    probes.report = healthy_report(bootstrap=BootstrapStatus(
        45, "requesting_descriptors", "Asking for relay descriptors", "WARN",
        "clock skew -7200 in consensus"))
    f = by_check(d.run_checks(Config(), DATA, probes))["tor bootstrap"]
    assert f.status == d.FAIL and "45%" in f.text and "clock skew" in f.text
    assert "bridges" in f.fix


def test_own_onion_unreachable() -> None:
    probes = FakeProbes()
    probes.reach_result = ProbeError("unreachable", "onion service descriptor not found")
    f = by_check(d.run_checks(Config(), DATA, probes))["own onion"]
    assert f.status == d.FAIL and "descriptor not found" in f.text and "publish" in f.fix


def test_launched_tor_without_its_control_port_file() -> None:
    probes = FakeProbes()
    probes.files.clear()
    f = by_check(d.run_checks(Config(), DATA, probes))["tor control"]
    assert f.status == d.WARN and "control port" in f.text and not probes.asked[:1]


def test_stale_status_means_no_running_node() -> None:
    probes = FakeProbes()
    assert probes.state is not None
    probes.state["updated"] = NOW - 3600
    got = by_check(d.run_checks(Config(), DATA, probes))
    assert got["own onion"].status == d.SKIP and got["tor control"].status == d.SKIP


def test_sam_unreachable() -> None:
    cfg = parse_config({"i2p": {"enabled": True, "sam_address": "127.0.0.1:17656"}})
    probes = FakeProbes()
    probes.sam_reply = sam_probe.SAMProbeError("nothing answers at 127.0.0.1:17656")
    f = by_check(d.run_checks(cfg, DATA, probes))["i2p SAM"]
    assert f.status == d.FAIL and "i2pd.conf" in f.fix


def test_missing_bridge_plugin() -> None:
    line = ("obfs4 192.0.2.3:443 " + "A" * 40
            + " cert=" + "x" * 70 + " iat-mode=0")
    cfg = parse_config({"tor": {"bridges": [line]}})
    probes = FakeProbes()
    got = by_check(d.run_checks(cfg, DATA, probes))
    assert got["obfs4 plugin"].status == d.FAIL and "obfs4proxy" in got["obfs4 plugin"].fix


# ---------------------------------------------------------------- the blocking probes


def _scripted(monkeypatch: pytest.MonkeyPatch, module: Any, replies: bytes
              ) -> socket.socket:
    ours, theirs = socket.socketpair()
    theirs.sendall(replies)
    theirs.shutdown(socket.SHUT_WR)
    if module is tor_probe:
        monkeypatch.setattr(tor_probe, "_connect", lambda address, timeout: ours)
    else:
        monkeypatch.setattr(socket, "create_connection", lambda addr, timeout: ours)
    return theirs


def test_query_control_parses_tor_replies(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    cookie = tmp_path / "control_auth_cookie"
    cookie.write_bytes(bytes(range(32)))
    replies = (
        "250-PROTOCOLINFO 1\r\n"
        f'250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="{cookie}"\r\n'
        '250-VERSION Tor="0.4.9.11"\r\n250 OK\r\n'
        "250 OK\r\n"
        "250-version=0.4.9.11\r\n"
        '250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n'
        '250-net/listeners/socks="127.0.0.1:9150"\r\n250 OK\r\n'
        "250-consensus/valid-after=2027-01-15 08:00:00\r\n"
        "250-consensus/valid-until=2027-01-15 11:00:00\r\n250 OK\r\n"
        "250 closing connection\r\n").encode()
    theirs = _scripted(monkeypatch, tor_probe, replies)
    report = tor_probe.query_control("127.0.0.1:1")
    sent = theirs.recv(65536).decode()
    assert f"AUTHENTICATE {bytes(range(32)).hex()}\r\n" in sent
    assert report.version == "0.4.9.11" and report.auth_method == "cookie"
    assert report.bootstrap is not None and report.bootstrap.done
    assert report.socks == ("127.0.0.1:9150",)
    assert report.valid_until is not None and report.valid_after is not None
    assert report.valid_until - report.valid_after == 3 * 3600
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(report.valid_after)) == \
        "2027-01-15 08:00:00"


def test_query_control_auth_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = (b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n")
    theirs = _scripted(monkeypatch, tor_probe, replies)  # kept open: the probe writes to it
    with pytest.raises(ProbeError) as info:
        tor_probe.query_control("127.0.0.1:1")
    assert info.value.kind == "auth" and "control_password_file" in str(info.value)
    theirs.close()


def test_query_control_wrong_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text('se"cret\n')
    replies = (b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n"
               b"515 Authentication failed: Password did not match HashedControlPassword\r\n")
    theirs = _scripted(monkeypatch, tor_probe, replies)
    with pytest.raises(ProbeError) as info:
        tor_probe.query_control("127.0.0.1:1", password_file=str(pw))
    assert info.value.kind == "auth" and "515" in str(info.value)
    assert 'AUTHENTICATE "se\\"cret"' in theirs.recv(65536).decode()


def test_query_control_not_tor(monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = _scripted(monkeypatch, tor_probe, b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(ProbeError) as info:
        tor_probe.query_control("127.0.0.1:1")
    assert info.value.kind == "protocol"
    theirs.close()


def test_sam_hello(monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = _scripted(monkeypatch, sam_probe, b"HELLO REPLY RESULT=OK VERSION=3.1\n")
    assert sam_probe.sam_hello("127.0.0.1:17656") == "3.1"
    assert theirs.recv(1024).startswith(b"HELLO VERSION MIN=3.0 MAX=3.3\n")


def test_sam_hello_no_version(monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = _scripted(monkeypatch, sam_probe, b"HELLO REPLY RESULT=NOVERSION\n")
    with pytest.raises(SAMError):
        sam_probe.sam_hello("127.0.0.1:17656")
    theirs.close()


def test_sam_nothing_listening() -> None:
    port = free_ports(1)[0]
    with pytest.raises(sam_probe.SAMProbeError, match="nothing answers"):
        sam_probe.sam_hello(f"127.0.0.1:{port}", timeout=2.0)
