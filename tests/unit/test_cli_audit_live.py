"""``aegis-hidden audit sealed`` and ``audit node``: arguments, exit codes, the API dialogue.

The API client is replaced by a fake that answers as a node would; the trap is
not built here (``tests/integration/test_audit.py`` runs it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.audit import _sealed
from aegis_hidden.cli import _audit_live
from aegis_hidden.cli._api import ApiClient
from aegis_hidden.cli._main import main


def test_exit_codes_named_in_the_help_are_the_traps() -> None:
    assert _audit_live.EXIT_LEAKED == _sealed.EXIT_LEAKED
    assert _audit_live.EXIT_UNAVAILABLE == _sealed.EXIT_UNAVAILABLE


def test_sealed_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "sealed"]) == 2
    assert "no command given" in capsys.readouterr().err
    assert main(["audit", "sealed", "--"]) == 2


def test_sealed_where_namespaces_are_not_allowed(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["audit", "sealed", "--", "true"]) == _sealed.EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert "needs root" in err and "NOT run" in err
    assert main(["audit", "sealed", "--check"]) == _sealed.EXIT_UNAVAILABLE
    assert "leak trap unavailable" in capsys.readouterr().err


def test_sealed_passes_the_command_and_files_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], Path | None, Path | None]] = []

    def fake(argv: list[str], *, pcap: Path | None = None, json_out: Path | None = None
             ) -> int:
        seen.append((argv, pcap, json_out))
        return 5

    monkeypatch.setattr(_sealed, "main_sealed", fake)
    assert main(["audit", "sealed", "--pcap", "x.pcap", "--json", "x.json", "--",
                 "python", "-m", "pytest", "-q"]) == 5
    assert seen == [(["python", "-m", "pytest", "-q"], Path("x.pcap"), Path("x.json"))]


class FakeApi:
    """Answers POST /api/network/audit, then two polls, then the report."""

    def __init__(self, passed: bool = True, fail: bool = False) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.polls = 0
        self.passed = passed
        self.fail = fail

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        self.requests.append((method, path, body))
        if method == "POST":
            return {"id": "00aa", "state": "recording", "seconds": body["seconds"]}
        assert path == "/api/network/audit/00aa"
        self.polls += 1
        if self.polls < 3:
            return {"id": "00aa", "state": "recording" if self.polls == 1 else "analysing"}
        if self.fail:
            return {"id": "00aa", "state": "failed", "error": "ValueError: bad trace"}
        report = {"passed": self.passed, "failed": [] if self.passed else ["timing"],
                  "checks": [{"name": "timing", "status": "pass" if self.passed else "fail",
                              "summary": "all 2 link(s) depart as Exp(λ=2)"}]}
        return {"id": "00aa", "state": "done", "report": report}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        return 200, "<html>report</html>"


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()
    monkeypatch.setattr(ApiClient, "from_args", classmethod(lambda cls, a: api))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    return api


def test_node_records_waits_and_writes_the_reports(fake_api: FakeApi, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "node", "--seconds", "30", "--json", str(tmp_path / "r.json"),
                 "--html", str(tmp_path / "r.html")])
    assert code == 0
    assert fake_api.requests[0] == ("POST", "/api/network/audit", {"seconds": 30})
    assert fake_api.polls == 3
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert (tmp_path / "r.html").read_text() == "<html>report</html>"
    out = capsys.readouterr().out.splitlines()
    assert out == ["PASS     timing             all 2 link(s) depart as Exp(λ=2)",
                   "audit PASSED"]


def test_node_exit_status_follows_the_report(fake_api: FakeApi,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.passed = False
    assert main(["audit", "node", "--seconds", "1"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "audit FAILED: timing"
    assert fake_api.requests[0][2] == {"seconds": 1}


def test_node_failed_audit_and_bad_arguments(fake_api: FakeApi,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.fail = True
    assert main(["audit", "node", "--seconds", "1"]) == 1
    assert "ValueError: bad trace" in capsys.readouterr().err
    assert main(["audit", "node", "--seconds", "0"]) == 2
    assert main(["audit", "node", "--seconds", "601"]) == 2


def test_check_lines_of_an_empty_report() -> None:
    assert _audit_live.check_lines({"passed": False, "failed": []}) == ["audit FAILED: "]
