"""The audit's reports (JSON, self-contained HTML) and ``aegis-hidden audit report``."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from aegis_hidden.audit import AuditInput, render_html, run_audit
from aegis_hidden.cli import main

from .test_audit_checks import (
    CANARY,
    CONTROL,
    LISTEN,
    SOCKS,
    TOPOLOGY,
    Scenario,
    ground_truth_trace,
)

PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


def _files(tmp_path: Path, *, correlated: bool = False) -> tuple[Path, Path]:
    sc = Scenario()
    if correlated:
        sc.out_socks = [t + 0.05 for t in sc.in_listen]
    cap = tmp_path / "lo.pcap"
    cap.write_bytes(sc.build())
    trace = tmp_path / "node.trace"
    data = ground_truth_trace().data
    assert data is not None
    trace.write_bytes(data)
    return cap, trace


TOPO_ARGS = ["--socks", str(SOCKS), "--control", str(CONTROL), "--listen", str(LISTEN),
             "--node", f"{SOCKS},{LISTEN}"]


def test_html_report_is_self_contained_with_its_plots() -> None:
    report = run_audit([AuditInput.from_bytes("lo.pcap", Scenario().build()),
                        ground_truth_trace()], topology=TOPOLOGY, rate=2.0,
                       canaries=[CANARY])
    page = render_html(report)
    plots = PNG.findall(page)
    alts = [alt for _, alt in plots]
    assert any("expected exponential" in a for a in alts)
    assert any("Frame sizes" in a for a in alts)
    assert any("heatmap" in a for a in alts)
    assert any("anonymity set over time" in a for a in alts)
    for data, _ in plots:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    text = PNG.sub("<img>", page)  # what is left once the inlined images are set aside
    assert not re.search(r"https?:|//[a-z]|<script|<link|@import|url\(|src=", text, re.I)
    assert "PASSED" in page
    for c in report.checks:
        assert f'id="{c.name}"' in page


def test_html_shows_a_failure_and_escapes_names() -> None:
    sc = Scenario()
    sc.cap.udp(5.0, ("127.0.0.1", 5000), ("127.0.0.53", 53), b"\x00" * 12)
    report = run_audit([AuditInput.from_bytes("<b>evil</b>.pcap", sc.build())])
    page = render_html(report)
    assert "FAILED: leak_dns" in page and "<b>evil</b>" not in page


def test_cli_report_passes_and_writes_both_reports(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cap, trace = _files(tmp_path)
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = main(["audit", "report", str(cap), str(trace), *TOPO_ARGS, "--profile", "balanced",
                 "--canary", CANARY.hex(), "--json", str(out_json), "--html", str(out_html)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "audit PASSED" in printed
    doc = json.loads(out_json.read_text())
    assert doc["passed"] is True and doc["parameters"]["rate"] == 2.0
    assert {c["name"]: c["status"] for c in doc["checks"]}["timing"] == "pass"
    assert doc["checks"][6]["thresholds"]["max_cells_per_write"] == 4  # balanced's burst
    assert out_html.read_text().count("data:image/png;base64,") >= 4


def test_cli_report_fails_with_exit_status_1(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cap, _ = _files(tmp_path, correlated=True)
    code = main(["audit", "report", str(cap), *TOPO_ARGS, "--json", "-"])
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out)
    assert doc["failed"] == ["correlation"]
    assert "FAILED: correlation" in captured.err
    # the same with a threshold that tolerates it
    code = main(["audit", "report", str(cap), *TOPO_ARGS, "-t", "correlation.r_max=0.9",
                 "-t", "correlation.mi_max=1"])
    assert code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--threshold", "nope=1"], "unknown threshold"),
    (["--canary", "zz"], "not hex"),
    (["--relay", "nohost"], "--relay"),
    (["--node", "1,x"], "--node"),
    (["--rate", "0"], "--rate"),
])
def test_cli_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  args: list[str], message: str) -> None:
    cap, _ = _files(tmp_path)
    assert main(["audit", "report", str(cap), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_unreadable_input_exit_2_and_no_report_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 1, "link": "a", "dir": "out", "size": 996, "kind": "real"}\n[1]\n')
    out = tmp_path / "r.json"
    assert main(["audit", "report", str(bad), "--json", str(out)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not out.exists()


def test_cli_transport_is_an_audit_action(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cap, _ = _files(tmp_path)
    assert main(["audit", "transport", str(cap), "--port", str(SOCKS), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["server"] for c in doc["connections"]] == [f"127.0.0.1:{SOCKS}"]
