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
