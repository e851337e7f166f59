"""``aegis-hidden status``: from status.json when the API is off, progress bar, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_hidden.cli import main
from aegis_hidden.cli._status import render

STATE = {
    "onion": "x" * 56 + ".onion",
    "transports": {"tor": {"ready": False, "restarts": 1,
                           "bootstrap": {"progress": 50, "tag": "loading_descriptors"}},
                   "i2p": {"state": "ready", "address": "a" * 52 + ".b32.i2p", "error": ""}},
    "peers": {"p.onion": {"reachable": True}, "q.onion": {"reachable": False}},
}


def test_render_shows_the_progress_bar_and_transports() -> None:
    lines = render("status.json", STATE)
    assert lines[0].startswith("node:  " + "x" * 56 + ".onion")
    assert lines[1].startswith("i2p:   ready  " + "a" * 52)  # transports sorted by name
    assert "[############------------]  50% loading_descriptors" in lines[2]
    assert "not ready" in lines[2] and "restarts 1" in lines[2]
    assert lines[3] == "peers: 2 known, 1 reached"


def test_status_from_status_json_when_the_api_is_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api:\n  enabled: false\n")
    (tmp_path / "status.json").write_text(json.dumps(STATE))
    assert main(["status", "-c", str(cfg), "-d", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "50% loading_descriptors" in out and "(from status.json)" in out
    assert main(["status", "-c", str(cfg), "-d", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATE


def test_no_node_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api:\n  listen_address: 127.0.0.1:1\n")
    (tmp_path / "api_token").write_text("t" * 43 + "\n")
    (tmp_path / "api_token").chmod(0o600)
    assert main(["status", "-c", str(cfg), "-d", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no running node found" in err and "status.json does not exist" in err


def test_ready_exits_3_until_every_transport_is_ready(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api:\n  enabled: false\n")
    args = ["status", "-c", str(cfg), "-d", str(tmp_path), "--ready"]
    booting = {**STATE, "transports": {"tor": {"ready": False, "bootstrap": {"progress": 50}},
                                       "i2p": {"ready": True, "state": "ready"}}}
    (tmp_path / "status.json").write_text(json.dumps(booting))
    assert main(args) == 3
    assert capsys.readouterr().err.strip() == "not ready: tor"
    assert main([*args, "--json"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out) == booting and "not ready: tor" in captured.err
    ready = {**STATE, "transports": {"tor": {"ready": True, "bootstrap": {"progress": 100}},
                                     "i2p": {"ready": False, "state": "creating"}}}
    (tmp_path / "status.json").write_text(json.dumps(ready))
    assert main(args) == 3
    assert capsys.readouterr().err.strip() == "not ready: i2p"
    ready["transports"]["i2p"] = {"ready": True, "state": "ready"}  # type: ignore[index]
    (tmp_path / "status.json").write_text(json.dumps(ready))
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    # Without --ready the same not-ready node answers 0 (it runs: a liveness check).
    (tmp_path / "status.json").write_text(json.dumps(STATE))
    assert main(args[:-1]) == 0
    # No transport reported at all is not ready either.
    (tmp_path / "status.json").write_text(json.dumps({"onion": "x"}))
    assert main(args) == 3
    assert "not ready: transports" in capsys.readouterr().err


def test_ready_with_no_node_is_status_1(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api:\n  enabled: false\n")
    assert main(["status", "-c", str(cfg), "-d", str(tmp_path), "--ready"]) == 1
    assert "no running node found" in capsys.readouterr().err


HEAVY = ("aegis_hidden.api", "aegis_hidden.node", "aegis_hidden.tor", "aegis_hidden.testing",
         "autobahn", "twisted.internet.reactor", "twisted.web", "aegis_hidden.cli._demo")
PROBE = """
import contextlib, io, json, sys
from aegis_hidden.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "err": err.getvalue(),
                  "heavy": sorted(m for m in sys.modules if m.startswith(%r))}))
"""


def test_status_imports_neither_the_node_nor_the_api_server(tmp_path: Path) -> None:
    """``status`` (a readiness probe may run it every few seconds) imports only its own
    module and the API client: against no node it fails clearly, and in a fresh
    interpreter none of the heavy packages (nor the other commands' modules) was
    imported."""
    import subprocess
    import sys

    probe = PROBE % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", probe, "status", "-d", str(tmp_path)],
                          capture_output=True, text=True, check=True, timeout=60)
    report = json.loads(done.stdout)
    assert report["code"] == 1
    assert "no running node found" in report["err"] and "status.json" in report["err"]
    assert report["heavy"] == []
    # a command registered by a module of another name still works (every module loaded)
    done = subprocess.run([sys.executable, "-c", probe, "node", "emergency", "-d",
                           str(tmp_path)], capture_output=True, text=True, check=True,
                          timeout=60)
    report = json.loads(done.stdout)
    assert report["code"] == 1 and "api_token" in report["err"]
    assert "aegis_hidden.cli._demo" in report["heavy"]


def test_the_parser_of_one_command_and_of_all() -> None:
    from aegis_hidden.cli._main import build_parser

    one = build_parser("status")
    assert one.parse_args(["status", "--ready"]).ready is True
    with pytest.raises(SystemExit):
        one.parse_args(["peers", "list"])  # not registered: only status's module ran
    every = build_parser("send")  # no _send module: peers registers it, so all are built
    assert every.parse_args(["peers", "list"]).command == "peers"
    assert build_parser().parse_args(["node", "emergency"]).command == "node"
