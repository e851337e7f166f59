"""The ``aegis-hidden`` command line: identity and config sub-commands."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from aegis_hidden import identity as ident
from aegis_hidden.cli import main
from aegis_hidden.cli._config import example_yaml, markdown_table
from aegis_hidden.identity import _keyfile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_keyfile, "SCRYPT_N", 2**10)
    monkeypatch.delenv("AEGIS_HIDDEN_PASSPHRASE", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_show_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "identity", "init", "--data-dir", str(tmp_path))
    assert code == 0 and "created identity" in out
    code, out, _ = run(capsys, "identity", "show", "--data-dir", str(tmp_path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert len(doc["onion"]) == 62 and doc["onion"].endswith(".onion")
    assert len(doc["ed25519_public"]) == 64
    assert ident.public_key_from_onion_address(doc["onion"]).hex() == doc["ed25519_public"]
    assert doc["sealed"] is False
    code, out, _ = run(capsys, "identity", "show", "--data-dir", str(tmp_path))
    assert doc["onion"] in out and "ml-dsa-65" in out


def test_init_always_makes_mldsa(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):  # the Ed25519-only option is gone
        main(["identity", "init", "-d", str(tmp_path), "--no-mldsa"])
    capsys.readouterr()
    assert run(capsys, "identity", "init", "-d", str(tmp_path))[0] == 0
    code, out, _ = run(capsys, "identity", "show", "-d", str(tmp_path), "--json")
    assert code == 0 and len(bytes.fromhex(json.loads(out)["mldsa65_public"])) == 1952
    code, out, _ = run(capsys, "identity", "rotate", "-d", str(tmp_path))
    code, out, _ = run(capsys, "identity", "show", "-d", str(tmp_path))
    assert "ml-dsa rotated:  from" in out and "i2p address:     none" in out


def test_init_refuses_existing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "identity", "init", "-d", str(tmp_path))[0] == 0
    before = (tmp_path / "identity" / "master_key.json").read_bytes()
    code, _, err = run(capsys, "identity", "init", "-d", str(tmp_path))
    assert code == 1 and "refusing to overwrite" in err
    assert (tmp_path / "identity" / "master_key.json").read_bytes() == before


def test_show_without_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "identity", "show", "-d", str(tmp_path))
    assert code == 1 and "no identity" in err and "identity init" in err


def test_encrypted_identity_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    code, _, _ = run(capsys, "identity", "init", "-d", str(tmp_path / "n"), "--encrypt",
                     "--passphrase-file", str(pw))
    assert code == 0
    code, _, err = run(capsys, "identity", "show", "-d", str(tmp_path / "n"))
    assert code == 1 and "passphrase" in err  # stdin is not a tty: no prompt
    code, out, _ = run(capsys, "identity", "show", "-d", str(tmp_path / "n"), "--json",
                       "--passphrase-file", str(pw))
    assert code == 0 and json.loads(out)["sealed"] is True
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    code, _, err = run(capsys, "identity", "show", "-d", str(tmp_path / "n"),
                       "--passphrase-file", str(bad))
    assert code == 1 and "wrong passphrase" in err


def test_rotate_revoke_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "identity", "init", "-d", str(tmp_path))
    onion = json.loads(run(capsys, "identity", "show", "-d", str(tmp_path), "--json")[1])["onion"]
    code, out, _ = run(capsys, "identity", "rotate", "-d", str(tmp_path))
    assert code == 0 and "sequence 2" in out
    code, out, _ = run(capsys, "identity", "export", "-d", str(tmp_path))
    rec = ident.verify_record(base64.b64decode(out), onion, now=ident.load(
        tmp_path / "identity", time.time()).record.created)
    assert rec.sequence == 2
    out_file = tmp_path / "record.bin"
    assert run(capsys, "identity", "export", "-d", str(tmp_path), "-o", str(out_file))[0] == 0
    assert ident.parse_record(out_file.read_bytes()) == rec
    code, _, err = run(capsys, "identity", "revoke", "-d", str(tmp_path), "--reason", "x")
    assert code == 1 and "--yes" in err
    code, out, _ = run(capsys, "identity", "revoke", "-d", str(tmp_path), "--reason", "seized",
                       "--yes")
    assert code == 0 and "revoked" in out
    code, _, err = run(capsys, "identity", "show", "-d", str(tmp_path))
    assert code == 1 and "revoked" in err


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("network:\n  max_connections: 5\n")
    assert run(capsys, "config", "check", str(good)) == (0, f"{good}: OK\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  max_connections: -1\n")
    code, _, err = run(capsys, "config", "check", str(bad))
    assert code == 2 and "network.max_connections: -1" in err
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text("api:\n  listen_address: 0.0.0.0:8470\n")
    code, _, err = run(capsys, "config", "check", str(leaky))
    assert code == 3 and "privacy" in err and "api.listen_address" in err


def test_docs_table_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert markdown_table() in doc, "regenerate: aegis-hidden config defaults --markdown"


def test_example_file_is_current() -> None:
    example = (ROOT / "docs" / "aegis-hidden.example.yaml").read_text()
    assert example == example_yaml(), "regenerate: aegis-hidden config defaults --example"
