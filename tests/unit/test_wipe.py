"""The emergency wipe: after it, nothing in the data dir opens."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast

import pytest

from aegis_hidden.cli import main
from aegis_hidden.identity import create, load
from aegis_hidden.node import disable_core_dumps
from aegis_hidden.peers import (
    DB_FILE_NAME,
    InlineSQLite,
    key_file_path,
    load_database_key,
)
from aegis_hidden.testing import result_of

PASSPHRASE = "correct horse battery staple"


def test_the_wipe_leaves_nothing_that_opens(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "node"
    ident_dir = data / "identity"
    create(ident_dir, time.time(), passphrase=PASSPHRASE)
    db_path = data / DB_FILE_NAME
    key = load_database_key(db_path, PASSPHRASE)
    db = InlineSQLite(str(db_path), key=key)
    result_of(db.run(lambda c: c.execute("INSERT INTO peers (peer_id, added) VALUES ('p', 1)")))
    result_of(db.close())
    (data / "node.log").write_text("peer-1234 connected\n" * 100)
    (data / "api_token").write_text("secret-token\n")
    (data / "i2p").mkdir()
    (data / "i2p" / "destination.key").write_bytes(os.urandom(600))
    (data / "tor").mkdir()
    (data / "tor" / "notice.log").write_text("bootstrapped\n")
    (data / "tor" / "state").write_text("EntryGuard x\n")
    (data / "emergency.json").write_text('{"isolated": true, "reason": "raid"}')
    (data / "unrelated.txt").write_text("left alone\n")
    assert main(["wipe", "--data-dir", str(data), "--yes"]) == 0
    assert "overwritten" in capsys.readouterr().out
    assert not key_file_path(db_path).exists() and not db_path.exists()
    assert not (data / "node.log").exists() and not (data / "api_token").exists()
    assert not [p for p in ident_dir.rglob("*") if p.is_file()]
    assert not [p for p in (data / "i2p").rglob("*") if p.is_file()]
    assert not (data / "tor" / "notice.log").exists() and not (data / "tor" / "state").exists()
    assert not (data / "emergency.json").exists()
    assert (data / "unrelated.txt").exists()  # only what the node writes
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal: nothing to open
        load(ident_dir, time.time(), passphrase=PASSPHRASE)
    left = [p for p in data.rglob("*") if p.is_file()]
    assert not [p for p in left if p.name.startswith(DB_FILE_NAME)], left


def test_the_log_names_peers_only_at_debug() -> None:
    from twisted.logger import ILogObserver, LogLevel, formatEvent

    from aegis_hidden.identity import onion_address_from_public_key
    from aegis_hidden.node import PeerRedactingObserver

    own, peer = (onion_address_from_public_key(os.urandom(32)) for _ in range(2))
    out: list[str] = []
    observer = PeerRedactingObserver(
        cast(ILogObserver, lambda e: out.append(formatEvent(e))), [own])
    for level in (LogLevel.info, LogLevel.warn, LogLevel.debug):
        observer({"log_level": level, "log_format": "{a} reached {b}", "a": own, "b": peer})
    assert out[0] == out[1] and peer not in out[0] and own in out[0] and "peer-" in out[0]
    assert peer in out[2]  # debug keeps the address


def test_the_wipe_refuses_a_running_node_and_needs_confirmation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "twistd.pid").write_text("1\n")
    assert main(["wipe", "--data-dir", str(tmp_path), "--yes"]) == 1
    assert "stop the node first" in capsys.readouterr().err
    (tmp_path / "twistd.pid").unlink()
    assert main(["wipe", "--data-dir", str(tmp_path)]) == 1  # stdin is not a terminal
    assert "without --yes" in capsys.readouterr().err


def test_core_dumps_are_disabled_unless_allowed() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_CORE)
    assert disable_core_dumps(allow=True) is False
    assert resource.getrlimit(resource.RLIMIT_CORE) == before
    pid = os.fork()
    if pid == 0:  # the child sets its own limit; the test process keeps its own
        ok = disable_core_dumps() and resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_api_wipe_needs_the_token_and_the_exact_confirmation(tmp_path: Path) -> None:
    import json

    from treq.testing import StubTreq
    from twisted.internet.task import Clock

    from aegis_hidden.api import TokenChecker, build_root, load_or_create_token
    from aegis_hidden.config import Config
    from aegis_hidden.events import EventBus
    from aegis_hidden.node import NodeCore

    data = tmp_path / "node"
    ident = create(data / "identity", time.time(), passphrase=PASSPHRASE)
    db_path = data / DB_FILE_NAME
    db = InlineSQLite(str(db_path), key=load_database_key(db_path, PASSPHRASE))
    clock = Clock()
    core = NodeCore(Config(), None, str(data), EventBus(now=clock.seconds), clock, db=db,
                    local_address=ident.onion)
    core.startService()
    result_of(core.when_ready())
    token, _ = load_or_create_token(data / "api_token")
    stub = StubTreq(build_root(core, TokenChecker(data / "api_token"), 4096))

    def post(body: object, auth: str = token) -> tuple[int, Any]:
        d = stub.post(  # type: ignore[attr-defined]
            "http://127.0.0.1:8470/api/node/wipe", data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {auth}"})
        stub.flush()
        response = result_of(d)
        content = response.content()
        stub.flush()
        return response.code, json.loads(result_of(content))

    assert post({"confirm": f"wipe {ident.onion}"}, auth="wrong-token-0123456789")[0] == 401
    code, body = post({"confirm": "wipe"})
    assert code == 400 and "nothing was changed" in str(body)
    code, body = post({"confirm": f"wipe {'a' * 56}.onion"})
    assert code == 409 and "another node" in body["error"]
    assert key_file_path(db_path).exists() and (data / "identity" / "master_key.json").exists()
    code, body = post({"confirm": f"wipe {ident.onion}"})
    assert code == 200 and body["ok"] is True and body["failed"] == 0
    assert body["overwritten"] >= 4 and body["deleted"] > body["overwritten"]
    assert not key_file_path(db_path).exists() and not db_path.exists()
    assert not [p for p in (data / "identity").rglob("*") if p.is_file()]
    assert not (data / "api_token").exists()
    core.stopService()
    result_of(db.close())


def test_a_duress_passphrase_wipes_instead_of_unlocking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from twisted.python import usage

    from aegis_hidden import tap
    from aegis_hidden.node import is_duress_passphrase

    data = tmp_path / "node"
    real = tmp_path / "real"
    real.write_text(PASSPHRASE + "\n")
    duress = tmp_path / "duress"
    duress.write_text("open sesame\n")
    first = tap.Options()
    first.parseOptions(["--data-dir", str(data), "--no-api", "--passphrase-file", str(real)])
    onion = first.identity.onion
    assert main(["wipe", "--data-dir", str(data), "--set-duress",
                 "--duress-passphrase-file", str(real)]) == 1  # the real one: refused
    assert "real passphrase" in capsys.readouterr().err
    assert main(["wipe", "--data-dir", str(data), "--set-duress",
                 "--duress-passphrase-file", str(duress)]) == 0
    assert b"open sesame" not in (data / "duress.json").read_bytes()
    assert not is_duress_passphrase(data, PASSPHRASE)
    again = tap.Options()  # the real passphrase still opens the node
    again.parseOptions(["--data-dir", str(data), "--no-api", "--passphrase-file", str(real)])
    assert again.identity.onion == onion
    coerced = tap.Options()
    coerced.parseOptions(["--data-dir", str(data), "--no-api", "--passphrase-file",
                          str(duress)])
    assert coerced.identity.onion != onion  # wiped: a new, empty node
    assert not (data / "duress.json").exists()
    after = tap.Options()
    with pytest.raises(usage.UsageError, match="passphrase"):
        after.parseOptions(["--data-dir", str(data), "--no-api", "--passphrase-file",
                            str(real)])
